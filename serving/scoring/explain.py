"""SHAP values -> reasons a reviewer reads, from the feature registry's own descriptions.

The model's contributions come from LightGBM's TreeSHAP (`pred_contrib`): exact SHAP values in
log-odds, the same numbers shap.TreeExplainer gives. Factors whose sentences say the same thing
(say "first payment on this card in the last 30 days", from a count of 0 and from a median with
no history) are one factor, their contributions added, so neither the reasons nor the chart says
a sentence twice. The chart (`all_factors`) shows both directions; the reasons are its factors
pushing towards fraud, largest first, in the same words.
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping, Sequence
from typing import Any

from features.registry import BY_NAME, DAY, HOUR

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

# Aggregations that are missing (NaN) exactly when the entity has no earlier payment in the window.
_NONE_BEFORE = frozenset(
    {
        "mean",
        "median_ratio",
        "mean_ratio",
        "since_prev",
        "since_first",
        "prev_distance",
        "prev_speed",
    }
)
_WHERE = {
    "card": "on this card",
    "customer": "by this customer",
    "merchant": "at this merchant",
    "category": "in this merchant category",
    "device": "from this device",
    "ip": "from this IP address",
    "email_domain": "with this e-mail domain",
}


def _span(window: int) -> str:
    """A window in the registry's words: "the last hour", "the last 24 hours", "the last 7 days"."""
    if window == HOUR:
        return "the last hour"
    if window == DAY:
        return "the last 24 hours"
    return f"the last {window // DAY} days" if window > DAY else f"the last {window // 60} min"


def _first(entity: str, window: int) -> str:
    return f"first payment {_WHERE.get(entity, 'for this ' + entity)} in {_span(window)}"


def duration(seconds: float) -> str:
    """Seconds in the unit a person reads: 45 s, 12 min, 3.2 h, 4.5 days."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * HOUR:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * DAY:
        return f"{seconds / HOUR:.1f} h"
    return f"{seconds / DAY:.1f} days"


class _Words(string.Formatter):
    """str.format plus the registry's two word specs: `none|one|many` counts, `duration`."""

    def format_field(self, value: Any, format_spec: str) -> str:
        if isinstance(value, str):
            return value  # a missing payment field reads "unknown", whatever its spec
        if "|" in format_spec:
            forms = format_spec.split("|")
            none, one, many = forms if len(forms) == 3 else (forms[-1], *forms[-2:])
            n = round(float(value))
            chosen = none if n == 0 else one if n == 1 else many
            return chosen.replace("#", f"{n:,}")
        if format_spec == "duration":
            return duration(float(value))
        return str(format(value, format_spec))


_WORDS = _Words()


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
        if feature.aggregation in _NONE_BEFORE:
            return _first(feature.entity, feature.window)
        if feature.aggregation == "zscore":
            where = _WHERE.get(feature.entity, "")
            return f"too few earlier payments {where} in {_span(feature.window)} to compare with"
        return f"{feature.name.replace('_', ' ')}: not known for this payment"
    if name in _WHEN_ZERO and value == 0:
        return _WHEN_ZERO[name]
    facts = _Facts(payment)
    facts["value"] = value
    try:
        template = feature.description
        if "|" in template or ":duration}" in template:  # the word specs: Python's Formatter
            return _WORDS.vformat(template, (), facts)
        return template.format_map(facts)  # the rest: str's own (C) formatting, ~10x faster
    except (ValueError, TypeError, KeyError, IndexError):
        return f"{feature.name.replace('_', ' ')} = {value:g}"


def _merged(
    names: Sequence[str],
    values: Sequence[float],
    contributions: Sequence[float],
    payment: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """One factor per sentence: same words -> contributions added, named by the strongest one.

    "First payment on this card in the last 30 days" implies the same over any shorter window and
    "too few earlier payments to compare with", so those join it: one fact, said once."""
    texts = [sentence(n, float(v), payment) for n, v in zip(names, values, strict=True)]
    none_before: dict[int, tuple[str, int]] = {}  # factor -> (entity, window) it has no history in
    for i, name in enumerate(names):
        f, v = BY_NAME.get(name), float(values[i])
        if f is None or f.window == 0:
            continue
        nan = math.isnan(v)
        if (f.aggregation in _NONE_BEFORE and nan) or (f.aggregation == "count" and v == 0):
            none_before[i] = (f.entity, f.window)
    longest: dict[str, int] = {}
    for entity, window in none_before.values():
        longest[entity] = max(window, longest.get(entity, 0))
    groups: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        f, v = BY_NAME.get(names[i]), float(values[i])
        if i in none_before:
            entity, window = none_before[i]
            own = window == longest[entity] and text.startswith("first payment")
            text = text if own else _first(entity, longest[entity])  # own words may say more
        elif f is not None and f.aggregation == "zscore" and math.isnan(v):
            window = longest.get(f.entity, 0)
            text = _first(f.entity, window) if window >= f.window else text
        groups.setdefault(text, []).append(i)
    out = []
    for text, members in groups.items():
        lead = max(members, key=lambda i: abs(float(contributions[i])))
        v = float(values[lead])
        out.append(
            {
                "feature": names[lead],
                "value": None if math.isnan(v) else v,
                "contribution": float(sum(float(contributions[i]) for i in members)),
                "text": text,
                "features": [names[i] for i in members],
            }
        )
    return out


def reasons(
    names: Sequence[str],
    values: Sequence[float],
    contributions: Sequence[float],
    payment: Mapping[str, Any],
    top: int = 5,
    min_contribution: float = 0.05,
) -> list[dict[str, Any]]:
    """The strongest factors towards fraud, largest first: feature, value, contribution, text.

    The same merged factors as `all_factors` (so the chart's red bars read the same words)."""
    return towards_fraud(_merged(names, values, contributions, payment), top, min_contribution)


def towards_fraud(
    factors: Sequence[Mapping[str, Any]], top: int = 5, min_contribution: float = 0.05
) -> list[dict[str, Any]]:
    """The reasons out of `all_factors`' list (the scorer has it already: no second pass)."""
    towards = [f for f in factors if f["contribution"] >= min_contribution]
    towards.sort(key=lambda f: -f["contribution"])
    return [{k: f[k] for k in ("feature", "value", "contribution", "text")} for f in towards[:top]]


def all_factors(
    names: Sequence[str],
    values: Sequence[float],
    contributions: Sequence[float],
    payment: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """Every factor with its words, sorted by absolute effect (for the console's chart); a merged
    factor lists its features in `features`."""
    factors = _merged(names, values, contributions, payment)
    return sorted(factors, key=lambda f: -abs(f["contribution"]))
