"""The driver-level inserts and probe of the scoring path on SQLite (see driver_checks.py;
tests/scale/test_driver_postgres.py runs the same checks on PostgreSQL)."""

from __future__ import annotations

import json

import orjson
import pytest

from serving.store import db
from serving.store.driver import DriverInsert, json_text
from tests.serving import driver_checks
from tests.serving.driver_checks import NOW


@pytest.fixture
def engine(tmp_path):
    e = db.make_engine(f"sqlite:///{tmp_path / 'driver.db'}")
    db.create_schema(e)
    yield e
    e.dispose()


def test_driver_insert_stores_what_sqlalchemys_insert_stores(engine):
    driver_checks.check_same_storage(engine, "sqlite")


def test_driver_insert_many_rows_and_a_duplicate_rolls_everything_back(engine):
    driver_checks.check_many_rows_and_duplicates(engine, "sqlite")


def test_driver_probe_answers_whether_the_row_exists(engine):
    driver_checks.check_probe(engine, "sqlite")


def test_driver_insert_of_values_processed_ahead_stores_the_same(engine):
    driver_checks.check_processed_ahead_store_the_same(engine, "sqlite")


def test_driver_present_finds_exactly_the_stored_values(engine):
    driver_checks.check_present(engine, "sqlite")


def test_json_on_sqlite_is_written_by_orjson_and_reads_back_as_the_same_document(tmp_path):
    """The scoring path's JSON columns on SQLite: compact UTF-8 from orjson (not the standard
    library's spaced, escaped text), the same document read back; SQL NULL stays NULL."""
    engine = db.make_engine(f"sqlite:///{tmp_path}/j.db")
    db.create_schema(engine)
    ins = DriverInsert(db.audit_log, engine.dialect)
    detail = {"decision": "review", "text": "é 中", "n": 3, "p": 0.1 + 0.2, "none": None}
    row = {"at": NOW, "actor": "a", "role": "backend", "key_id": "k", "action": "score"}
    with engine.begin() as conn:
        ins.execute(conn, [{**row, "target": "t1", "detail": detail}])
        ins.execute(conn, [{**row, "target": "t2", "detail": None}])
    with engine.connect() as conn:
        raw = dict(conn.exec_driver_sql("SELECT target, detail FROM audit_log").all())
    assert raw["t1"] == orjson.dumps(detail).decode()  # compact, not json.dumps' spaced text
    assert json.loads(raw["t1"]) == detail
    assert raw["t2"] in (None, "null")  # as SQLAlchemy's own processor stores a None


def test_json_text_falls_back_to_the_standard_library_for_what_orjson_refuses():
    big = {"n": 2**70}  # past orjson's 64-bit ints
    assert json.loads(json_text(big)) == big
    with pytest.raises(TypeError):
        json_text({"x": object()})  # refused as the standard library refuses it


def test_insert_one_gives_the_new_rows_id_and_stores_what_sqlalchemy_stores(engine):
    """A held payment's case goes in on the driver (SQLite) and its id comes back: the next id,
    and the same row a SQLAlchemy insert of the same values would store."""
    rows = driver_checks._rows("one")
    sa_rows = driver_checks._rows("sa")
    with engine.begin() as conn:
        for rs in (rows, sa_rows):
            DriverInsert(db.decisions, engine.dialect).execute(conn, [rs[db.decisions]])
        first = conn.execute(db.cases.insert(), sa_rows[db.cases]).inserted_primary_key[0]
        got = DriverInsert(db.cases, engine.dialect).insert_one(conn, rows[db.cases])
    assert got == first + 1
    a = driver_checks._stored(engine, db.cases, "transaction_id", "t-one")
    b = driver_checks._stored(engine, db.cases, "transaction_id", "t-sa")
    strip = lambda t: tuple(v for v in t if v not in ("t-one", "t-sa"))  # noqa: E731
    assert strip(a[0]) == strip(b[0])
    with engine.connect() as conn:
        stored_id = conn.execute(
            db.cases.select().where(db.cases.c.transaction_id == "t-one")
        ).one()
    assert stored_id.id == got


def test_insert_one_is_only_for_sqlite():
    from sqlalchemy.dialects import postgresql

    ins = DriverInsert(db.cases, postgresql.psycopg.dialect())
    with pytest.raises(NotImplementedError, match="lastrowid"):
        ins.insert_one(None, {"transaction_id": "t"})  # type: ignore[arg-type]
