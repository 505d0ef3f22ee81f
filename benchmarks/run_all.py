"""Every benchmark in one command, one results table (markdown + JSON). Not part of CI.

    python benchmarks/run_all.py [--out benchmarks/results] [--quick]

Each stage runs in a fresh process (so its peak memory is its own): the simulator, the batch
and online features (with the naive pandas baselines), training on 1,000,000 payments, and the
serving benchmark (in-process latency, explanation time, HTTP /score at fixed offered rates and at
saturation against a bare BentoML service, /score_batch). About 8-10 minutes on 2 cores;
`--quick` shrinks every stage for a smoke run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]


def _simulate(rows: int) -> dict[str, Any]:
    import bench_simulate

    return bench_simulate.run(rows=rows)


def _features(rows: int, cards: int, textbook_rows: int) -> dict[str, Any]:
    import bench_features

    bench_features.TEXTBOOK_ROWS = textbook_rows
    return bench_features.run(rows, online_cards=cards, out=lambda _line: None)


def _train(rows: int) -> dict[str, Any]:
    import bench_train

    return bench_train.run(rows=rows)


def _serving(quick: bool) -> dict[str, Any]:
    """In-process figures and the HTTP comparison at 200 req/s, then riskgate alone at each
    fixed offered rate of the issue (100, 500, 1,000 req/s; shorter runs)."""
    import bench_serving

    base = bench_serving.run(
        variants=("two_workers",),
        server_profile=False,
        rows=50_000 if quick else 200_000,
        inprocess_n=500 if quick else 2_500,
        open_s=4.0 if quick else 10.0,
        closed_s=4.0 if quick else 10.0,
    )
    rates: dict[str, Any] = {}
    for rate in (100.0, 500.0, 1_000.0):
        run = bench_serving.run(
            variants=(),
            server_profile=False,
            rows=50_000,
            inprocess_n=200,
            rate=rate,
            open_s=3.0 if quick else 6.0,
            closed_s=2.0,
            batches=1,
        )
        rates[f"{rate:g}"] = {
            "riskgate": run["http"]["riskgate"]["open"],
            "bare": run["http"]["bare"]["open"],
        }
    base["rates"] = rates
    return base


def _stage(name: str, fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run one stage in a fresh process; a failed stage is reported, not fatal."""
    started = time.perf_counter()
    print(f"== {name} ...", flush=True)
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        try:
            result = pool.submit(fn, *args).result()
        except Exception as exc:  # keep the other stages' figures
            result = {"error": f"{type(exc).__name__}: {exc}"}
    result["wall_seconds"] = time.perf_counter() - started
    print(f"   {name}: {result['wall_seconds']:.0f} s", flush=True)
    return result


def _get(d: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _fmt(value: Any, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def table(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(figure, value, target) rows."""
    s, f, t, v = (results.get(k, {}) for k in ("simulate", "features", "train", "serving"))
    online = _get(f, "online", "compute") or {}
    rows = [
        ("simulator rows/s", _fmt(s.get("rows_per_second"), ",.0f"), "1M rows in < 60 s"),
        ("simulator peak memory (MiB)", _fmt(s.get("peak_rss_mb"), ",.0f"), "< 4,096"),
        ("batch features rows/s (all)", _fmt(f.get("batch_rows_per_s"), ",.0f"), "1M in <= 20 s"),
        ("batch features seconds, 1M rows", _fmt(f.get("batch_seconds"), ".1f"), "<= 20"),
        (
            "batch vs textbook groupby.apply (x faster)",
            _fmt(f.get("ratio_textbook_over_batch_equivalent"), ",.0f"),
            ">= 20",
        ),
        (
            "batch vs groupby().rolling (x faster)",
            _fmt(
                None
                if not f.get("ratio_equivalent_over_naive")
                else 1 / f["ratio_equivalent_over_naive"],
                ".1f",
            ),
            "(reference)",
        ),
        ("online features median (us)", _fmt(online.get("median_us"), ",.0f"), "<= 200"),
        ("features peak memory (MiB)", _fmt(f.get("batch_peak_rss_mb"), ",.0f"), ""),
        ("training 1M rows, total (s)", _fmt(t.get("total_seconds"), ".1f"), "<= 120"),
        ("training peak memory (MiB)", _fmt(t.get("peak_rss_mb"), ",.0f"), ""),
    ]
    for label, key, target in (
        ("in-process score median (ms)", ("inprocess", "score", "median_ms"), "<= 1"),
        (
            "explanation per reviewed payment (ms)",
            ("inprocess", "explain_full", "median_ms"),
            "<= 5",
        ),
    ):
        rows.append((label, _fmt(_get(v, *key), ".3f"), target))
    for name in ("bare", "riskgate"):
        fig = _get(v, "http", name, "open") or {}
        rows.append(
            (
                f"{name} /score at 200 req/s: p50 / p99 ms, achieved req/s",
                f"{_fmt(fig.get('p50_ms'), '.1f')} / {_fmt(fig.get('p99_ms'), '.1f')}, "
                f"{_fmt(fig.get('throughput_rps'), ',.0f')}",
                "riskgate p50 <= 1.5x bare, p99 <= 25 ms",
            )
        )
    for rate, pair in (_get(v, "rates") or {}).items():
        for name in ("bare", "riskgate"):
            fig = pair.get(name) or {}
            rows.append(
                (
                    f"{name} /score offered {rate} req/s: p50 / p99 ms, achieved req/s",
                    f"{_fmt(fig.get('p50_ms'), '.1f')} / {_fmt(fig.get('p99_ms'), '.1f')}, "
                    f"{_fmt(fig.get('throughput_rps'), ',.0f')}",
                    "",
                )
            )
    bare_rps = _get(v, "http", "bare", "closed", "throughput_rps")
    for name, label in (
        ("bare", "bare (1 worker)"),
        ("riskgate", "riskgate (1 worker)"),
        ("riskgate_two_workers", "riskgate (2 workers)"),
    ):
        rps = _get(v, "http", name, "closed", "throughput_rps")
        ratio = ""
        if name != "bare" and rps and bare_rps:
            ratio = f" ({rps / bare_rps:.2f}x bare)"
        target = "" if name == "bare" else ">= bare"
        rows.append((f"{label} saturation (32 clients) req/s", _fmt(rps, ",.0f") + ratio, target))
    rows.append(
        (
            "/score_batch payments/s",
            _fmt(_get(v, "http", "riskgate", "batch", "payments_per_s"), ",.0f"),
            ">= 2,000",
        )
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "results"), help="folder for the results")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    args = parser.parse_args(argv)
    rows = 100_000 if args.quick else 1_000_000
    results = {
        "simulate": _stage("simulate", _simulate, rows),
        "features": _stage(
            "features",
            _features,
            rows,
            10_000 if args.quick else 100_000,
            5_000 if args.quick else 20_000,
        ),
        "train": _stage("train", _train, rows),
        "serving": _stage("serving", _serving, args.quick),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(results, indent=2, default=str))
    lines = ["| figure | value | target |", "|---|---:|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in table(results)]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwrote {out / 'summary.md'} and {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
