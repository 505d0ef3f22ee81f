"""The figures behind the comparison: which fraud a review can stop, surge days, the two
policies' frontiers (reviews against fraud amount stopped) and review volume at equal catch,
the rule policy's X at the platform's capacity, surge drift."""

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

# equal catch: shares of the held-out period's stoppable fraud amount, and the ratio targets
CATCH_LEVELS = (0.8, 0.9, 0.95, 0.975)
CATCH_TARGETS = {0.8: 0.10, 0.9: 0.10, 0.95: 0.10, 0.975: 0.20}
WORST_SEED_FACTOR = 1.5  # the worst seed may be this many times the target
# the rule's X: every 0.1th percentile of the training period's amounts, and inf (signals only)
RULE_GRID = tuple(float(q) for q in np.round(np.arange(0.0, 1.0, 0.001), 3))


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


def rule_frontier(
    amount: np.ndarray,
    signals: dict[str, np.ndarray],
    stop_amount: np.ndarray,
    amounts_for_x: np.ndarray,
    grid: tuple[float, ...] = RULE_GRID,
) -> pd.DataFrame:
    """The rule policy at every X of the grid (percentiles of `amounts_for_x`, and inf): its
    reviews and the amount it holds of `stop_amount` (the fraud a review can stop, 0 elsewhere).

    Rows from X = inf (the signals alone, fewest reviews) down to the lowest X."""
    flagged = np.zeros(len(amount), dtype=bool)
    for values in signals.values():
        flagged |= np.nan_to_num(values, nan=0.0) == 1
    base_n, base_s = int(flagged.sum()), float(stop_amount[flagged].sum())
    rest = np.argsort(amount[~flagged], kind="stable")
    a = amount[~flagged][rest]
    suffix = np.concatenate([np.cumsum(stop_amount[~flagged][rest][::-1])[::-1], [0.0]])
    qs = [None, *sorted(grid, reverse=True)]
    xs = np.array([math.inf if q is None else float(np.quantile(amounts_for_x, q)) for q in qs])
    first = np.searchsorted(a, xs, side="right")  # amounts > X start here
    return pd.DataFrame(
        {
            "percentile": [np.nan if q is None else q for q in qs],
            "x": xs,
            "reviews": base_n + (len(a) - first),
            "stopped": base_s + suffix[first],
        }
    )


def riskgate_frontier(score: np.ndarray, stop_amount: np.ndarray) -> np.ndarray:
    """Stoppable fraud amount held after the top k reviews by riskgate's score, k = 0..n."""
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")
    return np.concatenate([[0.0], np.cumsum(stop_amount[order])])


def equal_catch(
    rules: pd.DataFrame,
    score: np.ndarray,
    fraud: np.ndarray,
    stoppable: np.ndarray,
    amount: np.ndarray,
    levels: tuple[float, ...] = CATCH_LEVELS,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows, details) per catch level c: the fewest reviews the rule policy needs to stop c of
    the stoppable fraud amount (the best X with hindsight) and the reviews riskgate needs (top k
    by its review score); rows as report.json's `equal_catch`, details with the amounts."""
    total = float(amount[fraud & stoppable].sum())
    rows, details = [], []
    for c in levels:
        target = c * total
        ok = rules[rules["stopped"] >= target - 1e-9 * max(target, 1.0)]
        if ok.empty or total <= 0:
            best = None
        else:
            best = ok.sort_values(["reviews", "x"], ascending=[True, False], kind="stable").iloc[0]
        k = reviews_to_match(score, fraud, amount, target, stoppable)
        n = int(best["reviews"]) if best is not None else None
        rows.append(
            {
                "catch": c,
                "rule_reviews": n,
                "rule_amount": float(best["x"]) if best is not None else None,
                "riskgate_reviews": k,
                "ratio": k / n if n else None,
            }
        )
        details.append(
            {
                "catch": c,
                "target_amount": target,
                "rule_amount_percentile": (
                    None if best is None or pd.isna(best["percentile"]) else best["percentile"]
                ),
                "rule_stopped_amount": float(best["stopped"]) if best is not None else None,
                "ratio_target": CATCH_TARGETS.get(c),
            }
        )
    return rows, details


def low_ranked(
    score: np.ndarray,
    p: np.ndarray,
    fraud: np.ndarray,
    stoppable: np.ndarray,
    amount: np.ndarray,
    scenario: np.ndarray | None,
    allowed: int,
    needed: int,
    top: int = 8,
) -> dict[str, Any]:
    """The stoppable frauds riskgate ranks beyond `allowed` reviews (the target's volume) that it
    has to reach to stop the catch level (`needed` reviews): by scenario, and the largest."""
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(1, len(order) + 1)
    hit = fraud & stoppable & (rank > allowed) & (rank <= needed)
    names = np.asarray(scenario).astype(str) if scenario is not None else np.full(len(p), "unknown")
    by: dict[str, dict[str, float]] = {}
    for i in np.flatnonzero(hit):
        e = by.setdefault(str(names[i]), {"count": 0.0, "amount": 0.0})
        e["count"] += 1
        e["amount"] += float(amount[i])
    biggest = sorted(np.flatnonzero(hit), key=lambda i: (-amount[i], rank[i]))[:top]
    return {
        "allowed_reviews": allowed,
        "needed_reviews": needed,
        "frauds": int(hit.sum()),
        "amount": float(amount[hit].sum()),
        "by_scenario": dict(sorted(by.items(), key=lambda kv: -kv[1]["amount"])),
        "largest": [
            {
                "scenario": str(names[i]),
                "probability": float(p[i]),
                "amount": float(amount[i]),
                "rank": int(rank[i]),
            }
            for i in sorted(biggest, key=lambda i: rank[i])
        ],
    }


def rule_amount_for_capacity(
    amount: np.ndarray,
    signals: dict[str, np.ndarray],
    days: float,
    reviews_per_day: float,
    grid: tuple[float, ...] = RULE_GRID,
) -> tuple[float, float | None]:
    """(X, its percentile): the rule policy's operating point, set without riskgate and without
    the held-out period: the lowest X (the most reviews) whose reviews per day on the training
    period fit the platform's review capacity; inf when even the signals alone do not fit."""
    front = rule_frontier(amount, signals, np.zeros(len(amount)), amount, grid)
    fits = front[front["reviews"] / max(days, 1e-9) <= reviews_per_day]
    if fits.empty:
        return math.inf, None
    last = fits.iloc[-1]  # rows run from X = inf down: the last that fits reviews the most
    q = None if pd.isna(last["percentile"]) else float(last["percentile"])
    return float(last["x"]), q
