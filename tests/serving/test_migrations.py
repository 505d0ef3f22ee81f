"""The Alembic history is one line: branches merged in parallel must be re-chained, or
`upgrade head` refuses to start ("multiple heads") on every fresh database."""

from __future__ import annotations

from itertools import pairwise

from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from serving.store import db


def test_the_migrations_form_one_chain_from_the_first():
    script = ScriptDirectory(str(db.MIGRATIONS))
    heads = script.get_heads()
    assert len(heads) == 1, f"several heads: {heads}"
    chain = list(script.walk_revisions())  # head first
    assert chain[-1].down_revision is None
    for newer, older in pairwise(chain):
        assert newer.down_revision == older.revision


def test_a_fresh_database_gets_every_table_at_the_head(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    db.create_schema(engine)
    with engine.connect() as conn:
        head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    assert head == ScriptDirectory(str(db.MIGRATIONS)).get_current_head()
    assert set(inspect(engine).get_table_names()) >= set(db.metadata.tables)


def _index_sql(engine) -> str:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT sql FROM sqlite_master WHERE name = 'payment_facts_shadow'")
        ).scalar_one()


def test_the_shadow_index_holds_only_shadowed_payments_and_still_serves_the_comparison(
    tmp_path,
):
    """0007: a database made at 0006 gets the partial index on upgrade, and the shadow
    comparison's `shadow_id = ?` still reads it (not a scan of every payment)."""
    from alembic import command
    from alembic.config import Config

    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = Config()
    config.set_main_option("script_location", str(db.MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0006")
    assert "WHERE" not in _index_sql(engine).upper()
    db.create_schema(engine)
    assert "shadow_id IS NOT NULL" in _index_sql(engine)
    with engine.connect() as conn:
        plan = conn.execute(
            text("EXPLAIN QUERY PLAN SELECT * FROM payment_facts WHERE shadow_id = 'sh-1'")
        ).fetchall()
    assert any("payment_facts_shadow" in str(row) for row in plan), plan
