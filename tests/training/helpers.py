"""Shared helpers for the training tests: the CLI in-process, a throw-away MLflow store."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serving.cli import main

# Small and quick, yet long enough for train / gap / valid / gap / test with a 7-day delay.
ROWS, DAYS, SEED = 60_000, 60, 11

WEAK_CONFIG = "[lightgbm]\nn_estimators = 1\nnum_leaves = 2\n"


@dataclass(frozen=True)
class CliRun:
    code: int
    out: str
    err: str


def riskgate(*argv: object) -> CliRun:
    """`riskgate ARGV` in this process; SystemExit counts as the shell would see it.

    `train` runs with one search trial (the defaults) unless the test gives --search-trials:
    the search itself is tested in tests/training/test_search.py, and one trial keeps each CLI
    run short."""
    if argv and argv[0] == "train" and "--search-trials" not in argv:
        argv = (*argv, "--search-trials", "1")
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            if isinstance(exc.code, int):
                code = exc.code
            else:  # SystemExit("message") prints the message and exits with status 1
                print(exc.code, file=err)
                code = 1
    return CliRun(code, out.getvalue(), err.getvalue())


def store_uri(directory: Path) -> str:
    return f"sqlite:///{directory}/mlflow.db"


def forget_tracking_uri() -> None:
    """MLflow keeps the last URI in a global (and in os.environ): drop it after a test."""
    import mlflow

    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]


@contextmanager
def tracking_store(directory: Path) -> Iterator[str]:
    """A temporary tracking store for fixtures wider than one test (monkeypatch is per test)."""
    directory.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        uri = store_uri(directory)
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        try:
            yield uri
        finally:
            forget_tracking_uri()


def registered_versions(uri: str) -> list[str]:
    """Versions of the `riskgate` model in the store (empty when none was registered).

    A store whose database was never created holds nothing (and is not created by looking).
    """
    from mlflow import MlflowClient

    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return []

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return sorted(mv.version for mv in client.search_model_versions("name = 'riskgate'"))


def assert_same_features(got: pd.DataFrame, want: pd.DataFrame, names: list[str]) -> None:
    """Exactly equal feature values (NaN equals NaN), with the offending column in the message."""
    for name in names:
        np.testing.assert_array_equal(
            got[name].to_numpy(), want[name].to_numpy(), err_msg=f"feature {name} differs"
        )
