"""Fault and load tests: a small trained model, per-test service environments, real servers.

Everything runs on 127.0.0.1, every load is bounded in count and in time, and every server a
test starts is stopped by its PID (see tests/servers.py).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# BentoML reads its home when first imported: a scratch directory before anything imports it
# (as tests/serving/conftest.py does; whichever conftest runs first wins, both are scratch).
if "bentoml" not in sys.modules:
    _BENTOML_HOME = tempfile.mkdtemp(prefix="riskgate-faults-bentoml-")
    atexit.register(shutil.rmtree, _BENTOML_HOME, ignore_errors=True)
    os.environ["BENTOML_HOME"] = _BENTOML_HOME
os.environ["BENTOML_DO_NOT_TRACK"] = "true"

from tests.serving.helpers import KEY_SPEC
from tests.small_model import DAYS, ROWS, SEED, probability_of, small_model  # noqa: F401
from training.model import RiskModel

if TYPE_CHECKING:
    from tests.servers import Server


@pytest.fixture(scope="session")
def fault_model() -> RiskModel:
    """A trained model whose review threshold separates the two reference payments (shared
    with the scale-out suite: tests/small_model.py)."""
    return small_model()


@pytest.fixture(scope="session")
def fault_model_dir(fault_model: RiskModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fault_model.save(tmp_path_factory.mktemp("fault-model") / "artifact")


def riskgate_env(work: Path, model_dir: Path | str, deadline_ms: str = "5000") -> dict[str, str]:
    """RISKGATE_* for one service: its own database and online state under `work`."""
    return {
        "RISKGATE_API_KEYS": KEY_SPEC,
        "RISKGATE_MODEL_DIR": str(model_dir),
        "RISKGATE_DB_URL": f"sqlite:///{work / 'riskgate.db'}",
        "RISKGATE_STATE_PATH": str(work / "state.db"),
        "RISKGATE_MODEL_DEADLINE_MS": deadline_ms,
    }


@pytest.fixture
def fault_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault_model_dir: Path
) -> dict[str, str]:
    """The current process's RISKGATE_* for an in-process service (nothing from the shell)."""
    for name in list(os.environ):
        if name.startswith("RISKGATE_"):
            monkeypatch.delenv(name)
    env = riskgate_env(tmp_path, fault_model_dir)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture(scope="module")
def module_env(
    tmp_path_factory: pytest.TempPathFactory, fault_model_dir: Path
) -> Iterator[dict[str, str]]:
    """Like fault_env, for a module-scoped in-process service."""
    work = tmp_path_factory.mktemp("inproc")
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("RISKGATE_"):
                mp.delenv(name)
        env = riskgate_env(work, fault_model_dir)
        for name, value in env.items():
            mp.setenv(name, value)
        yield env


@pytest.fixture(scope="session")
def real_server(
    tmp_path_factory: pytest.TempPathFactory, fault_model_dir: Path
) -> Iterator[Server]:
    """One real `riskgate serve` (1 worker, SQLite defaults) for the fault modules that need
    the real server: started once, ready, stopped by PID at the end of the session. A test may
    kill and restart it (same port, database, state and BentoML home), never change its
    environment."""
    from tests.servers import Server, free_port

    work = tmp_path_factory.mktemp("real-server")
    server = Server(
        port=free_port(),
        env=riskgate_env(work, fault_model_dir),
        work=work,
        log=work / "server.log",
    )
    server.start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
