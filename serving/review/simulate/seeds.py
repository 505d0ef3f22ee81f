"""`--seeds N`: one report from N runs, each figure as {"median", "worst", "per_seed"}.

A figure is worst where it is least favourable: the lowest for what should be high (good
payments settled instantly, fraud caught or stopped, catch shares), the highest for everything
else (reviews, ratios, holds, breaches, losses, utilisation). Values that are the same in
every run (names, the catch levels) stay as they are; text that differs becomes
{"per_seed": [...]}.
"""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np

HIGHER_IS_BETTER = ("settled_instantly", "caught", "stopped", "catch_share")
KEEP = frozenset({"catch", "ratio_target"})  # levels, not figures
AGGREGATED = (
    "policies",
    "equal_catch",
    "operating_points",
    "equal_amount",
    "rule_amount_sweep",
    "sla_target",
)
SETUP_PER_SEED = (
    "data_seed",
    "model_seed",
    "seed",
    "rule_amount",
    "rule_amount_percentile",
    "review_threshold",
    "decline_threshold",
    "model_trees",
    "test_fraud",
    "test_stoppable_fraud_amount",
    "scenario_day",
    "capacity_changed_decisions",
)


def _num(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(
        v, bool | np.bool_
    )


def figure(values: list[Any], key: str) -> dict[str, Any]:
    """{"median", "worst", "per_seed"} of one figure over the runs (None values are left out
    of the median and the worst)."""
    finite = [float(v) for v in values if _num(v) and np.isfinite(float(v))]
    higher = any(word in key for word in HIGHER_IS_BETTER)
    return {
        "median": statistics.median(finite) if finite else None,
        "worst": (min(finite) if higher else max(finite)) if finite else None,
        "per_seed": values,
    }


def _agg(values: list[Any], key: str) -> Any:
    v0 = values[0]
    if isinstance(v0, dict) and all(isinstance(v, dict) and v.keys() == v0.keys() for v in values):
        return {k: _agg([v[k] for v in values], k) for k in v0}
    if isinstance(v0, list) and all(isinstance(v, list) and len(v) == len(v0) for v in values):
        return [_agg([v[j] for v in values], key) for j in range(len(v0))]
    if key in KEEP:
        return v0
    if any(_num(v) for v in values) and all(_num(v) or v is None for v in values):
        return figure(values, key)
    if all(v == v0 for v in values):
        return v0
    return {"per_seed": values}


def aggregate(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """The report of N runs (the first run's setup, plus what differs per seed)."""
    from serving.review.simulate.report import targets

    first = reports[0]
    out: dict[str, Any] = {
        "setup": {
            **first["setup"],
            "seeds": len(reports),
            "per_seed": [{k: r["setup"].get(k) for k in SETUP_PER_SEED} for r in reports],
        }
    }
    for key in AGGREGATED:
        out[key] = _agg([r[key] for r in reports], key)
    out["equal_catch_detail"] = {"per_seed": [r["equal_catch_detail"] for r in reports]}
    out["surge_drift"] = first["surge_drift"]
    out["surge_drift_note"] = first["surge_drift_note"] + " (first seed)"
    out["targets"] = targets(out)
    return out


def median(v: Any) -> Any:
    """A figure's median (the figure itself when it is a single number)."""
    return v["median"] if isinstance(v, dict) and "median" in v else v


def worst(v: Any) -> Any:
    """A figure's worst seed (the figure itself when it is a single number)."""
    return v["worst"] if isinstance(v, dict) and "worst" in v else v
