"""The figures behind the comparison: which fraud a review can stop, surge days, the rule
policy's amount X matched on validation, review volume at equal fraud amount, surge drift."""

from __future__ import annotations

import importlib
import math
from typing import Any

import numpy as np
import pandas as pd

from serving.review.team import (
    reviews_to_match,
)

SURGE_FACTOR = 1.5  # a day with this many times the median day's payments is a surge day


SWEEP_QUANTILES = (None, 0.999, 0.995, 0.99, 0.98, 0.95, 0.90)


# fraud scenarios a pre-authorization review cannot stop: the cardholder's own purchase
NOT_STOPPABLE_SCENARIOS = ("friendly_fraud",)


def stoppable_from_scenario(frame: pd.DataFrame) -> tuple[np.ndarray, bool]:
    """(per payment: could a review stop it if it is fraud?, did the data say?).

    From the `scenario` column (text or category): NOT_STOPPABLE_SCENARIOS are not stoppable,
    anything else (a missing value too) is. Without the column every payment is stoppable and
    the second value is False, so the report can say the split was not possible.
    """
    if "scenario" not in frame.columns:
        return np.ones(len(frame), dtype=bool), False
    scenario = frame["scenario"].astype("string")
    not_stoppable = scenario.isin(NOT_STOPPABLE_SCENARIOS).to_numpy(dtype=bool, na_value=False)
    return ~not_stoppable, True


def stoppable_note(
    has_scenario: bool, n_not: int, amount_not: float, n_fraud: int, amount_fraud: float
) -> str:
    """One plain sentence for the report: which held-out fraud a review cannot stop."""
    if not has_scenario:
        return (
            "the data has no scenario column, so every fraud is counted as one a review can "
            "stop; if it holds first-party (friendly) fraud, the figures overstate what review "
            "stops"
        )
    share = amount_not / amount_fraud if amount_fraud > 0 else 0.0
    return (
        f"{n_not:,} of the {n_fraud:,} held-out fraud payments ({amount_not:,.0f} of "
        f"{amount_fraud:,.0f}, {share:.1%} of the fraud amount) are friendly fraud, which a "
        "review does not stop"
    )


def surge_days(timestamps: pd.Series) -> list[pd.Timestamp]:
    """Days with at least SURGE_FACTOR x the median day's payments (a promotion, a holiday)."""
    per_day = timestamps.dt.floor("D").value_counts().sort_index()
    if per_day.empty:
        return []
    return [pd.Timestamp(d) for d in per_day.index[per_day >= SURGE_FACTOR * per_day.median()]]


def rule_amount_from_validation(
    amount_train: np.ndarray,
    amount_valid: np.ndarray,
    signals_valid: dict[str, np.ndarray],
    fraud_valid: np.ndarray,
    riskgate_flagged_valid: np.ndarray,
    stoppable_valid: np.ndarray | None = None,
) -> tuple[float, float | None]:
    """(X, its percentile of the training amounts): the largest X whose rule policy catches at
    least riskgate's share of the fraud amount on validation (inf if the signals alone do).

    Only fraud a review can stop counts (`stoppable_valid`; all fraud when None): holding a
    friendly-fraud payment for review stops nothing, for the rules as for riskgate."""
    from training.baselines import rule_flags

    counted = fraud_valid if stoppable_valid is None else fraud_valid & stoppable_valid
    total = float(amount_valid[counted].sum())
    if total <= 0:
        return float(np.quantile(amount_train, 0.95)), 0.95
    target = float(amount_valid[riskgate_flagged_valid & counted].sum()) / total

    def share(x: float) -> float:
        flags = rule_flags(amount_valid, signals_valid, x)
        return float(amount_valid[flags & counted].sum()) / total

    if share(math.inf) >= target:
        return math.inf, None
    qs = np.round(np.arange(0.999, 0.8995, -0.001), 3)
    for q in qs:
        x = float(np.quantile(amount_train, q))
        if share(x) >= target:
            return x, float(q)
    return float(np.quantile(amount_train, qs[-1])), float(qs[-1])


def equal_at(
    flags: np.ndarray,
    fraud: np.ndarray,
    stoppable: np.ndarray,
    amount: np.ndarray,
    review_score: np.ndarray,
    p: np.ndarray,
) -> dict[str, Any]:
    """Review volume at equal fraud amount: the rule policy's reviews (`flags`) against the
    number riskgate reviews, top k by its review score, to hold the same fraud amount.

    The amount compared is fraud a review can stop (`stoppable`); the same comparison counting
    all fraud (friendly fraud too, which no review stops) is reported next to it, `*_all_fraud`.
    Also ranked by expected loss (p x amount) and by probability.
    """
    n = int(flags.sum())
    stop = fraud & stoppable
    total = float(amount[fraud].sum())
    total_stop = float(amount[stop].sum())
    hit = float(amount[flags & stop].sum())
    hit_all = float(amount[flags & fraud].sum())

    def k_for(score: np.ndarray, target: float, only_stoppable: bool) -> int:
        return reviews_to_match(score, fraud, amount, target, stoppable if only_stoppable else None)

    def ratio(k: int) -> float:
        return k / n if n else math.inf

    k = k_for(review_score, hit, True)
    k_loss = k_for(p * amount, hit, True)
    k_p = k_for(p, hit, True)
    k_all = k_for(review_score, hit_all, False)
    k_all_loss = k_for(p * amount, hit_all, False)
    return {
        "rule_reviews": n,
        "rule_stoppable_fraud_amount": hit,
        "rule_stoppable_fraud_share": hit / total_stop if total_stop > 0 else 0.0,
        "rule_not_stoppable_fraud_amount": hit_all - hit,
        "riskgate_reviews": k,
        "ratio": ratio(k),
        "riskgate_reviews_by_expected_loss": k_loss,
        "ratio_by_expected_loss": ratio(k_loss),
        "riskgate_reviews_by_probability": k_p,
        "ratio_by_probability": ratio(k_p),
        "rule_fraud_amount_all_fraud": hit_all,
        "rule_fraud_share_all_fraud": hit_all / total if total > 0 else 0.0,
        "riskgate_reviews_all_fraud": k_all,
        "ratio_all_fraud": ratio(k_all),
        "riskgate_reviews_all_fraud_by_expected_loss": k_all_loss,
        "ratio_all_fraud_by_expected_loss": ratio(k_all_loss),
    }


def surge_drift(
    reference: pd.DataFrame,
    reference_scores: np.ndarray,
    current: pd.DataFrame,
    current_scores: np.ndarray,
) -> list[dict[str, Any]] | None:
    """PSI of each feature and of the score on the surge days against the training period.

    Uses `training.drift` (`profile` of the reference, then `psi_report`); None when that
    module or those functions are not there (the report then says the section is pending).
    """
    try:
        module = importlib.import_module("training.drift")
    except ModuleNotFoundError:
        return None
    profile = getattr(module, "profile", None)
    psi_report = getattr(module, "psi_report", None)
    level = getattr(module, "level", None)
    if profile is None or psi_report is None:
        return None
    ref = profile(reference, list(reference.columns), reference_scores)
    rows = psi_report(ref, current, current_scores)
    return [
        {"name": str(name), "psi": float(value), "level": level(value) if level else None}
        for name, value in rows
    ]
