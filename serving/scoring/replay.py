"""Replay and idempotency: a payment already decided, or an Idempotency-Key already used, is
answered from the database as it was first answered; nothing is scored twice."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Engine, bindparam, select
from sqlalchemy.exc import IntegrityError

from serving.core.metrics import m
from serving.store import db
from serving.store.driver import DriverPresent, DriverProbe

# Statements built once: per request only the parameters change (SQLAlchemy's compiled cache
# then skips re-coercing the expression on the hot path).
_SEL_IDEMPOTENCY = select(db.idempotency).where(db.idempotency.c.key == bindparam("k"))
_SEL_STATUS = select(db.decisions.c.status).where(db.decisions.c.transaction_id == bindparam("t"))
_SEL_DECISION = select(db.decisions.c.response, db.decisions.c.status).where(
    db.decisions.c.transaction_id == bindparam("t")
)
_INS_IDEMPOTENCY = db.idempotency.insert()
_SEL_KEY_USED = select(db.idempotency.c.key).where(db.idempotency.c.key == bindparam("k"))
_SEL_DECIDED = select(db.decisions.c.transaction_id).where(
    db.decisions.c.transaction_id == bindparam("t")
)


# what json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str) builds per call
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def body_hash(payload: Mapping[str, Any]) -> str:
    """The hash keys stored before `payment_digest`: sha256 of json.dumps(sorted keys) of the
    payment's JSON-mode dump. Still how such a key's body is recognised."""
    text = _CANONICAL.encode(payload)
    return hashlib.sha256(text.encode()).hexdigest()


_SORTED = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def payment_digest(record: Mapping[str, Any]) -> str:
    """The hash an idempotency key stores of its body: sha256 of the payment's contract record
    (Python values, as validated) as orjson's sorted-key JSON; equal bodies, equal records.
    A few times cheaper than `body_hash` (no JSON-mode dump, no json.dumps). A key stored
    with the earlier hash is matched through `replay`'s `legacy`."""
    try:
        text = orjson.dumps(record, option=_SORTED)
    except TypeError:  # what orjson refuses (an int past 64 bits): the standard library's
        text = _CANONICAL.encode(record).encode()
    return hashlib.sha256(text).hexdigest()


class Replays:
    """Looks up earlier answers by transaction id and by idempotency key."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime]) -> None:
        self.engine = engine
        self.clock = clock
        # the question almost every payment gets "no" to, asked of the driver directly
        self._key_used = DriverProbe(_SEL_KEY_USED, engine.dialect)
        self._decided = DriverProbe(_SEL_DECIDED, engine.dialect)
        self._ids_decided = DriverPresent(db.decisions.c.transaction_id, engine.dialect)
        self._keys_used = DriverPresent(db.idempotency.c.key, engine.dialect)

    def replay(
        self,
        transaction_id: str,
        key: str | None,
        digest: str,
        legacy: Callable[[], str] | None = None,
    ) -> tuple[int, dict[str, Any]] | None:
        """(status, body) of the earlier answer, None for a payment not seen before. A key
        reused with another body gets 422; a known payment under a new key records the key.
        `legacy()`: the body's hash as earlier versions stored it (`body_hash`), asked only
        when the stored hash is not `digest`."""
        with self.engine.connect() as conn:
            if not self._decided.exists(conn, transaction_id) and (
                key is None or not self._key_used.exists(conn, key)
            ):
                return None  # a payment not seen before, under a key not used before
            if key is not None:
                row = conn.execute(_SEL_IDEMPOTENCY, {"k": key}).first()
                if row is not None:
                    if row.body_hash != digest and (legacy is None or row.body_hash != legacy()):
                        return 422, {
                            "error": "Idempotency-Key was already used with a different body",
                            "detail": [{"loc": ["header", "Idempotency-Key"], "msg": "reused"}],
                        }
                    m().replays.inc()
                    body = {**row.response, "replayed": True}
                    status = conn.execute(
                        _SEL_STATUS, {"t": row.response.get("transaction_id")}
                    ).scalar()
                    if status is not None:  # the payment may have been decided since
                        body["status"] = status
                    return int(row.status_code), body
            row = conn.execute(_SEL_DECISION, {"t": transaction_id}).first()
        if row is None:
            return None
        m().replays.inc()
        body = {**row.response, "replayed": True, "status": row.status}
        if key is not None:
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        _INS_IDEMPOTENCY,
                        {
                            "key": key,
                            "endpoint": "score",
                            "body_hash": digest,
                            "status_code": 200,
                            "response": row.response,
                            "created_at": self.clock(),
                        },
                    )
            except IntegrityError:
                pass
        return 200, body

    def known(self, ids: list[str], keys: list[str | None]) -> set[str]:
        """Which of these transaction ids and idempotency keys the database already holds:
        one query per table (per 512 values) for all of them instead of two per payment."""
        wanted = [k for k in keys if k is not None]
        with self.engine.connect() as conn:
            found = self._ids_decided.present(conn, ids) if ids else set()
            return found | (self._keys_used.present(conn, wanted) if wanted else set())
