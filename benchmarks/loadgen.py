"""A small, low-overhead HTTP/1.1 load generator on asyncio (keep-alive, pre-encoded requests).

Two shapes of load, both bounded in request count and in time:

* `open_loop`: requests leave on a fixed schedule (`rate` per second) whether or not earlier ones
  have answered; latency is measured from each request's *scheduled* send time, so a server that
  falls behind is charged for the queueing it causes (no coordinated omission).
* `closed_loop`: `clients` connections each send their next request as soon as the previous one
  answers, until the requests or the time run out: the saturation throughput.

The client speaks just enough HTTP/1.1 for a local benchmark (Content-Length and chunked bodies,
`Connection: close`) and reuses connections; each request body is encoded once, up front, so the
generator spends its CPU on sockets, not on JSON. Only for 127.0.0.1 servers of this project.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

IDLE_S = 3.0  # reuse a pooled connection only if idle for less (uvicorn keep-alive: 5 s)


def encode_request(
    host: str, port: int, path: str, body: Any, headers: dict[str, str] | None = None
) -> bytes:
    """A complete POST request (head + JSON body) as bytes."""
    payload = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        "Accept: application/json",
        f"Content-Length: {len(payload)}",
    ]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


class Connection:
    """One keep-alive connection; `send` returns (status, body bytes)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.closed = False
        self.last_used = 0.0

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port, limit=2**22)
        return cls(reader, writer)

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = None
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "connection" and value.strip().lower() == "close":
                self.closed = True
        if chunked:
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            body = b"".join(parts)
        elif length is not None:
            body = await self.reader.readexactly(length)
        else:
            body = await self.reader.read()
            self.closed = True
        return status, body

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(Exception):  # closing a broken socket
            self.writer.close()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0-100); NaN for no values."""
    if not values:
        return math.nan
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return s[k]


@dataclass
class LoadResult:
    """What one load run measured. Latencies in milliseconds."""

    mode: str
    sent: int
    completed: int
    ok: int
    elapsed_s: float
    latencies_ms: list[float] = field(default_factory=list, repr=False)  # successful requests
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # transport errors / timeouts
    send_lag_ms: list[float] = field(default_factory=list, repr=False)  # open loop only
    sample_error: str | None = None
    offered_rate: float | None = None
    clients: int | None = None
    connections: int = 0

    def summary(self) -> dict[str, Any]:
        lat = self.latencies_ms
        non_ok = sum(n for s, n in self.statuses.items() if not 200 <= s < 300)
        return {
            "mode": self.mode,
            "offered_rate": self.offered_rate,
            "clients": self.clients,
            "connections": self.connections,
            "sent": self.sent,
            "completed": self.completed,
            "ok": self.ok,
            "elapsed_s": round(self.elapsed_s, 3),
            "throughput_rps": round(self.ok / self.elapsed_s, 1) if self.elapsed_s > 0 else 0.0,
            "p50_ms": round(percentile(lat, 50), 3),
            "p90_ms": round(percentile(lat, 90), 3),
            "p99_ms": round(percentile(lat, 99), 3),
            "max_ms": round(max(lat), 3) if lat else math.nan,
            "mean_ms": round(sum(lat) / len(lat), 3) if lat else math.nan,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "http_errors": non_ok,
            "status_503": self.statuses.get(503, 0),
            "transport_errors": dict(self.errors),
            "sample_error": self.sample_error,
            "send_lag_p99_ms": round(percentile(self.send_lag_ms, 99), 3)
            if self.send_lag_ms
            else None,
        }


def _no_gc() -> bool:
    """Keep the collector from pausing the generator mid-run (the caller's heap may be large)."""
    was = gc.isenabled()
    gc.collect()
    gc.freeze()
    gc.disable()
    return was


def _restore_gc(was: bool) -> None:
    gc.unfreeze()
    if was:
        gc.enable()


async def _open_loop(
    host: str,
    port: int,
    requests: Sequence[bytes],
    rate: float,
    duration_s: float,
    max_connections: int,
    timeout_s: float,
    preopen: int,
) -> LoadResult:
    loop = asyncio.get_running_loop()
    n = min(len(requests), int(rate * duration_s))
    result = LoadResult("open_loop", 0, 0, 0, 0.0, offered_rate=rate)
    idle: deque[Connection] = deque()
    slots = asyncio.Semaphore(max_connections)
    opened = 0

    async def one(i: int, scheduled: float) -> None:
        nonlocal opened
        async with slots:
            conn = None
            try:
                while idle:
                    c = idle.pop()  # the most recently used: the pool stays as small as it can
                    if c.closed or c.reader.at_eof() or loop.time() - c.last_used > IDLE_S:
                        c.close()  # the server may have timed it out (uvicorn: 5 s keep-alive)
                        continue
                    conn = c
                    break
                if conn is None:
                    conn = await Connection.open(host, port)
                    opened += 1
                result.send_lag_ms.append((loop.time() - scheduled) * 1000)
                status, body = await asyncio.wait_for(conn.send(requests[i]), timeout_s)
            except Exception as exc:
                result.errors[type(exc).__name__] += 1
                if conn is not None:
                    conn.close()
                return
            done = loop.time()
            result.completed += 1
            result.statuses[status] += 1
            if 200 <= status < 300:
                result.ok += 1
                result.latencies_ms.append((done - scheduled) * 1000)
            elif result.sample_error is None:
                result.sample_error = f"{status}: {body[:300]!r}"
            if conn.closed:
                conn.close()
            else:
                conn.last_used = done
                idle.append(conn)

    for _ in range(min(preopen, max_connections)):  # connect before the clock starts
        try:
            idle.append(await Connection.open(host, port))
            opened += 1
        except OSError as exc:
            result.errors[type(exc).__name__] += 1
    for c in idle:
        c.last_used = loop.time() + 0.05
    tasks = []
    start = loop.time() + 0.05
    for i in range(n):
        scheduled = start + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(i, scheduled)))
        result.sent += 1
    await asyncio.wait(tasks, timeout=timeout_s + 5) if tasks else None
    for t in tasks:
        if not t.done():
            t.cancel()
            result.errors["cancelled"] += 1
    result.elapsed_s = loop.time() - start
    result.connections = opened
    for c in idle:
        c.close()
    return result


async def _closed_loop(
    host: str,
    port: int,
    requests: Sequence[bytes],
    clients: int,
    duration_s: float,
    timeout_s: float,
) -> LoadResult:
    loop = asyncio.get_running_loop()
    result = LoadResult("closed_loop", 0, 0, 0, 0.0, clients=clients)
    next_index = 0
    deadline = 0.0

    async def client() -> None:
        nonlocal next_index
        conn: Connection | None = None
        while loop.time() < deadline and next_index < len(requests):
            i = next_index
            next_index += 1
            try:
                if conn is None or conn.closed:
                    conn = await Connection.open(host, port)
                    result.connections += 1
                t0 = loop.time()
                result.sent += 1
                status, body = await asyncio.wait_for(conn.send(requests[i]), timeout_s)
            except Exception as exc:
                result.errors[type(exc).__name__] += 1
                if conn is not None:
                    conn.close()
                conn = None
                continue
            result.completed += 1
            result.statuses[status] += 1
            if 200 <= status < 300:
                result.ok += 1
                result.latencies_ms.append((loop.time() - t0) * 1000)
            elif result.sample_error is None:
                result.sample_error = f"{status}: {body[:300]!r}"
        if conn is not None:
            conn.close()

    start = loop.time()
    deadline = start + duration_s
    await asyncio.wait_for(
        asyncio.gather(*(client() for _ in range(clients))), duration_s + timeout_s + 5
    )
    result.elapsed_s = loop.time() - start
    return result


def open_loop(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    rate: float,
    duration_s: float,
    max_connections: int = 256,
    timeout_s: float = 10.0,
    preopen: int = 16,
) -> LoadResult:
    """Send min(len(requests), rate * duration_s) requests on a fixed schedule."""
    was = _no_gc()
    try:
        return asyncio.run(
            _open_loop(host, port, requests, rate, duration_s, max_connections, timeout_s, preopen)
        )
    finally:
        _restore_gc(was)


def closed_loop(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    clients: int,
    duration_s: float,
    timeout_s: float = 30.0,
) -> LoadResult:
    """`clients` concurrent connections, back to back, until the requests or the time run out."""
    was = _no_gc()
    try:
        return asyncio.run(_closed_loop(host, port, requests, clients, duration_s, timeout_s))
    finally:
        _restore_gc(was)


def wait_ready(host: str, port: int, path: str = "/readyz", timeout_s: float = 120.0) -> float:
    """Poll until `path` answers 200; seconds waited. Raises TimeoutError."""
    import httpx

    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            r = httpx.get(f"http://{host}:{port}{path}", timeout=2.0)
            if r.status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"http://{host}:{port}{path} not ready after {timeout_s:.0f}s")
