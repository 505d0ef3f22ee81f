"""The data scientist's own notebook on the handbook data, to set beside riskgate's figures.

    python benchmarks/handbook_notebook.py

The Fraud Detection Handbook's baseline notebook (its chapter "Baseline feature
transformation"), re-done in pandas on `benchmarks/handbook_data.py`'s data: 15 features
(amount, weekend, night; the customer's count and mean amount over 1, 7 and 30 days, the
payment included as the handbook does; the terminal's count and fraud rate over 1, 7 and 30
days ending one 7-day label delay before the payment), a library-default LightGBM, the same
split as `bench_datasets.py` (train week 2018-07-25 .. 31, delay week, test week 2018-08-08 ..
14). Prints test AP, ROC-AUC and recall at 1% and 2% of payments reviewed. Not a test: nothing
here asserts; about 20 seconds.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd

DELAY_DAYS = 7
WINDOWS = (1, 7, 30)
TRAIN = ("2018-07-25", "2018-08-01")  # [start, end)
TEST = ("2018-08-08", "2018-08-15")


def _rolling(frame: pd.DataFrame, key: str, column: str, days: int) -> tuple[np.ndarray, ...]:
    """Per row (frame order, sorted by time): count and sum of `column` over the key's
    payments in the `days` ending at this one, itself included."""
    g = frame.set_index("TX_DATETIME").groupby(key, sort=True)[column].rolling(f"{days}D")
    # groupby-rolling returns rows by (key, time): put them back in the frame's order
    order = np.lexsort((np.arange(len(frame)), frame[key].to_numpy()))
    count, total = np.empty(len(frame)), np.empty(len(frame))
    count[order] = g.count().to_numpy()
    total[order] = g.sum().to_numpy()
    return count, total


def textbook_features(raw: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The handbook's 15 baseline features, leak-free: the terminal's fraud rate counts only
    payments older than the label delay."""
    df = raw.assign(TX_DATETIME=pd.to_datetime(raw["TX_DATETIME"]))
    df = df.sort_values("TX_DATETIME", kind="stable").reset_index(drop=True)
    df["weekend"] = (df["TX_DATETIME"].dt.day_of_week >= 5).astype(int)
    df["night"] = (df["TX_DATETIME"].dt.hour <= 6).astype(int)
    names = ["TX_AMOUNT", "weekend", "night"]
    for w in WINDOWS:
        count, total = _rolling(df, "CUSTOMER_ID", "TX_AMOUNT", w)
        df[f"customer_nb_tx_{w}d"], df[f"customer_avg_amount_{w}d"] = count, total / count
        names += [f"customer_nb_tx_{w}d", f"customer_avg_amount_{w}d"]
    n_delay, f_delay = _rolling(df, "TERMINAL_ID", "TX_FRAUD", DELAY_DAYS)
    for w in WINDOWS:
        n_all, f_all = _rolling(df, "TERMINAL_ID", "TX_FRAUD", DELAY_DAYS + w)
        n, f = n_all - n_delay, f_all - f_delay
        df[f"terminal_nb_tx_{w}d"] = n
        df[f"terminal_risk_{w}d"] = np.where(n > 0, f / np.maximum(n, 1), 0.0)
        names += [f"terminal_nb_tx_{w}d", f"terminal_risk_{w}d"]
    return df, names


def scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    top = np.argsort(-p, kind="stable")
    recall = {
        f"recall_at_{k}pct": float(y[top[: int(k / 100 * len(y))]].sum() / y.sum()) for k in (1, 2)
    }
    return {
        "average_precision": float(average_precision_score(y, p)),
        "roc_auc": float(roc_auc_score(y, p)),
        **recall,
    }


def main() -> int:
    import lightgbm as lgb

    from benchmarks.handbook_data import generate

    began = time.perf_counter()
    df, names = textbook_features(generate())
    train = df[(df["TX_DATETIME"] >= TRAIN[0]) & (df["TX_DATETIME"] < TRAIN[1])]
    test = df[(df["TX_DATETIME"] >= TEST[0]) & (df["TX_DATETIME"] < TEST[1])]
    model = lgb.LGBMClassifier(n_jobs=1, verbose=-1, random_state=0)
    model.fit(train[names], train["TX_FRAUD"])
    m = scores(test["TX_FRAUD"].to_numpy(), model.predict_proba(test[names])[:, 1])
    print(
        f"textbook notebook ({len(names)} features, default LightGBM), handbook data: "
        f"train {len(train):,} rows ({int(train['TX_FRAUD'].sum())} frauds), "
        f"test {len(test):,} rows ({int(test['TX_FRAUD'].sum())} frauds)"
    )
    print(
        f"AP {m['average_precision']:.3f}  ROC-AUC {m['roc_auc']:.3f}  "
        f"recall@1% {m['recall_at_1pct']:.1%}  recall@2% {m['recall_at_2pct']:.1%}  "
        f"({time.perf_counter() - began:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
