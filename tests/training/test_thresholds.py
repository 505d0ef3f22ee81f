"""Approve / review / decline thresholds within review capacity (training.thresholds)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.config import BusinessInputs
from training.pipeline import TrainResult
from training.thresholds import NEVER, apply, capacity_count, choose, tradeoff_table

BUSINESS = BusinessInputs()


def counts(p: np.ndarray, choice, amount: np.ndarray) -> tuple[int, int]:
    decision = apply(p, choice.thresholds, amount)
    return int((decision == "review").sum()), int((decision == "decline").sum())


def fraud_like_scores(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities crowded near zero with a risky tail, and heavy-tailed amounts."""
    rng = np.random.default_rng(seed)
    p = rng.beta(0.3, 30.0, n)
    risky = rng.random(n) < 0.02
    p[risky] = rng.beta(2.0, 2.0, int(risky.sum()))
    amount = np.round(rng.lognormal(3.5, 1.2, n), 2)
    return p, amount


@pytest.fixture(scope="module")
def validation(trained: TrainResult, frame):
    """The calibrated held-out scores the session model's thresholds were chosen on (validation
    or out of fold), with amounts and the period's days."""
    hold = trained.curves["hold_rows"]
    ts = frame.loc[hold, "timestamp"]
    days = max((ts.max() - ts.min()).total_seconds() / 86_400, 1.0)
    return trained.curves["p_hold"], frame.loc[hold, "amount"].to_numpy(), days


# --- capacity ---------------------------------------------------------------------------------


@pytest.mark.parametrize("share", [0.0005, *BUSINESS.capacities])
def test_review_count_on_the_chosen_period_stays_within_capacity(validation, share):
    p, amount, days = validation
    choice = choose(p, amount, days, BUSINESS, share)
    reviews, declines = counts(p, choice, amount)
    assert choice.capacity == round(share * len(p))
    assert reviews <= choice.capacity
    assert (reviews, declines) == (choice.reviews, choice.declines)


@pytest.mark.parametrize("per_day", [1.0, 4.5, 20.0])
def test_reviews_per_day_sets_the_capacity_and_is_respected(validation, per_day):
    p, amount, days = validation
    business = replace(BUSINESS, reviews_per_day=per_day)
    choice = choose(p, amount, days, business)
    assert choice.capacity == int(per_day * days)
    assert counts(p, choice, amount)[0] <= choice.capacity


def test_an_explicit_share_overrides_reviews_per_day():
    business = replace(BUSINESS, reviews_per_day=3.0)
    assert capacity_count(1000, 10.0, business) == 30
    assert capacity_count(1000, 10.0, business, share=0.05) == 50
    assert capacity_count(1000, 10.0, BUSINESS) == 10  # review_share 1%


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(50, 3_000),
    share=st.sampled_from([0.001, 0.003, 0.01, 0.03, 0.1]),
)
def test_review_count_stays_within_capacity_for_any_distinct_scores(seed, n, share):
    p, amount = fraud_like_scores(seed, n)
    choice = choose(p, amount, 7.0, BUSINESS, share)
    assert counts(p, choice, amount)[0] <= choice.capacity


def test_review_count_stays_within_capacity_when_scores_tie():
    # Tree models give many payments the very same score (a model with one 2-leaf tree gives
    # exactly two). Five payments tie at p = 0.1: worth reviewing, not worth declining; the team
    # can take 3. Cutting inside the tie at p >= 0.1 sends all five to review.
    p = np.r_[np.full(5, 0.1), np.full(95, 0.001)]
    amount = np.full(100, 100.0)
    choice = choose(p, amount, 1.0, BUSINESS, share=0.03)
    assert choice.capacity == 3
    reviews, _ = counts(p, choice, amount)
    assert reviews <= choice.capacity, (
        f"{reviews} payments at or above the review threshold {choice.thresholds.review}, "
        f"capacity {choice.capacity} (choose() reported {choice.reviews})"
    )


def test_reported_decline_count_matches_the_thresholds_when_scores_tie():
    # One payment at 0.9 and five tied at 0.5: choose() reports 3 declines and 3 reviews but
    # its thresholds (review = decline = 0.5) decline all six and review none.
    p = np.r_[0.9, np.full(5, 0.5), np.full(94, 0.001)]
    amount = np.full(100, 100.0)
    choice = choose(p, amount, 1.0, BUSINESS, share=0.03)
    assert counts(p, choice, amount) == (choice.reviews, choice.declines)


# --- shape of the thresholds --------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(20, 3_000),
    share=st.sampled_from([0.0, 0.002, 0.01, 0.05, 0.2]),
    false_decline_rate=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
    review_by=st.sampled_from(["probability", "saving"]),
)
def test_decline_band_lies_above_the_review_band(seed, n, share, false_decline_rate, review_by):
    p, amount = fraud_like_scores(seed, n)
    business = replace(BUSINESS, false_decline_rate=false_decline_rate, review_by=review_by)
    t = choose(p, amount, 7.0, business, share).thresholds
    if review_by == "probability":
        assert t.decline >= t.review
    decision = apply(p, t, amount)
    reviewed, declined = p[decision == "review"], p[decision == "decline"]
    if len(reviewed) and len(declined):
        assert reviewed.max() < declined.min()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(50, 3_000))
def test_more_capacity_never_lowers_the_review_count(seed, n):
    p, amount = fraud_like_scores(seed, n)
    reviews = [
        counts(p, choose(p, amount, 7.0, BUSINESS, share), amount)[0]
        for share in (0.0, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1)
    ]
    assert reviews == sorted(reviews), reviews


def test_more_capacity_never_lowers_the_review_count_on_model_scores(validation):
    p, amount, days = validation
    reviews = [
        counts(p, choose(p, amount, days, BUSINESS, s), amount)[0] for s in BUSINESS.capacities
    ]
    assert reviews == sorted(reviews), reviews


@pytest.mark.parametrize("amount", [0.0, 25.0, 10_000.0])
def test_a_zero_risk_population_is_approved_entirely(amount):
    p = np.zeros(500)
    choice = choose(p, np.full(500, amount), 5.0, BUSINESS, 0.05)
    assert (apply(p, choice.thresholds, np.full(500, amount)) == "approve").all()
    assert choice.thresholds.decline == NEVER
    assert (choice.reviews, choice.declines, choice.expected_saving) == (0, 0, 0.0)


def test_zero_capacity_never_reviews_but_may_still_decline_certain_fraud():
    p = np.r_[np.full(3, 0.999), np.full(97, 0.0001)]
    amount = np.full(100, 200.0)
    choice = choose(p, amount, 1.0, BUSINESS, share=0.0)
    reviews, declines = counts(p, choice, amount)
    assert reviews == 0
    assert declines == 3


def test_apply_sends_each_payment_to_the_band_of_its_probability():
    from training.model import Thresholds

    t = Thresholds(review=0.2, decline=0.7)
    p = np.array([0.0, 0.1999, 0.2, 0.5, 0.6999, 0.7, 1.0])
    assert list(apply(p, t)) == [
        "approve",
        "approve",
        "review",
        "review",
        "review",
        "decline",
        "decline",
    ]
    assert [t.decide(float(v)) for v in p] == list(apply(p, t))


# --- trade-off table ----------------------------------------------------------------------------


def test_tradeoff_table_has_one_row_per_capacity_in_order(trained: TrainResult, frame, validation):
    p_valid, amount_valid, days = validation
    c = trained.curves
    amount_test = frame.loc[trained.parts == "test", "amount"].to_numpy()
    rows = tradeoff_table(
        p_valid, amount_valid, days, c["p_test"], c["y_test"], amount_test, BUSINESS
    )
    assert [r["capacity_share"] for r in rows] == list(BUSINESS.capacities)
    assert rows == trained.tradeoff, "the training job reports the same table"
    for r in rows:
        if BUSINESS.review_by == "probability":  # by saving, review is money, not a probability
            assert r["review_threshold"] <= r["decline_threshold"]
        for key in ("review_rate", "decline_rate", "fraud_caught", "fraud_amount_caught"):
            assert 0.0 <= r[key] <= 1.0, (key, r)


def test_tradeoff_table_covers_custom_capacities():
    p, amount = fraud_like_scores(3, 2_000)
    y = (np.random.default_rng(4).random(2_000) < p).astype(int)
    business = replace(BUSINESS, capacities=(0.001, 0.3, 0.02))
    rows = tradeoff_table(p, amount, 10.0, p, y, amount, business)
    assert [r["capacity_share"] for r in rows] == [0.001, 0.3, 0.02]


def test_review_by_saving_puts_large_amounts_before_small_ones_at_equal_probability():
    from training.model import Thresholds

    t = Thresholds(
        review=10.0, decline=0.9, review_by="saving", chargeback_fee=15.0, review_cost=3.0
    )
    p = np.array([0.05, 0.05, 0.3])
    amount = np.array([2_000.0, 20.0, 5.0])
    # expected savings: 0.05 * 2015 - 3 = 97.75; 0.05 * 35 - 3 = -1.25; 0.3 * 20 - 3 = 3.0
    assert list(apply(p, t, amount)) == ["review", "approve", "approve"]
    assert t.decide(0.95, 1.0) == "decline"


def test_apply_needs_amounts_when_reviewing_by_saving():
    from training.model import Thresholds

    t = Thresholds(review=1.0, decline=0.9, review_by="saving")
    with pytest.raises(ValueError, match="amount"):
        apply(np.array([0.5]), t)
