"""The driver-level inserts and probe of the scoring path on PostgreSQL (psycopg): the same
checks as tests/serving/test_driver.py on SQLite."""

from __future__ import annotations

from tests.scale.conftest import new_tag
from tests.serving import driver_checks


def test_driver_insert_stores_what_sqlalchemys_insert_stores(pg_engine):
    driver_checks.check_same_storage(pg_engine, new_tag())


def test_driver_insert_many_rows_and_a_duplicate_rolls_everything_back(pg_engine):
    driver_checks.check_many_rows_and_duplicates(pg_engine, new_tag())


def test_driver_probe_answers_whether_the_row_exists(pg_engine):
    driver_checks.check_probe(pg_engine, new_tag())


def test_driver_insert_of_values_processed_ahead_stores_the_same(pg_engine):
    driver_checks.check_processed_ahead_store_the_same(pg_engine, new_tag())


def test_driver_present_finds_exactly_the_stored_values(pg_engine):
    driver_checks.check_present(pg_engine, new_tag())
