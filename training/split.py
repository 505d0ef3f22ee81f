"""Time-ordered fit / validation / gap / test periods, and the labels known at deployment.

Fraud labels arrive days after the payment, so a random split leaks the future. A model deployed
at the start of the test period knows the payments before it and the labels that had arrived by
then (`labels_as_of`, default the test start): fitting and validation use exactly those, and a
payment too young for its label to be known is left out rather than read as genuine. Nothing the
model sees was unknown at the deployment moment, so no extra gap is needed for leak-freedom.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

DAY = pd.Timedelta(days=1)
# Fewest days the automatic or carved fitting part may have before folds take over.
MIN_FIT_DAYS = 7
FOLDS = 3
_DATE_ONLY = re.compile(r"^\s*\d{4}-\d{2}-\d{2}\s*$")

Selection = Literal["validation", "folds"]


def bound(text: str, *, end: bool) -> pd.Timestamp:
    """A period boundary from the command line (UTC). A date-only END is inclusive: the whole
    day belongs to the period, so `--test-end 2018-08-14` ends at 2018-08-15 00:00."""
    try:
        ts = pd.Timestamp(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date") from None
    if ts is pd.NaT:
        raise ValueError(f"{text!r} is not a date")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    if end and _DATE_ONLY.match(text):
        ts = ts + DAY
    return ts


@dataclass(frozen=True)
class Split:
    """Half-open periods [start, end). `train_*` is the part the booster is fitted on.

    With `selection="folds"` there is no separate validation period (`valid_start ==
    valid_end`): the number of trees and the calibration come from time-ordered folds inside the
    fitting part. Labels for fitting and validation are those known by `labels_as_of`.
    """

    train_start: pd.Timestamp
    train_end: pd.Timestamp
    valid_start: pd.Timestamp
    valid_end: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp
    labels_as_of: pd.Timestamp | None = None
    selection: Selection = "validation"

    @property
    def known_by(self) -> pd.Timestamp:
        return self.labels_as_of if self.labels_as_of is not None else self.test_start

    @property
    def fit_known_by(self) -> pd.Timestamp:
        return self.known_by

    @property
    def valid_known_by(self) -> pd.Timestamp:
        return self.known_by

    def as_params(self) -> dict[str, str]:
        out = {k: str(getattr(self, k)) for k in self.__dataclass_fields__}
        out["labels_as_of"] = str(self.known_by)
        return out


def _check_order(
    train_start: pd.Timestamp,
    train_end: pd.Timestamp,
    test_start: pd.Timestamp,
    test_end: pd.Timestamp,
) -> None:
    if not train_start < train_end <= test_start < test_end:
        raise ValueError("periods must satisfy train-start < train-end <= test-start < test-end")


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
    valid_start: pd.Timestamp | None = None,
    valid_end: pd.Timestamp | None = None,
    labels_as_of: pd.Timestamp | None = None,
) -> Split:
    """Periods from the data's span (whole days) or from explicit dates; errors say what is off.

    Explicit train and test periods without a validation period: validation is carved from the
    end of the training period when the rest still spans MIN_FIT_DAYS; otherwise the number of
    trees is chosen by time-ordered folds inside the training period (`selection="folds"`).
    """
    if label_delay < pd.Timedelta(0):
        raise ValueError(f"the label delay must not be negative, got {label_delay}")
    if (valid_start is None) != (valid_end is None):
        raise ValueError("give both --valid-start and --valid-end, or neither")
    explicit = [train_start, train_end, test_start, test_end]
    if any(x is not None for x in explicit):
        if any(x is None for x in explicit):
            raise ValueError("give all of --train-start, --train-end, --test-start, --test-end")
        assert train_start is not None
        assert train_end is not None
        assert test_start is not None
        assert test_end is not None
        _check_order(train_start, train_end, test_start, test_end)
        known_by = labels_as_of if labels_as_of is not None else test_start
        split = _explicit(
            train_start,
            train_end,
            test_start,
            test_end,
            valid_share,
            test_share,
            valid_start,
            valid_end,
            min(train_end, known_by - label_delay),
        )
    else:
        if valid_start is not None:
            raise ValueError("--valid-start/--valid-end need the four train/test dates too")
        split = _automatic(timestamps, label_delay, test_share, valid_share)
    return _with_labels_as_of(split, labels_as_of)


def _explicit(
    train_start: pd.Timestamp,
    train_end: pd.Timestamp,
    test_start: pd.Timestamp,
    test_end: pd.Timestamp,
    valid_share: float,
    test_share: float,
    valid_start: pd.Timestamp | None,
    valid_end: pd.Timestamp | None,
    mature_end: pd.Timestamp,
) -> Split:
    """`mature_end`: payments before it have labels known at deployment; a carved validation
    period ends there, so that it is scored on known labels."""
    if valid_start is not None and valid_end is not None:
        if not valid_start < valid_end:
            raise ValueError("--valid-start must be before --valid-end")
        if valid_start < train_start or valid_end > test_start:
            raise ValueError(
                "the validation period must lie within train-start .. test-start "
                f"(got {valid_start} .. {valid_end})"
            )
        # Validation inside the training period cuts the fitting part short at its start.
        fit_end = min(train_end, valid_start)
        if fit_end <= train_start:
            raise ValueError("the validation period leaves no fitting part before it")
        return Split(train_start, fit_end, valid_start, valid_end, test_start, test_end)
    span = train_end - train_start
    valid_len = (span * valid_share / (1 - test_share)).ceil("D")
    carved_start = mature_end - valid_len
    if carved_start - train_start >= MIN_FIT_DAYS * DAY:
        return Split(train_start, carved_start, carved_start, mature_end, test_start, test_end)
    return folds_over(train_start, train_end, test_start, test_end)


def folds_over(
    train_start: pd.Timestamp,
    train_end: pd.Timestamp,
    test_start: pd.Timestamp,
    test_end: pd.Timestamp,
    labels_as_of: pd.Timestamp | None = None,
) -> Split:
    """The whole training period fitted, the trees chosen by time-ordered folds inside it."""
    return Split(
        train_start, train_end, train_end, train_end, test_start, test_end, labels_as_of, "folds"
    )


def _automatic(
    timestamps: pd.Series, label_delay: pd.Timedelta, test_share: float, valid_share: float
) -> Split:
    lo = timestamps.min().floor("D")
    hi = timestamps.max().floor("D") + DAY
    days = (hi - lo) / DAY
    gap_days = int(np.ceil(label_delay / DAY))
    test_days = max(1, round(days * test_share))
    valid_days = max(1, round(days * valid_share))
    train_days = days - test_days - valid_days - gap_days
    if train_days < MIN_FIT_DAYS:
        raise ValueError(
            f"{days:.0f} days of data are too few: need >= {MIN_FIT_DAYS} training days plus "
            f"validation, test and a gap of {gap_days} days (the label delay) before the test, so "
            "that validation labels are known at deployment; or give the periods explicitly "
            "(--train-start ... --test-end), where short training periods use time-ordered folds"
        )
    test_start = hi - test_days * DAY
    valid_end = test_start - gap_days * DAY
    valid_start = valid_end - valid_days * DAY
    return Split(lo, valid_start, valid_start, valid_end, test_start, hi)


def _with_labels_as_of(split: Split, labels_as_of: pd.Timestamp | None) -> Split:
    if labels_as_of is None:
        return split
    if labels_as_of > split.test_start:
        raise ValueError(
            f"--labels-as-of {labels_as_of} is after the test start {split.test_start}: a model "
            "deployed at the test start cannot know later labels"
        )
    if labels_as_of <= split.train_start:
        raise ValueError(f"--labels-as-of {labels_as_of} is not after the training start")
    return Split(
        split.train_start,
        split.train_end,
        split.valid_start,
        split.valid_end,
        split.test_start,
        split.test_end,
        labels_as_of,
        split.selection,
    )


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


def label_knowable(
    frame: pd.DataFrame, known_by: pd.Timestamp, label_delay: pd.Timedelta
) -> np.ndarray:
    """Payments whose label a model deployed at `known_by` can know: at least one label delay
    old by then, or already known as fraud. Younger payments are left out of fitting rather
    than read as genuine. Data without label times has final labels: every payment counts."""
    if "label_time" not in frame.columns:
        return np.ones(len(frame), dtype=bool)
    mature = (frame["timestamp"] + label_delay <= known_by).to_numpy()
    return mature | known_labels(frame, known_by).astype(bool)


def time_folds(timestamps: np.ndarray, k: int = FOLDS) -> list[tuple[np.ndarray, np.ndarray]]:
    """Expanding-window folds over rows in time order: k+1 equal-count blocks; fold i fits on
    blocks 0..i-1 and validates on block i. Returns (fit positions, valid positions) pairs."""
    order = np.argsort(timestamps, kind="stable")
    blocks = np.array_split(order, k + 1)
    return [(np.sort(np.concatenate(blocks[:i])), np.sort(blocks[i])) for i in range(1, k + 1)]


@dataclass(frozen=True)
class Period:
    """One line of the periods table printed before fitting."""

    name: str
    start: pd.Timestamp
    end: pd.Timestamp
    rows: int
    fraud: int  # frauds as labelled in the data (test: final labels)
    used: int  # rows that enter fitting / validation (labels knowable at deployment)
    fraud_known: int  # frauds known at deployment among them


def describe(frame: pd.DataFrame, split: Split, label_delay: pd.Timedelta) -> list[Period]:
    """Fit, gap, validation, gap, test: what each holds and what the model may use of it."""
    ts = frame["timestamp"]
    fraud = frame["is_fraud"].to_numpy(dtype=np.float64, na_value=0.0) == 1
    knowable = label_knowable(frame, split.known_by, label_delay)
    known = known_labels(frame, split.known_by).astype(bool)
    spans: list[tuple[str, pd.Timestamp, pd.Timestamp, bool]] = [
        ("fit", split.train_start, split.train_end, True)
    ]
    if split.selection == "validation":
        if split.valid_start > split.train_end:
            spans.append(("gap", split.train_end, split.valid_start, False))
        spans.append(("validation", split.valid_start, split.valid_end, True))
        last = split.valid_end
    else:
        last = split.train_end
    if split.test_start > last:
        spans.append(("gap", last, split.test_start, False))
    spans.append(("test", split.test_start, split.test_end, False))
    out = []
    for name, start, end, uses_labels in spans:
        m = ((ts >= start) & (ts < end)).to_numpy()
        used = m & knowable if uses_labels else (m if name == "test" else np.zeros_like(m))
        out.append(
            Period(
                name,
                start,
                end,
                int(m.sum()),
                int((m & fraud).sum()),
                int(used.sum()),
                int((used & known).sum()) if uses_labels else int((used & fraud).sum()),
            )
        )
    return out
