"""A small trained model shared by the serving tests, and a fresh service per test.

The model is trained once a session on simulated data and served from a local artifact
directory (RISKGATE_MODEL_DIR), so no MLflow registry is needed. Every test gets its own
database and online-state file.
"""

from __future__ import annotations

import atexit
import dataclasses
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from data.simulator import SimulationConfig, simulate
from tests.serving.helpers import KEY_SPEC, high_risk, low_risk, running_service
from training.config import SearchSettings, TrainConfig
from training.model import RiskModel, Thresholds
from training.pipeline import train

# BentoML reads its home when first imported: point it at a scratch directory before any test
# imports serving.http.service (the imports above do not load BentoML), so the tests never write
# under the user's ~/bentoml.
_BENTOML_HOME = tempfile.mkdtemp(prefix="riskgate-test-bentoml-")
atexit.register(shutil.rmtree, _BENTOML_HOME, ignore_errors=True)
os.environ["BENTOML_HOME"] = _BENTOML_HOME
os.environ["BENTOML_DO_NOT_TRACK"] = "true"

ROWS, DAYS, SEED = 40_000, 60, 11
# Generous: a loaded test machine must not push the model past its deadline into the fallback
# (the fallback would also approve small and review large payments, hiding a broken model path).
DEADLINE_MS = "5000"


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
def trained_model() -> RiskModel:
    frame = simulate(SimulationConfig(rows=ROWS, days=DAYS, seed=SEED))
    return train(frame, TrainConfig(search=SearchSettings(trials=1))).model


@pytest.fixture(scope="session")
def reference_probabilities(trained_model: RiskModel) -> tuple[float, float]:
    p_low = probability_of(trained_model, low_risk())
    p_high = probability_of(trained_model, high_risk())
    if not p_high > 4 * p_low:
        pytest.fail(
            f"the test model does not separate the reference payments (low {p_low:.5f}, "
            f"high {p_high:.5f}): the approve/review tests would be meaningless"
        )
    return p_low, p_high


@pytest.fixture(scope="session")
def model_dir(
    trained_model: RiskModel,
    reference_probabilities: tuple[float, float],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """The trained artifact with its review threshold moved between the two reference payments.

    The thresholds the pipeline picks depend on the simulated review capacity, so on this small
    data set either payment could fall on either side. Placing the review threshold at the
    geometric mean of the two payments' probabilities (they differ by a factor, so the middle is
    taken on the log scale) makes "low-risk -> approve, high-risk -> review" deterministic while
    still going through the real model. The decline threshold stays above 1: the model never
    declines on its own here, as with the pipeline's default.
    """
    p_low, p_high = reference_probabilities
    review = math.sqrt(p_low * p_high)
    model = dataclasses.replace(trained_model, thresholds=Thresholds(review=review, decline=1.01))
    return model.save(tmp_path_factory.mktemp("model") / "artifact")


@pytest.fixture
def service_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_dir: Path) -> dict[str, str]:
    """RISKGATE_* for one test: its own database and state; nothing inherited from the shell."""
    for name in list(os.environ):
        if name.startswith("RISKGATE_"):
            monkeypatch.delenv(name)
    env = {
        "RISKGATE_API_KEYS": KEY_SPEC,
        "RISKGATE_MODEL_DIR": str(model_dir),
        "RISKGATE_DB_URL": f"sqlite:///{tmp_path / 'riskgate.db'}",
        "RISKGATE_STATE_PATH": str(tmp_path / "state.db"),
        "RISKGATE_MODEL_DEADLINE_MS": DEADLINE_MS,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def client(service_env: dict[str, str]) -> Iterator[Any]:
    with running_service() as c:
        yield c


@pytest.fixture
def runtime(client: Any) -> Any:
    """The runtime the running service built (engine, holder, scorer...)."""
    from serving.http.service import http_app

    return http_app.state.runtime
