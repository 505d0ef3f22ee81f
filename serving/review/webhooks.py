"""Deliver outbox events to the payment backend's webhook: at least once, with backoff.

The outbox row is written in the same transaction as the decision, so no decided payment can be
missed; the receiver de-duplicates by `event_id` (the body's `event_id`, the `webhook-id` header
and the X-Riskgate-Event-Id header: the same on every retry).

With a secret, deliveries are signed the Standard Webhooks way (standardwebhooks.com, the scheme
Svix and others use): `webhook-id`, `webhook-timestamp` (Unix seconds of this attempt) and
`webhook-signature` = `v1,` + base64 HMAC-SHA256 of `id.timestamp.body`, keyed with the
base64-decoded `whsec_...` secret (a secret without the prefix is used as its UTF-8 bytes). A
receiver verifies with any Standard Webhooks library, e.g. Python's
`standardwebhooks.Webhook(secret).verify(body, headers)`, which also refuses a timestamp more than
five minutes off (replay protection). The old `X-Riskgate-Signature: sha256=HEX` (HMAC of the
body alone with the raw secret) is still sent for one release.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

import httpx
from sqlalchemy import Engine, select, update
from standardwebhooks import Webhook

from serving.core.schemas import now_utc
from serving.store import db

log = logging.getLogger("riskgate.webhooks")
MAX_BACKOFF_S = 300.0
LEASE_S = 30.0  # how long a sender owns the events it took


def backoff(attempts: int, base: float = 1.0) -> float:
    """1, 2, 4, ... seconds, capped at five minutes."""
    return float(min(base * (2 ** max(attempts - 1, 0)), MAX_BACKOFF_S))


def sign(secret: str, body: bytes) -> str:
    """The legacy X-Riskgate-Signature (hex HMAC-SHA256 of the body); kept for one release."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _webhook(secret: str) -> Webhook:
    if secret.startswith("whsec_"):
        return Webhook(secret)  # base64 key after the prefix, as the specification says
    return Webhook(secret.encode())


def signed_headers(secret: str, event_id: str, body: bytes, at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers for one delivery attempt (and the legacy one)."""
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": _webhook(secret).sign(event_id, at, body.decode()),
        "X-Riskgate-Signature": "sha256=" + sign(secret, body),
    }


def deliver_due(
    engine: Engine,
    url: str,
    client: httpx.Client,
    secret: str | None = None,
    now: Callable[[], datetime] = now_utc,
    batch: int = 50,
    base_backoff: float = 1.0,
) -> int:
    """Try every due event once; returns how many were delivered."""
    t = now()
    with engine.begin() as conn:
        query = (
            select(db.outbox.c.id, db.outbox.c.event_id, db.outbox.c.payload, db.outbox.c.attempts)
            .where(db.outbox.c.delivered_at.is_(None), db.outbox.c.next_attempt_at <= t)
            .order_by(db.outbox.c.id)
            .limit(batch)
        )
        if conn.dialect.name == "postgresql":  # replicas never take the same events
            query = query.with_for_update(skip_locked=True)
        rows = conn.execute(query).all()
        if rows:  # a lease: other senders skip these until it runs out
            conn.execute(
                update(db.outbox)
                .where(db.outbox.c.id.in_([r.id for r in rows]))
                .values(next_attempt_at=t + timedelta(seconds=LEASE_S))
            )
    delivered = 0
    for row in rows:
        body = json.dumps(row.payload, sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Riskgate-Event-Id": row.event_id,
            "webhook-id": row.event_id,
        }
        if secret:
            headers.update(signed_headers(secret, row.event_id, body, now()))
        error: str | None = None
        try:
            resp = client.post(url, content=body, headers=headers)
            if not 200 <= resp.status_code < 300:
                error = f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        attempts = row.attempts + 1
        with engine.begin() as conn:
            if error is None:
                conn.execute(
                    update(db.outbox)
                    .where(db.outbox.c.id == row.id)
                    .values(delivered_at=now(), attempts=attempts, last_error=None)
                )
                delivered += 1
            else:
                conn.execute(
                    update(db.outbox)
                    .where(db.outbox.c.id == row.id)
                    .values(
                        attempts=attempts,
                        last_error=error[:500],
                        next_attempt_at=now() + timedelta(seconds=backoff(attempts, base_backoff)),
                    )
                )
    return delivered


class Deliverer:
    """A daemon thread that delivers due events; `wake()` after a decision sends it at once."""

    def __init__(
        self,
        engine: Engine,
        url: str,
        secret: str | None,
        poll_s: float = 1.0,
        base_backoff: float = 1.0,
    ) -> None:
        self.engine, self.url, self.secret = engine, url, secret
        self.poll_s, self.base_backoff = poll_s, base_backoff
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        with httpx.Client(timeout=5.0) as client:
            while not self._stop.is_set():
                try:
                    deliver_due(
                        self.engine, self.url, client, self.secret, base_backoff=self.base_backoff
                    )
                except Exception:  # keep delivering after a transient database error
                    log.exception("webhook delivery pass failed")
                self._wake.wait(self.poll_s)
                self._wake.clear()
