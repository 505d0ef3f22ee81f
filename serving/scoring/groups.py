"""Group commit for `/score`: requests that arrive together are scored together.

Under load, single-payment requests pile up while one is being scored. Scoring them one by one
pays, per payment, a lock, a hand-off to the model thread, a model call and a database commit;
a group pays each once. Two ways to run the groups (RISKGATE_SCORE_GROUPS_ON):

- `LoopGroupScorer` (the default): the event loop scores each group itself, between HTTP
  work, and hands a group to a thread only while another worker holds the order lock;
- `GroupScorer`: the event loop hands each request to one scoring thread and awaits its
  answer; the thread takes everything waiting (up to `max_group`) and calls
  `Scorer.score_group`. Measured slower (the thread waits for the GIL inside the lock).

With a single request waiting, a group is that one request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any

from serving.core.auth import Principal
from serving.core.schemas import PaymentIn

log = logging.getLogger("riskgate")

Request = tuple[PaymentIn, Principal, str | None]
Answer = tuple[int, dict[str, Any]]
# a request waiting for its group: (request, its caller's future, when it arrived)
_Waiting = tuple[Request, "asyncio.Future[Answer]", float]


class ClosedError(RuntimeError):
    """The service is stopping: no new payment is accepted for scoring."""


class GroupScorer:
    """One scoring thread fed by the event loop(s); answers resolve the callers' futures."""

    def __init__(self, score_group: Callable[[list[Request], float], list[Answer]], max_group: int):
        if max_group < 1:
            raise ValueError(f"max_group must be at least 1, got {max_group}")
        self._score_group = score_group
        self._max = max_group
        # (request, its caller's future, when it arrived: the model deadline counts from it)
        self._waiting: deque[tuple[Request, asyncio.Future[Answer], float]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="score-groups", daemon=True)

    def start(self) -> GroupScorer:
        self._thread.start()
        return self

    async def score(self, payment: PaymentIn, who: Principal, key: str | None) -> Answer:
        """(HTTP status, body) as `Scorer.score` gives them; its exceptions are raised here."""
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        with self._cond:
            if self._closed:
                raise ClosedError("the scorer is stopping")
            self._waiting.append(((payment, who, key), future, time.perf_counter()))
            self._cond.notify()
        return await future

    def close(self, timeout_s: float = 10.0) -> None:
        """Score what is already waiting, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if not self._waiting:
                    return
                group = [self._waiting.popleft() for _ in range(min(self._max, len(self._waiting)))]
            requests = [request for request, _, _ in group]
            results: list[Answer] | None = None
            error: BaseException | None = None
            try:  # the earliest arrival: no answer of the group waits past its deadline
                results = self._score_group(requests, min(at for _, _, at in group))
                if len(results) != len(group):
                    raise RuntimeError(f"{len(results)} answers for {len(group)} requests")
            except BaseException as exc:  # every caller of the group hears of it (503 etc.)
                error = exc
            # one wake-up per event loop for the whole group, not one per request
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Answer], Any]]] = {}
            for i, (_, future, _) in enumerate(group):
                outcome = error if error is not None else results[i]  # type: ignore[index]
                by_loop.setdefault(future.get_loop(), []).append((future, outcome))
            for loop, settled in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_settle, settled)
                except RuntimeError:  # that loop is closed: its callers are gone
                    log.warning("%d scored payments had no caller left to answer", len(settled))


def _settle(settled: list[tuple[asyncio.Future[Answer], Any]]) -> None:
    for future, outcome in settled:
        if future.done():  # a caller that hung up was cancelled: its decision is stored anyway
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class LoopGroupScorer:
    """Group commit on the event loop itself, without a scoring thread.

    The thread of `GroupScorer` costs, inside the order lock, a wait for the GIL every time a
    SQLite call releases it while the event loop parses the next requests (up to the 5 ms
    switch interval each). Here the loop scores: requests that reached `score` while the last
    group was scored (their HTTP done by the loop in between) form the next group, and the lock
    is held only for the work itself. The loop never waits on the lock: when another worker
    process holds it (`try_serial` says no), the group is scored on a waiting thread instead,
    while the loop goes on with HTTP. `try_serial()`: a context manager that yields whether it
    took the order lock without waiting (Scorer.try_serial)."""

    def __init__(
        self,
        score_group: Callable[[list[Request], float], list[Answer]],
        try_serial: Callable[[], AbstractContextManager[bool]],
        max_group: int,
    ):
        if max_group < 1:
            raise ValueError(f"max_group must be at least 1, got {max_group}")
        self._score_group = score_group
        self._try_serial = try_serial
        self._max = max_group
        # per event loop: its waiting requests and the task that drains them
        self._waiting: dict[asyncio.AbstractEventLoop, deque[_Waiting]] = {}
        self._drainers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}
        self._closed = False
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="score-wait")

    def start(self) -> LoopGroupScorer:
        return self

    async def score(self, payment: PaymentIn, who: Principal, key: str | None) -> Answer:
        """(HTTP status, body) as `Scorer.score` gives them; its exceptions are raised here."""
        if self._closed:
            raise ClosedError("the scorer is stopping")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        self._waiting.setdefault(loop, deque()).append(
            ((payment, who, key), future, time.perf_counter())
        )
        drainer = self._drainers.get(loop)
        if drainer is None or drainer.done():  # done: cancelled before it ever ran
            self._drainers[loop] = loop.create_task(self._drain(loop))
        return await future

    async def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        waiting = self._waiting[loop]
        group: list[_Waiting] = []
        try:
            while waiting:
                await asyncio.sleep(0)  # requests the loop is carrying here join this group
                group = [waiting.popleft() for _ in range(min(self._max, len(waiting)))]
                requests = [request for request, _, _ in group]
                earliest = min(at for _, _, at in group)
                outcome: list[Answer] | BaseException
                if self._closed:  # the state may be closed already: retry elsewhere (503)
                    _settle([(f, ClosedError("the scorer is stopping")) for _, f, _ in group])
                    group = []
                    continue
                try:
                    results: list[Answer] | None = None
                    with self._try_serial() as held:
                        if held:
                            results = self._score_group(requests, earliest)
                    if results is None:  # another process scores: wait on a thread, not here
                        results = await self._on_thread(loop, requests, earliest)
                    if len(results) != len(group):
                        raise RuntimeError(f"{len(results)} answers for {len(group)} requests")
                    outcome = results
                except Exception as exc:  # every caller of the group hears of it (503 etc.)
                    outcome = exc
                _settle(
                    [
                        (future, outcome if isinstance(outcome, BaseException) else outcome[i])
                        for i, (_, future, _) in enumerate(group)
                    ]
                )
                group = []
        except BaseException as exc:  # cancelled (the loop stops): nobody is left waiting
            for _, future, _ in [*group, *waiting]:
                if not future.done():
                    future.set_exception(ClosedError("the scorer is stopping"))
            waiting.clear()
            if not isinstance(exc, Exception):
                raise
        finally:
            if self._drainers.get(loop) is asyncio.current_task():
                del self._drainers[loop]
            if not waiting:
                self._waiting.pop(loop, None)

    async def _on_thread(
        self, loop: asyncio.AbstractEventLoop, requests: list[Request], earliest: float
    ) -> list[Answer]:
        try:
            job = loop.run_in_executor(self._pool, self._score_group, requests, earliest)
        except RuntimeError as exc:  # the pool is shut down: the service is stopping
            raise ClosedError("the scorer is stopping") from exc
        return await job

    def close(self, timeout_s: float = 10.0) -> None:
        """Refuse new payments, and those still waiting for their group (ClosedError: 503,
        retry with the same key), since the state closes next; a group on the waiting thread
        is finished first. (The HTTP drain has let the requests in flight finish before.)"""
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=False)
