"""Online state: bounded memory, durability across restarts, and how labels reach features."""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3

import numpy as np
import pytest

from features.online import OnlineFeatures, event_of, prepare
from features.registry import DAY, FEATURES, HOUR, MAX_LOOKBACK, select
from features.state import MemoryState, SQLiteState, deferred_commits, entity_keys
from features.transforms import NS_PER_S

T0 = 1_704_067_200 * NS_PER_S  # 2024-01-01 00:00 UTC
RATE = select(["merchant_fraud_rate_30d"])


def payment(txn: str, at: float, *, card: str = "c1", merchant: str = "m1", **extra) -> dict:
    """A prepared payment `at` seconds after T0 with every entity field set."""
    fields = {
        "transaction_id": txn,
        "timestamp": T0 + int(at * NS_PER_S),
        "card_id": card,
        "customer_id": extra.pop("customer", f"u-{card}"),
        "merchant_id": merchant,
        "amount": extra.pop("amount", 10.0),
        "currency": "EUR",
        "device_id": extra.pop("device", f"d-{card}"),
        "ip_hash": extra.pop("ip", "ip1"),
        "email_domain": extra.pop("email", "example.com"),
        "merchant_lat": 52.5,
        "merchant_lon": 13.4,
    }
    fields.update(extra)
    return prepare(fields)


def stream(n: int, *, every: float, start: float = 0.0, cards: int = 7) -> list[dict]:
    """n payments `every` seconds apart, cycling over a few cards, merchants, devices, IPs."""
    return [
        payment(
            f"s{i:06d}",
            start + i * every,
            card=f"c{i % cards}",
            merchant=f"m{i % 3}",
            device=f"d{i % 3}",
            ip=f"ip{i % 2}",
            email=("a.com", "b.org")[i % 2],
            amount=1.0 + i % 17,
        )
        for i in range(n)
    ]


def entity_events(payments: list[dict]) -> int:
    """How many (entity, payment) entries these payments make in the state."""
    return sum(len(entity_keys(event_of(p))) for p in payments)


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request, tmp_path):
    """A factory for fresh (or, for SQLite, reopened) stores of the parametrised kind."""
    opened = []

    def make(name: str = "state.db"):
        store = MemoryState() if request.param == "memory" else SQLiteState(tmp_path / name)
        opened.append(store)
        return store

    yield make
    for store in opened:
        with contextlib.suppress(Exception):  # already closed by the test
            store.close()


# --- bounded memory ---------------------------------------------------------------------------


def test_memory_state_stays_bounded_over_a_long_history():
    every = 2 * HOUR
    payments = stream(int(10 * MAX_LOOKBACK / every), every=every)
    store = MemoryState()
    online = OnlineFeatures(store)
    peak = 0
    for i, p in enumerate(payments):
        online.update(p)
        if i % 50 == 0:
            peak = max(peak, store.events_stored())
    now = payments[-1]["timestamp"]
    recent = entity_events([p for p in payments if p["timestamp"] > now - MAX_LOOKBACK * NS_PER_S])
    total = entity_events(payments)
    assert total > 9 * recent  # the history is ten look-backs long
    # nothing a window still needs is lost, and little more than that is kept
    assert store.events_held() == recent
    assert recent <= store.events_stored() <= 1.1 * recent
    assert peak <= 1.1 * recent


def test_prune_removes_idle_entities_and_keeps_exactly_the_lookback():
    store = MemoryState()
    online = OnlineFeatures(store)
    idle = payment("idle", 0, card="idle", merchant="m-idle", ip="ip-idle", email="idle.net")
    online.update(idle)
    every = 3 * HOUR
    payments = stream(int(3 * MAX_LOOKBACK / every), every=every, start=HOUR)
    for p in payments:
        online.update(p)
    assert store.sizes()["card"] == 8  # the idle card is still there: nobody touched it

    now = payments[-1]["timestamp"]
    store.prune(now)
    sizes = store.sizes()
    assert sizes["card"] == 7
    assert sizes["merchant"] == 3
    assert sizes["ip"] == 2
    assert sizes["email_domain"] == 2
    assert len(store.history("card", "idle")) == 0
    recent = [p for p in payments if p["timestamp"] > now - MAX_LOOKBACK * NS_PER_S]
    assert store.events_held() == entity_events(recent)


def test_prune_keeps_features_unchanged():
    every = 5 * HOUR
    payments = stream(int(2 * MAX_LOOKBACK / every), every=every)
    plain, pruned = MemoryState(), MemoryState()
    a, b = OnlineFeatures(plain), OnlineFeatures(pruned)
    for p in payments[:-1]:
        a.update(p)
        b.update(p)
    pruned.prune(payments[-1]["timestamp"])
    # the unpruned state still holds stale events (dropped lazily), which no window reads
    assert plain.events_stored() > plain.events_held()
    np.testing.assert_array_equal(a.compute(payments[-1]), b.compute(payments[-1]))


def test_label_for_a_payment_older_than_lookback_is_refused():
    store = MemoryState()
    online = OnlineFeatures(store, RATE)
    online.update(payment("old", 0))
    online.update(payment("recent", MAX_LOOKBACK - DAY))
    online.update(payment("now", MAX_LOOKBACK + HOUR))
    assert online.apply_label("old", True, T0 + (MAX_LOOKBACK + HOUR) * NS_PER_S) is False
    assert online.apply_label("recent", True, T0 + (MAX_LOOKBACK + HOUR) * NS_PER_S) is True


def test_compute_does_not_change_state(make_store):
    store = make_store()
    online = OnlineFeatures(store)
    for p in stream(30, every=HOUR):
        online.update(p)
    held, sizes = store.events_held(), store.sizes()
    nxt = payment("next", 31 * HOUR)
    first = online.compute(nxt)
    np.testing.assert_array_equal(first, online.compute(nxt))
    assert (store.events_held(), store.sizes()) == (held, sizes)


# --- durability ------------------------------------------------------------------------------


def test_sqlite_state_survives_restart(tmp_path):
    path = tmp_path / "state.db"
    every = 4 * HOUR
    payments = stream(int(2.5 * MAX_LOOKBACK / every), every=every)
    cut = len(payments) // 2
    label_at = payments[cut]["timestamp"]
    fraud = [p["transaction_id"] for p in payments[cut - 40 : cut : 3]]

    def first_half(online):
        for p in payments[:cut]:
            online.update(p)
        for txn in fraud:
            assert online.apply_label(txn, True, label_at)

    reference = OnlineFeatures(MemoryState())
    first_half(reference)
    durable = SQLiteState(path)
    first_half(OnlineFeatures(durable))
    durable.close()

    reopened = SQLiteState(path)
    online = OnlineFeatures(reopened)
    rate = online.names.index("merchant_fraud_rate_30d")
    rates = []
    for p in payments[cut:]:
        got = online.compute_and_update(p)
        np.testing.assert_array_equal(got, reference.compute_and_update(p), err_msg=str(p))
        rates.append(got[rate])
    reopened.close()
    assert np.nanmax(rates) > 0  # the labels given before the restart still count after it


def test_reopening_twice_does_not_duplicate_events(tmp_path):
    path = tmp_path / "state.db"
    payments = stream(200, every=HOUR)
    store = SQLiteState(path)
    online = OnlineFeatures(store)
    for p in payments[:-1]:
        online.update(p)
    assert online.apply_label(payments[10]["transaction_id"], True, payments[20]["timestamp"])
    expected = online.compute(payments[-1])
    held = store.events_held()
    store.close()
    for _ in range(3):
        again = SQLiteState(path)
        assert again.events_held() == held
        np.testing.assert_array_equal(OnlineFeatures(again).compute(payments[-1]), expected)
        again.close()


# --- idempotency per transaction id (issue 15, finding 8) --------------------------------------


def test_the_same_transaction_applied_twice_leaves_velocity_features_unchanged(make_store):
    store = make_store()
    online = OnlineFeatures(store)
    history = stream(50, every=HOUR)
    for p in history:
        online.update(p)
    nxt = payment("next", 51 * HOUR, card="c1")
    expected, held = online.compute(nxt), store.events_held()

    for p in history[-10:]:
        online.update(p)  # a retry, a replayed log, a fresh decision store...
    online.update({**history[-1], "amount": 999.0})  # the same id with other content
    again = online.compute(nxt)

    np.testing.assert_array_equal(again, expected)
    assert store.events_held() == held


def test_sqlite_log_applies_a_transaction_once_across_workers_and_replays(tmp_path):
    path = tmp_path / "state.db"
    one, two = SQLiteState(path), SQLiteState(path)  # two workers on one log
    first = stream(20, every=HOUR)
    for p in first:
        OnlineFeatures(one).update(p)
    for p in first:
        OnlineFeatures(two).update(p)  # the other worker retries them: caught up, not applied
    nxt = payment("next", 21 * HOUR, card="c1")
    expected = OnlineFeatures(one).compute(nxt)
    np.testing.assert_array_equal(OnlineFeatures(two).compute(nxt), expected)
    one.close()
    two.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT count(*) FROM state_events").fetchone()[0] == len(first)
        # a log written before this rule may hold a payment twice: replayed once
        conn.execute(
            "INSERT INTO state_events (kind, ts, body) SELECT kind, ts, body "
            "FROM state_events WHERE seq = (SELECT max(seq) FROM state_events)"
        )
        conn.commit()
    reopened = SQLiteState(path)
    np.testing.assert_array_equal(OnlineFeatures(reopened).compute(nxt), expected)
    reopened.close()


def test_a_worker_reads_the_log_only_when_another_one_wrote(tmp_path):
    path = tmp_path / "state.db"
    one, two = SQLiteState(path), SQLiteState(path)
    reads: list[str] = []
    two._db.set_trace_callback(
        lambda sql: reads.append(sql) if sql.startswith("SELECT seq") else None
    )
    a, b = OnlineFeatures(one), OnlineFeatures(two)
    payments = stream(6, every=HOUR)
    b.update(payments[0])  # the first look reads the log
    reads.clear()
    for p in payments[1:3]:
        b.update(p)  # only this worker writes: nothing to catch up with, no read
    assert reads == []
    a.update(payments[3])  # the other worker writes: the next payment here reads it first
    b.update(payments[4])
    assert len(reads) == 1
    b.update(payments[5])
    assert len(reads) == 1
    nxt = payment("next", 7 * HOUR, card="c1")
    np.testing.assert_array_equal(b.compute(nxt), OnlineFeatures(SQLiteState(path)).compute(nxt))
    one.close()
    two.close()


def test_a_batch_is_written_at_its_end_and_counted_as_this_workers_own(tmp_path):
    path = tmp_path / "state.db"
    store, other = SQLiteState(path), SQLiteState(path)
    online = OnlineFeatures(store)
    payments = stream(12, every=HOUR)
    reads: list[str] = []
    store._db.set_trace_callback(
        lambda sql: reads.append(sql) if sql.startswith("SELECT seq") else None
    )
    with deferred_commits(store):
        for p in payments[:10]:
            online.update(p)
        with contextlib.closing(sqlite3.connect(path)) as conn:  # nothing written yet
            assert conn.execute("SELECT count(*) FROM state_events").fetchone()[0] == 0
    with contextlib.closing(sqlite3.connect(path)) as conn:
        count, last = conn.execute("SELECT count(*), max(seq) FROM state_events").fetchone()
    assert count == 10
    assert store._seq == last  # applied here already: a catch-up does not read them again
    reads.clear()
    online.update(payments[10])  # its own batch: nothing to catch up with, no read
    assert reads == []
    nxt = payment("next", 13 * HOUR, card="c1")
    with other.exclusive():  # as the scorer does: caught up with this worker's batch first
        seen_there = OnlineFeatures(other).compute(nxt)
    np.testing.assert_array_equal(seen_there, online.compute(nxt))
    store.close()
    other.close()


def test_a_batch_larger_than_one_insert_is_written_whole_in_one_transaction(tmp_path):
    path = tmp_path / "state.db"
    store = SQLiteState(path)
    store._chunk = 4  # as if the connection allowed 12 variables per statement
    online = OnlineFeatures(store)
    payments = stream(10, every=HOUR)
    with deferred_commits(store):
        for p in payments:
            online.update(p)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT seq, body FROM state_events ORDER BY seq").fetchall()
    assert [json.loads(body)["transaction_id"] for _, body in rows] == [
        p["transaction_id"] for p in payments
    ]
    assert store._seq == rows[-1][0]
    store.close()
    again = SQLiteState(path)  # the log replays to the same features
    nxt = payment("next", 11 * HOUR, card="c1")
    np.testing.assert_array_equal(OnlineFeatures(again).compute(nxt), online.compute(nxt))
    again.close()


# --- labels ----------------------------------------------------------------------------------


def _at(seconds: float) -> int:
    return T0 + int(seconds * NS_PER_S)


def test_label_for_unknown_transaction_returns_false_and_changes_nothing(make_store):
    history = stream(40, every=6 * HOUR)
    later = payment("later", 20 * DAY, merchant="m1")
    twin, store = make_store("twin.db"), make_store("state.db")
    a, b = OnlineFeatures(twin), OnlineFeatures(store)
    for p in history:
        a.update(p)
        b.update(p)
    assert b.apply_label("no-such-payment", True, _at(15 * DAY)) is False
    assert b.apply_label("no-such-payment", False, _at(15 * DAY)) is False
    assert (store.events_held(), store.sizes()) == (twin.events_held(), twin.sizes())
    np.testing.assert_array_equal(b.compute(later), a.compute(later))


def test_label_before_its_payment_is_unknown(make_store):
    online = OnlineFeatures(make_store(), RATE)
    assert online.apply_label("f", True, _at(HOUR)) is False
    online.update(payment("g", -10 * DAY))
    online.update(payment("f", 0))
    assert online.compute(payment("p", 8 * DAY))[0] == 0.0  # the early label was not kept


def _merchant_history(online: OnlineFeatures) -> None:
    """A genuine payment g ten days before the fraudulent f (at 0), both at merchant m1."""
    online.update(payment("g", -10 * DAY))
    online.update(payment("f", 0))


def test_fraud_label_counts_only_after_the_label_delay(make_store):
    online = OnlineFeatures(make_store(), RATE)
    _merchant_history(online)
    assert online.apply_label("f", True, _at(HOUR)) is True
    # six days later f is still inside the 7-day label delay: only g is in the window
    assert online.compute_and_update(payment("p6", 6 * DAY))[0] == 0.0
    # one second before the delay has passed: still not counted
    assert online.compute(payment("q", 7 * DAY - 1))[0] == 0.0
    # exactly 7 days: f enters the window (t - 37 d, t - 7 d]; g and f are its payments
    assert online.compute_and_update(payment("p7", 7 * DAY))[0] == 0.5
    # at another merchant nothing is known
    assert math.isnan(online.compute(payment("x", 8 * DAY, merchant="m2"))[0])
    # g has left the window (t - 37 d, t - 7 d] a little earlier; f, p6 and p7 remain
    assert online.compute(payment("late", 37 * DAY - 1))[0] == pytest.approx(1 / 3)
    # 30 days after the delay f leaves the window too: only p6 and p7 remain
    assert online.compute(payment("later", 37 * DAY))[0] == 0.0


def test_fraud_label_counts_only_from_its_label_time_on(make_store):
    online = OnlineFeatures(make_store(), RATE)
    _merchant_history(online)
    before = online.compute_and_update(payment("p", 8 * DAY))
    assert before[0] == 0.0  # the chargeback is not known yet
    assert online.apply_label("f", True, _at(9 * DAY)) is True
    assert online.compute(payment("q", 9 * DAY))[0] == 0.5


def test_genuine_label_does_not_change_the_rate(make_store):
    online = OnlineFeatures(make_store(), RATE)
    _merchant_history(online)
    assert online.apply_label("f", False, _at(HOUR)) is True
    assert online.compute(payment("p", 8 * DAY))[0] == 0.0


def test_repeated_fraud_label_counts_once(make_store):
    # A review decision and then the chargeback, or a webhook delivered twice: one fraudulent
    # payment among two is a rate of 0.5, however often it is reported.
    online = OnlineFeatures(make_store(), RATE)
    _merchant_history(online)
    assert online.apply_label("f", True, _at(HOUR)) is True
    assert online.apply_label("f", True, _at(2 * DAY)) is True
    rate = online.compute(payment("p", 8 * DAY))[0]
    assert rate == 0.5, f"one fraudulent payment of two counted as rate {rate}"


def test_all_features_are_computed_in_registry_order():
    online = OnlineFeatures(MemoryState())
    assert online.names == [f.name for f in FEATURES]
    values = online.compute(payment("a", 0))
    assert values.shape == (len(FEATURES),)
    assert values.dtype == np.float64


# --- labels per card, customer and category, and state logs from before categories -----------

LABEL_COUNTS = select([f"{e}_fraud_count_7d" for e in ("merchant", "card", "customer", "category")])


def test_fraud_label_counts_for_every_labelled_entity_once_and_reversal_uncounts(make_store):
    online = OnlineFeatures(make_store(), LABEL_COUNTS)
    online.update(payment("f", 0, card="c1", merchant="m1", mcc="5411"))
    online.update(payment("g", 60, card="c2", merchant="m2", mcc="5812"))
    for _ in range(2):  # a review decision, then the chargeback: counted once
        assert online.apply_label("f", True, _at(HOUR)) is True
    same = payment("p", 7 * DAY, card="c1", merchant="m1", mcc="5411")
    other = payment("q", 7 * DAY, card="c2", merchant="m2", mcc="5812")
    # payment() gives card c1 the customer u-c1: every entity of f counts its fraud
    np.testing.assert_array_equal(online.compute(same), [1.0, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(online.compute(other), [0.0, 0.0, 0.0, 0.0])
    assert online.apply_label("f", False, _at(2 * HOUR)) is True  # reversed
    np.testing.assert_array_equal(online.compute(same), [0.0, 0.0, 0.0, 0.0])
    no_category = payment("r", 7 * DAY, card="c1", merchant="m1")
    assert math.isnan(online.compute(no_category)[3])


def test_label_counts_survive_a_restart(tmp_path):
    path = tmp_path / "state.db"
    store = SQLiteState(path)
    online = OnlineFeatures(store, LABEL_COUNTS)
    online.update(payment("f", 0, mcc="5411"))
    assert online.apply_label("f", True, _at(HOUR))
    store.close()
    reopened = SQLiteState(path)
    got = OnlineFeatures(reopened, LABEL_COUNTS).compute(payment("p", 7 * DAY, mcc="5411"))
    reopened.close()
    np.testing.assert_array_equal(got, [1.0, 1.0, 1.0, 1.0])


def test_state_log_written_before_categories_still_replays(tmp_path):
    """Payment events logged without the `mcc` field (older code) replay as payments without a
    category; their labels still count for the merchant, card and customer."""
    path = tmp_path / "state.db"
    store = SQLiteState(path)
    online = OnlineFeatures(store, LABEL_COUNTS)
    online.update(payment("f", 0, mcc="5411"))
    assert online.apply_label("f", True, _at(HOUR))
    store.close()
    db = sqlite3.connect(path)
    rows = db.execute("SELECT seq, body FROM state_events WHERE kind = 'payment'").fetchall()
    for seq, body in rows:
        data = json.loads(body)
        del data["mcc"]
        db.execute("UPDATE state_events SET body = ? WHERE seq = ?", (json.dumps(data), seq))
    db.commit()
    db.close()
    reopened = SQLiteState(path)
    try:
        assert reopened.history("card", "c1").ts == [T0]
        assert len(reopened.history("category", "5411")) == 0
        got = OnlineFeatures(reopened, LABEL_COUNTS).compute(payment("p", 7 * DAY, mcc="5411"))
    finally:
        reopened.close()
    np.testing.assert_array_equal(got, [1.0, 1.0, 1.0, 0.0])


def test_an_unknown_location_survives_the_log_in_either_format(tmp_path):
    """The log is written by orjson, which writes a NaN location as null: read back, it is NaN
    again (the previous-payment distance stays NaN, not an error). A log written before, by
    json.dumps with the non-standard `NaN` token, replays the same."""
    distance = select(["card_prev_distance_km"])
    path = tmp_path / "state.db"
    store = SQLiteState(path)
    OnlineFeatures(store, distance).update(
        payment("a", 0, merchant_lat=float("nan"), merchant_lon=float("nan"))
    )
    store.close()
    db = sqlite3.connect(path)
    (body,) = db.execute("SELECT body FROM state_events WHERE kind = 'payment'").fetchone()
    assert '"merchant_lat":null' in body  # orjson's compact form
    db.close()
    for form in ("orjson", "json.dumps"):
        if form == "json.dumps":  # rewrite the row as the earlier code wrote it
            db = sqlite3.connect(path)
            data = json.loads(body)
            data["merchant_lat"] = data["merchant_lon"] = float("nan")
            db.execute("UPDATE state_events SET body = ?", (json.dumps(data),))
            db.commit()
            assert "NaN" in db.execute("SELECT body FROM state_events").fetchone()[0]
            db.close()
        reopened = SQLiteState(path)
        try:
            h = reopened.history("card", "c1")
            assert math.isnan(h.lat[0])
            assert math.isnan(h.lon[0])
            got = OnlineFeatures(reopened, distance).compute(payment("b", 60))
        finally:
            reopened.close()
        assert math.isnan(got[0]), form
