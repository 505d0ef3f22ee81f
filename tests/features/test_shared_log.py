"""One SQLite state log shared by several processes (the service's workers).

Each worker keeps the state in memory; `exclusive()` first applies what the others logged, so
a payment scored by any worker sees every earlier payment, whichever worker scored it.
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np

from features.online import OnlineFeatures
from features.registry import FEATURES, select
from features.state import MemoryState, SQLiteState, exclusive, try_exclusive
from tests.features.test_online_state import payment, stream

COUNT = select(["card_count_30d"])


def test_two_stores_on_one_log_give_the_features_of_one_store(tmp_path):
    """Payments scored alternately through two stores (two workers) get exactly the features
    of the same sequence scored through one in-memory store."""
    path = tmp_path / "state.db"
    a, b = SQLiteState(path), SQLiteState(path)
    reference = OnlineFeatures(MemoryState(), FEATURES)
    shared = [OnlineFeatures(a, FEATURES), OnlineFeatures(b, FEATURES)]
    try:
        for i, p in enumerate(stream(300, every=97.0)):
            worker = shared[(i * 7 // 3) % 2]  # an irregular alternation
            with exclusive(worker.store):
                got = worker.compute(p)
                worker.update(p)
            want = reference.compute_and_update(p)
            np.testing.assert_array_equal(got, want, err_msg=f"payment {i}")
    finally:
        a.close()
        b.close()


def test_a_label_logged_by_one_worker_reaches_the_other(tmp_path):
    path = tmp_path / "state.db"
    a, b = SQLiteState(path), SQLiteState(path)
    rate = select(["merchant_fraud_rate_30d"])
    fa, fb = OnlineFeatures(a, rate), OnlineFeatures(b, rate)
    try:
        with exclusive(a):
            fa.update(payment("t1", 0))
        assert fb.apply_label("t1", True, "2024-01-02T00:00:00Z")  # b learns t1 from the log
        with exclusive(a):
            value = fa.compute(payment("t2", 8 * 86_400))[0]  # past the 7-day label delay
        assert value == 1.0  # its one earlier payment is known fraud, by b's label
    finally:
        a.close()
        b.close()


def _worker(path: str, name: str, n: int, start: mp.synchronize.Barrier, out: mp.Queue) -> None:
    store = SQLiteState(path)
    online = OnlineFeatures(store, COUNT)
    start.wait()
    seen = []
    for i in range(n):
        p = payment(f"{name}-{i}", 0.0, card="shared")  # every payment at the same instant
        with exclusive(store):
            seen.append(float(online.compute(p)[0]))
            online.update(p)
    store.close()
    out.put((name, seen))


def test_processes_scoring_one_card_at_once_see_one_total_order(tmp_path):
    """Two processes score the same card concurrently: the count of earlier payments each
    payment saw runs 0, 1, ..., 2n-1 exactly once over both (none lost, none counted twice),
    and a store reopened afterwards holds all 2n."""
    n = 150
    path = str(tmp_path / "state.db")
    SQLiteState(path).close()  # create the schema once
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(2)
    out: mp.Queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(path, w, n, start, out)) for w in ("A", "B")]
    for proc in procs:
        proc.start()
    results = dict(out.get(timeout=120) for _ in procs)
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    counts = sorted(results["A"] + results["B"])
    assert counts == [float(k) for k in range(2 * n)]
    assert results["A"] == sorted(results["A"])
    assert results["B"] == sorted(results["B"])
    reopened = SQLiteState(Path(path))
    try:
        with exclusive(reopened):
            assert OnlineFeatures(reopened, COUNT).compute(payment("z", 1.0, card="shared"))[
                0
            ] == float(2 * n)
    finally:
        reopened.close()


def test_try_exclusive_takes_a_free_log_and_catches_up_but_never_waits(tmp_path):
    """The event loop's way in: `try_exclusive` yields False at once while another worker holds
    the log (no wait, nothing applied), and when it is free holds it like `exclusive`: caught up
    with the other worker's payments, re-entrant, released after."""
    path = tmp_path / "state.db"
    a, b = SQLiteState(path), SQLiteState(path)
    count = select(["card_count_30d"])
    fa, fb = OnlineFeatures(a, count), OnlineFeatures(b, count)
    try:
        with exclusive(a):
            fa.update(payment("t1", 0, card="c"))
            with try_exclusive(b) as held:
                assert held is False  # a holds the log: b does not wait for it
            assert fb.compute(payment("t2", 60, card="c"))[0] == 0.0  # nothing caught up
        with try_exclusive(b) as held:
            assert held is True
            assert fb.compute(payment("t2", 60, card="c"))[0] == 1.0  # a's payment applied
            with exclusive(b):  # the scorer nests inside it
                fb.update(payment("t2", 60, card="c"))
            with try_exclusive(a) as other:
                assert other is False
        with try_exclusive(a) as held:  # released: a gets it, and sees b's payment
            assert held is True
            assert fa.compute(payment("t3", 120, card="c"))[0] == 2.0
    finally:
        a.close()
        b.close()


def test_try_exclusive_on_a_store_without_a_log_is_always_held():
    with try_exclusive(MemoryState()) as held:
        assert held is True
