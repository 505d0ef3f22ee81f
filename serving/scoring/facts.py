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
from sqlalchemy import Engine, and_, select
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


@dataclass(frozen=True)
class Stored:
    """The stored payments of a period, in payment order, as a backtest replays them."""

    transaction_id: list[str]
    payment_time: np.ndarray  # seconds since the epoch
    amount: np.ndarray
    payments: list[dict[str, Any]]  # contract records (dates as datetimes), card_id included
    probability: list[float | None]
    thresholds: list[Thresholds | None]
    decision: list[str]  # what was actually decided at scoring
    features: Mapping[str, tuple[str, ...]]  # feature set digest -> names
    vectors: list[tuple[str | None, bytes | None]]  # (feature set, float64 bytes) per payment
    shadow_decision: list[str | None]
    shadow_id: list[str | None]

    def __len__(self) -> int:
        return len(self.transaction_id)

    def feature(self, i: int, name: str) -> float | None:
        """One feature of payment i (None when its feature set lacks it)."""
        fs, raw = self.vectors[i]
        if fs is None or raw is None:
            return None
        names = self.features[fs]
        idx = _index(names).get(name)
        if idx is None:
            return None
        return float(np.frombuffer(raw, np.float64, 1, idx * 8)[0])

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


def latest_payment_time(engine: Engine) -> datetime | None:
    from sqlalchemy import func

    with engine.connect() as conn:
        v = conn.execute(select(func.max(db.payment_facts.c.payment_time))).scalar_one()
    return None if v is None else _aware(v)


def load(engine: Engine, start: datetime, end: datetime) -> Stored:
    """Every stored payment with payment time in [start, end), in (time, id) order."""
    d, f = db.decisions, db.payment_facts
    q = (
        select(
            f.c.transaction_id,
            f.c.payment_time,
            f.c.payment,
            f.c.feature_set,
            f.c.features,
            f.c.thresholds,
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
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return Stored(
        transaction_id=[r.transaction_id for r in rows],
        payment_time=np.array(
            [(_aware(r.payment_time) - epoch).total_seconds() for r in rows], dtype=np.float64
        ),
        amount=np.array([r.amount for r in rows], dtype=np.float64),
        payments=[_record(r.payment, r.card_id) for r in rows],
        probability=[r.probability for r in rows],
        thresholds=[None if r.thresholds is None else Thresholds(**r.thresholds) for r in rows],
        decision=[r.decision for r in rows],
        features=sets,
        vectors=[(r.feature_set, r.features) for r in rows],
        shadow_decision=[r.shadow_decision for r in rows],
        shadow_id=[r.shadow_id for r in rows],
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
