"""The review queue against a real SQLite database: one decision per case, locks that expire."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from serving.core.auth import KeyRing
from serving.core.schemas import now_utc
from serving.review import queue
from serving.store import db
from tests.serving.helpers import BOB_KEY, KEY_SPEC, REVIEWER, open_case

KEYS = KeyRing.parse(KEY_SPEC)
ALICE = KEYS.authenticate(REVIEWER["Authorization"])
BOB = KEYS.authenticate(f"Bearer {BOB_KEY}")


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'rg.db'}")
    db.create_schema(engine)
    for i in (1, 2):
        open_case(engine, f"q-{i}", amount=100.0 * i, priority=10.0 * i, reasons=[])
    return engine


def _count(engine: Any, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_many_threads_deciding_one_case_exactly_one_succeeds(engine) -> None:
    outcomes: list[int] = []
    barrier = threading.Barrier(16)

    def attempt(decision: str) -> None:
        barrier.wait()
        try:
            queue.decide(engine, 1, decision, None, ALICE, now_utc())  # type: ignore[arg-type]
            outcomes.append(200)
        except queue.CaseError as exc:
            outcomes.append(exc.status)

    threads = [
        threading.Thread(target=attempt, args=(("approve", "decline_fraud")[i % 2],))
        for i in range(16)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == [200] + [409] * 15
    assert _count(engine, db.outbox) == 1
    assert _count(engine, db.labels) == 1
    with engine.connect() as conn:
        decided = conn.execute(select(db.audit_log).where(db.audit_log.c.action == "decide")).all()
    assert len(decided) == 1


def test_a_case_held_by_another_reviewer_cannot_be_decided(engine) -> None:
    now = now_utc()
    queue.claim(engine, 1, ALICE, now, 15)
    with pytest.raises(queue.CaseError) as refused:
        queue.decide(engine, 1, "approve", None, BOB, now)
    assert refused.value.status == 409
    assert "alice" in refused.value.message
    assert _count(engine, db.outbox) == 0
    # and the holder still can
    assert queue.decide(engine, 1, "approve", None, ALICE, now)["status"] == "settled"


def test_an_expired_claim_can_be_taken_by_another_reviewer(engine) -> None:
    now = now_utc()
    queue.claim(engine, 1, ALICE, now, 15)
    with pytest.raises(queue.CaseError):
        queue.claim(engine, 1, BOB, now + timedelta(minutes=14), 15)
    taken = queue.claim(engine, 1, BOB, now + timedelta(minutes=16), 15)
    assert taken["claimed_by"] == "bob"
    with pytest.raises(queue.CaseError) as refused:  # alice's lock is gone
        queue.decide(engine, 1, "approve", None, ALICE, now + timedelta(minutes=17))
    assert refused.value.status == 409


def test_queue_orders_overdue_first_then_money_at_risk(engine) -> None:
    now = now_utc()
    items, total = queue.list_cases(engine, queue.CaseFilter(), now)
    assert total == 2
    assert [c["transaction_id"] for c in items] == ["q-2", "q-1"]  # priority 20 before 10
    later = now + timedelta(minutes=20)  # both overdue: still by money at risk
    items, _ = queue.list_cases(engine, queue.CaseFilter(overdue=True), later)
    assert [c["transaction_id"] for c in items] == ["q-2", "q-1"]
    assert all(c["overdue"] for c in items)


def test_payment_status_reports_the_place_in_the_queue(engine) -> None:
    now = now_utc()
    assert queue.payment_status(engine, "q-1", now)["queue_position"] == 2
    assert queue.payment_status(engine, "q-2", now)["queue_position"] == 1
    queue.decide(engine, 2, "decline_fraud", "stolen", ALICE, now)
    after = queue.payment_status(engine, "q-1", now + timedelta(minutes=1))
    assert after["queue_position"] == 1
    assert after["expected_wait_minutes"] == pytest.approx(60.0)  # 1 decision in the last hour
    with pytest.raises(queue.CaseError) as missing:
        queue.payment_status(engine, "nope", now)
    assert missing.value.status == 404


def test_a_case_on_hold_is_not_counted_overdue_in_the_place_in_the_queue(engine) -> None:
    from serving.review import operations

    now = now_utc()
    operations.hold(engine, 2, "waiting for the customer", ALICE, now)  # q-2: the richer case
    later = now + timedelta(minutes=20)  # both past their SLA; q-2's clock is paused
    items, _ = queue.list_cases(engine, queue.CaseFilter(), later)
    assert [c["transaction_id"] for c in items] == ["q-1", "q-2"]  # overdue q-1 first

    assert queue.payment_status(engine, "q-1", later)["queue_position"] == 1
    assert queue.payment_status(engine, "q-2", later)["queue_position"] == 2
