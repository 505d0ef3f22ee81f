"""Helpers the serving benchmark's parts share: paths and keys, timing statistics, the data,
the cached model and the warmed online state, a server process and its GC log, machine load."""

from __future__ import annotations

import contextlib
import cProfile
import json
import math
import os
import pstats
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the project and this folder importable
    sys.path.insert(0, str(ROOT))
if str(ROOT / "benchmarks") not in sys.path:
    sys.path.insert(0, str(ROOT / "benchmarks"))

import loadgen  # noqa: E402

HOST = "127.0.0.1"


BACKEND_KEY = "bench-backend-key-0123456789abcdef"


REVIEWER_KEY = "bench-reviewer-key-0123456789abcdef"


ADMIN_KEY = "bench-admin-key-0123456789abcdef"


KEY_SPEC = f"backend:{BACKEND_KEY},reviewer:{REVIEWER_KEY},admin:{ADMIN_KEY}"


BIN = Path(sys.executable).parent


DEFAULT_OUT = ROOT / "benchmarks" / "results" / "serving.json"


MODEL_CACHE = ROOT / "benchmarks" / "results" / "model"


CONTRACT_DROP = ("is_fraud", "label_time", "scenario")


# Written to a temporary folder put on the servers' PYTHONPATH (sitecustomize), active only in a
# BentoML worker process: logs every gen-2 garbage collection (and any collection over 5 ms) to
# BENCH_GC_LOG; SIGUSR1 starts cProfile on the event-loop thread and the next SIGUSR1 stops it and
# dumps the stats to BENCH_PROFILE_OUT; SIGUSR2 runs gc.collect() + gc.freeze() (a what-if);
# BENCH_INLINE_THREADS=1 makes anyio.to_thread.run_sync call the function inline (a what-if).
WORKER_HOOK = """
import os
if os.environ.get("BENCH_WORKER_HOOK"):
    try:
        _cmd = open("/proc/self/cmdline", "rb").read()
    except OSError:
        _cmd = b""
    if b"_bentoml_impl.worker.service" in _cmd:
        import cProfile
        import gc
        import signal
        import time

        _state = {"prof": None, "t": 0.0}
        _log = open(os.environ["BENCH_GC_LOG"], "a", buffering=1)

        def _gc(phase, info):
            if phase == "start":
                _state["t"] = time.perf_counter()
                return
            ms = (time.perf_counter() - _state["t"]) * 1000
            if info["generation"] == 2 or ms > 5:
                _log.write(f"{time.time():.4f} {info['generation']} {ms:.2f}\\n")

        gc.callbacks.append(_gc)

        import json
        import sys
        import threading

        # Leaf frames of a thread that waits rather than works (event loop in epoll, pool
        # threads on their queues, anyone on a lock or condition).
        _IDLE = {
            ("selectors.py", "select"),
            ("threading.py", "wait"),
            ("threading.py", "_wait_for_tstate_lock"),
            ("thread.py", "_worker"),
            ("queue.py", "get"),
        }

        import linecache

        _waits = {}

        def _waiting(frame):
            # A Python frame blocked in a C call that waits: `with <lock>:`, .acquire(), .result()
            k = (frame.f_code, frame.f_lineno or 0)  # None in a frame not yet started
            w = _waits.get(k)
            if w is None:
                line = linecache.getline(frame.f_code.co_filename, k[1]) if k[1] else ""
                w = _waits[k] = (
                    ("with " in line and "lock" in line.lower())
                    or ".acquire(" in line
                    or ".result(" in line
                )
            return w

        def _sampler(stop, out):
            keys, own, cum, busy, idle, names = {}, {}, {}, {}, {}, {}
            locked = {}
            me = threading.get_ident()
            rounds = 0
            t0 = time.perf_counter()
            while not stop.is_set():
                time.sleep(0.001)
                if rounds % 50 == 0:
                    names = {t.ident: t.name for t in threading.enumerate()}
                rounds += 1
                for tid, frame in sys._current_frames().items():
                    if tid == me:
                        continue
                    code = frame.f_code
                    tname = names.get(tid, str(tid))
                    if (os.path.basename(code.co_filename), code.co_name) in _IDLE:
                        idle[tname] = idle.get(tname, 0) + 1
                        continue
                    if _waiting(frame):
                        locked[tname] = locked.get(tname, 0) + 1
                        continue
                    busy[tname] = busy.get(tname, 0) + 1
                    seen = set()
                    leaf = True
                    while frame is not None:
                        c = frame.f_code
                        k = keys.get(c)
                        if k is None:
                            f = c.co_filename
                            f = f.split("site-packages/", 1)[-1].replace(os.getcwd() + "/", "")
                            k = keys[c] = f"{f}:{c.co_firstlineno}({c.co_name})"
                        if leaf:
                            own[k] = own.get(k, 0) + 1
                            leaf = False
                        if k not in seen:
                            seen.add(k)
                            cum[k] = cum.get(k, 0) + 1
                        frame = frame.f_back
            doc = {
                "rounds": rounds,
                "elapsed_s": time.perf_counter() - t0,
                "busy": busy,
                "idle": idle,
                "lock_wait": locked,
                "own": sorted(own.items(), key=lambda kv: -kv[1])[:60],
                "cum": sorted(cum.items(), key=lambda kv: -kv[1])[:120],
            }
            with open(out + ".tmp", "w") as fh:
                json.dump(doc, fh)
            os.replace(out + ".tmp", out)

        def _toggle(_signum, _frame):
            out = os.environ["BENCH_PROFILE_OUT"]
            if _state["prof"] is None:
                stop = threading.Event()
                th = threading.Thread(target=_sampler, args=(stop, out + ".samples.json"))
                th.daemon = True
                _state["sampler"] = (stop, th)
                th.start()
                _state["prof"] = cProfile.Profile()
                _state["prof"].enable()
            else:
                prof, _state["prof"] = _state["prof"], None
                prof.disable()
                stop, th = _state.pop("sampler")
                stop.set()
                prof.dump_stats(out + ".tmp")
                os.replace(out + ".tmp", out)

        def _freeze(_signum, _frame):
            gc.collect()
            gc.freeze()
            _log.write(f"{time.time():.4f} freeze {gc.get_freeze_count()}\\n")

        signal.signal(signal.SIGUSR1, _toggle)
        signal.signal(signal.SIGUSR2, _freeze)

        if os.environ.get("BENCH_INLINE_THREADS"):  # what-if: no hop to a worker thread
            import anyio.to_thread

            async def _inline(func, *args, **_kwargs):
                return func(*args)

            anyio.to_thread.run_sync = _inline
"""


def gc_pauses(log: Path, t0: float, t1: float) -> dict[str, Any]:
    """Gen-2 collections (and any collection over 5 ms) the worker logged between t0 and t1."""
    gen2: list[float] = []
    slow = 0
    try:
        lines = log.read_text().splitlines()
    except OSError:
        return {"gen2_count": None}
    for line in lines:
        parts = line.split()
        if len(parts) != 3 or parts[1] == "freeze" or not t0 <= float(parts[0]) <= t1:
            continue
        ms = float(parts[2])
        slow += ms > 5
        if parts[1] == "2":
            gen2.append(ms)
    return {
        "gen2_count": len(gen2),
        "gen2_max_ms": round(max(gen2), 1) if gen2 else 0.0,
        "gen2_total_ms": round(sum(gen2), 1),
        "collections_over_5ms": slow,
    }


TARGETS = {
    "inprocess_median_ms": 1.0,
    "explain_ms": 5.0,
    "p50_ratio_max": 1.5,
    "p99_ms_max": 25.0,
    "throughput_ratio_min": 1.0,
    "batch_payments_per_s_min": 2000.0,
}


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ms_stats(seconds: list[float]) -> dict[str, float]:
    """n, median, p95, p99, mean, max in milliseconds."""
    if not seconds:
        return {"n": 0}
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 4),
        "p95_ms": round(loadgen.percentile(ms, 95), 4),
        "p99_ms": round(loadgen.percentile(ms, 99), 4),
        "mean_ms": round(statistics.fmean(ms), 4),
        "max_ms": round(max(ms), 4),
    }


def make_frame(rows: int, days: int, seed: int) -> pd.DataFrame:
    from data.simulator import SimulationConfig, simulate

    frame = simulate(SimulationConfig(rows=rows, days=days, seed=seed))
    return frame.sort_values(["timestamp", "transaction_id"], kind="stable").reset_index(drop=True)


def get_model(
    frame: pd.DataFrame, model_dir: Path, key: dict[str, Any], *, retrain: bool = False
) -> tuple[Path, str]:
    """The cached artifact if it was trained on this data by this code's features, else train."""
    from serving.scoring.holder import ArtifactMismatchError, check_artifact
    from training.model import RiskModel

    stamp = model_dir / "bench_key.json"
    if not retrain and (model_dir / "booster.txt").exists() and stamp.exists():
        try:
            if json.loads(stamp.read_text()) == key:
                check_artifact(RiskModel.load(model_dir))
                return model_dir, "cached"
        except (ArtifactMismatchError, ValueError, KeyError, OSError):
            pass
    from training.config import TrainConfig
    from training.pipeline import train

    say("training the model (cached for later runs) ...")
    result = train(frame, TrainConfig())
    if model_dir.exists():
        shutil.rmtree(model_dir)
    result.model.save(model_dir, compile=True)
    stamp.write_text(json.dumps(key))
    return model_dir, "trained"


def payment_dicts(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Contract rows as the backend sends them: missing fields omitted, timestamps ISO 8601."""
    out = []
    for rec in frame.drop(columns=[c for c in CONTRACT_DROP if c in frame]).to_dict("records"):
        p: dict[str, Any] = {}
        for k, v in rec.items():
            if v is None or v is pd.NaT or v is pd.NA:
                continue
            if isinstance(v, float) and math.isnan(v):
                continue
            if isinstance(v, pd.Timestamp):
                v = v.isoformat()
            elif isinstance(v, np.generic):
                v = v.item()
            p[str(k)] = v
        out.append(p)
    return out


WARM_CARDS = 100_000  # issue 19: the in-process figures hold with this many cards in the state


def warm_state(
    frame: pd.DataFrame, cut: int, path: Path, *, cards: int = WARM_CARDS
) -> dict[str, Any]:
    """SQLite state holding every payment before row `cut` (within the look-back) and the labels
    known by then: what a service that had been running all along would hold.

    Then, if it holds fewer than `cards` cards, filler cards up to that many (one payment each,
    on their own customer, device, IP and merchant, spread over the look-back before the
    stream): the size of a bigger platform's state, which a dict look-up, the process's memory
    and the caches feel, without changing any feature of the stream's payments."""
    from features.online import event_of, prepare
    from features.replay import event_stream
    from features.state import LOOKBACK_NS, PaymentEvent, SQLiteState

    started = time.perf_counter()
    cut_ts = int(frame["timestamp"].iloc[cut].value)
    events = event_stream(frame)
    events = events[events["time"] < cut_ts]
    events = events[(events["kind"] == "label") | (events["row"] < cut)]
    events = events[events["time"] > cut_ts - LOOKBACK_NS - 86_400 * 10**9]
    store = SQLiteState(path, commit_every=50_000)
    lo = int(events.loc[events["kind"] == "payment", "row"].min()) if len(events) else cut
    cols = [c for c in frame.columns if c not in CONTRACT_DROP]
    records = frame[cols].iloc[lo:cut].to_dict("records")
    ids = frame["transaction_id"].to_numpy()
    fraud = frame["is_fraud"].to_numpy(dtype=np.float64, na_value=np.nan)
    payments = labels = 0
    for kind, row, t in zip(events["kind"], events["row"], events["time"], strict=True):
        if kind == "payment":
            store.record_payment(event_of(prepare(records[row - lo])))
            payments += 1
        elif fraud[row] == fraud[row]:
            labels += store.record_label(str(ids[row]), bool(fraud[row] == 1), int(t))
    filler = max(0, cards - store.sizes().get("card", 0))
    rng = np.random.default_rng(len(frame))
    times = np.sort(rng.integers(cut_ts - LOOKBACK_NS // 2, cut_ts - 10**9, size=filler))
    amounts = rng.choice(frame["amount"].to_numpy(dtype=np.float64), size=filler)
    for i, (t, amount) in enumerate(zip(times.tolist(), amounts.tolist(), strict=True)):
        store.record_payment(
            PaymentEvent(
                transaction_id=f"warm_{i:07d}",
                ts=t,
                cents=round(amount * 100.0),
                card_id=f"tok_warm_{i:07d}",
                customer_id=f"cust_warm_{i:07d}",
                merchant_id=f"merch_warm_{i % 5_000:05d}",
                device_id=f"dev_warm_{i:07d}",
                ip_hash=f"ip_warm_{i:07d}",
                email_domain=None,
                merchant_lat=math.nan,
                merchant_lon=math.nan,
            )
        )
    held = store.sizes().get("card", 0)
    store.close()
    return {
        "payments": payments,
        "labels": labels,
        "filler_cards": filler,
        "cards": held,
        "seconds": round(time.perf_counter() - started, 2),
    }


def copy_state(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        s = Path(str(src) + suffix)
        if s.exists():
            shutil.copyfile(s, Path(str(dst) + suffix))


def profile_rows(
    prof: cProfile.Profile | pstats.Stats, calls: int, limit: int = 18, key: str = "own_us"
) -> list[dict[str, Any]]:
    """Top functions by own (or cumulative) time, per scored payment (microseconds)."""
    st = prof if isinstance(prof, pstats.Stats) else pstats.Stats(prof)
    rows = []
    for (file, line, fn), (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        short = file.replace(str(ROOT) + "/", "")
        if "site-packages/" in short:
            short = short.split("site-packages/", 1)[1]
        rows.append(
            {
                "function": f"{short}:{line}({fn})",
                "calls_per_payment": round(nc / calls, 2),
                "own_us": round(tt / calls * 1e6, 1),
                "cum_us": round(ct / calls * 1e6, 1),
            }
        )
    rows.sort(key=lambda r: -r[key])
    return rows[:limit]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Server:
    """A server process in its own session; stopped by its process-group id (its own PID)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self._fh = log.open("wb")
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=ROOT,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def pids(self) -> list[int]:
        """The server's PID and every descendant (BentoML workers run in sessions of their own)."""
        children: dict[int, list[int]] = defaultdict(list)
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                children[ppid].append(int(entry.name))
        out, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(children.get(pid, ()))
        return out

    def workers(self) -> list[int]:
        out = []
        for pid in self.pids():
            with contextlib.suppress(OSError):
                if b"_bentoml_impl.worker.service" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    out.append(pid)
        return out

    def cpu_seconds(self) -> float:
        """user + system CPU of the server process and its live descendants."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / tick

    def stop(self) -> None:
        """SIGTERM the server (its group), then SIGKILL whatever of its tree is left, by PID."""
        tree = self.pids() if self.proc.poll() is None else []
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        for pid in tree[1:]:
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.1)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._fh.close()

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine so far (all processes, from /proc/stat)."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    vals = [int(x) for x in parts]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return (sum(vals[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _signal_worker(server: Server, sig: int) -> int | None:
    workers = server.workers()
    if len(workers) != 1:
        return None
    os.kill(workers[0], sig)
    return workers[0]


def base_env(work: Path, name: str) -> dict[str, str]:
    """Server environment; installs the worker hook (GC log, profiler and freeze signals)."""
    env = dict(os.environ)
    env["BENTOML_HOME"] = str(work / "bentoml")
    env["BENTOML_DO_NOT_TRACK"] = "true"
    env.pop("RISKGATE_WORKERS", None)
    hook = work / "hook"
    hook.mkdir(parents=True, exist_ok=True)
    (hook / "sitecustomize.py").write_text(WORKER_HOOK)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(hook), env.get("PYTHONPATH")) if p)
    env["BENCH_WORKER_HOOK"] = "1"
    env["BENCH_GC_LOG"] = str(work / f"{name}.gc.log")
    env["BENCH_PROFILE_OUT"] = str(work / f"{name}.prof")
    return env
