"""Two replicas: two real `riskgate serve` processes on 127.0.0.1, one PostgreSQL database, one
Redis online state (RISKGATE_STATE_URL), one model directory (issue 9, fault tests b and f).

- 20 reviewers claiming through both replicas at once (POST /cases/next/claim, SELECT ... FOR
  UPDATE SKIP LOCKED): distinct cases or 404, never one case twice;
- 50 concurrent decisions on one case, spread over both replicas: exactly one succeeds, the
  others get 409, and the database holds one decision, one event, one label;
- one payment sent to both replicas at once: decided once (the database's unique key, then a
  replay of the stored decision), counted once in the shared online state;
- velocity features agree: a card's payments scored alternately through A and B get the
  features and probabilities of the same sequence scored through A alone;
- the database becomes unavailable in the middle of a decision: the caller gets an error at
  once (not a hang), nothing is half-written, and after recovery the decision succeeds once.
  The shared test server is not stopped: the module's own database stops accepting
  connections (ALLOW_CONNECTIONS false) and its backends are terminated, which is what the
  service sees when PostgreSQL goes away; a lock holds the decision between its first write
  and its last so that the outage hits an open transaction.

The schema is migrated once before the replicas start (a deployment's migration step): two
replicas starting at once on an empty database race in Alembic (both CREATE TABLE, one fails
with a unique violation), so first starts are not relied on to migrate concurrently.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.engine import make_url

from serving.store import db
from tests.scale.conftest import (
    BACKEND,
    REVIEWER,
    REVIEWER_KEYS,
    REVIEWERS,
    Replica,
    StartReplicas,
    high_risk,
    new_tag,
    records_of,
    riskgate_env,
    server_admin,
)
from tests.servers import same_features
from tests.serving.helpers import card_sequence

pytestmark = pytest.mark.slow

DECISIONS = 50
CLAIMERS = 20
CLAIM_CASES = 10
SAME_PAYMENT = 8
VELOCITY_PAYMENTS = 6
OUTAGE_WAIT_S = 15.0  # the decision must reach its lock wait within this (bounded poll)
FAIL_FAST_S = 10.0  # an error must reach the caller within this once the database is gone
POLL_S = 0.05


@dataclass
class Deployment:
    a: Replica
    b: Replica
    state_url: str


@pytest.fixture(scope="module")
def deployment(
    pg_url: str,
    pg_engine: Engine,  # migrated before the replicas start
    redis_test_url: str,
    scale_model_dir: Path,
    replicas: StartReplicas,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    pytest.importorskip("features.redis_state", reason="the Redis online state is not built yet")
    env = riskgate_env(tmp_path_factory.mktemp("replicas"), scale_model_dir, pg_url, redis_test_url)
    a, b = replicas(["A", "B"], env)
    try:
        yield Deployment(a, b, redis_test_url)
    finally:
        from features.redis_state import RedisState

        # the service uses the default prefix: these tests own it on the throw-away server
        store = RedisState.from_url(redis_test_url)
        try:
            store.clear()
        finally:
            store.close()


def post(base: str, path: str, headers: dict[str, str], body: Any = None) -> httpx.Response:
    with httpx.Client(base_url=base, timeout=30.0) as c:
        return c.post(path, json=body, headers=headers)


def get(base: str, path: str, headers: dict[str, str]) -> httpx.Response:
    with httpx.Client(base_url=base, timeout=30.0) as c:
        return c.get(path, headers=headers)


def score(base: str, payment: dict[str, Any]) -> dict[str, Any]:
    r = post(base, "/score", BACKEND, payment)
    assert r.status_code == 200, r.text
    return r.json()


def new_case(d: Deployment, replica: Replica | None = None) -> tuple[str, int]:
    body = score((replica or d.a).base, high_risk(new_tag()))
    assert body["decision"] == "review", body
    return body["transaction_id"], int(body["case_id"])


def wall_ms(results: list[dict[str, Any]]) -> float:
    """From the first request sent to the last answer received."""
    return (max(r["span"][1] for r in results) - min(r["span"][0] for r in results)) * 1000


# --- claims across replicas -----------------------------------------------------------------------


def test_twenty_claims_across_two_replicas_get_distinct_cases(deployment, pg_engine):
    d = deployment
    made = {new_case(d, d.a if i % 2 else d.b)[1] for i in range(CLAIM_CASES)}
    with pg_engine.connect() as conn:
        free = set(
            conn.execute(
                select(db.cases.c.id).where(
                    db.cases.c.status == "open", db.cases.c.claimed_by.is_(None)
                )
            ).scalars()
        )
    assert made <= free
    barrier = threading.Barrier(CLAIMERS)

    def claim(i: int) -> dict[str, Any]:
        replica = (d.a, d.b)[i % 2]
        with httpx.Client(base_url=replica.base, timeout=30.0) as c:
            barrier.wait(timeout=30)
            started = time.perf_counter()
            r = c.post("/cases/next/claim", headers=REVIEWERS[i])
            ended = time.perf_counter()
        body = r.json()
        return {
            "status": r.status_code,
            "case_id": body.get("case_id"),
            "replica": replica.name,
            "span": (started, ended),
        }

    with ThreadPoolExecutor(max_workers=CLAIMERS) as pool:
        results = list(pool.map(claim, range(CLAIMERS)))
    statuses = Counter(r["status"] for r in results)
    won = [r["case_id"] for r in results if r["status"] == 200]
    print(
        f"\nreplica claim race: {CLAIMERS} reviewers over A and B, {len(free)} free cases -> "
        f"{statuses[200]} claimed ({len(set(won))} distinct), {statuses[404]} x 404, "
        f"other { {k: v for k, v in statuses.items() if k not in (200, 404)} }; "
        f"wall {wall_ms(results):.0f} ms"
    )
    assert set(statuses) <= {200, 404}, results
    assert len(won) == len(set(won)) == min(len(free), CLAIMERS)
    assert set(won) <= free


# --- b: one decision across replicas --------------------------------------------------------------


def test_fifty_concurrent_decisions_across_two_replicas_exactly_one_wins(deployment, pg_engine):
    d = deployment
    txn, case_id = new_case(d)
    seen_by_b = get(d.b.base, f"/cases/{case_id}", REVIEWER)
    assert seen_by_b.status_code == 200, "B reads the case A created (one database)"
    names = list(REVIEWER_KEYS)
    targets = [d.a, d.b]
    barrier = threading.Barrier(DECISIONS)

    def decide(i: int) -> dict[str, Any]:
        decision = "approve" if i % 2 == 0 else "decline_fraud"
        replica = targets[(i // 2) % 2]  # both decisions go to both replicas
        with httpx.Client(base_url=replica.base, timeout=30.0) as c:
            barrier.wait(timeout=30)
            started = time.perf_counter()
            r = c.post(
                f"/cases/{case_id}/decision",
                json={"decision": decision},
                headers=REVIEWERS[i % len(REVIEWERS)],
            )
            ended = time.perf_counter()
        return {
            "status": r.status_code,
            "replica": replica.name,
            "decision": decision,
            "reviewer": names[i % len(names)],
            "ms": (ended - started) * 1000,
            "span": (started, ended),
            "body": r.text,
        }

    with ThreadPoolExecutor(max_workers=DECISIONS) as pool:
        results = list(pool.map(decide, range(DECISIONS)))
    wall = wall_ms(results)
    statuses = Counter(r["status"] for r in results)
    per_replica = Counter((r["replica"], r["status"]) for r in results)
    latencies = sorted(r["ms"] for r in results)
    print(
        f"\nreplica decision race: {DECISIONS} requests "
        f"(A {sum(1 for r in results if r['replica'] == 'A')}, "
        f"B {sum(1 for r in results if r['replica'] == 'B')}) -> "
        f"{statuses[200]} success, {statuses[409]} conflicts, other "
        f"{ {k: v for k, v in statuses.items() if k not in (200, 409)} }; "
        f"per replica {dict(sorted(per_replica.items()))}; wall {wall:.0f} ms, "
        f"p50 {latencies[len(latencies) // 2]:.0f} ms, max {latencies[-1]:.0f} ms"
    )
    assert statuses == {200: 1, 409: DECISIONS - 1}, [
        (r["replica"], r["status"], r["body"][:120]) for r in results if r["status"] != 409
    ]
    winner = next(r for r in results if r["status"] == 200)

    rec = records_of(pg_engine, txn, case_id)
    c = rec["case"]
    assert (c["status"], c["decision"], c["decided_by"], c["version"]) == (
        "decided",
        winner["decision"],
        winner["reviewer"],
        1,
    )
    assert [lb["is_fraud"] for lb in rec["labels"]] == [winner["decision"] == "decline_fraud"]
    assert len(rec["outbox"]) == 1
    assert [a["action"] for a in rec["audit"]] == ["score", "decide"]
    with pg_engine.connect() as conn:
        decided = conn.execute(
            select(db.cases.c.id).where(
                db.cases.c.transaction_id == txn, db.cases.c.status == "decided"
            )
        ).all()
    assert len(decided) == 1
    # both replicas answer with the one stored outcome
    for replica in targets:
        status = get(replica.base, f"/payments/{txn}", BACKEND).json()
        expected = "settled" if winner["decision"] == "approve" else "declined"
        assert status["status"] == expected


def test_one_payment_sent_to_both_replicas_at_once_is_decided_and_counted_once(
    deployment, pg_engine
):
    """The backend retries on the other replica while the first is still working: the
    database's unique key decides (IntegrityError -> replay of the stored decision) and the
    shared online state counts the payment once."""
    d = deployment
    tag = new_tag()
    payment = high_risk(tag)
    barrier = threading.Barrier(SAME_PAYMENT)

    def send(i: int) -> dict[str, Any]:
        replica = (d.a, d.b)[i % 2]
        with httpx.Client(base_url=replica.base, timeout=30.0) as c:
            barrier.wait(timeout=30)
            r = c.post("/score", json=payment, headers=BACKEND)
        return {"status": r.status_code, "body": r.json(), "replica": replica.name}

    with ThreadPoolExecutor(max_workers=SAME_PAYMENT) as pool:
        results = list(pool.map(send, range(SAME_PAYMENT)))
    assert [r["status"] for r in results] == [200] * SAME_PAYMENT, results
    fresh = [r for r in results if not r["body"]["replayed"]]
    print(
        f"\nsame payment to both replicas: {SAME_PAYMENT} requests -> {len(fresh)} decided, "
        f"{SAME_PAYMENT - len(fresh)} replayed (A {sum(r['replica'] == 'A' for r in results)}, "
        f"B {sum(r['replica'] == 'B' for r in results)})"
    )
    assert len(fresh) == 1
    stored = {k: v for k, v in fresh[0]["body"].items() if k not in ("replayed", "elapsed_ms")}
    for r in results:
        assert {k: v for k, v in r["body"].items() if k not in ("replayed", "elapsed_ms")} == stored
    with pg_engine.connect() as conn:
        n_cases = conn.execute(
            select(db.cases.c.id).where(db.cases.c.transaction_id == payment["transaction_id"])
        ).all()
    assert len(n_cases) == 1
    rec = records_of(pg_engine, payment["transaction_id"], stored["case_id"])
    assert [a["action"] for a in rec["audit"]] == ["score"]
    # the next payment on the card sees exactly one earlier payment in the shared state
    follow = {
        **payment,
        "transaction_id": f"txn-{tag}-next",
        "timestamp": "2024-03-06T03:05:00Z",
    }
    body = score(d.b.base, follow)
    assert body["case_id"] is not None, body
    case = get(d.a.base, f"/cases/{body['case_id']}", REVIEWER).json()
    assert case["features"]["card_count_1h"] == 1.0


# --- b: velocity features through the shared online state -----------------------------------------


def score_through(replicas: list[Replica], payments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Score in order, payment i through replicas[i % len]; each result with its case features."""
    out = []
    for i, payment in enumerate(payments):
        replica = replicas[i % len(replicas)]
        body = score(replica.base, payment)
        features = None
        if body["case_id"] is not None:
            other = replicas[(i + 1) % len(replicas)]  # read the case back through the other
            case = get(other.base, f"/cases/{body['case_id']}", REVIEWER)
            assert case.status_code == 200, case.text
            features = case.json()["features"]
        out.append({**body, "features": features, "replica": replica.name})
    return out


def test_velocity_features_agree_across_replicas(deployment):
    d = deployment
    alternating = score_through(
        [d.a, d.b], card_sequence(f"alt-{new_tag()}", VELOCITY_PAYMENTS, 7 * 60)
    )
    single = score_through([d.a], card_sequence(f"one-{new_tag()}", VELOCITY_PAYMENTS, 7 * 60))

    rows = [
        (
            i,
            x["replica"],
            x["features"] and x["features"]["card_count_1h"],
            round(x["probability"], 6),
            round(y["probability"], 6),
        )
        for i, (x, y) in enumerate(zip(alternating, single, strict=True))
    ]
    print("\nvelocity through A/B vs A only: (i, replica, card_count_1h, p A/B, p A)")
    for row in rows:
        print(f"  {row}")
    for i, (x, y) in enumerate(zip(alternating, single, strict=True)):
        assert x["decision"] == y["decision"], i
        assert x["probability"] == pytest.approx(y["probability"], rel=1e-9, abs=1e-12), i
        assert (x["features"] is None) == (y["features"] is None), i
        if x["features"] is not None:
            assert same_features(x["features"], y["features"]), (i, x["features"], y["features"])
    counts_1h = [x["features"]["card_count_1h"] for x in alternating if x["features"]]
    assert len(counts_1h) >= VELOCITY_PAYMENTS - 1, "the sequence should stay in review"
    # B saw A's payments and vice versa: the count grows with every payment
    assert counts_1h == sorted(counts_1h)
    assert counts_1h[-1] > counts_1h[0]
    assert len({round(x["probability"], 9) for x in single}) > 1, "velocity moves the score"


# --- f: the database goes away in the middle of a decision ----------------------------------------


def _wait_for_lock_wait(admin: Any, dbname: str) -> int | None:
    """PID of the backend of `dbname` waiting for a lock on its outbox INSERT (bounded poll)."""
    tick = threading.Event()  # never set: the poll pause
    deadline = time.monotonic() + OUTAGE_WAIT_S
    for _ in range(int(OUTAGE_WAIT_S / POLL_S) + 1):
        pid = admin.execute(
            text(
                "SELECT pid FROM pg_stat_activity WHERE datname = :db "
                "AND wait_event_type = 'Lock' AND query ILIKE 'INSERT INTO outbox%'"
            ),
            {"db": dbname},
        ).scalar()
        if pid is not None or time.monotonic() > deadline:
            return pid
        tick.wait(POLL_S)
    return None


def test_database_outage_mid_decision_fails_fast_and_writes_nothing(
    deployment, pg_engine, pg_server_url, pg_url
):
    d = deployment
    txn, case_id = new_case(d)
    dbname = make_url(pg_url).database
    assert dbname
    outcome: dict[str, Any] = {}

    def decide_on_a() -> None:
        started = time.monotonic()
        try:
            r = post(d.a.base, f"/cases/{case_id}/decision", REVIEWER, {"decision": "approve"})
            outcome.update(status=r.status_code, body=r.text)
        except httpx.HTTPError as exc:  # a dropped connection is an error to the caller too
            outcome.update(status=None, body=repr(exc))
        outcome["done_at"] = time.monotonic()
        outcome["took"] = outcome["done_at"] - started

    with server_admin(pg_server_url) as admin, pg_engine.connect() as locker:
        locker_pid = locker.execute(text("SELECT pg_backend_pid()")).scalar_one()
        locker.commit()
        restored = False
        try:
            with locker.begin():
                # the decision will update the case, then wait here to write its outbox event
                locker.execute(text("LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE"))
                sender = threading.Thread(target=decide_on_a)
                sender.start()
                waiting = _wait_for_lock_wait(admin, dbname)
                assert waiting is not None, (
                    f"the decision never reached its outbox write: {outcome}"
                )
                wrote_case = locker.execute(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE pid = :pid AND granted "
                        "AND relation = 'cases'::regclass AND mode = 'RowExclusiveLock'"
                    ),
                    {"pid": waiting},
                ).scalar_one()
                assert wrote_case == 1, "the case row was already updated in that transaction"
                # PostgreSQL goes away for this database: no new sessions, sessions killed
                admin.execute(text(f'ALTER DATABASE "{dbname}" WITH ALLOW_CONNECTIONS false'))
                gone_at = time.monotonic()
                admin.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :db AND pid <> :me"
                    ),
                    {"db": dbname, "me": locker_pid},
                )
                sender.join(timeout=FAIL_FAST_S + 20)
                assert not sender.is_alive(), "the decision hung while the database was gone"
            failed_after = outcome["done_at"] - gone_at
            # while the database is still unavailable: errors, quickly, on every path
            started = time.monotonic()
            retry = post(d.a.base, f"/cases/{case_id}/decision", REVIEWER, {"decision": "approve"})
            retry_took = time.monotonic() - started
            nxt = post(d.b.base, "/cases/next/claim", REVIEWERS[1])
            print(
                f"\ndatabase outage: decision in flight -> {outcome['status']} "
                f"{failed_after * 1000:.0f} ms after the outage; retry while down -> "
                f"{retry.status_code} in {retry_took * 1000:.0f} ms; next-claim on B -> "
                f"{nxt.status_code}"
            )
            assert outcome["status"] is None or outcome["status"] >= 500, outcome
            assert failed_after < FAIL_FAST_S
            assert retry.status_code >= 500, retry.text
            assert retry_took < FAIL_FAST_S
            assert nxt.status_code == 503, nxt.text

            # nothing half-written: the rolled-back transaction left no trace
            case = locker.execute(
                select(db.cases.c.status, db.cases.c.version, db.cases.c.decided_by).where(
                    db.cases.c.id == case_id
                )
            ).one()
            assert tuple(case) == ("open", 0, None)
            status = locker.execute(
                select(db.decisions.c.status).where(db.decisions.c.transaction_id == txn)
            ).scalar_one()
            assert status == "held_for_review"
            for table in (db.outbox, db.labels):
                n = locker.execute(select(table.c.id).where(table.c.transaction_id == txn)).all()
                assert n == [], table.name
            decide_audit = locker.execute(
                select(db.audit_log.c.id).where(
                    db.audit_log.c.action == "decide", db.audit_log.c.target == str(case_id)
                )
            ).all()
            assert decide_audit == []
            locker.rollback()

            # recovery: the same decision succeeds, once
            admin.execute(text(f'ALTER DATABASE "{dbname}" WITH ALLOW_CONNECTIONS true'))
            restored = True
            again = post(d.a.base, f"/cases/{case_id}/decision", REVIEWER, {"decision": "approve"})
            assert again.status_code == 200, again.text
            twice = post(d.b.base, f"/cases/{case_id}/decision", REVIEWER, {"decision": "approve"})
            assert twice.status_code == 409, twice.text
        finally:
            if not restored:
                admin.execute(text(f'ALTER DATABASE "{dbname}" WITH ALLOW_CONNECTIONS true'))

    rec = records_of(pg_engine, txn, case_id)
    assert (rec["case"]["status"], rec["case"]["version"]) == ("decided", 1)
    assert rec["decision"]["status"] == "settled"
    assert len(rec["labels"]) == 1
    assert len(rec["outbox"]) == 1
    assert [a["action"] for a in rec["audit"]] == ["score", "decide"]
