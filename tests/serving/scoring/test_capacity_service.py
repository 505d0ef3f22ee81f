"""The service's capacity band spends a daily budget of expected fraud loss, as the simulator's
does: once the payments the raised band let through (that the model's own threshold would have
reviewed) add up to RISKGATE_CAPACITY_MAX_SHED_LOSS_PER_DAY, the model's threshold applies again.
RISKGATE_CAPACITY_PLAN=team plans the capacity from the team on shift, as `riskgate simulate`."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from serving.core.settings import Settings
from serving.http.runtime import team_capacity
from tests.serving.helpers import BACKEND, high_risk, low_risk, running_service
from tests.small_model import probability_of

WARMUP = 200  # the governor adapts after 200 recent payments
N = 260
CEILING = 0.5


# what makes the reference high-risk payment risky, each one removable, so that the flood can
# be made of payments whose probabilities spread over the raised band whatever the model
_RISK_SIGNALS: dict[str, Any] = {
    "timestamp": "2024-03-05T12:00:00Z",
    "ip_country": "DE",
    "shipping_country": None,
    "auth_result": "passed",
    "account_created_at": None,
    "credential_changed_at": None,
}
_AMOUNTS = (40.0, 120.0, 400.0, 1200.0, 2500.0)


def _variant(tag: str, mask: int, amount: float) -> dict[str, Any]:
    """The high-risk payment with the risk signals in `mask` taken back, at `amount`."""
    p = {**high_risk(tag), "amount": amount}
    for bit, name in enumerate(_RISK_SIGNALS):
        if mask >> bit & 1:
            if _RISK_SIGNALS[name] is None:
                p.pop(name, None)
            else:
                p[name] = _RISK_SIGNALS[name]
    return p


def _band_variants(model_dir: Path, base: float, ceiling: float) -> list[tuple[int, float]]:
    """(mask, amount) of the variants the model puts inside [base, ceiling): the payments the
    raised band lets through.

    Chosen by the real model (every payment gets fresh identifiers, so the service sees the
    features of an empty state, as here), most probable first."""
    from training.model import RiskModel

    model = RiskModel.load(model_dir)
    specs = list(itertools.product(range(2 ** len(_RISK_SIGNALS)), _AMOUNTS))
    scored = [(probability_of(model, _variant("probe", *spec)), spec) for spec in specs]
    band = sorted(((prob, s) for prob, s in scored if base <= prob < ceiling), key=lambda t: -t[0])
    if len(band) < 4:
        pytest.fail(
            f"the test model puts only {len(band)} of {len(specs)} risky variants inside the "
            f"raised band [{base:.4f}, {ceiling}): the band would let nothing through"
        )
    return [s for _, s in band]


def _flood(
    monkeypatch: pytest.MonkeyPatch, model_dir: Path, base: float, budget: str | None
) -> list[dict[str, Any]]:
    monkeypatch.setenv("RISKGATE_CAPACITY_ENABLED", "true")
    monkeypatch.setenv("RISKGATE_CAPACITY_REVIEWS_PER_HOUR", "1")
    monkeypatch.setenv("RISKGATE_CAPACITY_MAX_REVIEW_PROBABILITY", str(CEILING))
    if budget is not None:
        monkeypatch.setenv("RISKGATE_CAPACITY_MAX_SHED_LOSS_PER_DAY", budget)
    # the governor adapts only after 200 recent payments: half of them reviews, far over the
    # capacity of one review an hour; then payments within the raised band, among plain ones
    band = _band_variants(model_dir, base, CEILING)
    payments = [(high_risk if i % 2 else low_risk)(f"cap-{i}") for i in range(WARMUP)]
    payments += [
        _variant(f"cap-{i}", *band[i // 2 % len(band)]) if i % 2 else low_risk(f"cap-{i}")
        for i in range(WARMUP, N)
    ]
    results: list[dict[str, Any]] = []
    with running_service() as client:
        for lo in range(0, N, 60):
            r = client.post(
                "/score_batch", json={"payments": payments[lo : lo + 60]}, headers=BACKEND
            )
            assert r.status_code == 200, r.text
            results += r.json()["results"]
    return results


def _shed(results: list[dict[str, Any]], base: float) -> list[dict[str, Any]]:
    """Payments the raised band approved that the model's own threshold would have reviewed."""
    return [
        x
        for x in results
        if x["capacity_adjusted"] and x["decision"] == "approve" and x["probability"] >= base
    ]


def test_without_a_budget_the_raised_band_keeps_letting_payments_through(
    service_env, monkeypatch, model_dir
):
    from training.model import RiskModel

    base = RiskModel.load(model_dir).thresholds.review
    results = _flood(monkeypatch, model_dir, base, None)

    assert len(_shed(results, base)) > 1


def test_the_daily_budget_stops_the_raised_band_once_spent(service_env, monkeypatch, model_dir):
    from training.model import RiskModel

    base = RiskModel.load(model_dir).thresholds.review
    # a budget of 1 is less than any one risky payment's expected loss
    results = _flood(monkeypatch, model_dir, base, "1")

    shed = _shed(results, base)
    assert len(shed) == 1, shed
    after = results[results.index(shed[0]) + 1 :]
    risky_after = [x for x in after if x["probability"] >= base]
    assert risky_after, "the flood had no risky payment after the budget was spent"
    assert all(x["decision"] != "approve" for x in risky_after)
    assert all(x["review_threshold"] == pytest.approx(base) for x in after)


def test_a_negative_or_infinite_budget_is_refused():
    with pytest.raises(ValueError, match="capacity_max_shed_loss_per_day"):
        Settings(capacity_max_shed_loss_per_day=-1)
    with pytest.raises(ValueError, match="capacity_max_shed_loss_per_day"):
        Settings(capacity_max_shed_loss_per_day=float("inf"))


def test_the_team_plan_follows_the_shifts_and_the_sla():
    settings = Settings(team_shifts="08-20:3,20-08:1", team_handling_minutes=4, sla_minutes=15)
    at = team_capacity(settings)
    day = 20_000 * 86_400.0  # a midnight (UTC)

    busy, night = at(day + 10 * 3_600), at(day + 2 * 3_600)
    assert busy > night > 0
    # one reviewer at 80% of its time would be 12 an hour; the SLA allows fewer
    assert night < 12.0
    assert busy <= 3 * 12.0
