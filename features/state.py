"""Per-entity history for the online executor, behind one small interface.

`MemoryState` keeps each entity's recent payments in parallel, time-ordered lists and forgets
what is older than the longest look-back (`registry.MAX_LOOKBACK`), so memory stays bounded.
`SQLiteState` adds durability: every event is appended to an SQLite log (WAL) and replayed on
open, so the state survives a restart. A shared backend (Redis) implements the same protocol.
"""

from __future__ import annotations

import fcntl
import functools
import json
import sqlite3
import threading
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, fields
from itertools import accumulate
from pathlib import Path
from typing import Any, Protocol

import orjson

from features.registry import FEATURES, MAX_LOOKBACK
from features.transforms import NS_PER_S

KERNEL_ABI = 2  # the features/_windows.c interface this code calls (its module's ABI)


def usable_kernel(module: Any) -> Any:
    """The compiled module if it is a build of this _windows.c, else None: a build of an
    older one (other arguments for fill, no record) is set aside, so the Python code runs
    instead of every payment failing or quietly taking another path."""
    return module if getattr(module, "ABI", None) == KERNEL_ABI else None


try:
    from features import _windows as _kernel
except ImportError:  # not built (pip install -e . builds it): the Python appends
    _kernel = None  # type: ignore[assignment]
_kernel = usable_kernel(_kernel)

LOOKBACK_NS = MAX_LOOKBACK * NS_PER_S


@dataclass(frozen=True)
class PaymentEvent:
    """What the state remembers of a scored payment (no amounts beyond cents, no PAN)."""

    transaction_id: str
    ts: int  # ns since the epoch
    cents: int
    card_id: str | None
    customer_id: str | None
    merchant_id: str | None
    device_id: str | None
    ip_hash: str | None
    email_domain: str | None
    merchant_lat: float
    merchant_lon: float
    # Added later: a default, so that state logs written before it still replay.
    mcc: str | None = None


@dataclass
class History:
    """One entity's recent payments, oldest first; the lists are parallel.

    `csum` holds running totals of `cents` (from an arbitrary origin, which survives dropping
    a prefix), so a window's sum costs two look-ups: see `cents_since`.
    """

    ts: list[int] = field(default_factory=list)
    cents: list[int] = field(default_factory=list)
    cards: list[str | None] = field(default_factory=list)
    lat: list[float] = field(default_factory=list)
    lon: list[float] = field(default_factory=list)
    fraud_ts: list[int] = field(default_factory=list)  # payment times of known fraud (sorted)
    csum: list[int] = field(default_factory=list)

    def append(self, e: PaymentEvent) -> None:
        self.ts.append(e.ts)
        self.cents.append(e.cents)
        self.csum.append((self.csum[-1] if self.csum else 0) + e.cents)
        self.cards.append(e.card_id)
        self.lat.append(e.merchant_lat)
        self.lon.append(e.merchant_lon)

    def extend_cents(self, cents: Iterable[int]) -> None:
        """Append amounts to `cents` and `csum` (for backends that decode in bulk)."""
        start = len(self.cents)
        self.cents.extend(cents)
        self.csum.extend(accumulate(self.cents[start:], initial=self.csum[-1] if self.csum else 0))
        del self.csum[start]  # the initial value

    def cents_since(self, s: int) -> int:
        """Sum of cents[s:] in exact integers."""
        if s >= len(self.csum):
            return 0
        return self.csum[-1] - (self.csum[s - 1] if s > 0 else self.csum[0] - self.cents[0])

    def drop_first(self, k: int) -> None:
        del self.ts[:k], self.cents[:k], self.csum[:k], self.cards[:k], self.lat[:k]
        del self.lon[:k]

    def forget_before(self, bound: int, *, lazy: bool = False) -> None:
        """Drop events with ts <= bound (cheap when nothing is due).

        `lazy`: only once they are more than a sixteenth of the list. Deleting a prefix moves
        the whole list, so dropping one event per payment costs a busy merchant's or
        category's history O(n) each time; in batches it is O(1) amortised, for at most 1/15
        more memory. What stays is older than every window (all end within the look-back),
        so no feature reads it.
        """
        ts = self.ts
        if ts and ts[len(ts) >> 4 if lazy else 0] <= bound:
            self.drop_first(bisect_right(ts, bound))
        if self.fraud_ts and self.fraud_ts[0] <= bound:
            del self.fraud_ts[: bisect_right(self.fraud_ts, bound)]

    def __len__(self) -> int:
        return len(self.ts)


EMPTY = History()

# Entities the online executor keys history by; "customer_device" is the pair.
ENTITY_OF: dict[str, str] = {
    "card": "card_id",
    "customer": "customer_id",
    "merchant": "merchant_id",
    "category": "mcc",
    "device": "device_id",
    "ip": "ip_hash",
    "email_domain": "email_domain",
}
# Entities whose known fraud labels the state keeps (those a label feature is declared for).
LABELLED: tuple[str, ...] = tuple(
    e for e in ENTITY_OF if any(f.reads_labels and f.entity == e for f in FEATURES)
)


def labelled_keys(e: PaymentEvent) -> tuple[tuple[str, str], ...]:
    """The (entity, key) pairs a fraud label on this payment counts for."""
    return tuple((ent, key) for ent in LABELLED if (key := getattr(e, ENTITY_OF[ent])) is not None)


def entity_keys(e: PaymentEvent) -> dict[str, str]:
    keys = {ent: getattr(e, col) for ent, col in ENTITY_OF.items() if getattr(e, col) is not None}
    if e.customer_id is not None and e.device_id is not None:
        keys["customer_device"] = f"{e.customer_id}\x1f{e.device_id}"
    return keys


_ENTITY_COLUMNS = tuple(ENTITY_OF.items())
_NO_TABLE: dict[str, History] = {}  # an entity kind never seen (read, never written)


class StateStore(Protocol):
    """What the online executor needs from a state backend."""

    def history(self, entity: str, key: str) -> History: ...

    def record_payment(self, event: PaymentEvent) -> None: ...

    def record_label(self, transaction_id: str, is_fraud: bool, label_time: int) -> bool: ...

    def close(self) -> None: ...


class MemoryState:
    """In-process state, bounded by the look-back window."""

    # a payment's appends to its histories in C (features/_windows.c `record`) when it is
    # built; the Python appends are the reference (tests/features/test_windows_kernel.py)
    compiled_appends: bool = _kernel is not None

    def __init__(self) -> None:
        self._hist: dict[str, dict[str, History]] = {}
        # txn -> (the entity keys its label counts for, ts)
        self._payments: dict[str, tuple[tuple[tuple[str, str], ...], int]] = {}
        self._fraud: set[str] = set()  # transactions counted as fraud (a label counts once)
        self._expiry: deque[tuple[int, str]] = deque()
        self._now = 0

    def history(self, entity: str, key: str) -> History:
        return self._hist.get(entity, _NO_TABLE).get(key, EMPTY)

    def _touch(self, entity: str, key: str) -> History:
        table = self._hist.setdefault(entity, {})
        h = table.get(key)
        if h is None:
            h = table[key] = History()
        return h

    def knows(self, transaction_id: str) -> bool:
        """The payment is in the state (recorded, and not yet past the look-back)."""
        return transaction_id in self._payments

    def record_payment(self, event: PaymentEvent) -> None:
        """Remember a scored payment, once: a transaction id the state already holds is not
        applied again (a retry, a replayed log, a decision store that forgot it), so velocity
        features never count a payment twice."""
        if event.transaction_id in self._payments:
            return
        bound = event.ts - LOOKBACK_NS
        touched = []
        for entity, col in _ENTITY_COLUMNS:  # entity_keys(event), without building its dict
            key = getattr(event, col)
            if key is not None:
                touched.append(self._touch(entity, key))
        if event.customer_id is not None and event.device_id is not None:
            touched.append(
                self._touch("customer_device", f"{event.customer_id}\x1f{event.device_id}")
            )
        if self.compiled_appends:  # the same forget_before + append, in C
            e = event
            _kernel.record(touched, e.ts, e.cents, e.card_id, e.merchant_lat, e.merchant_lon, bound)
        else:
            for h in touched:
                h.forget_before(bound, lazy=True)
                h.append(event)
        self._payments[event.transaction_id] = (labelled_keys(event), event.ts)
        self._expiry.append((event.ts, event.transaction_id))
        self._now = max(self._now, event.ts)
        while self._expiry and self._expiry[0][0] <= bound:
            gone = self._expiry.popleft()[1]
            self._payments.pop(gone, None)
            self._fraud.discard(gone)

    def record_label(self, transaction_id: str, is_fraud: bool, label_time: int) -> bool:
        """Apply a label; False when the payment is unknown or too old to matter."""
        known = self._payments.get(transaction_id)
        if known is None:
            return False
        keys, ts = known
        counted = transaction_id in self._fraud
        if is_fraud and not counted:
            for entity, key in keys:
                insort(self._touch(entity, key).fraud_ts, ts)
            self._fraud.add(transaction_id)
        elif not is_fraud and counted:  # a fraud label reversed
            for entity, key in keys:
                fraud_ts = self._touch(entity, key).fraud_ts
                i = bisect_left(fraud_ts, ts)
                if i < len(fraud_ts) and fraud_ts[i] == ts:
                    del fraud_ts[i]
            self._fraud.discard(transaction_id)
        return True

    def sizes(self) -> dict[str, int]:
        """Entities held per kind (for metrics and the bounded-memory test)."""
        return {k: len(v) for k, v in self._hist.items()}

    def events_held(self) -> int:
        """Entity events within the look-back of the latest payment: what features can read
        (the same however lazily older ones were dropped, e.g. live vs replayed)."""
        bound = self._now - LOOKBACK_NS
        return sum(
            len(h.ts) - bisect_right(h.ts, bound)
            for table in self._hist.values()
            for h in table.values()
        )

    def events_stored(self) -> int:
        """Entity events in memory, stale ones not yet dropped included (the memory bound)."""
        return sum(len(h) for table in self._hist.values() for h in table.values())

    def prune(self, now: int) -> None:
        """Forget everything older than the look-back, including idle entities."""
        bound = now - LOOKBACK_NS
        for table in self._hist.values():
            for key in list(table):
                h = table[key]
                h.forget_before(bound)
                if not h.ts and not h.fraud_ts:
                    del table[key]

    def close(self) -> None:
        return None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS state_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('payment', 'label')),
    ts INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS state_events_ts ON state_events (ts);
CREATE TABLE IF NOT EXISTS state_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_ROWS_PER_INSERT = 5_000  # at most, and within the connection's variable limit (3 per row)


@functools.lru_cache(maxsize=256)
def _insert_rows(n: int) -> str:
    """One INSERT of n events (a group's: one statement, one call)."""
    return "INSERT INTO state_events (kind, ts, body) VALUES " + ",".join(["(?,?,?)"] * n)


DEPLOYMENT = "deployment"  # state_meta row: the deployment id this log belongs to


class SQLiteStamp:
    """The deployment stamp of an SQLite state log, read and written without replaying the log
    (what `riskgate serve` checks before it starts the workers; SQLiteState has the same)."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self._path, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(_SCHEMA)

    def deployment_id(self) -> str | None:
        row = self._db.execute(
            "SELECT value FROM state_meta WHERE name = ?", (DEPLOYMENT,)
        ).fetchone()
        return None if row is None else str(row[0])

    def claim_deployment(self, candidate: str) -> str:
        """Stamp the log with `candidate` unless it already has a stamp; the stamp it has."""
        self._db.execute(
            "INSERT OR IGNORE INTO state_meta (name, value) VALUES (?, ?)", (DEPLOYMENT, candidate)
        )
        stamp = self.deployment_id()
        assert stamp is not None
        return stamp

    def has_events(self) -> bool:
        return self._db.execute("SELECT 1 FROM state_events LIMIT 1").fetchone() is not None

    def close(self) -> None:
        self._db.close()


class SQLiteState(MemoryState):
    """MemoryState whose events are logged to SQLite and replayed on open (survives restarts).

    Several processes may share one log (the service's worker processes): `exclusive()` takes
    an OS file lock next to the database and first applies the events the other processes
    appended since this one last looked, so each payment is scored against every earlier one,
    in one total order, whichever worker it reached. Without a caller holding it, each
    `record_*` takes it for itself.
    """

    transactional = True  # `deferred()` rolls a failed batch back (see Scorer.score_group)

    def __init__(
        self,
        path: str | Path,
        *,
        commit_every: int = 1,
        wal_autocheckpoint: int = 1_000,
        mmap_mib: int = 0,
    ) -> None:
        """`commit_every > 1` keeps a write transaction open between calls: for one writer
        replaying history in bulk, not for a log shared by running workers.
        `wal_autocheckpoint`: log pages past which a commit checkpoints (the service raises it
        and checkpoints on a thread of its own: serving/store/checkpoint.py). `mmap_mib`: the
        log read through a memory map (another worker's commit empties the page cache)."""
        super().__init__()
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout=30000")
        self._lockfile = open(self._path.with_name(self._path.name + ".lock"), "a+b")  # noqa: SIM115
        self._mutex = threading.RLock()
        self._depth = 0
        self._seq = 0  # the last logged event this process has applied
        self._data_version: int | None = None  # PRAGMA data_version at the last catch-up
        self._commit_every = commit_every
        self._pending = 0
        self._rows: list[tuple[str, int, str]] = []  # a batch's events, written at flush
        limit = self._db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self._chunk = max(1, min(_ROWS_PER_INSERT, limit // 3))
        with self.exclusive(catch_up=False):
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(f"PRAGMA wal_autocheckpoint={int(wal_autocheckpoint)}")
            self._db.execute(f"PRAGMA mmap_size={1024 * 1024 * int(mmap_mib)}")
            self._db.executescript(_SCHEMA)
            self._replay()

    @contextmanager
    def exclusive(self, *, catch_up: bool = True) -> Iterator[None]:
        """Hold the log for this thread and process (re-entrant), up to date with the others."""
        with self._mutex:
            if self._depth == 0:
                fcntl.flock(self._lockfile.fileno(), fcntl.LOCK_EX)
            self._depth += 1
            try:
                if self._depth == 1 and catch_up:
                    self._catch_up()
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    fcntl.flock(self._lockfile.fileno(), fcntl.LOCK_UN)

    @contextmanager
    def try_exclusive(self) -> Iterator[bool]:
        """`exclusive()` if it is free now, else nothing: yields whether it was taken. For an
        event loop, which must not wait for another process to finish scoring."""
        if not self._mutex.acquire(blocking=False):
            yield False
            return
        try:
            if self._depth == 0:
                try:
                    fcntl.flock(self._lockfile.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    yield False
                    return
            self._depth += 1
            try:
                if self._depth == 1:
                    self._catch_up()
                yield True
            finally:
                self._depth -= 1
                if self._depth == 0:
                    fcntl.flock(self._lockfile.fileno(), fcntl.LOCK_UN)
        finally:
            self._mutex.release()

    def _apply(self, rows: Iterable[tuple[int, str, str]]) -> None:
        for seq, kind, body in rows:
            data = _decode(body)
            if kind == "payment":
                for name in _FLOAT_FIELDS:  # orjson writes a NaN as null: NaN again here
                    if data.get(name, 0.0) is None:
                        data[name] = _NAN
                super().record_payment(PaymentEvent(**data))
            else:
                super().record_label(data["transaction_id"], data["is_fraud"], data["label_time"])
            self._seq = seq

    def _replay(self) -> None:
        row = self._db.execute("SELECT max(ts) FROM state_events WHERE kind='payment'").fetchone()
        if row[0] is None:
            return
        bound = int(row[0]) - LOOKBACK_NS
        self._db.execute("DELETE FROM state_events WHERE ts <= ?", (bound,))
        self._apply(
            self._db.execute(
                "SELECT seq, kind, body FROM state_events WHERE ts > ? ORDER BY seq", (bound,)
            )
        )

    def _catch_up(self) -> None:
        """Apply what other processes logged since this one last looked (usually nothing).

        SQLite's data_version changes only when another connection commits: when it has not,
        there is nothing to read, and the look-up (a query per payment) is skipped."""
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version:
            return
        self._data_version = version
        self._apply(
            self._db.execute(
                "SELECT seq, kind, body FROM state_events WHERE seq > ? ORDER BY seq", (self._seq,)
            )
        )

    def _log(self, kind: str, ts: int, body: dict[str, object]) -> None:
        """Append an event. Alone (commit_every 1, no batch open): one INSERT in autocommit,
        its own transaction. In a batch the rows wait in `_rows` and go in one multi-row
        INSERT at `flush`: every sqlite3 call releases the GIL, and in the server the scoring
        thread must then win it back from the busy event loop, so fewer calls is less waiting."""
        row = (kind, ts, orjson.dumps(body).decode())
        if self._pending == 0 and self._commit_every == 1:
            cur = self._db.execute(_insert_rows(1), row)
            assert cur.lastrowid is not None
            self._seq = cur.lastrowid  # under the lock: every event before it is applied here
            return
        self._rows.append(row)
        self._pending += 1
        if self._pending >= self._commit_every:
            self.flush()

    def flush(self) -> None:
        """Write the batch's events: one multi-row INSERT in autocommit (one sqlite3 call, one
        transaction) when they fit in one statement, else chunks inside BEGIN ... COMMIT."""
        if not self._pending:
            return
        rows, chunk = self._rows, self._chunk
        try:
            if len(rows) <= chunk:
                cur = self._db.execute(_insert_rows(len(rows)), [v for r in rows for v in r])
            else:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for i in range(0, len(rows), chunk):
                        part = rows[i : i + chunk]
                        cur = self._db.execute(
                            _insert_rows(len(part)), [v for r in part for v in r]
                        )
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
        finally:
            rows.clear()
            self._pending = 0
        assert cur.lastrowid is not None  # the last row's: seqs are given in row order
        self._seq = cur.lastrowid  # under the lock: every event before it is applied here

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Log a batch's events in one commit instead of one each. If the block fails (the
        decisions' transaction did not commit), the batch's events are rolled back, here and
        in the log, so a retried payment does not count itself."""
        with self.exclusive():
            self.flush()
            every = self._commit_every
            self._commit_every = 1 << 30
            try:
                yield
            except BaseException:
                self._rollback()
                raise
            else:
                self.flush()
            finally:
                self._commit_every = every

    def _rollback(self) -> None:
        """Drop the uncommitted events and rebuild the memory from the log (rare: a failed
        batch), which is simpler and safer than undoing each entity's lists."""
        self._rows.clear()  # not yet written: dropped
        self._pending = 0
        MemoryState.__init__(self)
        self._seq = 0
        self._data_version = None
        self._replay()

    def record_payment(self, event: PaymentEvent) -> None:
        with self._mutex:
            if self._depth == 0:  # caught up with the other processes: their payments count
                with self.exclusive():
                    self._record_held(event)
            else:  # this thread holds the log already (a group, a batch): no second hold
                self._record_held(event)

    def _record_held(self, event: PaymentEvent) -> None:
        if self.knows(event.transaction_id):
            return  # already applied (here or by another worker): not logged again
        self._log("payment", event.ts, event.__dict__)
        super().record_payment(event)

    def record_label(self, transaction_id: str, is_fraud: bool, label_time: int) -> bool:
        with self.exclusive():
            known = super().record_label(transaction_id, is_fraud, label_time)
            if known:
                body = {
                    "transaction_id": transaction_id,
                    "is_fraud": is_fraud,
                    "label_time": label_time,
                }
                self._log("label", label_time, body)
            return known

    def deployment_id(self) -> str | None:
        """The deployment this log belongs to (stamped at its first start), if any."""
        with self._mutex:
            row = self._db.execute(
                "SELECT value FROM state_meta WHERE name = ?", (DEPLOYMENT,)
            ).fetchone()
        return None if row is None else str(row[0])

    def claim_deployment(self, candidate: str) -> str:
        """Stamp the log with `candidate` unless it already has a stamp; the stamp it has."""
        with self.exclusive(catch_up=False):
            self.flush()
            self._db.execute(
                "INSERT OR IGNORE INTO state_meta (name, value) VALUES (?, ?)",
                (DEPLOYMENT, candidate),
            )
        stamp = self.deployment_id()
        assert stamp is not None
        return stamp

    def has_events(self) -> bool:
        with self._mutex:
            return self._db.execute("SELECT 1 FROM state_events LIMIT 1").fetchone() is not None

    def close(self) -> None:
        with self._mutex:
            self.flush()
            self._db.close()
            self._lockfile.close()


_NAN = float("nan")
_FLOAT_FIELDS = tuple(f.name for f in fields(PaymentEvent) if f.type in (float, "float"))


def _decode(body: str) -> Any:
    """A logged event: orjson's (this version on) or json.dumps' (earlier logs, where an
    unknown location was written as the non-standard `NaN`, which only json reads)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def exclusive(store: StateStore) -> Any:
    """`with exclusive(store):` orders scoring across processes where the backend supports it."""
    hold = getattr(store, "exclusive", None)
    return hold() if callable(hold) else nullcontext()


def try_exclusive(store: StateStore) -> Any:
    """`with try_exclusive(store) as held:` `exclusive` without waiting; a backend that does
    not order across processes is always held."""
    hold = getattr(store, "try_exclusive", None)
    return hold() if callable(hold) else nullcontext(True)


def deferred_commits(store: StateStore) -> Any:
    """`with deferred_commits(store):` groups a batch's writes where the backend supports it."""
    deferred = getattr(store, "deferred", None)
    return deferred() if callable(deferred) else nullcontext()
