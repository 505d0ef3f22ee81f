"""Time-ordered train / gap / validation / gap / test periods.

Fraud labels arrive days after the payment, so a random split leaks the future and a split with
no gap trains on labels that were not known yet. Each gap is at least the label delay.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class Split:
    """Half-open periods [start, end). Labels for fitting are those known by `fit_known_by`."""

    train_start: pd.Timestamp
    train_end: pd.Timestamp
    valid_start: pd.Timestamp
    valid_end: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp

    @property
    def fit_known_by(self) -> pd.Timestamp:
        return self.train_end

    @property
    def valid_known_by(self) -> pd.Timestamp:
        return self.test_start

    def as_params(self) -> dict[str, str]:
        return {k: str(getattr(self, k)) for k in self.__dataclass_fields__}


def plan(
    timestamps: pd.Series,
    label_delay: pd.Timedelta,
    *,
    test_share: float = 0.2,
    valid_share: float = 0.15,
    train_start: pd.Timestamp | None = None,
    train_end: pd.Timestamp | None = None,
    test_start: pd.Timestamp | None = None,
    test_end: pd.Timestamp | None = None,
) -> Split:
    """Periods from the data's span (whole days) or from explicit dates; errors say what is off.

    Given explicit train and test periods, validation is the last part of the training period,
    after a gap of the label delay.
    """
    if label_delay < pd.Timedelta(0):
        raise ValueError(f"the label delay must not be negative, got {label_delay}")
    lo = timestamps.min().floor("D")
    hi = timestamps.max().floor("D") + DAY
    explicit = [train_start, train_end, test_start, test_end]
    if any(x is not None for x in explicit):
        if any(x is None for x in explicit):
            raise ValueError("give all of --train-start, --train-end, --test-start, --test-end")
        assert train_start
        assert train_end
        assert test_start
        assert test_end
        if not train_start < train_end <= test_start < test_end:
            raise ValueError(
                "periods must satisfy train-start < train-end <= test-start < test-end"
            )
        if test_start - train_end < label_delay:
            raise ValueError(
                f"gap between train-end and test-start ({test_start - train_end}) is shorter "
                f"than the label delay ({label_delay})"
            )
        span = train_end - train_start
        valid_len = (span * valid_share / (1 - test_share)).ceil("D")
        valid_start = train_end - valid_len
        fit_end = valid_start - label_delay
        if fit_end - train_start < 7 * DAY:
            raise ValueError("training period too short for a validation part and a gap")
        return Split(train_start, fit_end, valid_start, train_end, test_start, test_end)

    days = (hi - lo) / DAY
    gap_days = int(np.ceil(label_delay / DAY))
    test_days = max(1, round(days * test_share))
    valid_days = max(1, round(days * valid_share))
    train_days = days - test_days - valid_days - 2 * gap_days
    if train_days < 7:
        raise ValueError(
            f"{days:.0f} days of data are too few: need >= 7 training days plus validation, test "
            f"and two gaps of {gap_days} days (the label delay)"
        )
    test_start = hi - test_days * DAY
    valid_end = test_start - gap_days * DAY
    valid_start = valid_end - valid_days * DAY
    fit_end = valid_start - gap_days * DAY
    return Split(lo, fit_end, valid_start, valid_end, test_start, hi)


def part_of(timestamps: pd.Series, split: Split) -> np.ndarray:
    """'train' | 'valid' | 'test' | 'gap' for each payment."""
    ts = timestamps
    out = np.full(len(ts), "gap", dtype=object)
    out[((ts >= split.train_start) & (ts < split.train_end)).to_numpy()] = "train"
    out[((ts >= split.valid_start) & (ts < split.valid_end)).to_numpy()] = "valid"
    out[((ts >= split.test_start) & (ts < split.test_end)).to_numpy()] = "test"
    return out


def known_labels(frame: pd.DataFrame, known_by: pd.Timestamp) -> np.ndarray:
    """Fraud labels as they were known at `known_by`: a chargeback not yet arrived reads genuine."""
    fraud = frame["is_fraud"].to_numpy(dtype=np.float64, na_value=0.0) == 1
    if "label_time" in frame.columns:
        lt = frame["label_time"]
        fraud &= (lt.notna() & (lt <= known_by)).to_numpy()
    return fraud.astype(np.int8)
