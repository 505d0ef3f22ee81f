"""The SQLite engine's per-connection settings (serving/store/db.py make_engine)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from serving.core.settings import Settings
from serving.store import db


def test_each_sqlite_connection_gets_the_configured_page_cache(tmp_path):
    """RISKGATE_SQLITE_CACHE_MIB reaches every connection (negative cache_size: KiB)."""
    for mib, engine in (
        (db.SQLITE_CACHE_MIB, db.make_engine(f"sqlite:///{tmp_path / 'a.db'}")),
        (8, db.make_engine(f"sqlite:///{tmp_path / 'b.db'}", cache_mib=8)),
    ):
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar_one() == -1024 * mib
    assert Settings(sqlite_cache_mib=128).sqlite_cache_mib == 128
    with pytest.raises(ValidationError, match="sqlite_cache_mib"):
        Settings(sqlite_cache_mib=0)


def test_each_sqlite_connection_reads_through_the_configured_memory_map(tmp_path):
    """RISKGATE_SQLITE_MMAP_MIB reaches every connection (SQLite caps it at its build's
    maximum, 2 GiB in Python's); 0 turns the map off."""
    cases = (
        (db.SQLITE_MMAP_MIB, db.make_engine(f"sqlite:///{tmp_path / 'a.db'}")),
        (64, db.make_engine(f"sqlite:///{tmp_path / 'b.db'}", mmap_mib=64)),
        (0, db.make_engine(f"sqlite:///{tmp_path / 'c.db'}", mmap_mib=0)),
    )
    for mib, engine in cases:
        with engine.connect() as conn:
            got = conn.exec_driver_sql("PRAGMA mmap_size").scalar_one()
        assert got == min(mib * 1024 * 1024, 2147418112), (mib, got)
        engine.dispose()
    assert db.SQLITE_MMAP_MIB > 0  # on by default: a second worker's commits empty the cache
    assert Settings(sqlite_mmap_mib=0).sqlite_mmap_mib == 0
    with pytest.raises(ValidationError, match="sqlite_mmap_mib"):
        Settings(sqlite_mmap_mib=-1)


def test_the_service_engine_takes_the_memory_map_setting(tmp_path, model_dir):
    from serving.core.auth import KeyRing
    from serving.http.runtime import build

    keys = "backend:backend-key-0123456789"
    rt = build(
        Settings(
            model_dir=str(model_dir),
            db_url=f"sqlite:///{tmp_path}/rg.db",
            state_path=str(tmp_path / "state.db"),
            api_keys=keys,
            sqlite_mmap_mib=32,
        ),
        KeyRing.parse(keys),
    )
    try:
        with rt.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA mmap_size").scalar_one() == 32 * 1024 * 1024
        # and the online state's log
        assert rt.state._db.execute("PRAGMA mmap_size").fetchone()[0] == 32 * 1024 * 1024
    finally:
        rt.close()
