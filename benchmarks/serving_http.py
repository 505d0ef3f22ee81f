"""The HTTP servers under load, one at a time: the bare BentoML service and riskgate (open and
closed loop, batches, a cProfile inside the worker, the variants)."""

from __future__ import annotations

import contextlib
import json
import os
import pstats
import signal
import sqlite3
import time
import urllib.request
from pathlib import Path
from typing import Any

import loadgen
from common import (
    BACKEND_KEY,
    BIN,
    HOST,
    KEY_SPEC,
    ROOT,
    Server,
    _signal_worker,
    base_env,
    copy_state,
    free_port,
    gc_pauses,
    machine_busy,
    profile_rows,
    say,
)


def load_suite(
    server: Server,
    port: int,
    warm: list[bytes],
    open_reqs: list[bytes],
    closed_reqs: list[bytes],
    cfg: dict[str, Any],
    gc_log: Path,
) -> dict[str, Any]:
    """Warm-up, fixed rate (open loop), saturation (closed loop), with server CPU per request
    and the worker's gen-2 GC pauses during each run."""
    out: dict[str, Any] = {}
    loadgen.open_loop(HOST, port, warm, rate=100, duration_s=len(warm) / 100)
    for name, fn in (
        (
            "open",
            lambda: loadgen.open_loop(
                HOST,
                port,
                open_reqs,
                rate=cfg["rate"],
                duration_s=cfg["open_s"],
                max_connections=cfg["max_connections"],
            ),
        ),
        (
            "closed",
            lambda: loadgen.closed_loop(
                HOST, port, closed_reqs, clients=cfg["clients"], duration_s=cfg["closed_s"]
            ),
        ),
    ):
        load_before = os.getloadavg()[0]
        wall0 = time.time()
        lock0 = order_lock_totals(port)
        cpu0, own0, all0 = server.cpu_seconds(), time.process_time(), machine_busy()
        res = fn()
        cpu1, own1, all1 = server.cpu_seconds(), time.process_time(), machine_busy()
        s = res.summary()
        order_lock_use(lock0, order_lock_totals(port), s)
        foreign = (all1 - all0) - (cpu1 - cpu0) - (own1 - own0)
        s["other_processes_cpu_cores"] = round(foreign / max(res.elapsed_s, 1e-9), 2)
        s["loadavg_1m_before"] = round(load_before, 2)
        s["server_cpu_ms_per_req"] = round((cpu1 - cpu0) * 1000 / max(res.completed, 1), 3)
        s["server_cpu_util"] = round((cpu1 - cpu0) / max(res.elapsed_s, 1e-9), 3)
        s["loadgen_cpu_ms_per_req"] = round((own1 - own0) * 1000 / max(res.completed, 1), 3)
        s["gc"] = gc_pauses(gc_log, wall0, time.time())
        out[name] = s
        say(
            f"  {server.name} {name}: p50 {s['p50_ms']} ms p99 {s['p99_ms']} ms, "
            f"{s['throughput_rps']} req/s, errors {s['http_errors']} + {s['transport_errors']}, "
            f"gen-2 GC {s['gc'].get('gen2_count')} x max {s['gc'].get('gen2_max_ms')} ms"
        )
    return out


ORDER_LOCK = ("riskgate_order_lock_held_seconds", "riskgate_order_lock_wait_seconds")


def order_lock_totals(port: int) -> dict[str, float]:
    """The order lock's histograms from /metrics (every worker's, summed): `_sum` and `_count`
    of held and wait. {} when the server has none (the bare services)."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith(ORDER_LOCK) and name.endswith(("_sum", "_count")):
            out[name] = float(value)
    return out


def order_lock_use(before: dict[str, float], after: dict[str, float], s: dict[str, Any]) -> None:
    """How busy the one serial section was over a run: held seconds / wall seconds (near 1: a
    second worker cannot add throughput), and held and wait ms per request."""
    if any(f"{n}_sum" not in d for n in ORDER_LOCK for d in (before, after)):
        return
    held, wait = (after[f"{n}_sum"] - before[f"{n}_sum"] for n in ORDER_LOCK)
    done = max(s.get("completed") or s.get("ok") or 0, 1)
    s["order_lock_busy"] = round(held / max(s.get("elapsed_s") or 0.0, 1e-9), 3)
    s["order_lock_held_ms_per_req"] = round(held * 1000 / done, 3)
    s["order_lock_wait_ms_per_req"] = round(wait * 1000 / done, 3)
    n = after[f"{ORDER_LOCK[0]}_count"] - before[f"{ORDER_LOCK[0]}_count"]
    s["order_lock_holds_per_req"] = round(n / done, 3)


def profile_server(server: Server, port: int, reqs: list[bytes], out: Path) -> dict[str, Any]:
    """Inside the worker, over a short closed loop of /score: a stack sampler over every thread
    (1 ms; busy = not parked in epoll, a queue or a lock) and cProfile on the event-loop thread."""
    if _signal_worker(server, signal.SIGUSR1) is None:
        return {"error": f"expected one worker, found {server.workers()}"}
    time.sleep(0.3)
    res = loadgen.closed_loop(HOST, port, reqs, clients=8, duration_s=10.0)
    _signal_worker(server, signal.SIGUSR1)
    samples = Path(str(out) + ".samples.json")
    for _ in range(100):
        if out.exists() and samples.exists():
            break
        time.sleep(0.1)
    else:
        return {"error": "the worker wrote no profile"}
    n = max(res.completed, 1)
    doc = json.loads(samples.read_text())
    per = doc["elapsed_s"] / max(doc["rounds"], 1) * 1e6 / n  # us per request for one sample

    def rows(pairs: list[list[Any]], limit: int) -> list[dict[str, Any]]:
        return [{"function": k, "us_per_request": round(v * per, 1)} for k, v in pairs[:limit]]

    prof = pstats.Stats(str(out))
    return {
        "requests": res.completed,
        "ok": res.ok,
        "throughput_rps": round(res.ok / max(res.elapsed_s, 1e-9), 1),
        "sample_interval_ms": round(doc["elapsed_s"] / max(doc["rounds"], 1) * 1000, 3),
        "busy_us_per_request_by_thread": {k: round(v * per, 1) for k, v in doc["busy"].items()},
        "lock_wait_us_per_request_by_thread": {
            k: round(v * per, 1) for k, v in doc.get("lock_wait", {}).items()
        },
        "sampled_own": rows(doc["own"], 25),
        "sampled_cumulative": rows(doc["cum"], 60),
        "event_loop_cprofile_own": profile_rows(prof, n, key="own_us"),
        "event_loop_cprofile_cumulative": profile_rows(prof, n, key="cum_us", limit=40),
    }


def run_bare(
    model_dir: Path,
    work: Path,
    vectors: list[list[float | None]],
    cfg: dict,
    *,
    tracing: bool = True,
    workers: int = 1,
) -> dict:
    """The bare service; `tracing=False` leaves /predict out of OpenTelemetry (the floor);
    `workers=2` is that service in two worker processes (what a second worker can add)."""
    port = free_port()
    name = ("bare" if tracing else "bare-no-tracing") + (f"-{workers}w" if workers > 1 else "")
    env = base_env(work, name)
    env["BARE_MODEL_DIR"] = str(model_dir)
    env["BARE_WORKERS"] = str(workers)
    if not tracing:
        env["BARE_NO_TRACING"] = "1"
    argv = [str(BIN / "bentoml"), "serve", "bare_service:Bare", "--working-dir",
            str(ROOT / "benchmarks"), "--host", HOST, "--port", str(port)]  # fmt: skip
    reqs = [loadgen.encode_request(HOST, port, "/predict", {"features": v}) for v in vectors]

    def cycle(k: int) -> list[bytes]:
        return [reqs[i % len(reqs)] for i in range(k)]

    started = time.perf_counter()
    server = Server(name, argv, env, work / f"{name}.log")
    try:
        ready = loadgen.wait_ready(HOST, port, timeout_s=cfg["start_timeout_s"])
        say(f"bare service ready on :{port} after {ready:.1f}s")
        out = load_suite(
            server,
            port,
            cycle(cfg["warm"]),
            cycle(int(cfg["rate"] * cfg["open_s"])),
            cycle(cfg["closed_max"]),
            cfg,
            Path(env["BENCH_GC_LOG"]),
        )
    except Exception:
        say(server.tail())
        raise
    finally:
        server.stop()
    out["startup_s"] = round(ready, 2)
    out["total_s"] = round(time.perf_counter() - started, 1)
    return out


# what-if runs after the real one, and their worker processes
VARIANT_WORKERS = {
    "two_workers": 2,
    "two_workers_no_mmap": 2,
    "no_mmap": 1,
    "one_worker": 1,
    "no_hops": 1,
    "tuned": 1,
    "checkpoint_in_commits": 1,
    "inline_scoring": 1,
    "inline_two_workers": 2,
    "thread_groups": 1,
    "thread_groups_two_workers": 2,
}


def run_riskgate(
    model_dir: Path,
    state_src: Path,
    work: Path,
    payments: list[dict[str, Any]],
    cfg: dict,
    *,
    variant: str = "",
) -> dict:
    """`riskgate serve` on a fresh copy of the warm state and an empty database.

    Variants (what-ifs, not the shipped code; open and closed loops only): "no_hops" scores on
    the event loop with the model called inline: RISKGATE_MODEL_DEADLINE_MS=0 and
    anyio.to_thread.run_sync patched to call inline in the worker (no thread hand-offs); "tuned"
    is no_hops plus gc.collect() + gc.freeze() once the worker is ready (start-up objects and
    the replayed state leave the collector's gen-2 scans); "inline_scoring" /
    "inline_two_workers" score each /score on the event loop (RISKGATE_SCORE_GROUP_MAX=1: no
    scoring thread, no group commit), in one and two workers; "thread_groups" /
    "thread_groups_two_workers" score /score groups on one scoring thread
    (RISKGATE_SCORE_GROUPS_ON=thread) instead of the event loop; "no_mmap" /
    "two_workers_no_mmap" read the database without SQLite's memory map
    (RISKGATE_SQLITE_MMAP_MIB=0, as before the sixth round)."""
    name = f"riskgate-{variant}" if variant else "riskgate"
    main = not variant
    d = work / name
    copy_state(state_src, d / "state.db")
    port = free_port()
    env = base_env(work, name)
    env.update(
        RISKGATE_API_KEYS=KEY_SPEC,
        RISKGATE_MODEL_DIR=str(model_dir),
        RISKGATE_DB_URL=f"sqlite:///{d / 'riskgate.db'}",
        RISKGATE_STATE_PATH=str(d / "state.db"),
    )
    if variant in ("no_mmap", "two_workers_no_mmap"):  # what-if: no memory map (as before)
        env["RISKGATE_SQLITE_MMAP_MIB"] = "0"
    if variant == "checkpoint_in_commits":  # what-if: SQLite's own checkpoints, in the commits
        env["RISKGATE_WAL_CHECKPOINT_SECONDS"] = "0"
    if variant in ("inline_scoring", "inline_two_workers"):  # what-if: no scoring thread
        env["RISKGATE_SCORE_GROUP_MAX"] = "1"
    if variant in ("thread_groups", "thread_groups_two_workers"):  # the scoring thread
        env["RISKGATE_SCORE_GROUPS_ON"] = "thread"
    if variant in ("no_hops", "tuned"):
        env["RISKGATE_MODEL_DEADLINE_MS"] = "0"
        env["BENCH_INLINE_THREADS"] = "1"
    argv = [str(BIN / "riskgate"), "serve", "--host", HOST, "--port", str(port)]
    argv += ["--workers", str(cfg["workers"] if main else VARIANT_WORKERS.get(variant, 1))]
    auth = {"Authorization": f"Bearer {BACKEND_KEY}"}

    def score_req(p: dict[str, Any]) -> bytes:
        headers = dict(auth)
        if cfg["idempotency_key"]:
            headers["Idempotency-Key"] = p["transaction_id"]
        return loadgen.encode_request(HOST, port, "/score", p, headers)

    n_warm, n_open = cfg["warm"], int(cfg["rate"] * cfg["open_s"])
    n_batch = cfg["batches"] * cfg["batch_size"] if main else 0
    one = (main and cfg["workers"] == 1) or variant == "one_worker"
    n_prof = cfg["profile_n"] if one else 0  # the profiler reads one worker
    n_closed = min(cfg["closed_max"], len(payments) - n_warm - n_open - n_batch - n_prof)
    if n_closed < 1000:
        raise ValueError("not enough payments in the stream for the riskgate runs")
    i = 0
    chunks = []
    for k in (n_warm, n_open, n_closed):
        chunks.append([score_req(p) for p in payments[i : i + k]])
        i += k
    batches = []
    for b in range(cfg["batches"] if main else 0):
        body = {"payments": payments[i : i + cfg["batch_size"]]}
        i += cfg["batch_size"]
        headers = dict(auth)
        if cfg["idempotency_key"]:
            headers["Idempotency-Key"] = f"bench-batch-{b}"
        batches.append(loadgen.encode_request(HOST, port, "/score_batch", body, headers))
    prof_reqs = [score_req(p) for p in payments[i : i + n_prof]]

    started = time.perf_counter()
    server = Server(name, argv, env, work / f"{name}.log")
    gc_log = Path(env["BENCH_GC_LOG"])
    out: dict[str, Any] = {}
    try:
        ready = loadgen.wait_ready(HOST, port, timeout_s=cfg["start_timeout_s"])
        say(f"{name} ready on :{port} after {ready:.1f}s")
        if variant == "tuned":
            if _signal_worker(server, signal.SIGUSR2) is None:
                raise RuntimeError(f"expected one worker, found {server.workers()}")
            frozen: list[str] = []
            for _ in range(300):  # a full collection of the warm heap: up to seconds when busy
                time.sleep(0.1)
                frozen = [x for x in gc_log.read_text().splitlines() if " freeze " in x]
                if frozen:
                    break
            out["frozen_objects"] = int(frozen[-1].split()[-1]) if frozen else None
        out.update(load_suite(server, port, chunks[0], chunks[1], chunks[2], cfg, gc_log))
        if batches:
            cpu0 = server.cpu_seconds()
            res = loadgen.closed_loop(
                HOST, port, batches, clients=1, duration_s=cfg["batch_s"], timeout_s=60
            )
            cpu1 = server.cpu_seconds()
            s = res.summary()
            size = cfg["batch_size"]
            s["batch_size"] = size
            s["payments_ok"] = res.ok * size
            s["payments_per_s"] = round(res.ok * size / max(res.elapsed_s, 1e-9), 1)
            s["server_cpu_ms_per_payment"] = round(
                (cpu1 - cpu0) * 1000 / max(res.completed * size, 1), 3
            )
            out["batch"] = s
            say(f"  {name} batch: {s['payments_per_s']} payments/s, errors {s['http_errors']}")
        if prof_reqs:
            out["server_profile"] = profile_server(
                server, port, prof_reqs, Path(env["BENCH_PROFILE_OUT"])
            )
    except Exception:
        say(server.tail())
        raise
    finally:
        server.stop()
    with contextlib.closing(sqlite3.connect(d / "riskgate.db")) as db:
        out["decisions_stored"] = db.execute("SELECT count(*) FROM decisions").fetchone()[0]
        out["cases_stored"] = db.execute("SELECT count(*) FROM cases").fetchone()[0]
    out["startup_s"] = round(ready, 2)
    out["total_s"] = round(time.perf_counter() - started, 1)
    return out
