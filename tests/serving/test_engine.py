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
