"""Group commit for `/score`: requests that arrive together are scored together.

Under load, single-payment requests pile up while one is being scored. Scoring them one by one
pays, per payment, a lock, a hand-off to the model thread, a model call and a database commit;
a group pays each once. The event loop hands each request to one scoring thread and awaits its
answer; the thread takes everything waiting (up to `max_group`) and calls
`Scorer.score_group`. With a single request waiting, a group is that one request, so latency
at low load is the single path's plus one thread hand-off.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from serving.core.auth import Principal
from serving.core.schemas import PaymentIn

log = logging.getLogger("riskgate")

Request = tuple[PaymentIn, Principal, str | None]
Answer = tuple[int, dict[str, Any]]


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
