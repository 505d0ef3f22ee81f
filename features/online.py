"""One payment + per-entity state -> the same feature vector the batch executor gives.

The window rules are the registry's: a prior payment is in a window when its timestamp is
greater than (t - window); history holds only payments already seen, which is "strictly
before" when payments arrive in (timestamp, transaction_id) order. Amount statistics use exact
integer cents, as in batch. Call `compute` before `update` for each payment.

The registry is turned into a plan once, at construction: per entity history, the distinct
window starts its features need and, per aggregation, (output index, window slot) lists. A
payment then costs one bisect per distinct window and a tight loop per aggregation, not a
dispatch per feature; row features use the one-payment forms (`transforms.ROW_SCALARS`).
"""

from __future__ import annotations

import math
import operator
from array import array
from bisect import bisect_right
from collections.abc import Callable, ItemsView, Iterator, KeysView, Mapping, Sequence, ValuesView
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from data.schema import COLUMNS
from features.registry import FEATURES, Feature
from features.state import History, PaymentEvent, StateStore, usable_kernel
from features.transforms import (
    _DEG,
    EARTH_RADIUS_KM,
    NS_PER_DAY,
    NS_PER_S,
    ROW_SCALARS,
    haversine_km_one,
)

try:  # the plans' walk compiled (features/_windows.c); without it, the same walk in Python
    import features._windows as _windows
except ImportError:  # pragma: no cover - a source tree that was not built
    _windows = None  # type: ignore[assignment]
_windows = usable_kernel(_windows)

_NAN = math.nan
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)  # a naive time is read as UTC (as pandas does here)
_US = timedelta(microseconds=1)
_ROW_TIMESTAMPS = ("account_created_at", "credential_changed_at")
_NUMERIC = tuple(c.name for c in COLUMNS if c.kind == "float")
_IS_ROW_TIMESTAMP = frozenset(_ROW_TIMESTAMPS)
_IS_NUMERIC = frozenset(_NUMERIC)
_TEXT_DEFAULTS = tuple(
    c.name for c in COLUMNS if c.kind in ("str", "category") and c.name != "transaction_id"
)
_TEXT_FIELDS = frozenset((*_TEXT_DEFAULTS, "transaction_id"))


def timestamp_ns(value: Any) -> int:
    """datetime / pandas Timestamp / ISO string / int ns -> int ns since the epoch (UTC)."""
    if isinstance(value, (int, np.integer)):
        return int(value)
    if type(value) is datetime:  # the API's payments: exact integer arithmetic, no pandas
        # (a pd.Timestamp, a datetime subclass, may carry nanoseconds: it takes the path below)
        return (value - (_EPOCH if value.tzinfo is not None else _EPOCH_NAIVE)) // _US * 1000
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


# What a prepared payment holds before its fields are read: text fields None, numbers and the
# row timestamps NaN (in that order, as before).
_PREPARED: dict[str, Any] = {
    **dict.fromkeys(_TEXT_DEFAULTS),
    **dict.fromkeys(_NUMERIC, _NAN),
    **dict.fromkeys(_ROW_TIMESTAMPS, _NAN),
}


def prepare(payment: Mapping[str, Any]) -> dict[str, Any]:
    """Contract fields as features read them: ns ints, floats with NaN, str or None."""
    out: dict[str, Any] = _PREPARED.copy()  # one allocation, sized for the contract
    for key, value in payment.items():
        if key == "timestamp":
            out[key] = timestamp_ns(value)
        elif key in _IS_ROW_TIMESTAMP:
            out[key] = _opt_ns(value)
        elif key in _IS_NUMERIC:
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


# Aggregations read from an entity's history, by how the plan computes them.
_WINDOWED = frozenset(
    {
        "count",
        "sum",
        "mean",
        "mean_ratio",
        "median_ratio",
        "zscore",
        "since_prev",
        "since_first",
        "prev_distance",
        "prev_speed",
        "distinct_cards",
        "pair_new",
        "label_rate",
        "label_count",
    }
)


_PREVIOUS = {"since_prev": 0, "prev_distance": 1, "prev_speed": 2}


@dataclass(frozen=True)
class _EntityPlan:
    """What one payment reads from one entity's history, worked out once from the registry.

    `offsets` are the distinct window starts (ns before the payment) that its features need and
    `fraud_offsets` the distinct label-window ends; each feature is then an output index and
    slot numbers into those lists, grouped by aggregation, so `compute` runs one bisect per
    distinct window and a tight loop per aggregation instead of dispatching feature by feature.
    """

    entity: str  # the history's name in the state ("customer_device": the pair)
    field: str | None  # the payment field that keys it (None: the customer/device pair)
    offsets: tuple[int, ...]
    fraud_offsets: tuple[int, ...]
    ops: tuple[tuple[str, tuple[tuple[int, ...], ...]], ...]  # (aggregation, (index, slots...))
    sums: bool  # some feature needs a window's sum of cents


def _plan(
    features: Sequence[Feature],
) -> tuple[list[tuple[int, Callable[[Mapping[str, Any]], float]]], list[_EntityPlan]]:
    """(row features as (index, transform), one plan per entity history) for `features`."""
    rows: list[tuple[int, Callable[[Mapping[str, Any]], float]]] = []
    by_entity: dict[str, list[tuple[int, Feature]]] = {}
    for i, f in enumerate(features):
        if f.aggregation == "row":
            rows.append((i, ROW_SCALARS[f.name]))
        elif f.aggregation in _WINDOWED:
            entity: str = "customer_device" if f.aggregation == "pair_new" else f.entity
            by_entity.setdefault(entity, []).append((i, f))
        else:
            raise ValueError(f"unknown aggregation {f.aggregation}")
    plans = []
    for entity, members in by_entity.items():
        offsets: list[int] = []
        fraud_offsets: list[int] = []

        def slot(values: list[int], seconds: int) -> int:
            ns = seconds * NS_PER_S
            if ns not in values:
                values.append(ns)
            return values.index(ns)

        ops: dict[str, list[tuple[int, ...]]] = {}
        for i, f in members:
            agg = f.aggregation
            if agg in ("label_rate", "label_count"):
                # the window (t - delay - window, t - delay]: both ends are window starts
                hi = slot(offsets, f.label_delay)
                lo = slot(offsets, f.label_delay + f.window)
                fhi = slot(fraud_offsets, f.label_delay)
                flo = slot(fraud_offsets, f.label_delay + f.window)
                ops.setdefault("labels", []).append((i, hi, lo, fhi, flo, agg == "label_rate"))
            elif agg in _PREVIOUS:
                ops.setdefault("previous", []).append((i, slot(offsets, f.window), _PREVIOUS[agg]))
            elif agg in ("zscore", "median_ratio"):
                ops.setdefault("amounts", []).append((i, slot(offsets, f.window), agg == "zscore"))
            else:
                ops.setdefault(agg, []).append((i, slot(offsets, f.window)))
        plans.append(
            _EntityPlan(
                entity=entity,
                field=None if entity == "customer_device" else _ENTITY_FIELD[entity],
                offsets=tuple(offsets),
                fraud_offsets=tuple(fraud_offsets),
                ops=tuple((agg, tuple(items)) for agg, items in ops.items()),
                sums=bool(ops.keys() & {"sum", "mean", "mean_ratio"}),
            )
        )
    return rows, plans


class _Scratch:
    """What one `compute` writes before the result leaves: the feature values (an array the
    result is copied from) and the per-entity look-ups, sized once from the plan and reused
    call after call, so a payment allocates its result and little else."""

    __slots__ = ("fraud", "keys", "seen", "starts", "sums", "values", "view")

    def __init__(self, n_features: int, plans: Sequence[_EntityPlan]) -> None:
        self.values = array("d", bytes(8 * n_features))
        self.view = np.frombuffer(self.values, dtype=np.float64)  # shares `values`' memory
        self.keys: list[str | None] = [None] * len(plans)
        self.starts = [[0] * len(plan.offsets) for plan in plans]
        self.sums = [[0] * len(plan.offsets) for plan in plans]
        self.fraud = [[0] * len(plan.fraud_offsets) for plan in plans]
        self.seen: set[str | None] = set()


class OnlineFeatures:
    """Computes a model's features for one payment at a time from a `StateStore`.

    `compute` returns a new array the caller owns (kept, stacked, mutated: as it likes);
    `compute_into` writes into the caller's own. The work in between uses scratch buffers
    reused across calls (one per concurrent caller: a call takes one from a free list and puts
    it back), so neither a later call nor another thread changes a result already returned.
    """

    def __init__(
        self,
        store: StateStore,
        features: Sequence[Feature] = FEATURES,
        *,
        compiled: bool | None = None,
    ) -> None:
        """`compiled`: walk the plans in C (features/_windows.c; None: when it is built),
        False: in Python. Both give the same bits (tests/features/test_windows_kernel.py)."""
        if compiled and _windows is None:
            raise RuntimeError(
                "features._windows is not built (or is a stale build): pip install -e . builds it"
            )
        self.store = store
        self.features = tuple(features)
        self.names = [f.name for f in self.features]
        self.name_tuple = tuple(self.names)  # shared by every FeatureRow of this executor
        self._rows, self._plans = _plan(self.features)
        self.compiled = _windows is not None if compiled is None else compiled
        # the plans as the kernel reads them: (offsets, fraud offsets, sums, ((code, items),))
        self._kplans = tuple(
            (
                plan.offsets,
                plan.fraud_offsets,
                plan.sums,
                tuple((_KERNEL_CODE[agg], items) for agg, items in plan.ops),
            )
            for plan in self._plans
        )
        self._nans = array("d", [_NAN]) * len(self.features)
        self._free: list[_Scratch] = []  # scratch not in use (list.pop/append: thread-safe)

    def _key(self, plan: _EntityPlan, p: Mapping[str, Any]) -> str | None:
        if plan.field is not None:
            return p.get(plan.field)
        cust, dev = p.get("customer_id"), p.get("device_id")
        return None if cust is None or dev is None else f"{cust}\x1f{dev}"

    def compute(self, payment: Mapping[str, Any]) -> np.ndarray:
        """Feature vector (float64, registry order) for a prepared payment; state unchanged.
        A new array each call: later calls never change it."""
        free = self._free
        s = free.pop() if free else _Scratch(len(self.features), self._plans)
        try:
            self._fill(payment, s)
            return s.view.copy()
        finally:
            free.append(s)

    def compute_into(self, payment: Mapping[str, Any], out: np.ndarray) -> np.ndarray:
        """`compute` written into `out` (float64, one value per feature), which is returned:
        for a caller that reuses its own buffer (nothing is allocated for the result)."""
        if out.shape != (len(self.features),) or out.dtype != np.float64:
            raise ValueError(
                f"out must be float64 of shape ({len(self.features)},), got {out.dtype} {out.shape}"
            )
        free = self._free
        s = free.pop() if free else _Scratch(len(self.features), self._plans)
        try:
            self._fill(payment, s)
            np.copyto(out, s.view)
            return out
        finally:
            free.append(s)

    def _fill(self, p: Mapping[str, Any], s: _Scratch) -> None:
        """The feature values of prepared payment `p`, into `s.values`: the histories looked
        up here, the plans walked in C when built, else (or for what C refuses: an int past
        64 bits) in Python."""
        if not self.compiled or not self._plans:
            self._fill_py(p, s)
            return
        out = self._row_values(p, s)
        hists = self._histories(p, s)
        try:
            _windows.fill(
                out,
                p["timestamp"],
                round(float(p["amount"]) * 100.0),
                p.get("card_id"),
                p.get("merchant_lat", _NAN),
                p.get("merchant_lon", _NAN),
                self._kplans,
                hists,
                _DEG,
                EARTH_RADIUS_KM,
            )
        except (OverflowError, TypeError):  # the exact Python walk, from the start
            self._fill_py(p, s)

    def _row_values(self, p: Mapping[str, Any], s: _Scratch) -> array[float]:
        """`s.values` reset to NaN with the row features filled in (both walks start so)."""
        out = s.values
        out[:] = self._nans
        for i, fn in self._rows:
            out[i] = fn(p)
        return out

    def _histories(self, p: Mapping[str, Any], s: _Scratch) -> list[History | None]:
        """One history per plan (None: the payment does not name that entity)."""
        keys = s.keys
        for j, plan in enumerate(self._plans):
            keys[j] = self._key(plan, p)
        many = getattr(self.store, "histories", None)
        if callable(many):  # a remote store: every history this payment needs in one round trip
            plans = self._plans
            wanted = [
                (plan.entity, key) for plan, key in zip(plans, keys, strict=True) if key is not None
            ]
            fetched = iter(many(wanted)) if wanted else iter(())
            return [None if key is None else next(fetched) for key in keys]
        history = self.store.history
        return [
            None if key is None else history(plan.entity, key)
            for plan, key in zip(self._plans, keys, strict=True)
        ]

    def _fill_py(self, p: Mapping[str, Any], s: _Scratch) -> None:
        """`_fill` in Python: the reference the kernel is held to."""
        t: int = p["timestamp"]
        out = self._row_values(p, s)
        plans = self._plans
        if not plans:
            return
        hists = self._histories(p, s)
        cents = round(float(p["amount"]) * 100.0)
        card = p.get("card_id")
        for j, plan in enumerate(plans):
            h = hists[j]
            if h is None:
                continue  # the entity is unknown for this payment: its features stay NaN
            ts = h.ts
            n_all = len(ts)
            starts = s.starts[j]
            for w, off in enumerate(plan.offsets):
                starts[w] = bisect_right(ts, t - off)
            sums = s.sums[j]
            if plan.sums:  # each window's exact sum of cents, from the running totals
                csum = h.csum
                origin = csum[0] - h.cents[0] if n_all else 0
                for w, start in enumerate(starts):
                    sums[w] = (
                        csum[-1] - (csum[start - 1] if start > 0 else origin)
                        if start < n_all
                        else 0
                    )
            for agg, items in plan.ops:
                if agg == "count":
                    for i, k in items:
                        out[i] = float(n_all - starts[k])
                elif agg == "sum":
                    for i, k in items:
                        out[i] = sums[k] / 100.0
                elif agg == "mean":
                    for i, k in items:
                        n = n_all - starts[k]
                        out[i] = sums[k] / (100.0 * n) if n > 0 else _NAN
                elif agg == "mean_ratio":
                    for i, k in items:
                        n = n_all - starts[k]
                        total = sums[k]
                        out[i] = (cents * n) / total if n > 0 and total > 0 else _NAN
                elif agg == "labels":
                    fraud_ts = h.fraud_ts
                    fraud = s.fraud[j]
                    for w, off in enumerate(plan.fraud_offsets):
                        fraud[w] = bisect_right(fraud_ts, t - off) if fraud_ts else 0
                    for i, hi, lo, fhi, flo, rate in items:
                        frauds = fraud[fhi] - fraud[flo]
                        if not rate:
                            out[i] = float(frauds)
                        else:
                            paid = starts[hi] - starts[lo]
                            out[i] = frauds / paid if paid > 0 else _NAN
                elif agg == "since_first":
                    for i, k in items:
                        first = starts[k]
                        out[i] = (t - ts[first]) / NS_PER_DAY if first < n_all else _NAN
                elif agg == "pair_new":
                    for i, k in items:
                        out[i] = 1.0 if starts[k] == n_all else 0.0
                elif agg == "distinct_cards":
                    if card is None:
                        continue
                    seen, cards = s.seen, h.cards
                    for i, k in items:
                        seen.add(card)
                        for c in range(starts[k], n_all):
                            seen.add(cards[c])
                        seen.discard(None)
                        out[i] = float(len(seen))
                        seen.clear()  # holds no card id between calls
                elif agg == "previous":  # the entity's previous payment, if in the window
                    if not n_all:
                        continue
                    dt_s = (t - ts[-1]) / NS_PER_S
                    dist = haversine_km_one(
                        h.lat[-1],
                        h.lon[-1],
                        p.get("merchant_lat", _NAN),
                        p.get("merchant_lon", _NAN),
                    )
                    speed = dist / (max(dt_s, 60.0) / 3600)
                    for i, k, what in items:
                        if starts[k] < n_all:
                            out[i] = dt_s if what == 0 else dist if what == 1 else speed
                elif agg == "amounts":  # statistics that need the window's amounts themselves
                    for i, k, zscore in items:
                        first = starts[k]
                        window = h.cents[first:]
                        out[i] = (_zscore if zscore else _median_ratio)(
                            window, n_all - first, cents
                        )
                else:
                    raise AssertionError(agg)

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


class FeatureRow(Mapping[str, float]):
    """One payment's feature values by name, over its computed vector (float64, registry
    order). Scoring reads features by name only when a rule or a review case asks, and the
    durable write stores the vector as bytes: building the name -> value dict for every
    payment (60 names) cost more than the policy itself, so it is built on first read."""

    __slots__ = ("_dict", "names", "vector")

    def __init__(self, names: tuple[str, ...], vector: np.ndarray) -> None:
        if vector.shape != (len(names),):
            raise ValueError(f"{len(names)} names for a vector of shape {vector.shape}")
        self.names = names
        self.vector = vector
        self._dict: dict[str, float] | None = None

    def as_dict(self) -> dict[str, float]:
        """name -> Python float (the vector's values, bit for bit)."""
        if self._dict is None:
            self._dict = dict(zip(self.names, self.vector.tolist(), strict=True))
        return self._dict

    def __getitem__(self, name: str) -> float:
        return self.as_dict()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def keys(self) -> KeysView[str]:
        return self.as_dict().keys()

    def items(self) -> ItemsView[str, float]:
        return self.as_dict().items()

    def values(self) -> ValuesView[float]:
        return self.as_dict().values()

    def __repr__(self) -> str:
        return f"FeatureRow({self.as_dict()!r})"


# the kernel's names for the plans' aggregations (the enum in features/_windows.c)
_KERNEL_CODE = {
    "count": 0,
    "sum": 1,
    "mean": 2,
    "mean_ratio": 3,
    "labels": 4,
    "since_first": 5,
    "pair_new": 6,
    "distinct_cards": 7,
    "previous": 8,
    "amounts": 9,
}

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


def _zscore(window: list[int], n: int, cents: int) -> float:
    if n < 2:
        return _NAN
    s = sum(window)
    var_n2 = n * sum(map(operator.mul, window, window)) - s * s
    return (n * cents - s) / math.sqrt(var_n2) if var_n2 > 0 else _NAN


def _median_ratio(window: list[int], n: int, cents: int) -> float:
    """`window` is the caller's own copy: sorted in place (no second list)."""
    if n == 0:
        return _NAN
    window.sort()
    med = (window[(n - 1) // 2] + window[n // 2]) / 2
    return cents / med if med > 0 else _NAN
