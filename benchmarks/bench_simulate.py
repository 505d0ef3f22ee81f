"""How fast the simulator is, how much memory it takes, and how hard its fraud is to spot.

    python benchmarks/bench_simulate.py [--rows 1000000] [--days 90] [--seed 7]

Speed and memory tell whether a full-size data set fits the CI budget (1,000,000 rows in under
60 s and 4 GB); the scenario table checks the mix and the chargeback delays; the single-signal
table shows that no one column gives the fraud away, which is what makes the data worth
training on. Peak memory is the process's resident-set high-water mark from
`resource.getrusage(RUSAGE_SELF).ru_maxrss`, so it includes the interpreter and libraries
(reported separately as the baseline before simulating). Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.simulator import FRAUD_SCENARIOS, SimulationConfig, simulate


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (ru_maxrss is KiB on Linux)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 1024 / 1024


def single_signals(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Three signals a naive rule would use alone; each should catch fraud only weakly."""
    ip = frame["ip_country"]
    foreign_ip = (ip.notna() & (ip != frame["billing_country"])).to_numpy(dtype=bool)
    has_device = frame["device_id"].notna().to_numpy(dtype=bool)
    # frames are sorted by time, so the first (customer, device) occurrence is the first use
    seen = frame.groupby(["customer_id", "device_id"], sort=False, dropna=True).cumcount()
    new_device = has_device & (seen.reindex(frame.index).fillna(1).to_numpy() == 0)
    amount = frame["amount"].to_numpy()
    big_amount = amount > np.quantile(amount, 0.99)
    return {
        "ip_country != billing_country": foreign_ip,
        "new device for the customer": new_device,
        "amount > 99th percentile": big_amount,
    }


def signal_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Recall and precision of each single signal used alone as a fraud rule."""
    fraud = frame["is_fraud"].to_numpy(dtype=np.int8) == 1
    out = []
    for name, flagged in single_signals(frame).items():
        hits = int((flagged & fraud).sum())
        out.append(
            {
                "signal": name,
                "flagged": int(flagged.sum()),
                "recall": hits / max(int(fraud.sum()), 1),
                "precision": hits / max(int(flagged.sum()), 1),
            }
        )
    return pd.DataFrame(out)


def scenario_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows, share of the fraud rows and median chargeback delay (days) per fraud scenario."""
    fraud = frame[frame["is_fraud"] == 1]
    delay = (fraud["label_time"] - fraud["timestamp"]).dt.total_seconds() / 86_400
    out = []
    for name in FRAUD_SCENARIOS:
        mask = (fraud["scenario"] == name).to_numpy(dtype=bool)
        out.append(
            {
                "scenario": name,
                "rows": int(mask.sum()),
                "share_of_fraud": mask.sum() / max(len(fraud), 1),
                "median_label_delay_days": float(np.median(delay[mask])) if mask.any() else None,
            }
        )
    return pd.DataFrame(out)


def run(rows: int = 1_000_000, days: int = 90, seed: int = 7) -> dict[str, Any]:
    """Simulate once and measure: rows, seconds, rows/s, memory, scenario and signal tables."""
    baseline = peak_rss_mb()
    config = SimulationConfig(rows=rows, days=days, seed=seed)
    began = time.perf_counter()
    frame = simulate(config)
    seconds = time.perf_counter() - began
    peak = peak_rss_mb()
    return {
        "rows": len(frame),
        "days": days,
        "seconds": seconds,
        "rows_per_second": len(frame) / seconds,
        "peak_rss_mb": peak,
        "baseline_rss_mb": baseline,
        "memory_measure": "resource.getrusage(RUSAGE_SELF).ru_maxrss",
        "fraud_rate": float((frame["is_fraud"] == 1).mean()),
        "scenarios": scenario_table(frame),
        "signals": signal_table(frame),
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: print the measurements as plain text."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    result = run(args.rows, args.days, args.seed)
    print(f"rows          {result['rows']:,} over {result['days']} days")
    print(f"seconds       {result['seconds']:.2f}")
    print(f"rows/s        {result['rows_per_second']:,.0f}")
    print(
        f"peak memory   {result['peak_rss_mb']:,.0f} MiB ({result['memory_measure']}; "
        f"{result['baseline_rss_mb']:,.0f} MiB before simulating)"
    )
    print(f"fraud rate    {result['fraud_rate']:.4%}")
    print()
    print(result["scenarios"].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print()
    print(result["signals"].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
