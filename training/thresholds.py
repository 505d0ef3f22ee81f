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
NO_REVIEW = 1e12  # a review-by-saving threshold no payment reaches: no reviews


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
    """Best thresholds on a period's calibrated scores: decline the top d by probability, review
    the best r of the rest by review score, r within capacity, maximising the expected saving."""
    p = np.asarray(p, dtype=np.float64)
    amount = np.asarray(amount, dtype=np.float64)
    n = len(p)
    cap = capacity_count(n, days, business, share)
    shape = Thresholds(
        review=0.0,
        decline=NEVER,
        review_by=business.review_by,
        chargeback_fee=business.chargeback_fee,
        review_cost=business.review_cost,
        hold_cost=business.hold_cost,
    )
    loss = amount + business.chargeback_fee
    review_gain = p * loss - business.review_cost - (1 - p) * business.hold_cost
    decline_gain = p * loss - (1 - p) * business.false_decline_rate * amount
    by_p = np.argsort(-p, kind="stable")
    ps = p[by_p]
    cum_decline = np.concatenate(([0.0], np.cumsum(decline_gain[by_p])))
    # A threshold can only cut where its score drops: inside a run of equal scores, >= takes all.
    cut_p = np.r_[True, ps[:-1] > ps[1:], True]
    score = shape.review_score(p, amount)
    by_score = np.argsort(-score, kind="stable")
    rank_p = np.empty(n, dtype=np.int64)
    rank_p[by_p] = np.arange(n)

    best: tuple[float, int, int, float] = (0.0, 0, 0, float("inf"))
    candidates = np.unique(np.concatenate(([0], np.geomspace(1, max(n // 20, 1), 60).astype(int))))
    for d in candidates:
        if d > n or not cut_p[d]:
            continue
        ranked = by_score[rank_p[by_score] >= d][:cap]  # not declined, best review score first
        if len(ranked) == 0:
            r, total, cut_at = 0, float(cum_decline[d]), float("inf")
        else:
            keys = score[ranked]
            rest = score[by_score[rank_p[by_score] >= d][cap : cap + 1]]
            nxt = np.r_[keys[1:], rest if len(rest) else [-np.inf]]
            cum = np.concatenate(([0.0], np.cumsum(review_gain[ranked])))
            ok = np.r_[True, keys > nxt]
            cum = np.where(ok, cum, -np.inf)
            r = int(np.argmax(cum))
            total = float(cum_decline[d] + cum[r])
            cut_at = float(keys[r - 1]) if r > 0 else float("inf")
        if total > best[0]:
            best = (total, int(d), r, cut_at)
    saving, d, r, cut_at = best
    decline_t = float(ps[d - 1]) if d > 0 else NEVER
    if business.review_by == "saving":
        review_t = cut_at if r > 0 else NO_REVIEW
    else:
        review_t = cut_at if r > 0 else decline_t
    t = Thresholds(
        review=review_t,
        decline=decline_t,
        review_by=business.review_by,
        chargeback_fee=business.chargeback_fee,
        review_cost=business.review_cost,
        hold_cost=business.hold_cost,
    )
    return Choice(t, saving, r, d, cap)


def apply(p: np.ndarray, t: Thresholds, amount: np.ndarray | None = None) -> np.ndarray:
    """'approve' | 'review' | 'decline' per payment."""
    if amount is None:
        if t.review_by == "saving":
            raise ValueError("reviewing by expected saving needs the payments' amounts")
        amount = np.zeros(len(p))
    amt = np.asarray(amount, dtype=np.float64)
    reviewed = t.review_score(np.asarray(p), amt) >= t.review
    return np.where(p >= t.decline, "decline", np.where(reviewed, "review", "approve"))


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
        decision = apply(p_test, c.thresholds, amount_test)
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
