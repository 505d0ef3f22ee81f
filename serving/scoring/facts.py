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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, Text, and_, select, type_coerce
from sqlalchemy.dialects import postgresql, sqlite

from features.online import FeatureRow
from serving.store import db
from serving.store.driver import DriverInsert
from training.model import Thresholds

DATE_FIELDS = ("timestamp", "account_created_at", "credential_changed_at")
_THRESHOLD_KEYS = ("review", "decline", "review_by", "chargeback_fee", "review_cost", "hold_cost")


def names_digest(names: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:32]


def thresholds_doc(t: Thresholds | None) -> dict[str, Any] | None:
    return None if t is None else {k: getattr(t, k) for k in _THRESHOLD_KEYS}


class FactsWriter:
    """Rows for `payment_facts`; registers each feature set the first time it is written."""

    def __init__(self, insert: DriverInsert | None = None) -> None:
        """`insert`: how the rows go in (the driver's cursor on the scoring path; by default
        SQLAlchemy's own insert)."""
        self._insert = insert
        self._digests: dict[tuple[str, ...], str] = {}
        self._stored: set[str] = set()

    def row(
        self, record: Mapping[str, Any], body: dict[str, Any], features: Mapping[str, float]
    ) -> dict[str, Any]:
        """Pops the body's private `_thresholds` and `_shadow` keys."""
        thresholds = body.pop("_thresholds", None)
        shadow = body.pop("_shadow", None)
        if isinstance(features, FeatureRow):  # the scored vector as it is (no dict built)
            names = features.names
            vector = np.ascontiguousarray(features.vector, np.float64).tobytes()
        else:
            names = tuple(features)
            vector = np.fromiter(features.values(), np.float64, len(names)).tobytes()
        digest = self._digests.get(names)
        if digest is None:
            digest = self._digests.setdefault(names, names_digest(names))
        payment = dict(record)
        payment.pop("card_id", None)  # decisions.card_id holds it already
        for k in DATE_FIELDS:
            v = payment.get(k)
            if isinstance(v, datetime):
                payment[k] = v.isoformat()
        return {
            "transaction_id": record["transaction_id"],
            "payment_time": record["timestamp"],
            "payment": payment,
            "feature_set": digest if names else None,
            "features": vector if names else None,
            "thresholds": thresholds,
            "shadow_decision": None if shadow is None else shadow[1],
            "shadow_id": None if shadow is None else shadow[0],
            "_names": names,
        }

    def write(
        self,
        conn: Any,
        rows: list[dict[str, Any]],
        now: datetime,
        ready: frozenset[str] = frozenset(),
    ) -> set[str]:
        """Insert the rows (and any feature set not stored yet) in the caller's transaction;
        the feature sets it added, for `committed` once the transaction has committed.
        `ready`: columns whose values already went through the driver insert's processors
        (`DriverInsert.process`; only with a driver insert)."""
        if ready and self._insert is None:
            raise ValueError("processed values need the driver insert")
        new = {}
        for r in rows:
            names = r.pop("_names")
            if r["feature_set"] is not None and r["feature_set"] not in self._stored:
                new[r["feature_set"]] = names
        for digest, names in new.items():
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            ins = dialect.insert(db.feature_sets).values(
                digest=digest, names=list(names), created_at=now
            )
            conn.execute(ins.on_conflict_do_nothing())
        if rows and self._insert is not None:
            self._insert.execute(conn, rows, ready)
        elif rows:
            conn.execute(db.payment_facts.insert(), rows)
        return set(new)

    def committed(self, digests: set[str]) -> None:
        """Only a committed feature set is skipped later (a rolled-back one is written again)."""
        self._stored.update(digests)


# Fields every stored payment has outside its JSON record (decisions' own columns).
CHEAP_FIELDS = frozenset({"transaction_id", "timestamp", "amount", "card_id"})


@dataclass
class Stored:
    """The stored payments of a period, in payment order, as a backtest replays them.

    The contract records and feature vectors are read only when a policy needs them (a field
    outside CHEAP_FIELDS, a feature): for 70,000 payments they are most of the bytes, and a
    rule on the amount or a date function of the timestamp needs neither."""

    transaction_id: list[str]
    payment_time: np.ndarray  # seconds since the epoch
    amount: np.ndarray
    card_id: list[str]
    probability: list[float | None]
    thresholds: list[Thresholds | None]
    decision: list[str]  # what was actually decided at scoring
    shadow_decision: list[str | None]
    shadow_id: list[str | None]
    features: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # set -> names
    raw_payments: list[Any] | None = None  # JSON text (or a decoded dict) per payment
    vectors: list[tuple[str | None, bytes | None]] | None = None  # (feature set, float64 bytes)
    loader: Callable[[str], list[Any]] | None = None  # a payment_facts column, in this order
    _decoded: list[dict[str, Any]] | None = None

    def __len__(self) -> int:
        return len(self.transaction_id)

    def _load(self, column: str) -> list[Any]:
        if self.loader is None:
            raise LookupError(f"{column} was not loaded")
        return self.loader(column)

    @property
    def payments(self) -> list[dict[str, Any]]:
        """Every contract record (dates as datetimes, card_id included), decoded once."""
        if self._decoded is None:
            if self.raw_payments is None:
                self.raw_payments = self._load("payment")
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
        if self.vectors is None:
            self.vectors = list(zip(self._load("feature_set"), self._load("features"), strict=True))
        out = np.full(len(self), np.nan)
        for i, (fs, raw) in enumerate(self.vectors):
            if fs is None or raw is None:
                continue
            names = self.features.get(fs)
            idx = None if names is None else _index(names).get(name)
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


def latest_payment_time(engine: Engine) -> datetime | None:
    from sqlalchemy import func

    with engine.connect() as conn:
        v = conn.execute(select(func.max(db.payment_facts.c.payment_time))).scalar_one()
    return None if v is None else _aware(v)


def load(engine: Engine, start: datetime, end: datetime) -> Stored:
    """Every stored payment with payment time in [start, end), in (time, id) order; records
    and feature vectors on first use (`Stored.loader`)."""
    d, f = db.decisions, db.payment_facts
    in_period = and_(f.c.payment_time >= start, f.c.payment_time < end)
    # raw columns: the JSON and date-time processors of 70,000 rows would dominate the backtest
    q = (
        select(
            f.c.transaction_id,
            type_coerce(f.c.payment_time, Text),
            type_coerce(f.c.thresholds, Text),
            f.c.shadow_decision,
            f.c.shadow_id,
            d.c.amount,
            d.c.card_id,
            d.c.probability,
            d.c.decision,
        )
        .join(d, d.c.transaction_id == f.c.transaction_id)
        .where(in_period)
        .order_by(f.c.payment_time, f.c.transaction_id)
    )
    with engine.connect() as conn:
        rows = conn.execute(q).all()
        sets = {r.digest: tuple(r.names) for r in conn.execute(select(db.feature_sets)).all()}
    cols: list[Any] = list(zip(*rows, strict=True)) if rows else [() for _ in range(9)]
    ids: list[str] = list(cols[0])
    known: dict[str, Thresholds | None] = {}

    def thresholds(raw: Any) -> Thresholds | None:
        if raw is None or raw == "null":  # no model: the fallback decided
            return None
        if not isinstance(raw, str):  # a driver that decodes JSON itself
            return Thresholds(**raw)
        if raw not in known:
            doc = json.loads(raw)
            known[raw] = None if doc is None else Thresholds(**doc)
        return known[raw]

    def loader(column: str) -> list[Any]:
        """One column for exactly these payments, in their order (rows scored since the first
        query are not mixed in)."""
        c = f.c[column]
        value = type_coerce(c, Text) if column == "payment" else c
        with engine.connect() as conn:
            found = dict(conn.execute(select(f.c.transaction_id, value).where(in_period)).all())
        return [found[t] for t in ids]

    raw_times = pd.Series(cols[1], dtype=object)
    text = len(raw_times) > 0 and isinstance(raw_times.iloc[0], str)  # SQLite: text
    times = pd.to_datetime(raw_times, utc=True, format="ISO8601" if text else None)
    return Stored(
        transaction_id=ids,
        payment_time=((times - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(
            dtype=np.float64
        ),
        amount=np.array(cols[5], dtype=np.float64),
        card_id=list(cols[6]),
        probability=list(cols[7]),
        thresholds=[thresholds(v) for v in cols[2]],
        decision=list(cols[8]),
        shadow_decision=list(cols[3]),
        shadow_id=list(cols[4]),
        features=sets,
        loader=loader,
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
