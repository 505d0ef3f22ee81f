"""A merchant's own payments: status, time held, expected settlement, a harmless reason.

Reads the decisions and the open queue (one query each) and answers in the merchant's words.
The reason is a category, never the model's reasons: telling a merchant (who may be the
fraudster, or talk to one) which signal held a payment would teach how to avoid it. Times are
RFC 3339 UTC (`...Z`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Engine, select

from serving.review import appeals
from serving.review.settlement import CapacityCurve, OpenCase, expected_settlement, positions
from serving.store import db

Status = Literal["settled", "held_for_review", "declined"]
STATUSES: tuple[Status, ...] = ("settled", "held_for_review", "declined")
# what a merchant is told: the same words whatever the signal, rule, list or model was
REASON_CATEGORY: dict[str, str | None] = {
    "settled": None,
    "held_for_review": "routine security review",
    "declined": "did not pass security checks",
}
MAX_LIMIT = 500


def z(at: datetime | None) -> str | None:
    """RFC 3339 UTC with a `Z` (stored times are UTC; SQLite returns them without a zone)."""
    if at is None:
        return None
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def _aware(at: datetime | None) -> datetime | None:
    return None if at is None else at.replace(tzinfo=UTC) if at.tzinfo is None else at


@dataclass(frozen=True)
class Queue:
    """The open queue as it stands now, and how fast the staffed team works it."""

    position: dict[str, int]  # transaction id -> 1-based place in queue order
    curve: CapacityCurve
    cv2: float
    now: datetime

    def settlement(self, transaction_id: str) -> dict[str, Any] | None:
        k = self.position.get(transaction_id)
        if k is None:
            return None
        s = expected_settlement(k, self.curve, self.cv2)
        return {
            "queue_position": k,
            "p50": z(s.p50),
            "p90": z(s.p90),
            "p50_minutes": None if s.p50_minutes is None else round(s.p50_minutes, 1),
            "p90_minutes": None if s.p90_minutes is None else round(s.p90_minutes, 1),
        }


def open_queue(engine: Engine, now: datetime, curve: CapacityCurve, cv2: float) -> Queue:
    c = db.cases.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(c.id, c.transaction_id, c.priority, c.created_at, c.sla_due).where(
                c.status == "open"
            )
        ).all()
    cases = [
        OpenCase(r.id, float(r.priority), _aware(r.created_at), _aware(r.sla_due))  # type: ignore[arg-type]
        for r in rows
    ]
    place = positions(cases, now)
    return Queue({r.transaction_id: place[r.id] for r in rows}, curve, cv2, now)


_COLUMNS = (
    db.decisions.c.transaction_id,
    db.decisions.c.payment_time,
    db.decisions.c.created_at,
    db.decisions.c.status,
    db.decisions.c.status_at,
    db.decisions.c.amount,
    db.decisions.c.currency,
)


def _item(row: Any, q: Queue) -> dict[str, Any]:
    scored = _aware(row.created_at)
    status_at = _aware(row.status_at)
    assert scored is not None
    assert status_at is not None
    if row.status == "held_for_review":
        held = (q.now - scored).total_seconds()
    else:  # settled or declined: held from scoring until the decision (0 if decided at once)
        held = (status_at - scored).total_seconds()
    out: dict[str, Any] = {
        "transaction_id": row.transaction_id,
        "status": row.status,
        "amount": row.amount,
        "currency": row.currency,
        "payment_time": z(row.payment_time),
        "scored_at": z(scored),
        "status_at": z(status_at),
        "held_seconds": round(max(held, 0.0), 3),
        "reason_category": REASON_CATEGORY.get(row.status),
    }
    if row.status == "held_for_review":
        out["expected_settlement"] = q.settlement(row.transaction_id)
    return out


def payments(
    engine: Engine,
    merchant_id: str,
    q: Queue,
    *,
    status: Status | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The merchant's payments, newest first."""
    d = db.decisions.c
    query = select(*_COLUMNS).where(d.merchant_id == merchant_id)
    if status is not None:
        query = query.where(d.status == status)
    if since is not None:
        query = query.where(d.created_at >= since)
    query = query.order_by(d.created_at.desc(), d.transaction_id.desc()).limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        appealed = appeals.of_payments(conn, [r.transaction_id for r in rows])
    return [_with_appeal(_item(r, q), appealed) for r in rows]


def _with_appeal(item: dict[str, Any], appealed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """An appealed payment shows its appeal: status (open | overturned | upheld) and times."""
    found = appealed.get(item["transaction_id"])
    return item if found is None else {**item, "appeal": found}


def payment(
    engine: Engine, merchant_id: str, transaction_id: str, q: Queue
) -> dict[str, Any] | None:
    """One payment, only if it is this merchant's (None otherwise: the caller answers 404)."""
    d = db.decisions.c
    with engine.connect() as conn:
        row = conn.execute(
            select(*_COLUMNS).where(
                d.transaction_id == transaction_id, d.merchant_id == merchant_id
            )
        ).first()
        appealed = {} if row is None else appeals.of_payments(conn, [transaction_id])
    return None if row is None else _with_appeal(_item(row, q), appealed)


def _money(rows: Sequence[Any]) -> dict[str, Any]:
    amounts: dict[str, float] = {}
    for r in rows:
        amounts[r.currency] = round(amounts.get(r.currency, 0.0) + float(r.amount), 2)
    return {"count": len(rows), "amount": amounts}


def summary(engine: Engine, merchant_id: str, q: Queue) -> dict[str, Any]:
    """Money held now, expected to settle within the hour and by the end of the UTC day (p50),
    and declined today."""
    d = db.decisions.c
    now = q.now
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    day_end = day_start + timedelta(days=1)
    with engine.connect() as conn:
        held = conn.execute(
            select(d.transaction_id, d.amount, d.currency).where(
                d.merchant_id == merchant_id, d.status == "held_for_review"
            )
        ).all()
        declined = conn.execute(
            select(d.amount, d.currency).where(
                d.merchant_id == merchant_id, d.status == "declined", d.status_at >= day_start
            )
        ).all()
        appeals_open = appeals.open_count(conn, merchant_id)
    hour, today, unknown = [], [], []
    for r in held:
        s = q.settlement(r.transaction_id)
        p50 = None if s is None else s["p50_minutes"]
        if p50 is None:
            unknown.append(r)
            continue
        at = now + timedelta(minutes=p50)
        if at <= now + timedelta(hours=1):
            hour.append(r)
        if at < day_end:
            today.append(r)
    return {
        "merchant_id": merchant_id,
        "as_of": z(now),
        "held_now": _money(held),
        "expected_to_settle_next_hour": _money(hour),
        "expected_to_settle_today": _money(today),
        "declined_today": _money(declined),
        "settlement_unknown": _money(unknown),  # not expected within a week (nobody staffed)
        "appeals_open": appeals_open,
    }
