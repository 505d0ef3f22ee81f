"""What each scored payment was decided on, stored beside its decision and read back for a
backtest: the contract record, the feature vector, the model thresholds in force (capacity band
included) and the shadow policy's decision. Storage boundary: written in the decision's own
transaction (writer.py), read in bulk by `load`.

The vector is stored as float64 bytes in its feature set's order (the names once per feature
set, in `feature_sets`): a replay needs the exact values the policy saw, and 70,000 vectors
must read back in well under a second (as JSON they would not).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine, Text, and_, select, type_coerce
from sqlalchemy.dialects import postgresql, sqlite

from serving.store import db
from training.model import Thresholds

DATE_FIELDS = ("timestamp", "account_created_at", "credential_changed_at")
_THRESHOLD_KEYS = ("review", "decline", "review_by", "chargeback_fee", "review_cost", "hold_cost")


def names_digest(names: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:32]


def thresholds_doc(t: Thresholds | None) -> dict[str, Any] | None:
    return None if t is None else {k: getattr(t, k) for k in _THRESHOLD_KEYS}


class FactsWriter:
    """Rows for `payment_facts`; registers each feature set the first time it is written."""

    def __init__(self) -> None:
        self._digests: dict[tuple[str, ...], str] = {}
        self._stored: set[str] = set()

    def row(
        self, record: Mapping[str, Any], body: dict[str, Any], features: Mapping[str, float]
    ) -> dict[str, Any]:
        """Pops the body's private `_thresholds` and `_shadow` keys."""
        thresholds = body.pop("_thresholds", None)
        shadow = body.pop("_shadow", None)
        names = tuple(features)
        digest = self._digests.get(names)
        if digest is None:
            digest = self._digests.setdefault(names, names_digest(names))
        payment = {
            k: (v.isoformat() if isinstance(v, datetime) else v)
            for k, v in record.items()
            if k != "card_id"  # decisions.card_id holds it already
        }
        return {
            "transaction_id": record["transaction_id"],
            "payment_time": record["timestamp"],
            "payment": payment,
            "feature_set": digest if names else None,
            "features": np.fromiter(features.values(), np.float64, len(names)).tobytes()
            if names
            else None,
            "thresholds": thresholds,
            "shadow_decision": None if shadow is None else shadow[1],
            "shadow_id": None if shadow is None else shadow[0],
            "_names": names,
        }

    def write(self, conn: Any, rows: list[dict[str, Any]], now: datetime) -> None:
        new = {}
        for r in rows:
            names = r.pop("_names")
            if r["feature_set"] is not None and r["feature_set"] not in self._stored:
                new[r["feature_set"]] = names
        for digest, names in new.items():
            ins = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(
                db.feature_sets
            )
            conn.execute(
                ins.values(
                    digest=digest, names=list(names), created_at=now
                ).on_conflict_do_nothing()
            )
        if rows:
            conn.execute(db.payment_facts.insert(), rows)
        self._stored.update(new)  # after the insert: a rolled-back one is tried again


# Fields every stored payment has outside its JSON record (decisions' own columns).
CHEAP_FIELDS = frozenset({"transaction_id", "timestamp", "amount", "card_id"})


@dataclass
class Stored:
    """The stored payments of a period, in payment order, as a backtest replays them.

    The contract records stay as stored (JSON) until a policy needs a field outside
    CHEAP_FIELDS: decoding 70,000 records costs more than the whole replay otherwise."""

    transaction_id: list[str]
    payment_time: np.ndarray  # seconds since the epoch
    amount: np.ndarray
    card_id: list[str]
    raw_payments: list[Any]  # JSON text (or an already decoded dict) per payment
    probability: list[float | None]
    thresholds: list[Thresholds | None]
    decision: list[str]  # what was actually decided at scoring
    features: Mapping[str, tuple[str, ...]]  # feature set digest -> names
    vectors: list[tuple[str | None, bytes | None]]  # (feature set, float64 bytes) per payment
    shadow_decision: list[str | None]
    shadow_id: list[str | None]
    _decoded: list[dict[str, Any]] | None = None

    def __len__(self) -> int:
        return len(self.transaction_id)

    @property
    def payments(self) -> list[dict[str, Any]]:
        """Every contract record (dates as datetimes, card_id included), decoded once."""
        if self._decoded is None:
            self._decoded = [
                _record(raw, card)
                for raw, card in zip(self.raw_payments, self.card_id, strict=True)
            ]
        return self._decoded

    def records(self, fields: set[str]) -> list[dict[str, Any]]:
        """The records as `policy.decide` needs them for a policy reading `fields`: whole, or
        (when every field is one of CHEAP_FIELDS) built from the columns without decoding."""
        if not fields <= CHEAP_FIELDS:
            return self.payments
        times = [datetime.fromtimestamp(t, UTC) for t in self.payment_time.tolist()]
        return [
            {"transaction_id": t, "timestamp": ts, "amount": a, "card_id": c}
            for t, ts, a, c in zip(
                self.transaction_id, times, self.amount.tolist(), self.card_id, strict=True
            )
        ]

    def column(self, name: str) -> np.ndarray:
        """One feature over every payment (NaN where missing), decoded in one pass."""
        out = np.full(len(self), np.nan)
        for i, (fs, raw) in enumerate(self.vectors):
            if fs is None or raw is None:
                continue
            idx = _index(self.features[fs]).get(name)
            if idx is not None:
                out[i] = np.frombuffer(raw, np.float64, 1, idx * 8)[0]
        return out


_INDEXES: dict[tuple[str, ...], dict[str, int]] = {}


def _index(names: tuple[str, ...]) -> dict[str, int]:
    found = _INDEXES.get(names)
    if found is None:
        found = _INDEXES.setdefault(names, {n: i for i, n in enumerate(names)})
    return found


def _aware(v: datetime) -> datetime:
    return v.replace(tzinfo=UTC) if v.tzinfo is None else v


def _record(payment: Any, card_id: str) -> dict[str, Any]:
    rec = dict(payment if isinstance(payment, dict) else json.loads(payment))
    rec["card_id"] = card_id
    for k in DATE_FIELDS:
        v = rec.get(k)
        if isinstance(v, str):
            rec[k] = _aware(datetime.fromisoformat(v))
    return rec


def _seconds(v: Any) -> float:
    """A stored time as epoch seconds: SQLite hands back text, PostgreSQL a datetime."""
    if isinstance(v, str):
        v = datetime.fromisoformat(v)
    return _aware(v).timestamp()


def latest_payment_time(engine: Engine) -> datetime | None:
    from sqlalchemy import func

    with engine.connect() as conn:
        v = conn.execute(select(func.max(db.payment_facts.c.payment_time))).scalar_one()
    return None if v is None else _aware(v)


def load(engine: Engine, start: datetime, end: datetime) -> Stored:
    """Every stored payment with payment time in [start, end), in (time, id) order."""
    d, f = db.decisions, db.payment_facts
    # raw columns: the JSON and date-time processors of 70,000 rows would dominate the backtest
    q = (
        select(
            f.c.transaction_id,
            type_coerce(f.c.payment_time, Text),
            type_coerce(f.c.payment, Text),
            f.c.feature_set,
            f.c.features,
            type_coerce(f.c.thresholds, Text),
            f.c.shadow_decision,
            f.c.shadow_id,
            d.c.amount,
            d.c.card_id,
            d.c.probability,
            d.c.decision,
        )
        .join(d, d.c.transaction_id == f.c.transaction_id)
        .where(and_(f.c.payment_time >= start, f.c.payment_time < end))
        .order_by(f.c.payment_time, f.c.transaction_id)
    )
    with engine.connect() as conn:
        rows = conn.execute(q).all()
        sets = {r.digest: tuple(r.names) for r in conn.execute(select(db.feature_sets)).all()}
    cols: list[Any] = list(zip(*rows, strict=True)) if rows else [() for _ in range(12)]
    known: dict[str, Thresholds | None] = {}

    def thresholds(raw: Any) -> Thresholds | None:
        if raw is None:
            return None
        if not isinstance(raw, str):  # a driver that decodes JSON itself
            return Thresholds(**raw)
        found = known.get(raw)
        if found is None:
            found = known.setdefault(raw, Thresholds(**json.loads(raw)))
        return found

    return Stored(
        transaction_id=list(cols[0]),
        payment_time=np.array([_seconds(v) for v in cols[1]], dtype=np.float64),
        amount=np.array(cols[8], dtype=np.float64),
        card_id=list(cols[9]),
        raw_payments=list(cols[2]),
        probability=list(cols[10]),
        thresholds=[thresholds(v) for v in cols[5]],
        decision=list(cols[11]),
        features=sets,
        vectors=list(zip(cols[3], cols[4], strict=True)),
        shadow_decision=list(cols[6]),
        shadow_id=list(cols[7]),
    )


def labels_known(engine: Engine, ids: Sequence[str]) -> dict[str, bool]:
    """transaction id -> is fraud, from every label known now (fraud wins over genuine)."""
    out: dict[str, bool] = {}
    with engine.connect() as conn:
        rows = conn.execute(select(db.labels.c.transaction_id, db.labels.c.is_fraud)).all()
    wanted = set(ids)
    for t_id, is_fraud in rows:
        if t_id in wanted:
            out[t_id] = out.get(t_id, False) or bool(is_fraud)
    return out
