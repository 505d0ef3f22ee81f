"""Feature benchmark: batch throughput against textbook pandas, and online latency.

    python benchmarks/bench_features.py [--rows 1000000] [--online-cards 100000]

1. Simulated payments (`data.simulator`; `tests.features.helpers.random_frame` with realistic
   cardinality if the simulator is missing).
2. Batch: every feature, and the card count/sum features alone (the naive baseline's work).
3. Naive: per-card time-based `groupby().rolling()` count and mean over 1h/24h/7d/30d
   (`benchmarks/naive_pandas.py`), the time ratios, and how often its values agree.
4. Peak memory of the batch run.
5. Online: a `MemoryState` warmed with a simulated history holding >= 100,000 cards, then
   `compute()` (and, separately, compute + update) timed per payment for 10,000 new payments.

`run(rows) -> dict` returns every number printed, for a later benchmark suite. Not a test.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import math
import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the project and this folder importable
    sys.path.insert(0, str(ROOT))
if str(ROOT / "benchmarks") not in sys.path:
    sys.path.insert(0, str(ROOT / "benchmarks"))

import naive_pandas  # noqa: E402

from features.batch import compute  # noqa: E402
from features.online import OnlineFeatures, event_of, prepare  # noqa: E402
from features.registry import MAX_LOOKBACK, available, select  # noqa: E402
from features.replay import event_stream  # noqa: E402
from features.state import MemoryState  # noqa: E402

TEXTBOOK_ROWS = 100_000
EQUIVALENT = tuple(f"card_{agg}_{w}" for agg in ("count", "sum") for w in naive_pandas.WINDOWS)
CARDS_PER_ROW = 1.3 / 40  # the simulator: rows // 40 customers, 1.3 cards each on average


# --- data ------------------------------------------------------------------------------------


def make_data(rows: int, *, days: int = 90, seed: int = 7) -> tuple[pd.DataFrame, str]:
    """A validated contract frame of `rows` payments and a description of where it came from."""
    try:
        from data.simulator import SimulationConfig, simulate
    except ImportError:
        from tests.features.helpers import random_frame

        frame = random_frame(
            seed,
            rows,
            n_cards=max(rows // 40, 1),
            n_merchants=max(rows // 400, 1),
            span_days=float(days),
            tie_share=0.01,
        )
        return frame, f"tests.features.helpers.random_frame (seed {seed}, {days} days)"
    frame = simulate(SimulationConfig(rows=rows, days=days, seed=seed))
    return frame, f"data.simulator (seed {seed}, {days} days)"


# --- measuring -------------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def peak_rss(fn: Callable[[], Any], every_s: float = 0.002) -> tuple[float, float] | None:
    """(peak RSS during fn, RSS before fn) in MB, sampled from /proc; None where unavailable."""
    gc.collect()
    before = _rss_bytes()
    if before is None:
        return None
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_bytes() or 0)
            done.wait(every_s)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    peak = max(peak, _rss_bytes() or 0)
    return peak / 2**20, before / 2**20


def latency_summary(ns: np.ndarray) -> dict[str, float]:
    us = np.asarray(ns, dtype=np.float64) / 1_000.0
    return {
        "median_us": float(np.median(us)),
        "p95_us": float(np.percentile(us, 95)),
        "p99_us": float(np.percentile(us, 99)),
        "max_us": float(us.max()),
    }


# --- online ----------------------------------------------------------------------------------


def _text(frame: pd.DataFrame, name: str) -> list[str | None]:
    s = frame[name]
    return s.astype(object).where(s.notna(), None).tolist()


def warm_state(frame: pd.DataFrame, held_out: int) -> tuple[MemoryState, np.ndarray, float]:
    """Feed all but the last `held_out` payments (and labels known by then) into a MemoryState.

    Payments go straight to the state (what `update` records); nothing is computed. Returns
    the state, the held-out rows in time order and the seconds taken.
    """
    store = MemoryState()
    events = event_stream(frame)
    kinds = events["kind"].to_numpy()
    rows = events["row"].to_numpy()
    times = events["time"].to_numpy()
    payment_rows = rows[kinds == "payment"]
    first_held_out = len(payment_rows) - held_out
    stop_row = payment_rows[first_held_out]
    stop = int(np.flatnonzero((kinds == "payment") & (rows == stop_row))[0])

    ids = frame["transaction_id"].astype(str).tolist()
    ts = frame["timestamp"].to_numpy(dtype="datetime64[ns]").view(np.int64).tolist()
    amount = frame["amount"].to_numpy(dtype=np.float64).tolist()
    cols = {c: _text(frame, c) for c in ("card_id", "customer_id", "merchant_id")}
    for c in ("device_id", "ip_hash", "email_domain"):
        cols[c] = _text(frame, c) if c in frame.columns else [None] * len(frame)
    lat = frame.get("merchant_lat", pd.Series(np.nan, index=frame.index)).tolist()
    lon = frame.get("merchant_lon", pd.Series(np.nan, index=frame.index)).tolist()
    fraud = (
        frame["is_fraud"].to_numpy(dtype=np.float64, na_value=np.nan) == 1
        if "is_fraud" in frame.columns
        else np.zeros(len(frame), dtype=bool)
    ).tolist()

    started = time.perf_counter()
    for k in range(stop):
        r = rows[k]
        if kinds[k] == "payment":
            p = {
                "transaction_id": ids[r],
                "timestamp": ts[r],
                "amount": amount[r],
                "merchant_lat": lat[r],
                "merchant_lon": lon[r],
                **{c: v[r] for c, v in cols.items()},
            }
            store.record_payment(event_of(p))
        else:
            store.record_label(ids[r], fraud[r], int(times[k]))
    return store, payment_rows[first_held_out:], time.perf_counter() - started


def online_latency(frame: pd.DataFrame, held_out: int) -> dict[str, Any]:
    """Warm a MemoryState on `frame` minus its last `held_out` payments, then time those."""
    store, order, warm_s = warm_state(frame, held_out)
    records: list[dict[str, Any]] = frame.iloc[order].to_dict("records")  # type: ignore[assignment]
    online = OnlineFeatures(store, available(frame.columns).features)
    # a few untimed calls so that first-call costs do not land in the percentiles
    for r in records[:20]:
        online.compute(prepare(r))

    prep_ns = np.empty(len(records), dtype=np.int64)
    compute_ns = np.empty(len(records), dtype=np.int64)
    both_ns = np.empty(len(records), dtype=np.int64)
    cpu_ns = np.empty(len(records), dtype=np.int64)  # this thread's CPU time in compute()
    gc_runs = [0, 0, 0]
    gc_ns = [0]
    gc_started = [0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter_ns()
        else:
            gc_runs[info["generation"]] += 1
            gc_ns[0] += time.perf_counter_ns() - gc_started[0]

    clock, cpu = time.perf_counter_ns, time.thread_time_ns
    gc.callbacks.append(on_gc)
    try:
        for i, r in enumerate(records):
            t0 = clock()
            p = prepare(r)
            t1 = clock()
            c1 = cpu()
            online.compute(p)
            c2 = cpu()
            t2 = clock()
            online.update(p)
            t3 = clock()
            prep_ns[i], compute_ns[i], both_ns[i] = t1 - t0, t2 - t1, t3 - t1
            cpu_ns[i] = c2 - c1
    finally:
        gc.callbacks.remove(on_gc)
    return {
        "warm_payments": len(frame) - len(order),
        "warm_seconds": warm_s,
        "cards_held": store.sizes().get("card", 0),
        "entities_held": sum(store.sizes().values()),
        "events_held": store.events_held(),
        "payments": len(records),
        "features": len(online.features),
        "prepare": latency_summary(prep_ns),
        "compute": latency_summary(compute_ns),
        "compute_update": latency_summary(both_ns),
        "compute_cpu": latency_summary(cpu_ns),
        "gc_collections": {f"gen{g}": n for g, n in enumerate(gc_runs)},
        "gc_ms": gc_ns[0] / 1e6,
    }


# --- the benchmark ---------------------------------------------------------------------------


def _faster(batch_s: float, naive_s: float) -> str:
    if batch_s <= naive_s:
        return f"batch {naive_s / batch_s:.1f}x faster"
    return f"batch {batch_s / naive_s:.1f}x slower"


def batch_part(frame: pd.DataFrame, res: dict[str, Any], out: Callable[[str], None]) -> None:
    """Batch timings, the naive baseline, their ratios and peak memory, into `res`."""
    rows = len(frame)
    features = available(frame.columns).features
    batch, batch_s = timed(lambda: compute(frame, features))
    res.update(batch_features=len(features), batch_seconds=batch_s, batch_rows_per_s=rows / batch_s)
    out(
        f"batch, all {len(features)} features: {batch_s:.2f} s "
        f"({rows / batch_s:,.0f} rows/s, {rows * len(features) / batch_s:,.0f} values/s)"
    )
    _, equiv_s = timed(lambda: compute(frame, select(EQUIVALENT)))
    res["batch_equivalent_seconds"] = equiv_s
    out(
        f"batch, card count+sum 1h/24h/7d/30d only ({len(EQUIVALENT)} features): "
        f"{equiv_s:.2f} s ({rows / equiv_s:,.0f} rows/s)"
    )

    naive, naive_s = timed(lambda: naive_pandas.card_count_mean(frame))
    res["naive_seconds"] = naive_s
    res["naive_agreement"] = naive_pandas.agreement(naive, batch)
    out(
        f"naive pandas groupby('card_id').rolling(closed='left') count+mean, 4 windows: "
        f"{naive_s:.2f} s ({rows / naive_s:,.0f} rows/s)"
    )
    res["ratio_equivalent_over_naive"] = equiv_s / naive_s
    res["ratio_all_over_naive"] = batch_s / naive_s
    out(
        f"time ratio, same work (batch card count+sum / naive): {equiv_s / naive_s:.3f} "
        f"({_faster(equiv_s, naive_s)})"
    )
    out(
        f"time ratio, all {len(features)} batch features / naive 8 columns: "
        f"{batch_s / naive_s:.3f} ({_faster(batch_s, naive_s)})"
    )
    # The textbook per-entity apply is too slow for a million rows on this machine: time it and
    # the batch executor on the same first TEXTBOOK_ROWS payments.
    sub = frame.iloc[: min(TEXTBOOK_ROWS, rows)].reset_index(drop=True)
    textbook, textbook_s = timed(lambda: naive_pandas.card_count_mean_apply(sub))
    sub_batch, sub_s = timed(lambda: compute(sub, select(EQUIVALENT)))
    res["textbook_rows"] = len(sub)
    res["textbook_seconds"] = textbook_s
    res["batch_equivalent_seconds_on_textbook_rows"] = sub_s
    res["ratio_textbook_over_batch_equivalent"] = textbook_s / sub_s
    res["textbook_agreement"] = naive_pandas.agreement(textbook, sub_batch)
    out(
        f"textbook pandas groupby('card_id').apply(per-card rolling), 4 windows, first "
        f"{len(sub):,} payments: {textbook_s:.2f} s vs batch {sub_s:.3f} s on the same rows "
        f"-> batch {textbook_s / sub_s:.0f}x faster (goal >= 20x)"
    )
    del textbook, sub_batch
    agree = ", ".join(f"{w} {share:.4%}" for w, share in res["naive_agreement"].items())
    out(f"naive values equal to batch (count and mean) on: {agree} of payments")
    del naive, batch
    gc.collect()

    stamps: list[tuple[str, float]] = []
    peak = peak_rss(
        lambda: compute(frame, features, progress=lambda n: stamps.append((n, time.perf_counter())))
    )
    stamps.append(("", time.perf_counter()))
    per_feature = {n: t1 - t0 for (n, t0), (_, t1) in itertools.pairwise(stamps)}
    res["batch_seconds_per_feature"] = per_feature
    slowest = sorted(per_feature.items(), key=lambda kv: -kv[1])[:6]
    out("batch, slowest features: " + ", ".join(f"{n} {t:.2f} s" for n, t in slowest))
    if peak is not None:
        res["batch_peak_rss_mb"], res["rss_before_batch_mb"] = peak
        out(
            f"peak memory, batch all features: {peak[0]:,.0f} MB RSS "
            f"(+{peak[0] - peak[1]:,.0f} MB over the {peak[1]:,.0f} MB held before)"
        )
    res["process_max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out(f"process max RSS so far: {res['process_max_rss_mb']:,.0f} MB")


def run(
    rows: int = 1_000_000,
    *,
    online_cards: int = 100_000,
    online_payments: int = 10_000,
    seed: int = 7,
    out: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the whole benchmark, print a report through `out`, return every number."""
    res: dict[str, Any] = {"rows": rows}
    frame, source = make_data(rows, seed=seed)
    res["source"] = source
    res["cards"] = int(frame["card_id"].nunique())
    res["merchants"] = int(frame["merchant_id"].nunique())
    span = frame["timestamp"].max() - frame["timestamp"].min()
    out(
        f"data: {len(frame):,} payments from {source}; {res['cards']:,} cards, "
        f"{res['merchants']:,} merchants, {span.days} days"
    )

    batch_part(frame, res, out)
    del frame
    gc.collect()

    # The online state must hold >= online_cards cards: simulate enough payments over the
    # look-back period (which is all the state keeps) plus the held-out payments.
    days = math.ceil(MAX_LOOKBACK / 86_400)
    warm_rows = max(math.ceil(online_cards / CARDS_PER_ROW * 1.1), 1_000) + online_payments
    warm_frame, warm_source = make_data(warm_rows, days=days, seed=seed + 1)
    out(
        f"online: warming a MemoryState with {warm_rows - online_payments:,} payments "
        f"({days} days, {warm_source}) ..."
    )
    online = online_latency(warm_frame, online_payments)
    res["online"] = online
    del warm_frame
    out(
        f"online state: {online['cards_held']:,} cards, {online['entities_held']:,} entities, "
        f"{online['events_held']:,} entity events held "
        f"(warm-up {online['warm_payments']:,} payments in {online['warm_seconds']:.1f} s)"
    )
    if online["cards_held"] < online_cards:
        out(f"WARNING: fewer than {online_cards:,} cards held")
    for key, label in (
        ("compute", f"compute(), {online['features']} features"),
        ("compute_update", "compute() + update()"),
        ("prepare", "prepare() (dict -> typed payment)"),
        ("compute_cpu", "compute() thread CPU time (no waiting for the CPU)"),
    ):
        s = online[key]
        out(
            f"online {label}, {online['payments']:,} payments: median {s['median_us']:,.0f} us, "
            f"p95 {s['p95_us']:,.0f} us, p99 {s['p99_us']:,.0f} us, max {s['max_us']:,.0f} us"
        )
    runs = ", ".join(f"{g} {n}" for g, n in online["gc_collections"].items())
    out(f"garbage collections while timing: {runs}; {online['gc_ms']:,.1f} ms in total")
    res["process_max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out(f"process max RSS: {res['process_max_rss_mb']:,.0f} MB")
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="payments for the batch part")
    parser.add_argument("--online-cards", type=int, default=100_000, help="cards in the state")
    parser.add_argument("--online-payments", type=int, default=10_000, help="payments to time")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    run(
        args.rows,
        online_cards=args.online_cards,
        online_payments=args.online_payments,
        seed=args.seed,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
