"""What a policy would have done: stored payments + labels + policy -> report. Pure.

Each stored payment is replayed through `policy.decide` with the very features, probability and
model thresholds (capacity band included) it was decided on at scoring, so a replay of the
policy that was in force reproduces the stored decisions exactly, and a proposed policy differs
only by its lists and rules. The report puts three columns side by side: what actually happened
(the stored decisions), the policy in force replayed, and the proposed policy: decisions by
kind, review volume per day and at the peak hour, fraud stopped and missed (count, amount) and
good payments held or declined with labels as known now, and the review team's replay of the
same period (p95 hold, SLA breaches) from the simulator's team model (serving.review.team).

Label maturity: a payment younger than the label delay at `as_of` may still be charged back,
so its fraud is not known yet; the label figures count only mature payments, and the younger
ones are counted apart (their decisions, and the fraud known so far).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from features import registry
from serving.review import team as team_model
from serving.scoring import rulefields
from serving.scoring.facts import Stored
from serving.scoring.policy import PolicyConfig, decide, to_doc

LABEL_DELAY = timedelta(seconds=registry.LABEL_DELAY)  # the label features' delay
DEFAULT_DAYS = 30
UNKNOWN_RISK = 0.05  # the queue's prior for a payment without a probability (writer.py)
COLUMNS = ("actual", "in_force", "proposed")


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime  # exclusive

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError("period: end must be after start")


def default_period(latest: datetime | None, days: int = DEFAULT_DAYS) -> Period:
    """The `days` ending just after the latest stored payment."""
    end = (latest or datetime.now(UTC)) + timedelta(microseconds=1)
    return Period(end - timedelta(days=days), end)


def digest(config: PolicyConfig) -> str:
    """The policy's identity: equal lists, rules and fallback, equal digest."""
    doc = json.dumps(to_doc(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(doc.encode()).hexdigest()


def replay_decisions(stored: Stored, config: PolicyConfig) -> list[str]:
    """The policy's decision for every stored payment, as scoring would have made it."""
    # only the features the rules read (a payment field wins over a feature, as in scoring)
    read = {rulefields.parse_field(r.field)[1] for r in config.rules}
    payment_fields = set(rulefields.payment_fields())
    lists = {k for k, v in (*config.allow.items(), *config.block.items()) if v}
    records = stored.records((read & payment_fields) | lists | {"amount"})
    columns = {name: stored.column(name).tolist() for name in sorted(read - payment_fields)}
    out: list[str] = []
    for i, payment in enumerate(records):
        features = {name: col[i] for name, col in columns.items()}
        outcome = decide(payment, features, stored.probability[i], stored.thresholds[i], config)
        out.append(outcome.decision)
    return out


def _per_day(times: np.ndarray, mask: np.ndarray) -> dict[str, int]:
    days = pd.to_datetime(times[mask], unit="s", utc=True).strftime("%Y-%m-%d")
    return {str(k): int(v) for k, v in pd.Series(days).value_counts().sort_index().items()}


def _peak_hour(times: np.ndarray, mask: np.ndarray) -> tuple[int, str | None]:
    if not mask.any():
        return 0, None
    hours, counts = np.unique(np.floor(times[mask] / 3600.0), return_counts=True)
    top = int(counts.argmax())  # the first (earliest) hour at the peak
    return int(counts[top]), _rfc3339(float(hours[top]) * 3600.0)


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _finite(v: float) -> float | None:
    return round(float(v), 4) if math.isfinite(v) else None


def figures(
    decisions: list[str],
    stored: Stored,
    fraud: np.ndarray,
    mature: np.ndarray,
    team: team_model.TeamConfig,
    period: tuple[float, float],
) -> dict[str, Any]:
    """Every figure of one column of the report."""
    d = np.asarray(decisions, dtype=object)
    times, amount = stored.payment_time, stored.amount
    review, decline, approve = d == "review", d == "decline", d == "approve"
    good = ~fraud
    stopped = (review | decline) & fraud  # the team model declines every reviewed fraud
    young = ~mature
    peak, peak_at = _peak_hour(times, review)
    out: dict[str, Any] = {
        "decisions": {a: int((d == a).sum()) for a in team_model.ACTIONS},
        "review_volume": int(review.sum()),
        "reviews_per_day": _per_day(times, review),
        "peak_reviews_in_one_hour": peak,
        "peak_hour": peak_at,
        "mature": {
            "payments": int(mature.sum()),
            "fraud_known": int((fraud & mature).sum()),
            "fraud_caught_count": int((stopped & mature).sum()),
            "fraud_caught_amount": round(float(amount[stopped & mature].sum()), 2),
            "fraud_missed_count": int((approve & fraud & mature).sum()),
            "fraud_missed_amount": round(float(amount[approve & fraud & mature].sum()), 2),
            "good_held": int((review & good & mature).sum()),
            "good_declined": int((decline & good & mature).sum()),
        },
        "label_immature": {
            "payments": int(young.sum()),
            "held": int((review & young).sum()),
            "declined": int((decline & young).sum()),
            "fraud_known_so_far": int((fraud & young).sum()),
        },
    }
    frame = pd.DataFrame(
        {
            "time": times,
            "is_fraud": fraud.astype(np.int64),
            "amount": amount,
            "priority": [
                (UNKNOWN_RISK if p is None else p) * a
                for p, a in zip(stored.probability, amount, strict=True)
            ],
        }
    )
    if len(frame):
        replayed, _ = team_model.replay(
            np.asarray(decisions, dtype=str), frame, team, priority_order=True, period=period
        )
        out["team"] = {
            "hold_p50_min": _finite(replayed["hold_p50_min"]),
            "hold_p95_min": _finite(replayed["hold_p95_min"]),
            "hold_max_min": _finite(replayed["hold_max_min"]),
            "sla_breaches": int(replayed["sla_breaches"]),
            "peak_queue_depth": int(replayed["peak_queue_depth"]),
            "reviewer_utilisation": _finite(replayed["reviewer_utilisation"]),
        }
    else:
        out["team"] = {"hold_p95_min": None, "sla_breaches": 0}
    return out


def run(
    stored: Stored,
    labels: Mapping[str, bool],
    proposed: PolicyConfig,
    in_force: PolicyConfig,
    period: Period,
    *,
    as_of: datetime,
    label_delay: timedelta = LABEL_DELAY,
    team: team_model.TeamConfig | None = None,
) -> dict[str, Any]:
    """The backtest report (JSON-ready): the three columns, what changes, label maturity."""
    team = team or team_model.TeamConfig()
    fraud = np.array([labels.get(t, False) for t in stored.transaction_id], dtype=bool)
    cutoff = (as_of - label_delay).timestamp()
    mature = stored.payment_time <= cutoff
    window = (period.start.timestamp(), period.end.timestamp())
    columns = {
        "actual": list(stored.decision),
        "in_force": replay_decisions(stored, in_force),
        "proposed": replay_decisions(stored, proposed),
    }
    report: dict[str, Any] = {
        "period": {"start": _iso(period.start), "end": _iso(period.end)},
        "as_of": _iso(as_of),
        "label_delay_days": label_delay.total_seconds() / 86_400,
        "payments": len(stored),
        "policy_digest": digest(proposed),
        "in_force_digest": digest(in_force),
        "team": team.describe(),
    }
    done: dict[tuple[str, ...], dict[str, Any]] = {}  # equal decisions, equal figures
    for name, d in columns.items():
        key = tuple(d)
        if key not in done:
            done[key] = figures(d, stored, fraud, mature, team, window)
        report[name] = done[key]
    report["changes"] = _changes(columns["in_force"], columns["proposed"], stored, fraud)
    return report


def _changes(
    before: list[str], after: list[str], stored: Stored, fraud: np.ndarray
) -> dict[str, Any]:
    """Payments whose decision the proposed policy changes, from -> to, with their amount."""
    out: dict[str, dict[str, Any]] = {}
    for i, (a, b) in enumerate(zip(before, after, strict=True)):
        if a != b:
            cell = out.setdefault(f"{a}->{b}", {"payments": 0, "amount": 0.0, "fraud_known": 0})
            cell["payments"] += 1
            cell["amount"] = round(cell["amount"] + float(stored.amount[i]), 2)
            cell["fraud_known"] += int(fraud[i])
    return {"changed": sum(c["payments"] for c in out.values()), "by_kind": out}


def summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """The headline figures recorded with a policy change (audit, history, console)."""

    def col(name: str) -> dict[str, Any]:
        c = report[name]
        return {
            "review_volume": c["review_volume"],
            "declined": c["decisions"]["decline"],
            "peak_reviews_in_one_hour": c["peak_reviews_in_one_hour"],
            "fraud_caught_count": c["mature"]["fraud_caught_count"],
            "fraud_caught_amount": c["mature"]["fraud_caught_amount"],
            "good_held": c["mature"]["good_held"],
            "good_declined": c["mature"]["good_declined"],
            "hold_p95_min": c["team"].get("hold_p95_min"),
            "sla_breaches": c["team"].get("sla_breaches"),
        }

    return {
        "period": report["period"],
        "payments": report["payments"],
        "label_immature_payments": report["proposed"]["label_immature"]["payments"],
        "in_force": col("in_force"),
        "proposed": col("proposed"),
        "changed": report["changes"]["changed"],
    }


def _iso(v: datetime) -> str:
    return v.astimezone(UTC).isoformat().replace("+00:00", "Z")
