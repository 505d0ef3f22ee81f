"""What a /score_batch call costs inside the process: the body parsed and validated as BentoML
does it (`BatchIn.model_validate_json`), `Scorer.score_many`, the JSON answer; per stage and,
with `--profile`, a cProfile of score_many.

    python benchmarks/bench_batch.py [--batches 8] [--size 500] [--profile]

The data, the cached model and the warmed state are bench_serving's (benchmarks/results/model;
the stream and the state are cached in --cache). Not a test. CPU time (process_time) is
reported beside wall time: the machine is shared.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pickle
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    BACKEND_KEY,
    KEY_SPEC,
    MODEL_CACHE,
    copy_state,
    get_model,
    make_frame,
    payment_dicts,
    say,
    warm_state,
)


def data(cache: Path, n: int) -> tuple[Path, list[dict[str, Any]]]:
    """(warm state file, the stream after it), as bench_serving builds them; cached."""
    stream_file, state = cache / "stream.pkl", cache / "state.db"
    if not stream_file.exists() or not state.exists():
        cache.mkdir(parents=True, exist_ok=True)
        say("simulating 200,000 payments over 90 days ...")
        frame = make_frame(200_000, 90, 7)
        get_model(frame, MODEL_CACHE, {"rows": 200_000, "days": 90, "seed": 7})
        cut = len(frame) - 30_000
        say("warming the online state ...")
        warm_state(frame, cut, state)
        stream_file.write_bytes(pickle.dumps(payment_dicts(frame.iloc[cut:])))
    stream = pickle.loads(stream_file.read_bytes())
    if len(stream) < n:
        raise ValueError(f"needs {n} payments, the cache has {len(stream)}")
    return state, stream


def _wrap_stages(rt: Any, times: dict[str, list[float]]) -> None:
    """Time the stages of score_many by wrapping them (instance and module attributes)."""
    import serving.scoring.fresh as fresh_mod
    import serving.scoring.scorer as scorer_mod

    def wrap(obj: Any, name: str, label: str) -> None:
        orig = getattr(obj, name, None)
        if orig is None:
            return
        times[label] = []

        def timed(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return orig(*a, **k)
            finally:
                times[label].append(time.perf_counter() - t)

        setattr(obj, name, timed)

    online = rt.holder.current.online
    wrap(scorer_mod, "payment_digest", "body hash")
    wrap(rt.scorer.replays, "known", "replays.known")
    wrap(fresh_mod, "prepare", "prepare")
    wrap(online, "compute", "online compute")
    wrap(online, "update", "online update")
    wrap(rt.scorer.fresh, "_predict_many", "model")
    wrap(rt.scorer.fresh, "finish", "finish")
    wrap(rt.scorer.fresh, "finish_many", "finish_many")
    wrap(rt.scorer.writer, "write", "writer.write")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--size", type=int, default=500)
    ap.add_argument("--profile", action="store_true", help="cProfile the last batches")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "rg-bench-batch")
    ap.add_argument("--no-key", action="store_true", help="no Idempotency-Key")
    ap.add_argument("--stages", action="store_true", help="time the stages (wrappers)")
    args = ap.parse_args(argv)

    from starlette.responses import JSONResponse

    from serving.core.auth import KeyRing
    from serving.core.schemas import BatchIn
    from serving.core.settings import Settings
    from serving.http.runtime import build

    warm = 1
    n_prof = 2 if args.profile else 0
    state, stream = data(args.cache, (warm + args.batches + n_prof) * args.size)
    work = Path(tempfile.mkdtemp(prefix="rg-batch-"))
    copy_state(state, work / "state.db")
    settings = Settings(
        api_keys=KEY_SPEC,
        db_url=f"sqlite:///{work / 'riskgate.db'}",
        state_path=str(work / "state.db"),
        model_dir=str(MODEL_CACHE),
    )
    rt = build(settings, KeyRing.parse(KEY_SPEC))
    who = rt.keys.authenticate(f"Bearer {BACKEND_KEY}")
    bodies = [
        json.dumps({"payments": stream[b * args.size : (b + 1) * args.size]}).encode()
        for b in range(warm + args.batches + n_prof)
    ]
    stages: dict[str, list[float]] = {"validate": [], "score_many": [], "encode": []}
    wall: list[float] = []
    cpu: list[float] = []
    decisions: dict[str, int] = {}

    def one(b: int) -> None:
        c0, t0 = time.process_time(), time.perf_counter()
        batch = BatchIn.model_validate_json(bodies[b])
        t1 = time.perf_counter()
        key = None if args.no_key else f"bench-batch-{b}"
        status, out = rt.scorer.score_many(batch.payments, who, key)
        t2 = time.perf_counter()
        assert status == 200, out
        assert isinstance(out, list)
        JSONResponse({"results": out, "elapsed_ms": 0.0})
        t3 = time.perf_counter()
        if b >= warm:
            stages["validate"].append(t1 - t0)
            stages["score_many"].append(t2 - t1)
            stages["encode"].append(t3 - t2)
            wall.append(t3 - t0)
            cpu.append(time.process_time() - c0)
            for r in out:
                decisions[r["decision"]] = decisions.get(r["decision"], 0) + 1

    if args.stages:
        _wrap_stages(rt, stages)
    try:
        for b in range(warm + args.batches):
            one(b)
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            for b in range(warm + args.batches, warm + args.batches + n_prof):
                one(b)
            prof.disable()
    finally:
        rt.close()
    n = args.size
    med = statistics.median
    print(f"batches of {n}: {len(wall)} timed, decisions {decisions}")
    for k, v in stages.items():
        if k in ("validate", "score_many", "encode"):
            batch_ms = med(v) * 1000
            print(f"  {k:12} {batch_ms / n:8.4f} ms/payment (median batch {batch_ms:.1f} ms)")
        else:  # wrapped stages: every call, warm-up batch included
            print(f"    {k:24} {sum(v) * 1000 / (n * (warm + args.batches)):8.4f} ms/payment")
    print(f"  {'total':12} {med(wall) * 1000 / n:8.4f} ms/payment, cpu {med(cpu) * 1000 / n:.4f}")
    print(f"payments/s (median batch, wall): {n / med(wall):,.0f}; cpu: {n / med(cpu):,.0f}")
    print(f"payments/s (best batch, wall): {n / min(wall):,.0f}; cpu: {n / min(cpu):,.0f}")
    if args.profile:
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
        pstats.Stats(prof).sort_stats("cumulative").print_callees(
            "write|finish|score_many|driver.py|sqltypes.py:2966"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
