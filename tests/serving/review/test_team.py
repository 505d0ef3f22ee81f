"""The review-team model: exact waits on hand-made arrivals, shifts, priority, determinism."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from serving.review.team import (
    DAY_S,
    HOUR_S,
    MIN_S,
    STOPPABLE,
    Absence,
    Shift,
    TeamConfig,
    binned_depth,
    capacity_aware_decisions,
    evaluate_policy,
    replay,
    reviews_to_match,
    simulate_queue,
    stoppable_mask,
    to_seconds,
)
from serving.scoring.capacity import CapacityConfig, CapacityGovernor

ALL_DAY = (Shift(0, 0, 1),)
DAY_ONLY = (Shift(8, 20, 1),)
D0 = 10 * DAY_S  # some midnight, 1970-01-11


def _arrivals(minutes: list[float], priority: list[float] | None = None) -> pd.DataFrame:
    df = pd.DataFrame({"time": D0 + np.asarray(minutes, dtype=np.float64) * MIN_S})
    if priority is not None:
        df["priority"] = priority
    return df


def test_one_reviewer_fifo_gives_exact_waits() -> None:
    team = TeamConfig(shifts=ALL_DAY)
    q = simulate_queue(
        _arrivals([0, 1, 2, 30]), team, False, handling_minutes=np.array([5.0, 5.0, 5.0, 2.0])
    )
    c = q.cases
    assert (c["wait"] / MIN_S).tolist() == [0.0, 4.0, 8.0, 0.0]
    assert (c["hold"] / MIN_S).tolist() == [5.0, 9.0, 13.0, 2.0]
    assert ((c["start"] - D0) / MIN_S).tolist() == [0.0, 5.0, 10.0, 30.0]
    assert c["reviewer"].tolist() == [0, 0, 0, 0]
    assert q.series["queue_depth"].max() == 2


def test_degenerate_lognormal_gives_the_median() -> None:
    team = TeamConfig(shifts=ALL_DAY, handling_median_min=5.0, handling_sigma=0.0)
    c = simulate_queue(_arrivals([0, 1]), team, False).cases
    assert c["handling"].to_numpy() / MIN_S == pytest.approx([5.0, 5.0])
    assert c["wait"].iloc[1] / MIN_S == pytest.approx(4.0)


def test_two_reviewers_share_the_queue() -> None:
    team = TeamConfig(shifts=(Shift(0, 0, 2),))
    c = simulate_queue(
        _arrivals([0, 0, 0]), team, False, handling_minutes=np.array([10.0, 4.0, 3.0])
    ).cases
    # two start at once; the third goes to whoever frees first (the 4-minute case's reviewer)
    assert (c["wait"] / MIN_S).tolist() == [0.0, 0.0, 4.0]
    assert c["reviewer"].tolist() == [0, 1, 1]


def test_priority_order_takes_the_most_money_at_risk_first() -> None:
    team = TeamConfig(shifts=ALL_DAY)
    prio = [1.0, 2.0, 50.0, 3.0, 400.0]
    arr = _arrivals([0, 0.1, 0.2, 0.3, 0.4], prio)
    handling = np.full(5, 5.0)
    fifo = simulate_queue(arr, team, False, handling_minutes=handling).cases
    best = simulate_queue(arr, team, True, handling_minutes=handling).cases
    # the first case is in hand before the others arrive; then by priority
    assert best.sort_values("start").index.tolist() == [0, 4, 2, 3, 1]
    assert fifo.sort_values("start").index.tolist() == [0, 1, 2, 3, 4]
    at_risk = np.asarray(prio)
    assert (at_risk * best["wait"]).sum() < (at_risk * fifo["wait"]).sum()


def test_priority_beats_fifo_for_money_at_risk_on_a_busy_day() -> None:
    rng = np.random.default_rng(5)
    n = 300
    minutes = np.sort(rng.uniform(0, 12 * 60, n))  # ~25 an hour for one reviewer at 4.5 min
    prio = rng.lognormal(3, 1.5, n)
    team = TeamConfig(shifts=ALL_DAY, seed=9)
    arr = _arrivals(list(minutes), list(prio))
    fifo = simulate_queue(arr, team, False).cases
    best = simulate_queue(arr, team, True).cases
    assert (prio * best["wait"]).sum() < 0.7 * (prio * fifo["wait"]).sum()
    # same work, in another order
    assert best["handling"].tolist() == fifo["handling"].tolist()


def test_nobody_works_off_shift() -> None:
    team = TeamConfig(shifts=DAY_ONLY)
    # 02:00 waits for 08:00; 19:58 starts at once and finishes after 20:00 (overtime);
    # 19:59 arrives while the only reviewer is busy and waits for the next morning
    arr = _arrivals([2 * 60, 19 * 60 + 58, 19 * 60 + 59])
    c = simulate_queue(arr, team, False, handling_minutes=np.array([5.0, 5.0, 5.0])).cases
    assert c["start"].iloc[0] == D0 + 8 * HOUR_S
    assert c["wait"].iloc[0] == 6 * HOUR_S
    assert c["start"].iloc[1] == D0 + (19 * 60 + 58) * MIN_S
    assert c["end"].iloc[1] == D0 + (20 * 60 + 3) * MIN_S
    assert c["start"].iloc[2] == D0 + DAY_S + 8 * HOUR_S
    assert DAY_ONLY[0].covers(c["start"].to_numpy()).all()


def test_night_shift_wraps_midnight() -> None:
    team = TeamConfig(shifts=(Shift(8, 20, 0), Shift(20, 8, 1)))
    c = simulate_queue(
        _arrivals([3 * 60, 12 * 60]), team, False, handling_minutes=np.array([1.0, 1.0])
    ).cases
    assert c["wait"].iloc[0] == 0.0  # 03:00 is night: served at once
    assert c["start"].iloc[1] == D0 + 20 * HOUR_S  # noon waits for the night shift
    assert team.on_shift(np.array([D0 + 3 * HOUR_S, D0 + 12 * HOUR_S])).tolist() == [1, 0]


def test_utilisation_is_a_share_of_on_shift_time() -> None:
    team = TeamConfig(shifts=DAY_ONLY)
    # one 60-minute case in a 12-hour shift: 1/12; the period is that one day
    q = simulate_queue(
        _arrivals([9 * 60]), team, False, handling_minutes=np.array([60.0]), period=(D0, D0 + DAY_S)
    )
    assert q.utilisation == pytest.approx(1 / 12)
    # overloaded: far more work than the shifts hold, overtime at every shift end
    rng = np.random.default_rng(1)
    minutes = np.sort(rng.uniform(0, 3 * 24 * 60, 2_000))
    team2 = TeamConfig(shifts=(Shift(8, 20, 2), Shift(20, 8, 1)), seed=4)
    q2 = simulate_queue(_arrivals(list(minutes)), team2, False, period=(D0, D0 + 3 * DAY_S))
    assert 0.0 <= q2.utilisation <= 1.0
    assert q2.utilisation > 0.95
    assert 0.0 <= q2.utilisation_between(team2, D0, D0 + DAY_S) <= 1.0
    # light load
    q3 = simulate_queue(_arrivals([60, 600]), team2, False, period=(D0, D0 + DAY_S))
    assert 0.0 < q3.utilisation < 0.05


def test_same_seed_same_result_and_another_seed_differs() -> None:
    rng = np.random.default_rng(2)
    minutes = np.sort(rng.uniform(0, 24 * 60, 200))
    arr = _arrivals(list(minutes), list(rng.random(200)))
    a = simulate_queue(arr, TeamConfig(seed=3), True)
    b = simulate_queue(arr, TeamConfig(seed=3), True)
    c = simulate_queue(arr, TeamConfig(seed=4), True)
    pd.testing.assert_frame_equal(a.cases, b.cases)
    pd.testing.assert_frame_equal(a.series, b.series)
    assert not a.cases["handling"].equals(c.cases["handling"])


def test_datetime_arrivals_and_an_empty_queue() -> None:
    ts = pd.Series(pd.to_datetime(["2024-03-08 09:00", "2024-03-08 09:01"], utc=True))
    assert to_seconds(ts)[1] - to_seconds(ts)[0] == 60.0
    q = simulate_queue(pd.DataFrame({"time": ts}), TeamConfig(), False)
    assert len(q.cases) == 2
    empty = simulate_queue(pd.DataFrame({"time": []}), TeamConfig(), False)
    assert empty.cases.empty
    assert empty.busy_seconds == 0.0


def test_team_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="at least one reviewer"):
        TeamConfig(shifts=(Shift(8, 20, 0),))
    with pytest.raises(ValueError, match="accuracy"):
        TeamConfig(accuracy=1.5)
    with pytest.raises(ValueError, match="hour"):
        Shift(25, 3, 1)


def _frame() -> pd.DataFrame:
    # 6 payments in one morning: two fraud (amounts 100 and 40), four good
    return pd.DataFrame(
        {
            "time": D0 + np.array([9.0, 9.1, 9.2, 9.3, 9.4, 9.5]) * HOUR_S,
            "is_fraud": [0, 1, 0, 1, 0, 0],
            "amount": [10.0, 100.0, 20.0, 40.0, 30.0, 50.0],
            "priority": [0.1, 90.0, 1.0, 20.0, 0.5, 0.2],
        }
    )


def test_evaluate_policy_figures() -> None:
    frame = _frame()
    decisions = ["approve", "review", "review", "approve", "approve", "decline"]
    team = TeamConfig(shifts=ALL_DAY, handling_median_min=5.0, handling_sigma=0.0)
    f = evaluate_policy(decisions, frame, team, priority_order=True)
    assert f["review_volume"] == 2
    assert f["good_settled_instantly"] == 2  # payments 0 and 4; 5 was declined, 2 held
    assert f["good_settled_instantly_share"] == pytest.approx(0.5)
    assert f["fraud_caught_count"] == 1
    assert f["fraud_caught_amount"] == 100.0
    assert f["fraud_loss"] == 40.0
    assert f["good_declined"] == 1
    assert f["hold_p50_min"] == pytest.approx(5.0)  # the one good payment held, no wait
    assert f["sla_breaches"] == 0
    assert 0.0 <= f["reviewer_utilisation"] <= 1.0
    # a reviewer who recognises no fraud lets the reviewed fraud through
    blind = TeamConfig(shifts=ALL_DAY, accuracy=0.0)
    assert evaluate_policy(decisions, frame, blind)["fraud_loss"] == 140.0


def test_replay_checks_its_input() -> None:
    frame = _frame()
    with pytest.raises(ValueError, match="unknown decision"):
        replay(["hold"] * 6, frame, TeamConfig(), priority_order=False)
    with pytest.raises(ValueError, match="decisions for"):
        replay(["approve"], frame, TeamConfig(), priority_order=False)
    unlabelled = frame.assign(is_fraud=[0, np.nan, 0, 1, 0, 0])
    with pytest.raises(ValueError, match="is_fraud"):
        replay(["approve"] * 6, unlabelled, TeamConfig(), priority_order=False)


def test_sla_breaches_and_surge_figures() -> None:
    # 10 cases at once, one reviewer, 5 minutes each: holds 5, 10, ..., 50 minutes
    frame = pd.DataFrame(
        {
            "time": np.full(10, D0 + 10 * HOUR_S),
            "is_fraud": np.zeros(10),
            "amount": np.ones(10),
        }
    )
    team = TeamConfig(shifts=ALL_DAY, handling_median_min=5.0, handling_sigma=0.0)
    f = evaluate_policy(["review"] * 10, frame, team, surge=np.ones(10, dtype=bool))
    assert f["sla_breaches"] == 7  # 20..50 minutes (15 is within the SLA)
    assert f["peak_queue_depth"] == 9
    assert f["hold_max_min"] == pytest.approx(50.0)
    assert f["hold_p95_surge_min"] == pytest.approx(f["hold_p95_min"])


def test_binned_depth_carries_the_state_into_each_bin() -> None:
    series = pd.DataFrame(
        {"time": [100.0, 250.0, 700.0], "queue_depth": [3, 5, 0], "busy": [1, 1, 0]}
    )
    b = binned_depth(series, 0.0, 1_000.0, 200.0)
    assert b["queue_depth"].tolist() == [3, 5, 5, 5, 0]


def test_capacity_aware_raises_the_review_threshold_only_when_over_capacity() -> None:
    rng = np.random.default_rng(0)
    n = 5_000
    t = np.sort(rng.uniform(0, 5 * HOUR_S, n))  # 1,000 payments an hour
    p = rng.beta(0.5, 30, n)
    review, decline = 0.02, 0.9
    fixed = np.where(p >= decline, "decline", np.where(p >= review, "review", "approve"))
    ample = CapacityConfig(enabled=True, reviews_per_hour=10_000.0, max_review_threshold=0.5)
    same, adjusted, _ = capacity_aware_decisions(t, p, review, decline, ample)
    assert (same == fixed).all()
    assert not adjusted.any()
    tight = CapacityConfig(enabled=True, reviews_per_hour=20.0, max_review_threshold=0.5)
    fewer, adjusted, used = capacity_aware_decisions(t, p, review, decline, tight)
    assert (fewer == "review").sum() < (fixed == "review").sum()
    assert adjusted.any()
    assert (used >= review).all()
    assert ((fewer == "decline") == (fixed == "decline")).all()  # never touches declines
    # a time-varying capacity (none at all in the first hour: nothing adapts below the minimum)
    varying, _, _ = capacity_aware_decisions(
        t, p, review, decline, tight, capacity_at=lambda s: 5.0 if s < 2 * HOUR_S else 1e6
    )
    late = t >= 3 * HOUR_S  # one window after the capacity came back
    assert (varying[late] == fixed[late]).all()


def test_reviews_to_match() -> None:
    score = np.array([0.9, 0.1, 0.8, 0.3])
    fraud = np.array([True, True, False, True])
    amount = np.array([10.0, 50.0, 5.0, 20.0])
    assert reviews_to_match(score, fraud, amount, 10.0) == 1
    assert reviews_to_match(score, fraud, amount, 30.0) == 3  # 0.9, 0.8, 0.3
    assert reviews_to_match(score, fraud, amount, 80.0) == 4
    assert reviews_to_match(score, fraud, amount, 81.0) == 5  # unreachable
    assert reviews_to_match(score, fraud, amount, 0.0) == 0


def test_reviewer_approves_fraud_a_review_cannot_stop() -> None:
    # a friendly-fraud case (the cardholder's own purchase), a stolen-card case, a good payment
    arr = _arrivals([0, 10, 20]).assign(is_fraud=[1, 1, 0], **{STOPPABLE: [False, True, True]})
    team = TeamConfig(shifts=ALL_DAY)
    c = simulate_queue(arr, team, False, handling_minutes=np.array([3.0, 3.0, 3.0])).cases
    assert c["declined"].tolist() == [False, True, False]
    # the column changes only the verdict: the same work, in the same order
    plain = simulate_queue(arr.drop(columns=STOPPABLE), team, False).cases
    assert plain["declined"].tolist() == [True, True, False]
    with_col = simulate_queue(arr, team, False).cases
    assert with_col["handling"].tolist() == plain["handling"].tolist()
    # accuracy still applies to the fraud a review can stop
    blind = TeamConfig(shifts=ALL_DAY, accuracy=0.0)
    assert not simulate_queue(arr, blind, False).cases["declined"].any()


def test_stoppable_column_missing_or_na_means_stoppable() -> None:
    assert stoppable_mask(pd.DataFrame({"time": [1.0, 2.0]})).tolist() == [True, True]
    na = pd.DataFrame({STOPPABLE: pd.array([False, pd.NA, True], dtype="boolean")})
    assert stoppable_mask(na).tolist() == [False, True, True]
    arr = _arrivals([0, 10]).assign(is_fraud=[1, 1], **{STOPPABLE: [None, False]})
    c = simulate_queue(arr, TeamConfig(shifts=ALL_DAY), False).cases
    assert c["declined"].tolist() == [True, False]


def test_fraud_caught_counts_only_fraud_actually_stopped() -> None:
    # payment 1 (100) is friendly fraud, payment 3 (40) a stolen card; both reviewed
    frame = _frame().assign(**{STOPPABLE: [True, False, True, True, True, True]})
    decisions = ["approve", "review", "approve", "review", "approve", "approve"]
    team = TeamConfig(shifts=ALL_DAY, handling_median_min=5.0, handling_sigma=0.0)
    f = evaluate_policy(decisions, frame, team, priority_order=True)
    assert f["fraud_reviewed"] == 2
    assert f["fraud_reviewed_amount"] == 140.0
    assert f["fraud_reviewed_not_stoppable"] == 1
    assert f["fraud_reviewed_not_stoppable_amount"] == 100.0
    assert f["fraud_caught_count"] == 1
    assert f["fraud_caught_amount"] == 40.0
    assert f["fraud_caught_amount_share"] == pytest.approx(40 / 140)
    assert f["fraud_loss"] == 100.0
    assert f["fraud_not_stoppable_amount"] == 100.0
    # without the column every reviewed fraud is stopped, as before
    assert evaluate_policy(decisions, _frame(), team)["fraud_caught_amount"] == 140.0
    # a decline at scoring needs no reviewer: it stops friendly fraud too
    declined = ["approve", "decline", "approve", "review", "approve", "approve"]
    g = evaluate_policy(declined, frame, team)
    assert g["fraud_caught_amount"] == 140.0
    assert g["fraud_loss"] == 0.0


def test_reviews_to_match_counts_only_fraud_a_review_can_stop() -> None:
    score = np.array([0.9, 0.8, 0.3, 0.1])
    fraud = np.array([True, True, True, False])
    amount = np.array([50.0, 10.0, 20.0, 5.0])
    stoppable = np.array([False, True, True, True])  # the top-scored fraud is friendly fraud
    assert reviews_to_match(score, fraud, amount, 30.0, stoppable) == 3  # 10 + 20
    assert reviews_to_match(score, fraud, amount, 30.0) == 1  # 50 counted without the mask
    assert reviews_to_match(score, fraud, amount, 31.0, stoppable) == 5  # unreachable


def test_an_absent_reviewer_takes_no_case_and_finishes_the_one_in_hand() -> None:
    # two reviewers all day; the second is away from minute 3 to minute 30 (maintenance)
    away = Absence(D0 + 3 * MIN_S, D0 + 30 * MIN_S, reviewers=1, shift=0)
    team = TeamConfig(shifts=(Shift(0, 0, 2),), absences=(away,))
    q = simulate_queue(
        _arrivals([0, 0, 4, 4, 31, 31]), team, False, handling_minutes=np.array([5.0] * 6)
    )
    c = q.cases
    # reviewer 1 finishes its first case (0-5) while away and takes nothing until it is back
    assert c["reviewer"].tolist() == [0, 1, 0, 0, 0, 1]
    assert ((c["start"] - D0) / MIN_S).tolist() == [0.0, 0.0, 5.0, 10.0, 31.0, 31.0]
    assert team.on_shift(D0 + 10 * MIN_S) == 1
    assert team.on_shift(D0 + 31 * MIN_S) == 2
    # on-shift time leaves the 27 minutes away out; the overtime while away is not work
    assert team.on_shift_seconds(D0, D0 + HOUR_S) == pytest.approx(2 * HOUR_S - 27 * MIN_S)
    assert q.utilisation_between(team, D0, D0 + HOUR_S) == pytest.approx(
        (4 * 5 + 3 + 5) * MIN_S / (2 * HOUR_S - 27 * MIN_S)
    )
    assert team.capacity_per_hour(D0 + 10 * MIN_S, 1.0) == pytest.approx(
        60.0 / team.mean_handling_min
    )
    assert "away" in team.describe()


def test_an_absence_must_fit_the_team() -> None:
    with pytest.raises(ValueError, match="absence takes 3"):
        TeamConfig(shifts=(Shift(0, 0, 2),), absences=(Absence(0.0, 60.0, reviewers=3),))
    with pytest.raises(ValueError, match="not one of the team's shifts"):
        TeamConfig(shifts=(Shift(0, 0, 2),), absences=(Absence(0.0, 60.0, shift=1),))
    with pytest.raises(ValueError, match="end after it starts"):
        Absence(60.0, 60.0)


def test_the_shed_loss_budget_stops_the_raised_band_for_the_rest_of_the_day() -> None:
    rng = np.random.default_rng(1)
    n = 4_000
    t = np.sort(rng.uniform(0, 4 * HOUR_S, n))  # 1,000 payments an hour, all on one day
    p = rng.beta(0.5, 30, n)
    amount = np.full(n, 100.0)
    review, decline = 0.02, 0.9
    fixed = np.where(p >= decline, "decline", np.where(p >= review, "review", "approve"))
    tight = CapacityConfig(enabled=True, reviews_per_hour=20.0, max_review_threshold=0.5)
    free, _, _ = capacity_aware_decisions(t, p, review, decline, tight, expected_loss=p * amount)
    shed_free = (fixed == "review") & (free == "approve")
    budget = float((p * amount)[shed_free].sum()) / 4  # a quarter of what it sheds unbounded
    capped = replace(tight, max_shed_loss_per_day=budget)
    dec, adjusted, _ = capacity_aware_decisions(
        t, p, review, decline, capped, expected_loss=p * amount
    )
    shed = (fixed == "review") & (dec == "approve")
    spent = np.cumsum(np.where(shed, p * amount, 0.0))
    assert 0 < shed.sum() < shed_free.sum()
    # the last payment shed took the spend past the budget; nothing was shed after that
    last = int(np.flatnonzero(shed)[-1])
    assert spent[last] >= budget > spent[last] - (p * amount)[last]
    assert not adjusted[last + 1 :].any()
    assert (dec[last + 1 :] == fixed[last + 1 :]).all()
    # a new UTC day has a new budget
    gov = CapacityGovernor(capped)
    gov.shed(10.0, budget)
    assert gov.shed_loss_today == budget
    gov.shed(DAY_S + 10.0, 1.0)
    assert gov.shed_loss_today == 1.0


def test_sla_rate_keeps_95_percent_of_waits_within_the_sla() -> None:
    team = TeamConfig(sla_min=15.0)
    mu = 60.0 / team.mean_handling_min
    lam = team.sla_rate_per_hour(1)
    # M/M/1: P(wait > t) = rho exp(-(mu - lambda) t), t = SLA - mean handling
    rho, t = lam / mu, (15.0 - team.mean_handling_min) / 60.0
    assert rho * math.exp(-(mu - lam) * t) == pytest.approx(0.05, rel=1e-6)
    rates = [team.sla_rate_per_hour(c) for c in range(4)]
    assert rates[0] == 0.0
    assert rates == sorted(rates)
    # more reviewers pool their queue: each can run hotter
    assert rates[2] / 2 > rates[1]
    # planning takes the lower of the utilisation capacity and the SLA rate
    noon, night = D0 + 12 * HOUR_S, D0 + 2 * HOUR_S
    assert team.sla_capacity_per_hour(night, 0.8) == pytest.approx(rates[1])
    assert team.sla_capacity_per_hour(noon, 0.1) == pytest.approx(team.capacity_per_hour(noon, 0.1))
