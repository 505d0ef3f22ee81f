"""The surge5 scenario's promotion day replayed through a real `riskgate serve` with the
capacity-aware band on: /metrics shows the band rising once the surge fills the window.

The replay sends the day's first payments as fast as the service takes them, so a few hundred
payments arrive in seconds: tens of thousands an hour on the service's clock. The staffed
capacity is set to one review an hour to match that compression (any review inflow exceeds
it); the governor waits for 200 recent payments before it adapts, as in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.common import payment_dicts
from data.simulator import SimulationConfig, simulate
from serving.review.simulate.scenarios import Scenario, busiest_day, simulation_config
from serving.scoring.capacity import CapacityConfig
from tests.servers import Server, free_port
from tests.serving.helpers import BACKEND, KEY_SPEC
from training.model import RiskModel

pytestmark = pytest.mark.slow

PAYMENTS, BATCH = 300, 50


def _scenario_day() -> list[dict[str, Any]]:
    """The first payments of the 5x promotion day of a small surge5 sample, in time order."""
    cfg = simulation_config(SimulationConfig(rows=3_000, days=14, seed=5), Scenario("surge5"))
    frame = simulate(cfg)
    day = busiest_day(frame["timestamp"])
    on_day = frame[frame["timestamp"].dt.floor("D") == day]
    on_day = on_day.sort_values(["timestamp", "transaction_id"], kind="stable")
    assert len(on_day) >= PAYMENTS
    return payment_dicts(on_day.head(PAYMENTS))


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("scenario-server")
    env = {
        "RISKGATE_API_KEYS": KEY_SPEC,
        "RISKGATE_MODEL_DIR": str(model_dir),
        "RISKGATE_DB_URL": f"sqlite:///{work / 'riskgate.db'}",
        "RISKGATE_STATE_PATH": str(work / "state.db"),
        "RISKGATE_MODEL_DEADLINE_MS": "5000",
        "RISKGATE_CAPACITY_ENABLED": "true",
        "RISKGATE_CAPACITY_REVIEWS_PER_HOUR": "1",
    }
    srv = Server(port=free_port(), env=env, work=work, log=work / "server.log")
    srv.start()
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def _metrics(c: httpx.Client) -> dict[str, float]:
    r = c.get("/metrics")
    assert r.status_code == 200, r.text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            if s.name in ("riskgate_capacity_adjusted_total", "riskgate_review_threshold"):
                out[s.name] = out.get(s.name, 0.0) + s.value
    return out


def test_the_capacity_band_rises_during_the_replayed_surge(server: Server, model_dir: Path) -> None:
    payments = _scenario_day()
    model = RiskModel.load(model_dir)
    base = model.thresholds.review
    ceiling = 50.0 if model.thresholds.review_by == "saving" else 0.2  # the service defaults
    results: list[dict[str, Any]] = []
    seen: list[dict[str, float]] = []
    with httpx.Client(base_url=server.base, timeout=60.0) as c:
        for lo in range(0, PAYMENTS, BATCH):
            r = c.post(
                "/score_batch", json={"payments": payments[lo : lo + BATCH]}, headers=BACKEND
            )
            assert r.status_code == 200, r.text
            results += r.json()["results"]
            seen.append(_metrics(c))
    assert len(results) == PAYMENTS
    minimum = CapacityConfig().min_payments
    early = results[:minimum]
    # below the governor's minimum of recent payments nothing adapts
    assert not any(x["capacity_adjusted"] for x in early)
    assert all(x["review_threshold"] == pytest.approx(base) for x in early)
    assert seen[minimum // BATCH - 1].get("riskgate_capacity_adjusted_total", 0.0) == 0.0
    # then the surge's inflow exceeds the staffed capacity: the band goes up, to the ceiling
    adjusted = [x for x in results if x["capacity_adjusted"]]
    assert adjusted, "the capacity band never rose during the surge"
    assert all(base < x["review_threshold"] <= max(ceiling, base) for x in adjusted)
    final = seen[-1]
    assert final["riskgate_capacity_adjusted_total"] == len(adjusted)
    assert final["riskgate_review_threshold"] == pytest.approx(results[-1]["review_threshold"])
    assert final["riskgate_review_threshold"] > base
