"""`riskgate serve --workers 2`: two BentoML worker processes, one SQLite database, one SQLite
online-state log, driven over HTTP on 127.0.0.1.

- both workers really serve (process tree; answers come from both processes);
- velocity features agree across workers: a card's payments scored alternately through the two
  workers get the features and probabilities of the same sequence scored through one connection;
- 400 concurrent payments are each decided once and replayed once, and the group commit ran;
- a policy set, or a model reloaded, through one worker is followed by the other;
- one idempotency key sent to both workers at once is decided once;
- a rolling restart (SIGTERM to each worker in turn) under load loses and doubles nothing.

No response header says which worker answered, so the tests ask the kernel: the worker process
that holds the server side of our TCP connection (psutil, by the workers' PIDs) is the one that
accepted it, and every request sent on that keep-alive connection reaches that worker. This also
lets a test pick the worker a payment goes to (open fresh connections until the wanted worker
accepts one), so "payment i through worker i % 2" does not depend on how the kernel happened to
spread the connections.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import Server, free_port, log_tail, same_features
from tests.serving.helpers import (
    ADMIN,
    BACKEND,
    KEY_SPEC,
    REVIEWER,
    card_sequence,
    high_risk,
    low_risk,
)

pytestmark = pytest.mark.slow

WORKERS = 2
READY_TIMEOUT_S = 60.0
STEER_TRIES = 60  # fresh connections tried to reach one given worker (each ~1/2 chance)
VELOCITY_PAYMENTS = 12
CONCURRENT_PAYMENTS = 400
CONCURRENT_CLIENTS = 32
SAME_KEY_SENDERS = 8
BLOCKED_IN_A_ROW = 20
POLICY_DEADLINE_S = 10.0
POLL_S = 0.05
WORKER_MODULE = "_bentoml_impl.worker.service"
VOLATILE = ("replayed", "elapsed_ms")


# --- the server ------------------------------------------------------------------------------


@dataclass
class WorkersServer(Server):
    """`riskgate serve --workers N`, with a look at which worker holds a connection."""

    def worker_processes(self) -> list[psutil.Process]:
        """BentoML's service workers: `python -m _bentoml_impl.worker.service ... --worker-id N`,
        children of the `bentoml serve` process (ours: `riskgate serve` execs it)."""
        out = []
        for p in self.tree()[1:]:
            with contextlib.suppress(psutil.NoSuchProcess):
                if WORKER_MODULE in p.cmdline():
                    out.append(p)
        return out


@dataclass
class Workers:
    server: WorkersServer
    pids: tuple[int, ...]
    db_path: Path

    @property
    def base(self) -> str:
        return self.server.base

    def worker_of(self, client_port: int) -> int:
        """The worker process holding the server side of our connection from `client_port`."""
        for pid in self.pids:
            for c in psutil.Process(pid).net_connections(kind="tcp"):
                if (
                    c.status == psutil.CONN_ESTABLISHED
                    and c.laddr
                    and c.laddr.port == self.server.port
                    and c.raddr
                    and c.raddr.port == client_port
                ):
                    return pid
        raise AssertionError(f"no worker holds the connection from port {client_port}")

    def other(self, pid: int) -> int:
        return next(p for p in self.pids if p != pid)

    def db(self) -> sqlite3.Connection:
        """The service's database, read-only."""
        return sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)


def client_port(response: httpx.Response) -> int:
    return int(response.extensions["network_stream"].get_extra_info("client_addr")[1])


class Conn:
    """One fresh keep-alive connection and the worker process that accepted it."""

    def __init__(self, w: Workers) -> None:
        self.client = httpx.Client(
            base_url=w.base, timeout=30.0, limits=httpx.Limits(max_connections=1)
        )
        try:
            probe = self.client.get("/livez")
            assert probe.status_code == 200, probe.text
            self.port = client_port(probe)
            self.pid = w.worker_of(self.port)
        except BaseException:
            self.client.close()
            raise

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        r = self.client.request(method, path, **kwargs)
        # the same connection, hence the same worker (a reconnect could reach the other one)
        assert client_port(r) == self.port, "the connection was reopened: worker unknown"
        return r

    def close(self) -> None:
        self.client.close()


@contextlib.contextmanager
def connect(w: Workers, pid: int | None = None, *, strict: bool = True) -> Iterator[Conn]:
    """A fresh connection; to worker `pid` if given (fresh connections until it accepts one).
    Which worker accepts is the kernel's choice: `strict=False` settles for the other one
    after STEER_TRIES (the caller then checks the spread it got)."""
    for attempt in range(STEER_TRIES):
        conn = Conn(w)
        if pid is not None and conn.pid != pid and (strict or attempt < STEER_TRIES - 1):
            conn.close()
            continue
        try:
            yield conn
        finally:
            conn.close()
        return
    raise AssertionError(f"worker {pid} accepted none of {STEER_TRIES} fresh connections")


@pytest.fixture(scope="module")
def workers(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    work = tmp_path_factory.mktemp("workers")
    db_path = work / "riskgate.db"
    env = {
        "RISKGATE_API_KEYS": KEY_SPEC,
        "RISKGATE_MODEL_DIR": str(model_dir),
        "RISKGATE_DB_URL": f"sqlite:///{db_path}",
        "RISKGATE_STATE_PATH": str(work / "state.db"),
        "RISKGATE_MODEL_DEADLINE_MS": "5000",
        "RISKGATE_CONFIG_POLL_SECONDS": "0.5",
    }
    server = WorkersServer(free_port(), env, work, work / "server.log", ("--workers", str(WORKERS)))
    server.start()
    try:
        server.wait_ready(READY_TIMEOUT_S)
        procs = server.worker_processes()
        assert len(procs) == WORKERS, (
            f"expected {WORKERS} worker processes, found {[p.cmdline() for p in procs]}\n"
            + log_tail(server.log)
        )
        w = Workers(server, tuple(p.pid for p in procs), db_path)
        # /readyz answered by one worker: wait (bounded) until each worker has answered ready
        ready: set[int] = set()
        deadline = time.monotonic() + READY_TIMEOUT_S
        tick = threading.Event()
        while ready != set(w.pids) and time.monotonic() < deadline:
            conn = Conn(w)
            try:
                if conn.request("GET", "/readyz").status_code == 200:
                    ready.add(conn.pid)
            finally:
                conn.close()
            tick.wait(POLL_S)  # poll interval (the deadline bounds the loop)
        assert ready == set(w.pids), f"workers ready: {ready} of {w.pids}\n" + log_tail(server.log)
        yield w
    finally:
        server.stop()


def new_tag() -> str:
    """Letters only: hex digits could form a Luhn-valid card number with a payment's counter."""
    return uuid.uuid4().hex[:10].translate(str.maketrans("0123456789", "ghijklmnop"))


def stable(body: dict[str, Any]) -> dict[str, Any]:
    """A /score answer without what legitimately differs between a decision and its replay."""
    return {k: v for k, v in body.items() if k not in VOLATILE}


# --- 1. both workers serve -------------------------------------------------------------------


def test_two_worker_processes_both_score_payments(workers):
    w = workers
    root = w.server.tree()[0]
    assert "serve" in root.cmdline()
    procs = w.server.worker_processes()
    assert sorted(p.pid for p in procs) == sorted(w.pids)
    assert len(set(w.pids)) == WORKERS
    for p in procs:
        assert p.ppid() == root.pid, "the workers are children of the `bentoml serve` process"
    ids = sorted(p.cmdline()[p.cmdline().index("--worker-id") + 1] for p in procs)
    assert ids == ["1", "2"]

    answered: Counter[int] = Counter()
    tag = new_tag()
    for i in range(STEER_TRIES):  # fresh connections until both have scored (bounded)
        with connect(w) as conn:
            r = conn.request("POST", "/score", json=low_risk(f"both-{tag}-{i}"), headers=BACKEND)
            assert r.status_code == 200, r.text
            assert r.json()["decision"] == "approve"
            answered[conn.pid] += 1
        if len(answered) == WORKERS:
            break
    print(f"\nfresh connections answered by worker: {dict(answered)}")
    assert set(answered) == set(w.pids)


# --- 2. velocity features across workers -----------------------------------------------------


def scored_with_features(conn: Conn, payment: dict[str, Any], reader: Conn) -> dict[str, Any]:
    r = conn.request("POST", "/score", json=payment, headers=BACKEND)
    assert r.status_code == 200, r.text
    body = r.json()
    features = None
    if body["case_id"] is not None:
        case = reader.request("GET", f"/cases/{body['case_id']}", headers=REVIEWER)
        assert case.status_code == 200, case.text
        features = case.json()["features"]
    return {**body, "features": features, "worker": conn.pid}


def test_velocity_features_agree_across_workers(workers):
    w = workers
    tag = new_tag()
    spread = []
    for i, payment in enumerate(card_sequence(f"alt-{tag}", VELOCITY_PAYMENTS, 5)):
        target = w.pids[i % WORKERS]  # payment i through worker i % 2, on a fresh connection
        with (
            connect(w, target, strict=False) as conn,
            connect(w, w.other(conn.pid), strict=False) as reader,
        ):
            spread.append(scored_with_features(conn, payment, reader))
    with connect(w) as conn:  # the same sequence (another card) through one connection
        single = [
            scored_with_features(conn, p, conn)
            for p in card_sequence(f"one-{tag}", VELOCITY_PAYMENTS, 5)
        ]

    print("\nvelocity via both workers vs one connection: (i, worker, card_count_1h, p, p single)")
    for i, (x, y) in enumerate(zip(spread, single, strict=True)):
        count = x["features"] and x["features"]["card_count_1h"]
        print(f"  {i:2d} {x['worker']} {count} {x['probability']:.6f} {y['probability']:.6f}")
    # the sequence went back and forth between the workers (alternately, unless the kernel
    # kept handing a fresh connection to the same one)
    switches = sum(a["worker"] != b["worker"] for a, b in itertools.pairwise(spread))
    assert switches >= VELOCITY_PAYMENTS // 2, [x["worker"] for x in spread]
    assert len({y["worker"] for y in single}) == 1
    for i, (x, y) in enumerate(zip(spread, single, strict=True)):
        assert x["decision"] == y["decision"] == "review", (i, x, y)
        assert x["features"] is not None, i
        assert y["features"] is not None, i
        # each payment counts every earlier one, whichever worker scored it
        assert x["features"]["card_count_1h"] == y["features"]["card_count_1h"] == i, i
        assert same_features(x["features"], y["features"]), (i, x["features"], y["features"])
        assert x["probability"] == pytest.approx(y["probability"], rel=1e-9, abs=1e-12), i
    # the probabilities depend on the history: a worker missing the other's payments would
    # have scored with other features, hence another probability
    assert len({round(y["probability"], 9) for y in single}) > 2


# --- 3. concurrent scoring: nothing lost, nothing doubled, group commit ----------------------


def group_size_histogram(w: Workers) -> dict[str, float]:
    """riskgate_score_group_size from /metrics (all workers: Prometheus multiprocess)."""
    with httpx.Client(base_url=w.base, timeout=30.0) as c:
        r = c.get("/metrics")
    assert r.status_code == 200, r.text
    for family in text_string_to_metric_families(r.text):
        if family.name == "riskgate_score_group_size":
            assert family.type == "histogram"
            out = {}
            for s in family.samples:
                if s.name.endswith("_bucket"):
                    out[f"le={s.labels['le']}"] = s.value
                else:
                    out[s.name.rsplit("_", 1)[-1]] = s.value
            return out
    raise AssertionError("riskgate_score_group_size is not in /metrics")


def test_concurrent_payments_are_decided_once_and_replayed_once(workers):
    w = workers
    tag = new_tag()
    payments = [
        (high_risk if i % 8 == 0 else low_risk)(f"many-{tag}-{i:03d}")
        for i in range(CONCURRENT_PAYMENTS)
    ]
    ids = [p["transaction_id"] for p in payments]
    shares = [payments[t::CONCURRENT_CLIENTS] for t in range(CONCURRENT_CLIENTS)]
    before = group_size_histogram(w)
    start = threading.Barrier(CONCURRENT_CLIENTS)
    again = threading.Barrier(CONCURRENT_CLIENTS)

    Answers = list[tuple[str, int, dict[str, Any]]]

    def client(t: int) -> tuple[int, Answers, Answers]:
        """Thread t: its share at once with the others, then (all again) the next thread's."""
        with httpx.Client(base_url=w.base, timeout=60.0) as c:

            def send(p: dict[str, Any]) -> tuple[str, int, dict[str, Any]]:
                key = {**BACKEND, "Idempotency-Key": p["transaction_id"]}
                r = c.post("/score", json=p, headers=key)
                return p["transaction_id"], r.status_code, r.json()

            start.wait(timeout=60)
            first = [send(p) for p in shares[t]]
            pid = w.worker_of(client_port(c.get("/livez")))  # this client's connection
            again.wait(timeout=60)
            # each payment again, from another client (another connection, maybe worker)
            second = [send(p) for p in shares[(t + 1) % CONCURRENT_CLIENTS]]
        return pid, first, second

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=CONCURRENT_CLIENTS) as pool:
        results = list(pool.map(client, range(CONCURRENT_CLIENTS)))
    wall = time.perf_counter() - started
    after = group_size_histogram(w)
    first = {txn: (status, body) for _, out, _ in results for txn, status, body in out}
    second = {txn: (status, body) for _, _, out in results for txn, status, body in out}
    per_worker = Counter(pid for pid, _, _ in results)
    delta = {k: after[k] - before.get(k, 0.0) for k in after}
    print(
        f"\n{CONCURRENT_PAYMENTS} payments x 2 from {CONCURRENT_CLIENTS} clients in {wall:.1f} s;"
        f" clients per worker {dict(per_worker)}; group sizes: {delta}"
    )

    assert sorted(first) == sorted(second) == sorted(ids)
    assert set(per_worker) == set(w.pids), "both workers took part"
    assert Counter(s for s, _ in first.values()) == {200: CONCURRENT_PAYMENTS}
    assert Counter(s for s, _ in second.values()) == {200: CONCURRENT_PAYMENTS}
    for txn in ids:
        (_, a), (_, b) = first[txn], second[txn]
        assert a["replayed"] is False, a
        assert b["replayed"] is True, b
        assert b["decision"] == a["decision"], (a, b)
        assert stable(b) == stable(a)
    decided = Counter(body["decision"] for _, body in first.values())
    assert decided == {"review": CONCURRENT_PAYMENTS // 8, "approve": CONCURRENT_PAYMENTS * 7 // 8}

    like = f"txn-many-{tag}-%"
    with contextlib.closing(w.db()) as db:
        rows = db.execute(
            "SELECT transaction_id, decision FROM decisions WHERE transaction_id LIKE ?", (like,)
        ).fetchall()
        audits = db.execute(
            "SELECT target FROM audit_log WHERE action = 'score' AND target LIKE ?", (like,)
        ).fetchall()
        keys = db.execute("SELECT key FROM idempotency_keys WHERE key LIKE ?", (like,)).fetchall()
        cases = db.execute(
            "SELECT transaction_id FROM cases WHERE transaction_id LIKE ?", (like,)
        ).fetchall()
    assert len(rows) == CONCURRENT_PAYMENTS
    assert Counter(txn for txn, _ in rows) == dict.fromkeys(ids, 1)
    assert {txn: d for txn, d in rows} == {txn: first[txn][1]["decision"] for txn in ids}
    assert Counter(t for (t,) in audits) == dict.fromkeys(ids, 1)
    assert Counter(k for (k,) in keys) == dict.fromkeys(ids, 1)
    assert sorted(t for (t,) in cases) == sorted(ids[::8])

    # the group commit ran: groups were observed, at least one of more than one request
    assert delta["count"] > 0
    assert delta["count"] - delta["le=1.0"] > 0
    assert delta["sum"] <= 2 * CONCURRENT_PAYMENTS


# --- 4. policy and reload follow across workers ----------------------------------------------


def is_blocked(body: dict[str, Any]) -> bool:
    return (
        body["decision"] == "decline"
        and body["decision_source"] == "rules"
        and body["rules"] == ["block list: card_id"]
        and body["status"] == "declined"
    )


def test_policy_and_reload_made_through_one_worker_reach_the_other(workers):
    w = workers
    tag = new_tag()
    card = f"card-block-{tag}"

    def payment(i: int) -> dict[str, Any]:
        return {**low_risk(f"block-{tag}-{i}"), "card_id": card}

    with connect(w) as conn:  # not blocked yet, on either worker
        before = conn.request("POST", "/score", json=payment(0), headers=BACKEND)
        assert before.status_code == 200, before.text
        assert before.json()["decision"] == "approve"
    try:
        with connect(w) as conn:
            put = conn.request(
                "PUT",
                "/admin/policy?force=true",
                json={"block": {"card_id": [card]}},
                headers=ADMIN,
            )
            put_by = conn.pid
        assert put.status_code == 200, put.text
        assert put.json()["block"] == {"card_id": [card]}

        streak: list[int] = []  # workers of the current run of blocked answers
        answers: list[tuple[int, bool]] = []
        deadline = time.monotonic() + POLICY_DEADLINE_S
        tick = threading.Event()
        for i in range(1, 1000):  # bounded in count and by the deadline
            if time.monotonic() > deadline:
                break
            with connect(w) as conn:
                r = conn.request("POST", "/score", json=payment(i), headers=BACKEND)
            assert r.status_code == 200, r.text
            blocked = is_blocked(r.json())
            answers.append((conn.pid, blocked))
            streak = [*streak, conn.pid] if blocked else []
            if len(streak) >= BLOCKED_IN_A_ROW and set(streak) == set(w.pids):
                break
            tick.wait(POLL_S)  # poll interval
        print(
            f"\npolicy set through worker {put_by}: {len(answers)} answers, "
            f"not blocked: {Counter(pid for pid, b in answers if not b)}, "
            f"last streak per worker: {Counter(streak)}"
        )
        assert len(streak) >= BLOCKED_IN_A_ROW, answers
        assert set(streak) == set(w.pids), "both workers must block the card"
        assert w.other(put_by) in streak
    finally:
        with connect(w) as conn:
            reset = conn.request("PUT", "/admin/policy?force=true", json={}, headers=ADMIN)
        assert reset.status_code == 200, reset.text

    with connect(w) as conn:
        reload = conn.request("POST", "/admin/reload", headers=ADMIN)
    assert reload.status_code == 200, reload.text
    assert reload.json()["model_version"] == "local:artifact"
    with contextlib.closing(w.db()) as db:
        row = db.execute("SELECT value FROM settings WHERE name = 'model'").fetchone()
    assert row is not None, "the reload is recorded for the other workers"
    assert json.loads(row[0])["generation"] >= 1
    for pid in w.pids:  # scoring still works on both workers after the reload
        with connect(w, pid) as conn:
            r = conn.request(
                "POST", "/score", json=low_risk(f"reload-{tag}-{pid}"), headers=BACKEND
            )
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["decision"], body["decision_source"]) == ("approve", "model"), body
        assert body["model_version"] == "local:artifact"


# --- 5. one idempotency key on both workers at once ------------------------------------------


def test_one_idempotency_key_sent_to_both_workers_at_once_is_decided_once(workers):
    w = workers
    tag = new_tag()
    payment = high_risk(f"same-{tag}")
    key = f"same-key-{tag}"
    headers = {**BACKEND, "Idempotency-Key": key}
    barrier = threading.Barrier(SAME_KEY_SENDERS)

    def send(i: int) -> tuple[int, int, dict[str, Any]]:
        with connect(w, w.pids[i % WORKERS]) as conn:  # half the senders on each worker
            barrier.wait(timeout=30)
            r = conn.request("POST", "/score", json=payment, headers=headers)
        return conn.pid, r.status_code, r.json()

    with ThreadPoolExecutor(max_workers=SAME_KEY_SENDERS) as pool:
        results = list(pool.map(send, range(SAME_KEY_SENDERS)))
    print(f"\nsame key: {[(pid, s, b.get('replayed')) for pid, s, b in results]}")

    assert Counter(pid for pid, _, _ in results) == dict.fromkeys(w.pids, SAME_KEY_SENDERS // 2)
    assert [s for _, s, _ in results] == [200] * SAME_KEY_SENDERS, results
    assert [b["replayed"] for _, _, b in results].count(False) == 1
    bodies = [stable(b) for _, _, b in results]
    assert all(b == bodies[0] for b in bodies)
    assert bodies[0]["decision"] == "review"
    txn = payment["transaction_id"]
    counted = (
        ("decisions", "transaction_id", txn),
        ("cases", "transaction_id", txn),
        ("idempotency_keys", "key", key),
        ("audit_log", "target", txn),
    )
    with contextlib.closing(w.db()) as db:
        n = {
            table: db.execute(f"SELECT count(*) FROM {table} WHERE {col} = ?", (v,)).fetchone()[0]
            for table, col, v in counted
        }
    assert n == {"decisions": 1, "cases": 1, "idempotency_keys": 1, "audit_log": 1}

    for pid in w.pids:  # the key with another body: refused on both workers
        with connect(w, pid) as conn:
            other = conn.request("POST", "/score", json=low_risk(f"other-{tag}"), headers=headers)
        assert other.status_code == 422, other.text


# --- 6. one card on both workers at once: one total order ------------------------------------


def test_one_cards_concurrent_payments_on_both_workers_are_counted_in_one_order(workers):
    """The online-state log's file lock orders scoring across the worker processes: payments of
    one card sent to both workers at once (same timestamp) each count exactly the ones scored
    before them, so their card counts are 0..n-1, each once (no two computed side by side)."""
    w = workers
    tag = new_tag()
    n = 16
    payments = [
        {**high_risk(f"order-{tag}"), "transaction_id": f"txn-order-{tag}-{i}"} for i in range(n)
    ]
    barrier = threading.Barrier(n)

    def send(i: int) -> dict[str, Any]:
        target = w.pids[i % WORKERS]
        with connect(w, target) as conn, connect(w, w.other(target)) as reader:
            barrier.wait(timeout=30)
            return scored_with_features(conn, payments[i], reader)

    with ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(send, range(n)))
    counts = sorted(r["features"]["card_count_1h"] for r in results if r["features"] is not None)
    print(f"\none card on both workers at once: card_count_1h {counts}")

    assert Counter(r["worker"] for r in results) == dict.fromkeys(w.pids, n // WORKERS)
    assert all(r["decision"] == "review" for r in results), results
    assert counts == [float(i) for i in range(n)]
    # afterwards, each worker sees all of them (and the follow-up before it)
    later = {**payments[0], "timestamp": "2024-03-06T03:01:00Z"}
    for j, pid in enumerate(w.pids):
        with connect(w, pid) as conn:
            body = scored_with_features(
                conn, {**later, "transaction_id": f"txn-order-{tag}-next{j}"}, conn
            )
        assert body["features"] is not None
        assert body["features"]["card_count_1h"] == n + j


# --- 7. a rolling restart under load (last: it replaces both workers) -------------------------
ROLLING_PAYMENTS = 600
ROLLING_THREADS = 6
ROLLING_ATTEMPTS = 200
ROLLING_TIMEOUT_S = 180.0


class RollingLoad:
    """Client threads sending every payment until it is answered 200, with the same
    Idempotency-Key on every try (a payment backend retrying a 503 or a dropped connection)."""

    def __init__(self, base: str, tag: str) -> None:
        self.base = base
        self.payments = [
            {**(high_risk if n % 7 == 0 else low_risk)(f"roll-{tag}-{n}")}
            for n in range(ROLLING_PAYMENTS)
        ]
        self.todo = iter(range(ROLLING_PAYMENTS))
        self.answers: dict[str, dict[str, Any]] = {}
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.refusals: list[tuple[float, str | None]] = []  # (monotonic time, Retry-After)
        self.gave_up: list[str] = []
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._run, daemon=True) for _ in range(ROLLING_THREADS)
        ]
        self._pause = threading.Event()  # never set: the pause between retries

    def _next(self) -> dict[str, Any] | None:
        with self.lock:
            n = next(self.todo, None)
        return None if n is None else self.payments[n]

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=30.0) as client:
            while (p := self._next()) is not None:
                headers = {**BACKEND, "Idempotency-Key": f"key-{p['transaction_id']}"}
                for _ in range(ROLLING_ATTEMPTS):
                    try:
                        r = client.post("/score", json=p, headers=headers)
                    except httpx.TransportError as exc:
                        with self.lock:
                            self.errors[type(exc).__name__] += 1
                        self._pause.wait(POLL_S)
                        continue
                    with self.lock:
                        self.statuses[r.status_code] += 1
                        if r.status_code == 503:
                            self.refusals.append((time.monotonic(), r.headers.get("retry-after")))
                        if r.status_code == 200:
                            self.answers[p["transaction_id"]] = r.json()
                    if r.status_code == 200:
                        break
                    self._pause.wait(POLL_S)
                else:
                    with self.lock:
                        self.gave_up.append(p["transaction_id"])

    def wait_answered(self, count: int, deadline: float) -> None:
        while len(self.answers) < count and time.monotonic() < deadline:
            self._pause.wait(POLL_S)


def serving_worker(w: Workers, pid: int, deadline: float) -> None:
    """Until worker `pid` itself answers /readyz 200 (fresh connections steered to it)."""
    while time.monotonic() < deadline:
        with contextlib.suppress(AssertionError, httpx.TransportError), connect(w, pid) as conn:
            if conn.request("GET", "/readyz").status_code == 200:
                return
        threading.Event().wait(POLL_S)
    raise AssertionError(f"replacement worker {pid} never served\n" + log_tail(w.server.log))


def test_rolling_restart_under_load_loses_and_doubles_nothing(workers):
    """SIGTERM each worker in turn under load: it drains (in-flight requests finish and commit,
    later ones get 503 + Retry-After), exits, and BentoML's process manager starts a fresh
    one, which serves before the next worker is stopped. Every payment then has exactly one
    decision, equal to its client's answer, and a 503 came only after a drain began."""
    w = workers
    original = tuple(w.pids)
    load = RollingLoad(w.base, new_tag())
    deadline = time.monotonic() + ROLLING_TIMEOUT_S
    for t in load.threads:
        t.start()
    first_drain: float | None = None
    for k, old in enumerate(original):
        load.wait_answered(ROLLING_PAYMENTS // 4 * (k + 1), deadline)  # under load at each stop
        first_drain = time.monotonic() if first_drain is None else first_drain
        psutil.Process(old).send_signal(signal.SIGTERM)
        psutil.Process(old).wait(timeout=60)  # drained and exited by itself
        fresh: set[int] = set()
        while not fresh and time.monotonic() < deadline:
            fresh = {p.pid for p in w.server.worker_processes()} - set(w.pids)
            load._pause.wait(POLL_S)
        assert len(fresh) == 1, f"no replacement for worker {old}\n" + log_tail(w.server.log)
        w.pids = tuple(p for p in w.pids if p != old) + tuple(fresh)
        serving_worker(w, fresh.pop(), deadline)
    for t in load.threads:
        t.join(timeout=max(1.0, deadline - time.monotonic()))
    print(f"\nrolling restart: statuses {dict(load.statuses)}, dropped {dict(load.errors)}")

    assert not any(t.is_alive() for t in load.threads), "the load did not finish in time"
    assert set(w.pids).isdisjoint(original)  # both workers were replaced
    assert load.gave_up == []
    assert len(load.answers) == ROLLING_PAYMENTS
    assert set(load.statuses) <= {200, 503}, load.statuses  # no 5xx but the drain's 503
    assert all(retry == "1" for _, retry in load.refusals)
    assert first_drain is not None
    assert all(at >= first_drain for at, _ in load.refusals)  # 503 only once a drain began
    ids = [p["transaction_id"] for p in load.payments]
    with contextlib.closing(w.db()) as conn:
        marks = ",".join("?" * len(ids))
        rows = conn.execute(
            f"SELECT transaction_id, decision FROM decisions WHERE transaction_id IN ({marks})",
            ids,
        ).fetchall()
        cases = conn.execute(
            f"SELECT COUNT(*) FROM cases WHERE transaction_id IN ({marks})", ids
        ).fetchone()[0]
    stored = dict(rows)
    assert len(rows) == len(stored) == ROLLING_PAYMENTS  # nothing lost, nothing doubled
    assert {t: a["decision"] for t, a in load.answers.items()} == stored
    assert cases == sum(1 for a in load.answers.values() if a["decision"] == "review")
