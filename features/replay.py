"""Replay a contract frame through the online executor, as the service would have seen it.

Payments and their label events are merged in time order; a label counts for a payment when its
label_time is not after the payment's timestamp, so labels at the same instant go first (except
a label at its own payment's instant, which must follow that payment). Used by the parity test
and the benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from features.batch import optional_ns, to_ns
from features.online import OnlineFeatures, prepare
from features.registry import Feature, available
from features.state import MemoryState, StateStore


def event_stream(frame: pd.DataFrame) -> pd.DataFrame:
    """(time, order, kind, row) for every payment and every label of a validated frame."""
    ts = to_ns(frame["timestamp"])
    n = len(frame)
    payments = pd.DataFrame(
        {
            "time": ts,
            "order": 1,
            "kind": "payment",
            "row": np.arange(n),
            "id": frame["transaction_id"],
        }
    )
    parts = [payments]
    if "label_time" in frame.columns and "is_fraud" in frame.columns:
        labelled = np.flatnonzero(frame["label_time"].notna().to_numpy())
        lt = optional_ns(frame["label_time"])[labelled].astype(np.int64)
        after_own = lt > ts[labelled]
        parts.append(
            pd.DataFrame(
                {
                    "time": lt,
                    "order": np.where(after_own, 0, 2),
                    "kind": "label",
                    "row": labelled,
                    "id": frame["transaction_id"].to_numpy()[labelled],
                }
            )
        )
    events = pd.concat(parts, ignore_index=True)
    return events.sort_values(["time", "order", "id"], kind="stable").reset_index(drop=True)


def replay(
    frame: pd.DataFrame,
    features: Sequence[Feature] | None = None,
    store: StateStore | None = None,
    progress: Callable[[int], None] | None = None,
    compiled: bool | None = None,
) -> pd.DataFrame:
    """Online feature values for every payment of `frame`, in the frame's row order.
    `compiled`: as OnlineFeatures takes it (None: the C walk when built)."""
    frame = frame.reset_index(drop=True)
    if features is None:
        features = available(frame.columns).features
    online = OnlineFeatures(
        store if store is not None else MemoryState(), features, compiled=compiled
    )
    records = frame.to_dict("records")
    prepared = [prepare({str(k): v for k, v in r.items()}) for r in records]
    out = np.full((len(frame), len(features)), np.nan)
    is_fraud = (
        frame["is_fraud"].to_numpy(dtype=np.float64, na_value=np.nan)
        if "is_fraud" in frame
        else None
    )
    events = event_stream(frame)
    for k, (time, kind, row) in enumerate(
        zip(
            events["time"].to_numpy(),
            events["kind"].to_numpy(),
            events["row"].to_numpy(),
            strict=True,
        )
    ):
        if kind == "payment":
            out[row] = online.compute_and_update(prepared[row])
        else:
            assert is_fraud is not None
            online.apply_label(
                str(records[row]["transaction_id"]), bool(is_fraud[row] == 1), int(time)
            )
        if progress is not None and k % 10_000 == 0:
            progress(k)
    result = pd.DataFrame(out, columns=[f.name for f in features])
    result.insert(0, "transaction_id", frame["transaction_id"].to_numpy())
    return result
