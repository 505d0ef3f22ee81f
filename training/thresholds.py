"""Approve / review / decline thresholds from review capacity and costs. Pure.

Expected value per payment uses the calibrated probability p: reviewing saves p x amount but
costs a reviewer's time and, for a good payment, the hold; auto-declining saves p x amount but
loses part of a good payment. Thresholds maximise the expected saving with the review count
held within capacity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.config import BusinessInputs
from training.model import Thresholds

NEVER = 1.01  # a decline threshold no probability reaches: no auto-decline


@dataclass(frozen=True)
class Choice:
    thresholds: Thresholds
    expected_saving: float
    reviews: int
    declines: int
    capacity: int


def capacity_count(
    n: int, days: float, business: BusinessInputs, share: float | None = None
) -> int:
    """Reviews the team can take over a period of `n` payments and `days` days."""
    if share is None and business.reviews_per_day is not None:
        return int(business.reviews_per_day * days)
    return round((share if share is not None else business.review_share) * n)


def choose(
    p: np.ndarray,
    amount: np.ndarray,
    days: float,
    business: BusinessInputs,
    share: float | None = None,
) -> Choice:
    """Best (review, decline) thresholds on a period's calibrated scores, within capacity."""
    order = np.argsort(-p, kind="stable")
    ps, am = p[order], amount[order]
    cap = capacity_count(len(p), days, business, share)
    loss = am + business.chargeback_fee
    review_gain = ps * loss - business.review_cost - (1 - ps) * business.hold_cost
    decline_gain = ps * loss - (1 - ps) * business.false_decline_rate * am
    cum_review = np.concatenate(([0.0], np.cumsum(review_gain)))
    cum_decline = np.concatenate(([0.0], np.cumsum(decline_gain)))
    n = len(ps)
    # A threshold can only cut where the score drops: inside a run of equal scores, p >= t
    # would take the whole run.
    cut_ok = np.r_[True, ps[:-1] > ps[1:], True]
    best = (0.0, 0, 0)
    candidates = np.unique(np.concatenate(([0], np.geomspace(1, max(n // 20, 1), 60).astype(int))))
    for d in candidates:
        if d > n:
            break
        if not cut_ok[d]:
            continue
        hi = min(n, d + cap)
        # review the next r payments after the d declined: best prefix within capacity
        gains = np.where(cut_ok[d : hi + 1], cum_review[d : hi + 1] - cum_review[d], -np.inf)
        r = int(np.argmax(gains))
        total = float(cum_decline[d] + gains[r])
        if total > best[0]:
            best = (total, int(d), r)
    saving, d, r = best
    decline_t = float(ps[d - 1]) if d > 0 else NEVER
    review_t = float(ps[d + r - 1]) if r > 0 else decline_t
    return Choice(Thresholds(review=review_t, decline=decline_t), saving, r, d, cap)


def apply(p: np.ndarray, t: Thresholds) -> np.ndarray:
    """'approve' | 'review' | 'decline' per payment."""
    return np.where(p >= t.decline, "decline", np.where(p >= t.review, "review", "approve"))


def tradeoff_table(
    p_valid: np.ndarray,
    amount_valid: np.ndarray,
    days_valid: float,
    p_test: np.ndarray,
    y_test: np.ndarray,
    amount_test: np.ndarray,
    business: BusinessInputs,
) -> list[dict[str, float]]:
    """For each capacity: thresholds chosen on validation, outcomes measured on test."""
    rows = []
    y = y_test.astype(bool)
    for share in business.capacities:
        c = choose(p_valid, amount_valid, days_valid, business, share)
        decision = apply(p_test, c.thresholds)
        flagged = decision != "approve"
        rows.append(
            {
                "capacity_share": share,
                "review_threshold": c.thresholds.review,
                "decline_threshold": c.thresholds.decline,
                "review_rate": float((decision == "review").mean()),
                "decline_rate": float((decision == "decline").mean()),
                "fraud_caught": float((flagged & y).sum()) / max(int(y.sum()), 1),
                "fraud_amount_caught": float(amount_test[flagged & y].sum())
                / max(float(amount_test[y].sum()), 1e-9),
                "good_held": float((flagged & ~y).sum()),
                "good_held_rate": float((flagged & ~y).sum()) / max(int((~y).sum()), 1),
            }
        )
    return rows
