"""The online executor reuses its scratch buffers across calls (benchmarks/bench_alloc.py): what
it returns must not depend on that. Repeated calls equal a fresh executor's, a result a caller
keeps is never changed by later calls, `compute_into` writes the same values into the caller's
array, and threads computing at once each get their own buffers."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from features.online import OnlineFeatures
from features.registry import DAY, FEATURES
from features.state import MemoryState
from tests.features.test_online_state import payment, stream


def _labelled_stream() -> tuple[MemoryState, list[dict]]:
    """A state fed a stream with a fraud label on every fifth payment, and the stream."""
    payments = stream(400, every=1_800.0)
    store = MemoryState()
    online = OnlineFeatures(store)
    for i, p in enumerate(payments):
        online.update(p)
        if i % 5 == 0:
            online.apply_label(p["transaction_id"], True, p["timestamp"] + 8 * DAY * 10**9)
    return store, payments


def test_repeated_calls_equal_a_fresh_executor_at_every_step():
    reused_store, fresh_store = MemoryState(), MemoryState()
    reused = OnlineFeatures(reused_store)
    for p in stream(300, every=600.0):
        want = OnlineFeatures(fresh_store).compute(p)  # a new executor: buffers never used
        got = reused.compute(p)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(reused.compute(p), want)  # and again, same payment
        reused.update(p)
        OnlineFeatures(fresh_store).update(p)


def test_a_kept_result_is_not_changed_by_later_calls():
    store, _ = _labelled_stream()
    online = OnlineFeatures(store)
    later = [payment(f"q{i}", 400 * 1_800.0 + i, card=f"c{i % 7}") for i in range(50)]
    kept = [online.compute(p) for p in later]
    copies = [k.copy() for k in kept]
    assert len({id(k) for k in kept}) == len(kept)  # a new array each call
    for p in later:  # more calls, different payments, the state moving on
        online.compute_and_update(p)
    for k, c in zip(kept, copies, strict=True):
        np.testing.assert_array_equal(k, c)
    # a caller mutating its result does not reach the next call either
    p = later[0]
    first = online.compute(p)
    first[:] = -1.0
    assert not np.any(online.compute(p) == -1.0)


def test_compute_into_writes_the_same_values_into_the_callers_array():
    store, _ = _labelled_stream()
    online = OnlineFeatures(store)
    out = np.full(len(FEATURES), 123.0)
    for i in range(30):
        p = payment(f"x{i}", 400 * 1_800.0 + i * 60, card=f"c{i % 7}", amount=1.0 + i)
        assert online.compute_into(p, out) is out
        np.testing.assert_array_equal(out, OnlineFeatures(store).compute(p))
    with pytest.raises(ValueError, match="float64"):
        online.compute_into(p, np.empty(len(FEATURES) - 1))
    with pytest.raises(ValueError, match="float64"):
        online.compute_into(p, np.empty(len(FEATURES), dtype=np.float32))


def test_threads_computing_at_once_get_their_own_buffers():
    store, _ = _labelled_stream()
    online = OnlineFeatures(store)
    probes = [
        payment(f"t{i}", 400 * 1_800.0 + i * 37, card=f"c{i % 7}", amount=0.5 + i % 11)
        for i in range(40)
    ]
    want = [OnlineFeatures(store).compute(p) for p in probes]
    failures: list[str] = []
    start = threading.Barrier(4)

    def work(offset: int) -> None:
        start.wait()
        for r in range(60):
            j = (offset + r) % len(probes)
            got = online.compute(probes[j])
            if not np.array_equal(got, want[j], equal_nan=True):
                failures.append(f"thread {offset}, payment {j}")

    threads = [threading.Thread(target=work, args=(k * 10,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
