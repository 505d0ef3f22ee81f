"""Fraud metrics on tiny examples worked out by hand (training.metrics)."""

from __future__ import annotations

import numpy as np
import pytest

from training.metrics import (
    at_flagged,
    card_precision_at_k,
    evaluate,
    expected_calibration_error,
    top_k_mask,
)

# --- top_k_mask -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "expected"),
    [
        pytest.param(0, [0, 0, 0, 0, 0], id="k0-flags-nothing"),
        pytest.param(1, [0, 1, 0, 0, 0], id="k1-first-of-the-tied-top-scores"),
        pytest.param(2, [0, 1, 0, 1, 0], id="k2-both-tied-top-scores"),
        pytest.param(3, [0, 1, 1, 1, 0], id="k3"),
        pytest.param(9, [1, 1, 1, 1, 1], id="k-above-n-flags-everything"),
    ],
)
def test_top_k_mask_flags_exactly_k_highest_with_ties_broken_by_position(k, expected):
    score = np.array([0.2, 0.9, 0.5, 0.9, 0.1])
    np.testing.assert_array_equal(top_k_mask(score, k), np.array(expected, dtype=bool))


# --- at_flagged ------------------------------------------------------------------------------


def test_at_flagged_counts_recall_precision_and_amounts_by_hand():
    flagged = np.array([True, True, False, False, True])
    y = np.array([1, 0, 1, 0, 1])
    amount = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    got = at_flagged(flagged, y, amount)
    # fraud: rows 0, 2, 4 (amount 90); flagged: 0, 1, 4 -> caught 0 and 4 (amount 60)
    assert got == {
        "flagged": 3.0,
        "flag_rate": pytest.approx(3 / 5),
        "recall": pytest.approx(2 / 3),
        "precision": pytest.approx(2 / 3),
        "amount_caught": 60.0,
        "amount_caught_share": pytest.approx(60 / 90),
        "good_held": 1.0,
    }


def test_at_flagged_with_nothing_flagged_or_no_fraud_gives_zeros_not_nan():
    amount = np.array([5.0, 7.0])
    none = at_flagged(np.zeros(2, dtype=bool), np.array([1, 0]), amount)
    assert (none["precision"], none["recall"], none["amount_caught_share"]) == (0.0, 0.0, 0.0)
    no_fraud = at_flagged(np.ones(2, dtype=bool), np.array([0, 0]), amount)
    assert (no_fraud["recall"], no_fraud["amount_caught_share"]) == (0.0, 0.0)
    assert no_fraud["good_held"] == 2.0


# --- card_precision_at_k -----------------------------------------------------------------------


def test_card_precision_drops_cards_caught_on_earlier_days():
    # day 1: A 0.9 fraud, B 0.8 genuine, C 0.1 fraud -> top 2 = A, B -> 1/2; A is caught.
    # day 2: A 0.95 fraud (dropped: caught on day 1), C 0.5 fraud, B 0.4, D 0.3
    #        -> top 2 = C, B -> 1/2.   Mean over days = 0.5.
    # (Keeping A on day 2 would give A, C -> 2/2 and a mean of 0.75.)
    day = np.array([1, 1, 1, 2, 2, 2, 2])
    card = np.array(["A", "B", "C", "A", "C", "B", "D"])
    score = np.array([0.9, 0.8, 0.1, 0.95, 0.5, 0.4, 0.3])
    y = np.array([1, 0, 1, 1, 1, 0, 0])
    assert card_precision_at_k(day, card, score, y, k=2) == pytest.approx(0.5)


def test_card_precision_ranks_a_card_by_its_highest_score_of_the_day_and_divides_by_k():
    # One day: card A has payments 0.1 (fraud) and 0.7; B 0.6 genuine; C 0.2 genuine.
    # Per card: A max 0.7, fraud (any payment) ; B 0.6 ; C 0.2 -> top 2 = A, B -> 1/2.
    day = np.zeros(4, dtype=int)
    card = np.array(["A", "A", "B", "C"])
    score = np.array([0.1, 0.7, 0.6, 0.2])
    y = np.array([1, 0, 0, 0])
    assert card_precision_at_k(day, card, score, y, k=2) == pytest.approx(0.5)
    # Fewer cards than k: precision is still over k (the handbook's definition): 1 / 5.
    assert card_precision_at_k(day, card, score, y, k=5) == pytest.approx(1 / 5)


def test_card_precision_of_a_card_caught_earlier_does_not_count_again():
    # A is fraud and caught on day 1; on day 2 only A is fraudulent -> day 2 precision 0.
    day = np.array([1, 1, 2, 2])
    card = np.array(["A", "B", "A", "B"])
    score = np.array([0.9, 0.1, 0.9, 0.1])
    y = np.array([1, 0, 1, 0])
    assert card_precision_at_k(day, card, score, y, k=1) == pytest.approx((1.0 + 0.0) / 2)


# --- expected_calibration_error ----------------------------------------------------------------


def test_calibration_error_is_zero_for_a_perfectly_calibrated_construction():
    # 10 equal-count bins of 10 payments; bin i predicts i/10 and holds exactly i frauds.
    p = np.repeat(np.arange(10) / 10, 10)
    y = np.concatenate([np.r_[np.ones(i), np.zeros(10 - i)] for i in range(10)])
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(p))  # input order must not matter
    assert expected_calibration_error(p[perm], y[perm]) == pytest.approx(0.0, abs=1e-12)


def test_calibration_error_by_hand_for_two_bins():
    # sorted p: [0.1, 0.1 | 0.8, 0.8]; y: [0, 0 | 1, 0]
    # bin 1: |0.1 - 0| = 0.1; bin 2: |0.8 - 0.5| = 0.3; weighted mean (2*0.1 + 2*0.3) / 4 = 0.2
    p = np.array([0.8, 0.1, 0.8, 0.1])
    y = np.array([1, 0, 0, 0])
    assert expected_calibration_error(p, y, bins=2) == pytest.approx(0.2)


def test_calibration_error_of_a_constant_wrong_prediction_is_the_gap():
    assert expected_calibration_error(np.full(50, 0.5), np.zeros(50)) == pytest.approx(0.5)


# --- evaluate ------------------------------------------------------------------------------


def test_evaluate_gives_nan_rank_metrics_when_the_period_has_one_class_only():
    n = 6
    out = evaluate(
        score=np.linspace(0.1, 0.6, n),
        y=np.zeros(n, dtype=int),
        amount=np.ones(n),
        flagged=np.zeros(n, dtype=bool),
        day=np.zeros(n, dtype=int),
        card=np.arange(n),
    )
    assert np.isnan(out["roc_auc"])
    assert np.isnan(out["average_precision"])
    assert out["recall"] == 0.0


def test_evaluate_a_perfect_ranking():
    score = np.array([0.9, 0.1, 0.8, 0.2])
    y = np.array([1, 0, 1, 0])
    out = evaluate(
        score,
        y,
        amount=np.array([10.0, 1.0, 20.0, 2.0]),
        flagged=top_k_mask(score, 2),
        day=np.zeros(4, dtype=int),
        card=np.array(["a", "b", "c", "d"]),
        k=2,
    )
    assert out["average_precision"] == pytest.approx(1.0)
    assert out["roc_auc"] == pytest.approx(1.0)
    assert out["recall"] == out["precision"] == out["amount_caught_share"] == pytest.approx(1.0)
    assert out["card_precision_at_k"] == pytest.approx(1.0)
