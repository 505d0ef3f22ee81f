"""One small trained model for the fault and scale-out suites (trained once per test run).

Both suites want the same thing: a real model whose review threshold separates the two reference
payments, so `low_risk()` is approved and `high_risk()` held for review deterministically; the
decline threshold is above 1 (the model never declines on its own). Training it once instead of
once per suite keeps CI inside its time budget.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

from training.model import RiskModel

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


@functools.cache
def small_model() -> RiskModel:
    import pytest

    from data.simulator import SimulationConfig, simulate
    from tests.serving.helpers import high_risk, low_risk
    from training.config import SearchSettings, TrainConfig
    from training.model import Thresholds
    from training.pipeline import train

    model = train(
        simulate(SimulationConfig(rows=ROWS, days=DAYS, seed=SEED)),
        TrainConfig(search=SearchSettings(trials=1)),
    ).model
    p_low, p_high = probability_of(model, low_risk()), probability_of(model, high_risk())
    if not p_high > 4 * p_low:
        pytest.fail(f"test model does not separate the references ({p_low:.5f}, {p_high:.5f})")
    review = math.sqrt(p_low * p_high)
    return dataclasses.replace(model, thresholds=Thresholds(review=review, decline=1.01))
