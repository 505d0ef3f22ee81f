"""RedisState: the online state shared by service replicas, against a real Redis.

The server comes from RISKGATE_TEST_REDIS_URL (CI starts one with `.ci/services`); without it
these tests are skipped. Every test works under its own key prefix and deletes it afterwards.

- parity: a simulated month replayed through RedisState equals the batch executor, every
  feature (rtol 1e-9), and so do small adversarial histories (hypothesis);
- exactly MemoryState: random streams of payments and labels (ties, reversals, unknown ids,
  payments without merchant, spans beyond the look-back) leave the same histories and give the
  same label answers;
- replicas: two RedisState instances on one URL + prefix see each other's writes at once;
  payments and labels alternately through A and B give the features of a single store;
- bounded memory, a label counts once (in every labelled entity: merchant, card, customer,
  category), unknown / expired transactions -> False.
"""

from __future__ import annotations

import os
import threading
import uuid
from bisect import bisect_right
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.batch import compute
from features.online import OnlineFeatures, prepare
from features.registry import DAY, FEATURES, MAX_LOOKBACK, available
from features.replay import event_stream, replay
from features.state import LOOKBACK_NS, History, MemoryState, PaymentEvent, entity_keys
from features.transforms import NS_PER_S
from tests.features.helpers import random_frame, with_demographics
from tests.features.test_parity import assert_parity, grid_frame

redis = pytest.importorskip("redis")
from features.redis_state import RedisState  # noqa: E402

T0 = 1_704_067_200 * NS_PER_S  # 2024-01-01 00:00 UTC
SIM_ROWS = 6_000


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_url() -> str:
    url = os.environ.get("RISKGATE_TEST_REDIS_URL")
    if not url:
        pytest.skip(
            "RISKGATE_TEST_REDIS_URL is not set: start a server with "
            "`source .ci/services start` (CI always does)"
        )
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError as exc:  # pragma: no cover - CI has the server
        pytest.fail(f"RISKGATE_TEST_REDIS_URL={url} is set but Redis does not answer: {exc}")
    finally:
        client.close()
    return url


StoreFactory = Callable[..., RedisState]


@pytest.fixture(scope="module")
def open_store(redis_url) -> Iterator[StoreFactory]:
    """open_store(prefix=None) -> a RedisState; same prefix = replicas of one deployment.

    Module-scoped (hypothesis tests call it once per example); every prefix it handed out is
    deleted at the end.
    """
    opened: list[RedisState] = []

    def factory(prefix: str | None = None, **kw) -> RedisState:
        store = RedisState.from_url(redis_url, prefix=prefix or new_prefix(), **kw)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.clear()
        store.close()


def new_prefix() -> str:
    return f"riskgate-test:{uuid.uuid4().hex[:12]}:"


# --- helpers ---------------------------------------------------------------------------------


def replay_alternating(frame: pd.DataFrame, stores: list) -> pd.DataFrame:
    """Like `replay`, but event k (payment or label) goes through stores[k % len(stores)]."""
    frame = frame.reset_index(drop=True)
    features = available(frame.columns).features
    onlines = [OnlineFeatures(s, features) for s in stores]
    prepared = [prepare({str(k): v for k, v in r.items()}) for r in frame.to_dict("records")]
    is_fraud = frame["is_fraud"].to_numpy(dtype=np.float64, na_value=np.nan)
    ids = frame["transaction_id"].to_numpy()
    out = np.full((len(frame), len(features)), np.nan)
    events = event_stream(frame)
    stream = zip(events["time"], events["kind"], events["row"], strict=True)
    for k, (time, kind, row) in enumerate(stream):
        online = onlines[k % len(onlines)]
        if kind == "payment":
            out[row] = online.compute_and_update(prepared[row])
        else:
            online.apply_label(str(ids[row]), bool(is_fraud[row] == 1), int(time))
    result = pd.DataFrame(out, columns=[f.name for f in features])
    result.insert(0, "transaction_id", ids)
    return result


def event(
    txn: str,
    at_ns: int,
    *,
    card: str | None = "c1",
    merchant: str | None = "m1",
    cents: int = 1000,
    device: str | None = "d1",
    mcc: str | None = "5411",
    lat: float = 52.5,
    lon: float = 13.4,
) -> PaymentEvent:
    return PaymentEvent(
        transaction_id=txn,
        ts=at_ns,
        cents=cents,
        card_id=card,
        customer_id=None if card is None else f"u-{card}",
        merchant_id=merchant,
        device_id=device,
        ip_hash="ip1",
        email_domain="example.com",
        merchant_lat=lat,
        merchant_lon=lon,
        mcc=mcc,
    )


def as_tuple(h: History, bound: int | None = None) -> tuple:
    """A history's lists; with `bound`, only the events after it (what a window still reads)."""
    i = 0 if bound is None else bisect_right(h.ts, bound)
    j = 0 if bound is None else bisect_right(h.fraud_ts, bound)
    lat = [("nan" if x != x else x) for x in h.lat[i:]]  # NaN == NaN for the comparison
    lon = [("nan" if x != x else x) for x in h.lon[i:]]
    return (h.ts[i:], h.cents[i:], h.cards[i:], lat, lon, h.fraud_ts[j:])


def assert_same_state(redis_store: RedisState, memory: MemoryState, keys) -> None:
    """The same live events (within the look-back of the latest payment). MemoryState drops
    expired events lazily, Redis on each key's write: what is older no window reads."""
    bound = memory._now - LOOKBACK_NS
    live = 0
    for entity, key in sorted(keys):
        got, want = redis_store.history(entity, key), memory.history(entity, key)
        assert as_tuple(got, bound) == as_tuple(want, bound), (entity, key)
        live += len(as_tuple(got, bound)[0])
    assert live == memory.events_held()


# --- parity with the batch executor ----------------------------------------------------------


@pytest.fixture(scope="module")
def simulated():
    simulate = pytest.importorskip("data.simulator")
    cfg = simulate.SimulationConfig(rows=SIM_ROWS, days=30, seed=11, fraud_rate=0.03)
    return with_demographics(simulate.simulate(cfg))


def test_redis_replay_of_simulated_month_equals_batch(simulated, open_store):
    assert len(simulated) >= 5_000
    assert len(available(simulated.columns).features) == len(FEATURES)
    store = open_store()
    online = replay(simulated, store=store)
    batch = compute(simulated)
    compared = assert_parity(batch, online)
    assert compared >= len(simulated) * len(FEATURES)
    # the windows and the label feature were actually exercised
    assert (batch["card_count_24h"] > 0).mean() > 0.5
    assert (batch["merchant_fraud_rate_30d"] > 0).sum() > 100
    for entity in ("card", "customer", "category"):
        assert (batch[f"{entity}_fraud_count_7d"] > 0).sum() > 20, entity
    assert batch["distinct_cards_per_ip_24h"].max() > 1
    # and the same values as the in-process reference, bit for bit
    reference = replay(simulated)
    assert np.array_equal(
        online.iloc[:, 1:].to_numpy(), reference.iloc[:, 1:].to_numpy(), equal_nan=True
    )


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.one_of(st.sampled_from([1, 2, 3]), st.integers(1, 200)),
    n_cards=st.integers(1, 8),
    n_merchants=st.integers(1, 4),
    span_days=st.sampled_from([0.01, 1.0, 8.0, 40.0, 90.0]),
    tie_share=st.sampled_from([0.0, 0.2, 0.5, 0.95]),
    minimal=st.booleans(),
)
def test_redis_equals_batch_on_random_histories(
    open_store, seed, n, n_cards, n_merchants, span_days, tie_share, minimal
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
    online = replay(frame, store=open_store())
    assert assert_parity(batch, online) == n * (len(batch.columns) - 1)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 120))
def test_redis_equals_batch_when_everything_falls_on_window_edges(open_store, seed, n):
    frame = grid_frame(seed, n)
    assert_parity(compute(frame), replay(frame, store=open_store()))


# --- exactly MemoryState ---------------------------------------------------------------------

_steps = st.lists(
    st.one_of(
        # a payment dt seconds after the previous one (0: a tie), on a few shared entities
        st.tuples(
            st.just("pay"),
            st.sampled_from([0, 0, 1, 60, 3_600, DAY, 10 * DAY, MAX_LOOKBACK, MAX_LOOKBACK + 1]),
            st.integers(0, 3),  # card
            st.sampled_from(["m0", "m1", None]),
            st.integers(0, 100_000),  # cents
            st.sampled_from(["5411", "5812", None]),  # category
        ),
        # a label for the i-th payment so far (modulo), or for an unknown id (-1)
        st.tuples(st.just("label"), st.integers(-1, 10**6), st.booleans()),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=_steps, ns_jitter=st.booleans(), cached=st.booleans())
def test_random_streams_leave_the_same_state_as_memory_state(open_store, steps, ns_jitter, cached):
    # cached: every history goes through the local copy (incremental reads)
    store = open_store(cache_min_events=1 if cached else 10**9)
    memory = MemoryState()
    keys: set[tuple[str, str]] = set()
    ids: list[str] = []
    t = T0
    for k, step in enumerate(steps):
        if step[0] == "pay":
            _, dt, card, merchant, cents, mcc = step
            t += dt * NS_PER_S + (k % 3 if ns_jitter and dt else 0)  # 1-ns steps: exact ts
            e = event(f"t{k}", t, card=f"c{card}", merchant=merchant, cents=cents, mcc=mcc)
            store.record_payment(e)
            memory.record_payment(e)
            keys.update(entity_keys(e).items())
            ids.append(e.transaction_id)
        else:
            _, which, is_fraud = step
            txn = "unknown" if which < 0 or not ids else ids[which % len(ids)]
            got = store.record_label(txn, is_fraud, t)
            assert got == memory.record_label(txn, is_fraud, t), txn
        assert_same_state(store, memory, keys)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(
        st.one_of(
            # a payment through replica `by` at T0 + at seconds: any order, ties, duplicates
            st.tuples(
                st.just("pay"),
                st.integers(0, 2),
                st.sampled_from(
                    [0, 1, 2, 5, 100, MAX_LOOKBACK, MAX_LOOKBACK + 3, 3 * MAX_LOOKBACK]
                ),
                st.integers(0, 2),
                st.sampled_from(["m0", "m1"]),
            ),
            st.tuples(st.just("label"), st.integers(0, 2), st.integers(0, 30), st.booleans()),
            st.tuples(st.just("read"), st.integers(0, 2)),
            st.tuples(st.just("prune"), st.integers(0, 4 * MAX_LOOKBACK)),
        ),
        min_size=1,
        max_size=50,
    )
)
def test_local_copies_always_equal_the_shared_state(open_store, steps):
    """Replicas with local copies of histories, written to by each other out of time order,
    pruned, labelled: every read equals a fresh read from Redis."""
    prefix = new_prefix()
    replicas = [open_store(prefix, cache_min_events=1) for _ in range(3)]
    fresh = open_store(prefix, cache_max_events=0)  # never keeps a copy
    keys: set[tuple[str, str]] = set()
    for k, step in enumerate(steps):
        if step[0] == "pay":
            _, by, at, card, merchant = step
            e = event(f"t{k % 7}", T0 + at * NS_PER_S, card=f"c{card}", merchant=merchant)
            replicas[by].record_payment(e)
            keys.update(entity_keys(e).items())
        elif step[0] == "label":
            _, by, which, is_fraud = step
            replicas[by].record_label(f"t{which % 7}", is_fraud, T0)
        elif step[0] == "prune":
            fresh.prune(T0 + step[1] * NS_PER_S)
        for entity, key in sorted(keys):
            want = as_tuple(fresh.history(entity, key))
            if step[0] == "read" or k % 3 == 0:
                assert as_tuple(replicas[step[1] % 3].history(entity, key)) == want
    for replica in replicas:
        assert [as_tuple(h) for h in replica.histories(sorted(keys))] == [
            as_tuple(fresh.history(entity, key)) for entity, key in sorted(keys)
        ]
    assert fresh.cached_events() == 0


def test_local_copy_follows_pruning_and_out_of_order_writes(open_store):
    prefix = new_prefix()
    a, b = open_store(prefix, cache_min_events=2), open_store(prefix, cache_max_events=0)
    for i in (10, 20, 30):
        b.record_payment(event(f"t{i}", T0 + i * NS_PER_S, cents=i))
    assert a.history("card", "c1").cents == [10, 20, 30]  # read in full, then kept
    assert a.cached_events() == 3
    b.record_payment(event("t40", T0 + 40 * NS_PER_S, cents=40))
    assert a.history("card", "c1").cents == [10, 20, 30, 40]  # only t40 was sent
    b.record_payment(event("t15", T0 + 15 * NS_PER_S, cents=15))  # another replica, late
    assert a.history("card", "c1").cents == [10, 15, 20, 30, 40]  # noticed: read in full
    assert a.cache_stats["reread"] == 1
    # a payment one look-back later drops the first events everywhere
    b.record_payment(event("late", T0 + LOOKBACK_NS + 20 * NS_PER_S, cents=99))
    assert a.history("card", "c1").cents == [30, 40, 99]
    assert a.cache_stats == {"full": 2, "incremental": 2, "reread": 1}
    assert a.cached_events() == 3
    b.prune(T0 + 3 * LOOKBACK_NS)  # and pruning the idle ones empties the copy
    assert a.history("card", "c1") == History()
    assert a.cached_events() == 0


def test_expiry_is_exact_to_the_nanosecond(open_store):
    """An event exactly LOOKBACK before the newest payment is dropped; one ns later, kept."""
    store, memory = open_store(), MemoryState()
    first = event("a", T0)
    second = event("b", T0 + 1)
    third = event("c", T0 + LOOKBACK_NS)  # bound = T0: drops a, keeps b
    for e in (first, second, third):
        store.record_payment(e)
        memory.record_payment(e)
    assert store.history("card", "c1").ts == [T0 + 1, T0 + LOOKBACK_NS]
    assert as_tuple(store.history("card", "c1")) == as_tuple(memory.history("card", "c1"))
    assert store.record_label("a", True, T0 + LOOKBACK_NS) is False  # expired
    assert store.record_label("b", True, T0 + LOOKBACK_NS) is True


@pytest.mark.parametrize("seq_start", [0, 254, 2**16 - 2, 2**40 - 3])
def test_history_keeps_arrival_order_within_a_timestamp(open_store, seq_start):
    """Ties keep arrival order (the previous-payment features read the last one), also when
    the arrival counter carries into a new byte."""
    store, memory = open_store(), MemoryState()
    store.client.set(f"{store.prefix}seq", seq_start)
    for i, (txn, lat) in enumerate([("z", 1.0), ("a", 2.0), ("m", float("nan")), ("b", 4.0)]):
        e = event(txn, T0 + (i // 2) * NS_PER_S, cents=i, lat=lat, card=None if i == 2 else "c")
        store.record_payment(e)
        memory.record_payment(e)
    got = store.history("merchant", "m1")
    assert got.cents == [0, 1, 2, 3]
    assert got.cards == ["c", "c", None, "c"]
    assert as_tuple(got) == as_tuple(memory.history("merchant", "m1"))
    assert store.history("card", "nobody") == History()


def test_a_repeated_transaction_id_is_applied_once_like_memory_state(open_store):
    store, memory = open_store(), MemoryState()
    for s in (store, memory):
        s.record_payment(event("dup", T0))
        assert s.record_label("dup", True, T0) is True
        s.record_payment(event("dup", T0))  # a retry with the same id and time
        s.record_payment(event("dup", T0 + NS_PER_S, cents=5))  # the same id again, later
        assert s.record_label("dup", True, T0 + NS_PER_S) is True  # still counted once
    assert as_tuple(store.history("merchant", "m1")) == as_tuple(memory.history("merchant", "m1"))
    assert store.history("merchant", "m1").cents == [1000]
    assert store.history("merchant", "m1").fraud_ts == [T0]
    for s in (store, memory):
        assert s.record_label("dup", False, T0 + 2 * NS_PER_S) is True
        assert s.record_label("dup", True, T0 + 2 * NS_PER_S) is True
    assert as_tuple(store.history("merchant", "m1")) == as_tuple(memory.history("merchant", "m1"))


# --- labels ------------------------------------------------------------------------------------


LABELLED_KEYS = (("card", "c1"), ("customer", "u-c1"), ("merchant", "m1"), ("category", "5411"))


def fraud_ts(store, keys=LABELLED_KEYS) -> list[list[int]]:
    """The counted fraud labels of each (entity, key)."""
    return [store.history(entity, key).fraud_ts for entity, key in keys]


def test_label_counts_once_and_reversal_removes_it(open_store):
    prefix = new_prefix()
    a, b = open_store(prefix), open_store(prefix)
    a.record_payment(event("t1", T0, merchant="m1"))
    a.record_payment(event("t2", T0, merchant="m1"))  # same instant, other transaction
    for _ in range(3):
        assert a.record_label("t1", True, T0 + DAY) is True
        assert b.record_label("t1", True, T0 + DAY) is True  # the other replica: no recount
    assert fraud_ts(a) == [[T0]] * 4  # once in every labelled entity
    assert b.record_label("t2", True, T0 + DAY) is True
    assert fraud_ts(a) == [[T0, T0]] * 4
    assert a.record_label("t1", False, T0 + 2 * DAY) is True  # reversed
    assert fraud_ts(b) == [[T0]] * 4
    assert b.record_label("t1", False, T0 + 2 * DAY) is True  # reversing twice: no-op
    assert fraud_ts(a) == [[T0]] * 4
    assert b.record_label("t1", True, T0 + 3 * DAY) is True  # fraud again after all
    assert fraud_ts(a) == [[T0, T0]] * 4
    # devices, IPs and e-mail domains carry no labels
    assert fraud_ts(a, (("device", "d1"), ("ip", "ip1"), ("email_domain", "example.com"))) == [
        [],
        [],
        [],
    ]


def test_label_counts_only_for_the_entities_a_payment_has(open_store):
    """A payment without merchant or category: its label counts for its card and customer;
    a payment on another card counts for its own card, the shared merchant and category."""
    store, memory = open_store(), MemoryState()
    payments = [
        event("t1", T0, merchant=None, mcc=None),
        event("t2", T0 + 1, card="c2", mcc="5812"),
        event("t3", T0 + 2, card=None),
    ]
    for s in (store, memory):
        for e in payments:
            s.record_payment(e)
        for txn in ("t1", "t2", "t3"):
            assert s.record_label(txn, True, T0 + DAY) is True
    keys = {k for e in payments for k in entity_keys(e).items()}
    assert_same_state(store, memory, keys)
    assert fraud_ts(store, (("card", "c1"), ("customer", "u-c1"), ("card", "c2"))) == [
        [T0],
        [T0],
        [T0 + 1],
    ]
    assert fraud_ts(store, (("merchant", "m1"), ("category", "5812"), ("category", "5411"))) == [
        [T0 + 1, T0 + 2],
        [T0 + 1],
        [T0 + 2],
    ]
    for s in (store, memory):
        assert s.record_label("t2", False, T0 + 2 * DAY) is True
    assert_same_state(store, memory, keys)
    assert fraud_ts(store, (("card", "c2"), ("merchant", "m1"), ("category", "5812"))) == [
        [],
        [T0 + 2],
        [],
    ]


def test_label_counts_once_under_concurrent_replicas(open_store):
    prefix = new_prefix()
    stores = [open_store(prefix) for _ in range(4)]
    stores[0].record_payment(event("t1", T0))
    answers: list[bool] = []

    def label(store: RedisState) -> None:
        for _ in range(50):
            answers.append(store.record_label("t1", True, T0 + DAY))

    threads = [threading.Thread(target=label, args=(s,)) for s in stores]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert answers == [True] * 200
    assert fraud_ts(stores[1]) == [[T0]] * 4


def test_unknown_and_expired_transactions_return_false(open_store):
    store = open_store()
    assert store.record_label("never-seen", True, T0) is False
    assert store.record_label("never-seen", False, T0) is False
    store.record_payment(event("old", T0))
    store.record_payment(event("no-merchant", T0, merchant=None))
    assert store.record_label("no-merchant", True, T0) is True  # known, nothing to count
    store.record_payment(event("new", T0 + LOOKBACK_NS + NS_PER_S))  # "old" leaves the window
    assert store.record_label("old", True, T0 + LOOKBACK_NS + NS_PER_S) is False
    assert store.history("merchant", "m1").fraud_ts == []
    assert store.history("merchant", "m1").ts == [T0 + LOOKBACK_NS + NS_PER_S]
    assert store.record_label("new", True, T0 + LOOKBACK_NS + NS_PER_S) is True


def test_prefixes_are_isolated(open_store):
    a, b = open_store(), open_store()
    a.record_payment(event("t1", T0))
    assert len(a.history("card", "c1")) == 1
    assert len(b.history("card", "c1")) == 0
    assert b.record_label("t1", True, T0) is False


# --- replicas ----------------------------------------------------------------------------------


def test_replicas_see_each_others_payments_immediately(open_store):
    prefix = new_prefix()
    a, b = open_store(prefix), open_store(prefix)
    a.record_payment(event("t1", T0))
    assert b.history("card", "c1").ts == [T0]
    b.record_payment(event("t2", T0))  # a tie, recorded by the other replica
    c = open_store(prefix)  # a replica started later sees everything
    assert c.history("card", "c1").ts == [T0, T0]
    assert a.history("merchant", "m1").cents == [1000, 1000]


def test_alternating_replicas_give_the_features_of_one_store(open_store):
    frame = random_frame(7, 400, n_cards=4, n_merchants=2, span_days=40.0, tie_share=0.4)
    prefix = new_prefix()
    a, b = open_store(prefix, cache_min_events=1), open_store(prefix)
    shared = replay_alternating(frame, [a, b])
    single = replay(frame)  # one in-process store
    assert np.array_equal(
        shared.iloc[:, 1:].to_numpy(), single.iloc[:, 1:].to_numpy(), equal_nan=True
    )
    assert_parity(compute(frame), shared)


def test_concurrent_replicas_lose_no_payment(open_store):
    """Writers on several connections at the same instant: every payment is kept, once."""
    prefix = new_prefix()
    stores = [open_store(prefix) for _ in range(4)]

    def write(i: int, store: RedisState) -> None:
        for k in range(100):
            # equal timestamps across writers: members stay unique
            store.record_payment(event(f"w{i}-t{k}", T0 + k // 10, cents=i * 1000 + k))

    threads = [threading.Thread(target=write, args=(i, s)) for i, s in enumerate(stores)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    h = stores[0].history("card", "c1")
    assert len(h) == 400
    assert sorted(h.cents) == sorted(i * 1000 + k for i in range(4) for k in range(100))
    assert h.ts == sorted(h.ts)


def test_concurrent_replicas_apply_a_transaction_id_once(open_store):
    """The same ids from several writers at once (a retried payment reaching two replicas):
    each id is applied by exactly one of them."""
    prefix = new_prefix()
    stores = [open_store(prefix) for _ in range(4)]

    def write(i: int, store: RedisState) -> None:
        for k in range(100):
            store.record_payment(event(f"t{k}", T0 + k // 10, cents=i * 1000 + k))

    threads = [threading.Thread(target=write, args=(i, s)) for i, s in enumerate(stores)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    h = stores[0].history("card", "c1")
    assert len(h) == 100
    assert sorted(c % 1000 for c in h.cents) == list(range(100))


# --- bounded memory ------------------------------------------------------------------------------


def test_memory_stays_bounded_by_the_lookback(open_store):
    store, memory = open_store(), MemoryState()
    every = 6 * 3600  # 4 payments a day for 4 look-backs
    n = 4 * MAX_LOOKBACK // every
    per_window = MAX_LOOKBACK // every + 1
    keys: set[tuple[str, str]] = set()
    peak_events = peak_txns = 0
    for i in range(n):
        e = event(f"s{i}", T0 + i * every * NS_PER_S, card=f"c{i % 5}", merchant=f"m{i % 3}")
        store.record_payment(e)
        memory.record_payment(e)
        keys.update(entity_keys(e).items())
        if i % 97 == 0:
            store.record_label(f"s{i}", True, e.ts)
            memory.record_label(f"s{i}", True, e.ts)
        if i % 50 == 0:
            peak_events = max(peak_events, store.events_held())
            peak_txns = max(peak_txns, store.transactions_held())
    assert_same_state(store, memory, keys)
    # 8 entity keys per payment, each holding one look-back of events (plus, as pruning is
    # per key on write, at most one older event per key)
    bound = 8 * per_window + len(keys)
    assert peak_events <= bound
    assert store.events_held() <= bound
    assert peak_txns <= per_window
    assert store.transactions_held() <= per_window
    assert n > 3 * per_window  # the stream really was longer than the window
    # the oldest labels expired with their payments
    assert store.record_label("s0", True, T0 + n * every * NS_PER_S) is False
    for entity, key in keys:  # each key holds at most one look-back before its last write
        h = store.history(entity, key)
        assert h.ts[0] > h.ts[-1] - LOOKBACK_NS
    # idle entities are forgotten by prune(now), as in MemoryState
    later = e.ts + LOOKBACK_NS
    store.prune(later)
    memory.prune(later)
    assert store.events_held() == memory.events_held() == 0
    assert store.sizes() == {}


def test_keys_carry_a_ttl_as_a_safety_net(open_store):
    store = open_store(ttl_s=3600)
    store.record_payment(event("t1", T0))
    store.record_label("t1", True, T0)
    keys = [k for k in store.client.scan_iter(match=store.prefix + "*") if not k.endswith(b"seq")]
    # 8 entity keys, the label index (2), the fraud labels of card, customer, merchant, category
    assert len(keys) >= 14
    for k in keys:
        assert 0 < store.client.pttl(k) <= 3_600_000, k


def test_from_url_and_close(redis_url):
    store = RedisState.from_url(redis_url, prefix=new_prefix(), cache_min_events=2)
    try:
        store.record_payment(event("t1", T0))
        assert store.history("card", "c1").ts == [T0]
        store.client.script_flush()  # e.g. a restarted server: the scripts are reloaded
        store.record_payment(event("t2", T0 + 1))
        assert store.record_label("t2", True, T0 + 1) is True
        wanted = [("card", "c1"), ("merchant", "m1"), ("ip", "none")]
        store.client.script_flush()
        many = store.histories(wanted)
        assert [as_tuple(h) for h in many] == [
            as_tuple(store.history(entity, key)) for entity, key in wanted
        ]
        assert many[1].fraud_ts == [T0 + 1]
        assert many[2] == History()
    finally:
        store.clear()
        store.close()
