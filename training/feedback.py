"""Labels that come back from the service (review decisions, chargebacks) merged into training data.

A payment may collect several label events. Fraud wins (a chargeback after an approval means
the approval was wrong); the label time is the earliest event that says what the final label
says, because that is when the truth was first known.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from data.load import read_table
from data.schema import Problem, ValidationError, _show

LABEL_COLUMNS = ("transaction_id", "is_fraud", "label_time")


def read_labels(path: str | Path) -> pd.DataFrame:
    """A label file: CSV or Parquet, or the JSON of `GET /labels/export` (as saved by curl)."""
    p = Path(path)
    if p.suffix.lower() != ".json":
        return read_table(p, text_columns=("transaction_id",))
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise ValidationError([Problem(str(p), None, None, "file not found")]) from None
    except json.JSONDecodeError as exc:
        raise ValidationError([Problem(str(p), None, None, f"not valid JSON: {exc}")]) from None
    rows = doc.get("labels") if isinstance(doc, dict) else doc
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValidationError(
            [Problem(str(p), None, None, 'expected {"labels": [...]} as GET /labels/export gives')]
        )
    return pd.DataFrame(rows, columns=list(rows[0]) if rows else list(LABEL_COLUMNS))


@dataclass(frozen=True)
class MergeReport:
    """What a label file did to the training data (printed by `riskgate train --labels`)."""

    events: int
    matched: int  # payments of the data that the file labels
    changed: int  # of those, payments whose label the file changed
    unmatched: int  # label events for payments not in the data
    changed_ids_digest: str = ""  # which payments changed label (see changed_ids_digest)

    def as_metrics(self) -> dict[str, float]:
        """The counts under the names the MLflow run records them (`riskgate train --labels`)."""
        return {
            "labels_events": float(self.events),
            "labels_matched": float(self.matched),
            "labels_changed": float(self.changed),
            "labels_unmatched": float(self.unmatched),
        }

    def __str__(self) -> str:
        return (
            f"labels: {self.events:,} events; {self.matched:,} payments matched, "
            f"{self.changed:,} of them changed label, {self.unmatched:,} events matched no payment"
        )


def merge_report(before: pd.DataFrame, after: pd.DataFrame, labels: pd.DataFrame) -> MergeReport:
    ids = before["transaction_id"]
    hit = labels["transaction_id"].isin(ids)
    matched = ids.isin(labels["transaction_id"])
    old = before["is_fraud"] if "is_fraud" in before else pd.Series(pd.NA, index=before.index)
    changed = matched & (old.astype("Float64").fillna(-1) != after["is_fraud"].astype("Float64"))
    return MergeReport(
        len(labels),
        int(matched.sum()),
        int(changed.sum()),
        int((~hit).sum()),
        changed_ids_digest(ids[changed]),
    )


def changed_ids_digest(ids: pd.Series | list[str]) -> str:
    """Names the set of relabelled payments without listing them (a run tag stays small, and
    anyone holding the ids can check which payments a model saw relabelled)."""
    text = "\n".join(sorted(str(i) for i in ids))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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
