"""WAL checkpoints off the request path (serving/store/checkpoint.py): a commit no longer copies
the log back itself below the backstop, and the checkpointer copies all of it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from serving.store.checkpoint import BACKSTOP_PAGES, WalCheckpointer, sqlite_path


def _wal_db(path: Path, autocheckpoint: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint}")
    conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body TEXT)")
    return conn


def _write(conn: sqlite3.Connection, n: int) -> None:
    for i in range(n):  # one commit each, as the service's payments
        conn.execute("INSERT INTO t (body) VALUES (?)", ("x" * 3000 + str(i),))


def test_below_the_backstop_commits_leave_the_log_to_the_checkpointer(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    conn = _wal_db(path, BACKSTOP_PAGES)
    _write(conn, 1_500)  # ~1,500 pages: SQLite's default (1,000) would have checkpointed
    ck = WalCheckpointer([path])
    try:
        [(busy, frames, done)] = ck.run()
        assert busy == 0
        assert frames >= 1_500  # nothing was copied back by the commits themselves
        assert done == frames  # the checkpointer copies all of it
        _write(conn, 10)
        [(_, frames_after, done_after)] = ck.run()
        assert 0 < frames_after < 100  # the log restarted from its start
        assert done_after == frames_after
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 1_510
    finally:
        ck.close()
        conn.close()


def test_with_the_default_threshold_commits_checkpoint_themselves(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    conn = _wal_db(path, 1_000)
    _write(conn, 1_500)
    ck = WalCheckpointer([path])
    try:
        [(_, frames, _)] = ck.run()
        assert frames < 1_000  # a commit past 1,000 pages copied the log back and restarted it
    finally:
        ck.close()
        conn.close()


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:////tmp/x/rg.db", Path("/tmp/x/rg.db")),
        ("sqlite:///rel/rg.db", Path("rel/rg.db")),
        ("sqlite:///:memory:", None),
        ("sqlite://", None),
        ("postgresql+psycopg://u@h/db", None),
    ],
)
def test_sqlite_path_of_a_url(url: str, path: Path | None) -> None:
    assert sqlite_path(url) == path
