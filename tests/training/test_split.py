"""Time-ordered fit / validation / gap / test periods and the labels known at deployment
(training.split: plan, part_of, bound, label_knowable, time_folds, describe)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.split import (
    DAY,
    Split,
    bound,
    describe,
    label_knowable,
    part_of,
    plan,
    time_folds,
)

START = pd.Timestamp("2024-01-01", tz="UTC")


def hourly(days: float, start: pd.Timestamp = START) -> pd.Series:
    """One payment an hour over `days` days."""
    return pd.Series(pd.date_range(start, periods=int(days * 24), freq="h"))


def boundaries(s: Split) -> list[pd.Timestamp]:
    return [s.train_start, s.train_end, s.valid_start, s.valid_end, s.test_start, s.test_end]


def assert_well_formed(s: Split, ts: pd.Series, delay: pd.Timedelta) -> None:
    assert s.train_start < s.train_end <= s.valid_start < s.valid_end <= s.test_start < s.test_end
    # validation labels are known at deployment: a label delay lies between it and the test
    assert s.test_start - s.valid_end >= delay
    parts = part_of(ts, s)
    assert set(parts) <= {"train", "valid", "gap", "test"}
    order = ["train", "valid", "test"]
    for earlier, later in itertools.pairwise(order):
        assert ts[parts == earlier].max() < ts[parts == later].min()


# --- automatic periods from the data's span --------------------------------------------------


@pytest.mark.parametrize(
    ("days", "delay"),
    [
        pytest.param(60, pd.Timedelta(days=7), id="60d-delay-7d"),
        pytest.param(90, pd.Timedelta(days=14), id="90d-delay-14d"),
        pytest.param(45, pd.Timedelta(hours=36), id="45d-delay-36h-rounded-up-to-2-days"),
        pytest.param(30, pd.Timedelta(0), id="30d-no-delay"),
    ],
)
def test_automatic_periods_are_ordered_disjoint_and_gapped_by_the_label_delay(days, delay):
    ts = hourly(days)
    s = plan(ts, delay)
    assert_well_formed(s, ts, delay)
    assert s.train_start == ts.min().floor("D")
    assert s.test_end > ts.max(), "the last payment belongs to the test period"
    assert s.train_end == s.valid_start, "labels as known at deployment need no inner gap"
    assert s.fit_known_by == s.test_start, "labels are taken as known at deployment"
    assert s.valid_known_by == s.test_start


def test_every_payment_lands_in_exactly_one_part_and_gaps_hold_only_gap_days():
    ts = hourly(60)
    s = plan(ts, pd.Timedelta(days=7))
    parts = part_of(ts, s)
    in_gap = ((ts >= s.train_end) & (ts < s.valid_start)) | (
        (ts >= s.valid_end) & (ts < s.test_start)
    )
    np.testing.assert_array_equal(parts == "gap", in_gap.to_numpy())
    for name, lo, hi in (
        ("train", s.train_start, s.train_end),
        ("valid", s.valid_start, s.valid_end),
        ("test", s.test_start, s.test_end),
    ):
        inside = ((ts >= lo) & (ts < hi)).to_numpy()
        np.testing.assert_array_equal(parts == name, inside, err_msg=name)


def test_periods_are_whole_days_and_shares_follow_the_config():
    ts = hourly(100)
    s = plan(ts, pd.Timedelta(days=5), test_share=0.3, valid_share=0.1)
    for b in boundaries(s):
        assert b == b.floor("D")
    assert (s.test_end - s.test_start) / DAY == 30
    assert (s.valid_end - s.valid_start) / DAY == 10


@settings(max_examples=60, deadline=None)
@given(
    days=st.integers(min_value=8, max_value=400),
    delay_hours=st.integers(min_value=0, max_value=40 * 24),
    test_share=st.floats(min_value=0.05, max_value=0.4),
    valid_share=st.floats(min_value=0.05, max_value=0.3),
)
def test_any_plan_that_succeeds_is_well_formed(days, delay_hours, test_share, valid_share):
    ts = hourly(days)
    delay = pd.Timedelta(hours=delay_hours)
    gap_days = -(-delay_hours // 24)
    test_days = max(1, round(days * test_share))
    valid_days = max(1, round(days * valid_share))
    if days - test_days - valid_days - gap_days < 7:
        with pytest.raises(ValueError, match="too few"):
            plan(ts, delay, test_share=test_share, valid_share=valid_share)
        return
    s = plan(ts, delay, test_share=test_share, valid_share=valid_share)
    assert_well_formed(s, ts, delay)
    assert s.train_end - s.train_start >= 7 * DAY


# --- explicit periods ----------------------------------------------------------------------


def test_explicit_periods_are_honoured_and_validation_closes_the_training_period():
    ts = hourly(90)
    delay = pd.Timedelta(days=7)
    train_start, train_end = START + 2 * DAY, START + 60 * DAY
    test_start, test_end = START + 70 * DAY, START + 85 * DAY
    s = plan(
        ts,
        delay,
        train_start=train_start,
        train_end=train_end,
        test_start=test_start,
        test_end=test_end,
    )
    assert s.train_start == train_start
    assert s.valid_end == train_end
    assert (s.test_start, s.test_end) == (test_start, test_end)
    assert s.valid_start == s.train_end, "validation closes the training period, no inner gap"
    assert s.selection == "validation"
    assert_well_formed(s, ts[(ts >= train_start) & (ts < test_end)].reset_index(drop=True), delay)
    parts = part_of(ts, s)
    outside = ((ts < train_start) | (ts >= test_end)).to_numpy()
    assert (parts[outside] == "gap").all(), "payments outside the given periods are not used"


def test_explicit_periods_allow_the_gap_to_equal_the_label_delay():
    ts = hourly(60)
    s = plan(
        ts,
        pd.Timedelta(days=7),
        train_start=START,
        train_end=START + 40 * DAY,
        test_start=START + 47 * DAY,
        test_end=START + 60 * DAY,
    )
    assert s.test_start - s.valid_end == pd.Timedelta(days=7)


# --- clear errors ---------------------------------------------------------------------------


def test_too_short_data_is_refused_naming_the_days_and_the_gap():
    with pytest.raises(
        ValueError, match=r"20 days of data are too few.*7 days \(the label delay\)"
    ):
        plan(hourly(20), pd.Timedelta(days=7))


def test_partly_given_periods_are_refused():
    with pytest.raises(ValueError, match="give all of --train-start, --train-end"):
        plan(hourly(60), pd.Timedelta(days=7), train_start=START, test_end=START + 50 * DAY)


@pytest.mark.parametrize(
    ("train_start", "train_end", "test_start", "test_end"),
    [
        pytest.param(20, 10, 30, 50, id="train-ends-before-it-starts"),
        pytest.param(0, 40, 30, 50, id="test-starts-inside-training"),
        pytest.param(0, 30, 50, 40, id="test-ends-before-it-starts"),
        pytest.param(0, 30, 40, 40, id="empty-test-period"),
    ],
)
def test_periods_in_the_wrong_order_are_refused(train_start, train_end, test_start, test_end):
    with pytest.raises(ValueError, match="train-start < train-end <= test-start < test-end"):
        plan(
            hourly(60),
            pd.Timedelta(days=7),
            train_start=START + train_start * DAY,
            train_end=START + train_end * DAY,
            test_start=START + test_start * DAY,
            test_end=START + test_end * DAY,
        )


def test_a_gap_shorter_than_the_label_delay_is_allowed_its_young_payments_are_left_out():
    ts = hourly(60)
    delay = pd.Timedelta(days=7)
    s = plan(
        ts,
        delay,
        train_start=START,
        train_end=START + 40 * DAY,
        test_start=START + 43 * DAY,
        test_end=START + 60 * DAY,
    )
    frame = pd.DataFrame(
        {
            "timestamp": ts,
            "is_fraud": pd.array([0] * len(ts), dtype="Int8"),
            "label_time": pd.Series(pd.NaT, index=ts.index, dtype="datetime64[ns, UTC]"),
        }
    )
    knowable = label_knowable(frame, s.known_by, delay)
    young = (ts + delay > s.test_start).to_numpy()
    assert young.any()
    np.testing.assert_array_equal(knowable, ~young)


def test_a_training_period_too_short_to_carve_validation_uses_time_ordered_folds():
    ts = hourly(60)
    s = plan(
        ts,
        pd.Timedelta(days=7),
        train_start=START,
        train_end=START + 7 * DAY,
        test_start=START + 14 * DAY,
        test_end=START + 21 * DAY,
    )
    assert s.selection == "folds"
    assert (s.train_start, s.train_end) == (START, START + 7 * DAY), "the whole week is fitted"
    assert s.valid_start == s.valid_end, "no separate validation period"
    parts = part_of(ts, s)
    assert "valid" not in set(parts)


def test_an_explicit_validation_period_is_used_as_given():
    ts = hourly(90)
    s = plan(
        ts,
        pd.Timedelta(days=7),
        train_start=START,
        train_end=START + 40 * DAY,
        valid_start=START + 45 * DAY,
        valid_end=START + 55 * DAY,
        test_start=START + 62 * DAY,
        test_end=START + 80 * DAY,
    )
    assert (s.train_start, s.train_end) == (START, START + 40 * DAY)
    assert (s.valid_start, s.valid_end) == (START + 45 * DAY, START + 55 * DAY)
    assert s.selection == "validation"
    inside = plan(
        ts,
        pd.Timedelta(days=7),
        train_start=START,
        train_end=START + 40 * DAY,
        valid_start=START + 30 * DAY,
        valid_end=START + 40 * DAY,
        test_start=START + 47 * DAY,
        test_end=START + 60 * DAY,
    )
    assert inside.train_end == START + 30 * DAY, "validation inside training cuts fitting short"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param(
            {"valid_start": START + 45 * DAY},
            "give both --valid-start and --valid-end",
            id="half-a-validation-period",
        ),
        pytest.param(
            {"valid_start": START + 50 * DAY, "valid_end": START + 45 * DAY},
            "--valid-start must be before --valid-end",
            id="reversed",
        ),
        pytest.param(
            {"valid_start": START + 50 * DAY, "valid_end": START + 70 * DAY},
            "must lie within train-start .. test-start",
            id="overlaps-the-test",
        ),
        pytest.param(
            {"labels_as_of": START + 70 * DAY},
            "cannot know later labels",
            id="labels-after-deployment",
        ),
    ],
)
def test_inconsistent_validation_or_labels_as_of_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plan(
            hourly(90),
            pd.Timedelta(days=7),
            train_start=START,
            train_end=START + 40 * DAY,
            test_start=START + 62 * DAY,
            test_end=START + 80 * DAY,
            **kwargs,
        )


def test_labels_as_of_sets_when_labels_are_known():
    s = plan(
        hourly(90),
        pd.Timedelta(days=7),
        train_start=START,
        train_end=START + 40 * DAY,
        test_start=START + 62 * DAY,
        test_end=START + 80 * DAY,
        labels_as_of=START + 50 * DAY,
    )
    assert s.fit_known_by == s.valid_known_by == START + 50 * DAY
    assert s.as_params()["labels_as_of"] == str(START + 50 * DAY)


@pytest.mark.parametrize(
    ("text", "end", "expected"),
    [
        ("2018-08-14", True, "2018-08-15 00:00"),
        ("2018-08-14", False, "2018-08-14 00:00"),
        ("2018-08-14 12:30", True, "2018-08-14 12:30"),
        ("2018-08-14T06:00:00+02:00", True, "2018-08-14 04:00"),
    ],
)
def test_a_date_only_end_is_inclusive_a_time_is_taken_as_given(text, end, expected):
    assert bound(text, end=end) == pd.Timestamp(expected, tz="UTC")


def test_a_bound_that_is_not_a_date_is_refused_naming_it():
    with pytest.raises(ValueError, match="'last tuesday' is not a date"):
        bound("last tuesday", end=True)


def test_time_folds_expand_forward_and_validate_on_the_next_block():
    ts = np.arange(100)[::-1].copy()  # rows out of time order
    folds = time_folds(ts, 3)
    assert len(folds) == 3
    for i, (fit, valid) in enumerate(folds, start=1):
        assert ts[fit].max() < ts[valid].min(), "a fold validates only on later payments"
        assert len(fit) == 25 * i
        assert len(valid) == 25


def test_describe_counts_rows_and_the_frauds_known_at_deployment():
    ts = hourly(60)
    delay = pd.Timedelta(days=7)
    s = plan(ts, delay)
    fraud = np.zeros(len(ts), dtype=int)
    fraud[::50] = 1
    frame = pd.DataFrame(
        {
            "timestamp": ts,
            "is_fraud": pd.array(fraud, dtype="Int8"),
            # every chargeback arrives 10 days later: those after the test start are not known
            "label_time": (ts + pd.Timedelta(days=10)).where(fraud == 1),
        }
    )
    rows = {r.name: r for r in describe(frame, s, delay)}
    assert list(rows) == ["fit", "validation", "gap", "test"]
    fit = ((ts >= s.train_start) & (ts < s.train_end)).to_numpy()
    assert rows["fit"].rows == fit.sum()
    assert rows["fit"].fraud == fraud[fit].sum()
    known = fit & (fraud == 1) & (ts + pd.Timedelta(days=10) <= s.test_start).to_numpy()
    assert rows["fit"].fraud_known == known.sum()
    assert rows["test"].used == rows["test"].rows


def test_negative_label_delay_is_refused_instead_of_overlapping_the_periods():
    # A negative delay (reachable through `label_delay_days = -3` in a --config TOML; only
    # --label-delay checks the sign) makes the "gaps" negative: validation then starts before
    # training ends and the test period before validation ends.
    with pytest.raises(ValueError, match="label delay"):
        plan(hourly(60), pd.Timedelta(days=-3))
