"""One payment + per-entity state -> the same feature vector the batch executor gives.

The window rules are the registry's: a prior payment is in a window when its timestamp is
greater than (t - window); history holds only payments already seen, which is "strictly
before" when payments arrive in (timestamp, transaction_id) order. Amount statistics use exact
integer cents, as in batch. Call `compute` before `update` for each payment.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from data.schema import COLUMNS
from features.registry import FEATURES, Feature
from features.state import EMPTY, History, PaymentEvent, StateStore, entity_keys
from features.transforms import NS_PER_DAY, NS_PER_S, ROW_TRANSFORMS, haversine_km

_NAN = math.nan
_ROW_TIMESTAMPS = ("account_created_at", "credential_changed_at")
_NUMERIC = tuple(c.name for c in COLUMNS if c.kind == "float")
_TEXT_DEFAULTS = tuple(
    c.name for c in COLUMNS if c.kind in ("str", "category") and c.name != "transaction_id"
)
_TEXT_FIELDS = frozenset((*_TEXT_DEFAULTS, "transaction_id"))


def timestamp_ns(value: Any) -> int:
    """datetime / pandas Timestamp / ISO string / int ns -> int ns since the epoch (UTC)."""
    if isinstance(value, (int, np.integer)):
        return int(value)
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return int(ts.value)


def _opt_ns(value: Any) -> float:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return _NAN
    return float(timestamp_ns(value))


def _opt_float(value: Any) -> float:
    return _NAN if value is None else float(value)


def _opt_str(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return str(value)


def prepare(payment: Mapping[str, Any]) -> dict[str, Any]:
    """Contract fields as features read them: ns ints, floats with NaN, str or None."""
    out: dict[str, Any] = dict.fromkeys(_TEXT_DEFAULTS)
    out.update(dict.fromkeys(_NUMERIC, _NAN))
    out.update(dict.fromkeys(_ROW_TIMESTAMPS, _NAN))
    for key, value in payment.items():
        if key == "timestamp":
            out[key] = timestamp_ns(value)
        elif key in _ROW_TIMESTAMPS:
            out[key] = _opt_ns(value)
        elif key in _NUMERIC:
            out[key] = _opt_float(value)
        elif key in _TEXT_FIELDS:
            out[key] = _opt_str(value)
        else:
            out[key] = value
    return out


def event_of(p: Mapping[str, Any]) -> PaymentEvent:
    """The state's record of a prepared payment."""
    return PaymentEvent(
        transaction_id=str(p["transaction_id"]),
        ts=int(p["timestamp"]),
        cents=round(float(p["amount"]) * 100.0),
        card_id=p.get("card_id"),
        customer_id=p.get("customer_id"),
        merchant_id=p.get("merchant_id"),
        device_id=p.get("device_id"),
        ip_hash=p.get("ip_hash"),
        email_domain=p.get("email_domain"),
        merchant_lat=_opt_float(p.get("merchant_lat")),
        merchant_lon=_opt_float(p.get("merchant_lon")),
        mcc=p.get("mcc"),
    )


def _median(values: list[int]) -> float:
    s = sorted(values)
    n = len(s)
    return (s[(n - 1) // 2] + s[n // 2]) / 2


class OnlineFeatures:
    """Computes a model's features for one payment at a time from a `StateStore`."""

    def __init__(self, store: StateStore, features: Sequence[Feature] = FEATURES) -> None:
        self.store = store
        self.features = tuple(features)
        self.names = [f.name for f in self.features]

    def compute(self, payment: Mapping[str, Any]) -> np.ndarray:
        """Feature vector (float64, registry order) for a prepared payment; state unchanged."""
        p = payment
        t: int = p["timestamp"]
        cents = round(float(p["amount"]) * 100.0)
        hist_cache: dict[str, History] = {}
        start_cache: dict[tuple[str, int], int] = {}
        fraud_cache: dict[tuple[str, int], int] = {}
        many = getattr(self.store, "histories", None)
        if callable(many):  # a remote store: every history this payment needs in one round trip
            wanted = list(entity_keys(event_of(p)).items())
            for (entity, _), h in zip(wanted, many(wanted), strict=True):
                hist_cache[entity] = h
        out = np.empty(len(self.features))

        def hist(entity: str) -> History:
            h = hist_cache.get(entity)
            if h is None:
                if entity == "customer_device":
                    cust, dev = p.get("customer_id"), p.get("device_id")
                    key = None if cust is None or dev is None else f"{cust}\x1f{dev}"
                else:
                    key = p.get(_ENTITY_FIELD[entity])
                h = EMPTY if key is None else self.store.history(entity, key)
                hist_cache[entity] = h
            return h

        def start(entity: str, window: int) -> int:
            k = (entity, window)
            s = start_cache.get(k)
            if s is None:
                s = start_cache[k] = bisect_right(hist(entity).ts, t - window * NS_PER_S)
            return s

        def fraud_since(entity: str, back: int) -> int:
            """Known fraud with payment time > t - back."""
            k = (entity, back)
            c = fraud_cache.get(k)
            if c is None:
                fraud_ts = hist(entity).fraud_ts
                c = fraud_cache[k] = len(fraud_ts) - bisect_right(fraud_ts, t - back * NS_PER_S)
            return c

        for i, f in enumerate(self.features):
            agg = f.aggregation
            if agg == "row":
                out[i] = float(ROW_TRANSFORMS[f.name](p))
                continue
            key_field = "device_id" if agg == "pair_new" else _ENTITY_FIELD[f.entity]
            if p.get(key_field) is None or (agg == "pair_new" and p.get("customer_id") is None):
                out[i] = _NAN
                continue
            if agg == "pair_new":
                h = hist("customer_device")
                out[i] = 1.0 if start("customer_device", f.window) == len(h.ts) else 0.0
                continue
            if agg == "label_rate" or agg == "label_count":
                # the window (t - delay - window, t - delay]: both ends are window starts
                hi = start(f.entity, f.label_delay)
                lo = start(f.entity, f.label_delay + f.window)
                frauds = fraud_since(f.entity, f.label_delay + f.window) - fraud_since(
                    f.entity, f.label_delay
                )
                if agg == "label_count":
                    out[i] = float(frauds)
                else:
                    out[i] = frauds / (hi - lo) if hi > lo else _NAN
                continue
            h = hist(f.entity)
            s = start(f.entity, f.window)
            n = len(h.ts) - s
            if agg == "count":
                out[i] = float(n)
            elif agg == "since_first":
                out[i] = (t - h.ts[s]) / NS_PER_DAY if n > 0 else _NAN
            elif agg == "distinct_cards":
                seen = set(h.cards[s:])
                seen.add(p.get("card_id"))
                seen.discard(None)
                out[i] = float(len(seen)) if p.get("card_id") is not None else _NAN
            elif agg in ("since_prev", "prev_distance", "prev_speed"):
                out[i] = _previous(h, s, t, p, agg)
            elif agg in ("sum", "mean", "mean_ratio"):
                out[i] = _amount_sum_stat(agg, h.cents_since(s), n, cents)
            else:
                out[i] = _amount_stat(agg, h.cents[s:], n, cents)
        return out

    def update(self, payment: Mapping[str, Any]) -> None:
        """Remember a scored payment (after `compute`)."""
        self.store.record_payment(event_of(payment))

    def apply_label(self, transaction_id: str, is_fraud: bool, label_time: Any) -> bool:
        """A chargeback or review decision: updates label-based features from now on."""
        return self.store.record_label(transaction_id, is_fraud, timestamp_ns(label_time))

    def compute_and_update(self, payment: Mapping[str, Any]) -> np.ndarray:
        values = self.compute(payment)
        self.update(payment)
        return values


_ENTITY_FIELD: dict[str, str] = {
    "card": "card_id",
    "customer": "customer_id",
    "merchant": "merchant_id",
    "category": "mcc",
    "device": "device_id",
    "ip": "ip_hash",
    "email_domain": "email_domain",
    "payment": "transaction_id",
}


def _amount_sum_stat(agg: str, s: int, n: int, cents: int) -> float:
    """Statistics of a window that need only its size and exact sum (in cents)."""
    if agg == "sum":
        return s / 100.0
    if agg == "mean":
        return s / (100.0 * n) if n > 0 else _NAN
    if agg == "mean_ratio":
        return (cents * n) / s if n > 0 and s > 0 else _NAN
    raise ValueError(f"unknown aggregation {agg}")


def _amount_stat(agg: str, window: list[int], n: int, cents: int) -> float:
    s = sum(window)
    if agg == "zscore":
        if n < 2:
            return _NAN
        var_n2 = n * sum(v * v for v in window) - s * s
        return (n * cents - s) / math.sqrt(var_n2) if var_n2 > 0 else _NAN
    if agg == "median_ratio":
        if n == 0:
            return _NAN
        med = _median(window)
        return cents / med if med > 0 else _NAN
    raise ValueError(f"unknown aggregation {agg}")


def _previous(h: History, s: int, t: int, p: Mapping[str, Any], agg: str) -> float:
    if s >= len(h.ts):
        return _NAN
    dt_s = (t - h.ts[-1]) / NS_PER_S
    if agg == "since_prev":
        return dt_s
    dist = float(
        haversine_km(h.lat[-1], h.lon[-1], p.get("merchant_lat", _NAN), p.get("merchant_lon", _NAN))
    )
    return dist if agg == "prev_distance" else dist / (max(dt_s, 60.0) / 3600)
