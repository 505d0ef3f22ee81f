"""Group commit for /score: a group answers each request exactly as one-by-one scoring would,
and a group whose transaction fails leaves nothing behind (database and online state)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from features.online import prepare
from serving.core.schemas import PaymentIn
from serving.scoring.groups import ClosedError, GroupScorer, LoopGroupScorer
from tests.serving.helpers import counts
from tests.serving.scoring.test_score_many import KEYS, _payments, _runtime


@pytest.fixture(scope="module")
def payments() -> list[PaymentIn]:
    return _payments(120)


def _who(rt: Any) -> Any:
    return rt.keys.authenticate(f"Bearer {KEYS.split(':')[1]}")


def _same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["transaction_id"] == b["transaction_id"]
    assert a["decision"] == b["decision"]
    assert a["decision_source"] == b["decision_source"]
    assert a["probability"] == pytest.approx(b["probability"], rel=1e-12)
    assert [r["feature"] for r in a["reasons"]] == [r["feature"] for r in b["reasons"]]


def test_a_group_decides_like_one_by_one(tmp_path: Path, model_dir: Path, payments) -> None:
    one = _runtime(tmp_path / "one", model_dir)
    grouped = _runtime(tmp_path / "group", model_dir)
    for watcher in (*one.watchers, *grouped.watchers):
        # their first round has run when stop() returns: no delay notice lands in one of the
        # two stores mid-way (the counts below compare what scoring wrote, outbox included)
        watcher.stop()
    try:
        who = _who(one)
        singles = [one.scorer.score(p, who, f"k-{p.transaction_id}") for p in payments]
        answers = []
        for start in range(0, len(payments), 16):  # groups of 16, in arrival order
            part = payments[start : start + 16]
            answers += grouped.scorer.score_group([(p, who, f"k-{p.transaction_id}") for p in part])
        assert [s for s, _ in answers] == [200] * len(payments)
        for (_, a), (_, b) in zip(singles, answers, strict=True):
            _same(a, b)
        assert counts(one.engine) == counts(grouped.engine)
    finally:
        one.close()
        grouped.close()


def test_repeats_inside_and_across_groups_replay_and_a_reused_key_is_refused(
    tmp_path: Path, model_dir: Path, payments
) -> None:
    rt = _runtime(tmp_path, model_dir)
    try:
        who = _who(rt)
        a, b, c, d = payments[:4]
        first = rt.scorer.score_group([(a, who, "ka"), (b, who, "kb")])
        assert [s for s, _ in first] == [200, 200]
        stored = counts(rt.engine)
        group = [
            (c, who, "kc"),
            (a, who, "ka"),  # known key, same body: replay
            (c, who, "kc"),  # the same request twice in one group: decided once
            (b, who, None),  # known transaction id without a key: replay
            (d, who, "ka"),  # a known key with another body: 422
            (d, who, "kd"),
        ]
        out = rt.scorer.score_group(group)
        statuses = [s for s, _ in out]
        assert statuses == [200, 200, 200, 200, 422, 200]
        assert out[0][1]["replayed"] is False
        assert out[1][1]["replayed"] is True
        assert out[1][1]["decision"] == first[0][1]["decision"]
        assert out[2][1]["replayed"] is True
        assert out[2][1]["decision"] == out[0][1]["decision"]
        assert out[3][1]["replayed"] is True
        assert "Idempotency-Key" in out[4][1]["error"]
        assert out[5][1]["replayed"] is False
        after = counts(rt.engine)
        assert after["decisions"] == stored["decisions"] + 2  # c and d, once each
        assert after["idempotency_keys"] == stored["idempotency_keys"] + 2
    finally:
        rt.close()


def test_a_failed_group_commit_stores_nothing_and_leaves_the_state_as_it_was(
    tmp_path: Path, model_dir: Path, payments
) -> None:
    """The decisions' transaction fails half-way: no decision, no key, no state event; the
    retried requests are then scored exactly as if the failure had never happened."""
    failing = _runtime(tmp_path / "failing", model_dir)
    clean = _runtime(tmp_path / "clean", model_dir)
    try:
        who = _who(failing)
        warm, group = payments[:20], payments[20:40]
        for rt in (failing, clean):
            rt.scorer.score_group([(p, who, None) for p in warm])
        before = counts(failing.engine)
        online = failing.holder.current.online
        probe = prepare(group[0].contract())
        features_before = online.compute(probe)

        def fail_at_audit(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            # after the decisions and keys went in: a failure in the middle of the transaction
            if statement.startswith("INSERT INTO audit_log"):
                raise OperationalError(statement, {}, Exception("database is locked"))

        event.listen(failing.engine, "before_cursor_execute", fail_at_audit)
        with pytest.raises(OperationalError):
            failing.scorer.score_group([(p, who, f"g-{p.transaction_id}") for p in group])
        event.remove(failing.engine, "before_cursor_execute", fail_at_audit)
        assert counts(failing.engine) == before
        np.testing.assert_array_equal(online.compute(probe), features_before)  # NaN == NaN
        retried = failing.scorer.score_group([(p, who, f"g-{p.transaction_id}") for p in group])
        reference = clean.scorer.score_group([(p, who, f"g-{p.transaction_id}") for p in group])
        for (_, a), (_, b) in zip(retried, reference, strict=True):
            _same(a, b)
        assert counts(failing.engine) == counts(clean.engine)
    finally:
        failing.close()
        clean.close()


def test_the_state_log_is_rolled_back_too(tmp_path: Path, model_dir: Path, payments) -> None:
    """After a failed group, a process opening the log replays no event of it."""
    from features.state import SQLiteState

    rt = _runtime(tmp_path, model_dir)
    try:
        who = _who(rt)
        rt.scorer.score_group([(p, who, None) for p in payments[:5]])

        def boom(*_: Any, **__: Any) -> None:
            raise OperationalError("INSERT", {}, Exception("disk I/O error"))

        rt.scorer.writer.write = boom
        with pytest.raises(OperationalError):
            rt.scorer.score_group([(p, who, None) for p in payments[5:15]])
    finally:
        rt.close()
    reopened = SQLiteState(tmp_path / "state.db")
    try:
        assert reopened.events_held() > 0
        known = set(reopened._payments)
        assert {p.transaction_id for p in payments[:5]} <= known
        assert not {p.transaction_id for p in payments[5:15]} & known
    finally:
        reopened.close()


# --- the event-loop side --------------------------------------------------------------------


class _Recorder:
    """A fake `score_group` that records group sizes and can be held to let requests pile up."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, requests: list[Any], arrived: float) -> list[tuple[int, dict[str, Any]]]:
        self.entered.set()
        self.gate.wait(10)
        self.sizes.append(len(requests))
        return [(200, {"id": p, "key": key}) for p, _, key in requests]


def test_requests_waiting_together_are_scored_as_one_group_in_order() -> None:
    fake = _Recorder()
    groups = GroupScorer(fake, max_group=8).start()

    async def main() -> list[tuple[int, dict[str, Any]]]:
        fake.gate.clear()  # hold the first group so the others pile up behind it
        first = asyncio.ensure_future(groups.score("p0", None, "k0"))  # type: ignore[arg-type]
        while not fake.entered.is_set():
            await asyncio.sleep(0)
        rest = [
            asyncio.ensure_future(groups.score(f"p{i}", None, f"k{i}"))  # type: ignore[arg-type]
            for i in range(1, 20)
        ]
        await asyncio.sleep(0)
        fake.gate.set()
        return await asyncio.gather(first, *rest)

    try:
        answers = asyncio.run(main())
    finally:
        groups.close()
    assert [a[1]["id"] for a in answers] == [f"p{i}" for i in range(20)]
    assert fake.sizes[0] == 1
    assert fake.sizes[1:] == [8, 8, 3]  # the 19 waiting ones, at most 8 at a time


def test_an_error_reaches_every_caller_of_the_group_and_close_refuses_new_ones() -> None:
    def broken(requests: list[Any], arrived: float) -> list[tuple[int, dict[str, Any]]]:
        raise OperationalError("COMMIT", {}, Exception("database is locked"))

    groups = GroupScorer(broken, max_group=4).start()

    async def main() -> list[Any]:
        calls = [groups.score(f"p{i}", None, None) for i in range(3)]  # type: ignore[arg-type]
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(main())
    assert len(results) == 3
    assert all(isinstance(r, OperationalError) for r in results)
    groups.close()
    with pytest.raises(ClosedError):
        asyncio.run(groups.score("late", None, None))  # type: ignore[arg-type]


def test_max_group_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_group must be at least 1"):
        GroupScorer(lambda r, at: [], max_group=0)


# --- the event loop scores the groups itself ------------------------------------------------


class _OnLoop:
    """A fake `score_group` recording group sizes and the thread each group ran on."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.threads: list[int] = []

    def __call__(self, requests: list[Any], arrived: float) -> list[tuple[int, dict[str, Any]]]:
        self.sizes.append(len(requests))
        self.threads.append(threading.get_ident())
        return [(200, {"id": p, "key": key}) for p, _, key in requests]


def _free(held: bool) -> Any:
    return lambda: contextlib.nullcontext(held)


def test_the_loop_scores_requests_waiting_together_as_groups_in_order_on_its_own_thread() -> None:
    fake = _OnLoop()
    groups = LoopGroupScorer(fake, _free(True), max_group=8).start()

    async def main() -> tuple[list[tuple[int, dict[str, Any]]], int]:
        calls = [groups.score(f"p{i}", None, f"k{i}") for i in range(20)]  # type: ignore[arg-type]
        return await asyncio.gather(*calls), threading.get_ident()

    try:
        answers, loop_thread = asyncio.run(main())
    finally:
        groups.close()
    assert [a[1]["id"] for a in answers] == [f"p{i}" for i in range(20)]
    assert [a[1]["key"] for a in answers] == [f"k{i}" for i in range(20)]
    assert fake.sizes == [8, 8, 4]  # all 20 arrived before the first group: at most 8 at a time
    assert set(fake.threads) == {loop_thread}  # no hand-off to a scoring thread


def test_while_another_worker_holds_the_order_lock_a_group_waits_on_a_thread() -> None:
    fake = _OnLoop()
    groups = LoopGroupScorer(fake, _free(False), max_group=4).start()

    async def main() -> tuple[list[tuple[int, dict[str, Any]]], int]:
        calls = [groups.score(f"p{i}", None, None) for i in range(6)]  # type: ignore[arg-type]
        return await asyncio.gather(*calls), threading.get_ident()

    try:
        answers, loop_thread = asyncio.run(main())
    finally:
        groups.close()
    assert [a[1]["id"] for a in answers] == [f"p{i}" for i in range(6)]
    assert fake.sizes == [4, 2]
    assert loop_thread not in fake.threads  # the loop never blocked on the lock


def test_on_the_loop_an_error_reaches_every_caller_and_close_refuses_new_ones() -> None:
    def broken(requests: list[Any], arrived: float) -> list[tuple[int, dict[str, Any]]]:
        raise OperationalError("COMMIT", {}, Exception("database is locked"))

    groups = LoopGroupScorer(broken, _free(True), max_group=4).start()

    async def main() -> list[Any]:
        calls = [groups.score(f"p{i}", None, None) for i in range(6)]  # type: ignore[arg-type]
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(main())
    assert len(results) == 6
    assert all(isinstance(r, OperationalError) for r in results)
    groups.close()
    with pytest.raises(ClosedError):
        asyncio.run(groups.score("late", None, None))  # type: ignore[arg-type]


def test_the_loop_group_max_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_group must be at least 1"):
        LoopGroupScorer(lambda r, at: [], _free(True), max_group=0)


def test_try_serial_is_refused_while_another_thread_scores_and_nests_scoring(
    tmp_path: Path, model_dir: Path, payments
) -> None:
    """Scorer.try_serial: False at once while the order lock is held elsewhere; True when free,
    and the group scored inside it decides exactly as outside (the lock nests)."""
    rt = _runtime(tmp_path, model_dir)
    who = _who(rt)
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with rt.scorer._serial():
            inside.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert inside.wait(10)
        with rt.scorer.try_serial() as held:
            assert held is False
    finally:
        release.set()
        holder.join(10)
    with rt.scorer.try_serial() as held:
        assert held is True
        answers = rt.scorer.score_group([(p, who, None) for p in payments[:5]])
    assert [a[0] for a in answers] == [200] * 5
    assert counts(rt.engine)["decisions"] == 5
    rt.close()


def test_a_group_that_would_wait_on_a_stopped_pool_is_refused_as_closing() -> None:
    groups = LoopGroupScorer(_OnLoop(), _free(False), max_group=4)
    groups._pool.shutdown()  # as close() leaves it, with a request already past the door

    async def main() -> Any:
        return await asyncio.gather(groups.score("p0", None, None), return_exceptions=True)  # type: ignore[arg-type]

    (result,) = asyncio.run(main())
    assert isinstance(result, ClosedError)


def test_closing_refuses_what_waits_for_its_group_rather_than_score_on_a_closed_state() -> None:
    fake = _OnLoop()
    groups = LoopGroupScorer(fake, _free(True), max_group=8).start()

    async def main() -> list[Any]:
        calls = [
            asyncio.ensure_future(groups.score(f"p{i}", None, None))  # type: ignore[arg-type]
            for i in range(3)
        ]
        await asyncio.sleep(0)  # all three wait for their group; the drainer has not run
        groups.close()  # the runtime closes the state right after this
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, ClosedError) for r in results)  # 503: retry with the same key
    assert fake.sizes == []  # nothing scored against the closing state


def test_a_drainer_cancelled_before_it_ran_does_not_strand_the_loop() -> None:
    fake = _OnLoop()
    groups = LoopGroupScorer(fake, _free(True), max_group=8).start()

    async def main() -> tuple[Any, Any]:
        loop = asyncio.get_running_loop()
        first = asyncio.ensure_future(groups.score("p0", None, None))  # type: ignore[arg-type]
        await asyncio.sleep(0)  # p0 waits; its drainer is created but has not run
        groups._drainers[loop].cancel()
        await asyncio.sleep(0)  # cancelled before its first step: its finally never ran
        second = await groups.score("p1", None, None)  # type: ignore[arg-type]
        return await first, second

    try:
        first, second = asyncio.run(main())
    finally:
        groups.close()
    assert (first[1]["id"], second[1]["id"]) == ("p0", "p1")
    assert fake.sizes == [2]  # a new drainer took both
