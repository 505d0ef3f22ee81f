"""Expected settlement of a held payment: queue order, staffed capacity, quantiles (pure)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from serving.review import queue
from serving.review.settlement import (
    CapacityCurve,
    OpenCase,
    expected_settlement,
    finish_quantiles,
    handling_cv2,
    parse_shifts,
    positions,
    queue_order,
    team_of,
    team_staffing,
)
from serving.review.team import Shift, TeamConfig
from serving.store import db
from tests.serving.helpers import open_case

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def constant(reviewers: float):
    return lambda t: np.full(np.shape(t), float(reviewers))


def test_queue_order_is_overdue_first_then_money_at_risk_then_age():
    old = NOW - timedelta(minutes=30)
    cases = [
        OpenCase(
            1,
            priority=10.0,
            created_at=NOW - timedelta(minutes=1),
            sla_due=NOW + timedelta(minutes=14),
        ),
        OpenCase(2, priority=1.0, created_at=old, sla_due=old + timedelta(minutes=15)),  # overdue
        OpenCase(
            3,
            priority=50.0,
            created_at=NOW - timedelta(minutes=2),
            sla_due=NOW + timedelta(minutes=13),
        ),
        OpenCase(
            4,
            priority=10.0,
            created_at=NOW - timedelta(minutes=5),
            sla_due=NOW + timedelta(minutes=10),
        ),
    ]
    assert queue_order(cases, NOW) == [2, 3, 4, 1]
    assert positions(cases, NOW) == {2: 1, 3: 2, 4: 3, 1: 4}


def test_queue_order_agrees_with_the_reviewers_queue(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'q.db'}")
    db.create_schema(engine)
    for i, prio in enumerate([3.0, 9.0, 1.0, 9.0, 5.0]):
        open_case(engine, f"t{i}", amount=10.0 * (i + 1), priority=prio, reasons=[])
    now = datetime.now(UTC)
    listed, _ = queue.list_cases(engine, queue.CaseFilter(limit=50), now)
    with engine.connect() as conn:
        rows = conn.execute(db.cases.select()).all()
    cases = [
        OpenCase(r.id, r.priority, r.created_at.replace(tzinfo=UTC), r.sla_due.replace(tzinfo=UTC))
        for r in rows
    ]
    assert queue_order(cases, now) == [c["id"] for c in listed]


def test_capacity_curve_counts_cases_finished_by_the_staffed_team():
    curve = CapacityCurve.build(NOW, constant(2), mean_handling_min=5.0, horizon_min=600)
    # two reviewers, five minutes a case: 0.4 cases a minute
    assert curve.minutes_until(4.0) == pytest.approx(10.0)
    assert curve.minutes_until(0.0) == 0.0
    assert curve.minutes_until(1e6) is None  # beyond the horizon: unknown, not a guess


def test_nobody_on_shift_pushes_settlement_past_the_gap():
    start = NOW.timestamp()

    def gap(t):  # nobody for the first hour (a maintenance window), then two reviewers
        return np.where(np.asarray(t) < start + 3600, 0.0, 2.0)

    staffed = CapacityCurve.build(NOW, constant(2), 5.0, horizon_min=600)
    paused = CapacityCurve.build(NOW, gap, 5.0, horizon_min=600)
    a = expected_settlement(3, staffed, 0.3)
    b = expected_settlement(3, paused, 0.3)
    assert b.p50_minutes == pytest.approx(a.p50_minutes + 60.0, abs=1.0)
    assert b.p90_minutes == pytest.approx(a.p90_minutes + 60.0, abs=1.0)


def test_quantiles_grow_with_queue_position_and_p90_is_above_p50():
    curve = CapacityCurve.build(NOW, constant(1), 4.0, horizon_min=24 * 60)
    cv2 = handling_cv2(TeamConfig())
    prev = 0.0
    for k in (1, 2, 5, 20):
        p50, p90 = finish_quantiles(k, curve, cv2)
        assert p50 is not None
        assert p90 is not None
        assert prev < p50 < p90
        # the k-th case of one reviewer finishes near k mean handling times
        assert p50 == pytest.approx(4.0 * k, rel=0.25)
        prev = p50


def test_quantiles_match_a_simulated_single_reviewer():
    """p50 / p90 of the k-th finish against lognormal handling times drawn like team.py's."""
    team = TeamConfig(shifts=(Shift(0, 0, 1),))
    rng = np.random.default_rng(3)
    k = 6
    draws = rng.lognormal(math.log(team.handling_median_min), team.handling_sigma, (20_000, k))
    finish = draws.sum(axis=1)
    curve = CapacityCurve.build(NOW, team_staffing(team), team.mean_handling_min, 24 * 60)
    p50, p90 = finish_quantiles(k, curve, handling_cv2(team))
    assert p50 == pytest.approx(np.percentile(finish, 50), rel=0.05)
    assert p90 == pytest.approx(np.percentile(finish, 90), rel=0.05)


def test_shifts_parse_and_a_bad_entry_is_named():
    assert parse_shifts("08-20:2,20-08:1") == (Shift(8, 20, 2), Shift(20, 8, 1))
    assert team_of("00-00:3", 5.0, 15.0).on_shift(NOW.timestamp()) == 3
    with pytest.raises(ValueError, match="shift entry 2"):
        parse_shifts("08-20:2,20-xx:1")
    with pytest.raises(ValueError, match="no shift"):
        parse_shifts(" , ")
