"""Review cases: list by priority, claim with an expiring lock, decide exactly once, audit.

Every state change is one UPDATE guarded by its preconditions (status, version, lock holder) in
the WHERE clause, so the database decides races: of many concurrent decisions on one case,
exactly one changes a row and the rest get 409. The decision, the payment's new status, the
label, the webhook event (outbox) and the audit entry are written in the same transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Engine, and_, case, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from data import pan
from serving.core.auth import Principal
from serving.core.schemas import rfc3339
from serving.store import db

ReviewDecision = Literal["approve", "decline", "decline_fraud"]
STATUS_AFTER = {"approve": "settled", "decline": "declined", "decline_fraud": "declined"}
EVENT_AFTER = {
    "approve": "payment.settled",
    "decline": "payment.declined",
    "decline_fraud": "payment.declined",
}


class CaseError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class CaseFilter:
    status: str | None = "open"
    min_amount: float | None = None
    max_amount: float | None = None
    min_score: int | None = None
    max_score: int | None = None
    merchant_id: str | None = None
    overdue: bool | None = None
    queue: str | None = None
    limit: int = 50
    offset: int = 0


def audit(
    conn: Connection,
    who: Principal,
    action: str,
    target: str | None,
    detail: dict[str, Any],
    at: datetime,
) -> None:
    conn.execute(
        insert(db.audit_log).values(
            at=at,
            actor=who.name,
            role=who.role,
            key_id=who.key_id,
            action=action,
            target=target,
            detail=detail,
        )
    )


def _late(now: datetime) -> Any:
    """Past its SLA and not on hold (a hold pauses the clock)."""
    return and_(db.cases.c.sla_due < now, db.cases.c.hold_since.is_(None))


def _order(now: datetime) -> list[Any]:
    overdue = case((_late(now), 1), else_=0)
    return [
        overdue.desc(),
        db.cases.c.priority.desc(),
        db.cases.c.created_at.asc(),
        db.cases.c.id.asc(),
    ]


def list_cases(engine: Engine, f: CaseFilter, now: datetime) -> tuple[list[dict[str, Any]], int]:
    """(page of cases in queue order, total matching)."""
    c = db.cases.c
    conds = []
    if f.status:
        conds.append(c.status == f.status)
    if f.min_amount is not None:
        conds.append(c.amount >= f.min_amount)
    if f.max_amount is not None:
        conds.append(c.amount <= f.max_amount)
    if f.min_score is not None:
        conds.append(c.score >= f.min_score)
    if f.max_score is not None:
        conds.append(c.score <= f.max_score)
    if f.merchant_id:
        conds.append(c.merchant_id == f.merchant_id)
    if f.overdue is True:
        conds.append(_late(now))
    elif f.overdue is False:
        conds.append(~_late(now))
    if f.queue:
        conds.append(c.queue == f.queue)
    where = and_(*conds) if conds else and_(True)
    cols = [
        c.id,
        c.transaction_id,
        c.created_at,
        c.sla_due,
        c.status,
        c.priority,
        c.amount,
        c.probability,
        c.score,
        c.merchant_id,
        c.claimed_by,
        c.claim_expires,
        c.decision,
        c.decided_by,
        c.decided_at,
        c.reasons,
        c.payment,
        *OPS_COLUMNS,
    ]
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(db.cases).where(where)).scalar_one()
        rows = conn.execute(
            select(*cols).where(where).order_by(*_order(now)).limit(f.limit).offset(f.offset)
        ).all()
    return [summary(r._mapping, now) for r in rows], int(total)


def _aware(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    from datetime import UTC

    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


OPS_COLUMNS = (
    db.cases.c.queue,
    db.cases.c.escalated_at,
    db.cases.c.escalated_by,
    db.cases.c.escalation_reason,
    db.cases.c.hold_since,
    db.cases.c.hold_reason,
    db.cases.c.pending_decision,
    db.cases.c.pending_by,
    db.cases.c.pending_at,
    db.cases.c.confirmed_by,
    db.cases.c.explain_arm,
)


def _ops(row: Any, now: datetime) -> dict[str, Any]:
    """Queue, escalation, hold and four-eyes state of a case (for the list and the case page)."""
    hold_since = _aware(row["hold_since"])
    return {
        "queue": row["queue"],
        "escalated": row["queue"] == "supervisors",
        "escalated_by": row["escalated_by"],
        "escalated_at": _aware(row["escalated_at"]),
        "escalation_reason": row["escalation_reason"],
        "on_hold": hold_since is not None,
        "hold_since": hold_since,
        "hold_reason": row["hold_reason"],
        "pending_decision": row["pending_decision"],
        "pending_by": row["pending_by"],
        "pending_at": _aware(row["pending_at"]),
        "confirmed_by": row["confirmed_by"],
        "explain_arm": row["explain_arm"],
    }


def summary(row: Any, now: datetime) -> dict[str, Any]:
    sla_due = _aware(row["sla_due"])
    created = _aware(row["created_at"])
    claim_expires = _aware(row["claim_expires"])
    reasons = row["reasons"] or []
    payment = row["payment"] or {}
    held = claim_expires is not None and claim_expires > now and row["status"] == "open"
    hold_since = _aware(row["hold_since"])
    clock = hold_since if hold_since is not None else now  # a hold stops the SLA clock
    return {
        "id": row["id"],
        "transaction_id": row["transaction_id"],
        "status": row["status"],
        "amount": row["amount"],
        "currency": payment.get("currency"),
        "probability": row["probability"],
        "score": row["score"],
        "priority": row["priority"],
        "merchant_id": row["merchant_id"],
        "created_at": created,
        "sla_due": sla_due,
        "age_seconds": (now - created).total_seconds() if created else None,
        "sla_seconds_left": (sla_due - clock).total_seconds() if sla_due else None,
        "sla_paused": hold_since is not None,
        "overdue": bool(sla_due and sla_due < clock and row["status"] == "open"),
        "top_reason": reasons[0]["text"] if reasons else None,
        # what the console groups a burst of one attacker by (masked card, device, IP token)
        "group": {
            "card": payment.get("card_id"),
            "device": payment.get("device_id"),
            "ip": payment.get("ip_hash"),
        },
        "claimed_by": row["claimed_by"] if held else None,
        "claim_expires": claim_expires if held else None,
        "decision": row["decision"],
        "decided_by": row["decided_by"],
        "decided_at": _aware(row["decided_at"]),
        **_ops(row, now),
    }


def get_case(engine: Engine, case_id: int, now: datetime) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(select(db.cases).where(db.cases.c.id == case_id)).first()
        if row is None:
            raise CaseError(404, f"case {case_id} not found")
        r = row._mapping
        card, response = conn.execute(
            select(db.decisions.c.card_id, db.decisions.c.response).where(
                db.decisions.c.transaction_id == r["transaction_id"]
            )
        ).one()
        recent = conn.execute(
            select(
                db.decisions.c.transaction_id,
                db.decisions.c.payment_time,
                db.decisions.c.amount,
                db.decisions.c.currency,
                db.decisions.c.merchant_id,
                db.decisions.c.status,
                db.decisions.c.probability,
            )
            .where(db.decisions.c.card_id == card)
            .order_by(db.decisions.c.payment_time.desc())
            .limit(30)
        ).all()
    out = summary(r, now)
    out.update(
        {
            "payment": r["payment"],
            "features": r["features"],
            "factors": r["factors"],
            "reasons": r["reasons"],
            "version": r["version"],
            "note": r["note"],
            # why it is held: the review band is on the expected saving by default, not on
            # the probability, so a low score can be held for its amount
            "review_by": (response or {}).get("review_by"),
            "review_threshold": (response or {}).get("review_threshold"),
            "decision_source": (response or {}).get("decision_source"),
            "card_recent": [
                {
                    "transaction_id": x.transaction_id,
                    "timestamp": _aware(x.payment_time),
                    "amount": x.amount,
                    "currency": x.currency,
                    "merchant_id": x.merchant_id,
                    "status": x.status,
                    "probability": x.probability,
                    "this": x.transaction_id == r["transaction_id"],
                }
                for x in recent
            ],
        }
    )
    return out


def _free_or_mine(who: Principal, now: datetime) -> Any:
    c = db.cases.c
    return or_(c.claimed_by.is_(None), c.claim_expires < now, c.claim_key_id == who.key_id)


def claim(
    engine: Engine,
    case_id: int,
    who: Principal,
    now: datetime,
    minutes: float,
    guard: Any = None,
) -> dict[str, Any]:
    """Take (or renew) the case's lock; 409 when another reviewer holds it or it is decided.
    `guard`: a further condition (queue rules) checked in the same guarded UPDATE."""
    expires = now + timedelta(minutes=minutes)
    c = db.cases.c
    extra = and_(True) if guard is None else guard
    with engine.begin() as conn:
        result = conn.execute(
            update(db.cases)
            .where(c.id == case_id, c.status == "open", _free_or_mine(who, now), extra)
            .values(claimed_by=who.name, claim_key_id=who.key_id, claim_expires=expires)
        )
        if result.rowcount != 1:
            row = conn.execute(
                select(c.status, c.claimed_by, c.claim_expires).where(c.id == case_id)
            ).first()
            if row is None:
                raise CaseError(404, f"case {case_id} not found")
            if row.status != "open":
                raise CaseError(409, f"case {case_id} is already decided")
            raise CaseError(
                409,
                f"case {case_id} is held by {row.claimed_by} until {rfc3339(row.claim_expires)}",
            )
        audit(conn, who, "claim", str(case_id), {"until": rfc3339(expires)}, now)
    return {"case_id": case_id, "claimed_by": who.name, "claim_expires": expires}


CLAIM_NEXT_ATTEMPTS = 20  # SQLite: candidates taken by concurrent reviewers before we give up


def _free(now: datetime) -> Any:
    """Nobody holds the case (or the hold expired): the caller's own claims are not "free"."""
    c = db.cases.c
    return and_(c.status == "open", or_(c.claimed_by.is_(None), c.claim_expires < now))


def claim_next(
    engine: Engine, who: Principal, now: datetime, minutes: float, where: Any = None
) -> dict[str, Any]:
    """Claim the first free open case in queue order; 404 when none is free.

    PostgreSQL: `SELECT ... ORDER BY <queue order> LIMIT 1 FOR UPDATE SKIP LOCKED` in the
    claiming transaction, so concurrent reviewers each lock a different row and never wait on
    each other (a row locked by one is skipped by the others). SQLite serialises writers: a
    candidate is read and taken with the guarded UPDATE; a reviewer who lost the candidate to
    another tries the next one (bounded). Either way the UPDATE repeats the "free" condition, so
    two reviewers never hold the same case. Cases the caller already holds are not handed out
    again (a second call gives the reviewer another case).
    """
    expires = now + timedelta(minutes=minutes)
    c = db.cases.c
    skip_locked = engine.dialect.name != "sqlite"
    free = _free(now) if where is None else and_(_free(now), where)
    pick = select(c.id).where(free).order_by(*_order(now)).limit(1)
    if skip_locked:
        pick = pick.with_for_update(skip_locked=True)
    for _ in range(CLAIM_NEXT_ATTEMPTS):
        with engine.begin() as conn:
            case_id = conn.execute(pick).scalar()
            if case_id is None:
                raise CaseError(404, "no free open case")
            result = conn.execute(
                update(db.cases)
                .where(c.id == case_id, free)
                .values(claimed_by=who.name, claim_key_id=who.key_id, claim_expires=expires)
            )
            if result.rowcount != 1:
                continue  # taken between our read and our write (SQLite): try the next one
            row = conn.execute(select(db.cases).where(c.id == case_id)).one()
            audit(
                conn,
                who,
                "claim",
                str(case_id),
                {"until": rfc3339(expires), "next": True},
                now,
            )
        detail = summary(row._mapping, now)
        detail["version"] = row.version
        return {
            "case_id": case_id,
            "claimed_by": who.name,
            "claim_expires": expires,
            "case": detail,
        }
    raise CaseError(409, "every free case was claimed by someone else meanwhile: try again")


def release(engine: Engine, case_id: int, who: Principal, now: datetime) -> None:
    c = db.cases.c
    with engine.begin() as conn:
        result = conn.execute(
            update(db.cases)
            .where(c.id == case_id, c.status == "open", c.claim_key_id == who.key_id)
            .values(claimed_by=None, claim_key_id=None, claim_expires=None)
        )
        if result.rowcount != 1:
            raise CaseError(409, f"case {case_id} is not held by you")
        audit(conn, who, "release", str(case_id), {}, now)


def decide(
    engine: Engine,
    case_id: int,
    decision: ReviewDecision,
    note: str | None,
    who: Principal,
    now: datetime,
    expected_version: int | None = None,
    guard: Any = None,
    four_eyes_above: float | None = None,
) -> dict[str, Any]:
    """Decide an open case exactly once; returns what the label/online update needs.

    `guard`: a further condition (queue rules) in the guarded UPDATE. Above `four_eyes_above`
    the decision is only proposed: the payment stays held until another key confirms it.
    """
    c = db.cases.c
    note = None if note is None else pan.mask(note)  # stored in the case, label, outbox, audit
    extra = and_(True) if guard is None else guard
    with engine.begin() as conn:
        row = conn.execute(
            select(
                c.version,
                c.transaction_id,
                c.status,
                c.created_at,
                c.sla_due,
                c.amount,
                c.hold_since,
                c.pending_decision,
            ).where(c.id == case_id)
        ).first()
        if row is None:
            raise CaseError(404, f"case {case_id} not found")
        version = row.version if expected_version is None else expected_version
        if row.status == "open" and row.pending_decision is not None:
            raise CaseError(
                409,
                f"case {case_id} awaits a second reviewer's confirmation of "
                f"{row.pending_decision!r} (POST /cases/{case_id}/confirm)",
            )
        proposal = four_eyes_above is not None and float(row.amount) > four_eyes_above
        values: dict[str, Any] = (
            {
                "pending_decision": decision,
                "pending_by": who.name,
                "pending_key_id": who.key_id,
                "pending_at": now,
                "pending_note": note,
            }
            if proposal
            else {
                "status": "decided",
                "decision": decision,
                "decided_by": who.name,
                "decided_at": now,
                "note": note,
                "hold_since": None,
            }
        )
        result = conn.execute(
            update(db.cases)
            .where(
                c.id == case_id,
                c.status == "open",
                c.version == version,
                c.pending_decision.is_(None),
                _free_or_mine(who, now),
                extra,
            )
            .values(
                **values,
                version=c.version + 1,  # the stored value (equal to `version`)
                claimed_by=None,
                claim_key_id=None,
                claim_expires=None,
            )
        )
        if result.rowcount != 1:
            _why_not(conn, case_id, version)
        if proposal:
            audit(
                conn,
                who,
                "propose",
                str(case_id),
                {"decision": decision, "transaction_id": row.transaction_id, "note": note},
                now,
            )
            return {
                "case_id": case_id,
                "transaction_id": row.transaction_id,
                "decision": decision,
                "status": "held_for_review",
                "pending_confirmation": True,
                "four_eyes_above": four_eyes_above,
            }
        return _settle(conn, case_id, row, decision, note, who.name, who, now, "decide")


def _why_not(conn: Connection, case_id: int, version: int) -> None:
    """Raise the precise 409 for a guarded UPDATE that changed no row."""
    c = db.cases.c
    current = conn.execute(
        select(c.status, c.claimed_by, c.claim_expires, c.version, c.pending_decision).where(
            c.id == case_id
        )
    ).first()
    assert current is not None
    if current.status != "open":
        raise CaseError(409, f"case {case_id} is already decided")
    if current.version != version:
        raise CaseError(
            409, f"case {case_id} changed (version {current.version}, expected {version})"
        )
    if current.pending_decision is not None:
        raise CaseError(409, f"case {case_id} awaits a second reviewer's confirmation")
    if current.claimed_by is not None:
        raise CaseError(
            409,
            f"case {case_id} is held by {current.claimed_by} "
            f"until {rfc3339(current.claim_expires)}",
        )
    raise CaseError(409, f"case {case_id} changed meanwhile (queue or escalation): reload it")


def _settle(
    conn: Connection,
    case_id: int,
    row: Any,
    decision: str,
    note: str | None,
    decided_by: str,
    who: Principal,
    now: datetime,
    action: str,
    confirmed: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The decided case's consequences, in the deciding transaction: the payment's status, the
    label, the webhook event and the audit entry."""
    c = db.cases.c
    txn = row.transaction_id
    status = STATUS_AFTER[decision]
    conn.execute(
        update(db.decisions)
        .where(db.decisions.c.transaction_id == txn)
        .values(status=status, status_at=now)
    )
    from serving.review import appeals  # (appeals imports this module)

    event_type = EVENT_AFTER[decision]
    label_is_fraud = {"approve": False, "decline_fraud": True}.get(decision)
    if appeals.for_case(conn, case_id) is not None:  # an appeal: its outcome and its label
        event_type, label_is_fraud = appeals.settle(conn, txn, decision, note, decided_by, now)
    elif label_is_fraud is not None:
        conn.execute(
            insert(db.labels).values(
                transaction_id=txn,
                is_fraud=label_is_fraud,
                label_time=now,
                source="review",
                reason=note,
                created_at=now,
            )
        )
    reasons = conn.execute(select(c.reasons).where(c.id == case_id)).scalar_one()
    event_id = pan.id_without_pan(lambda _: str(uuid.uuid4()))
    conn.execute(
        insert(db.outbox).values(
            event_id=event_id,
            type=event_type,
            transaction_id=txn,
            payload={
                "event_id": event_id,
                "type": event_type,
                "transaction_id": txn,
                "decision": decision,
                "status": status,
                "reviewer": decided_by,
                "decided_at": rfc3339(now),
                "reasons": [r["text"] for r in (reasons or [])],
                "note": note,
                **({"confirmed_by": who.name} if confirmed is not None else {}),
            },
            created_at=now,
            attempts=0,
            next_attempt_at=now,
        )
    )
    detail = {"decision": decision, "transaction_id": txn, "note": note, **(confirmed or {})}
    audit(conn, who, action, str(case_id), detail, now)
    due = _aware(row.sla_due)
    held = _aware(row.hold_since)
    assert due is not None
    if held is not None:  # the clock stood still during the hold
        due = due + (now - held)
    return {
        "case_id": case_id,
        "transaction_id": txn,
        "decision": decision,
        "status": status,
        "event_id": event_id,
        "decided_by": decided_by,
        "waited_seconds": (now - _aware(row.created_at)).total_seconds(),  # type: ignore[operator]
        "past_sla": now > due,
        "label_is_fraud": label_is_fraud,  # None: no label (a plain decline)
    }


def confirm(
    engine: Engine, case_id: int, agree: bool, note: str | None, who: Principal, now: datetime
) -> dict[str, Any]:
    """Four eyes: another key confirms (or rejects) a proposed decision. Of many concurrent
    confirmations exactly one changes the row; the proposer's own key never may."""
    c = db.cases.c
    note = None if note is None else pan.mask(note)
    with engine.begin() as conn:
        row = conn.execute(
            select(
                c.version,
                c.transaction_id,
                c.status,
                c.created_at,
                c.sla_due,
                c.hold_since,
                c.pending_decision,
                c.pending_by,
                c.pending_key_id,
                c.pending_note,
            ).where(c.id == case_id)
        ).first()
        if row is None:
            raise CaseError(404, f"case {case_id} not found")
        if row.status != "open":
            raise CaseError(409, f"case {case_id} is already decided")
        if row.pending_decision is None:
            raise CaseError(409, f"case {case_id} has no decision awaiting confirmation")
        if row.pending_key_id == who.key_id:
            raise CaseError(
                403, f"case {case_id}: the reviewer who proposed the decision cannot confirm it"
            )
        values: dict[str, Any] = (
            {
                "status": "decided",
                "decision": row.pending_decision,
                "decided_by": row.pending_by,
                "decided_at": now,
                "note": row.pending_note,
                "confirmed_by": who.name,
                "hold_since": None,
            }
            if agree
            else {}
        )
        result = conn.execute(
            update(db.cases)
            .where(
                c.id == case_id,
                c.status == "open",
                c.version == row.version,
                c.pending_key_id == row.pending_key_id,
                c.pending_decision == row.pending_decision,
            )
            .values(
                **values,
                pending_decision=None,
                pending_by=None,
                pending_key_id=None,
                pending_at=None,
                pending_note=None,
                version=c.version + 1,
                claimed_by=None,
                claim_key_id=None,
                claim_expires=None,
            )
        )
        if result.rowcount != 1:
            raise CaseError(409, f"case {case_id} was confirmed or changed by someone else")
        if not agree:
            audit(
                conn,
                who,
                "reject",
                str(case_id),
                {
                    "proposed": row.pending_decision,
                    "proposed_by": row.pending_by,
                    "transaction_id": row.transaction_id,
                    "note": note,
                },
                now,
            )
            return {
                "case_id": case_id,
                "transaction_id": row.transaction_id,
                "status": "held_for_review",
                "rejected": row.pending_decision,
            }
        return _settle(
            conn,
            case_id,
            row,
            row.pending_decision,
            row.pending_note,
            row.pending_by,
            who,
            now,
            "confirm",
            {"proposed_by": row.pending_by, "confirmed_by": who.name, "confirm_note": note},
        )


def payment_status(engine: Engine, transaction_id: str, now: datetime) -> dict[str, Any]:
    """settled | held_for_review | declined, with the place in the queue and an expected wait."""
    with engine.connect() as conn:
        row = conn.execute(
            select(db.decisions).where(db.decisions.c.transaction_id == transaction_id)
        ).first()
        if row is None:
            raise CaseError(404, f"payment {transaction_id} not found")
        d = row._mapping
        out: dict[str, Any] = {
            "transaction_id": transaction_id,
            "status": d["status"],
            "decision_at_scoring": d["decision"],
            "decision_source": d["source"],
            "scored_at": _aware(d["created_at"]),
            "status_at": _aware(d["status_at"]),
            "amount": d["amount"],
            "currency": d["currency"],
        }
        crow = conn.execute(
            select(db.cases).where(db.cases.c.transaction_id == transaction_id)
        ).first()
        if crow is None:
            return out
        cs = crow._mapping
        out["case_id"] = cs["id"]
        out["sla_due"] = _aware(cs["sla_due"])
        if cs["status"] == "decided":
            out["decided_at"] = _aware(cs["decided_at"])
            return out
        # The same order as the queue (_order): a case on hold is never overdue, its clock paused.
        overdue = case((_late(now), 1), else_=0)
        late = cs["hold_since"] is None and _aware(cs["sla_due"]) < now  # type: ignore[operator]
        mine_overdue = 1 if late else 0
        ahead = conn.execute(
            select(func.count())
            .select_from(db.cases)
            .where(
                db.cases.c.status == "open",
                db.cases.c.id != cs["id"],
                or_(
                    overdue > mine_overdue,
                    and_(overdue == mine_overdue, db.cases.c.priority > cs["priority"]),
                    and_(
                        overdue == mine_overdue,
                        db.cases.c.priority == cs["priority"],
                        db.cases.c.created_at < cs["created_at"],
                    ),
                ),
            )
        ).scalar_one()
        window = now - timedelta(hours=1)
        decided = conn.execute(
            select(func.count()).select_from(db.cases).where(db.cases.c.decided_at >= window)
        ).scalar_one()
    out["queue_position"] = int(ahead) + 1
    rate = decided / 60.0  # cases per minute over the last hour
    out["decisions_per_minute"] = rate
    out["expected_wait_minutes"] = (int(ahead) + 1) / rate if rate > 0 else None
    return out


def queue_stats(engine: Engine, now: datetime) -> dict[str, Any]:
    """Depth, oldest wait, SLA breaches, decided today, median time to decision (for the header)."""
    c = db.cases.c
    start_of_day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    with engine.connect() as conn:
        depth = conn.execute(
            select(func.count()).select_from(db.cases).where(c.status == "open")
        ).scalar_one()
        oldest = conn.execute(select(func.min(c.created_at)).where(c.status == "open")).scalar_one()
        breaches = conn.execute(
            select(func.count()).select_from(db.cases).where(c.status == "open", _late(now))
        ).scalar_one()
        today = conn.execute(
            select(c.created_at, c.decided_at, c.decided_by).where(
                c.status == "decided", c.decided_at >= start_of_day
            )
        ).all()
    waits = sorted((_aware(r.decided_at) - _aware(r.created_at)).total_seconds() for r in today)  # type: ignore[operator]
    per_reviewer: dict[str, int] = {}
    for r in today:
        per_reviewer[r.decided_by] = per_reviewer.get(r.decided_by, 0) + 1
    oldest_at = _aware(oldest)
    return {
        "depth": int(depth),
        "oldest_wait_seconds": (now - oldest_at).total_seconds() if oldest_at else 0.0,
        "sla_breaches": int(breaches),
        "decided_today": len(today),
        "median_decision_seconds": waits[len(waits) // 2] if waits else None,
        "decided_today_by_reviewer": per_reviewer,
    }
