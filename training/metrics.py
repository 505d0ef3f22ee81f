"""Fraud metrics that matter when positives are rare. Pure functions of arrays.

Accuracy is useless at 0.5% fraud; what counts is the ranking (average precision), what the
review budget catches (recall, precision, amount) and whether scores are probabilities.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score


def top_k_mask(score: np.ndarray, k: int) -> np.ndarray:
    """The k highest scores (ties broken by position, so exactly k are flagged)."""
    mask = np.zeros(len(score), dtype=bool)
    if k > 0:
        mask[np.argsort(-score, kind="stable")[:k]] = True
    return mask


def at_flagged(flagged: np.ndarray, y: np.ndarray, amount: np.ndarray) -> dict[str, float]:
    """Recall, precision and fraud amount caught for a set of flagged payments."""
    y = y.astype(bool)
    n_flag = int(flagged.sum())
    caught = flagged & y
    fraud_amount = float(amount[y].sum())
    return {
        "flagged": float(n_flag),
        "flag_rate": n_flag / max(len(y), 1),
        "recall": float(caught.sum()) / max(int(y.sum()), 1),
        "precision": float(caught.sum()) / n_flag if n_flag else 0.0,
        "amount_caught": float(amount[caught].sum()),
        "amount_caught_share": float(amount[caught].sum()) / fraud_amount if fraud_amount else 0.0,
        "good_held": float((flagged & ~y).sum()),
    }


def recall_at_rate(score: np.ndarray, y: np.ndarray, rate: float) -> float:
    """Share of the frauds among the `rate` x n highest scores: recall at a review rate."""
    y = np.asarray(y).astype(bool)
    k = round(rate * len(y))
    return float((top_k_mask(score, k) & y).sum()) / max(int(y.sum()), 1)


REVIEW_RATES = (0.01, 0.02)


def card_precision_at_k(
    day: np.ndarray, card: np.ndarray, score: np.ndarray, y: np.ndarray, k: int = 100
) -> float:
    """Per day: rank cards by their highest score, drop cards caught on earlier days, precision of
    the top k; averaged over days (the Fraud Detection Handbook's card precision@k)."""
    df = pd.DataFrame({"day": day, "card": card, "score": score, "y": y.astype(int)})
    per_card = df.groupby(["day", "card"], sort=True).agg(score=("score", "max"), y=("y", "max"))
    caught: set[object] = set()
    precisions = []
    for _, cards in per_card.groupby(level="day", sort=True):
        cards = cards.droplevel("day")
        cards = cards[~cards.index.isin(list(caught))]
        top = cards.sort_values("score", ascending=False, kind="stable").head(k)
        if len(top) == 0:
            continue
        precisions.append(float(top["y"].sum()) / k)
        caught.update(top.index[top["y"] == 1])
    return float(np.mean(precisions)) if precisions else 0.0


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """ECE over equal-count bins (probabilities crowd near 0, so equal-width bins say little)."""
    order = np.argsort(p, kind="stable")
    total = 0.0
    for chunk in np.array_split(order, bins):
        if len(chunk):
            total += len(chunk) * abs(float(p[chunk].mean()) - float(y[chunk].mean()))
    return total / max(len(p), 1)


def evaluate(
    score: np.ndarray,
    y: np.ndarray,
    amount: np.ndarray,
    flagged: np.ndarray,
    day: np.ndarray,
    card: np.ndarray,
    k: int = 100,
    calibrated: bool = True,
) -> dict[str, float]:
    """All headline metrics for one policy on one period."""
    y = np.asarray(y).astype(int)
    both = 0 < y.sum() < len(y)
    out = {
        "roc_auc": float(roc_auc_score(y, score)) if both else float("nan"),
        "average_precision": float(average_precision_score(y, score)) if both else float("nan"),
        "card_precision_at_k": card_precision_at_k(day, card, score, y, k),
    }
    for rate in REVIEW_RATES:
        out[f"recall_at_{rate:.0%}".replace("%", "pct")] = recall_at_rate(score, y, rate)
    out.update(at_flagged(flagged, y, amount))
    if calibrated:
        out["calibration_error"] = expected_calibration_error(score, y)
        out["brier"] = float(brier_score_loss(y, np.clip(score, 0, 1)))
    return out
