"""Link analysis for a case: other payments of the last 30 days that share its card, device, IP,
e-mail domain or customer, with their decisions and known labels; a linked confirmed fraud is
said in words.

Where the links come from: the decisions table keeps the card token of every scored payment, so
card links cover all payments; device, IP, e-mail domain and customer are kept with held
payments (a case's masked payment), so those links cover the payments that were reviewed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from serving.review.queue import CaseError
from serving.store import db

WINDOW = timedelta(days=30)
MAX_SCAN = 20_000  # held payments read for device/IP/e-mail/customer links, newest first
MAX_LINKS = 200
KINDS = {
    "card": None,  # from decisions.card_id
    "device": "device_id",
    "ip": "ip_hash",
    "email_domain": "email_domain",
    "customer": "customer_id",
}
WORDS = {
    "card": "the card",
    "device": "the device",
    "ip": "the IP address",
    "email_domain": "the e-mail domain",
    "customer": "the customer",
}


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def sentence(links: list[dict[str, Any]]) -> str | None:
    """One sentence about the linked payments known to be fraud, or None. Links through the
    card, device, IP or customer are named; a shared e-mail domain alone (many customers share
    a big provider) is only counted."""
    frauds = [x for x in links if x["label"] is not None and x["label"]["is_fraud"]]
    if not frauds:
        return None
    strong = [x for x in frauds if set(x["shared"]) - {"email_domain"}]
    weak = len(frauds) - len(strong)
    parts = []
    for x in strong[:3]:
        shared = " and ".join(WORDS[k] for k in x["shared"])
        how = "charged back" if x["label"]["source"] == "chargeback" else "declined as fraud"
        parts.append(f"{x['transaction_id']} ({how}) shares {shared}")
    if len(strong) > 3:
        parts.append(f"{len(strong) - 3} more share the card, device, IP or customer")
    if weak:
        parts.append(f"{weak} share{'s' if weak == 1 else ''} only the e-mail domain")
    n = len(frauds)
    head = f"{n} linked payment{'s are' if n > 1 else ' is'} confirmed fraud: "
    return head + "; ".join(parts) + "."


def case_links(engine: Engine, case_id: int) -> dict[str, Any]:
    c, d, lab = db.cases.c, db.decisions.c, db.labels.c
    with engine.connect() as conn:
        row = conn.execute(
            select(c.transaction_id, c.payment, d.card_id, d.payment_time)
            .join(db.decisions, d.transaction_id == c.transaction_id)
            .where(c.id == case_id)
        ).first()
        if row is None:
            raise CaseError(404, f"case {case_id} not found")
        at = _aware(row.payment_time)
        since, until = at - WINDOW, at + WINDOW
        me = row.payment or {}
        found: dict[str, set[str]] = {}
        card_rows = conn.execute(
            select(d.transaction_id).where(
                d.card_id == row.card_id,
                d.payment_time >= since,
                d.payment_time <= until,
                d.transaction_id != row.transaction_id,
            )
        ).all()
        for r in card_rows:
            found.setdefault(r.transaction_id, set()).add("card")
        held = conn.execute(
            select(c.transaction_id, c.payment)
            .where(c.created_at >= since - WINDOW, c.transaction_id != row.transaction_id)
            .order_by(c.created_at.desc())
            .limit(MAX_SCAN)
        ).all()
        for r in held:
            other = r.payment or {}
            for kind, field in KINDS.items():
                if field and me.get(field) and other.get(field) == me.get(field):
                    found.setdefault(r.transaction_id, set()).add(kind)
        ids = list(found)[: MAX_LINKS * 5]
        rows = (
            conn.execute(
                select(
                    d.transaction_id,
                    d.payment_time,
                    d.amount,
                    d.currency,
                    d.merchant_id,
                    d.status,
                    d.decision,
                    c.id.label("case_id"),
                    c.decision.label("review_decision"),
                    c.decided_by,
                )
                .outerjoin(db.cases, c.transaction_id == d.transaction_id)
                .where(d.transaction_id.in_(ids))
            ).all()
            if ids
            else []
        )
        labels = (
            conn.execute(
                select(lab.transaction_id, lab.is_fraud, lab.source, lab.label_time).where(
                    lab.transaction_id.in_(ids)
                )
            ).all()
            if ids
            else []
        )
    known: dict[str, Any] = {}
    for x in labels:  # a chargeback outranks the reviewer's own label
        if x.transaction_id not in known or x.source == "chargeback":
            known[x.transaction_id] = x
    links = []
    for r in rows:
        when = _aware(r.payment_time)
        if not since <= when <= until:
            continue
        lb = known.get(r.transaction_id)
        links.append(
            {
                "transaction_id": r.transaction_id,
                "timestamp": when,
                "amount": r.amount,
                "currency": r.currency,
                "merchant_id": r.merchant_id,
                "status": r.status,
                "decision_at_scoring": r.decision,
                "case_id": r.case_id,
                "review_decision": r.review_decision,
                "decided_by": r.decided_by,
                "shared": sorted(found[r.transaction_id], key=list(KINDS).index),
                "label": None
                if lb is None
                else {
                    "is_fraud": bool(lb.is_fraud),
                    "source": lb.source,
                    "label_time": _aware(lb.label_time),
                },
            }
        )
    links.sort(key=lambda x: x["timestamp"], reverse=True)
    links = links[:MAX_LINKS]
    counts = {k: sum(1 for x in links if k in x["shared"]) for k in KINDS}
    return {
        "case_id": case_id,
        "transaction_id": row.transaction_id,
        "window_days": WINDOW.days,
        "counts": counts,
        "confirmed_fraud": sum(1 for x in links if x["label"] and x["label"]["is_fraud"]),
        "warning": sentence(links),
        "links": links,
    }
