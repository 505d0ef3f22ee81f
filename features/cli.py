"""`riskgate features`: the batch executor over a file."""

from __future__ import annotations

import argparse
import sys
import time

from data.load import load, write_parquet_atomic


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser("features", help="compute the feature table of a payments file")
    cmd.add_argument("--data", required=True, help="CSV or Parquet")
    cmd.add_argument("--mapping", help="TOML column mapping")
    cmd.add_argument("--out", required=True, help="output .parquet (or .csv)")
    cmd.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from data.progress import progress_bar
    from features.batch import compute
    from features.registry import available

    frame = load(args.data, args.mapping)
    avail = available(frame.columns)
    print(avail.summary(), file=sys.stderr)
    started = time.perf_counter()
    with progress_bar(total=len(avail.features), unit="feature", desc="features") as bar:

        def progress(name: str) -> None:
            bar.set_postfix_str(name)
            bar.update(1)

        table = compute(frame, avail.features, progress=progress)
    elapsed = time.perf_counter() - started
    path = write_parquet_atomic(table, args.out)
    print(
        f"wrote {len(table):,} rows x {len(avail.features)} features to {path} "
        f"({elapsed:.1f} s, {len(table) / max(elapsed, 1e-9):,.0f} rows/s)"
    )
    return 0
