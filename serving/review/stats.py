"""The team lead's numbers (pure): per queue, reviewer and explanation arm, per day: cases
decided, median and p90 time to decision, SLA breaches, share approved, and accuracy against
later labels (an approval later charged back is wrong, a decline later shown genuine is wrong),
with 95% Wilson intervals; plus queue demand vs staffed supply for the next hours.

Input rows are plain mappings read by operations.decided_rows(); nothing here does I/O.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from serving.review.team import TeamConfig

Z95 = 1.959963984540054


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default) of a non-empty list, else None."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def wilson(successes: int, n: int) -> tuple[float, float] | None:
    """95% Wilson score interval of a proportion (sound at small n and at 0 or 1)."""
    if n == 0:
        return None
    p = successes / n
    denom = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mean_interval(values: Sequence[float]) -> tuple[float, float] | None:
    """95% normal interval of a mean (two or more values)."""
    if len(values) < 2:
        return None
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))
    half = Z95 * sd / math.sqrt(len(values))
    return (m - half, m + half)


def verdict(decision: str, label_fraud: bool | None) -> bool | None:
    """True when the decision was right by the later label, False wrong, None unknown."""
    if label_fraud is None:
        return None
    if decision == "approve":
        return not label_fraud
    return label_fraud  # decline / decline_fraud: right only if the payment was fraud


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def _group(rows: Sequence[Mapping[str, Any]], with_intervals: bool) -> dict[str, Any]:
    waits = [(_aware(r["decided_at"]) - _aware(r["created_at"])).total_seconds() for r in rows]
    breaches = sum(1 for r in rows if _aware(r["decided_at"]) > _aware(r["sla_due"]))
    approved = sum(1 for r in rows if r["decision"] == "approve")
    judged = [(r, verdict(r["decision"], r["label_fraud"])) for r in rows]
    labelled = [(r, ok) for r, ok in judged if ok is not None]
    wrong = [r for r, ok in labelled if ok is False]
    out: dict[str, Any] = {
        "decided": len(rows),
        "median_seconds": percentile(waits, 0.5),
        "p90_seconds": percentile(waits, 0.9),
        "sla_breaches": breaches,
        "approved_share": approved / len(rows) if rows else None,
        "labelled": len(labelled),
        "wrong": len(wrong),
        "accuracy": (len(labelled) - len(wrong)) / len(labelled) if labelled else None,
        "lost_amount": sum(
            float(r["amount"]) for r in wrong if r["decision"] == "approve"
        ),  # approved fraud: the chargeback's money
    }
    if with_intervals:
        interval = wilson(len(labelled) - len(wrong), len(labelled))
        out["accuracy_ci95"] = list(interval) if interval else None
        mi = mean_interval(waits)
        out["mean_seconds"] = sum(waits) / len(waits) if waits else None
        out["mean_seconds_ci95"] = list(mi) if mi else None
        wrong_ids = {r["case_id"] for r in wrong}
        losses = [
            float(r["amount"]) if r["case_id"] in wrong_ids and r["decision"] == "approve" else 0.0
            for r in rows
        ]
        li = mean_interval(losses)
        out["lost_per_case"] = sum(losses) / len(losses) if losses else None
        out["lost_per_case_ci95"] = list(li) if li else None
    return out


def summarise(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Decided cases -> rows per (day, queue), (day, reviewer) and per explanation arm."""
    by_queue: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    by_reviewer: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    by_arm: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        day = _aware(r["decided_at"]).date().isoformat()
        by_queue[(day, r["queue"] or "residual")].append(r)
        by_reviewer[(day, r["decided_by"])].append(r)
        if r.get("explain_arm"):
            by_arm[r["explain_arm"]].append(r)
    return {
        "by_queue": [
            {"day": d, "queue": q, **_group(g, False)} for (d, q), g in sorted(by_queue.items())
        ],
        "by_reviewer": [
            {"day": d, "reviewer": who, **_group(g, False)}
            for (d, who), g in sorted(by_reviewer.items())
        ],
        "by_arm": [{"arm": a, **_group(g, True)} for a, g in sorted(by_arm.items())],
    }


def outlook(
    created: Sequence[tuple[datetime, str]],
    backlog: Mapping[str, int],
    now: datetime,
    team: TeamConfig,
    hours: int,
    history_days: int = 7,
) -> dict[str, Any]:
    """Demand vs staffed supply for the next `hours`: demand per hour is the mean number of
    cases that arrived in that hour of the day over the last `history_days` (per queue), the
    backlog is due now; supply is what the reviewers on shift clear at 80% utilisation."""
    start = now.replace(minute=0, second=0, microsecond=0)
    per_hour: dict[tuple[int, str], int] = defaultdict(int)
    since = start - timedelta(days=history_days)
    for at, q in created:
        at = _aware(at)
        if since <= at < start:
            per_hour[(at.hour, q or "residual")] += 1
    queues = sorted({q for _, q in per_hour} | set(backlog))
    out: list[dict[str, Any]] = []
    for h in range(hours):
        t = start + timedelta(hours=h)
        demand = {q: per_hour.get((t.hour, q), 0) / history_days for q in queues}
        on = int(team.on_shift(t.timestamp()))
        out.append(
            {
                "hour": t,
                "demand": sum(demand.values()),
                "demand_by_queue": demand,
                "reviewers_on_shift": on,
                "supply": float(team.capacity_per_hour(t.timestamp())),
            }
        )
    total_backlog = sum(backlog.values())
    need = total_backlog + sum(x["demand"] for x in out)
    have = sum(x["supply"] for x in out)
    return {
        "hours": out,
        "backlog": dict(backlog),
        "backlog_total": total_backlog,
        "demand_total": need,
        "supply_total": have,
        "short_by": max(0.0, need - have),
        "team": team.describe(),
    }
