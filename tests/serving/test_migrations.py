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
