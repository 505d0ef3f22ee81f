"""Row-level features: functions of one payment's own fields.

Each takes numpy arrays (batch) or scalars (online) and uses only numpy operations, so the very
same code runs in both executors. Timestamps arrive as int64 nanoseconds since the epoch
(`timestamp`) or float64 nanoseconds with NaN for missing (optional timestamps).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

NS_PER_S = 1_000_000_000
NS_PER_HOUR = 3_600 * NS_PER_S
NS_PER_DAY = 86_400 * NS_PER_S
EARTH_RADIUS_KM = 6_371.0088

Cols = Mapping[str, Any]


def haversine_km(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> Any:
    """Great-circle distance; NaN in, NaN out."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(lon2) - np.radians(lon1)
    a = np.sin(dp / 2.0) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2.0) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.minimum(a, 1.0)))


def _mismatch(a: Any, b: Any) -> Any:
    """1.0 when both countries are known and differ, 0.0 when equal, NaN when either is missing."""
    a_arr = np.asarray(a, dtype=object)
    b_arr = np.asarray(b, dtype=object)
    missing = (a_arr == None) | (b_arr == None)  # noqa: E711 (elementwise on objects)
    out = np.not_equal(a_arr, b_arr).astype(np.float64)
    return np.where(missing, np.nan, out)


def _hour(ts: Any) -> Any:
    return ((np.asarray(ts, dtype=np.int64) // NS_PER_HOUR) % 24).astype(np.float64)


def _weekend(ts: Any) -> Any:
    # 1970-01-01 was a Thursday: (days + 3) % 7 gives Monday = 0.
    dow = (np.asarray(ts, dtype=np.int64) // NS_PER_DAY + 3) % 7
    return (dow >= 5).astype(np.float64)


def _auth_is(value: str) -> Callable[[Cols], Any]:
    def fn(c: Cols) -> Any:
        arr = np.asarray(c["auth_result"], dtype=object)
        return np.where(arr == None, np.nan, (arr == value).astype(np.float64))  # noqa: E711

    return fn


def category_code(value: Any) -> float:
    """A merchant category as a number a tree can split on, the same in every executor and
    every run: an ISO 18245 code keeps its value (its ranges group kindred trades, so numeric
    splits mean something), any other text a stable 31-bit CRC-32; missing is NaN. The
    category itself matters on top of its fraud rate: the amount that is normal depends on it."""
    if value is None or (isinstance(value, float) and value != value):
        return float("nan")
    text = str(value).strip()
    if text.isascii() and text.isdigit() and len(text) <= 6:
        return float(int(text))
    return float(zlib.crc32(text.encode()) & 0x7FFFFFFF)


_category_codes = np.frompyfunc(category_code, 1, 1)


def _category(values: Any) -> Any:
    return np.asarray(_category_codes(np.asarray(values, dtype=object)), dtype=np.float64)


# Comparisons of text fields, listed so that the batch executor can run them on integer codes
# (same values: see features.batch); ROW_TRANSFORMS below is their definition.
MISMATCHES: dict[str, tuple[str, str]] = {
    "billing_ip_mismatch": ("billing_country", "ip_country"),
    "billing_shipping_mismatch": ("billing_country", "shipping_country"),
    "billing_merchant_mismatch": ("billing_country", "merchant_country"),
}
AUTH_IS: dict[str, str] = {"auth_failed": "failed", "auth_not_attempted": "not_attempted"}


def _mismatch_of(a: str, b: str) -> Callable[[Cols], Any]:
    return lambda c: _mismatch(c[a], c[b])


ROW_TRANSFORMS: dict[str, Callable[[Cols], Any]] = {
    "log_amount": lambda c: np.log1p(np.asarray(c["amount"], dtype=np.float64)),
    "hour_of_day": lambda c: _hour(c["timestamp"]),
    "is_night": lambda c: (_hour(c["timestamp"]) < 6).astype(np.float64),
    "is_weekend": lambda c: _weekend(c["timestamp"]),
    **{name: _mismatch_of(a, b) for name, (a, b) in MISMATCHES.items()},
    "home_merchant_distance_km": lambda c: haversine_km(
        c["customer_lat"], c["customer_lon"], c["merchant_lat"], c["merchant_lon"]
    ),
    "account_age_days": lambda c: (
        (np.asarray(c["timestamp"], dtype=np.float64) - c["account_created_at"]) / NS_PER_DAY
    ),
    "credential_change_age_hours": lambda c: (
        (np.asarray(c["timestamp"], dtype=np.float64) - c["credential_changed_at"]) / NS_PER_HOUR
    ),
    "log_city_population": lambda c: np.log1p(
        np.maximum(np.asarray(c["city_population"], dtype=np.float64), 0.0)
    ),
    "mcc_code": lambda c: _category(c["mcc"]),
    "customer_age": lambda c: np.asarray(c["customer_age"], dtype=np.float64) + 0.0,
    **{name: _auth_is(value) for name, value in AUTH_IS.items()},
}


# --- the same transforms on one payment --------------------------------------------------------
# The online executor scores one payment at a time, where numpy's per-call cost (1-15 us per
# transform on a scalar, ~60 us for all of them) was most of the feature time. These are the
# one-payment forms of ROW_TRANSFORMS, operation for operation with math instead of numpy (NaN in,
# NaN out, no exception on a value numpy answers NaN for); tests/features/test_transforms.py
# checks every one against its ROW_TRANSFORMS definition, the parity test against batch.

_NAN = float("nan")
_DEG = math.pi / 180.0


def haversine_km_one(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """`haversine_km` on four floats."""
    p1, p2 = lat1 * _DEG, lat2 * _DEG
    dl = lon2 * _DEG - lon1 * _DEG
    a = math.sin((p2 - p1) / 2.0) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2.0) ** 2
    if a > 1.0:
        a = 1.0
    if not a >= 0.0:  # NaN (or a negative from coordinates off the globe): numpy gives NaN
        return _NAN
    return 2.0 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))


def _log1p_one(x: float) -> float:
    if x != x:
        return _NAN
    if x <= -1.0:  # numpy: -inf at -1, NaN below
        return -math.inf if x == -1.0 else _NAN
    return math.log1p(x)


def _mismatch_one(a: str, b: str) -> Callable[[Cols], float]:
    return lambda c: _NAN if c[a] is None or c[b] is None else float(c[a] != c[b])


def _auth_is_one(value: str) -> Callable[[Cols], float]:
    return lambda c: _NAN if c["auth_result"] is None else float(c["auth_result"] == value)


def _hour_one(ts: int) -> float:
    return float((int(ts) // NS_PER_HOUR) % 24)


def _nonneg(x: float) -> float:
    return x if not x < 0.0 else 0.0  # np.maximum(x, 0.0): NaN stays NaN


ROW_SCALARS: dict[str, Callable[[Cols], float]] = {
    "log_amount": lambda c: _log1p_one(float(c["amount"])),
    "hour_of_day": lambda c: _hour_one(c["timestamp"]),
    "is_night": lambda c: 1.0 if _hour_one(c["timestamp"]) < 6 else 0.0,
    "is_weekend": lambda c: 1.0 if (int(c["timestamp"]) // NS_PER_DAY + 3) % 7 >= 5 else 0.0,
    **{name: _mismatch_one(a, b) for name, (a, b) in MISMATCHES.items()},
    "home_merchant_distance_km": lambda c: haversine_km_one(
        c["customer_lat"], c["customer_lon"], c["merchant_lat"], c["merchant_lon"]
    ),
    "account_age_days": lambda c: (float(c["timestamp"]) - c["account_created_at"]) / NS_PER_DAY,
    "credential_change_age_hours": lambda c: (
        (float(c["timestamp"]) - c["credential_changed_at"]) / NS_PER_HOUR
    ),
    "log_city_population": lambda c: _log1p_one(_nonneg(float(c["city_population"]))),
    "mcc_code": lambda c: category_code(c["mcc"]),
    "customer_age": lambda c: float(c["customer_age"]) + 0.0,
    **{name: _auth_is_one(value) for name, value in AUTH_IS.items()},
}
