"""The team lead's numbers (pure): time to decision, SLA breaches, approvals, accuracy against
later labels with intervals, and demand vs staffed supply."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from serving.review import stats
from serving.review.team import Shift, TeamConfig

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _row(i: int, wait_min: float, decision: str, label: bool | None, **kw: object) -> dict:
    created = T0 + timedelta(minutes=i)
    return {
        "case_id": i,
        "queue": kw.get("queue", "residual"),
        "decided_by": kw.get("by", "alice"),
        "created_at": created,
        "decided_at": created + timedelta(minutes=wait_min),
        "sla_due": created + timedelta(minutes=15),
        "decision": decision,
        "amount": kw.get("amount", 100.0),
        "label_fraud": label,
        "explain_arm": kw.get("arm"),
    }


def test_approved_then_charged_back_and_declined_then_genuine_count_as_wrong():
    assert stats.verdict("approve", True) is False
    assert stats.verdict("approve", False) is True
    assert stats.verdict("decline", False) is False
    assert stats.verdict("decline_fraud", True) is True
    assert stats.verdict("approve", None) is None


def test_per_queue_and_reviewer_per_day():
    rows = [
        _row(1, 2, "approve", None),
        _row(2, 4, "approve", True, amount=900.0),  # charged back later: wrong, 900 lost
        _row(3, 20, "decline_fraud", True),  # past the 15-minute SLA
        _row(4, 10, "decline", False, by="bob"),  # declined, shown genuine: wrong
        _row(5, 6, "approve", None, queue="big", by="bob"),
    ]
    out = stats.summarise(rows)
    residual = next(g for g in out["by_queue"] if g["queue"] == "residual")
    assert residual["decided"] == 4
    assert residual["median_seconds"] == pytest.approx(7 * 60)  # of 2, 4, 10, 20 minutes
    assert residual["p90_seconds"] == pytest.approx((10 + 0.7 * 10) * 60)
    assert residual["sla_breaches"] == 1
    assert residual["approved_share"] == pytest.approx(0.5)
    assert (residual["labelled"], residual["wrong"]) == (3, 2)
    assert residual["accuracy"] == pytest.approx(1 / 3)
    assert residual["lost_amount"] == pytest.approx(900.0)
    bob = next(g for g in out["by_reviewer"] if g["reviewer"] == "bob")
    assert (bob["decided"], bob["wrong"], bob["day"]) == (2, 1, "2026-12-01")


def test_per_arm_with_confidence_intervals():
    rows = [_row(i, 3 + i % 3, "approve", i % 5 == 0, arm="score") for i in range(40)]
    rows += [_row(100 + i, 5, "decline_fraud", True, arm="score+facts") for i in range(10)]
    arms = {a["arm"]: a for a in stats.summarise(rows)["by_arm"]}
    score = arms["score"]
    assert score["labelled"] == 40
    assert score["accuracy"] == pytest.approx(32 / 40)
    low, high = score["accuracy_ci95"]
    assert low < 0.8 < high
    assert 0 < high - low < 0.3
    assert arms["score+facts"]["accuracy_ci95"][1] == pytest.approx(1.0)
    assert arms["score"]["lost_per_case"] == pytest.approx(8 * 100.0 / 40)


def test_wilson_interval_is_sound_at_the_edges():
    assert stats.wilson(0, 0) is None
    low, high = stats.wilson(0, 10)  # type: ignore[misc]
    assert low == 0.0
    assert 0.2 < high < 0.35


def test_outlook_compares_demand_with_staffed_supply():
    now = datetime(2026, 12, 8, 9, 30, tzinfo=UTC)
    # 14 cases arrived at 09:xx over the last 7 days: 2 per day expected in the 09:00 hour
    created = [(now - timedelta(days=d, minutes=10), "residual") for d in range(1, 8)] * 2
    team = TeamConfig(shifts=(Shift(8, 20, 2), Shift(20, 8, 0)))
    out = stats.outlook(created, {"residual": 5}, now, team, hours=2)
    first = out["hours"][0]
    assert first["demand"] == pytest.approx(2.0)
    assert first["reviewers_on_shift"] == 2
    assert first["supply"] == pytest.approx(float(team.capacity_per_hour(now.timestamp())))
    assert out["backlog_total"] == 5
    assert out["demand_total"] == pytest.approx(5 + 2.0)
