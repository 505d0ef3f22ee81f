"""Review operations on the database: queue settings, routing of new cases, escalation,
reassignment and hold (the SLA clock paused). The rules themselves are in routing.py (pure);
every change a person makes is audited in the same transaction.

Routing is lazy: the scoring path writes a case with no queue; the first review call after it
(`route_pending`) files it by the rules in force and sets its SLA from that queue's. A rule
change re-files the open cases no person has moved.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, case, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from serving.core.auth import Principal
from serving.review import routing
from serving.review.queue import CaseError, audit
from serving.store import db

SETTING = "queues"
ROUTE_BATCH = 5_000  # cases filed per call at most (a burst is filed over a few calls)


def _aware(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def load_config(engine: Engine | Connection, sla_minutes: float) -> routing.QueueConfig:
    """The queues in force (stored by PUT /queues/{name}), else the default single queue."""
    q = select(db.settings_table.c.value).where(db.settings_table.c.name == SETTING)
    if isinstance(engine, Connection):
        doc = engine.execute(q).scalar()
    else:
        with engine.connect() as conn:
            doc = conn.execute(q).scalar()
    if doc is None:
        return routing.default_config(sla_minutes)
    return routing.from_doc(doc, sla_minutes)


def put_queue(
    engine: Engine, spec: routing.QueueSpec, sla_minutes: float, who: Principal, now: datetime
) -> routing.QueueConfig:
    """Add or replace one queue (audited), then re-file the open cases no person moved."""
    s = db.settings_table
    with engine.begin() as conn:
        before = load_config(conn, sla_minutes)
        config = before.with_queue(spec)  # ValueError names the field
        doc = routing.to_doc(config)
        values = {"value": doc, "updated_at": now, "updated_by": who.name}
        if conn.execute(update(s).where(s.c.name == SETTING).values(**values)).rowcount == 0:
            conn.execute(insert(s).values(name=SETTING, **values))
        old = before.get(spec.name)
        audit(
            conn,
            who,
            "queue",
            spec.name,
            {
                "before": routing.spec_to_doc(old) if old else None,
                "after": routing.spec_to_doc(spec),
            },
            now,
        )
        c = db.cases.c
        conn.execute(
            update(db.cases)
            .where(c.status == "open", or_(c.queue_pinned.is_(None), c.queue_pinned.is_(False)))
            .values(queue=None)
        )
    route_pending(engine, config, now)
    return config


def route_pending(
    engine: Engine, config: routing.QueueConfig, now: datetime, arms: tuple[str, ...] = ()
) -> int:
    """File open cases that have no queue yet; their SLA becomes their queue's. Returns how many.

    Two workers filing the same case compute the same queue; the UPDATE is guarded by
    `queue IS NULL`, so the first one wins and the other changes nothing.
    """
    c = db.cases.c
    d = db.decisions.c
    with engine.begin() as conn:
        rows = conn.execute(
            select(
                c.id,
                c.amount,
                c.merchant_id,
                c.payment,
                c.score,
                c.created_at,
                c.paused_seconds,
                d.source,
            )
            .join(db.decisions, d.transaction_id == c.transaction_id)
            .where(c.status == "open", c.queue.is_(None))
            .limit(ROUTE_BATCH)
        ).all()
        for r in rows:
            name = routing.route(
                config, routing.facts_of(r.amount, r.merchant_id, r.payment, r.score, r.source)
            )
            spec = config.get(name)
            assert spec is not None
            created = _aware(r.created_at)
            assert created is not None
            due = created + timedelta(minutes=spec.sla_minutes, seconds=r.paused_seconds or 0.0)
            conn.execute(
                update(db.cases)
                .where(c.id == r.id, c.queue.is_(None))
                .values(queue=name, sla_due=due)
            )
    if arms:
        assign_arms(engine, arms)
    return len(rows)


ARMS = ("score", "score+facts", "score+facts+shap")


def assign_arms(engine: Engine, arms: tuple[str, ...]) -> int:
    """The explanation experiment: each open case without an arm gets one at random (recorded
    in the case, so the console renders it and the stats compare arms). Guarded by
    `explain_arm IS NULL`: a case keeps its first arm."""
    pick = random.SystemRandom()
    c = db.cases.c
    with engine.begin() as conn:
        ids = conn.execute(
            select(c.id).where(c.status == "open", c.explain_arm.is_(None)).limit(ROUTE_BATCH)
        ).scalars()
        n = 0
        for case_id in list(ids):
            n += conn.execute(
                update(db.cases)
                .where(c.id == case_id, c.explain_arm.is_(None))
                .values(explain_arm=pick.choice(arms))
            ).rowcount
    return n


def _case(conn: Connection, case_id: int) -> Any:
    row = conn.execute(select(db.cases).where(db.cases.c.id == case_id)).first()
    if row is None:
        raise CaseError(404, f"case {case_id} not found")
    return row


def _open(conn: Connection, case_id: int) -> Any:
    row = _case(conn, case_id)
    if row.status != "open":
        raise CaseError(409, f"case {case_id} is already decided")
    return row


def may_work(config: routing.QueueConfig, row: Any, who: Principal) -> None:
    """Escalated cases are the supervisors' (403 for a reviewer)."""
    if row.queue == routing.SUPERVISORS and who.role != "supervisor":
        raise CaseError(403, f"case {row.id} is escalated: only a supervisor may work on it")


def claim_guard(engine: Engine, config: routing.QueueConfig, case_id: int, who: Principal) -> Any:
    """Check a claim of this case by id (403/409 naming why) and return the SQL condition the
    claim's guarded UPDATE repeats (so a concurrent escalation or queue change is not missed)."""
    with engine.connect() as conn:
        row = _case(conn, case_id)
    may_work(config, row, who)
    spec = config.get(row.queue or routing.RESIDUAL)
    if spec is not None and spec.mode == "locked" and who.role != "supervisor":
        raise CaseError(
            409,
            f"queue {spec.name} is locked: take its next case (POST /queues/{spec.name}/next)",
        )
    return _same_queue(row.queue)


def decision_guard(
    engine: Engine, config: routing.QueueConfig, case_id: int, decision: str, who: Principal
) -> Any:
    """Check a decision on this case: the queue must allow it, an escalated case is the
    supervisors', a locked queue's case is decided by the reviewer who was given it."""
    c = db.cases.c
    with engine.connect() as conn:
        row = _case(conn, case_id)
    may_work(config, row, who)
    spec = config.get(row.queue or routing.RESIDUAL)
    if spec is not None and decision not in spec.decisions:
        raise CaseError(
            422,
            f"decision: queue {spec.name} allows {', '.join(spec.decisions)} (not {decision})",
        )
    guard = _same_queue(row.queue)
    if spec is not None and spec.mode == "locked" and who.role != "supervisor":
        guard = and_(guard, c.claim_key_id == who.key_id)
        if row.claim_key_id != who.key_id and row.status == "open":
            raise CaseError(
                409,
                f"queue {spec.name} is locked: decide the case you were given "
                f"(POST /queues/{spec.name}/next)",
            )
    return guard


def _same_queue(name: str | None) -> Any:
    c = db.cases.c
    return c.queue.is_(None) if name is None else c.queue == name


def next_in_queue(
    engine: Engine,
    config: routing.QueueConfig,
    name: str,
    who: Principal,
    now: datetime,
    minutes: float,
) -> dict[str, Any]:
    """The next free case of one queue, claimed for the caller (held cases wait)."""
    from serving.review.queue import claim_next

    if config.get(name) is None:
        raise CaseError(404, f"queue {name} not found")
    if name == routing.SUPERVISORS and who.role != "supervisor":
        raise CaseError(403, "the supervisors queue is worked by supervisors only")
    route_pending(engine, config, now)
    c = db.cases.c
    where = and_(c.queue == name, c.hold_since.is_(None), c.pending_key_id.is_(None))
    try:
        return claim_next(engine, who, now, minutes, where=where)
    except CaseError as exc:
        if exc.status == 404:
            raise CaseError(404, f"no free case in queue {name}") from None
        raise


def escalate(engine: Engine, case_id: int, reason: str, who: Principal, now: datetime) -> Any:
    """Move a case to the supervisors (its claim released), with the reason; audited."""
    c = db.cases.c
    with engine.begin() as conn:
        row = _open(conn, case_id)
        if row.queue == routing.SUPERVISORS:
            raise CaseError(409, f"case {case_id} is already escalated")
        changed = conn.execute(
            update(db.cases)
            .where(c.id == case_id, c.status == "open", c.version == row.version)
            .values(
                queue=routing.SUPERVISORS,
                queue_pinned=True,
                escalated_at=now,
                escalated_by=who.name,
                escalation_reason=reason,
                claimed_by=None,
                claim_key_id=None,
                claim_expires=None,
                version=c.version + 1,
            )
        ).rowcount
        if changed != 1:
            raise CaseError(409, f"case {case_id} changed meanwhile: reload it")
        audit(
            conn,
            who,
            "escalate",
            str(case_id),
            {"from_queue": row.queue, "reason": reason, "transaction_id": row.transaction_id},
            now,
        )
    return {"case_id": case_id, "queue": routing.SUPERVISORS, "escalated_by": who.name}


def reassign(
    engine: Engine,
    config: routing.QueueConfig,
    case_id: int,
    reason: str,
    who: Principal,
    now: datetime,
    *,
    to_queue: str | None,
    to_reviewer: Principal | None,
    minutes: float,
) -> dict[str, Any]:
    """A supervisor moves a case to another queue and/or gives it to one reviewer (who then
    holds its claim); the reason is mandatory and audited with from and to."""
    if to_queue is not None and config.get(to_queue) is None:
        raise CaseError(422, f"queue: {to_queue} is not a configured queue")
    c = db.cases.c
    with engine.begin() as conn:
        row = _open(conn, case_id)
        values: dict[str, Any] = {"version": c.version + 1}
        if to_queue is not None:
            values.update(queue=to_queue, queue_pinned=True)
            spec = config.get(to_queue)
            assert spec is not None
            created = _aware(row.created_at)
            assert created is not None
            values["sla_due"] = created + timedelta(
                minutes=spec.sla_minutes, seconds=row.paused_seconds or 0.0
            )
        if to_reviewer is not None:
            values.update(
                claimed_by=to_reviewer.name,
                claim_key_id=to_reviewer.key_id,
                claim_expires=now + timedelta(minutes=minutes),
            )
        changed = conn.execute(
            update(db.cases)
            .where(c.id == case_id, c.status == "open", c.version == row.version)
            .values(**values)
        ).rowcount
        if changed != 1:
            raise CaseError(409, f"case {case_id} changed meanwhile: reload it")
        held = _aware(row.claim_expires)
        detail = {
            "reason": reason,
            "transaction_id": row.transaction_id,
            "from_queue": row.queue,
            "to_queue": to_queue if to_queue is not None else row.queue,
            "from_reviewer": row.claimed_by if held is not None and held > now else None,
            "to_reviewer": to_reviewer.name if to_reviewer is not None else None,
        }
        audit(conn, who, "reassign", str(case_id), detail, now)
    return {"case_id": case_id, **detail}


def hold(engine: Engine, case_id: int, reason: str, who: Principal, now: datetime) -> Any:
    """Waiting for the customer: the SLA clock stops until `resume` (or the decision)."""
    c = db.cases.c
    with engine.begin() as conn:
        row = _open(conn, case_id)
        if row.hold_since is not None:
            raise CaseError(409, f"case {case_id} is already on hold")
        changed = conn.execute(
            update(db.cases)
            .where(c.id == case_id, c.status == "open", c.hold_since.is_(None))
            .values(hold_since=now, hold_reason=reason, version=c.version + 1)
        ).rowcount
        if changed != 1:
            raise CaseError(409, f"case {case_id} changed meanwhile: reload it")
        audit(
            conn,
            who,
            "hold",
            str(case_id),
            {"reason": reason, "transaction_id": row.transaction_id},
            now,
        )
    return {"case_id": case_id, "on_hold": True, "hold_since": now, "sla_paused": True}


def resume(engine: Engine, case_id: int, who: Principal, now: datetime) -> dict[str, Any]:
    """End a hold: the SLA deadline moves later by exactly the time spent on hold."""
    c = db.cases.c
    with engine.begin() as conn:
        row = _open(conn, case_id)
        since = _aware(row.hold_since)
        if since is None:
            raise CaseError(409, f"case {case_id} is not on hold")
        paused = max((now - since).total_seconds(), 0.0)
        due = _aware(row.sla_due)
        assert due is not None
        new_due = due + timedelta(seconds=paused)
        changed = conn.execute(
            update(db.cases)
            .where(c.id == case_id, c.status == "open", c.hold_since == row.hold_since)
            .values(
                hold_since=None,
                hold_reason=None,
                sla_due=new_due,
                paused_seconds=(row.paused_seconds or 0.0) + paused,
                version=c.version + 1,
            )
        ).rowcount
        if changed != 1:
            raise CaseError(409, f"case {case_id} changed meanwhile: reload it")
        audit(
            conn,
            who,
            "resume",
            str(case_id),
            {"paused_seconds": paused, "transaction_id": row.transaction_id},
            now,
        )
    return {"case_id": case_id, "on_hold": False, "sla_due": new_due, "paused_seconds": paused}


def queue_overview(
    engine: Engine, config: routing.QueueConfig, now: datetime
) -> list[dict[str, Any]]:
    """Each queue's settings with its open cases, overdue, on hold, awaiting confirmation."""
    route_pending(engine, config, now)
    c = db.cases.c
    late = and_(c.sla_due < now, c.hold_since.is_(None))
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                c.queue,
                func.count(),
                func.sum(case((late, 1), else_=0)),
                func.sum(case((c.hold_since.is_not(None), 1), else_=0)),
                func.sum(case((c.pending_decision.is_not(None), 1), else_=0)),
                func.min(c.created_at),
            )
            .where(c.status == "open")
            .group_by(c.queue)
        ).all()
    by_name = {r[0]: r for r in rows}
    out = []
    for spec in config.queues:
        r = by_name.get(spec.name)
        oldest = _aware(r[5]) if r is not None else None
        out.append(
            {
                **routing.spec_to_doc(spec),
                "open": int(r[1]) if r is not None else 0,
                "overdue": int(r[2] or 0) if r is not None else 0,
                "on_hold": int(r[3] or 0) if r is not None else 0,
                "awaiting_confirmation": int(r[4] or 0) if r is not None else 0,
                "oldest_wait_seconds": (now - oldest).total_seconds() if oldest else 0.0,
            }
        )
    return out


def decided_rows(engine: Engine, since: datetime) -> list[dict[str, Any]]:
    """Cases decided since `since`, each with its later label from the backend (a chargeback,
    or a payment shown genuine), for stats.summarise()."""
    c = db.cases.c
    lab = db.labels.alias("later")
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                c.id.label("case_id"),
                c.transaction_id,
                c.queue,
                c.decided_by,
                c.confirmed_by,
                c.created_at,
                c.decided_at,
                c.sla_due,
                c.decision,
                c.amount,
                c.explain_arm,
                lab.c.is_fraud.label("label_fraud"),
            )
            .outerjoin(
                lab,
                and_(lab.c.transaction_id == c.transaction_id, lab.c.source == "chargeback"),
            )
            .where(c.status == "decided", c.decided_at >= since)
            .order_by(c.decided_at)
        ).all()
    return [dict(r._mapping) for r in rows]


def arrivals(engine: Engine, since: datetime) -> tuple[list[tuple[datetime, str]], dict[str, int]]:
    """(created_at, queue) of cases opened since `since`, and the open backlog per queue."""
    c = db.cases.c
    with engine.connect() as conn:
        created = conn.execute(select(c.created_at, c.queue).where(c.created_at >= since)).all()
        open_rows = conn.execute(
            select(c.queue, func.count()).where(c.status == "open").group_by(c.queue)
        ).all()
    return (
        [(_aware(r.created_at), r.queue or routing.RESIDUAL) for r in created],  # type: ignore[misc]
        {(q or routing.RESIDUAL): int(n) for q, n in open_rows},
    )
