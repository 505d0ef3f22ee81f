"""SHAP values -> reasons a reviewer reads, from the feature registry's own descriptions.

The model's contributions come from LightGBM's TreeSHAP (`pred_contrib`): exact SHAP values in
log-odds, the same numbers shap.TreeExplainer gives. Only factors pushing towards fraud become
reasons; the chart in the console shows both directions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from features.registry import BY_NAME

# Binary features: the sentence in the registry describes the "1" case; "0" gets its own words.
_WHEN_ZERO = {
    "device_new_for_customer": "device already used by this customer",
    "billing_ip_mismatch": "IP country matches the billing country",
    "billing_shipping_mismatch": "shipping country matches the billing country",
    "billing_merchant_mismatch": "merchant country matches the billing country",
    "is_night": "paid during the day",
    "is_weekend": "paid on a weekday",
    "auth_failed": "3-D Secure / two-factor check did not fail",
    "auth_not_attempted": "3-D Secure / two-factor check was attempted",
}


_NEEDS_HISTORY = frozenset(
    {"median_ratio", "mean_ratio", "zscore", "since_prev", "prev_distance", "prev_speed"}
)


class _Facts(dict[str, Any]):
    """Formatting namespace: missing payment fields read as 'unknown' instead of failing."""

    def __missing__(self, key: str) -> str:
        return "unknown"


def sentence(name: str, value: float | None, payment: Mapping[str, Any]) -> str:
    """One feature's value in words."""
    feature = BY_NAME.get(name)
    if feature is None:
        return f"{name} = {value}"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        if feature.aggregation in _NEEDS_HISTORY:
            days = feature.window // 86_400
            few = (
                "too few earlier payments"
                if feature.aggregation == "zscore"
                else "no earlier payment"
            )
            return f"{few} on this {feature.entity} in {days} days to compare with"
        return f"{feature.name.replace('_', ' ')}: not known for this payment"
    if name in _WHEN_ZERO and value == 0:
        return _WHEN_ZERO[name]
    facts = _Facts(payment)
    facts["value"] = value
    try:
        return feature.description.format_map(facts)
    except (ValueError, TypeError):
        return f"{feature.name.replace('_', ' ')} = {value:g}"


def reasons(
    names: Sequence[str],
    values: Sequence[float],
    contributions: Sequence[float],
    payment: Mapping[str, Any],
    top: int = 5,
    min_contribution: float = 0.05,
) -> list[dict[str, Any]]:
    """The strongest factors towards fraud, largest first: feature, value, contribution, text."""
    ranked = sorted(range(len(names)), key=lambda i: -contributions[i])
    out = []
    for i in ranked[:top]:
        c = float(contributions[i])
        if c < min_contribution:
            break
        v = float(values[i])
        out.append(
            {
                "feature": names[i],
                "value": None if math.isnan(v) else v,
                "contribution": c,
                "text": sentence(names[i], v, payment),
            }
        )
    return out


def all_factors(
    names: Sequence[str],
    values: Sequence[float],
    contributions: Sequence[float],
    payment: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """Every factor with its words, sorted by absolute effect (for the console's chart)."""
    order = sorted(range(len(names)), key=lambda i: -abs(contributions[i]))
    return [
        {
            "feature": names[i],
            "value": None if math.isnan(float(values[i])) else float(values[i]),
            "contribution": float(contributions[i]),
            "text": sentence(names[i], float(values[i]), payment),
        }
        for i in order
    ]
