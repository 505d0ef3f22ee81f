"""Data and a trained model shared by the training tests: generated and fitted once a session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from data.simulator import SimulationConfig, simulate
from tests.training.helpers import DAYS, ROWS, SEED, forget_tracking_uri, store_uri
from training.config import SearchSettings, TrainConfig
from training.pipeline import TrainResult, train


@pytest.fixture(scope="session")
def frame() -> pd.DataFrame:
    """Simulated, validated payments with delayed chargeback labels. Never modify it in place."""
    return simulate(SimulationConfig(rows=ROWS, days=DAYS, seed=SEED))


@pytest.fixture(scope="session")
def data_path(frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "payments.parquet"
    frame.to_parquet(path, index=False)
    return path


@pytest.fixture(scope="session")
def trained(frame: pd.DataFrame) -> TrainResult:
    """The training job with the default configuration, run in-process without MLflow."""
    return train(frame, TrainConfig(search=SearchSettings(trials=1)))


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh tracking store for one test; the project's own mlruns/ is never touched."""
    uri = store_uri(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    yield uri
    forget_tracking_uri()
