"""benchmarks/handbook_data.py: the Fraud Detection Handbook's simulator, at a small size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.handbook_data import (
    COLUMNS,
    CUSTOMER_DAYS,
    TERMINAL_DAYS,
    generate,
    main,
    simulate,
)
from data.load import load

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"customers": 200, "terminals": 400, "days": 30}


@pytest.fixture(scope="module")
def sim():
    return simulate(**SMALL, seed=3)


def test_deterministic_per_seed():
    a = generate(**SMALL, seed=5)
    pd.testing.assert_frame_equal(a, generate(**SMALL, seed=5))
    b = generate(**SMALL, seed=6)
    assert len(a) != len(b) or not a["TX_AMOUNT"].equals(b["TX_AMOUNT"])


def test_columns_and_dtypes(sim):
    f = sim.transactions
    assert tuple(f.columns) == COLUMNS
    for name in ("TRANSACTION_ID", "CUSTOMER_ID", "TERMINAL_ID"):
        assert pd.api.types.is_string_dtype(f[name]), name
    assert f["TX_DATETIME"].dtype == "datetime64[ns]"
    assert f["TX_AMOUNT"].dtype == np.float64
    for name in ("TX_TIME_SECONDS", "TX_TIME_DAYS", "TX_FRAUD", "TX_FRAUD_SCENARIO"):
        assert f[name].dtype == np.int64, name
    assert (f["TRANSACTION_ID"] == [str(i) for i in range(len(f))]).all()
    assert f["TX_TIME_SECONDS"].is_monotonic_increasing
    # time of day strictly inside the day; datetime, seconds and day agree
    tod = f["TX_TIME_SECONDS"] - f["TX_TIME_DAYS"] * 86_400
    assert tod.between(1, 86_399).all()
    assert f["TX_TIME_DAYS"].between(0, SMALL["days"] - 1).all()
    elapsed = (f["TX_DATETIME"] - pd.Timestamp("2018-04-01")).dt.total_seconds()
    assert (elapsed == f["TX_TIME_SECONDS"]).all()
    assert (f["TX_AMOUNT"] >= 0).all()
    assert set(f["TX_FRAUD_SCENARIO"].unique()) <= {0, 1, 2, 3}
    assert ((f["TX_FRAUD"] == 1) == (f["TX_FRAUD_SCENARIO"] > 0)).all()


def test_customers_use_only_terminals_within_the_radius(sim):
    f, c, t = sim.transactions, sim.customers, sim.terminals
    cx = c.set_index("CUSTOMER_ID").loc[f["CUSTOMER_ID"], ["x_customer_id", "y_customer_id"]]
    tx = t.set_index("TERMINAL_ID").loc[f["TERMINAL_ID"], ["x_terminal_id", "y_terminal_id"]]
    dist = np.hypot(
        cx.to_numpy()[:, 0] - tx.to_numpy()[:, 0], cx.to_numpy()[:, 1] - tx.to_numpy()[:, 1]
    )
    assert (dist < 5).all()
    assert (c["std_amount"] == c["mean_amount"] / 2).all()
    assert c["mean_amount"].between(5, 100).all()
    assert c["mean_nb_tx_per_day"].between(0, 4).all()


def test_scenario_1_is_exactly_the_big_amounts_not_relabelled(sim):
    f = sim.transactions
    big = f["TX_AMOUNT"] > 220
    later = f["TX_FRAUD_SCENARIO"].isin([2, 3])
    assert ((f["TX_FRAUD_SCENARIO"] == 1) == (big & ~later)).all()
    assert (f.loc[big, "TX_FRAUD"] == 1).all()  # no genuine payment above 220


def test_compromised_terminals_fraud_lies_in_their_28_day_windows(sim):
    f = sim.transactions
    events = sim.compromised_terminals
    assert len(events) == 2 * int(f["TX_TIME_DAYS"].max())
    days = f["TX_TIME_DAYS"].to_numpy()
    term = f["TERMINAL_ID"].astype(int).to_numpy()
    in_window = np.zeros(len(f), dtype=bool)
    for d, t in events:
        in_window |= (term == t) & (days >= d) & (days < d + TERMINAL_DAYS)
    scen = f["TX_FRAUD_SCENARIO"].to_numpy()
    assert (scen[~in_window] != 2).all()  # scenario 2 only inside a window
    assert (scen[in_window] >= 2).all()  # every window payment is 2 (or relabelled 3)
    assert (scen == 2).sum() > 0


def test_compromised_customers_lose_about_a_third_with_amount_x5(sim):
    f = sim.transactions
    days = f["TX_TIME_DAYS"].to_numpy()
    cust = f["CUSTOMER_ID"].astype(int).to_numpy()
    in_window = np.zeros(len(f), dtype=bool)
    for d, c in sim.compromised_customers:
        in_window |= (cust == c) & (days >= d) & (days < d + CUSTOMER_DAYS)
    scen3 = f["TX_FRAUD_SCENARIO"].to_numpy() == 3
    assert not (scen3 & ~in_window).any()
    assert 0.2 < scen3.sum() / in_window.sum() < 0.5
    # x5: scenario-3 amounts are far above their customers' usual amounts
    mean = sim.customers.set_index("CUSTOMER_ID")["mean_amount"]
    ratio = f.loc[scen3, "TX_AMOUNT"].to_numpy() / mean.loc[f.loc[scen3, "CUSTOMER_ID"]].to_numpy()
    assert np.median(ratio) > 3


def test_fraud_rate_is_plausible(sim):
    # at this size 2 of 400 terminals and 3 of 200 customers a day are compromised, so far more
    # of the traffic is fraud than the handbook's 0.8% at 5,000 customers and 10,000 terminals
    rate = sim.transactions["TX_FRAUD"].mean()
    assert 0.04 < rate < 0.25
    rows_per_day = len(sim.transactions) / SMALL["days"]
    expected = 2 * SMALL["customers"] * 0.97  # mean 2 a day, ~3% of times fall outside the day
    assert 0.8 * expected < rows_per_day < 1.2 * expected


def test_cli_writes_parquet_that_loads_through_the_mapping(tmp_path, capsys):
    out = tmp_path / "hb.parquet"
    assert main(["--out", str(out), "--customers", "50", "--terminals", "100", "--days", "10"]) == 0
    printed = capsys.readouterr().out
    assert "fraud rate" in printed
    assert "scenario 2" in printed
    frame = load(out, ROOT / "benchmarks" / "handbook.toml")
    assert len(frame) == len(pd.read_parquet(out))
    assert frame["currency"].eq("EUR").all()
    assert (frame["card_id"] == frame["customer_id"]).all()
    fraud = frame["is_fraud"] == 1
    delay = frame.loc[fraud, "label_time"] - frame.loc[fraud, "timestamp"]
    assert (delay == pd.Timedelta(days=7)).all()
