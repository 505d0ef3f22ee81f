"""Batch executor boundary cases on tiny hand-written histories, values worked out by hand."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pandas as pd
import pytest

from data.schema import validate
from features.batch import compute
from features.registry import DAY, FEATURES, HOUR, available, select
from features.transforms import AUTH_IS, MISMATCHES, ROW_TRANSFORMS
from tests.features.helpers import random_frame

BASE = pd.Timestamp("2024-03-04 12:00", tz="UTC")  # a Monday
NAN = math.nan
MINUTE = 60


def payments(*rows: dict, currency: str = "EUR", mcc: dict[str, str] | None = None) -> pd.DataFrame:
    """A validated frame from rows like {"id": "a", "at": 60, "card": "c1", "amount": 10.0}.

    `at` is seconds after BASE; `label_at` (seconds after BASE) with `fraud` adds a label.
    Optional `device` adds the device_id column (None where a row has none); `mcc` (merchant
    -> category) adds the mcc column, None for merchants it does not list.
    """
    data = {
        "transaction_id": [r["id"] for r in rows],
        "timestamp": [BASE + pd.Timedelta(seconds=r["at"]) for r in rows],
        "card_id": [r.get("card", "c1") for r in rows],
        "customer_id": [r.get("customer", "u1") for r in rows],
        "merchant_id": [r.get("merchant", "m1") for r in rows],
        "amount": [float(r.get("amount", 10.0)) for r in rows],
        "currency": currency,
    }
    if mcc is not None:
        data["mcc"] = [mcc.get(r.get("merchant", "m1")) for r in rows]
    if any("device" in r for r in rows):
        data["device_id"] = [r.get("device") for r in rows]
    if any("fraud" in r for r in rows):
        data["is_fraud"] = [r.get("fraud") for r in rows]
        data["label_time"] = [
            BASE + pd.Timedelta(seconds=r["label_at"]) if "label_at" in r else None for r in rows
        ]
    return validate(pd.DataFrame(data), source="test")


def values(frame: pd.DataFrame, name: str) -> dict[str, float]:
    """transaction_id -> value of one feature."""
    out = compute(frame, select([name]))
    assert out[name].dtype == np.float64
    return dict(zip(out["transaction_id"], out[name], strict=True))


def assert_values(frame: pd.DataFrame, name: str, expected: dict[str, float]) -> None:
    got = values(frame, name)
    assert set(got) == set(expected)
    for txn, want in expected.items():
        if math.isnan(want):
            assert math.isnan(got[txn]), f"{name}[{txn}] = {got[txn]}, expected NaN"
        else:
            assert got[txn] == pytest.approx(want, rel=1e-12, abs=0), f"{name}[{txn}]"


# --- what a payment sees: itself never, later never, ties by transaction_id ------------------


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        pytest.param([("a", 0)], {"a": 0}, id="a-payment-never-sees-itself"),
        pytest.param([("b", 0), ("a", 10)], {"b": 0, "a": 1}, id="later-payment-not-seen"),
        pytest.param([("b", 0), ("a", 0)], {"a": 0, "b": 1}, id="tie-smaller-id-seen-only"),
        pytest.param([("c", 0), ("a", 0), ("b", 0)], {"a": 0, "b": 1, "c": 2}, id="three-way-tie"),
        pytest.param(
            [("t9", 0), ("t10", 0)], {"t10": 0, "t9": 1}, id="ids-compare-as-text-not-numbers"
        ),
        pytest.param([("b", 0), ("a", 0), ("c", 5)], {"a": 0, "b": 1, "c": 2}, id="tie-then-later"),
    ],
)
def test_payment_sees_only_strictly_earlier_payments_in_time_then_id_order(rows, expected):
    frame = payments(*({"id": i, "at": at} for i, at in rows))
    for name in ("card_count_1h", "card_count_24h", "card_count_30d", "merchant_count_1h"):
        assert_values(frame, name, {k: float(v) for k, v in expected.items()})


def test_tie_with_larger_id_contributes_nothing_to_sums_or_previous():
    frame = payments(
        {"id": "b", "at": 0, "amount": 99.0},
        {"id": "a", "at": 0, "amount": 1.0},
    )
    assert_values(frame, "card_sum_24h", {"a": 0.0, "b": 1.0})
    assert_values(frame, "seconds_since_card_prev", {"a": NAN, "b": 0.0})
    assert_values(frame, "amount_to_card_mean_30d", {"a": NAN, "b": 99.0})


WINDOWED = [
    ("card_count_1h", HOUR),
    ("card_count_24h", DAY),
    ("card_count_7d", 7 * DAY),
    ("card_count_30d", 30 * DAY),
    ("merchant_count_1h", HOUR),
    ("merchant_count_24h", DAY),
]


@pytest.mark.parametrize(("name", "window"), WINDOWED)
@pytest.mark.parametrize(
    ("younger_by", "expected"),
    [
        pytest.param(0, 0.0, id="exactly-window-old-excluded"),
        pytest.param(1, 1.0, id="one-second-younger-included"),
    ],
)
def test_window_boundary(name, window, younger_by, expected):
    # the prior payment "p" is (window - younger_by) seconds older than "q"
    frame = payments({"id": "p", "at": 0}, {"id": "q", "at": window - younger_by})
    assert_values(frame, name, {"p": 0.0, "q": expected})


@pytest.mark.parametrize(
    ("name", "window", "when_excluded", "when_included"),
    [
        ("card_sum_1h", HOUR, 0.0, 10.0),
        ("card_sum_30d", 30 * DAY, 0.0, 10.0),
        ("seconds_since_card_prev", 30 * DAY, NAN, 30.0 * DAY - 1),
        ("amount_to_card_mean_30d", 30 * DAY, NAN, 2.0),
        ("amount_to_card_median_30d", 30 * DAY, NAN, 2.0),
    ],
)
def test_window_boundary_for_amount_and_time_features(name, window, when_excluded, when_included):
    old = payments({"id": "p", "at": 0}, {"id": "q", "at": window, "amount": 20.0})
    young = payments({"id": "p", "at": 0}, {"id": "q", "at": window - 1, "amount": 20.0})
    assert values(old, name)["q"] == pytest.approx(when_excluded, nan_ok=True)
    assert values(young, name)["q"] == pytest.approx(when_included, rel=1e-12)


# --- card velocity ---------------------------------------------------------------------------

VELOCITY_FRAME = (
    {"id": "p1", "at": 0, "amount": 10.0},
    {"id": "p2", "at": 30 * MINUTE, "amount": 20.0},
    {"id": "p3", "at": HOUR, "amount": 5.0},
    {"id": "p4", "at": DAY, "amount": 7.0},
    {"id": "p5", "at": DAY + 1, "amount": 100.0, "card": "c2"},
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("card_count_1h", {"p1": 0, "p2": 1, "p3": 1, "p4": 0, "p5": 0}),
        ("card_sum_1h", {"p1": 0, "p2": 10, "p3": 20, "p4": 0, "p5": 0}),
        ("card_count_24h", {"p1": 0, "p2": 1, "p3": 2, "p4": 2, "p5": 0}),
        ("card_sum_24h", {"p1": 0, "p2": 10, "p3": 30, "p4": 25, "p5": 0}),
        ("card_count_7d", {"p1": 0, "p2": 1, "p3": 2, "p4": 3, "p5": 0}),
        ("card_sum_7d", {"p1": 0, "p2": 10, "p3": 30, "p4": 35, "p5": 0}),
        ("merchant_count_24h", {"p1": 0, "p2": 1, "p3": 2, "p4": 2, "p5": 3}),
    ],
)
def test_card_count_and_sum_over_windows(name, expected):
    frame = payments(*VELOCITY_FRAME)
    assert_values(frame, name, {k: float(v) for k, v in expected.items()})


def test_sums_are_exact_in_cents():
    frame = payments(
        *({"id": f"p{i}", "at": i, "amount": 0.1} for i in range(10)),
        {"id": "q", "at": 100, "amount": 0.2},
    )
    assert values(frame, "card_sum_1h")["q"] == 1.0  # 10 x 0.1 in cents, not 0.9999999999999999


# --- amount ratios and z-score ---------------------------------------------------------------


def _history(prior: list[float], current: float) -> pd.DataFrame:
    rows = [{"id": f"p{i}", "at": i * MINUTE, "amount": a} for i, a in enumerate(prior)]
    rows.append({"id": "q", "at": len(prior) * MINUTE, "amount": current})
    return payments(*rows)


@pytest.mark.parametrize(
    ("prior", "current", "median_ratio", "mean_ratio"),
    [
        pytest.param([], 30.0, NAN, NAN, id="no-history"),
        pytest.param([10.0], 30.0, 3.0, 3.0, id="one-prior"),
        pytest.param([60.0, 10.0, 20.0], 30.0, 1.5, 1.0, id="odd-count"),
        pytest.param([100.0, 10.0, 60.0, 20.0], 30.0, 0.75, 30.0 / 47.5, id="even-count"),
        pytest.param([0.0, 0.0], 5.0, NAN, NAN, id="zero-median-and-mean"),
        pytest.param([0.0, 0.0, 10.0], 5.0, NAN, 1.5, id="zero-median-only"),
        pytest.param([10.0, 10.0], 0.0, 0.0, 0.0, id="zero-amount"),
    ],
)
def test_median_and_mean_ratio(prior, current, median_ratio, mean_ratio):
    frame = _history(prior, current)
    assert values(frame, "amount_to_card_median_30d")["q"] == pytest.approx(
        median_ratio, rel=1e-12, nan_ok=True
    )
    assert values(frame, "amount_to_card_mean_30d")["q"] == pytest.approx(
        mean_ratio, rel=1e-12, nan_ok=True
    )


@pytest.mark.parametrize(
    ("prior", "current", "zscore"),
    [
        pytest.param([], 40.0, NAN, id="no-history"),
        pytest.param([10.0], 40.0, NAN, id="one-prior-is-not-enough"),
        pytest.param([10.0, 30.0], 40.0, 2.0, id="two-priors"),
        pytest.param([10.0, 30.0], 20.0, 0.0, id="at-the-mean"),
        pytest.param([10.0, 30.0], 0.0, -2.0, id="below-the-mean"),
        pytest.param([20.0, 20.0, 20.0], 40.0, NAN, id="zero-spread"),
        pytest.param([1.0, 2.0, 3.0, 4.0], 5.0, math.sqrt(5.0), id="population-std"),
    ],
)
def test_zscore(prior, current, zscore):
    got = values(_history(prior, current), "amount_zscore_card_30d")["q"]
    assert got == pytest.approx(zscore, rel=1e-12, nan_ok=True)


@pytest.mark.parametrize(
    ("currency", "prior", "current", "zscore"),
    [
        pytest.param("EUR", [0.0, 4_000.0], 1.0, (1.0 - 2_000.0) / 2_000.0, id="eur-two-priors"),
        pytest.param("EUR", [5.0, 50.0] * 15, 50.0, 1.0, id="eur-a-month-of-payments"),
        # 40 million dong is about 1,500 EUR: n * sum(cents^2) - sum(cents)^2 exceeds int64
        pytest.param("VND", [0.0, 40_000_000.0], 1.0, (1.0 - 2e7) / 2e7, id="vnd-two-priors"),
        # an ordinary rupiah card: 30 payments of 30 to 300 EUR in a month
        pytest.param(
            "IDR", [500_000.0, 5_000_000.0] * 15, 5_000_000.0, 1.0, id="idr-a-month-of-payments"
        ),
    ],
)
def test_zscore_exact_for_large_nominal_amounts(currency, prior, current, zscore):
    rows = [{"id": f"p{i:02d}", "at": i * HOUR, "amount": a} for i, a in enumerate(prior)]
    rows.append({"id": "q", "at": len(prior) * HOUR, "amount": current})
    got = values(payments(*rows, currency=currency), "amount_zscore_card_30d")["q"]
    assert got == pytest.approx(zscore, rel=1e-12), f"{currency}: {got} != {zscore}"


# --- previous payment ------------------------------------------------------------------------


def test_seconds_since_previous_is_nan_for_the_first_payment():
    frame = payments(
        {"id": "p1", "at": 1_000},
        {"id": "p2", "at": 1_090},
        {"id": "p3", "at": 1_090},
        {"id": "x", "at": 1_100, "card": "c2"},
    )
    assert_values(frame, "seconds_since_card_prev", {"p1": NAN, "p2": 90.0, "p3": 0.0, "x": NAN})


# --- identity --------------------------------------------------------------------------------


def test_distinct_cards_per_device_counts_the_current_card():
    frame = payments(
        {"id": "p1", "at": 0, "card": "c1", "device": "d1"},
        {"id": "p2", "at": 60, "card": "c2", "device": "d1"},
        {"id": "p3", "at": 120, "card": "c1", "device": "d1"},
        {"id": "p4", "at": DAY + 60, "card": "c3", "device": "d1"},  # p2 is exactly 24 h old
        {"id": "p5", "at": DAY + 61, "card": "c1", "device": "d2"},
        {"id": "p6", "at": DAY + 62, "card": "c2"},
    )
    assert_values(
        frame,
        "distinct_cards_per_device_24h",
        {"p1": 1.0, "p2": 2.0, "p3": 2.0, "p4": 2.0, "p5": 1.0, "p6": NAN},
    )
    assert_values(
        frame,
        "device_count_24h",
        {"p1": 0.0, "p2": 1.0, "p3": 2.0, "p4": 1.0, "p5": 0.0, "p6": NAN},
    )


def test_device_new_for_customer():
    frame = payments(
        {"id": "p1", "at": 0, "customer": "u1", "device": "d1"},
        {"id": "p2", "at": 60, "customer": "u1", "device": "d1"},
        {"id": "p3", "at": 120, "customer": "u1", "device": "d2"},
        {"id": "p4", "at": 180, "customer": "u2", "device": "d1"},
        {"id": "p5", "at": 60 + 30 * DAY, "customer": "u1", "device": "d1"},  # p2 exactly 30 d
        {"id": "p6", "at": 119 + 30 * DAY, "customer": "u1", "device": "d2"},  # p3 30 d - 1 s
        {"id": "p7", "at": 200, "customer": "u1"},
    )
    assert_values(
        frame,
        "device_new_for_customer",
        {"p1": 1.0, "p2": 0.0, "p3": 1.0, "p4": 1.0, "p5": 1.0, "p6": 0.0, "p7": NAN},
    )


# --- merchant fraud rate: labels count only once known, and only after the delay -------------


def _fraud_rate_frame(label_at: float, pay_at: float, *, fraud_merchant: str = "m1"):
    """Genuine g 10 days before a fraud f (at 0, labelled at `label_at`); p pays at `pay_at`."""
    return payments(
        {"id": "g", "at": -10 * DAY, "fraud": 0, "label_at": -10 * DAY + HOUR},
        {"id": "f", "at": 0, "fraud": 1, "label_at": label_at, "merchant": fraud_merchant},
        {"id": "p", "at": pay_at},
    )


def _rate(frame: pd.DataFrame) -> float:
    return values(frame, "merchant_fraud_rate_30d")["p"]


def test_label_not_known_before_chargeback_is_ignored():
    # p is 8 days after f (outside the 7-day delay) but f's chargeback arrives a day after p
    assert _rate(_fraud_rate_frame(label_at=9 * DAY, pay_at=8 * DAY)) == 0.0


def test_label_known_before_payment_is_counted():
    assert _rate(_fraud_rate_frame(label_at=1 * DAY, pay_at=8 * DAY)) == 0.5


def test_fraud_inside_label_delay_is_not_counted():
    # f is labelled within the hour, but only 6 days before p: inside the 7-day delay
    assert _rate(_fraud_rate_frame(label_at=HOUR, pay_at=6 * DAY)) == 0.0


@pytest.mark.parametrize(
    ("label_at", "pay_at", "expected"),
    [
        pytest.param(8 * DAY, 8 * DAY, 0.5, id="label-at-payment-instant-counts"),
        pytest.param(8 * DAY + 1, 8 * DAY, 0.0, id="label-one-second-late-ignored"),
        pytest.param(HOUR, 7 * DAY, 0.5, id="fraud-exactly-delay-old-counts"),
        pytest.param(HOUR, 7 * DAY - 1, 0.0, id="fraud-one-second-inside-delay"),
        pytest.param(0, 7 * DAY, 0.5, id="labelled-at-its-own-instant"),
        pytest.param(HOUR, 37 * DAY - 1, 1.0, id="genuine-g-left-window-fraud-still-in"),
        pytest.param(HOUR, 37 * DAY, NAN, id="both-left-window-no-payments"),
        pytest.param(HOUR, -7 * DAY, NAN, id="g-still-inside-its-own-delay"),
    ],
)
def test_merchant_fraud_rate_window_and_label_knowledge(label_at, pay_at, expected):
    got = _rate(_fraud_rate_frame(label_at=label_at, pay_at=pay_at))
    assert got == pytest.approx(expected, nan_ok=True)


def test_fraud_at_another_merchant_is_not_counted():
    frame = _fraud_rate_frame(label_at=HOUR, pay_at=8 * DAY, fraud_merchant="m2")
    assert _rate(frame) == 0.0


def test_fraud_rate_ignores_labels_without_label_time():
    frame = payments(
        {"id": "f", "at": 0, "fraud": 1},
        {"id": "p", "at": 8 * DAY},
    )
    assert _rate(frame) == 0.0


# --- row order, no mutation, minimal columns -------------------------------------------------


def test_result_follows_input_row_order_and_does_not_mutate_input():
    frame = random_frame(5, n=250)
    shuffled = frame.sample(frac=1.0, random_state=11)  # non-default index on purpose
    before = shuffled.copy(deep=True)
    got = compute(shuffled)
    pd.testing.assert_frame_equal(shuffled, before)
    assert list(got["transaction_id"]) == list(shuffled["transaction_id"])
    assert isinstance(got.index, pd.RangeIndex)
    reference = compute(frame).set_index("transaction_id")
    pd.testing.assert_frame_equal(
        got.set_index("transaction_id"), reference.loc[shuffled["transaction_id"]]
    )


def test_output_has_transaction_id_and_one_float_column_per_feature():
    frame = random_frame(6, n=120)
    got = compute(frame)
    assert list(got.columns) == ["transaction_id", *(f.name for f in FEATURES)]
    assert all(got[f.name].dtype == np.float64 for f in FEATURES)
    assert len(got) == len(frame)


def test_empty_frame_gives_empty_table():
    frame = random_frame(7, n=10).iloc[:0]
    got = compute(frame)
    assert list(got.columns) == ["transaction_id", *(f.name for f in FEATURES)]
    assert len(got) == 0


MINIMAL_COLUMNS = (
    "transaction_id",
    "timestamp",
    "card_id",
    "customer_id",
    "merchant_id",
    "amount",
    "currency",
    "is_fraud",
    "label_time",
)
MINIMAL_FEATURES = [
    "log_amount",
    "amount_to_card_median_30d",
    "amount_to_card_mean_30d",
    "amount_zscore_card_30d",
    "amount_to_merchant_mean_30d",
    "hour_of_day",
    "is_night",
    "is_weekend",
    "seconds_since_card_prev",
    "days_since_card_first_seen_30d",
    "days_since_merchant_first_seen_30d",
    *(
        f"{entity}_{agg}_{w}"
        for entity in ("card", "customer")
        for agg in ("count", "sum", "mean")
        for w in ("1h", "24h", "7d", "30d")
    ),
    "merchant_count_1h",
    "merchant_count_24h",
    *(
        f"{entity}_fraud_{agg}_{w}"
        for entity in ("merchant", "card", "customer")
        for agg in ("rate", "count")
        for w in ("1d", "7d", "30d")
    ),
]


def test_minimal_columns_skip_groups():
    frame = random_frame(8, n=150, minimal=True)
    assert set(frame.columns) == set(MINIMAL_COLUMNS)
    avail = available(frame.columns)
    assert [f.name for f in avail.features] == MINIMAL_FEATURES
    assert avail.skipped_groups() == {
        "amount": "missing mcc",
        "identity": "missing account_created_at, auth_result, credential_changed_at, "
        "customer_age, device_id, email_domain, ip_hash",
        "labels": "missing mcc",
        "location": "missing billing_country, city_population, customer_lat, customer_lon, "
        "ip_country, merchant_country, merchant_lat, merchant_lon, shipping_country",
        "velocity": "missing device_id, ip_hash",
    }
    got = compute(frame)
    assert list(got.columns) == ["transaction_id", *MINIMAL_FEATURES]
    assert len(got) == len(frame)
    assert got["log_amount"].notna().all()


# --- row features ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "hour", "night", "weekend"),
    [
        pytest.param(0, 12.0, 0.0, 0.0, id="monday-noon"),
        pytest.param(-12 * HOUR, 0.0, 1.0, 0.0, id="monday-midnight-is-night"),
        pytest.param(-6 * HOUR, 6.0, 0.0, 0.0, id="six-am-is-not-night"),
        pytest.param(-12 * HOUR - 1, 23.0, 0.0, 1.0, id="sunday-last-second"),
        pytest.param(5 * DAY - 12 * HOUR, 0.0, 1.0, 1.0, id="saturday-midnight"),
    ],
)
def test_time_of_day_features(at, hour, night, weekend):
    frame = payments({"id": "a", "at": at})
    assert values(frame, "hour_of_day")["a"] == hour
    assert values(frame, "is_night")["a"] == night
    assert values(frame, "is_weekend")["a"] == weekend


@pytest.mark.parametrize(("amount", "expected"), [(0.0, 0.0), (99.0, math.log(100.0))])
def test_log_amount(amount, expected):
    frame = payments({"id": "a", "at": 0, "amount": amount})
    assert values(frame, "log_amount")["a"] == pytest.approx(expected, rel=1e-12)


# --- the entity x window grids: mean, first seen, label counts and rates per entity ----------


@pytest.mark.parametrize(
    ("name", "window", "when_excluded", "when_included"),
    [
        ("card_mean_1h", HOUR, NAN, 10.0),
        ("card_mean_30d", 30 * DAY, NAN, 10.0),
        ("customer_count_24h", DAY, 0.0, 1.0),
        ("customer_sum_7d", 7 * DAY, 0.0, 10.0),
        ("customer_mean_30d", 30 * DAY, NAN, 10.0),
        ("amount_to_merchant_mean_30d", 30 * DAY, NAN, 2.0),
        ("days_since_card_first_seen_30d", 30 * DAY, NAN, 30.0 - 1 / DAY),
        ("days_since_merchant_first_seen_30d", 30 * DAY, NAN, 30.0 - 1 / DAY),
    ],
)
def test_window_boundary_for_grid_features(name, window, when_excluded, when_included):
    old = payments({"id": "p", "at": 0}, {"id": "q", "at": window, "amount": 20.0})
    young = payments({"id": "p", "at": 0}, {"id": "q", "at": window - 1, "amount": 20.0})
    assert values(old, name)["q"] == pytest.approx(when_excluded, nan_ok=True)
    assert values(young, name)["q"] == pytest.approx(when_included, rel=1e-12)


def test_mean_and_first_seen_over_several_payments():
    frame = payments(
        {"id": "p1", "at": 0, "amount": 10.0},
        {"id": "p2", "at": DAY, "amount": 20.0},
        {"id": "p3", "at": 2 * DAY, "amount": 60.0, "card": "c2"},  # same customer u1
        {"id": "p4", "at": 3 * DAY, "amount": 1.0},
    )
    assert_values(frame, "card_mean_7d", {"p1": NAN, "p2": 10.0, "p3": NAN, "p4": 15.0})
    assert_values(frame, "customer_mean_7d", {"p1": NAN, "p2": 10.0, "p3": 15.0, "p4": 30.0})
    assert_values(frame, "customer_count_30d", {"p1": 0.0, "p2": 1.0, "p3": 2.0, "p4": 3.0})
    assert_values(
        frame, "days_since_card_first_seen_30d", {"p1": NAN, "p2": 1.0, "p3": NAN, "p4": 3.0}
    )


def test_amount_to_category_mean_spans_the_category_merchants():
    frame = payments(
        {"id": "p1", "at": 0, "amount": 10.0, "merchant": "m1", "card": "c1"},
        {"id": "p2", "at": 60, "amount": 30.0, "merchant": "m2", "card": "c2"},
        {"id": "p3", "at": 120, "amount": 40.0, "merchant": "m3", "card": "c3"},
        {"id": "x", "at": 180, "amount": 5.0, "merchant": "m4", "mcc": None},
        mcc={"m1": "5411", "m2": "5411", "m3": "5411"},
    )
    assert_values(frame, "amount_to_category_mean_30d", {"p1": NAN, "p2": 3.0, "p3": 2.0, "x": NAN})
    assert_values(frame, "amount_to_merchant_mean_30d", {"p1": NAN, "p2": NAN, "p3": NAN, "x": NAN})


def _label_frame(label_at: float, pay_at: float, *, card: str = "c1") -> pd.DataFrame:
    """A fraud f at 0 (labelled at `label_at`) on card c1, customer u1, merchant m1 and
    category 5411; a genuine g two days earlier on the same entities; p pays at `pay_at`."""
    return payments(
        {"id": "g", "at": -2 * DAY, "fraud": 0, "label_at": -2 * DAY + HOUR},
        {"id": "f", "at": 0, "fraud": 1, "label_at": label_at},
        {"id": "p", "at": pay_at, "card": card},
        mcc={"m1": "5411"},
    )


LABEL_ENTITIES = ("merchant", "card", "customer", "category")


@pytest.mark.parametrize("entity", LABEL_ENTITIES)
@pytest.mark.parametrize(
    ("window", "label_at", "pay_at", "count", "rate"),
    [
        # the 1-day window ending 7 days before p: (p - 8 d, p - 7 d]
        pytest.param("1d", HOUR, 7 * DAY, 1.0, 1.0, id="1d-fraud-exactly-delay-old"),
        pytest.param("1d", HOUR, 7 * DAY - 1, 0.0, NAN, id="1d-fraud-inside-delay"),
        pytest.param("1d", HOUR, 8 * DAY - 1, 1.0, 1.0, id="1d-fraud-last-second"),
        pytest.param("1d", HOUR, 8 * DAY, 0.0, NAN, id="1d-fraud-left-window"),
        pytest.param("1d", 8 * DAY, 8 * DAY - 1, 0.0, 0.0, id="1d-label-not-yet-known"),
        # 7 days: (p - 14 d, p - 7 d] holds f and, until p = 12 d, g too
        pytest.param("7d", HOUR, 7 * DAY, 1.0, 0.5, id="7d-both-in"),
        pytest.param("7d", HOUR, 12 * DAY, 1.0, 1.0, id="7d-g-left"),
        pytest.param("7d", 9 * DAY, 8 * DAY, 0.0, 0.0, id="7d-label-known-later"),
        pytest.param("7d", 9 * DAY, 9 * DAY, 1.0, 0.5, id="7d-label-at-payment-instant"),
        pytest.param("7d", HOUR, 14 * DAY, 0.0, NAN, id="7d-both-left"),
        # 30 days: (p - 37 d, p - 7 d]
        pytest.param("30d", HOUR, 37 * DAY - 1, 1.0, 1.0, id="30d-fraud-last-second"),
        pytest.param("30d", HOUR, 37 * DAY, 0.0, NAN, id="30d-fraud-left-window"),
    ],
)
def test_label_count_and_rate_windows_per_entity(entity, window, label_at, pay_at, count, rate):
    frame = _label_frame(label_at, pay_at)
    got_count = values(frame, f"{entity}_fraud_count_{window}")["p"]
    got_rate = values(frame, f"{entity}_fraud_rate_{window}")["p"]
    assert got_count == count
    assert got_rate == pytest.approx(rate, nan_ok=True)


@pytest.mark.parametrize(
    ("entity", "count"),
    [("card", 0.0), ("customer", 1.0), ("merchant", 1.0), ("category", 1.0)],
)
def test_label_counts_only_at_the_defrauded_entities(entity, count):
    # p pays with another card of the same customer, at the same merchant and category
    frame = _label_frame(HOUR, 7 * DAY, card="c2")
    assert values(frame, f"{entity}_fraud_count_1d")["p"] == count


def test_label_features_without_a_category_are_missing():
    frame = payments(
        {"id": "f", "at": 0, "fraud": 1, "label_at": HOUR},
        {"id": "p", "at": 7 * DAY},
        mcc={},
    )
    assert_values(frame, "category_fraud_count_7d", {"f": NAN, "p": NAN})
    assert_values(frame, "card_fraud_count_7d", {"f": 0.0, "p": 1.0})


@pytest.mark.parametrize(
    ("column", "value", "name", "expected"),
    [
        ("customer_age", 42.5, "customer_age", 42.5),
        ("customer_age", NAN, "customer_age", NAN),
        ("city_population", 999.0, "log_city_population", math.log(1000.0)),
        ("city_population", NAN, "log_city_population", NAN),
    ],
)
def test_customer_age_and_city_size(column, value, name, expected):
    frame = payments({"id": "a", "at": 0})
    frame[column] = value
    frame = validate(frame, source="test")
    assert values(frame, name)["a"] == pytest.approx(expected, nan_ok=True)


def test_customer_age_and_city_size_need_their_columns():
    names = {f.name for f in available(payments({"id": "a", "at": 0}).columns).features}
    assert not {"customer_age", "log_city_population"} & names


def test_busy_card_median_over_wide_windows_matches_a_sorted_reference():
    """Windows from 1 to ~250 payments (every width bucket of the padded gather), repeated
    amounts and zeros: the ratio to the median of the 30-day history, worked out by sorting."""
    rng = np.random.default_rng(3)
    n = 330
    at = np.sort(rng.uniform(0, 40 * DAY, n)).astype(np.int64)  # older ones leave the window
    amounts = np.round(rng.uniform(0.0, 500.0, n), 2)
    amounts[rng.random(n) < 0.2] = 10.0  # ties
    amounts[rng.random(n) < 0.05] = 0.0
    frame = payments(
        *({"id": f"p{i:03d}", "at": int(at[i]), "amount": amounts[i]} for i in range(n))
    )
    got = values(frame, "amount_to_card_median_30d")
    cents = [round(a * 100) for a in amounts]
    for i in range(n):
        window = sorted(cents[j] for j in range(i) if at[j] > at[i] - 30 * DAY)
        if not window:
            want = NAN
        else:
            med = (window[(len(window) - 1) // 2] + window[len(window) // 2]) / 2
            want = cents[i] / med if med > 0 else NAN
        assert got[f"p{i:03d}"] == pytest.approx(want, rel=1e-15, nan_ok=True), i


def test_result_block_mapped_outside_numpy_gives_the_same_table(monkeypatch):
    """Large result blocks live in an anonymous mapping (no huge pages); force it for a small
    frame and compare with numpy's allocation, and use the table after the inputs are gone."""
    import features.batch as batch

    frame = random_frame(11, n=400)
    expected = compute(frame)
    monkeypatch.setattr(batch, "_MMAP_MIN_BYTES", 0)
    got = compute(frame)
    del frame
    pd.testing.assert_frame_equal(got, expected)
    empty = compute(random_frame(11, n=10).iloc[:0])
    assert len(empty) == 0


TEXT_COMPARISONS = [*MISMATCHES, *AUTH_IS]


def _by_objects(frame: pd.DataFrame, name: str) -> np.ndarray:
    """The row transform on Python objects (None for missing), as the online executor runs it."""
    cols = {
        c: frame[c].astype(object).where(frame[c].notna(), None).to_numpy()
        for c in ("billing_country", "ip_country", "shipping_country", "merchant_country")
    }
    cols["auth_result"] = (
        frame["auth_result"].astype(object).where(frame["auth_result"].notna(), None)
    )
    cols["auth_result"] = cols["auth_result"].to_numpy()
    return np.asarray(ROW_TRANSFORMS[name](cols), dtype=np.float64)


@pytest.mark.parametrize("rows", [1, 2, 50])
def test_text_comparisons_on_codes_equal_the_row_transforms(rows):
    """Batch compares country and auth texts as integer codes: equal to the transforms on
    objects, with texts one side never has, a column without any value and a missing value."""
    frame = random_frame(5, n=rows)
    rng = np.random.default_rng(rows)
    frame["ip_country"] = np.array(["US", "DE", None, "XX"], dtype=object)[rng.integers(0, 4, rows)]
    frame["shipping_country"] = None  # nothing known
    frame["auth_result"] = np.array(["passed", "not_attempted", None], dtype=object)[
        rng.integers(0, 3, rows)
    ]  # never "failed"
    frame = validate(frame, source="test")
    got = compute(frame, select(TEXT_COMPARISONS))
    for name in TEXT_COMPARISONS:
        np.testing.assert_array_equal(got[name].to_numpy(), _by_objects(frame, name), name)
    assert got["billing_shipping_mismatch"].isna().all()
    assert (got["auth_failed"].dropna() == 0.0).all()


@pytest.mark.parametrize(
    ("mcc", "code"),
    [
        pytest.param("5411", 5411.0, id="iso-code-keeps-its-value"),
        pytest.param(" 0742 ", 742.0, id="iso-code-padded"),
        pytest.param("grocery_pos", float(zlib.crc32(b"grocery_pos") & 0x7FFFFFFF), id="name"),
    ],
)
def test_merchant_category_code_is_stable_in_both_executors(mcc, code):
    from features.transforms import ROW_TRANSFORMS, category_code

    frame = payments({"id": "a", "at": 0}, {"id": "b", "at": 1, "merchant": "m2"}, mcc={"m1": mcc})
    assert math.isnan(values(frame, "mcc_code")["b"])  # a merchant without a category
    assert values(frame, "mcc_code")["a"] == code  # batch (codes per distinct category)
    assert float(ROW_TRANSFORMS["mcc_code"]({"mcc": mcc})) == code  # online (one payment)
    assert category_code(mcc) == code


def test_merchant_category_code_missing_is_nan_and_names_differ():
    from features.transforms import category_code

    assert math.isnan(category_code(None))
    assert category_code("shopping_net") != category_code("shopping_pos")
