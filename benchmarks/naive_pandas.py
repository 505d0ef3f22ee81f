"""The textbook pandas way to compute card velocity features, as a benchmark baseline.

Per-card, time-based rolling windows with `closed="left"` (the current payment excluded): the
count and mean amount of each card's earlier payments in the last 1 h, 24 h, 7 d and 30 d.

It is only a baseline for timing. Its windows differ from riskgate's point-in-time rules at the
edges: `closed="left"` makes the window [t - w, t), so a payment exactly `w` old is included
(riskgate: excluded), and payments at the same instant never see each other (riskgate: a tie
with a smaller transaction_id is seen). `agreement` measures how often that matters.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

WINDOWS: tuple[str, ...] = ("1h", "24h", "7d", "30d")


def card_count_mean(frame: pd.DataFrame, windows: tuple[str, ...] = WINDOWS) -> pd.DataFrame:
    """card_count_<w> and card_mean_<w> per payment, in the frame's row order.

    Rows are sorted by (card_id, timestamp) rather than by timestamp alone: the rolling windows
    are the same (time order within each card), but then the grouped result comes back in the
    sorted frame's order, so it can be put back into the input's row order by position.
    """
    df = frame[["card_id", "timestamp", "amount"]].reset_index(drop=True)
    df = df.sort_values(["card_id", "timestamp"], kind="stable")
    rows = df.index.to_numpy()
    out: dict[str, np.ndarray] = {}
    for w in windows:
        rolled = (
            df.groupby("card_id", sort=True)
            .rolling(w, on="timestamp", closed="left")["amount"]
            .agg(["count", "mean"])
        )
        if not np.array_equal(rolled.index.get_level_values(0), df["card_id"].to_numpy()):
            raise AssertionError("grouped result is not in (card_id, timestamp) order")
        count = np.empty(len(df))
        mean = np.empty(len(df))
        count[rows] = rolled["count"].fillna(0.0).to_numpy()  # empty windows come back NaN
        mean[rows] = rolled["mean"].to_numpy()
        out[f"card_count_{w}"] = count
        out[f"card_mean_{w}"] = mean
    result = pd.DataFrame(out)
    result.insert(0, "transaction_id", frame["transaction_id"].to_numpy())
    return result


def card_count_mean_apply(frame: pd.DataFrame, windows: tuple[str, ...] = WINDOWS) -> pd.DataFrame:
    """The textbook way (Fraud Detection Handbook, "customer spending behaviour features"):
    `groupby(entity).apply(f)` where `f` sorts one entity's payments and runs a time-based
    rolling count and mean per window, excluding the current payment."""

    def per_card(g: pd.DataFrame) -> pd.DataFrame:
        g = g.sort_values("timestamp").set_index("timestamp")
        out = pd.DataFrame(index=g.index)
        out["row"] = g["row"].to_numpy()
        for w in windows:
            rolled = g["amount"].rolling(w, closed="left")
            out[f"card_count_{w}"] = rolled.count().fillna(0.0).to_numpy()
            out[f"card_mean_{w}"] = rolled.mean().to_numpy()
        return out.reset_index(drop=True)

    df = frame[["card_id", "timestamp", "amount"]].reset_index(drop=True)
    df["row"] = np.arange(len(df))
    parts = df.groupby("card_id", sort=False)[["timestamp", "amount", "row"]].apply(per_card)
    parts = parts.sort_values("row")
    result = parts.drop(columns="row").reset_index(drop=True)
    result.insert(0, "transaction_id", frame["transaction_id"].to_numpy())
    return result


def agreement(naive: pd.DataFrame, batch: pd.DataFrame, windows: tuple[str, ...] = WINDOWS) -> dict:
    """Share of payments where the naive count (and mean) equals riskgate's batch values.

    `batch` must hold card_count_<w> and card_sum_<w> for the same rows in the same order.
    """
    shares: dict[str, float] = {}
    for w in windows:
        count = batch[f"card_count_{w}"].to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.where(count > 0, batch[f"card_sum_{w}"].to_numpy() / count, np.nan)
        same_count = naive[f"card_count_{w}"].to_numpy() == count
        same_mean = np.isclose(naive[f"card_mean_{w}"].to_numpy(), mean, rtol=1e-9, equal_nan=True)
        shares[w] = float(np.mean(same_count & same_mean))
    return shares
