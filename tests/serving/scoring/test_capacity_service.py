"""The service's capacity band spends a daily budget of expected fraud loss, as the simulator's
does: once the payments the raised band let through (that the model's own threshold would have
reviewed) add up to RISKGATE_CAPACITY_MAX_SHED_LOSS_PER_DAY, the model's threshold applies again.
RISKGATE_CAPACITY_PLAN=team plans the capacity from the team on shift, as `riskgate simulate`."""

from __future__ import annotations

from typing import Any

import pytest

from serving.core.settings import Settings
from serving.http.runtime import team_capacity
from tests.serving.helpers import BACKEND, high_risk, low_risk, running_service

N = 240  # the governor adapts after 200 recent payments


def _flood(monkeypatch: pytest.MonkeyPatch, budget: str | None) -> list[dict[str, Any]]:
    monkeypatch.setenv("RISKGATE_CAPACITY_ENABLED", "true")
    monkeypatch.setenv("RISKGATE_CAPACITY_REVIEWS_PER_HOUR", "1")
    monkeypatch.setenv("RISKGATE_CAPACITY_MAX_REVIEW_PROBABILITY", "0.5")
    if budget is not None:
        monkeypatch.setenv("RISKGATE_CAPACITY_MAX_SHED_LOSS_PER_DAY", budget)
    # risky payments of many sizes, so their probabilities spread over the raised band (the
    # governor adapts only after 200 payments: the ones within the band come last)
    payments = [
        {
            **(high_risk if i % 2 else low_risk)(f"cap-{i}"),
            "card_id": f"card-cap-{i}",
            "amount": 40.0 + 5.0 * (N - i),  # the smaller, less risky ones last
        }
        for i in range(N)
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
    results = _flood(monkeypatch, None)

    assert len(_shed(results, base)) > 1


def test_the_daily_budget_stops_the_raised_band_once_spent(service_env, monkeypatch, model_dir):
    from training.model import RiskModel

    base = RiskModel.load(model_dir).thresholds.review
    results = _flood(monkeypatch, "1")  # less than any one high-risk payment's expected loss

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
