"""Drain on SIGTERM: requests in flight finish (and commit); requests that arrive after the
drain started get 503 with Retry-After, so the backend retries them (with the same
Idempotency-Key) on another worker or replica. Before the drain nothing is refused.

uvicorn (under BentoML's worker) already stops accepting connections on SIGTERM and waits for
the requests in flight before the service's shutdown hook closes the database; what it does
not do is refuse, cleanly, a request that still arrives on an open keep-alive connection in
that moment. The gate below does, and `/readyz` answers 503 from the same instant so a load
balancer stops sending. A rolling restart of `riskgate serve --workers N` is SIGTERM to one
worker process at a time (BentoML's process manager starts a fresh one) or SIGHUP to the
server (it starts N new workers, then stops the old ones, each draining).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from starlette.responses import JSONResponse

log = logging.getLogger("riskgate")
RETRY_AFTER_S = 1
ALWAYS_OPEN = frozenset({"/livez", "/healthz", "/metrics"})  # liveness stays true while draining


class Drain:
    """The process's drain state: a flag, and how many requests are in flight."""

    def __init__(self) -> None:
        self._draining = threading.Event()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._idle = threading.Condition(self._lock)

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def start(self) -> None:
        if not self._draining.is_set():
            log.info("draining: %d request(s) in flight finish, new ones get 503", self._in_flight)
        self._draining.set()

    def enter(self) -> bool:
        """Admit a request (False once draining)."""
        with self._lock:
            if self._draining.is_set():
                return False
            self._in_flight += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """Until no request is in flight (True) or the timeout (False)."""
        with self._lock:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout=timeout_s)


_DRAIN = Drain()


def drain() -> Drain:
    """The process's one drain state (a worker is one process)."""
    return _DRAIN


def on_sigterm(state: Drain | None = None) -> None:
    """Start draining on SIGTERM, then hand the signal to the handler already installed
    (uvicorn's, which stops accepting and waits for the requests in flight). Main thread only:
    elsewhere (a test client's thread) this is a no-op."""
    if threading.current_thread() is not threading.main_thread():
        return
    state = state or _DRAIN
    previous = signal.getsignal(signal.SIGTERM)

    def handler(sig: int, frame: FrameType | None) -> None:
        state.start()
        if callable(previous):
            previous(sig, frame)

    signal.signal(signal.SIGTERM, handler)


def _refusal() -> JSONResponse:
    return JSONResponse(
        {"error": "this worker is restarting: retry (with the same Idempotency-Key)"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S), "Connection": "close"},
    )


class DrainGate:
    """ASGI middleware: counts requests in flight; once draining, refuses new ones."""

    def __init__(self, app: Any, state: Callable[[], Drain] = drain) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") in ALWAYS_OPEN:
            await self.app(scope, receive, send)
            return
        state = self.state()
        if not state.enter():
            await _refusal()(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            state.leave()
