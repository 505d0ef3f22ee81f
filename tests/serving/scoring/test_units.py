"""The Scorer's three units on their own: replay and idempotency (`Replays`), fresh scoring
(`FreshScorer`: decides, writes nothing) and the durable write (`DecisionWriter`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, select

from features.registry import FEATURES, feature_set_version
from features.state import MemoryState
from serving.core.auth import Principal
from serving.core.schemas import PaymentIn, now_utc
from serving.core.settings import Settings
from serving.scoring.fresh import FreshScorer
from serving.scoring.holder import ModelHolder
from serving.scoring.policy import PolicyConfig
from serving.scoring.replay import Replays, body_hash
from serving.scoring.writer import DecisionWriter, mask_card
from serving.store import db
from tests.serving.helpers import counts, high_risk, low_risk
from training.model import Thresholds

WHO = Principal("backend", "backend-test", "0123456789ab")
NAMES = tuple(f.name for f in FEATURES)


class BatchModel:
    """Duck-types RiskModel: the same probability for every row; counts its calls."""

    def __init__(self, probability: float) -> None:
        self.probability = probability
        self.features = NAMES
        self.feature_set_version = feature_set_version(FEATURES)
        self.thresholds = Thresholds(review=0.3, decline=0.9)
        self.metadata: dict[str, Any] = {}
        self.profile = None
        self.calls = 0

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.full(len(X), self.probability)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        out = np.zeros((len(X), X.shape[1] + 1))
        out[:, NAMES.index("billing_ip_mismatch")] = 1.5
        return out


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = db.make_engine(f"sqlite:///{tmp_path / 'units.db'}")
    db.create_schema(e)
    yield e
    e.dispose()


def record(data: dict[str, Any]) -> dict[str, Any]:
    return PaymentIn.model_validate(data).contract()


def fresh_for(model: Any, store: MemoryState | None = None) -> FreshScorer:
    holder = ModelHolder(store or MemoryState(), model, "fake-1")
    settings = Settings(api_keys=None, model_dir=None)
    return FreshScorer(holder, PolicyConfig, settings, now_utc)


def decided(tag: str, decision: str = "review", **extra: Any) -> dict[str, Any]:
    """A body as fresh scoring leaves it (with the private keys the write pops)."""
    return {
        "transaction_id": f"txn-{tag}",
        "decision": decision,
        "decision_source": "model",
        "probability": 0.5,
        "score": 50,
        "reasons": [],
        "model_version": "fake-1",
        "case_id": None,
        "status": {"review": "held_for_review", "approve": "settled"}[decision],
        "replayed": False,
        "_features": {"log_amount": 1.0, "missing": float("nan")},
        "_factors": [],
        **extra,
    }


# -- the durable write ---------------------------------------------------------------------------
def test_write_stores_decision_case_key_and_audit_in_one_go(engine):
    writer = DecisionWriter(engine, lambda: 15.0, now_utc)
    rec = record(high_risk("w1"))
    body = decided("w1")

    writer.write([(rec, body, "key-w1", "digest", 200, WHO)])

    assert "_features" not in body
    assert "_factors" not in body
    with engine.connect() as conn:
        case = conn.execute(select(db.cases)).one()
        key = conn.execute(select(db.idempotency)).one()
        row = conn.execute(select(db.decisions)).one()
    assert body["case_id"] == case.id
    assert row.response["case_id"] == case.id, "the stored response carries the case id"
    assert key.response["case_id"] == case.id
    assert case.features["missing"] is None, "NaN features are stored as null"
    assert case.payment["card_id"] == mask_card("card-w1")
    assert (case.sla_due - case.created_at).total_seconds() == 15 * 60
    assert counts(engine)["audit_log"] == 1


def test_write_of_many_is_one_transaction_that_fails_whole(engine):
    writer = DecisionWriter(engine, lambda: 15.0, now_utc)
    db.audit_log.drop(engine)
    items = [
        (record(low_risk(f"m{i}")), decided(f"m{i}", "approve"), None, "d", 200, WHO)
        for i in range(3)
    ]
    items.append((record(high_risk("m9")), decided("m9"), "k-m9", "d", 200, WHO))

    with pytest.raises(Exception, match="audit_log"):
        writer.write(items)

    with engine.connect() as conn:
        assert conn.execute(select(db.decisions)).all() == []
        assert conn.execute(select(db.cases)).all() == []


# -- replay and idempotency ---------------------------------------------------------------------
def test_replays_answer_from_what_the_writer_stored(engine):
    writer = DecisionWriter(engine, lambda: 15.0, now_utc)
    replays = Replays(engine, now_utc)
    digest = body_hash(high_risk("r1"))
    assert replays.replay("txn-r1", "key-r1", digest) is None

    writer.write([(record(high_risk("r1")), decided("r1"), "key-r1", digest, 200, WHO)])

    status, by_key = replays.replay("txn-r1", "key-r1", digest)
    assert (status, by_key["replayed"], by_key["status"]) == (200, True, "held_for_review")
    status, reused = replays.replay("txn-r1", "key-r1", "another body")
    assert status == 422
    assert "Idempotency-Key" in reused["error"]
    status, by_id = replays.replay("txn-r1", "key-new", "whatever")
    assert status == 200
    assert by_id["case_id"] == by_key["case_id"]
    assert replays.known(["txn-r1", "txn-none"], ["key-new", "key-none", None]) == {
        "txn-r1",
        "key-new",
    }, "a known payment retried under a new key records that key"


# -- fresh scoring -------------------------------------------------------------------------------
def test_fresh_scoring_of_one_decides_but_writes_and_remembers_nothing(engine):
    store = MemoryState()
    fresh = fresh_for(BatchModel(0.5), store)
    try:
        body, prepared, online = fresh.one(record(high_risk("f1")), started=time.perf_counter())
    finally:
        fresh.close()

    assert (body["decision"], body["decision_source"], body["status"]) == (
        "review",
        "model",
        "held_for_review",
    )
    assert set(body["_features"]) == set(NAMES)
    assert body["reasons"][0]["feature"] == "billing_ip_mismatch"
    assert len(store.history("card", "card-f1")) == 0, "the caller updates it after the write"
    online.update(prepared)
    assert len(store.history("card", "card-f1")) == 1
    assert counts(engine)["decisions"] == 0


def test_fresh_scoring_of_many_sees_earlier_payments_and_calls_the_model_once():
    store = MemoryState()
    model = BatchModel(0.05)
    fresh = fresh_for(model, store)
    same_card = [
        record({**low_risk(f"g{i}"), "card_id": "card-g", "timestamp": f"2024-03-05T12:0{i}:00Z"})
        for i in range(3)
    ]
    try:
        bodies = fresh.many(fresh.holder.current, same_card, started=time.perf_counter())
    finally:
        fresh.close()

    assert model.calls == 1
    assert [b["decision"] for b in bodies] == ["approve"] * 3
    counts_seen = [b["_features"]["card_count_1h"] for b in bodies]
    assert counts_seen == [0.0, 1.0, 2.0], "each payment counts the ones before it"
    assert len(store.history("card", "card-g")) == 3
