"""One scoring owner among the worker processes of one machine (`riskgate serve --workers N`).

Every payment must see every earlier one, so the workers share one state log and score inside
one order lock (SQLiteState.exclusive). Taking turns at that lock cost the second worker most
of what it could add: each worker applied the other's payments to its own copy of the state
inside the lock, groups were half the size, and a group that found the lock taken waited on a
thread that then fought its own event loop for the GIL while holding the lock.

Here the first worker to take the owner lock (an OS file lock beside the state log, held for
the process's life) scores every `/score`: its own, and the other workers' forwarded over a
Unix socket (length-prefixed orjson frames, many requests in flight on one connection). The
forwarded requests join the owner's own groups, so groups are larger and the order lock is
always free for the owner's event loop. The other workers do the HTTP work (parsing,
validation, authentication) and keep their copy of the state current off the scoring path
(`SQLiteState.follow` on a thread), so that if the owner goes away they score themselves,
through the order lock, as before: a forwarder that cannot reach the owner takes the owner
lock if it is free (and becomes the owner), else scores locally. A request whose answer was
lost with the connection is scored again locally, where the stored decision answers it (the
replay check): nothing is decided twice.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import struct
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.exc import OperationalError

from serving.core.auth import Principal
from serving.core.metrics import m
from serving.core.schemas import PaymentIn
from serving.scoring.groups import Answer, ClosedError

log = logging.getLogger("riskgate")

_HEADER = struct.Struct("!I")  # each frame: its length, then orjson
RETRY_SECONDS = 0.5  # a forwarder that found no owner scores locally this long, then retries
CONNECT_SECONDS = 5.0  # how long a starting forwarder waits for the owner's socket
MAX_FRAME = 4 << 20  # a payment is a few hundred bytes; anything near this is not ours
_DATES = ("timestamp", "account_created_at", "credential_changed_at")
Score = Callable[[PaymentIn, Principal, str | None], Awaitable[Answer]]


_SOCKET_PATH_MAX = 100  # AF_UNIX paths end at 107 bytes on Linux


def owner_paths(state_path: str | Path) -> tuple[Path, Path]:
    """(owner lock file, socket): beside the state log, or the socket in the temporary folder
    under a name derived from the log's path when that path is too long for a Unix socket."""
    p = Path(state_path).absolute()
    sock = p.with_name(p.name + ".sock")
    if len(os.fsencode(sock)) > _SOCKET_PATH_MAX:
        digest = hashlib.sha256(os.fsencode(p)).hexdigest()[:20]
        sock = Path(tempfile.gettempdir()) / f"riskgate-{digest}.sock"
    return p.with_name(p.name + ".owner"), sock


class OwnerLock:
    """The owner lock: a non-blocking exclusive flock, held until `release` or exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: Any = None

    def try_take(self) -> bool:
        if self._fh is not None:
            return True
        fh = open(self.path, "a+b")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return False
        self._fh = fh
        return True

    @property
    def held(self) -> bool:
        return self._fh is not None

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def encode_request(rid: int, payment: PaymentIn, who: Principal, key: str | None) -> bytes:
    """A forwarded request; TypeError if orjson cannot write the payment (an int past 64
    bits): that one is scored locally."""
    body = orjson.dumps(
        {"i": rid, "p": payment.contract(), "w": [who.name, who.role, who.key_id], "k": key}
    )
    return _HEADER.pack(len(body)) + body


def decode_payment(doc: dict[str, Any]) -> PaymentIn:
    """The forwarder's validated payment, as it was (its contract record, and so its
    idempotency digest, equal): validated there, not again here."""
    for name in _DATES:
        v = doc.get(name)
        if isinstance(v, str):
            doc[name] = datetime.fromisoformat(v)
    return PaymentIn.model_construct(**doc)


async def read_frame(reader: asyncio.StreamReader) -> Any:
    (n,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if n > MAX_FRAME:
        raise ConnectionError(f"a frame of {n} bytes: not this protocol")
    return orjson.loads(await reader.readexactly(n))


class OwnerServer:
    """The owner's side: forwarded requests scored by `score` (the owner's group scorer)."""

    def __init__(self, path: Path, score: Score) -> None:
        self.path = path
        self._score = score
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()  # the forwarders connected
        self.forwarded = 0  # requests scored for other workers
        self._served = m().forwarded.labels("served")

    async def start(self) -> None:
        with suppress(FileNotFoundError):
            self.path.unlink()  # a dead owner's socket: we hold the owner lock now
        self._server = await asyncio.start_unix_server(self._client, path=str(self.path))
        os.chmod(self.path, 0o600)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks: set[asyncio.Task[None]] = set()
        self._writers.add(writer)
        try:
            while True:
                msg = await read_frame(reader)
                task = asyncio.create_task(self._one(msg, writer))  # many in flight: one group
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the forwarder went away (its answers in flight are dropped)
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _one(self, msg: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        rid = msg["i"]
        try:
            who = Principal(name=msg["w"][0], role=msg["w"][1], key_id=msg["w"][2])
            status, body = await self._score(decode_payment(msg["p"]), who, msg["k"])
            out = {"i": rid, "s": status, "b": body}
            self.forwarded += 1
            self._served.inc()
        except ClosedError:
            out = {"i": rid, "e": "closed"}  # stopping: the forwarder scores it itself
        except OperationalError:
            out = {"i": rid, "e": "database"}
        except Exception:
            log.exception("a forwarded payment failed")
            out = {"i": rid, "e": "error"}
        if writer.is_closing():
            return
        data = orjson.dumps(out)
        writer.write(_HEADER.pack(len(data)) + data)

    def close_now(self) -> None:
        """Stop listening and hang up on the forwarders (the worker is stopping, after its
        drain): they score locally from now on, and a payment whose answer was in flight is
        scored again there, where the stored decision answers it if it committed."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()
        with suppress(FileNotFoundError):
            self.path.unlink()


class OwnerGone(Exception):  # noqa: N818 - a state, not an error: the caller scores locally
    """The owner cannot be reached, or is stopping."""


class _Connection:
    """One forwarder's connection to the owner; answers matched to requests by id."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.next_id = 0
        self.closed = False
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                msg = await read_frame(self.reader)
                future = self.waiting.pop(msg["i"], None)
                if future is not None and not future.done():
                    future.set_result(msg)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self.close()

    def close(self) -> None:
        self.closed = True
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(OwnerGone("the connection to the owner closed"))
        self.waiting.clear()
        self.writer.close()

    async def ask(self, frame_of: Callable[[int], bytes]) -> dict[str, Any]:
        if self.closed:
            raise OwnerGone("the connection to the owner closed")
        rid = self.next_id = self.next_id + 1
        frame = frame_of(rid)  # TypeError (not forwardable) before anything is sent
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[rid] = future
        self.writer.write(frame)
        return await future


class Forwarder:
    """A non-owner worker's `/score`: to the owner, or (owner gone) `local`, its own group
    scorer through the order lock. `become_owner()` is asked when the owner is unreachable:
    True if this worker took the owner lock (it then scores locally, and serves the others)."""

    def __init__(self, path: Path, local: Any, become_owner: Callable[[], Awaitable[bool]]) -> None:
        self.path = path
        self.local = local
        self._become_owner = become_owner
        self._conn: _Connection | None = None
        self._connecting: asyncio.Lock | None = None
        self.owner_here = False
        self._retry_at = 0.0  # monotonic time before which no new connection is tried
        self.forwarded = 0
        self.local_scored = 0
        metrics = m().forwarded
        self._sent, self._local = metrics.labels("sent"), metrics.labels("local")

    async def score(self, payment: PaymentIn, who: Principal, key: str | None) -> Answer:
        if not self.owner_here:
            conn = await self._connection()
            if conn is not None:
                try:
                    msg = await conn.ask(lambda rid: encode_request(rid, payment, who, key))
                except (OwnerGone, ConnectionError, OSError, TypeError):
                    pass  # scored here below (a lost answer: the stored decision answers)
                else:
                    error = msg.get("e")
                    if error is None:
                        self.forwarded += 1
                        self._sent.inc()
                        return int(msg["s"]), msg["b"]
                    if error == "database":
                        raise OperationalError("forwarded payment", None, Exception(error))
                    if error == "error":
                        raise RuntimeError("the owner failed to score a forwarded payment")
        self.local_scored += 1
        self._local.inc()
        result: Answer = await self.local.score(payment, who, key)
        return result

    async def connect(self, within_s: float = CONNECT_SECONDS) -> bool:
        """At start: reach the owner, which is starting too (its socket appears once its own
        start-up hook has run), trying every 50 ms for up to `within_s`; or take the owner
        lock if it is free by then. Whether this worker forwards (False: it scores locally)."""
        deadline = time.monotonic() + within_s
        while True:
            self._retry_at = 0.0
            if await self._connection() is not None:
                return True
            if self.owner_here or time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)

    async def _connection(self) -> _Connection | None:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._conn is not None and not self._conn.closed:
                return self._conn
            if time.monotonic() < self._retry_at:
                return None
            try:
                reader, writer = await asyncio.open_unix_connection(str(self.path))
            except OSError:
                self._conn = None
                if await self._become_owner():
                    self.owner_here = True
                    log.warning("the scoring owner is gone: this worker is the owner now")
                else:  # the owner is starting, or cannot listen: score here for a while
                    self._retry_at = time.monotonic() + RETRY_SECONDS
                return None
            self._conn = _Connection(reader, writer)
            return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self.local.close()
