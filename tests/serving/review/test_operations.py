"""Review operations against a real SQLite database: routing of open cases, four eyes (one key
cannot propose and confirm; of 50 concurrent confirmations exactly one wins), the SLA clock
paused by a hold, escalation, locked queues and the reassignment audit."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from serving.core.auth import KeyRing
from serving.core.schemas import now_utc
from serving.review import operations, queue, routing
from serving.review.routing import Match, QueueSpec
from serving.store import db
from tests.serving.helpers import BOB_KEY, KEY_SPEC, REVIEWER, SUPERVISOR_KEY

KEYS = KeyRing.parse(KEY_SPEC)
ALICE = KEYS.authenticate(REVIEWER["Authorization"])
BOB = KEYS.authenticate(f"Bearer {BOB_KEY}")
CAROL = KEYS.authenticate(f"Bearer {SUPERVISOR_KEY}")  # supervisor


def _seed(engine: Any, txn: str, amount: float, **case: Any) -> int:
    now = now_utc()
    with engine.begin() as conn:
        conn.execute(
            db.decisions.insert(),
            {
                "transaction_id": txn,
                "created_at": now,
                "payment_time": now,
                "decision": "review",
                "source": case.pop("source", "model"),
                "status": "held_for_review",
                "status_at": now,
                "amount": amount,
                "currency": "EUR",
                "merchant_id": case.get("merchant_id", "m1"),
                "card_id": "card_1",
                "response": {},
            },
        )
        result = conn.execute(
            db.cases.insert(),
            {
                "transaction_id": txn,
                "created_at": now,
                "sla_due": now + timedelta(minutes=15),
                "status": "open",
                "priority": amount,
                "amount": amount,
                "merchant_id": case.pop("merchant_id", "m1"),
                "score": case.pop("score", 50),
                "version": 0,
                "payment": case.pop("payment", {"billing_country": "DE"}),
                "features": {},
                "factors": [],
                "reasons": [],
            },
        )
    return int(result.inserted_primary_key[0])


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'rg.db'}")
    db.create_schema(engine)
    return engine


def _count(engine: Any, table: Any, **where: Any) -> int:
    q = select(func.count()).select_from(table)
    for k, v in where.items():
        q = q.where(table.c[k] == v)
    with engine.connect() as conn:
        return int(conn.execute(q).scalar_one())


def _audit(engine: Any, action: str) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(select(db.audit_log).where(db.audit_log.c.action == action)).all()


def _case(engine: Any, case_id: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(db.cases).where(db.cases.c.id == case_id)).one()


def test_open_cases_are_filed_by_the_rules_with_their_queues_sla(engine) -> None:
    big = _seed(engine, "t-big", 5000.0)
    br = _seed(engine, "t-br", 20.0, payment={"billing_country": "br"})
    fb = _seed(engine, "t-fb", 20.0, source="fallback")
    rest = _seed(engine, "t-rest", 20.0)
    config = (
        routing.default_config(15)
        .with_queue(QueueSpec("big", 120, match=Match(min_amount=1000)))
        .with_queue(QueueSpec("brazil", 30, match=Match(countries=("BR",))))
        .with_queue(QueueSpec("fallback", 20, match=Match(source="fallback")))
    )
    assert operations.route_pending(engine, config, now_utc()) == 4
    assert operations.route_pending(engine, config, now_utc()) == 0  # filed once
    got = {cid: _case(engine, cid) for cid in (big, br, fb, rest)}
    assert [got[c].queue for c in (big, br, fb, rest)] == ["big", "brazil", "fallback", "residual"]
    waited = got[big].sla_due - got[big].created_at
    assert waited == timedelta(minutes=120)


def test_a_rule_change_refiles_open_cases_but_not_one_a_person_moved(engine) -> None:
    a = _seed(engine, "t-a", 5000.0)
    b = _seed(engine, "t-b", 6000.0)
    now = now_utc()
    operations.route_pending(engine, routing.default_config(15), now)
    operations.escalate(engine, b, "customer is a VIP", ALICE, now)
    spec = QueueSpec("big", 60, match=Match(min_amount=1000))
    operations.put_queue(engine, spec, 15, CAROL, now)
    assert _case(engine, a).queue == "big"
    assert _case(engine, b).queue == routing.SUPERVISORS
    assert operations.load_config(engine, 15).get("big") == spec
    [change] = _audit(engine, "queue")
    assert change.actor == "carol"
    assert change.detail["after"]["sla_minutes"] == 60


def test_one_reviewer_cannot_both_propose_and_confirm(engine) -> None:
    cid = _seed(engine, "t-4e", 5000.0)
    now = now_utc()
    proposed = queue.decide(
        engine, cid, "decline_fraud", "stolen", ALICE, now, four_eyes_above=1000
    )
    assert proposed["pending_confirmation"] is True
    with engine.connect() as conn:
        status = conn.execute(select(db.decisions.c.status)).scalar_one()
    assert status == "held_for_review"  # the payment stays held
    assert _count(engine, db.labels) == 0
    assert _count(engine, db.outbox) == 0
    with pytest.raises(queue.CaseError) as own:
        queue.confirm(engine, cid, True, None, ALICE, now)
    assert own.value.status == 403
    with pytest.raises(queue.CaseError) as again:  # nor decide it a second time meanwhile
        queue.decide(engine, cid, "approve", None, BOB, now, four_eyes_above=1000)
    assert again.value.status == 409
    done = queue.confirm(engine, cid, True, "agree", BOB, now)
    assert done["status"] == "declined"
    assert done["decided_by"] == "alice"
    row = _case(engine, cid)
    assert (row.decided_by, row.confirmed_by, row.decision) == ("alice", "bob", "decline_fraud")
    [confirmation] = _audit(engine, "confirm")
    assert confirmation.actor == "bob"
    assert confirmation.detail["proposed_by"] == "alice"
    assert len(_audit(engine, "propose")) == 1


def test_below_the_four_eyes_amount_one_decision_settles(engine) -> None:
    cid = _seed(engine, "t-small", 999.0)
    done = queue.decide(engine, cid, "approve", None, ALICE, now_utc(), four_eyes_above=1000)
    assert done["status"] == "settled"


def test_a_rejected_proposal_reopens_the_case_for_a_new_decision(engine) -> None:
    cid = _seed(engine, "t-rej", 5000.0)
    now = now_utc()
    queue.decide(engine, cid, "approve", None, ALICE, now, four_eyes_above=1000)
    out = queue.confirm(engine, cid, False, "looks like fraud to me", CAROL, now)
    assert out["rejected"] == "approve"
    assert _case(engine, cid).pending_decision is None
    assert _audit(engine, "reject")[0].detail["proposed_by"] == "alice"


def test_fifty_concurrent_confirmations_exactly_one_wins(engine) -> None:
    cid = _seed(engine, "t-race", 5000.0)
    queue.decide(engine, cid, "decline_fraud", None, ALICE, now_utc(), four_eyes_above=1000)
    outcomes: list[int] = []
    barrier = threading.Barrier(50)

    def attempt(who: Any) -> None:
        barrier.wait()
        try:
            queue.confirm(engine, cid, True, None, who, now_utc())
            outcomes.append(200)
        except queue.CaseError as exc:
            outcomes.append(exc.status)

    threads = [threading.Thread(target=attempt, args=((BOB, CAROL)[i % 2],)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == [200] + [409] * 49
    assert _count(engine, db.outbox) == 1
    assert _count(engine, db.labels) == 1
    assert len(_audit(engine, "confirm")) == 1


def test_a_hold_pauses_the_sla_clock_visibly_and_resume_moves_the_deadline(engine) -> None:
    cid = _seed(engine, "t-hold", 100.0)
    t0 = now_utc()
    due = _case(engine, cid).sla_due
    operations.hold(engine, cid, "waiting for the customer's call", ALICE, t0)
    later = t0 + timedelta(hours=2)  # far past the 15-minute SLA
    items, _ = queue.list_cases(engine, queue.CaseFilter(), later)
    [item] = items
    assert item["on_hold"]
    assert item["sla_paused"]
    assert not item["overdue"]
    assert item["sla_seconds_left"] == pytest.approx(
        (due.replace(tzinfo=t0.tzinfo) - t0).total_seconds()
    )
    assert queue.list_cases(engine, queue.CaseFilter(overdue=True), later)[1] == 0
    out = operations.resume(engine, cid, ALICE, later)
    assert out["paused_seconds"] == pytest.approx(7200)
    assert _case(engine, cid).sla_due - due == timedelta(hours=2)
    assert [a.detail.get("reason") for a in _audit(engine, "hold")] == [
        "waiting for the customer's call"
    ]
    assert _audit(engine, "resume")[0].detail["paused_seconds"] == pytest.approx(7200)


def test_reassignment_is_audited_with_from_to_and_reason(engine) -> None:
    cid = _seed(engine, "t-re", 100.0)
    now = now_utc()
    config = routing.default_config(15).with_queue(QueueSpec("senior", 60))
    operations.route_pending(engine, config, now)
    queue.claim(engine, cid, ALICE, now, 15)
    out = operations.reassign(
        engine,
        config,
        cid,
        "needs a senior",
        CAROL,
        now,
        to_queue="senior",
        to_reviewer=BOB,
        minutes=15,
    )
    assert out["to_queue"] == "senior"
    assert out["to_reviewer"] == "bob"
    [entry] = _audit(engine, "reassign")
    assert entry.actor == "carol"
    assert entry.role == "supervisor"
    assert entry.detail == {
        "reason": "needs a senior",
        "transaction_id": "t-re",
        "from_queue": "residual",
        "to_queue": "senior",
        "from_reviewer": "alice",
        "to_reviewer": "bob",
    }
    row = _case(engine, cid)
    assert (row.queue, row.claimed_by, row.claim_key_id) == ("senior", "bob", BOB.key_id)


def test_an_escalated_case_is_the_supervisors(engine) -> None:
    cid = _seed(engine, "t-esc", 100.0)
    now = now_utc()
    config = routing.default_config(15)
    operations.escalate(engine, cid, "merchant dispute history", ALICE, now)
    with pytest.raises(queue.CaseError) as refused:
        operations.decision_guard(engine, config, cid, "approve", BOB)
    assert refused.value.status == 403
    guard = operations.decision_guard(engine, config, cid, "approve", CAROL)
    assert (
        queue.decide(engine, cid, "approve", None, CAROL, now, guard=guard)["status"] == "settled"
    )
    assert _audit(engine, "escalate")[0].detail["reason"] == "merchant dispute history"


def test_a_locked_queue_hands_out_only_the_next_case(engine) -> None:
    first = _seed(engine, "t-l1", 900.0)
    second = _seed(engine, "t-l2", 100.0)
    now = now_utc()
    config = routing.default_config(15).with_queue(
        QueueSpec("locked", 15, mode="locked", match=Match(max_amount=1000))
    )
    operations.route_pending(engine, config, now)
    with pytest.raises(queue.CaseError) as pick:
        operations.claim_guard(engine, config, second, ALICE)
    assert pick.value.status == 409
    assert "/queues/locked/next" in pick.value.message
    with pytest.raises(queue.CaseError):
        operations.decision_guard(engine, config, second, "approve", ALICE)
    got = operations.next_in_queue(engine, config, "locked", ALICE, now, 15)
    assert got["case_id"] == first  # money at risk first
    assert operations.next_in_queue(engine, config, "locked", BOB, now, 15)["case_id"] == second
    guard = operations.decision_guard(engine, config, first, "approve", ALICE)
    assert queue.decide(engine, first, "approve", None, ALICE, now, guard=guard)["status"]


def test_a_queue_refuses_a_decision_it_does_not_allow(engine) -> None:
    cid = _seed(engine, "t-allow", 100.0)
    config = routing.default_config(15).with_queue(
        QueueSpec("approve-only", 15, decisions=("approve",), match=Match())
    )
    operations.route_pending(engine, config, now_utc())
    with pytest.raises(queue.CaseError) as refused:
        operations.decision_guard(engine, config, cid, "decline", ALICE)
    assert refused.value.status == 422
    assert "decision" in refused.value.message


def test_the_explanation_experiment_records_one_arm_per_case_at_random(engine) -> None:
    ids = [_seed(engine, f"t-arm-{i}", 10.0 + i) for i in range(40)]
    arms = ("score", "score+facts")
    operations.route_pending(engine, routing.default_config(15), now_utc(), arms)
    got = {i: _case(engine, i).explain_arm for i in ids}
    assert set(got.values()) == set(arms)  # all 40 alike: probability 2**-39
    operations.assign_arms(engine, ("score+facts+shap",))
    assert {i: _case(engine, i).explain_arm for i in ids} == got  # a case keeps its arm


def test_without_the_experiment_no_case_gets_an_arm(engine) -> None:
    cid = _seed(engine, "t-noarm", 10.0)
    operations.route_pending(engine, routing.default_config(15), now_utc())
    assert _case(engine, cid).explain_arm is None
