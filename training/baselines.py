"""What riskgate is compared with, on the same test period: today's rules and a linear model."""

from __future__ import annotations

import numpy as np
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

RULE_SIGNALS = ("billing_ip_mismatch", "device_new_for_customer")


def rule_flags(
    amount: np.ndarray, signals: dict[str, np.ndarray], amount_threshold: float
) -> np.ndarray:
    """Review when the amount is above X, the location does not match, or the device is new."""
    flagged = amount > amount_threshold
    for values in signals.values():
        flagged |= np.nan_to_num(values, nan=0.0) == 1
    return flagged


def rule_policy(
    amount: np.ndarray, signals: dict[str, np.ndarray], target_count: int
) -> tuple[np.ndarray, float, np.ndarray]:
    """The rule policy with X set so it reviews as many payments as the model (when it can).

    Returns (flags, X, score): the score ranks rule hits first, then amount, so average
    precision can be computed for the rules too.
    """
    base = rule_flags(amount, signals, np.inf)
    remaining = target_count - int(base.sum())
    if remaining <= 0:
        threshold = float("inf")
    else:
        candidates = np.sort(amount[~base])[::-1]
        threshold = float(candidates[min(remaining, len(candidates)) - 1]) - 1e-9
    flags = rule_flags(amount, signals, threshold)
    hits = sum(np.nan_to_num(v, nan=0.0) == 1 for v in signals.values()) + (amount > threshold)
    rank = amount / (amount.max() + 1.0)
    return flags, threshold, np.asarray(hits, dtype=np.float64) + rank


def fit_logistic(X: np.ndarray, y: np.ndarray, seed: int) -> Pipeline:
    """Median-imputed, standardised, class-balanced logistic regression."""
    model = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(class_weight="balanced", max_iter=500, random_state=seed),
    )
    X_clean = np.where(np.isinf(X), np.nan, X)
    return model.fit(X_clean, y)


def predict_logistic(model: Pipeline, X: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict_proba(np.where(np.isinf(X), np.nan, X))[:, 1])
