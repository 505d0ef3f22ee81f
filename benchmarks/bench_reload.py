"""Swapping the model under load: `POST /admin/reload` while /score runs at a fixed rate.

Starts `riskgate serve --workers N` on 127.0.0.1 (a fresh database and online state), sends
/score open loop at `--rate` requests/s (latency from each request's scheduled send time) for a
steady period, then for a swap period in which `POST /admin/reload` is called `--reloads` times
(the worker that gets it swaps at once, the other follows within RISKGATE_CONFIG_POLL_SECONDS),
then a period after. Prints failed requests and p50/p99 per period; the target is 0 failed and
p99 during the swap within 2x of steady state. Stops the server by its PID.

    .venv/bin/python benchmarks/bench_reload.py            # 500 req/s, 20 s steady, 20 s swap
    .venv/bin/python benchmarks/bench_reload.py --quick    # 500 req/s, 6 s + 6 s (a smoke run)
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import loadgen
from common import (
    ADMIN_KEY,
    BACKEND_KEY,
    BIN,
    HOST,
    KEY_SPEC,
    ROOT,
    Server,
    base_env,
    free_port,
    get_model,
    make_frame,
    payment_dicts,
    say,
)

ROWS, DAYS, SEED = 40_000, 30, 5  # the model's training data (small: a swap is what is measured)
MODEL_DIR = ROOT / "benchmarks" / "results" / "model-reload"
OUT = ROOT / "benchmarks" / "results" / "reload.json"


def requests_for(payments: list[dict[str, Any]], port: int, start: int, n: int) -> list[bytes]:
    auth = {"Authorization": f"Bearer {BACKEND_KEY}"}
    out = []
    for i in range(n):
        p = dict(payments[(start + i) % len(payments)])
        p["transaction_id"] = f"rl-{start + i:07d}"  # every request a new payment
        headers = {**auth, "Idempotency-Key": p["transaction_id"]}
        out.append(loadgen.encode_request(HOST, port, "/score", p, headers))
    return out


def reloader(port: int, times: list[float], log: list[dict[str, Any]]) -> None:
    """POST /admin/reload at each offset (seconds from now)."""
    t0 = time.monotonic()
    pause = threading.Event()
    with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=60.0) as c:
        for at in times:
            pause.wait(max(0.0, t0 + at - time.monotonic()))
            started = time.monotonic()
            r = c.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
            log.append(
                {
                    "at_s": round(started - t0, 2),
                    "status": r.status_code,
                    "took_ms": round((time.monotonic() - started) * 1000, 1),
                }
            )


def period(res: loadgen.LoadResult) -> dict[str, Any]:
    s = res.summary()
    failed = s["sent"] - s["ok"]
    return {
        "sent": s["sent"],
        "ok": s["ok"],
        "failed": failed,
        "statuses": s["statuses"],
        "transport_errors": s["transport_errors"],
        "achieved_rps": s["throughput_rps"],
        "p50_ms": s["p50_ms"],
        "p99_ms": s["p99_ms"],
        "max_ms": s["max_ms"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--steady-s", type=float, default=20.0)
    ap.add_argument("--swap-s", type=float, default=20.0)
    ap.add_argument("--reloads", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="6 s steady, 6 s swap, 2 reloads")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.quick:
        args.steady_s, args.swap_s, args.reloads = 6.0, 6.0, 2

    frame = make_frame(ROWS, DAYS, SEED)
    model_dir, how = get_model(frame, MODEL_DIR, {"rows": ROWS, "days": DAYS, "seed": SEED})
    say(f"model: {how} ({model_dir})")
    payments = payment_dicts(frame.iloc[int(len(frame) * 0.8) :])

    work = ROOT / "benchmarks" / "results" / "reload-work"
    work.mkdir(parents=True, exist_ok=True)
    for f in work.glob("riskgate.db*"):
        f.unlink()
    for f in work.glob("state.db*"):
        f.unlink()
    port = free_port()
    env = base_env(work, "reload")
    env.update(
        RISKGATE_API_KEYS=KEY_SPEC,
        RISKGATE_MODEL_DIR=str(model_dir),
        RISKGATE_DB_URL=f"sqlite:///{work / 'riskgate.db'}",
        RISKGATE_STATE_PATH=str(work / "state.db"),
    )
    argv = [str(BIN / "riskgate"), "serve", "--host", HOST, "--port", str(port)]
    argv += ["--workers", str(args.workers)]
    server = Server("reload", argv, env, work / "reload.log")
    out: dict[str, Any] = {"rate": args.rate, "workers": args.workers}
    try:
        ready = loadgen.wait_ready(HOST, port, timeout_s=120.0)
        say(f"server ready after {ready:.1f}s (pid {server.proc.pid})")
        n_steady = int(args.rate * args.steady_s)
        n_swap = int(args.rate * args.swap_s)
        warm = requests_for(payments, port, 0, int(args.rate * 2))
        loadgen.open_loop(HOST, port, warm, rate=args.rate, duration_s=2.0)
        steady = requests_for(payments, port, len(warm), n_steady)
        swap = requests_for(payments, port, len(warm) + n_steady, n_swap)
        say(f"steady: {args.steady_s:.0f} s at {args.rate:.0f} req/s")
        out["steady"] = period(
            loadgen.open_loop(HOST, port, steady, rate=args.rate, duration_s=args.steady_s)
        )
        gap = args.swap_s / (args.reloads + 1)
        offsets = [gap * (i + 1) for i in range(args.reloads)]
        reloads: list[dict[str, Any]] = []
        t = threading.Thread(target=reloader, args=(port, offsets, reloads))
        say(f"swap: {args.swap_s:.0f} s at {args.rate:.0f} req/s, reloads at {offsets}")
        t.start()
        out["swap"] = period(
            loadgen.open_loop(HOST, port, swap, rate=args.rate, duration_s=args.swap_s)
        )
        t.join(timeout=120)
        out["reloads"] = reloads
    finally:
        server.stop()
    s, w = out["steady"], out["swap"]
    out["p99_ratio"] = round(w["p99_ms"] / s["p99_ms"], 2) if s["p99_ms"] else None
    out["failed_total"] = s["failed"] + w["failed"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print("| period | sent | failed | achieved req/s | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in ("steady", "swap"):
        r = out[name]
        print(
            f"| {name} | {r['sent']} | {r['failed']} | {r['achieved_rps']} | {r['p50_ms']} "
            f"| {r['p99_ms']} | {r['max_ms']} |"
        )
    print(f"reloads: {reloads}")
    print(f"p99 swap / steady: {out['p99_ratio']} (target <= 2); failed: {out['failed_total']}")
    return 0 if out["failed_total"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
