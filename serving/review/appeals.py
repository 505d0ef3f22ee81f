"""A merchant contests a declined payment: once per payment, as a case in the appeals queue.

Opening an appeal is one transaction: the appeal row (the payment is its primary key, so of
many racing appeals exactly one is stored), the case, the audit row and the `appeal.opened`
outbox event. A payment declined at scoring gets a new case; one declined by a reviewer has its
case reopened into the appeals queue (one case per payment stays the database's rule; the
earlier decision is kept in the appeal's `prior` and in the audit trail). A reviewer's decision
on the case settles the appeal (`settle`, called inside the deciding transaction): approve =
overturned (the payment settles, a genuine label), decline = upheld (a fraud label); both labels
have `source="appeal"`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from data import pan
from serving.core.auth import Principal
from serving.core.schemas import rfc3339
from serving.store import db

QUEUE = "appeals"
EVENT = {"approve": "appeal.overturned", "decline": "appeal.upheld"}
OUTCOME = {"approve": "overturned", "decline": "upheld"}


class AppealError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _event(conn: Connection, kind: str, txn: str, payload: dict[str, Any], now: datetime) -> str:
    event_id = pan.id_without_pan(lambda _: str(uuid.uuid4()))
    conn.execute(
        insert(db.outbox).values(
            event_id=event_id,
            type=kind,
            transaction_id=txn,
            payload={"event_id": event_id, "type": kind, "transaction_id": txn, **payload},
            created_at=now,
            attempts=0,
            next_attempt_at=now,
        )
    )
    return event_id


def view(row: Any) -> dict[str, Any]:
    """What the merchant sees of an appeal."""
    return {
        "status": row.status,
        "opened_at": rfc3339(row.opened_at),
        "decided_at": rfc3339(row.decided_at) if row.decided_at is not None else None,
    }


def open_appeal(
    engine: Engine,
    transaction_id: str,
    note: str | None,
    who: Principal,
    now: datetime,
    sla_minutes: float,
    idempotency: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Open the appeal of a declined payment. A merchant key reaches only its own payments
    (another's is 404 like an unknown one); not declined or already appealed is 409.
    `idempotency`: (key, body hash) stored with the answer in the same transaction."""
    from serving.review.queue import audit

    note = None if note is None else pan.mask(note)
    d, c = db.decisions.c, db.cases.c
    try:
        with engine.begin() as conn:
            pay = conn.execute(
                select(
                    d.transaction_id, d.status, d.merchant_id, d.amount, d.probability, d.score
                ).where(d.transaction_id == transaction_id)
            ).first()
            if pay is None or (who.role == "merchant" and pay.merchant_id != who.merchant_id):
                raise AppealError(404, "not found")
            if conn.execute(
                select(db.appeals.c.status).where(db.appeals.c.transaction_id == transaction_id)
            ).first():
                raise AppealError(409, f"payment {transaction_id} was already appealed")
            if pay.status != "declined":
                raise AppealError(
                    409, f"payment {transaction_id} is {pay.status}: only a declined one"
                )
            due = now + timedelta(minutes=sla_minutes)
            open_case = {
                "status": "open",
                "queue": QUEUE,
                "queue_pinned": True,
                "created_at": now,
                "sla_due": due,
                "decision": None,
                "decided_by": None,
                "decided_at": None,
                "note": note,
                "claimed_by": None,
                "claim_key_id": None,
                "claim_expires": None,
                "hold_since": None,
                "paused_seconds": None,
                "pending_decision": None,
                "pending_by": None,
                "pending_key_id": None,
                "pending_at": None,
                "pending_note": None,
                "confirmed_by": None,
            }
            case = conn.execute(
                select(c.id, c.version, c.decision, c.decided_by, c.decided_at, c.note).where(
                    c.transaction_id == transaction_id
                )
            ).first()
            prior = None
            if case is None:  # declined at scoring: a new case, what the payment was scored on
                facts = conn.execute(
                    select(db.payment_facts.c.payment).where(
                        db.payment_facts.c.transaction_id == transaction_id
                    )
                ).scalar()
                amount = float(pay.amount)
                prob = pay.probability
                case_id = conn.execute(
                    insert(db.cases)
                    .values(
                        transaction_id=transaction_id,
                        priority=amount * (1.0 if prob is None else float(prob)),
                        amount=amount,
                        probability=prob,
                        score=pay.score,
                        merchant_id=pay.merchant_id,
                        version=0,
                        payment=facts or {},
                        features={},
                        factors=[],
                        reasons=[],
                        **open_case,
                    )
                    .returning(c.id)
                ).scalar_one()
            else:  # declined by a reviewer: the case reopens in the appeals queue
                prior = {
                    "decision": case.decision,
                    "decided_by": case.decided_by,
                    "decided_at": rfc3339(case.decided_at) if case.decided_at else None,
                    "note": case.note,
                }
                reopened = conn.execute(
                    update(db.cases)
                    .where(c.id == case.id, c.version == case.version, c.status == "decided")
                    .values(**open_case, version=c.version + 1)
                )
                if reopened.rowcount != 1:  # a concurrent appeal reopened it first
                    raise AppealError(409, f"payment {transaction_id} was already appealed")
                case_id = case.id
            conn.execute(
                insert(db.appeals).values(
                    transaction_id=transaction_id,
                    case_id=case_id,
                    merchant_id=pay.merchant_id,
                    status="open",
                    note=note,
                    opened_at=now,
                    opened_by=who.name,
                    prior=prior,
                )
            )
            audit(
                conn,
                who,
                "appeal",
                transaction_id,
                {"case_id": case_id, "note": note, "prior": prior},
                now,
            )
            event_id = _event(
                conn,
                "appeal.opened",
                transaction_id,
                {"status": "open", "opened_at": rfc3339(now), "note": note},
                now,
            )
            out = {
                "transaction_id": transaction_id,
                "case_id": case_id,
                "queue": QUEUE,
                "event_id": event_id,
                "appeal": {"status": "open", "opened_at": rfc3339(now), "decided_at": None},
                "sla_due": rfc3339(due),
            }
            if idempotency is not None:
                conn.execute(
                    insert(db.idempotency).values(
                        key=idempotency[0],
                        endpoint="appeal",
                        body_hash=idempotency[1],
                        status_code=201,
                        response=out,
                        created_at=now,
                    )
                )
    except IntegrityError:  # a concurrent appeal was stored first (all of this rolled back)
        raise AppealError(409, f"payment {transaction_id} was already appealed") from None
    return out


def for_case(conn: Connection, case_id: int) -> Any:
    """The open appeal this case decides, or None (a review case)."""
    a = db.appeals.c
    return conn.execute(
        select(a.transaction_id, a.status).where(a.case_id == case_id, a.status == "open")
    ).first()


def settle(
    conn: Connection,
    txn: str,
    decision: str,
    note: str | None,
    decided_by: str,
    now: datetime,
) -> tuple[str, bool]:
    """The appeal's outcome inside the deciding transaction: the appeal row and its label.
    Returns (webhook event type, whether the label says fraud)."""
    kind = "approve" if decision == "approve" else "decline"
    conn.execute(
        update(db.appeals)
        .where(db.appeals.c.transaction_id == txn, db.appeals.c.status == "open")
        .values(status=OUTCOME[kind], decided_at=now, decided_by=decided_by)
    )
    is_fraud = kind == "decline"
    conn.execute(
        insert(db.labels).values(
            transaction_id=txn,
            is_fraud=is_fraud,
            label_time=now,
            source="appeal",
            reason=note,
            created_at=now,
        )
    )
    return EVENT[kind], is_fraud


def of_payments(conn: Connection, transaction_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Transaction id -> the merchant's view of its appeal."""
    if not transaction_ids:
        return {}
    a = db.appeals.c
    rows = conn.execute(
        select(a.transaction_id, a.status, a.opened_at, a.decided_at).where(
            a.transaction_id.in_(list(transaction_ids))
        )
    ).all()
    return {r.transaction_id: view(r) for r in rows}


def open_count(conn: Connection, merchant_id: str) -> int:
    a = db.appeals.c
    return int(
        conn.execute(
            select(func.count()).where(a.merchant_id == merchant_id, a.status == "open")
        ).scalar_one()
    )
