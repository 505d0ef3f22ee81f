"""Training/serving parity: the online executor reproduces the batch executor, value for value.

Every payment of a history is replayed through `OnlineFeatures` in time order, with its label
events merged in when they became known, and each feature must equal the batch value
(rtol 1e-9, NaN where batch gives NaN). Also through the durable `SQLiteState`, including a
restart half-way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data.schema import validate
from features.batch import compute
from features.online import OnlineFeatures, prepare
from features.registry import DAY, FEATURES, HOUR, available
from features.replay import event_stream, replay
from features.state import SQLiteState
from tests.features.helpers import random_frame, with_demographics

RTOL = 1e-9
SIM_ROWS = 20_000


def assert_parity(batch: pd.DataFrame, online: pd.DataFrame, rows=slice(None)) -> int:
    """Every feature equal (rtol 1e-9, NaN == NaN); returns the number of values compared."""
    assert list(online.columns) == list(batch.columns)
    assert list(online["transaction_id"]) == list(batch["transaction_id"])
    problems = []
    compared = 0
    for name in batch.columns[1:]:
        b = batch[name].to_numpy(dtype=np.float64)[rows]
        o = online[name].to_numpy(dtype=np.float64)[rows]
        same = np.isclose(o, b, rtol=RTOL, atol=0.0, equal_nan=True)
        compared += len(same)
        if not same.all():
            bad = np.flatnonzero(~same)
            i = bad[0]
            txn = batch["transaction_id"].to_numpy()[rows][i]
            problems.append(
                f"{name}: {len(bad)} of {len(same)} rows differ "
                f"(first {txn}: online {o[i]!r}, batch {b[i]!r})"
            )
    assert not problems, "online != batch:\n" + "\n".join(problems)
    return compared


# --- a realistic month through the online executor -------------------------------------------


@pytest.fixture(scope="module")
def simulated():
    simulate = pytest.importorskip("data.simulator")
    # a higher fraud rate than the default, so the label feature sees many chargebacks
    cfg = simulate.SimulationConfig(rows=SIM_ROWS, days=30, seed=11, fraud_rate=0.02)
    return with_demographics(simulate.simulate(cfg))


def test_online_replay_of_simulated_month_equals_batch(simulated):
    assert len(simulated) >= SIM_ROWS
    assert len(available(simulated.columns).features) == len(FEATURES)  # full contract
    batch = compute(simulated)
    online = replay(simulated)
    compared = assert_parity(batch, online)
    assert len(FEATURES) == 83
    assert compared >= SIM_ROWS * 83
    # the comparison is only meaningful if the windowed features were actually exercised
    assert (batch["card_count_24h"] > 0).mean() > 0.5
    assert (batch["customer_mean_7d"] > 0).mean() > 0.5
    assert batch["amount_to_category_mean_30d"].notna().mean() > 0.9
    assert batch["days_since_merchant_first_seen_30d"].max() > 20
    for entity in ("merchant", "card", "customer", "category"):
        for window in ("1d", "7d", "30d"):
            assert (batch[f"{entity}_fraud_count_{window}"] > 0).sum() > 20, (entity, window)
            assert (batch[f"{entity}_fraud_rate_{window}"] > 0).sum() > 20, (entity, window)
    assert (batch["merchant_fraud_rate_30d"] > 0).sum() > 100
    assert batch["distinct_cards_per_ip_24h"].max() > 1
    assert batch["customer_age"].notna().all()


# --- small adversarial histories: ties, tiny and empty histories, early and late labels ------


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.one_of(st.sampled_from([1, 2, 3]), st.integers(1, 250)),
    n_cards=st.integers(1, 8),
    n_merchants=st.integers(1, 4),
    span_days=st.sampled_from([0.01, 1.0, 8.0, 40.0, 90.0]),
    tie_share=st.sampled_from([0.0, 0.2, 0.5, 0.95]),
    minimal=st.booleans(),
)
def test_online_equals_batch_on_random_histories(
    seed, n, n_cards, n_merchants, span_days, tie_share, minimal
):
    frame = random_frame(
        seed,
        n,
        n_cards=n_cards,
        n_merchants=n_merchants,
        span_days=span_days,
        tie_share=tie_share,
        minimal=minimal,
    )
    batch = compute(frame)
    online = replay(frame)
    assert len(batch.columns) - 1 == len(available(frame.columns).features)
    assert assert_parity(batch, online) == n * (len(batch.columns) - 1)


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("minimal", [False, True])
def test_online_equals_batch_with_empty_histories(n, minimal):
    frame = random_frame(n, n, minimal=minimal, tie_share=1.0)
    assert_parity(compute(frame), replay(frame))


def grid_frame(seed: int, n: int) -> pd.DataFrame:
    """Payments and label times on a coarse grid of days and hours, so that window edges
    (exactly 1 h, 24 h, 7 d, 30 d, 37 d apart) and labels at another payment's instant are
    the rule rather than the exception."""
    rng = np.random.default_rng(seed)
    base = pd.Timestamp("2024-01-01", tz="UTC")
    secs = rng.integers(0, 80, n) * DAY + rng.choice([0, 0, HOUR, DAY - HOUR], n)
    fraud = rng.random(n) < 0.4
    labelled = fraud | (rng.random(n) < 0.2)
    delay = rng.choice([0, HOUR, 7 * DAY, 7 * DAY + HOUR, 30 * DAY, 37 * DAY], n)
    card = rng.integers(0, 3, n)
    merchant = rng.choice(["m1", "m2"], n)
    frame = pd.DataFrame(
        {
            "transaction_id": [f"g{i:04d}" for i in rng.permutation(n)],
            "timestamp": base + pd.to_timedelta(secs, unit="s"),
            "card_id": [f"c{c}" for c in card],
            "customer_id": [f"u{c // 2}" for c in card],
            "merchant_id": merchant,
            # m1 is always a grocery; m2 sometimes has no category
            "mcc": np.where(
                (merchant == "m2") & (rng.random(n) < 0.3),
                None,
                np.where(merchant == "m1", "5411", "5812"),
            ),
            "amount": rng.choice([0.0, 1.0, 2.5, 10.0, 10.0, 250.0], n),
            "currency": "EUR",
            "device_id": rng.choice(np.array(["d1", "d2", None], dtype=object), n),
            "ip_hash": rng.choice(np.array(["i1", None], dtype=object), n),
            "is_fraud": np.where(labelled, fraud.astype(float), np.nan),
            "label_time": (base + pd.to_timedelta(secs + delay, unit="s")).where(labelled),
        }
    )
    return validate(frame, source="grid")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 120))
def test_online_equals_batch_when_everything_falls_on_window_edges(seed, n):
    frame = grid_frame(seed, n)
    assert_parity(compute(frame), replay(frame))


# --- through the durable state, with a restart half-way --------------------------------------


def replay_with_restarts(frame: pd.DataFrame, path, restart_after: set[int], **state_kw):
    """Like `replay`, but closes and reopens the SQLiteState after the given event numbers.

    Returns the online features and, per row, the number of restarts before it was scored.
    """
    frame = frame.reset_index(drop=True)
    features = available(frame.columns).features
    prepared = [prepare({str(k): v for k, v in r.items()}) for r in frame.to_dict("records")]
    is_fraud = frame["is_fraud"].to_numpy(dtype=np.float64, na_value=np.nan)
    ids = frame["transaction_id"].to_numpy()
    out = np.full((len(frame), len(features)), np.nan)
    restarts_before = np.zeros(len(frame), dtype=np.int64)
    store = SQLiteState(path, **state_kw)
    online = OnlineFeatures(store, features)
    restarts = 0
    events = event_stream(frame)
    stream = zip(events["time"], events["kind"], events["row"], strict=True)
    for k, (time, kind, row) in enumerate(stream):
        if kind == "payment":
            out[row] = online.compute_and_update(prepared[row])
            restarts_before[row] = restarts
        else:
            online.apply_label(str(ids[row]), bool(is_fraud[row] == 1), int(time))
        if k in restart_after:
            store.close()
            store = SQLiteState(path, **state_kw)
            online = OnlineFeatures(store, features)
            restarts += 1
    store.close()
    result = pd.DataFrame(out, columns=[f.name for f in features])
    result.insert(0, "transaction_id", ids)
    return result, restarts_before


@pytest.fixture(scope="module")
def small_simulated():
    simulate = pytest.importorskip("data.simulator")
    return with_demographics(
        simulate.simulate(simulate.SimulationConfig(rows=3_000, days=30, seed=5, fraud_rate=0.03))
    )


def test_sqlite_state_replay_equals_batch(small_simulated, tmp_path):
    store = SQLiteState(tmp_path / "state.db")
    try:
        online = replay(small_simulated, store=store)
    finally:
        store.close()
    assert_parity(compute(small_simulated), online)


@pytest.mark.parametrize(
    ("span_days", "commit_every"),
    [
        pytest.param(20.0, 1, id="restart-inside-lookback"),
        # 90 days: at the restart the log holds events older than MAX_LOOKBACK, which the
        # reopened state must drop without losing anything a later window needs
        pytest.param(90.0, 1, id="restart-after-more-than-lookback"),
        pytest.param(90.0, 64, id="batched-commits"),
    ],
)
def test_sqlite_state_restart_half_way_keeps_parity(tmp_path, span_days, commit_every):
    frame = random_frame(21, 600, n_cards=5, span_days=span_days, tie_share=0.3)
    n_events = len(event_stream(frame))
    half = n_events // 2
    online, restarts_before = replay_with_restarts(
        frame, tmp_path / "state.db", {half}, commit_every=commit_every
    )
    after = restarts_before == 1
    assert after.sum() >= len(frame) // 3  # the second half was scored after the restart
    batch = compute(frame)
    assert_parity(batch, online, rows=after)
    assert_parity(batch, online)


def test_sqlite_state_survives_many_restarts(small_simulated, tmp_path):
    n_events = len(event_stream(small_simulated))
    restart_after = set(range(0, n_events, n_events // 7))
    online, restarts_before = replay_with_restarts(
        small_simulated, tmp_path / "state.db", restart_after
    )
    assert restarts_before.max() >= 6
    assert_parity(compute(small_simulated), online)


def test_sqlite_simulated_restart_half_way_keeps_parity(small_simulated, tmp_path):
    n_events = len(event_stream(small_simulated))
    online, restarts_before = replay_with_restarts(
        small_simulated, tmp_path / "state.db", {n_events // 2}
    )
    second_half = restarts_before == 1
    assert second_half.sum() > 1_000
    assert_parity(compute(small_simulated), online, rows=second_half)
