"""Labels that come back from the service (review decisions, chargebacks) merged into training data.

A payment may collect several label events. Fraud wins (a chargeback after an approval means
the approval was wrong); the label time is the earliest event that says what the final label
says, because that is when the truth was first known.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data.schema import Problem, ValidationError, _show

LABEL_COLUMNS = ("transaction_id", "is_fraud", "label_time")


def validate_labels(labels: pd.DataFrame, source: str) -> pd.DataFrame:
    missing = [c for c in LABEL_COLUMNS if c not in labels.columns]
    if missing:
        raise ValidationError(
            [Problem(source, None, c, "required column is missing") for c in missing]
        )
    out = labels[list(LABEL_COLUMNS)].copy()
    out["transaction_id"] = out["transaction_id"].astype("str")
    out["label_time"] = pd.to_datetime(
        out["label_time"], utc=True, errors="coerce", format="ISO8601"
    )
    fraud = pd.to_numeric(out["is_fraud"], errors="coerce")
    problems = [
        Problem(
            source, int(i) + 1, "is_fraud", f"{_show(labels['is_fraud'].iloc[i])!r} is not 0 or 1"
        )
        for i in np.flatnonzero(~fraud.isin([0, 1]).to_numpy())[:20]
    ] + [
        Problem(source, int(i) + 1, "label_time", "not a timestamp")
        for i in np.flatnonzero(out["label_time"].isna().to_numpy())[:20]
    ]
    if problems:
        raise ValidationError(problems)
    out["is_fraud"] = fraud.astype("int8")
    return out


def merge_labels(
    frame: pd.DataFrame, labels: pd.DataFrame, source: str = "<labels>"
) -> pd.DataFrame:
    """The frame with label events merged in by transaction_id (unknown ids are ignored).

    A label event before its payment's timestamp is refused (it would break the contract)."""
    paid_at = frame.set_index("transaction_id")["timestamp"]
    when = labels["transaction_id"].map(paid_at)
    early = np.flatnonzero((when.notna() & (labels["label_time"] < when)).to_numpy())
    if len(early):
        raise ValidationError(
            [
                Problem(
                    source, int(i) + 1, "label_time", "label_time is before the payment's timestamp"
                )
                for i in early[:20]
            ]
        )
    events = [labels[list(LABEL_COLUMNS)]]
    if "is_fraud" in frame.columns:
        own = frame.loc[frame["is_fraud"].notna(), ["transaction_id", "is_fraud"]].copy()
        own["label_time"] = frame.loc[own.index, "label_time"] if "label_time" in frame else pd.NaT
        events.append(own)
    allev = pd.concat(events, ignore_index=True)
    allev["is_fraud"] = allev["is_fraud"].astype("int8")
    final = allev.groupby("transaction_id")["is_fraud"].max().rename("final")
    allev = allev.join(final, on="transaction_id")
    agree = allev[allev["is_fraud"] == allev["final"]]
    first_time = agree.groupby("transaction_id")["label_time"].min()
    out = frame.copy()
    ids = out["transaction_id"]
    known = ids.isin(final.index)
    out["is_fraud"] = ids.map(final).where(known, out.get("is_fraud", pd.NA)).astype("Int8")
    lt_existing = out["label_time"] if "label_time" in out else pd.Series(pd.NaT, index=out.index)
    out["label_time"] = ids.map(first_time).where(known, lt_existing).astype("datetime64[ns, UTC]")
    return out
