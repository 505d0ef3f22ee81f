"""The forecast's boundary: the stored calendar, what the forecast reads from the queue, and the
delay webhooks it writes to the outbox.

`payment.delayed` goes out when a held payment's expected settlement (p50) is past its SLA;
`review.delay_expected` when a coming calendar window's forecast p90 is over the SLA. Each
event id is derived from what it is about (uuid5 of kind + payment or window), and the outbox's
event ids are unique, so each goes out once however often, and from however many workers, the
check runs; delivery is the outbox's (at least once, signed, with backoff).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from data import pan
from serving.review.forecast import Calendar, Event, Hour
from serving.store import db

CALENDAR = "calendar"  # its row in the settings table
NAMESPACE = uuid.UUID("5b0d3c1e-8f7a-4c59-9a43-0a8e6f3d2b71")
HISTORY_DAYS = 7
PRIORITY_SAMPLE = 1_000


def _aware(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def calendar_from_doc(doc: dict[str, Any]) -> Calendar:
    events = []
    for e in doc.get("events", []):
        events.append(
            Event(
                kind=e["kind"],
                start=datetime.fromisoformat(e["start"].replace("Z", "+00:00")),
                end=datetime.fromisoformat(e["end"].replace("Z", "+00:00")),
                name=e.get("name") or "",
                volume_multiplier=float(e.get("volume_multiplier", 1.0)),
                capacity_factor=float(e.get("capacity_factor", 0.0)),
                reviewers=int(e.get("reviewers", 0)),
            )
        )
    return Calendar(tuple(events))


def read_calendar(engine: Engine) -> tuple[dict[str, Any], Calendar]:
    with engine.connect() as conn:
        row = conn.execute(
            select(db.settings_table.c.value).where(db.settings_table.c.name == CALENDAR)
        ).first()
    doc = dict(row.value) if row is not None else {"events": []}
    return doc, calendar_from_doc(doc)


def write_calendar(conn: Any, doc: dict[str, Any], now: datetime, actor: str) -> None:
    """In the caller's transaction (with its audit row)."""
    values = {"value": doc, "updated_at": now, "updated_by": actor}
    s = db.settings_table
    if conn.execute(update(s).where(s.c.name == CALENDAR).values(**values)).rowcount == 0:
        conn.execute(insert(s).values(name=CALENDAR, **values))


def forecast_inputs(engine: Engine, now: datetime) -> tuple[np.ndarray, list[float], list[float]]:
    """(creation times of the last week's cases, open cases' priorities, a sample of recent
    priorities)."""
    c = db.cases.c
    since = now - timedelta(days=HISTORY_DAYS)
    with engine.connect() as conn:
        created = conn.execute(select(c.created_at).where(c.created_at >= since)).scalars().all()
        open_p = conn.execute(select(c.priority).where(c.status == "open")).scalars().all()
        recent = (
            conn.execute(select(c.priority).order_by(c.id.desc()).limit(PRIORITY_SAMPLE))
            .scalars()
            .all()
        )
    times = np.array([_aware(t).timestamp() for t in created], dtype=np.float64)
    return times, [float(p) for p in open_p], [float(p) for p in recent]


def _event_id(kind: str, subject: str) -> str:
    name = f"{kind}:{subject}"
    return pan.id_without_pan(lambda n: str(uuid.uuid5(NAMESPACE, f"{name}#{n}" if n else name)))


def _emit(engine: Engine, kind: str, subject: str, txn: str, payload: dict[str, Any]) -> bool:
    """Insert the event once (False: it was already sent)."""
    event_id = _event_id(kind, subject)
    now = datetime.now(UTC)
    try:
        with engine.begin() as conn:
            seen = conn.execute(
                select(db.outbox.c.id).where(db.outbox.c.event_id == event_id)
            ).first()
            if seen is not None:
                return False
            conn.execute(
                insert(db.outbox).values(
                    event_id=event_id,
                    type=kind,
                    transaction_id=txn,
                    payload={"event_id": event_id, "type": kind, **payload},
                    created_at=now,
                    attempts=0,
                    next_attempt_at=now,
                )
            )
    except IntegrityError:  # another worker wrote it first
        return False
    return True


def notify_payments(
    engine: Engine, held: Sequence[tuple[str, str, datetime, dict[str, Any] | None]]
) -> int:
    """`payment.delayed` for each (transaction id, merchant id, SLA due, expected settlement)
    whose p50 is past its SLA (or unknown: nobody will review it within a week)."""
    sent = 0
    for txn, merchant, due, s in held:
        p50 = None if s is None else s.get("p50")
        if p50 is not None and datetime.fromisoformat(p50.replace("Z", "+00:00")) <= due:
            continue
        payload = {
            "transaction_id": txn,
            "merchant_id": merchant,
            "status": "held_for_review",
            "sla_due": due.isoformat().replace("+00:00", "Z"),
            "expected_settlement": s,
            "reason_category": "routine security review",
        }
        sent += _emit(engine, "payment.delayed", txn, txn, payload)
    return sent


def notify_windows(
    calendar: Calendar, hours: Sequence[Hour], sla_min: float, engine: Engine
) -> int:
    """`review.delay_expected` for each calendar window whose forecast hours go over the SLA."""
    sent = 0
    for e in calendar.events:
        over = [
            h
            for h in hours
            if h.over_sla
            and h.start.timestamp() < e.end.timestamp()
            and h.start.timestamp() + 3600 > e.start.timestamp()
        ]
        if not over:
            continue
        worst = max((h.p90_min for h in over if h.p90_min is not None), default=None)
        payload = {
            "window": {
                "kind": e.kind,
                "name": e.name,
                "start": e.start.isoformat().replace("+00:00", "Z"),
                "end": e.end.isoformat().replace("+00:00", "Z"),
            },
            "sla_minutes": sla_min,
            "expected_p90_minutes": worst,
            "hours_over_sla": [h.start.isoformat().replace("+00:00", "Z") for h in over],
        }
        sent += _emit(engine, "review.delay_expected", e.key, f"window:{e.kind}", payload)
    return sent


def held_payments(engine: Engine, q: Any) -> list[tuple[str, str, datetime, dict[str, Any] | None]]:
    """(transaction id, merchant id, SLA due, expected settlement) of every open case."""
    c = db.cases.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(c.transaction_id, c.merchant_id, c.sla_due).where(c.status == "open")
        ).all()
    return [
        (r.transaction_id, r.merchant_id, _aware(r.sla_due), q.settlement(r.transaction_id))
        for r in rows
    ]
