"""The online executor of another revision against this tree's, side by side in one process.

    python benchmarks/compare_online.py [--rev 0779d72] [--cards 100000] [--payments 10000]

bench_features.py's online setup (a MemoryState warmed with a simulated history holding
>= `--cards` cards), then `OnlineFeatures.compute` of `--rev` (its features/online.py, loaded
from git as a module of its own) and of this tree on the same held-out payments, alternating
which goes first; the two vectors must agree (rtol 1e-12). Prints both medians, their ratio and
the p99s. A ratio measured in one process holds on a shared machine where absolute times move.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the project and this folder importable
    sys.path.insert(0, str(ROOT))
if str(ROOT / "benchmarks") not in sys.path:
    sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_features import CARDS_PER_ROW, make_data, warm_state  # noqa: E402

from features.online import OnlineFeatures, prepare  # noqa: E402
from features.registry import available  # noqa: E402


def load_revision(rev: str) -> object:
    """features/online.py as it was at `rev`, as a module (it imports today's siblings)."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:features/online.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / f"online_{rev}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"online_{rev}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # registered before it runs: @dataclass looks its module up in sys.modules (it crashed here)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="0779d72", help="the revision to compare against")
    parser.add_argument("--cards", type=int, default=100_000, help="cards in the warm state")
    parser.add_argument("--payments", type=int, default=10_000, help="payments to time")
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args()
    old_mod = load_revision(args.rev)
    rows = max(math.ceil(args.cards / CARDS_PER_ROW * 1.1), 1_000) + args.payments
    print(f"simulating {rows:,} payments and warming a MemoryState ...", flush=True)
    frame, _ = make_data(rows, days=90, seed=args.seed)
    store, order, warm_s = warm_state(frame, args.payments)
    features = available(frame.columns).features
    new = OnlineFeatures(store, features)
    old = old_mod.OnlineFeatures(store, features)  # type: ignore[attr-defined]
    records = frame.iloc[order].to_dict("records")
    del frame
    print(
        f"{store.sizes().get('card', 0):,} cards held (warm-up {warm_s:.0f} s), "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    t_old, t_new = [], []
    clock = time.perf_counter
    for j, record in enumerate(records):
        p = prepare(record)
        if j % 2:
            a = clock()
            x = old.compute(p)
            b = clock()
            y = new.compute(p)
            c = clock()
            t_old.append(b - a)
            t_new.append(c - b)
        else:
            a = clock()
            y = new.compute(p)
            b = clock()
            x = old.compute(p)
            c = clock()
            t_new.append(b - a)
            t_old.append(c - b)
        if not np.allclose(x, y, rtol=1e-12, atol=0.0, equal_nan=True):
            raise SystemExit(f"payment {record['transaction_id']}: the two executors disagree")
        new.update(p)
    mo, mn = statistics.median(t_old) * 1e6, statistics.median(t_new) * 1e6
    print(
        f"compute() median: {args.rev} {mo:.1f} us, this tree {mn:.1f} us ({mo / mn:.2f}x); "
        f"p99 {np.percentile(t_old, 99) * 1e6:.0f} -> {np.percentile(t_new, 99) * 1e6:.0f} us; "
        f"{len(records):,} payments, load average {os.getloadavg()[0]:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
