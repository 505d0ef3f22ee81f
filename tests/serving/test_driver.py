"""The driver-level inserts and probe of the scoring path on SQLite (see driver_checks.py;
tests/scale/test_driver_postgres.py runs the same checks on PostgreSQL)."""

from __future__ import annotations

import pytest

from serving.store import db
from tests.serving import driver_checks


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
