"""riskgate against plain baselines on more than its own data: the regression benchmark.

    python benchmarks/bench_datasets.py [--only NAME ...] [--out benchmarks/results/datasets.json]

Each data set is trained with the real job (`training.pipeline.train`, labels as known at the
test start) on a time split stated here, and the table prints, per data set and policy, test
average precision, ROC-AUC and recall at 1% and 2% of payments reviewed, plus the fit time:

- `simulator`: riskgate's own default sample (`riskgate generate --rows 200000 --days 90
  --seed 7`), automatic periods: fit | validation | 7-day gap | the last 18 days as test.
- `sparkov`: ../shared/datasets/sparkov (a public generator, six months, with
  `data/mappings/sparkov.toml`): fit on the first four months (2023-01-01 .. 2023-04-30,
  validation carved from their end), gap 2023-05-01 .. 05-19, test on the last six weeks
  (2023-05-20 .. 2023-06-30). Skipped with a reason when ../shared is absent.
- `handbook`: the Fraud Detection Handbook's simulator re-implemented in
  `benchmarks/handbook_data.py` (time, customer, terminal, amount, label only), its textbook
  protocol: one training week (2018-07-25 .. 07-31), one delay week, test week 2018-08-08 .. 14.
  The training week is too short to carve a validation period: the trees come from folds.

Policies: riskgate; `plain_lightgbm` (library-default LightGBM on the contract's raw columns,
no history features); logistic regression on riskgate's features; the rule policy. Not a test:
nothing here asserts. The data sets run side by side in `--jobs` processes (default 2: training
runs LightGBM on one thread, so two data sets use the two cores; the longest, sparkov, starts
first). Wall time on this 2-core machine: about four minutes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SPARKOV = ROOT.parent / "shared" / "datasets" / "sparkov" / "transactions.parquet"
POLICIES = ("riskgate", "plain_lightgbm", "logistic", "rules")
METRICS = (
    ("AP", "average_precision", "{:.3f}"),
    ("ROC-AUC", "roc_auc", "{:.3f}"),
    ("recall@1%", "recall_at_1pct", "{:.1%}"),
    ("recall@2%", "recall_at_2pct", "{:.1%}"),
)


@dataclass(frozen=True)
class Dataset:
    name: str
    load: Callable[[Path], pd.DataFrame]  # a scratch folder -> contract frame
    periods: dict[str, str] = field(default_factory=dict)  # CLI-style dates (ends inclusive)
    skip: str | None = None


def _simulator(tmp: Path) -> pd.DataFrame:
    from data.simulator import SimulationConfig, simulate

    return simulate(SimulationConfig(rows=200_000, days=90, seed=7))


def _sparkov(tmp: Path) -> pd.DataFrame:
    from data.load import load

    return load(SPARKOV, ROOT / "data" / "mappings" / "sparkov.toml")


def _handbook(tmp: Path) -> pd.DataFrame:
    from benchmarks.handbook_data import generate
    from data.load import load

    path = tmp / "handbook.parquet"
    generate().to_parquet(path, index=False)
    return load(path, ROOT / "benchmarks" / "handbook.toml")


def datasets() -> list[Dataset]:
    return [
        Dataset("simulator", _simulator),
        Dataset(
            "sparkov",
            _sparkov,
            {
                "train_start": "2023-01-01",
                "train_end": "2023-04-30",
                "test_start": "2023-05-20",
                "test_end": "2023-06-30",
            },
            None if SPARKOV.exists() else f"{SPARKOV} not found (../shared is absent)",
        ),
        Dataset(
            "handbook",
            _handbook,
            {
                "train_start": "2018-07-25",
                "train_end": "2018-07-31",
                "test_start": "2018-08-08",
                "test_end": "2018-08-14",
            },
        ),
    ]


def run(ds: Dataset, tmp: Path) -> dict[str, Any]:
    from training.config import TrainConfig
    from training.pipeline import train
    from training.split import bound

    began = time.perf_counter()
    frame = ds.load(tmp)
    loaded = time.perf_counter() - began
    periods = {k: bound(v, end=k.endswith("end")) for k, v in ds.periods.items()}
    began = time.perf_counter()
    result = train(frame, TrainConfig(), periods=periods or None, progress=_say)
    seconds = time.perf_counter() - began
    sel = result.selection
    return {
        "wall_seconds": round(time.perf_counter() - began + loaded, 1),
        "rows": len(frame),
        "load_seconds": round(loaded, 1),
        "fit_seconds": round(seconds, 1),
        "selection": result.split.selection,
        "kept_iteration": None if sel is None else sel.rounds,
        "features_used": result.info["features_used"],
        "split": result.split.as_params(),
        "metrics": {p: {k: result.metrics[p].get(k) for _, k, _ in METRICS} for p in POLICIES},
    }


def _say(msg: str) -> None:
    elapsed = time.perf_counter() - _STARTED
    print(f"    [{_CURRENT} {elapsed:5.0f} s] {msg}", file=sys.stderr, flush=True)


# the data set this process is running and when it began, for the interleaved progress lines
_CURRENT = "-"
_STARTED = time.perf_counter()

# longest first, so that with two processes the other two share the second one
_ORDER = ("sparkov", "simulator", "handbook")


def _run_named(name: str, tmp: str) -> dict[str, Any]:
    """One data set in a worker process (by name: the loaders are looked up there)."""
    global _CURRENT, _STARTED
    _CURRENT, _STARTED = name, time.perf_counter()
    (ds,) = (d for d in datasets() if d.name == name)
    print(f"== {name}: started", file=sys.stderr, flush=True)
    return run(ds, Path(tmp))


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| data set | policy | " + " | ".join(h for h, _, _ in METRICS) + " | fit s |",
        "|---|---|" + "---:|" * (len(METRICS) + 1),
    ]
    for name, r in results.items():
        if "skipped" in r:
            lines.append(f"| {name} | skipped: {r['skipped']} |" + " |" * (len(METRICS) + 1))
            continue
        for policy in POLICIES:
            m = r["metrics"][policy]
            cells = [fmt.format(m[k]) if m[k] is not None else "-" for _, k, fmt in METRICS]
            fit = f"{r['fit_seconds']:.0f}" if policy == "riskgate" else ""
            lines.append(f"| {name} | {policy} | " + " | ".join(cells) + f" | {fit} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="data sets to run (default: all)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "datasets.json"))
    parser.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="data sets run side by side (default: 2, or 1 on a one-core machine)",
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    wall = time.perf_counter()
    chosen = [d for d in datasets() if not args.only or d.name in args.only]
    chosen.sort(key=lambda d: _ORDER.index(d.name) if d.name in _ORDER else len(_ORDER))
    results: dict[str, dict[str, Any]] = {}
    for ds in chosen:
        if ds.skip:
            print(f"== {ds.name}: skipped ({ds.skip})", file=sys.stderr)
            results[ds.name] = {"skipped": ds.skip}
    todo = [d.name for d in chosen if not d.skip]
    with tempfile.TemporaryDirectory() as tmp:
        if args.jobs == 1 or len(todo) <= 1:
            for name in todo:
                results[name] = _run_named(name, tmp)
        else:
            # spawn: each worker starts clean (no inherited threads or half-imported state)
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(min(args.jobs, len(todo)), mp_context=ctx) as pool:
                futures = {name: pool.submit(_run_named, name, tmp) for name in todo}
                for name, future in futures.items():
                    results[name] = future.result()
    # the table in the data sets' usual order, whatever finished first
    results = {d.name: results[d.name] for d in datasets() if d.name in results}
    total = time.perf_counter() - wall
    print(table(results))
    print(f"\nwall time {total:.0f} s ({args.jobs} processes)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"wall_seconds": round(total, 1), "datasets": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
