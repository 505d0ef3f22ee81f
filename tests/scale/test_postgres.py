"""The review lifecycle on PostgreSQL, in-process (the BentoML app under a TestClient).

One service per module on a fresh PostgreSQL database (tables emptied before every test) and
its own SQLite online state:

- the schema: Alembic migrations, JSON columns, timezone-aware timestamps;
- score -> case -> claim next -> decide -> payment status, with the label, the outbox event
  and the audit trail written together; optimistic versions;
- idempotency: same key + body -> replay, same key + other body -> 422, the same transaction
  id -> replay; the IntegrityError path (another replica wrote the payment first) answers with
  the stored decision;
- races: 20 reviewers claiming at once get distinct cases (or 404), never the same one; many
  reviewers deciding one case -> exactly one 200, the rest 409, one event, one label.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, insert, inspect, select, text

from serving.core.auth import Principal
from serving.review import queue
from serving.store import db
from tests.scale.conftest import (
    ADMIN,
    BACKEND,
    REVIEWER,
    REVIEWER_KEYS,
    REVIEWERS,
    counts,
    high_risk,
    low_risk,
    new_tag,
    records_of,
    riskgate_env,
    running_service,
    service_environ,
    truncate_all,
)

pytestmark = pytest.mark.slow

CLAIMERS = 20
CASES_FOR_CLAIMERS = 12
DECIDERS = 40


@pytest.fixture(scope="module")
def client(
    pg_url: str,
    pg_engine: Engine,
    scale_model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Any]:
    """The service in-process on the module's PostgreSQL database."""
    env = riskgate_env(tmp_path_factory.mktemp("pg-inproc"), scale_model_dir, pg_url)
    with service_environ(env), running_service() as c:
        yield c


@pytest.fixture(autouse=True)
def _empty_tables(request: pytest.FixtureRequest) -> None:
    if "pg_engine" in request.fixturenames:
        truncate_all(request.getfixturevalue("pg_engine"))


def score(client: Any, payment: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    headers = BACKEND if key is None else {**BACKEND, "Idempotency-Key": key}
    r = client.post("/score", json=payment, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def review_case(client: Any, tag: str, **overrides: Any) -> tuple[str, int]:
    body = score(client, {**high_risk(tag), **overrides})
    assert body["decision"] == "review", body
    assert body["case_id"] is not None
    return body["transaction_id"], int(body["case_id"])


# --- the schema -------------------------------------------------------------------------------


def test_migrations_build_the_schema_with_json_and_timestamptz(client, pg_engine):
    with pg_engine.connect() as conn:
        assert conn.dialect.name == "postgresql"
        head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        types = dict(
            conn.execute(
                text(
                    "SELECT table_name || '.' || column_name, data_type "
                    "FROM information_schema.columns WHERE table_schema = current_schema()"
                )
            ).all()
        )
    assert head == ScriptDirectory(str(db.MIGRATIONS)).get_current_head()
    assert set(inspect(pg_engine).get_table_names()) >= set(db.metadata.tables)
    for name in ("cases.payment", "cases.features", "decisions.response", "audit_log.detail"):
        assert types[name] == "json", name
    for name in ("cases.created_at", "cases.claim_expires", "decisions.payment_time"):
        assert types[name] == "timestamp with time zone", name
    assert types["audit_log.id"] == "bigint"
    db.create_schema(pg_engine)  # idempotent: a second run (another replica starting) is a no-op


# --- the lifecycle ------------------------------------------------------------------------------


def test_lifecycle_score_case_claim_decide_status(client, pg_engine):
    tag = new_tag()
    low = score(client, low_risk(f"low-{tag}"))
    assert (low["decision"], low["status"], low["case_id"]) == ("approve", "settled", None)
    first = score(client, high_risk(tag), key=f"key-{tag}")
    assert (first["decision"], first["status"]) == ("review", "held_for_review")
    txn, case_id = first["transaction_id"], first["case_id"]

    held = client.get(f"/payments/{txn}", headers=BACKEND).json()
    assert (held["status"], held["case_id"], held["queue_position"]) == (
        "held_for_review",
        case_id,
        1,
    )

    claimed = client.post("/cases/next/claim", headers=REVIEWER)
    assert claimed.status_code == 200, claimed.text
    claim = claimed.json()
    assert (claim["case_id"], claim["claimed_by"]) == (case_id, "rev00")
    assert claim["case"]["version"] == 0
    assert claim["case"]["transaction_id"] == txn
    # nothing else is free: another reviewer (and the holder) get 404
    assert client.post("/cases/next/claim", headers=REVIEWERS[1]).status_code == 404
    assert client.post("/cases/next/claim", headers=REVIEWER).status_code == 404
    # the holder's lock keeps others out; a stale version is refused
    other = client.post(
        f"/cases/{case_id}/decision", json={"decision": "approve"}, headers=REVIEWERS[1]
    )
    assert other.status_code == 409, other.text
    stale = client.post(
        f"/cases/{case_id}/decision", json={"decision": "approve", "version": 3}, headers=REVIEWER
    )
    assert stale.status_code == 409
    assert "version" in stale.json()["error"]

    case = client.get(f"/cases/{case_id}", headers=REVIEWER).json()
    assert case["features"]["card_count_1h"] == 0.0  # JSON round trip of the features
    assert case["reasons"] == first["reasons"]
    assert case["payment"]["card_id"] != high_risk(tag)["card_id"]  # masked

    decided = client.post(
        f"/cases/{case_id}/decision",
        json={"decision": "decline_fraud", "note": "mule", "version": case["version"]},
        headers=REVIEWER,
    )
    assert decided.status_code == 200, decided.text
    again = client.post(
        f"/cases/{case_id}/decision", json={"decision": "approve"}, headers=REVIEWER
    )
    assert again.status_code == 409

    status = client.get(f"/payments/{txn}", headers=BACKEND).json()
    assert status["status"] == "declined"
    assert datetime.fromisoformat(status["decided_at"]).utcoffset() is not None

    rec = records_of(pg_engine, txn, case_id)
    c = rec["case"]
    assert (c["status"], c["decision"], c["decided_by"], c["version"]) == (
        "decided",
        "decline_fraud",
        "rev00",
        1,
    )
    assert c["claimed_by"] is None
    for ts in (c["created_at"], c["sla_due"], c["decided_at"], rec["decision"]["payment_time"]):
        assert ts.utcoffset() is not None  # timestamptz: aware datetimes
    assert rec["decision"]["payment_time"] == datetime.fromisoformat("2024-03-06T03:00:00+00:00")
    assert isinstance(c["features"], dict)
    assert isinstance(c["payment"], dict)
    assert rec["decision"]["status"] == "declined"
    assert [(lb["is_fraud"], lb["source"], lb["reason"]) for lb in rec["labels"]] == [
        (True, "review", "mule")
    ]
    assert [(e["type"], e["payload"]["decision"]) for e in rec["outbox"]] == [
        ("payment.declined", "decline_fraud")
    ]
    assert [a["action"] for a in rec["audit"]] == ["score", "claim", "decide"]
    assert rec["audit"][1]["detail"]["next"] is True


def test_claim_next_follows_queue_order_and_skips_my_own_claims(client, pg_engine):
    made = []
    for amount in (2500.0, 9000.0, 5000.0):
        _, case_id = review_case(client, new_tag(), amount=amount)
        made.append(case_id)
    with pg_engine.connect() as conn:
        rows = conn.execute(select(db.cases.c.id, db.cases.c.priority)).all()
    expected = [r.id for r in sorted(rows, key=lambda r: (-r.priority, r.id))]

    got = []
    for _ in range(len(made)):
        r = client.post("/cases/next/claim", headers=REVIEWER)
        assert r.status_code == 200, r.text
        got.append(r.json()["case_id"])
    assert got == expected
    assert client.post("/cases/next/claim", headers=REVIEWER).status_code == 404

    # a released case is free again, and comes back first in queue order
    assert client.post(f"/cases/{expected[0]}/release", headers=REVIEWER).status_code == 200
    again = client.post("/cases/next/claim", headers=REVIEWERS[1])
    assert again.status_code == 200
    assert again.json()["case_id"] == expected[0]


def test_other_routes_on_postgres(client, pg_engine):
    """Chargeback labels (the duplicate is caught in a savepoint), bulk approve, the filtered
    queue, the admin views and the policy round trip all run on PostgreSQL."""
    tags = [new_tag() for _ in range(3)]
    cases = [review_case(client, t)[1] for t in tags]
    listed = client.get(
        "/cases",
        headers=REVIEWER,
        params={"status": "open", "overdue": "false", "min_score": 0, "min_amount": 100},
    )
    assert listed.status_code == 200, listed.text
    assert sorted(c["id"] for c in listed.json()["items"]) == sorted(cases)
    assert listed.json()["stats"]["depth"] == 3
    bulk = client.post(
        "/cases/bulk_approve", json={"case_ids": [*cases[:2], cases[0]]}, headers=REVIEWER
    )
    assert bulk.status_code == 200, bulk.text
    assert bulk.json()["approved"] == 2
    assert client.get("/cases", headers=REVIEWER).json()["stats"]["decided_today"] == 2

    label = {"transaction_id": f"txn-{tags[2]}", "is_fraud": True, "reason": "chargeback"}
    first = client.post("/labels", json=label, headers=BACKEND).json()
    second = client.post("/labels", json=label, headers=BACKEND).json()
    assert (first["stored"], second["stored"], second["duplicate"]) == (True, False, True)
    missing = client.post("/labels", json={**label, "transaction_id": "nope"}, headers=BACKEND)
    assert missing.status_code == 404

    exported = client.get("/labels/export", headers=ADMIN).json()["labels"]
    assert sorted((x["source"], x["is_fraud"]) for x in exported) == [
        ("chargeback", True),
        ("review", False),
        ("review", False),
    ]
    audit = client.get("/admin/audit", headers=ADMIN, params={"action": "decide"}).json()
    assert audit["total"] == 2
    assert len(client.get("/admin/outbox", headers=ADMIN).json()["items"]) == 2
    policy = {"block": {"card_id": ["card-blocked"]}, "fallback_max_amount": 20.0}
    put = client.put("/admin/policy?force=true", json=policy, headers=ADMIN)
    assert put.status_code == 200, put.text
    again = client.put("/admin/policy?force=true", json=policy, headers=ADMIN)  # the update branch
    assert again.status_code == 200
    got = client.get("/admin/policy", headers=ADMIN).json()
    assert got["block"] == {"card_id": ["card-blocked"]}
    with pg_engine.connect() as conn:
        stored = conn.execute(select(db.settings_table.c.value)).scalar_one()
    assert stored["fallback_max_amount"] == 20.0
    client.put(
        "/admin/policy?force=true", json={}, headers=ADMIN
    )  # back to the default for later tests


# --- idempotency --------------------------------------------------------------------------------


def test_idempotency_and_same_id_replay_on_postgres(client, pg_engine):
    tag = new_tag()
    key = f"idem-{tag}"
    first = score(client, high_risk(tag), key=key)
    again = score(client, high_risk(tag), key=key)
    assert again == {**first, "replayed": True}
    reused = client.post(
        "/score", json=low_risk(f"other-{tag}"), headers={**BACKEND, "Idempotency-Key": key}
    )
    assert reused.status_code == 422
    no_key = score(client, high_risk(tag))
    assert no_key == {**first, "replayed": True}
    assert counts(pg_engine) == {
        "decisions": 1,
        "cases": 1,
        "idempotency_keys": 1,
        "audit_log": 1,
        "labels": 0,
        "outbox": 0,
    }
    # the replay carries the payment's current status once it is decided
    decided = client.post(
        f"/cases/{first['case_id']}/decision", json={"decision": "approve"}, headers=REVIEWER
    )
    assert decided.status_code == 200
    assert score(client, high_risk(tag), key=key)["status"] == "settled"


def test_integrity_error_from_a_concurrent_writer_replays_the_stored_decision(
    client, pg_engine, monkeypatch
):
    """Another replica wrote the payment between our replay check and our insert: PostgreSQL's
    unique violation must surface as IntegrityError and be answered with the stored decision,
    with nothing written twice (the whole write is one transaction)."""
    from serving.http.service import http_app

    scorer = http_app.state.runtime.scorer
    tag = new_tag()
    first = score(client, high_risk(tag))
    before = counts(pg_engine)
    original = scorer.replays.replay
    calls = Counter[str]()

    def replay_misses_once(*args: Any, **kwargs: Any) -> Any:
        calls["replay"] += 1
        if calls["replay"] == 1:
            return None  # the race window: the other replica had not committed yet
        return original(*args, **kwargs)

    monkeypatch.setattr(scorer.replays, "replay", replay_misses_once)
    raced = score(client, high_risk(tag), key=f"race-{tag}")

    assert calls["replay"] == 2, "the write must have failed and been replayed"
    assert raced == {**first, "replayed": True}
    after = counts(pg_engine)
    assert after == {**before, "idempotency_keys": before["idempotency_keys"] + 1}


# --- races ----------------------------------------------------------------------------------------


def test_twenty_reviewers_claiming_at_once_never_get_the_same_case(client, pg_engine):
    cases = {review_case(client, new_tag())[1] for _ in range(CASES_FOR_CLAIMERS)}
    barrier = threading.Barrier(CLAIMERS)

    def claim(i: int) -> tuple[int, Any, float]:
        barrier.wait(timeout=30)
        started = time.perf_counter()
        r = client.post("/cases/next/claim", headers=REVIEWERS[i])
        return r.status_code, r.json(), (time.perf_counter() - started) * 1000

    with ThreadPoolExecutor(max_workers=CLAIMERS) as pool:
        results = list(pool.map(claim, range(CLAIMERS)))

    statuses = Counter(s for s, _, _ in results)
    won = {body["case_id"]: body["claimed_by"] for s, body, _ in results if s == 200}
    print(
        f"\nclaim race on PostgreSQL: {CLAIMERS} reviewers, {len(cases)} free cases -> "
        f"{statuses[200]} claimed, {statuses[404]} x 404, other {dict(statuses)}; "
        f"max {max(ms for _, _, ms in results):.1f} ms"
    )
    assert set(statuses) <= {200, 404}, results
    assert statuses[200] == len(cases)
    assert statuses[404] == CLAIMERS - len(cases)
    assert set(won) == cases  # every case claimed once: no case handed to two reviewers
    with pg_engine.connect() as conn:
        held = dict(conn.execute(select(db.cases.c.id, db.cases.c.claimed_by)).all())
        claims = conn.execute(
            select(db.audit_log.c.target).where(db.audit_log.c.action == "claim")
        ).all()
    assert held == won
    assert sorted(int(t) for (t,) in claims) == sorted(cases)
    assert client.post("/cases/next/claim", headers=REVIEWER).status_code == 404


def _insert_cases(engine: Engine, n: int, now: datetime) -> set[int]:
    """n open cases written directly (a decision row each, as the scorer writes them)."""
    ids = set()
    with engine.begin() as conn:
        for i in range(n):
            txn = f"txn-q-{new_tag()}"
            conn.execute(
                insert(db.decisions).values(
                    transaction_id=txn,
                    created_at=now,
                    payment_time=now,
                    decision="review",
                    source="model",
                    status="held_for_review",
                    status_at=now,
                    amount=100.0 + i,
                    currency="EUR",
                    merchant_id="m",
                    card_id="c",
                    response={},
                )
            )
            result = conn.execute(
                insert(db.cases).values(
                    transaction_id=txn,
                    created_at=now,
                    sla_due=now + timedelta(minutes=15),
                    status="open",
                    priority=float(i % 3),  # ties: the order falls back to age, then id
                    amount=100.0 + i,
                    merchant_id="m",
                    version=0,
                    payment={},
                    features={},
                    factors=[],
                    reasons=[],
                )
            )
            ids.add(int(result.inserted_primary_key[0]))
    return ids


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_claim_next_in_the_queue_module_under_threads(dialect, tmp_path, request):
    """queue.claim_next itself, 16 threads on 10 cases: SKIP LOCKED on PostgreSQL, the
    guarded UPDATE (retrying on a lost candidate) on SQLite; each case goes to one thread."""
    if dialect == "postgresql":
        engine = request.getfixturevalue("pg_engine")
        truncate_all(engine)
    else:
        engine = db.make_engine(f"sqlite:///{tmp_path / 'q.db'}")
        db.create_schema(engine)
    now = datetime.now(UTC)
    ids = _insert_cases(engine, 10, now)
    threads = 16
    barrier = threading.Barrier(threads)

    def claim(i: int) -> int | str:
        who = Principal("reviewer", f"r{i}", f"key{i}")
        barrier.wait(timeout=30)
        try:
            return int(queue.claim_next(engine, who, now, 15)["case_id"])
        except queue.CaseError as exc:
            return f"{exc.status}: {exc.message}"

    with ThreadPoolExecutor(max_workers=threads) as pool:
        got = list(pool.map(claim, range(threads)))
    won = [g for g in got if isinstance(g, int)]
    assert sorted(won) == sorted(ids), got  # all claimed, none twice
    assert got.count("404: no free open case") == threads - len(ids), got
    if dialect == "sqlite":
        engine.dispose()


def test_many_reviewers_deciding_one_case_exactly_one_wins(client, pg_engine):
    txn, case_id = review_case(client, new_tag())
    names = list(REVIEWER_KEYS)
    barrier = threading.Barrier(DECIDERS)

    def decide(i: int) -> tuple[int, str, str]:
        decision = "approve" if i % 2 == 0 else "decline_fraud"
        barrier.wait(timeout=30)
        r = client.post(
            f"/cases/{case_id}/decision",
            json={"decision": decision},
            headers=REVIEWERS[i % len(REVIEWERS)],
        )
        return r.status_code, decision, names[i % len(names)]

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=DECIDERS) as pool:
        results = list(pool.map(decide, range(DECIDERS)))
    elapsed = (time.perf_counter() - started) * 1000
    statuses = Counter(s for s, _, _ in results)
    print(
        f"\ndecision race on PostgreSQL (in-process): {DECIDERS} requests -> "
        f"{statuses[200]} x 200, {statuses[409]} x 409, other {dict(statuses)}; {elapsed:.0f} ms"
    )
    assert statuses == {200: 1, 409: DECIDERS - 1}, results
    (_, decision, reviewer) = next(r for r in results if r[0] == 200)

    rec = records_of(pg_engine, txn, case_id)
    c = rec["case"]
    assert (c["status"], c["decision"], c["decided_by"], c["version"]) == (
        "decided",
        decision,
        reviewer,
        1,
    )
    assert rec["decision"]["status"] == ("settled" if decision == "approve" else "declined")
    assert [lb["is_fraud"] for lb in rec["labels"]] == [decision == "decline_fraud"]
    assert len(rec["outbox"]) == 1
    assert rec["outbox"][0]["payload"]["reviewer"] == reviewer
    assert [a["action"] for a in rec["audit"]] == ["score", "decide"]
    assert rec["audit"][1]["actor"] == reviewer
