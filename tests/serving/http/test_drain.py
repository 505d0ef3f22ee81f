"""Drain on SIGTERM (unit level): requests in flight finish, new ones get 503 + Retry-After,
nothing is refused before the drain, and uvicorn's own SIGTERM handler still runs."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from serving.http.drain import Drain, DrainGate, on_sigterm


def run(coro: Any) -> Any:
    return asyncio.new_event_loop().run_until_complete(coro)


class SlowApp:
    """An app whose response waits until the test releases it (a request in flight)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = asyncio.Event()
        self.finished: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.entered.set()
        if scope["path"] == "/slow":
            await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        self.finished.append(scope["path"])


async def call(app: Any, path: str) -> tuple[int, dict[str, str]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "path": path, "method": "GET", "headers": []}
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode().lower(): v.decode() for k, v in start.get("headers", [])}
    return start["status"], headers


def test_nothing_is_refused_before_the_drain():
    state = Drain()
    gate = DrainGate(SlowApp(), lambda: state)

    async def go() -> list[int]:
        return [(await call(gate, p))[0] for p in ("/score", "/cases", "/readyz")]

    assert run(go()) == [200, 200, 200]
    assert state.in_flight == 0
    assert not state.draining


def test_in_flight_request_finishes_and_new_ones_get_503_with_retry_after():
    state = Drain()
    app = SlowApp()
    gate = DrainGate(app, lambda: state)

    async def go() -> tuple[Any, ...]:
        slow = asyncio.ensure_future(call(gate, "/slow"))
        await app.entered.wait()
        assert state.in_flight == 1
        state.start()  # SIGTERM arrives while /slow is in flight
        refused = await call(gate, "/score")
        ready = await call(gate, "/readyz")
        alive = await call(gate, "/livez")
        app.release.set()
        return await slow, refused, ready, alive

    slow, refused, ready, alive = run(go())
    assert slow[0] == 200  # the request in flight finished normally
    assert "/slow" in app.finished
    assert refused[0] == 503
    assert refused[1]["retry-after"] == "1"
    assert refused[1]["connection"] == "close"
    assert ready[0] == 503  # a load balancer stops sending here
    assert alive[0] == 200  # but the process is alive: nobody restarts it mid-drain
    assert "/score" not in app.finished
    assert state.in_flight == 0
    assert state.wait_idle(0.0)


def test_sigterm_starts_the_drain_and_still_reaches_the_previous_handler():
    state = Drain()
    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda sig, frame: seen.append(sig))
    try:
        on_sigterm(state)
        os.kill(os.getpid(), signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert state.draining
    assert seen == [signal.SIGTERM]  # uvicorn's handler: stop accepting, wait, shut down
