"""The one-payment row transforms (online) equal their numpy definitions (batch), edge cases
included: missing values, window-free corner values, coordinates that meet or face each other."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from features.online import timestamp_ns
from features.transforms import NS_PER_DAY, NS_PER_HOUR, ROW_SCALARS, ROW_TRANSFORMS

NAN = math.nan
T = 1_704_067_200 * 1_000_000_000  # 2024-01-01 00:00 UTC, a Monday


def _payments() -> list[dict]:
    """Payments whose fields walk through the values a transform treats specially."""
    out = []
    stamps = [T, T - 1, T + 6 * NS_PER_HOUR - 1, T + 5 * NS_PER_DAY, -NS_PER_DAY - 1, 0]
    countries = ["DE", "US", None]
    coords = [(52.5, 13.4), (52.5, 13.4), (-52.5, -166.6), (NAN, 13.4), (90.0, 0.0), (0.0, 180.0)]
    for k, (ts, (a, b, c), (lat1, lon1), (lat2, lon2), auth) in enumerate(
        zip(
            itertools.cycle(stamps),
            itertools.product(countries, repeat=3),
            itertools.cycle(coords),
            itertools.cycle(coords[1:] + coords[:1]),
            itertools.cycle(["passed", "failed", "not_attempted", None]),
            strict=False,
        )
    ):
        out.append(
            {
                "timestamp": ts,
                "amount": [0.0, 0.01, 12.5, 1e7, NAN][k % 5],
                "billing_country": a,
                "ip_country": b,
                "shipping_country": c,
                "merchant_country": b,
                "customer_lat": lat1,
                "customer_lon": lon1,
                "merchant_lat": lat2,
                "merchant_lon": lon2,
                "account_created_at": [NAN, float(T - 3 * NS_PER_DAY), float(T + 1)][k % 3],
                "credential_changed_at": [float(T - NS_PER_HOUR), NAN][k % 2],
                "city_population": [NAN, -5.0, 0.0, 3.5e6][k % 4],
                "mcc": ["5411", " 0742 ", "grocery_pos", None][k % 4],
                "customer_age": [NAN, 0.0, -0.0, 41.0][k % 4],
                "auth_result": auth,
            }
        )
    return out


def test_every_row_transform_has_its_one_payment_form():
    assert ROW_SCALARS.keys() == ROW_TRANSFORMS.keys()


@pytest.mark.parametrize("name", sorted(ROW_TRANSFORMS))
def test_one_payment_form_equals_the_numpy_definition(name):
    payments = _payments()
    assert len(payments) == 27
    got = np.array([ROW_SCALARS[name](p) for p in payments], dtype=np.float64)
    want = np.array([float(ROW_TRANSFORMS[name](p)) for p in payments], dtype=np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0.0, equal_nan=True, err_msg=name)
    assert all(type(v) is float for v in (ROW_SCALARS[name](p) for p in payments))


@pytest.mark.parametrize(
    "value",
    [
        datetime(2024, 3, 1, 12, 30, 45, 123456, tzinfo=UTC),
        datetime(2024, 3, 1, 12, 30, 45, 123456),  # naive: read as UTC
        datetime(2024, 3, 31, 2, 30, tzinfo=timezone(timedelta(hours=-7, minutes=-30))),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # before the epoch
    ],
)
def test_timestamp_ns_of_a_datetime_equals_pandas(value):
    """The API's datetimes take an integer path of their own: the same ns as pandas gives."""
    ts = pd.Timestamp(value)
    expected = int((ts if ts.tzinfo is not None else ts.tz_localize("UTC")).value)
    assert timestamp_ns(value) == expected
    assert timestamp_ns(pd.Timestamp(value) + pd.Timedelta(1, "ns")) == expected + 1
