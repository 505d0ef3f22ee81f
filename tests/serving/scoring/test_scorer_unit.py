"""The Scorer with fake models: deadline and failures -> fallback, durable writes, idempotency;
and the artifact check that refuses a model built on other feature definitions."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine, select

from features.registry import FEATURES, feature_set_version
from features.state import MemoryState
from serving.core.auth import Principal
from serving.core.schemas import PaymentIn
from serving.core.settings import Settings
from serving.scoring.holder import ArtifactMismatchError, ModelHolder, check_artifact
from serving.scoring.policy import PolicyConfig
from serving.scoring.scorer import Scorer
from serving.store import db
from tests.serving.helpers import counts, high_risk, low_risk
from training.model import RiskModel, Thresholds

WHO = Principal("backend", "backend-test", "0123456789ab")
DEADLINE_MS = 50.0
NAMES = tuple(f.name for f in FEATURES)


class FakeModel:
    """Duck-types RiskModel for the Scorer; `behaviour` is the fault being simulated."""

    def __init__(self, behaviour: str = "ok", probability: float = 0.5) -> None:
        self.behaviour = behaviour
        self.probability = probability
        self.features = NAMES
        self.feature_set_version = feature_set_version(FEATURES)
        self.thresholds = Thresholds(review=0.3, decline=0.9)
        self.metadata: dict[str, Any] = {}
        self.release = threading.Event()  # ends a "slow" prediction early at teardown
        self.calls = 0

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.behaviour == "slow":
            # The simulated fault: a model call that outlives the deadline (bounded at 2 s).
            self.release.wait(timeout=2.0)
        elif self.behaviour == "raise":
            raise RuntimeError("booster exploded")
        elif self.behaviour == "nan":
            return np.array([np.nan])
        return np.array([self.probability])

    def contributions(self, X: np.ndarray) -> np.ndarray:
        out = np.zeros((1, X.shape[1] + 1))
        out[0, NAMES.index("billing_ip_mismatch")] = 1.5
        out[0, NAMES.index("log_amount")] = -0.7
        return out


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = db.make_engine(f"sqlite:///{tmp_path / 'unit.db'}")
    db.create_schema(e)
    yield e
    e.dispose()


def make_scorer(engine: Engine, model: Any, store: MemoryState | None = None) -> Scorer:
    holder = ModelHolder(store or MemoryState(), model, None if model is None else "fake-1")
    settings = Settings(model_deadline_ms=DEADLINE_MS, api_keys=None, model_dir=None)
    return Scorer(engine, holder, PolicyConfig, settings)


@pytest.fixture
def scorers() -> Iterator[list[tuple[Scorer, Any]]]:
    """Scorers made by a test, closed (and their slow fakes released) afterwards."""
    made: list[tuple[Scorer, Any]] = []
    yield made
    for scorer, model in made:
        if model is not None:
            model.release.set()
        scorer.close()


@pytest.fixture
def scorer_for(engine: Engine, scorers: list[tuple[Scorer, Any]]):
    def make(model: Any, store: MemoryState | None = None) -> Scorer:
        scorer = make_scorer(engine, model, store)
        scorers.append((scorer, model))
        return scorer

    return make


def fallbacks(cause: str) -> float:
    return REGISTRY.get_sample_value("riskgate_fallbacks_total", {"cause": cause}) or 0.0


def decisions_counted(decision: str, source: str) -> float:
    labels = {"decision": decision, "source": source}
    return REGISTRY.get_sample_value("riskgate_decisions_total", labels) or 0.0


def payment(data: dict[str, Any]) -> PaymentIn:
    return PaymentIn.model_validate(data)


# -- model failures -> fallback -----------------------------------------------------------------
def test_model_slower_than_the_deadline_is_replaced_by_the_fallback(engine, scorer_for):
    model = FakeModel("slow")
    scorer = scorer_for(model)
    counted = fallbacks("deadline")
    started = time.perf_counter()

    status, body = scorer.score(payment(low_risk("slow")), WHO)

    waited = time.perf_counter() - started
    assert status == 200
    assert model.calls == 1
    assert waited < 1.0, "the answer must not wait for the slow model"
    assert body["decision"] == "approve", "the fallback settles a small amount"
    assert body["decision_source"] == "fallback"
    assert body["probability"] is None
    assert "deadline" in body["reasons"][-1]["text"]
    assert fallbacks("deadline") == counted + 1
    with engine.connect() as conn:
        row = conn.execute(select(db.decisions)).one()
    assert (row.decision, row.source, row.status) == ("approve", "fallback", "settled")


@pytest.mark.parametrize("behaviour", ["raise", "nan"])
def test_broken_model_is_replaced_by_the_fallback_which_reviews_large_amounts(
    engine, scorer_for, behaviour
):
    scorer = scorer_for(FakeModel(behaviour))
    cause = "error" if behaviour == "raise" else "nan"  # NaN output is its own cause
    counted = fallbacks(cause)
    counted_reviews = decisions_counted("review", "fallback")

    status, body = scorer.score(payment(high_risk(f"broken-{behaviour}")), WHO)

    assert status == 200
    assert (body["decision"], body["decision_source"]) == ("review", "fallback")
    assert body["status"] == "held_for_review"
    assert body["reasons"][-1]["feature"] == "fallback"
    assert cause in body["reasons"][-1]["text"]
    assert fallbacks(cause) == counted + 1
    assert decisions_counted("review", "fallback") == counted_reviews + 1
    with engine.connect() as conn:
        case = conn.execute(select(db.cases)).one()
    assert case.transaction_id == f"txn-broken-{behaviour}"
    assert case.probability is None
    assert case.priority > 0, "an unknown risk still ranks by money at stake"


def test_no_model_at_all_means_the_fallback_decides(engine, scorer_for):
    scorer = scorer_for(None)
    counted = fallbacks("no_model")

    _, small = scorer.score(payment(low_risk("nomodel-small")), WHO)
    _, large = scorer.score(payment(high_risk("nomodel-large")), WHO)

    assert (small["decision"], large["decision"]) == ("approve", "review")
    assert small["decision_source"] == large["decision_source"] == "fallback"
    assert fallbacks("no_model") == counted + 2


# -- durable writes -----------------------------------------------------------------------------
def test_review_decision_is_written_with_its_case_key_and_audit_entry(engine, scorer_for):
    scorer = scorer_for(FakeModel(probability=0.5))

    status, body = scorer.score(payment(high_risk("durable")), WHO, "key-durable")

    assert status == 200
    assert (body["decision"], body["decision_source"]) == ("review", "model")
    assert body["score"] == 50
    assert [r["feature"] for r in body["reasons"]] == ["billing_ip_mismatch"]
    assert "BR" in body["reasons"][0]["text"]
    assert "DE" in body["reasons"][0]["text"]
    assert "_features" not in body
    assert "_factors" not in body
    with engine.connect() as conn:
        decision = conn.execute(select(db.decisions)).one()
        case = conn.execute(select(db.cases)).one()
        key = conn.execute(select(db.idempotency)).one()
        audit = conn.execute(select(db.audit_log)).one()
    assert decision.transaction_id == "txn-durable"
    assert decision.response == body
    assert case.id == body["case_id"]
    assert case.priority == pytest.approx(0.5 * 2500.0)
    assert case.payment["card_id"] != "card-durable"
    assert set(case.features) == set(NAMES)
    assert key.key == "key-durable"
    assert key.response == body
    assert (audit.actor, audit.role, audit.key_id, audit.action, audit.target) == (
        "backend-test",
        "backend",
        "0123456789ab",
        "score",
        "txn-durable",
    )


def test_approval_writes_a_decision_and_no_case(engine, scorer_for):
    scorer = scorer_for(FakeModel(probability=0.05))

    _, body = scorer.score(payment(low_risk("approved")), WHO)

    assert (body["decision"], body["status"], body["reasons"]) == ("approve", "settled", [])
    c = counts(engine)
    assert (c["decisions"], c["cases"], c["audit_log"]) == (1, 0, 1)


def test_scored_payment_enters_the_online_state(engine, scorer_for):
    store = MemoryState()
    scorer = scorer_for(FakeModel(probability=0.05), store)

    scorer.score(payment(low_risk("state")), WHO)

    assert len(store.history("card", "card-state")) == 1
    assert len(store.history("merchant", "merch-state")) == 1


def test_failed_write_answers_nothing_and_leaves_the_online_state_alone(engine, scorer_for):
    """A decision that could not be stored must not be served nor counted in the windows."""
    store = MemoryState()
    scorer = scorer_for(FakeModel(probability=0.05), store)
    db.audit_log.drop(engine)  # the write's last statement fails: the whole transaction rolls back

    with pytest.raises(Exception, match="audit_log"):
        scorer.score(payment(low_risk("lost")), WHO)

    assert len(store.history("card", "card-lost")) == 0
    with engine.connect() as conn:
        assert conn.execute(select(db.decisions)).all() == []


# -- idempotency and replay ---------------------------------------------------------------------
def test_replay_by_key_returns_the_stored_answer_without_calling_the_model(engine, scorer_for):
    model = FakeModel(probability=0.5)
    scorer = scorer_for(model)
    _, first = scorer.score(payment(high_risk("idem")), WHO, "k1")

    status, again = scorer.score(payment(high_risk("idem")), WHO, "k1")

    assert status == 200
    assert again == {**first, "replayed": True}
    assert model.calls == 1


def test_key_reused_with_another_body_is_422_and_stores_nothing(engine, scorer_for):
    scorer = scorer_for(FakeModel(probability=0.5))
    scorer.score(payment(low_risk("k2")), WHO, "k2")
    before = counts(engine)

    status, body = scorer.score(payment({**low_risk("k2"), "amount": 99.0}), WHO, "k2")

    assert status == 422
    assert "Idempotency-Key" in body["error"]
    assert counts(engine) == before


def test_same_transaction_without_key_replays_the_first_decision(engine, scorer_for):
    model = FakeModel(probability=0.5)
    scorer = scorer_for(model)
    _, first = scorer.score(payment(high_risk("twice")), WHO)

    _, again = scorer.score(payment(high_risk("twice")), WHO, "late-key")

    assert again["replayed"] is True
    assert again["case_id"] == first["case_id"]
    assert model.calls == 1
    c = counts(engine)
    assert (c["decisions"], c["cases"], c["idempotency_keys"]) == (1, 1, 1)
    # the key given on the retry now answers too
    _, by_key = scorer.score(payment(high_risk("twice")), WHO, "late-key")
    assert by_key["case_id"] == first["case_id"]


# -- the artifact check -------------------------------------------------------------------------
def test_artifact_built_with_this_codes_features_is_accepted(trained_model: RiskModel):
    check_artifact(trained_model)


def test_artifact_whose_feature_list_differs_from_the_code_is_refused(trained_model: RiskModel):
    dropped = dataclasses.replace(trained_model, features=trained_model.features[:-1])
    renamed = dataclasses.replace(
        trained_model, features=(*trained_model.features[:-1], "feature_from_the_future")
    )

    with pytest.raises(ArtifactMismatchError, match="feature-set version"):
        check_artifact(dropped)
    with pytest.raises(ArtifactMismatchError, match="feature_from_the_future"):
        check_artifact(renamed)


def test_artifact_with_same_names_but_other_definitions_is_refused(trained_model: RiskModel):
    other = dataclasses.replace(trained_model, feature_set_version="fs-000000000000")

    with pytest.raises(ArtifactMismatchError, match="retrain"):
        check_artifact(other)


def test_holder_refuses_a_mismatched_model_and_keeps_serving_the_old_one(
    trained_model: RiskModel,
):
    holder = ModelHolder(MemoryState(), trained_model, "v1")
    other = dataclasses.replace(trained_model, feature_set_version="fs-000000000000")

    with pytest.raises(ArtifactMismatchError):
        ModelHolder(MemoryState(), other, "v2")
    with pytest.raises(ArtifactMismatchError):
        holder.swap(other, "v2")

    assert holder.current.model is trained_model
    assert holder.current.version == "v1"


# -- the order lock's metrics: how busy the one serial section is -------------------------------
def order_lock(kind: str) -> tuple[float, float]:
    """(observations, seconds) of riskgate_order_lock_{kind}_seconds."""
    name = f"riskgate_order_lock_{kind}_seconds"
    return (
        REGISTRY.get_sample_value(f"{name}_count") or 0.0,
        REGISTRY.get_sample_value(f"{name}_sum") or 0.0,
    )


def test_each_scoring_call_times_the_order_lock_once_and_nesting_is_not_counted_twice(
    scorer_for,
) -> None:
    scorer = scorer_for(FakeModel("ok", 0.01))
    waits, helds = order_lock("wait"), order_lock("held")

    assert scorer.score(payment(low_risk("lock-1")), WHO)[0] == 200
    after_one = order_lock("held")
    assert order_lock("wait")[0] == waits[0] + 1
    assert after_one[0] == helds[0] + 1
    assert after_one[1] > helds[1], "a payment is scored inside the lock: its time is held time"

    with scorer._serial():  # score_group's fallback scores one by one inside its own hold
        assert scorer.score(payment(low_risk("lock-2")), WHO)[0] == 200
    assert order_lock("held")[0] == after_one[0] + 1, "the outer hold only"
    assert scorer._depth == 0


def test_a_call_that_waits_for_another_holder_counts_the_wait(scorer_for) -> None:
    scorer = scorer_for(FakeModel("ok", 0.01))
    inside, go_on = threading.Event(), threading.Event()
    asked: list[float] = []

    def hold() -> None:
        with scorer._serial():
            inside.set()
            go_on.wait(timeout=10)

    def wait_for_it() -> None:
        asked.append(time.perf_counter())
        with scorer._serial():
            pass

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(timeout=10)
    waits = order_lock("wait")
    waiter = threading.Thread(target=wait_for_it)
    waiter.start()
    waiter.join(timeout=0.05)  # let it reach the lock; if it is slower, it waits less (below)
    released = time.perf_counter()
    go_on.set()
    holder.join(timeout=10)
    waiter.join(timeout=10)
    count, seconds = order_lock("wait")
    assert count == waits[0] + 2  # the holder's and the waiter's, each observed on leaving
    # it asked at asked[0] and could not enter before the holder let go, after `released`
    assert seconds - waits[1] >= (released - asked[0]) - 0.001
