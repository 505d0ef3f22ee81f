"""Population stability index (PSI) of features and scores against the training reference.

The reference profile cuts each feature into ten bins at its training quantiles (plus a bin for
missing values) and keeps the share of payments per bin; PSI = sum((cur - ref) * ln(cur / ref)).
Rule of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift. Pure functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

BINS = 10
EPS = 1e-4
SCORE = "__score__"


def _edges(values: np.ndarray) -> list[float]:
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return []
    qs = np.quantile(finite, np.linspace(0, 1, BINS + 1)[1:-1])
    return sorted({float(q) for q in qs})


def _shares(values: np.ndarray, edges: Sequence[float]) -> list[float]:
    """Share of values per bin: (-inf, e0], (e0, e1], ..., (e_last, inf), then missing."""
    values = np.asarray(values, dtype=np.float64)
    n = max(len(values), 1)
    missing = ~np.isfinite(values)
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), values[~missing], side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(np.float64)
    return [*(counts / n).tolist(), float(missing.sum()) / n]


def profile(table: pd.DataFrame, names: Sequence[str], scores: np.ndarray) -> dict[str, Any]:
    """The reference: bin edges and shares per feature and for the score."""
    out: dict[str, Any] = {}
    for name in names:
        v = table[name].to_numpy(dtype=np.float64)
        edges = _edges(v)
        out[name] = {"edges": edges, "shares": _shares(v, edges)}
    edges = _edges(np.asarray(scores, dtype=np.float64))
    out[SCORE] = {"edges": edges, "shares": _shares(scores, edges)}
    return out


def psi(reference: Mapping[str, Any], values: np.ndarray) -> float:
    ref = np.asarray(reference["shares"], dtype=np.float64)
    cur = np.asarray(_shares(values, reference["edges"]), dtype=np.float64)
    ref, cur = np.clip(ref, EPS, None), np.clip(cur, EPS, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def psi_report(
    reference: Mapping[str, Any], table: pd.DataFrame, scores: np.ndarray | None = None
) -> list[tuple[str, float]]:
    """(name, PSI) for every profiled feature present in `table` and the score; worst first."""
    rows = [
        (name, psi(ref, table[name].to_numpy(dtype=np.float64)))
        for name, ref in reference.items()
        if name != SCORE and name in table.columns
    ]
    if scores is not None and SCORE in reference:
        rows.append(("score", psi(reference[SCORE], scores)))
    return sorted(rows, key=lambda r: -r[1])


def level(value: float) -> str:
    return "stable" if value < 0.1 else ("moderate" if value < 0.25 else "major")
