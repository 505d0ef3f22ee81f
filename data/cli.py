"""`riskgate generate` and `riskgate validate`: orchestration only.

The summary names the feature groups the columns allow; data/ imports nothing of riskgate but
itself, so that line comes from whoever builds the parser (`serving.cli` passes features'
one in as `columns_summary`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable

import pandas as pd

from data.load import load, write_parquet_atomic

# the feature groups a set of columns allows, as text (features.registry.available(...).summary)
ColumnsSummary = Callable[[Iterable[str]], str]


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    columns_summary: ColumnsSummary | None = None,
) -> None:
    gen = sub.add_parser("generate", help="simulate payments (Parquet)")
    gen.add_argument("--rows", type=int, default=200_000, help="payments to generate")
    gen.add_argument("--days", type=int, default=90, help="length of the period")
    gen.add_argument("--fraud-rate", type=float, default=0.005, help="share of fraud")
    gen.add_argument("--seed", type=int, default=7, help="same seed, same bytes")
    gen.add_argument("--start", default="2024-01-01", help="first day (UTC)")
    gen.add_argument("--out", required=True, help="output .parquet (or .csv)")
    gen.set_defaults(func=generate, columns_summary=columns_summary)

    val = sub.add_parser("validate", help="check a file against the contract, print a summary")
    val.add_argument("--data", required=True, help="CSV or Parquet")
    val.add_argument("--mapping", help="TOML column mapping")
    val.set_defaults(func=validate, columns_summary=columns_summary)


def generate(args: argparse.Namespace) -> int:
    from data.progress import progress_bar
    from data.simulator import SimulationConfig, simulate

    try:
        config = SimulationConfig(
            rows=args.rows,
            days=args.days,
            fraud_rate=args.fraud_rate,
            seed=args.seed,
            start=args.start,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with progress_bar(total=config.rows, unit="payments", desc="generate") as bar:
        done = [0]

        def progress(n: int) -> None:
            bar.update(n - done[0])
            done[0] = n

        frame = simulate(config, progress=progress)
        bar.update(config.rows - done[0])
    path = write_parquet_atomic(frame, args.out)
    print(f"wrote {len(frame):,} payments to {path}")
    print(summary(frame, args.columns_summary))
    return 0


def validate(args: argparse.Namespace) -> int:
    frame = load(args.data, args.mapping)
    print(f"{args.data}: valid")
    print(summary(frame, args.columns_summary))
    return 0


def summary(frame: pd.DataFrame, columns_summary: ColumnsSummary | None = None) -> str:
    """Rows, period, fraud rate, label delay, optional columns and (given `columns_summary`)
    the feature groups they allow."""
    from data.schema import OPTIONAL, present_optional

    lines = [f"rows           {len(frame):,}"]
    ts = frame["timestamp"]
    lines.append(f"period         {ts.min():%Y-%m-%d %H:%M} .. {ts.max():%Y-%m-%d %H:%M} UTC")
    days = max((ts.max() - ts.min()).total_seconds() / 86_400, 1e-9)
    lines.append(f"per day        {len(frame) / days:,.0f}")
    if "is_fraud" in frame.columns:
        labelled = frame["is_fraud"].notna()
        rate = (
            frame.loc[labelled, "is_fraud"].astype(float).mean() if labelled.any() else float("nan")
        )
        lines.append(f"labelled       {labelled.mean():.1%}   fraud rate {rate:.3%}")
        if "label_time" in frame.columns:
            fraud = (frame["is_fraud"] == 1).fillna(False) & frame["label_time"].notna()
            if fraud.any():
                delay = (frame.loc[fraud, "label_time"] - ts[fraud]).dt.total_seconds() / 86_400
                lines.append(
                    f"label delay    fraud: median {delay.median():.1f} d, "
                    f"p90 {delay.quantile(0.9):.1f} d"
                )
    else:
        lines.append("labelled       no labels (is_fraud missing): scoring only")
    present = present_optional(frame)
    absent = [c for c in OPTIONAL if c not in present]
    lines.append(f"optional       {len(present)} present: {', '.join(present) or '-'}")
    if absent:
        lines.append(f"absent         {', '.join(absent)}")
    if "scenario" in frame.columns:
        counts = frame["scenario"].value_counts()
        lines.append("scenarios      " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    if columns_summary is not None:
        lines.append(columns_summary(c for c in frame.columns if frame[c].notna().any()))
    return "\n".join(lines)
