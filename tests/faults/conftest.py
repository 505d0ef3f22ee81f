"""Fault and load tests: a small trained model, per-test service environments, real servers.

Everything runs on 127.0.0.1, every load is bounded in count and in time, and every server a
test starts is stopped by its PID (see tests/servers.py).
"""

from __future__ import annotations

import atexit
import dataclasses
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# BentoML reads its home when first imported: a scratch directory before anything imports it
# (as tests/serving/conftest.py does; whichever conftest runs first wins, both are scratch).
if "bentoml" not in sys.modules:
    _BENTOML_HOME = tempfile.mkdtemp(prefix="riskgate-faults-bentoml-")
    atexit.register(shutil.rmtree, _BENTOML_HOME, ignore_errors=True)
    os.environ["BENTOML_HOME"] = _BENTOML_HOME
os.environ["BENTOML_DO_NOT_TRACK"] = "true"

from data.simulator import SimulationConfig, simulate
from tests.serving.helpers import KEY_SPEC, high_risk, low_risk
from training.config import SearchSettings, TrainConfig
from training.model import RiskModel, Thresholds
from training.pipeline import train

if TYPE_CHECKING:
    from tests.servers import Server

# Smaller than the serving suite's model (these tests are about faults, not model quality).
ROWS, DAYS, SEED = 20_000, 40, 11


def probability_of(model: RiskModel, payment: dict[str, Any]) -> float:
    """The model's probability for a payment scored against an empty online state."""
    from features.online import OnlineFeatures, prepare
    from features.registry import select
    from features.state import MemoryState
    from serving.core.schemas import PaymentIn

    online = OnlineFeatures(MemoryState(), select(model.features))
    x = online.compute(prepare(PaymentIn.model_validate(payment).contract()))
    return float(model.predict_proba(x.reshape(1, -1))[0])


@pytest.fixture(scope="session")
def fault_model() -> RiskModel:
    """A trained model whose review threshold separates the two reference payments.

    The threshold sits at the geometric mean of the low- and high-risk reference payments'
    probabilities, so `low_risk()` is approved and `high_risk()` held for review (as in
    tests/serving/conftest.py); the model never declines on its own (decline threshold > 1).
    """
    model = train(
        simulate(SimulationConfig(rows=ROWS, days=DAYS, seed=SEED)),
        TrainConfig(search=SearchSettings(trials=1)),
    ).model
    p_low, p_high = probability_of(model, low_risk()), probability_of(model, high_risk())
    if not p_high > 4 * p_low:
        pytest.fail(f"test model does not separate the references ({p_low:.5f}, {p_high:.5f})")
    review = math.sqrt(p_low * p_high)
    return dataclasses.replace(model, thresholds=Thresholds(review=review, decline=1.01))


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
