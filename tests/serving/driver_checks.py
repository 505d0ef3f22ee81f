"""What `serving/store/driver.py` must keep, as checks both databases run (SQLite here,
PostgreSQL in tests/scale): the stored values equal SQLAlchemy's own insert's (byte for byte,
JSON columns as the same document: on SQLite orjson writes them, compact), a duplicate is
SQLAlchemy's IntegrityError and rolls the whole transaction back, the probe answers exactly;
values processed ahead (`DriverInsert.process`, passed as `ready`) store the same bytes; the
IN query (`DriverPresent`) finds exactly the values present, at any list size."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import JSON, Engine, Table, bindparam, select
from sqlalchemy.exc import IntegrityError

from serving.store import db
from serving.store.driver import DriverInsert, DriverPresent, DriverProbe

NOW = datetime(2024, 3, 1, 12, 30, 45, 123456, tzinfo=UTC)


def _rows(tag: str) -> dict[Table, dict[str, Any]]:
    body = {"decision": "review", "probability": 0.25, "reasons": [{"text": "é ü 中"}], "x": None}
    return {
        db.decisions: {
            "transaction_id": f"t-{tag}",
            "created_at": NOW,
            "payment_time": NOW - timedelta(seconds=3),
            "decision": "review",
            "source": "model",
            "status": "held_for_review",
            "status_at": NOW,
            "probability": None,
            "score": 25,
            "model_version": "local:m",
            "amount": 12.5,
            "currency": "EUR",
            "merchant_id": "m1",
            "card_id": "411111******1111",
            "response": body,
        },
        db.cases: {
            "transaction_id": f"t-{tag}",
            "created_at": NOW,
            "sla_due": NOW + timedelta(minutes=30),
            "status": "open",
            "priority": 3.125,
            "amount": 12.5,
            "probability": 0.25,
            "score": 25,
            "merchant_id": "m1",
            "version": 0,
            "payment": {"amount": 12.5, "card_id": "411111******1111", "city": "Zürich"},
            "features": {"card_count_24h": 3.0, "card_mean_7d": None},
            "factors": [{"feature": "card_count_24h", "value": 3.0, "contribution": 0.4}],
            "reasons": [{"feature": "card_count_24h", "text": "3 payments in 24 h"}],
        },
        db.payment_facts: {
            "transaction_id": f"t-{tag}",
            "payment_time": NOW,
            "payment": {"amount": 12.5, "timestamp": NOW.isoformat(), "mcc": None},
            "feature_set": "fs1",
            "features": np.array([1.5, np.nan, -0.0]).tobytes(),
            "thresholds": None,
            "shadow_decision": None,
            "shadow_id": None,
        },
        db.idempotency: {
            "key": f"k-{tag}",
            "endpoint": "score",
            "body_hash": "ab" * 32,
            "status_code": 200,
            "response": body,
            "created_at": NOW,
        },
        db.audit_log: {
            "at": NOW,
            "actor": "backend",
            "role": "backend",
            "key_id": "k1",
            "action": "score",
            "target": f"t-{tag}",
            "detail": {"decision": "review", "source": "model"},
        },
    }


def _stored(engine: Engine, table: Table, column: str, value: str) -> tuple[Any, ...]:
    """The row as the driver reads it back (no SQLAlchemy types), without its key columns."""
    drop = {column, "id"}
    names = [c.name for c in table.columns if c.name not in drop]
    with engine.connect() as conn:
        raw = conn.exec_driver_sql(
            f"SELECT {', '.join(names)} FROM {table.name} WHERE {column} = "
            + ("?" if engine.dialect.paramstyle == "qmark" else "%(v)s"),
            (value,) if engine.dialect.paramstyle == "qmark" else {"v": value},
        ).one()
        typed = conn.execute(select(table).where(table.c[column] == value)).one()
    docs = [
        json.loads(v) if isinstance(table.c[n].type, JSON) and isinstance(v, str) else v
        for n, v in zip(names, raw, strict=True)
    ]
    return tuple(docs), tuple(v for k, v in typed._mapping.items() if k not in drop)


KEYS = {
    db.decisions: "transaction_id",
    db.cases: "transaction_id",
    db.payment_facts: "transaction_id",
    db.idempotency: "key",
}


def check_same_storage(engine: Engine, tag: str) -> None:
    core, driver = _rows(f"core-{tag}"), _rows(f"drv-{tag}")
    with engine.begin() as conn:
        for table, row in core.items():
            conn.execute(table.insert(), [row])
    with engine.begin() as conn:
        for table, row in driver.items():
            DriverInsert(table, engine.dialect).execute(conn, [row])
    for table, column in [*KEYS.items(), (db.audit_log, "target")]:
        a, b = core[table][column], driver[table][column]
        assert _stored(engine, table, column, b) == _stored(engine, table, column, a), table.name


def check_many_rows_and_duplicates(engine: Engine, tag: str) -> None:
    ins_dec, ins_aud = (DriverInsert(t, engine.dialect) for t in (db.decisions, db.audit_log))
    rows = [_rows(f"{tag}-{i}") for i in range(3)]
    with engine.begin() as conn:
        ins_dec.execute(conn, [r[db.decisions] for r in rows])
    audits = [_rows(f"{tag}-dup")[db.audit_log]]

    def duplicate_in_one_transaction() -> None:
        with engine.begin() as conn:
            ins_aud.execute(conn, [audits[0]])  # goes in, then is rolled back with the rest
            ins_dec.execute(conn, [rows[1][db.decisions]])  # one decision per transaction id

    with pytest.raises(IntegrityError):
        duplicate_in_one_transaction()
    with engine.connect() as conn:
        ids = set(conn.execute(select(db.decisions.c.transaction_id)).scalars())
        targets = set(conn.execute(select(db.audit_log.c.target)).scalars())
    assert {r[db.decisions]["transaction_id"] for r in rows} <= ids
    assert audits[0]["target"] not in targets


def check_probe(engine: Engine, tag: str) -> None:
    q = select(db.decisions.c.transaction_id)
    probe = DriverProbe(q.where(db.decisions.c.transaction_id == bindparam("t")), engine.dialect)
    row = _rows(f"probe-{tag}")[db.decisions]
    with engine.begin() as conn:
        DriverInsert(db.decisions, engine.dialect).execute(conn, [row])
    with engine.connect() as conn:
        assert probe.exists(conn, row["transaction_id"])
        assert not probe.exists(conn, row["transaction_id"] + "-absent")


def check_processed_ahead_store_the_same(engine: Engine, tag: str) -> None:
    """Every column processed ahead (as the durable write does for what rows share) stores
    what SQLAlchemy's own insert stores."""
    core, driver = _rows(f"core-{tag}"), _rows(f"ready-{tag}")
    with engine.begin() as conn:
        for table, row in core.items():
            conn.execute(table.insert(), [row])
    with engine.begin() as conn:
        for table, row in driver.items():
            ins = DriverInsert(table, engine.dialect)
            ready = {k: ins.process(k, v) for k, v in row.items()}
            ins.execute(conn, [ready], frozenset(row))
    for table, column in [*KEYS.items(), (db.audit_log, "target")]:
        a, b = core[table][column], driver[table][column]
        assert _stored(engine, table, column, b) == _stored(engine, table, column, a), table.name


def check_present(engine: Engine, tag: str) -> None:
    rows = [_rows(f"in-{tag}-{i}")[db.decisions] for i in range(40)]
    with engine.begin() as conn:
        DriverInsert(db.decisions, engine.dialect).execute(conn, rows)
    ids = [r["transaction_id"] for r in rows]
    present = DriverPresent(db.decisions.c.transaction_id, engine.dialect, chunk=16)
    with engine.connect() as conn:
        assert present.present(conn, []) == set()
        assert present.present(conn, ids[:1]) == set(ids[:1])
        for n in (3, 5, 16, 17, 40):  # padded sizes, one chunk and several
            asked = [f"absent-{tag}-{i}" for i in range(n)] + ids[:n]
            assert present.present(conn, asked) == set(ids[:n])
        assert present.present(conn, [ids[7]] * 3 + ["absent"]) == {ids[7]}
