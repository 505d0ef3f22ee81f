"""The compiled walk of the online plans (features/_windows.c) gives exactly the Python walk's
values: same floats, bit for bit (NaN where it gives NaN), on a simulated month, on adversarial
random histories, and where C must hand over to Python (ints past 64 bits)."""

from __future__ import annotations

from array import array

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import features.online as online_mod
from features.online import OnlineFeatures, prepare
from features.registry import FEATURES
from features.replay import replay
from features.state import MemoryState
from tests.features.helpers import random_frame, with_demographics

pytest.importorskip("features._windows", reason="the kernel is built by pip install -e .")


def assert_same_bits(python: pd.DataFrame, compiled: pd.DataFrame) -> int:
    """Every value identical: equal floats, NaN exactly where the other has NaN."""
    assert list(python.columns) == list(compiled.columns)
    a = python.iloc[:, 1:].to_numpy(dtype=np.float64)
    b = compiled.iloc[:, 1:].to_numpy(dtype=np.float64)
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    assert (nan_a == nan_b).all(), "NaN in one walk only"
    differ = np.flatnonzero((a != b) & ~nan_a)
    if len(differ):
        row, col = np.unravel_index(differ[0], a.shape)
        name = python.columns[1 + col]
        raise AssertionError(
            f"{len(differ)} values differ; first {name} row {row}: "
            f"python {a[row, col]!r}, compiled {b[row, col]!r}"
        )
    return a.size


@pytest.fixture(scope="module")
def month() -> pd.DataFrame:
    simulate = pytest.importorskip("data.simulator")
    cfg = simulate.SimulationConfig(rows=6_000, days=30, seed=5, fraud_rate=0.03)
    return with_demographics(simulate.simulate(cfg))


def test_the_kernel_walks_a_simulated_month_exactly_as_python(month) -> None:
    python = replay(month, compiled=False)
    compiled = replay(month, compiled=True)
    assert assert_same_bits(python, compiled) == len(month) * len(FEATURES)
    # every kind of aggregation was exercised with real values, not only NaN
    values = compiled.set_index("transaction_id")
    for name in (
        "card_count_24h",
        "customer_mean_7d",
        "amount_to_category_mean_30d",
        "merchant_fraud_rate_30d",
        "card_fraud_count_30d",
        "distinct_cards_per_ip_24h",
        "days_since_merchant_first_seen_30d",
    ):
        assert (values[name].fillna(0) > 0).sum() > 50, name
    for f in FEATURES:  # the previous-payment and amount statistics too
        if f.aggregation in ("zscore", "median_ratio", "prev_distance", "prev_speed", "pair_new"):
            assert values[f.name].notna().sum() > 50, f.name


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.one_of(st.sampled_from([1, 2, 3]), st.integers(1, 200)),
    span_days=st.sampled_from([0.01, 1.0, 8.0, 40.0, 90.0]),
    tie_share=st.sampled_from([0.0, 0.5, 0.95]),
    minimal=st.booleans(),
)
def test_the_kernel_equals_python_on_random_histories(seed, n, span_days, tie_share, minimal):
    frame = random_frame(seed, n, span_days=span_days, tie_share=tie_share, minimal=minimal)
    assert_same_bits(replay(frame, compiled=False), replay(frame, compiled=True))


def _payment(i: int, amount: float, at_s: int) -> dict:
    return prepare(
        {
            "transaction_id": f"t{i}",
            "timestamp": pd.Timestamp("2024-03-01", tz="UTC") + pd.Timedelta(seconds=at_s),
            "card_id": "c1",
            "customer_id": "u1",
            "merchant_id": "m1",
            "amount": amount,
            "currency": "EUR",
            "merchant_lat": 48.85,
            "merchant_lon": 2.35,
        }
    )


def test_an_amount_past_64_bit_cents_is_computed_by_python_with_the_same_result() -> None:
    """1e17 (10^19 cents) does not fit the kernel's ints: it hands the payment to Python, whose
    ints are exact, and the two executors still agree on it and on the payments after it."""
    fast = OnlineFeatures(MemoryState(), FEATURES, compiled=True)
    slow = OnlineFeatures(MemoryState(), FEATURES, compiled=False)
    for i, amount in enumerate([12.5, 1e17, 40.0, 7.25]):
        p = _payment(i, amount, 60 * i)
        a, b = slow.compute(p), fast.compute(p)
        np.testing.assert_array_equal(a, b, err_msg=f"payment {i}")
        slow.update(p)
        fast.update(p)
    sums = [j for j, f in enumerate(FEATURES) if f.name == "card_sum_24h"]
    assert sums
    assert a[sums[0]] == pytest.approx(1e17 + 52.5)  # the big one counted exactly


def test_asking_for_the_kernel_where_it_is_not_built_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(online_mod, "_windows", None)
    with pytest.raises(RuntimeError, match=r"features\._windows is not built"):
        OnlineFeatures(MemoryState(), FEATURES, compiled=True)
    assert OnlineFeatures(MemoryState(), FEATURES).compiled is False  # the Python walk


def test_the_kernel_refuses_a_buffer_that_is_not_float64() -> None:
    from features import _windows

    with pytest.raises(TypeError, match="float64"):
        _windows.fill(array("i", [0] * 4), 0, 0, None, 0.0, 0.0, (), [], 1.0, 1.0)


def _located(i: int, at_s: int, lat: float, lon: float, ts: int | None = None) -> dict:
    p = _payment(i, 10.0, at_s)
    p["merchant_lat"], p["merchant_lon"] = lat, lon
    if ts is not None:
        p["timestamp"] = ts
    return p


def _both(payments: list[dict]) -> list[tuple[np.ndarray, np.ndarray]]:
    fast = OnlineFeatures(MemoryState(), FEATURES, compiled=True)
    slow = OnlineFeatures(MemoryState(), FEATURES, compiled=False)
    out = []
    for p in payments:
        out.append((slow.compute(p), fast.compute(p)))
        slow.update(p)
        fast.update(p)
    return out


def test_the_previous_payment_distance_is_pythons_to_the_last_bit() -> None:
    """`math.sin(x) ** 2` is libm's pow, which a compiler would fold into x * x (1 value in
    ~1,000 differs in the last bit): the kernel calls pow as Python does. One known case and
    2,000 random pairs of places."""
    rng = np.random.default_rng(7)
    places = [(8.276372114344511, -79.77801712127491), (31.430300461650248, 34.46646950871926)]
    places += list(zip(rng.uniform(-90, 90, 2_000), rng.uniform(-180, 180, 2_000), strict=True))
    payments = [_located(i, 3_600 * i, lat, lon) for i, (lat, lon) in enumerate(places)]
    names = ["card_prev_distance_km", "card_prev_speed_kmh"]
    idx = [j for j, f in enumerate(FEATURES) if f.name in names]
    assert len(idx) == 2
    for i, (a, b) in enumerate(_both(payments)):
        np.testing.assert_array_equal(a[idx], b[idx], err_msg=f"payment {i}")
    (a, b), *_ = _both(payments[:2])[1:]
    assert a[idx[0]] == pytest.approx(11760.39175251958, rel=1e-12)


def test_times_past_64_bits_apart_and_infinite_places_go_to_python() -> None:
    """A payment 2^63 ns from its history's (a replay gone wrong: the API bounds times) is
    walked by Python, whose ints are exact; an infinite coordinate raises as Python's does."""
    far = [
        _located(0, 0, 1.0, 1.0, ts=2**63 - 10**12),
        _located(1, 0, 1.0, 1.0, ts=-(2**63) + 10**12),
    ]
    (_, _), (a, b) = _both(far)
    np.testing.assert_array_equal(a, b)
    fast = OnlineFeatures(MemoryState(), FEATURES, compiled=True)
    fast.update(_located(0, 0, 1.0, 1.0))
    with pytest.raises(ValueError, match="math domain"):
        fast.compute(_located(1, 60, float("inf"), 1.0))


@settings(max_examples=60, deadline=None)
@given(
    amounts=st.lists(
        st.one_of(
            st.sampled_from([0.01, 1.0, 9.99, 10.0, 250.0]),  # ties, even and odd medians
            st.floats(0.01, 5_000.0).map(lambda v: round(v, 2)),
            st.floats(1e9, 1e15).map(lambda v: round(v, 2)),  # sums of squares past 64 bits
        ),
        min_size=1,
        max_size=40,
    )
)
def test_the_amount_statistics_are_pythons_to_the_last_bit(amounts) -> None:
    """The z-score and median ratio over a card's amounts (exact integer sums and a sort in
    C) equal Python's `_zscore` / `_median_ratio`, bit for bit; where a sum of squares goes
    past 64 bits the payment is walked by Python and still agrees."""
    names = ["amount_zscore_card_30d", "amount_to_card_median_30d"]
    idx = [j for j, f in enumerate(FEATURES) if f.name in names]
    assert len(idx) == 2, [f.name for f in FEATURES if f.aggregation in ("zscore", "median_ratio")]
    payments = [_payment(i, amount, 600 * i) for i, amount in enumerate(amounts)]
    for i, (a, b) in enumerate(_both(payments)):
        np.testing.assert_array_equal(a[idx], b[idx], err_msg=f"payment {i}")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 300),
    span_days=st.sampled_from([0.01, 8.0, 40.0, 90.0]),  # 40 and 90: old payments dropped
    label_every=st.sampled_from([0, 3, 7]),
)
def test_the_compiled_appends_leave_the_state_as_python_does(seed, n, span_days, label_every):
    """MemoryState.record_payment's appends in C (`_windows.record`) leave every history
    exactly as the Python appends do: the same lists, the dropped prefixes, the fraud times
    (labels interleaved) and the payments the state still knows."""
    from features.online import event_of

    frame = random_frame(seed, n, span_days=span_days, tie_share=0.3, minimal=False)
    fast, slow = MemoryState(), MemoryState()
    slow.compiled_appends = False
    assert fast.compiled_appends
    rows = frame.sort_values("timestamp", kind="stable").to_dict("records")
    for i, row in enumerate(rows):
        event = event_of(prepare(row))
        for state in (fast, slow):
            state.record_payment(event)
            if label_every and i % label_every == 0:
                state.record_label(event.transaction_id, True, event.ts + 1)
    assert fast._hist.keys() == slow._hist.keys()
    for entity, table in slow._hist.items():
        assert table.keys() == fast._hist[entity].keys(), entity
        for key, h in table.items():
            assert fast._hist[entity][key] == h, (entity, key)
    assert fast._payments == slow._payments
    assert fast._fraud == slow._fraud


def test_a_stale_build_of_the_kernel_is_set_aside() -> None:
    """A _windows built from an older _windows.c (no ABI, or another: other arguments for
    fill, no record) is not used; this build is."""
    import types

    from features import _windows
    from features.state import KERNEL_ABI, usable_kernel

    old = types.ModuleType("features._windows")
    old.fill = lambda *a: None  # type: ignore[attr-defined]
    assert usable_kernel(old) is None
    old.ABI = KERNEL_ABI - 1  # type: ignore[attr-defined]
    assert usable_kernel(old) is None
    assert usable_kernel(None) is None
    assert usable_kernel(_windows) is _windows
    assert _windows.ABI == KERNEL_ABI
    assert online_mod._windows is _windows  # what the executor and the state use
    assert MemoryState.compiled_appends is True
