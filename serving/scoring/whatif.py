"""Backtests and shadow comparisons against the stored payments: the I/O around the pure
`backtest` module (read the period, the labels known now; record a backtest so a policy change
can cite it). Used by the admin routes and `riskgate backtest`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Engine, and_, insert, select

from serving.review.team import TeamConfig
from serving.scoring import backtest, facts
from serving.scoring.policy import PolicyConfig, to_doc
from serving.store import db


def _aware(v: datetime) -> datetime:
    return v.replace(tzinfo=UTC) if v.tzinfo is None else v


def period_of(
    engine: Engine, start: datetime | None, end: datetime | None, days: int = backtest.DEFAULT_DAYS
) -> backtest.Period:
    """The period asked for; a missing end is just after the latest stored payment, a missing
    start `days` before the end."""
    if end is None:
        end = backtest.default_period(facts.latest_payment_time(engine), days).end
    end = _aware(end)
    start = end - timedelta(days=days) if start is None else _aware(start)
    return backtest.Period(start, end)


def run_backtest(
    engine: Engine,
    proposed: PolicyConfig,
    in_force: PolicyConfig,
    period: backtest.Period,
    *,
    as_of: datetime,
    team: TeamConfig | None = None,
) -> dict[str, Any]:
    stored = facts.load(engine, period.start, period.end)
    labels = facts.labels_known(engine, stored.transaction_id)
    return backtest.run(stored, labels, proposed, in_force, period, as_of=as_of, team=team)


def record(
    engine: Engine, report: dict[str, Any], proposed: PolicyConfig, actor: str, now: datetime
) -> int:
    """Store the backtest's headline figures; a PUT of the same policy cites it."""
    with engine.begin() as conn:
        result = conn.execute(
            insert(db.policy_backtests).values(
                created_at=now,
                actor=actor,
                policy_digest=report["policy_digest"],
                policy=to_doc(proposed),
                period_start=datetime.fromisoformat(report["period"]["start"]),
                period_end=datetime.fromisoformat(report["period"]["end"]),
                summary=backtest.summary(report),
            )
        )
    assert result.inserted_primary_key is not None
    return int(result.inserted_primary_key[0])


def latest_backtest(engine: Engine, digest: str, after: datetime | None) -> dict[str, Any] | None:
    """The newest backtest of this policy made after `after` (the policy in force's time)."""
    t = db.policy_backtests
    q = select(t.c.id, t.c.created_at, t.c.summary).where(t.c.policy_digest == digest)
    if after is not None:
        q = q.where(t.c.created_at > after)
    with engine.connect() as conn:
        row = conn.execute(q.order_by(t.c.id.desc()).limit(1)).first()
    if row is None:
        return None
    return {"id": int(row.id), "created_at": _aware(row.created_at), "summary": row.summary}


def history(engine: Engine, actions: Sequence[str], limit: int) -> list[dict[str, Any]]:
    a = db.audit_log
    q = select(a).where(a.c.action.in_(actions)).order_by(a.c.id.desc()).limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    out = []
    for r in rows:
        detail = r.detail or {}
        out.append(
            {
                "id": int(r.id),
                "at": _aware(r.at).isoformat().replace("+00:00", "Z"),
                "actor": r.actor,
                "action": r.action,
                "reason": detail.get("reason"),
                "force": detail.get("force"),
                "backtest_id": detail.get("backtest_id"),
                "backtest": detail.get("backtest"),
                "shadow": detail.get("shadow"),
                "policy": detail.get("policy"),
            }
        )
    return out


def shadow_comparison(engine: Engine, shadow_id: str) -> dict[str, Any]:
    """Live vs shadow decisions of the payments the shadow has seen, with labels known now."""
    d, f = db.decisions, db.payment_facts
    q = (
        select(d.c.transaction_id, d.c.decision, f.c.shadow_decision, d.c.amount)
        .join(f, f.c.transaction_id == d.c.transaction_id)
        .where(and_(f.c.shadow_id == shadow_id))
    )
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    known = facts.labels_known(engine, [r.transaction_id for r in rows])
    kinds = ("approve", "review", "decline")
    live = {k: 0 for k in kinds}
    shadow = {k: 0 for k in kinds}
    cross: dict[str, int] = {}
    differ, differ_amount = 0, 0.0
    caught = {"live": 0, "shadow": 0}
    for r in rows:
        live[r.decision] += 1
        shadow[r.shadow_decision] += 1
        if r.decision != r.shadow_decision:
            key = f"{r.decision}->{r.shadow_decision}"
            cross[key] = cross.get(key, 0) + 1
            differ += 1
            differ_amount += float(r.amount)
        if known.get(r.transaction_id):
            caught["live"] += int(r.decision != "approve")
            caught["shadow"] += int(r.shadow_decision != "approve")
    return {
        "payments": len(rows),
        "live": live,
        "shadow": shadow,
        "differ": differ,
        "differ_amount": round(differ_amount, 2),
        "by_kind": cross,
        "fraud_known": int(np.sum([bool(v) for v in known.values()])),
        "fraud_held_or_declined": caught,
    }
