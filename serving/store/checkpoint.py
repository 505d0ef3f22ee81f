"""SQLite WAL checkpoints off the request path.

In WAL mode SQLite copies the log back into the database (a checkpoint) inside whichever
commit pushes the log past `wal_autocheckpoint` pages (1,000 by default): with a payment's
decision touching about a dozen pages, every ~90th payment paid a 4 MB copy and two fsyncs in
its own request (the durable write's p99, several ms). The service instead checkpoints on a
thread of its own, every second (the sqlite3 module releases the GIL while SQLite works), and
raises its connections' threshold to `BACKSTOP_PAGES`, so a stalled checkpointer still
bounds the log.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

DEFAULT_PAGES = 1_000  # SQLite's own wal_autocheckpoint
BACKSTOP_PAGES = 10_000  # ~40 MB of log: the request path checkpoints only past this


def sqlite_path(url: str) -> Path | None:
    """The database file of an SQLAlchemy SQLite URL (None: not SQLite, or in memory)."""
    if not url.startswith("sqlite") or "///" not in url:
        return None
    path = url.split("///", 1)[1]
    return None if not path or path == ":memory:" else Path(path)


class WalCheckpointer:
    """One connection per database file; `run()` checkpoints each (PASSIVE: never waits for
    a reader or a writer, what it cannot copy now it copies next time)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = tuple(paths)
        self._lock = threading.Lock()
        self._dbs = [
            sqlite3.connect(p, check_same_thread=False, isolation_level=None) for p in self.paths
        ]
        for conn in self._dbs:
            conn.execute("PRAGMA busy_timeout=1000")

    def run(self) -> list[tuple[int, int, int]]:
        """(busy, frames in the log, frames checkpointed) per database, as SQLite reports."""
        with self._lock:
            out = []
            for conn in self._dbs:
                busy, log_frames, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                out.append((int(busy), int(log_frames), int(done)))
            return out

    def close(self) -> None:
        with self._lock:
            for conn in self._dbs:
                conn.close()
            self._dbs = []
