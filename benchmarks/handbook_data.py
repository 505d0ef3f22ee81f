"""A third development data set: the Fraud Detection Handbook's transaction simulator in numpy.

    python benchmarks/handbook_data.py --out /tmp/hb/handbook.parquet \
        [--customers 5000 --terminals 10000 --days 183 --start 2018-04-01 --seed 0]

riskgate's own simulator (data/simulator/) shaped the features and models, so data from it
cannot tell whether they generalise. This module re-implements, independently, the simulator
that "Reproducible Machine Learning for Credit Card Fraud Detection - Practical Handbook"
(Le Borgne, Siblini, Lebichot, Bontempi; Université Libre de Bruxelles, 2022) describes in
its chapter "Transaction data simulator" (Chapter 3, SimulatedDataset.ipynb in
github.com/Fraud-Detection-Handbook/fraud-detection-handbook). The handbook's notebook code is
released under the GNU GPL v3.0 and its prose under CC BY-SA 4.0. Nothing is copied from the
notebook: it loops over customers, days and transactions with pandas `apply`; this module
follows the algorithm as the chapter states it, on whole arrays, and is generated in seconds.

The simulation, as in the handbook:

* customers: (x, y) uniform on a 100 x 100 grid, mean_amount ~ U(5, 100), std_amount =
  mean_amount / 2, mean_nb_tx_per_day ~ U(0, 4);
* terminals: (x, y) uniform on the grid; a customer uses the terminals at Euclidean distance
  strictly less than r = 5;
* per customer and day, Poisson(mean_nb_tx_per_day) draws; each draw gets a time
  int(N(86400 / 2, 20000)) seconds and is *discarded* unless 0 < time < 86400; the amount is
  N(mean_amount, std_amount), redrawn as U(0, 2 * mean_amount) when negative, rounded to cents;
  the terminal is uniform among the customer's terminals (a customer with none has no
  transactions); TX_TIME_SECONDS = time + day * 86400, TX_TIME_DAYS = day, TX_DATETIME =
  start + TX_TIME_SECONDS; rows sorted by time and numbered from 0;
* frauds, in this order, each overwriting the label of the one before:
  (1) TX_AMOUNT > 220; (2) for each day d in range(max TX_TIME_DAYS), 2 terminals drawn
  without replacement: all their transactions with d <= day < d + 28 are fraud; (3) for each
  such day, 3 customers drawn without replacement: of their transactions with
  d <= day < d + 14, int(n / 3) drawn without replacement get TX_AMOUNT * 5 and are fraud.
  Like the handbook, (3) draws from all of the window's transactions (already-fraud ones too,
  which are relabelled 3), a transaction in two overlapping windows can be multiplied twice,
  the x5 amounts are not re-checked against rule (1), and the last day starts no compromise.

What differs from the handbook:

* Random numbers. The handbook seeds numpy's legacy global generator per table (customers 0,
  terminals 1, transactions with the customer id, compromises with the day) and draws
  terminals with Python's `random`. Here one `seed` feeds a `numpy.random.SeedSequence` whose
  five children drive customers, terminals, transactions and the two compromise schedules
  (so the tables do not depend on each other's sizes). The distributions are the same; the
  rows are not those of the handbook's published data set, and `seed` changes the compromise
  schedules too (the handbook's are fixed by the day number).
* Ties in time are kept in customer order (stable sort); the handbook's sort leaves them in
  an unspecified order.
* Ids are text ("0", "1", ...), not integers, so the files meet riskgate's contract
  (TRANSACTION_ID, CUSTOMER_ID and TERMINAL_ID). Other columns keep the handbook's types:
  TX_DATETIME naive datetime64[ns] (taken as UTC by riskgate), TX_AMOUNT float64, the rest
  int64.

benchmarks/handbook.toml maps the TX_* layout onto the contract. Not a test; nothing runs at
import.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

COLUMNS: tuple[str, ...] = (
    "TRANSACTION_ID",
    "TX_DATETIME",
    "CUSTOMER_ID",
    "TERMINAL_ID",
    "TX_AMOUNT",
    "TX_TIME_SECONDS",
    "TX_TIME_DAYS",
    "TX_FRAUD",
    "TX_FRAUD_SCENARIO",
)
GRID = 100.0  # side of the square the customers and terminals live on
RADIUS = 5.0  # a customer uses the terminals closer than this
DAY_SECONDS = 86_400
TIME_MEAN, TIME_STD = DAY_SECONDS / 2, 20_000.0
MEAN_AMOUNT_RANGE = (5.0, 100.0)
TX_PER_DAY_RANGE = (0.0, 4.0)
SCENARIO_1_AMOUNT = 220.0
TERMINALS_PER_DAY, TERMINAL_DAYS = 2, 28
CUSTOMERS_PER_DAY, CUSTOMER_DAYS = 3, 14
CUSTOMER_SHARE = 3  # int(n / 3) of a compromised customer's window
CUSTOMER_FACTOR = 5.0
_CHUNK = 512  # customers per block of the customer-terminal distance matrix


@dataclass(frozen=True)
class Simulation:
    """The handbook's three tables plus the compromise schedules (for checks and tests)."""

    transactions: pd.DataFrame  # COLUMNS
    customers: pd.DataFrame  # CUSTOMER_ID, x/y_customer_id, mean/std_amount, mean_nb_tx_per_day
    terminals: pd.DataFrame  # TERMINAL_ID, x_terminal_id, y_terminal_id
    compromised_terminals: np.ndarray  # (k, 2) int64: day of compromise, terminal
    compromised_customers: np.ndarray  # (k, 2) int64: day of compromise, customer


def _text_ids(values: np.ndarray) -> pd.Series:
    """Integers as decimal text ("0", "17"), without a Python loop."""
    return pd.Series(pa.array(values.astype(np.int64)).cast(pa.string()), dtype="str")


def terminals_within(
    cust_xy: np.ndarray, term_xy: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """CSR lists of each customer's terminals (distance < radius): (indptr, terminal indices).

    Customer i's terminals, in increasing order, are indices[indptr[i]:indptr[i + 1]].
    """
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    for lo in range(0, len(cust_xy), _CHUNK):
        block = cust_xy[lo : lo + _CHUNK]
        dx = block[:, 0, None] - term_xy[None, :, 0]
        dy = block[:, 1, None] - term_xy[None, :, 1]
        r, c = np.nonzero(np.sqrt(dx * dx + dy * dy) < radius)
        rows.append(r + lo)
        cols.append(c)
    row = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    indices = np.concatenate(cols).astype(np.int64) if cols else np.zeros(0, np.int64)
    indptr = np.zeros(len(cust_xy) + 1, dtype=np.int64)
    np.cumsum(np.bincount(row, minlength=len(cust_xy)), out=indptr[1:])
    return indptr, indices


def _draw_distinct(rng: np.random.Generator, population: int, k: int, n_days: int) -> np.ndarray:
    """(n_days * k, 2) rows of (day, member): k distinct members of range(population) a day."""
    k = min(k, population)
    if n_days <= 0 or k <= 0:
        return np.zeros((0, 2), dtype=np.int64)
    members = np.concatenate([rng.choice(population, size=k, replace=False) for _ in range(n_days)])
    days = np.repeat(np.arange(n_days, dtype=np.int64), k)
    return np.stack([days, members.astype(np.int64)], axis=1)


def simulate(
    customers: int = 5000,
    terminals: int = 10000,
    days: int = 183,
    start: str = "2018-04-01",
    seed: int = 0,
    *,
    radius: float = RADIUS,
) -> Simulation:
    """Run the handbook's simulator; the same arguments give the same tables."""
    if customers < 1 or terminals < 1 or days < 1:
        raise ValueError("customers, terminals and days must be >= 1")
    cust_rng, term_rng, tx_rng, s2_rng, s3_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)
    )

    # customer and terminal profiles
    cust_xy = cust_rng.uniform(0.0, GRID, size=(customers, 2))
    mean_amount = cust_rng.uniform(*MEAN_AMOUNT_RANGE, size=customers)
    std_amount = mean_amount / 2
    tx_per_day = cust_rng.uniform(*TX_PER_DAY_RANGE, size=customers)
    term_xy = term_rng.uniform(0.0, GRID, size=(terminals, 2))
    indptr, indices = terminals_within(cust_xy, term_xy, radius)
    n_terms = np.diff(indptr)

    # transactions: Poisson draws per (customer, day), then one value per draw
    counts = tx_rng.poisson(tx_per_day[:, None], size=(customers, days))
    cell = np.repeat(np.arange(customers * days, dtype=np.int64), counts.ravel())
    cust, day = np.divmod(cell, days)
    n = len(cell)
    tod = tx_rng.normal(TIME_MEAN, TIME_STD, size=n).astype(np.int64)  # int(): toward zero
    amount = tx_rng.normal(mean_amount[cust], std_amount[cust])
    negative = amount < 0
    amount[negative] = tx_rng.uniform(0.0, 2 * mean_amount[cust[negative]])
    amount = np.round(amount, 2)
    pick = tx_rng.integers(0, np.maximum(n_terms[cust], 1))
    slot = np.minimum(indptr[cust] + pick, len(indices) - 1)  # clipped rows are dropped below
    terminal = indices[slot] if len(indices) else np.zeros(n, dtype=np.int64)
    keep = (tod > 0) & (tod < DAY_SECONDS) & (n_terms[cust] > 0)
    seconds = tod[keep] + day[keep] * DAY_SECONDS
    rank = np.argsort(seconds, kind="stable")  # by time; ties stay in customer order
    order = np.flatnonzero(keep)[rank]
    seconds = seconds[rank]
    cust, day, amount, terminal = cust[order], day[order], amount[order], terminal[order]
    n = len(seconds)

    # scenario 1: big amounts
    fraud = (amount > SCENARIO_1_AMOUNT).astype(np.int64)
    scenario = fraud.copy()
    compromise_days = int(day.max()) if n else 0  # the handbook's range(TX_TIME_DAYS.max())

    # scenario 2: two terminals a day, all their transactions for 28 days
    term_events = _draw_distinct(s2_rng, terminals, TERMINALS_PER_DAY, compromise_days)
    window = np.zeros((terminals, days + 1), dtype=np.int32)
    np.add.at(window, (term_events[:, 1], term_events[:, 0]), 1)
    ends = np.minimum(term_events[:, 0] + TERMINAL_DAYS, days)
    np.add.at(window, (term_events[:, 1], ends), -1)
    hit = np.cumsum(window, axis=1)[terminal, day] > 0
    fraud[hit] = 1
    scenario[hit] = 2

    # scenario 3: three customers a day, a third of their transactions for 14 days, amount x5
    cust_events = _draw_distinct(s3_rng, customers, CUSTOMERS_PER_DAY, compromise_days)
    by_customer = np.argsort(cust, kind="stable")  # per customer, in time order
    starts = np.searchsorted(cust[by_customer], np.arange(customers + 1))
    for d in range(compromise_days):
        pools = []
        for c in cust_events[cust_events[:, 0] == d, 1]:
            rows = by_customer[starts[c] : starts[c + 1]]
            lo, hi = np.searchsorted(day[rows], (d, d + CUSTOMER_DAYS))
            pools.append(rows[lo:hi])
        pool = np.sort(np.concatenate(pools)) if pools else np.zeros(0, np.int64)
        chosen = pool[s3_rng.choice(len(pool), size=len(pool) // CUSTOMER_SHARE, replace=False)]
        amount[chosen] = amount[chosen] * CUSTOMER_FACTOR
        fraud[chosen] = 1
        scenario[chosen] = 3

    origin = pd.Timestamp(start).as_unit("ns").to_datetime64()
    frame = pd.DataFrame(
        {
            "TRANSACTION_ID": _text_ids(np.arange(n)),
            "TX_DATETIME": origin + seconds.astype("timedelta64[s]").astype("timedelta64[ns]"),
            "CUSTOMER_ID": _text_ids(cust),
            "TERMINAL_ID": _text_ids(terminal),
            "TX_AMOUNT": amount,
            "TX_TIME_SECONDS": seconds,
            "TX_TIME_DAYS": day,
            "TX_FRAUD": fraud,
            "TX_FRAUD_SCENARIO": scenario,
        },
        columns=list(COLUMNS),
    )
    customer_table = pd.DataFrame(
        {
            "CUSTOMER_ID": _text_ids(np.arange(customers)),
            "x_customer_id": cust_xy[:, 0],
            "y_customer_id": cust_xy[:, 1],
            "mean_amount": mean_amount,
            "std_amount": std_amount,
            "mean_nb_tx_per_day": tx_per_day,
            "nb_terminals": n_terms,
        }
    )
    terminal_table = pd.DataFrame(
        {
            "TERMINAL_ID": _text_ids(np.arange(terminals)),
            "x_terminal_id": term_xy[:, 0],
            "y_terminal_id": term_xy[:, 1],
        }
    )
    return Simulation(frame, customer_table, terminal_table, term_events, cust_events)


def generate(
    customers: int = 5000,
    terminals: int = 10000,
    days: int = 183,
    start: str = "2018-04-01",
    seed: int = 0,
) -> pd.DataFrame:
    """The labelled transactions table (COLUMNS) for these arguments; deterministic per seed."""
    return simulate(customers, terminals, days, start, seed).transactions


def summary(frame: pd.DataFrame) -> str:
    """Rows, fraud rate and how many frauds each scenario labelled."""
    rate = float(frame["TX_FRAUD"].mean()) if len(frame) else float("nan")
    counts = frame["TX_FRAUD_SCENARIO"].value_counts().reindex([1, 2, 3], fill_value=0)
    names = {1: "amount > 220", 2: "compromised terminal", 3: "compromised customer"}
    lines = [
        f"rows           {len(frame):,}",
        f"frauds         {int(frame['TX_FRAUD'].sum()):,}   fraud rate {rate:.3%}",
    ]
    lines += [f"scenario {k}     {int(counts[k]):,}   ({names[k]})" for k in (1, 2, 3)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="Parquet file to write")
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--terminals", type=int, default=10000)
    parser.add_argument("--days", type=int, default=183)
    parser.add_argument("--start", default="2018-04-01", help="first day (YYYY-MM-DD)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if __package__ in (None, ""):  # run as a script: make the project importable
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from data.load import write_parquet_atomic

    began = time.perf_counter()
    frame = generate(args.customers, args.terminals, args.days, args.start, args.seed)
    took = time.perf_counter() - began
    path = write_parquet_atomic(frame, args.out)
    print(f"wrote {path} in {took:.1f} s (generation) + {time.perf_counter() - began - took:.1f} s")
    print(summary(frame))
    return 0


if __name__ == "__main__":
    sys.exit(main())
