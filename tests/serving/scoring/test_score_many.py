"""The batch path (one model call, one group commit) decides exactly as one-by-one scoring."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.simulator import SimulationConfig, simulate
from serving.core.auth import KeyRing
from serving.core.schemas import PaymentIn
from serving.core.settings import Settings
from serving.http.runtime import build
from tests.serving.helpers import counts

KEYS = "backend:backend-key-0123456789"


def _payments(n: int) -> list[PaymentIn]:
    frame = simulate(SimulationConfig(rows=4_000, days=10, seed=3)).iloc[-n:]
    cols = [c for c in frame.columns if c not in ("is_fraud", "label_time", "scenario")]
    out = []
    for rec in frame[cols].to_dict("records"):
        clean = {
            k: (v.isoformat() if isinstance(v, pd.Timestamp) else v)
            for k, v in rec.items()
            if not (v is None or v is pd.NaT or (isinstance(v, float) and np.isnan(v)))
        }
        out.append(PaymentIn.model_validate(clean))
    return out


def _runtime(tmp: Path, model_dir: Path):
    s = Settings(
        model_dir=str(model_dir),
        db_url=f"sqlite:///{tmp}/rg.db",
        state_path=f"{tmp}/state.db",
        api_keys=KEYS,
        model_deadline_ms=5_000,
    )
    return build(s, KeyRing.parse(KEYS))


@pytest.fixture(scope="module")
def payments() -> list[PaymentIn]:
    return _payments(300)


def test_batch_decides_like_one_by_one(tmp_path: Path, model_dir: Path, payments) -> None:
    one = _runtime(tmp_path / "one", model_dir)
    many = _runtime(tmp_path / "many", model_dir)
    try:
        who = one.keys.authenticate(f"Bearer {KEYS.split(':')[1]}")
        singles = [one.scorer.score(p, who)[1] for p in payments]
        status, batch = many.scorer.score_many(payments, who)
        assert status == 200
        assert isinstance(batch, list)
        assert [b["transaction_id"] for b in batch] == [p.transaction_id for p in payments]
        for a, b in zip(singles, batch, strict=True):
            assert a["decision"] == b["decision"]
            assert a["probability"] == pytest.approx(b["probability"], rel=1e-12)
            assert [r["feature"] for r in a["reasons"]] == [r["feature"] for r in b["reasons"]]
        assert counts(one.engine) == counts(many.engine)
    finally:
        one.close()
        many.close()


def test_batch_replayed_with_the_same_key_creates_nothing_new(
    tmp_path: Path, model_dir: Path, payments
) -> None:
    rt = _runtime(tmp_path, model_dir)
    try:
        who = rt.keys.authenticate(f"Bearer {KEYS.split(':')[1]}")
        first = rt.scorer.score_many(payments[:50], who, "batch-key")[1]
        before = counts(rt.engine)
        again = rt.scorer.score_many(payments[:50], who, "batch-key")[1]
        assert counts(rt.engine) == before
        assert isinstance(first, list)
        assert isinstance(again, list)
        assert all(r["replayed"] for r in again)
        assert [r["decision"] for r in first] == [r["decision"] for r in again]
    finally:
        rt.close()


def _stored(engine) -> dict[str, list[tuple]]:
    """What the durable write stored, per table, without what differs between two runs (the
    times, the generated ids, the elapsed time): the same payments decided the same way must
    leave these equal, whether they came one by one or in a batch."""
    from sqlalchemy import select

    from serving.store import db

    def response(r: dict) -> str:
        return json.dumps({k: v for k, v in r.items() if k != "elapsed_ms"}, sort_keys=True)

    out: dict[str, list[tuple]] = {}
    with engine.connect() as conn:
        d = db.decisions
        out["decisions"] = sorted(
            (r.transaction_id, r.decision, r.source, r.status, r.probability, r.score,
             r.amount, r.card_id, response(r.response))
            for r in conn.execute(select(d))
        )  # fmt: skip
        f = db.payment_facts
        out["facts"] = sorted(
            (r.transaction_id, json.dumps(r.payment, sort_keys=True), r.feature_set, r.features,
             json.dumps(r.thresholds, sort_keys=True), r.shadow_decision)
            for r in conn.execute(select(f))
        )  # fmt: skip
        k = db.idempotency
        out["keys"] = sorted(
            (r.key, r.body_hash, r.status_code, response(r.response))
            for r in conn.execute(select(k))
        )
        a = db.audit_log
        out["audit"] = sorted(
            (r.target, r.actor, json.dumps(r.detail, sort_keys=True))
            for r in conn.execute(select(a).where(a.c.action == "score"))
        )
        c = db.cases
        out["cases"] = sorted(
            (r.transaction_id, r.status, r.priority, json.dumps(r.payment, sort_keys=True),
             json.dumps(r.features, sort_keys=True), json.dumps(r.reasons, sort_keys=True))
            for r in conn.execute(select(c))
        )  # fmt: skip
        case_of = {r.transaction_id: r.id for r in conn.execute(select(c.c.id, c.c.transaction_id))}
    return out, case_of


def test_batch_stores_and_replays_exactly_what_one_by_one_does(
    tmp_path: Path, model_dir: Path, payments
) -> None:
    """With idempotency keys and a rule holding some payments for review (cases, rule facts):
    the stored rows, the answers and the replays of a batch equal those of the same payments
    scored one at a time under the keys a batch gives them (KEY#i)."""
    from serving.scoring.policy import PolicyConfig, Rule

    amounts = sorted(p.amount for p in payments)
    rule = Rule(name="large", field="amount", op=">", value=amounts[-15], action="review")
    one = _runtime(tmp_path / "one", model_dir)
    many = _runtime(tmp_path / "many", model_dir)
    try:
        for rt in (one, many):
            rt.scorer.policy = lambda: PolicyConfig(rules=(rule,))
        who = one.keys.authenticate(f"Bearer {KEYS.split(':')[1]}")
        singles = [one.scorer.score(p, who, f"K#{i}")[1] for i, p in enumerate(payments)]
        status, batch = many.scorer.score_many(payments, who, "K")
        assert status == 200
        assert isinstance(batch, list)
        assert [b["transaction_id"] for b in batch] == [p.transaction_id for p in payments]
        held = [b for b in batch if b["decision"] == "review"]
        assert len(held) >= 14  # the rule's payments at least: cases were opened
        stored_one, _ = _stored(one.engine)
        stored_many, cases_many = _stored(many.engine)
        assert stored_one == stored_many
        for row in stored_many["decisions"] + stored_many["keys"]:  # no private key stored
            assert '"_' not in row[-1]
        for b in batch:  # a held payment's answer carries its case id, stored under its key
            assert b["case_id"] == cases_many.get(b["transaction_id"])
            assert not [k for k in b if k.startswith("_")]
        for a, b in zip(singles, batch, strict=True):
            assert {**a, "elapsed_ms": 0, "case_id": 0} == {**b, "elapsed_ms": 0, "case_id": 0}

        # the same batch again: every payment answered from the store, nothing new written
        before = counts(many.engine)
        status, again = many.scorer.score_many(payments, who, "K")
        assert status == 200
        assert isinstance(again, list)
        assert counts(many.engine) == before
        replays_one = [one.scorer.score(p, who, f"K#{i}")[1] for i, p in enumerate(payments)]
        for r1, rb, first in zip(replays_one, again, batch, strict=True):
            assert rb["replayed"]
            assert r1["replayed"]
            assert {**rb, "replayed": False} == first
            assert {**r1, "case_id": 0, "elapsed_ms": 0} == {**rb, "case_id": 0, "elapsed_ms": 0}

        # a payment of the batch changed under the same key: 422 naming its index
        changed = [*payments]
        changed[7] = changed[7].model_copy(update={"amount": changed[7].amount + 1})
        status, refused = many.scorer.score_many(changed, who, "K")
        assert status == 422
        assert isinstance(refused, dict)
        assert refused["index"] == 7
        assert counts(many.engine) == before
    finally:
        one.close()
        many.close()


def test_a_key_stored_with_the_earlier_body_hash_still_replays_and_still_refuses_another_body(
    tmp_path: Path, model_dir: Path, payments
) -> None:
    """Keys store `payment_digest` now; one stored by an earlier version (json.dumps of the
    JSON-mode dump: `body_hash`) must still replay for the same body (single, batch and group)
    and still answer 422 for a different one."""
    from sqlalchemy import update

    from serving.scoring.replay import body_hash, payment_digest
    from serving.store import db

    rt = _runtime(tmp_path, model_dir)
    try:
        who = rt.keys.authenticate(f"Bearer {KEYS.split(':')[1]}")
        p, q = payments[0], payments[1]
        status, first = rt.scorer.score(p, who, "old-key")
        assert status == 200
        status, _ = rt.scorer.score_many([q], who, "old-batch")
        assert status == 200
        new, old = payment_digest(p.contract()), body_hash(p.model_dump(mode="json"))
        assert new != old
        with rt.engine.begin() as conn:  # as the earlier version stored them
            stored = conn.execute(
                db.idempotency.select().where(db.idempotency.c.key == "old-key")
            ).one()
            assert stored.body_hash == new
            old_key = db.idempotency.c.key == "old-key"
            conn.execute(update(db.idempotency).where(old_key).values(body_hash=old))
            conn.execute(
                update(db.idempotency)
                .where(db.idempotency.c.key == "old-batch#0")
                .values(body_hash=body_hash(q.model_dump(mode="json")))
            )
        before = counts(rt.engine)
        status, again = rt.scorer.score(p, who, "old-key")
        assert (status, again["replayed"], again["decision"]) == (200, True, first["decision"])
        status, batch = rt.scorer.score_many([q], who, "old-batch")
        assert status == 200
        assert isinstance(batch, list)
        assert batch[0]["replayed"] is True
        (group,) = rt.scorer.score_group([(p, who, "old-key")])
        assert group[0] == 200
        assert group[1]["replayed"] is True
        status, refused = rt.scorer.score(q, who, "old-key")  # another body under that key
        assert status == 422
        assert "Idempotency-Key" in refused["error"]
        assert counts(rt.engine) == before  # replays and the refusal wrote nothing
    finally:
        rt.close()
