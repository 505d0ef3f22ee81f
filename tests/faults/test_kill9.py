"""kill -9 under load: the real server is killed mid-way and restarted on the same database and
state; a client retrying with the same Idempotency-Key gets exactly one decision per payment.

Bounded: 2,000 payments, 6 client threads, at most MAX_ATTEMPTS tries per request, and a
deadline on the whole load; the kill happens once, when half of the payments are answered.
"""

from __future__ import annotations

import queue
import random
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.servers import Server
from tests.serving.helpers import BACKEND, high_risk, low_risk

pytestmark = pytest.mark.slow

N_PAYMENTS = 2_000
BATCHED = 400  # the first BATCHED payments go through /score_batch, BATCH_SIZE at a time
BATCH_SIZE = 20
THREADS = 6
MAX_ATTEMPTS = 100  # per request (a retry reuses its Idempotency-Key)
LOAD_TIMEOUT_S = 150.0
CLIENT_TIMEOUT_S = 30.0
KILL_AT = N_PAYMENTS // 2  # answered payments when the server is killed


def payment(n: int) -> dict[str, Any]:
    """Unique ids; every 8th payment is high-risk (held for review, so a case is created)."""
    tag = f"k9-{n:05d}"
    return high_risk(tag) if n % 8 == 0 else low_risk(tag)


@dataclass(frozen=True)
class Unit:
    """One request: a single payment to /score or a chunk to /score_batch, with its key."""

    path: str
    key: str
    payments: tuple[dict[str, Any], ...]

    def body(self) -> dict[str, Any]:
        if self.path == "/score":
            return self.payments[0]
        return {"payments": list(self.payments)}

    def server_keys(self) -> list[str]:
        """The idempotency rows the server must hold for this request (batch: key#index)."""
        if self.path == "/score":
            return [self.key]
        return [f"{self.key}#{i}" for i in range(len(self.payments))]


def units() -> list[Unit]:
    out = [
        Unit(
            "/score_batch",
            f"idem-batch-{i:03d}",
            tuple(payment(n) for n in range(s, s + BATCH_SIZE)),
        )
        for i, s in enumerate(range(0, BATCHED, BATCH_SIZE))
    ]
    out += [
        Unit("/score", f"idem-{p['transaction_id']}", (p,))
        for p in (payment(n) for n in range(BATCHED, N_PAYMENTS))
    ]
    random.Random(7).shuffle(out)  # batches and singles interleaved, deterministically
    return out


@dataclass
class Load:
    """What the client saw, shared by its threads (all fields under `cond`)."""

    deadline: float
    cond: threading.Condition = field(default_factory=threading.Condition)
    up: threading.Event = field(default_factory=threading.Event)  # clear while restarting
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    answered: int = 0
    attempts: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    refused: list[str] = field(default_factory=list)  # final answers that are not 200
    gave_up: list[str] = field(default_factory=list)
    in_flight: int = 0

    def send(self, http: httpx.Client, unit: Unit) -> None:
        headers = {**BACKEND, "Idempotency-Key": unit.key}
        for _ in range(MAX_ATTEMPTS):
            if time.monotonic() > self.deadline:
                break
            with self.cond:
                self.attempts += 1
                self.in_flight += 1
            try:
                r = http.post(unit.path, json=unit.body(), headers=headers)
                cause = f"http {r.status_code}" if r.status_code >= 500 else None
            except httpx.TransportError as exc:
                r, cause = None, type(exc).__name__
            finally:
                with self.cond:
                    self.in_flight -= 1
            if cause is None and r is not None:
                self._answer(unit, r)
                return
            with self.cond:
                self.retries[cause or "?"] += 1
            # The server is down while a restart is underway: wait for it rather than spin.
            self.up.wait(timeout=max(0.0, self.deadline - time.monotonic()))
        with self.cond:
            self.gave_up.append(unit.key)

    def _answer(self, unit: Unit, r: httpx.Response) -> None:
        with self.cond:
            if r.status_code != 200:
                self.refused.append(f"{unit.key}: {r.status_code} {r.text[:200]}")
            else:
                body = r.json()
                results = [body] if unit.path == "/score" else body["results"]
                for p, res in zip(unit.payments, results, strict=True):
                    assert res["transaction_id"] == p["transaction_id"]
                    self.answers[p["transaction_id"]] = res
            self.answered += len(unit.payments)
            self.cond.notify_all()


def rows(conn: sqlite3.Connection, sql: str) -> list[tuple[Any, ...]]:
    return list(conn.execute(sql).fetchall())


def test_kill9_mid_load_loses_and_doubles_nothing(real_server: Server):
    server = real_server  # the session's real server (tests/faults/conftest.py): started, ready
    work = units()
    todo: queue.Queue[Unit] = queue.Queue()
    for u in work:
        todo.put(u)
    load = Load(deadline=time.monotonic() + LOAD_TIMEOUT_S)

    def client() -> None:
        with httpx.Client(base_url=server.base, timeout=CLIENT_TIMEOUT_S) as http:
            while True:
                try:
                    unit = todo.get_nowait()
                except queue.Empty:
                    return
                load.send(http, unit)

    try:
        load.up.set()
        threads = [threading.Thread(target=client, daemon=True) for _ in range(THREADS)]
        for t in threads:
            t.start()

        with load.cond:
            reached = load.cond.wait_for(lambda: load.answered >= KILL_AT, timeout=LOAD_TIMEOUT_S)
            assert reached, f"only {load.answered} answers before the deadline"
            load.up.clear()
            answered_at_kill, in_flight_at_kill = load.answered, load.in_flight
        killed = server.kill9()
        server.start()  # same port, database, state and BentoML home
        restart_s = server.wait_ready()
        load.up.set()

        for t in threads:
            t.join(timeout=max(1.0, load.deadline - time.monotonic() + CLIENT_TIMEOUT_S))
        assert not any(t.is_alive() for t in threads), "client threads still running"

        with httpx.Client(base_url=server.base, timeout=CLIENT_TIMEOUT_S) as http:
            metrics = http.get("/metrics")  # operators' endpoint: no key needed
        assert metrics.status_code == 200
        assert "riskgate_decisions_total" in metrics.text
    finally:
        load.up.set()  # a failed test must not leave client threads waiting for a restart

    ids = [p["transaction_id"] for u in work for p in u.payments]
    assert len(ids) == len(set(ids)) == N_PAYMENTS
    with sqlite3.connect(server.work / "riskgate.db") as conn:
        decisions = dict(rows(conn, "SELECT transaction_id, decision FROM decisions"))
        decision_rows = rows(conn, "SELECT count(*) FROM decisions")[0][0]
        cases = rows(conn, "SELECT transaction_id, id FROM cases")
        keys = dict(
            rows(
                conn, "SELECT key, json_extract(response, '$.transaction_id') FROM idempotency_keys"
            )
        )
        audits = Counter(
            t for (t,) in rows(conn, "SELECT target FROM audit_log WHERE action = 'score'")
        )

    reviews = {t for t, d in decisions.items() if d == "review"}
    case_of = dict(cases)
    losses = sorted(set(ids) - set(decisions)) + sorted(set(ids) - set(load.answers))
    duplicates = (
        (decision_rows - len(decisions))
        + (len(cases) - len(case_of))
        + sum(n - 1 for n in audits.values() if n > 1)
    )
    replayed = sum(1 for a in load.answers.values() if a["replayed"])
    expected_keys = {
        k: p["transaction_id"]
        for u in work
        for k, p in zip(u.server_keys(), u.payments, strict=True)
    }
    mismatched = [
        t
        for t, a in load.answers.items()
        if a["decision"] != decisions.get(t) or a.get("case_id") != case_of.get(t)
    ]
    print(
        f"\nkill -9: payments={N_PAYMENTS} requests={len(work)} attempts={load.attempts} "
        f"retries={sum(load.retries.values())} {dict(load.retries)} replayed={replayed} "
        f"decisions={len(decisions)} reviews={len(reviews)} cases={len(cases)} "
        f"losses={len(losses)} duplicates={duplicates} | killed pids={killed} at "
        f"{answered_at_kill} answered, {in_flight_at_kill} in flight; restart {restart_s:.1f}s"
    )

    assert not load.gave_up, f"requests without an answer: {load.gave_up[:10]}"
    assert not load.refused, f"refused: {load.refused[:10]}"
    assert answered_at_kill < N_PAYMENTS, "the kill must happen while the load runs"
    assert sum(load.retries.values()) > 0, "the kill must have cut some requests"
    assert losses == []
    assert duplicates == 0
    assert decision_rows == N_PAYMENTS
    assert set(decisions) == set(ids)
    assert set(case_of) == reviews, "cases exactly for the review decisions"
    assert reviews, "some payments must have been held for review"
    assert keys == expected_keys, "one idempotency row per key, for its own payment"
    assert set(audits) == set(ids), "a score audit entry for every payment"
    assert set(audits.values()) == {1}, "exactly one score audit entry per payment"
    assert mismatched == [], f"answers differ from the stored decisions: {mismatched[:10]}"
