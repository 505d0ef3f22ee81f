"""Policy backtest benchmark: a 30-day backtest over the default sample's volume (~70,000
payments), target <= 5 s, and the report of one rule change.

    python benchmarks/bench_backtest.py [--rows 200000] [--days 90] [--seed 7] [--out FILE]
    python benchmarks/bench_backtest.py --quick        # 40,000 rows over 60 days: a smoke run
    python benchmarks/bench_backtest.py --db bt.db --repeat 3   # keep the stored payments, reuse

1. The default sample (`data.simulator`, 200,000 payments over 90 days, seed 7).
2. A model trained on the first 53 days (one seeded search trial; test from day 60), so the
   backtested last 30 days were not seen in fitting.
3. The last 30 days stored as the service stores them (decisions + payment_facts: contract
   record, float64 feature vector from `features.batch` (equal to online by the parity test),
   the model's thresholds), decided by the policy in force (no rules), chargebacks as labels.
4. Timed: `whatif.run_backtest` of one rule change (review above 500) against the policy in
   force: load from SQLite, two policy replays, three team replays. Printed: the seconds per
   stage and the report (`serving.scoring.cli.render`). Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the project importable
    sys.path.insert(0, str(ROOT))

PROPOSED = {
    "rules": [
        {"name": "big ticket", "field": "amount", "op": ">", "value": 500, "action": "review"}
    ]
}
BACKTEST_DAYS = 30


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    contract = frame.drop(columns=[c for c in ("is_fraud", "label_time", "scenario") if c in frame])
    out = []
    for rec in contract.to_dict("records"):
        item = {}
        for k, v in rec.items():
            if v is None or v is pd.NaT or (isinstance(v, float) and np.isnan(v)):
                item[k] = None
            elif isinstance(v, pd.Timestamp):
                item[k] = v.to_pydatetime()
            else:
                item[k] = v
        out.append(item)
    return out


def store(engine: Any, frame: pd.DataFrame, table: pd.DataFrame, model: Any) -> dict[str, float]:
    """The period's payments written as the service writes them; seconds per step."""
    from sqlalchemy import insert

    from serving.scoring.facts import FactsWriter, thresholds_doc
    from serving.scoring.policy import PolicyConfig, decide
    from serving.store import db

    t0 = time.perf_counter()
    names = list(model.features)
    X = np.ascontiguousarray(table[names].to_numpy(dtype=np.float64))
    probs = model.predict_proba(X)
    t1 = time.perf_counter()
    writer = FactsWriter()
    policy = PolicyConfig()
    now = datetime.now(UTC)
    thresholds = model.thresholds
    status = {"approve": "settled", "review": "held_for_review", "decline": "declined"}
    decisions, facts_rows = [], []
    for i, rec in enumerate(_records(frame)):
        p = float(probs[i])
        outcome = decide(rec, {}, p, thresholds, policy)
        body = {"_thresholds": thresholds_doc(thresholds), "_shadow": None}
        features = dict(zip(names, X[i].tolist(), strict=True))
        facts_rows.append(writer.row(rec, body, features))
        decisions.append(
            {
                "transaction_id": rec["transaction_id"],
                "created_at": now,
                "payment_time": rec["timestamp"],
                "decision": outcome.decision,
                "source": outcome.source,
                "status": status[outcome.decision],
                "status_at": now,
                "probability": p,
                "score": min(99, int(p * 100)),
                "model_version": "bench",
                "amount": rec["amount"],
                "currency": rec["currency"],
                "merchant_id": rec["merchant_id"],
                "card_id": rec["card_id"],
                "response": {"decision": outcome.decision},
            }
        )
    fraud = frame[frame["is_fraud"] == 1]
    labels = [
        {
            "transaction_id": r.transaction_id,
            "is_fraud": True,
            "label_time": (r.label_time if not pd.isna(r.label_time) else r.timestamp),
            "source": "chargeback",
            "created_at": now,
        }
        for r in fraud.itertuples()
    ]
    with engine.begin() as conn:
        for i in range(0, len(decisions), 5_000):
            conn.execute(insert(db.decisions), decisions[i : i + 5_000])
            writer.write(conn, facts_rows[i : i + 5_000], now)
        if labels:
            conn.execute(insert(db.labels), labels)
    return {"score_s": t1 - t0, "store_s": time.perf_counter() - t1}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="40,000 rows over 60 days")
    ap.add_argument("--out", help="write the backtest report as JSON")
    ap.add_argument(
        "--db",
        help="SQLite file: reused when it already holds the stored payments (no simulate/train),"
        " else built and kept",
    )
    ap.add_argument("--repeat", type=int, default=1, help="time the backtest this many times")
    args = ap.parse_args(argv)
    if args.quick:
        args.rows, args.days = 40_000, 60

    from serving.scoring import facts, whatif
    from serving.scoring.cli import render
    from serving.scoring.policy import PolicyConfig, parse_config
    from serving.store import db

    with tempfile.TemporaryDirectory(prefix="riskgate-bench-backtest-") as work:
        path = Path(args.db) if args.db else Path(work) / "riskgate.db"
        engine = db.make_engine(f"sqlite:///{path}")
        db.create_schema(engine)
        if facts.latest_payment_time(engine) is None:
            build(engine, args)
        else:
            _say(f"reusing the stored payments in {path}")
        proposed = parse_config(PROPOSED)
        as_of = datetime.now(UTC)
        times, loads = [], []
        for _ in range(max(args.repeat, 1)):
            t0 = time.perf_counter()
            period = whatif.period_of(engine, None, None, BACKTEST_DAYS)
            report = whatif.run_backtest(engine, proposed, PolicyConfig(), period, as_of=as_of)
            times.append(time.perf_counter() - t0)
            t1 = time.perf_counter()  # the load alone, for the breakdown
            facts.load(engine, period.start, period.end)
            loads.append(time.perf_counter() - t1)
        engine.dispose()

    print(render(report))
    elapsed = statistics.median(times)
    verdict = "met" if elapsed <= 5.0 else "NOT met"
    print(
        f"\n30-day backtest over {report['payments']:,} payments: median {elapsed:.2f} s of "
        f"{len(times)} (min {min(times):.2f}; target <= 5 s: {verdict}; of it reading the "
        f"stored payments {statistics.median(loads):.2f} s; load average {os.getloadavg()[0]:.1f})"
    )
    if args.out:
        Path(args.out).write_text(json.dumps({"seconds": times, "report": report}, indent=2))
    return 0


def build(engine: Any, args: argparse.Namespace) -> None:
    """Simulate, train on the early days, store the last 30 days as the service would."""
    from data.simulator import SimulationConfig, simulate
    from features.batch import compute
    from features.registry import select
    from training.config import SearchSettings, TrainConfig
    from training.pipeline import train

    t = time.perf_counter()
    frame = simulate(SimulationConfig(rows=args.rows, days=args.days, seed=args.seed))
    frame = frame.sort_values(["timestamp", "transaction_id"], kind="stable")
    frame = frame.reset_index(drop=True)
    start = frame["timestamp"].min().floor("D")
    end = start + pd.Timedelta(days=args.days)
    bt_start = end - pd.Timedelta(days=BACKTEST_DAYS)
    _say(f"simulated {len(frame):,} payments in {time.perf_counter() - t:.1f} s")

    t = time.perf_counter()
    train_end = bt_start - pd.Timedelta(days=7)
    periods = {
        "train_start": start,
        "train_end": train_end,
        "test_start": bt_start,
        "test_end": end,
    }
    model = train(frame, TrainConfig(search=SearchSettings(trials=1)), periods=periods).model
    _say(f"trained on {start:%Y-%m-%d} .. {train_end:%Y-%m-%d} in {time.perf_counter() - t:.1f} s")

    in_period = (frame["timestamp"] >= bt_start).to_numpy()
    period_rows = frame[in_period].reset_index(drop=True)
    table = compute(frame, select(model.features))[in_period].reset_index(drop=True)
    steps = store(engine, period_rows, table, model)
    _say(f"stored {len(period_rows):,} payments of the last {BACKTEST_DAYS} days "
         f"({steps['store_s']:.1f} s)")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
