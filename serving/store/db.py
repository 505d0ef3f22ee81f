"""Tables and the engine: SQLite (WAL) embedded by default, PostgreSQL by URL.

Uniqueness that money depends on is enforced by the database, not by Python memory: one
decision per transaction, one case per transaction, one idempotency key, one decision per case
(optimistic `version`).
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    text,
)

from serving.store.checkpoint import sqlite_path

metadata = MetaData()
SQLITE_CACHE_MIB = 64  # RISKGATE_SQLITE_CACHE_MIB: SQLite's page cache per connection
# RISKGATE_SQLITE_MMAP_MIB: the database file read through a memory map (SQLite caps it: 2 GiB)
SQLITE_MMAP_MIB = 2048

decisions = Table(
    "decisions",
    metadata,
    Column("transaction_id", String(128), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("payment_time", DateTime(timezone=True), nullable=False),
    Column("decision", String(16), nullable=False),  # approve | review | decline (at scoring)
    Column("source", String(16), nullable=False),
    Column("status", String(24), nullable=False),  # settled | held_for_review | declined
    Column("status_at", DateTime(timezone=True), nullable=False),
    Column("probability", Float),
    Column("score", Integer),
    Column("model_version", String(64)),
    Column("amount", Float, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("merchant_id", String(128), nullable=False),
    Column("card_id", String(128), nullable=False),
    Column("response", JSON, nullable=False),
    Index("decisions_card", "card_id", "payment_time"),
    Index("decisions_merchant", "merchant_id", "created_at"),  # the merchant view (0004)
)

cases = Table(
    "cases",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "transaction_id",
        String(128),
        ForeignKey("decisions.transaction_id"),
        nullable=False,
        unique=True,
    ),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sla_due", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),  # open | decided
    Column("priority", Float, nullable=False),  # probability x amount: money at risk
    Column("amount", Float, nullable=False),
    Column("probability", Float),
    Column("score", Integer),
    Column("merchant_id", String(128), nullable=False),
    Column("claimed_by", String(128)),
    Column("claim_key_id", String(32)),
    Column("claim_expires", DateTime(timezone=True)),
    Column("version", Integer, nullable=False, default=0),
    Column("decision", String(16)),
    Column("decided_by", String(128)),
    Column("decided_at", DateTime(timezone=True)),
    Column("note", Text),
    Column("payment", JSON, nullable=False),
    Column("features", JSON, nullable=False),
    Column("factors", JSON, nullable=False),
    Column("reasons", JSON, nullable=False),
    # review operations (migration 0003): routed queue (NULL: not routed yet), pinned by a
    # person (reassign/escalate), escalation, hold (the SLA clock paused since), four eyes
    Column("queue", String(64)),
    Column("queue_pinned", Boolean),
    Column("escalated_at", DateTime(timezone=True)),
    Column("escalated_by", String(128)),
    Column("escalation_reason", Text),
    Column("hold_since", DateTime(timezone=True)),
    Column("hold_reason", Text),
    Column("paused_seconds", Float),
    Column("pending_decision", String(16)),
    Column("pending_by", String(128)),
    Column("pending_key_id", String(32)),
    Column("pending_at", DateTime(timezone=True)),
    Column("pending_note", Text),
    Column("confirmed_by", String(128)),
    Column("explain_arm", String(32)),
    Index("cases_queue", "status", "priority"),
    Index("cases_queue_name", "queue", "status"),
)

idempotency = Table(
    "idempotency_keys",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("endpoint", String(64), nullable=False),
    Column("body_hash", String(64), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("response", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(200)),
    Column("detail", JSON),
)

labels = Table(
    "labels",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("transaction_id", String(128), nullable=False),
    Column("is_fraud", Boolean, nullable=False),
    Column("label_time", DateTime(timezone=True), nullable=False),
    Column("source", String(16), nullable=False),  # review | chargeback
    Column("reason", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("transaction_id", "source", name="labels_one_per_source"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("type", String(64), nullable=False),
    Column("transaction_id", String(128), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True)),
    Column("last_error", Text),
    Index("outbox_due", "delivered_at", "next_attempt_at"),
)

settings_table = Table(
    "settings",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(128), nullable=False),
)


# -- policy backtest and shadow (issue 21) ---------------------------------------------------
feature_sets = Table(
    "feature_sets",
    metadata,
    Column("digest", String(32), primary_key=True),  # of the names, in order
    Column("names", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# What each scored payment was decided on, so a policy can be replayed over history exactly:
# the contract record, the feature vector (float64 bytes, in its feature set's order) and the
# model thresholds in force (capacity band included); and the shadow policy's decision.
payment_facts = Table(
    "payment_facts",
    metadata,
    Column("transaction_id", String(128), ForeignKey("decisions.transaction_id"), primary_key=True),
    Column("payment_time", DateTime(timezone=True), nullable=False),
    Column("payment", JSON, nullable=False),
    Column("feature_set", String(32)),
    Column("features", LargeBinary),
    Column("thresholds", JSON),
    Column("shadow_decision", String(16)),  # approve | review | decline; never acted on
    Column("shadow_id", String(64)),  # which shadow policy decided it
    Index("payment_facts_time", "payment_time"),
    # only the shadowed payments (migration 0007): `shadow_id = ?` still uses it
    Index(
        "payment_facts_shadow",
        "shadow_id",
        sqlite_where=text("shadow_id IS NOT NULL"),
        postgresql_where=text("shadow_id IS NOT NULL"),
    ),
)

policy_backtests = Table(
    "policy_backtests",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("policy_digest", String(64), nullable=False),
    Column("policy", JSON, nullable=False),
    Column("period_start", DateTime(timezone=True), nullable=False),
    Column("period_end", DateTime(timezone=True), nullable=False),
    Column("summary", JSON, nullable=False),
    Index("policy_backtests_digest", "policy_digest", "created_at"),
)


# a merchant's appeal of a declined payment: at most one per payment (the primary key), so of
# N racing appeals exactly one opens a case (0006)
appeals = Table(
    "appeals",
    metadata,
    Column("transaction_id", String(128), ForeignKey("decisions.transaction_id"), primary_key=True),
    Column("case_id", Integer, ForeignKey("cases.id"), nullable=False),
    Column("merchant_id", String(128), nullable=False),
    Column("status", String(16), nullable=False),  # open | overturned | upheld
    Column("note", Text),  # the merchant's, card numbers masked
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("opened_by", String(128), nullable=False),
    Column("decided_at", DateTime(timezone=True)),
    Column("decided_by", String(128)),
    Column("prior", JSON),  # the review case's earlier decision, when the case is reopened
    Index("appeals_merchant", "merchant_id", "status"),
)


def make_engine(
    url: str,
    *,
    synchronous: str = "NORMAL",
    wal_autocheckpoint: int = 1_000,
    cache_mib: int = SQLITE_CACHE_MIB,
    mmap_mib: int = SQLITE_MMAP_MIB,
) -> Engine:
    """Engine with SQLite in WAL mode (readers never block the writer) and foreign keys on.
    `wal_autocheckpoint`: log pages past which a commit checkpoints (serving/store/checkpoint.py
    raises it when a thread of its own checkpoints)."""
    kwargs: dict[str, Any] = {"future": True}
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
        # fail fast when the server is unreachable or a lock is stuck; timestamps in UTC
        kwargs["connect_args"] = {
            "connect_timeout": 5,
            "options": "-c timezone=UTC -c lock_timeout=5000",
        }
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute(f"PRAGMA wal_autocheckpoint={int(wal_autocheckpoint)}")
            # the page cache per connection, in KiB (negative): a payment's decision, facts and
            # key rows land on random pages of their text-keyed indexes, which SQLite's 2 MiB
            # default re-reads from the file as the database grows
            cur.execute(f"PRAGMA cache_size={-1024 * int(cache_mib)}")
            # pages read through a memory map, not copied in by a read() each: the page cache
            # above is emptied whenever another connection (another worker) has committed,
            # and every page a group then touches is read again (0: off)
            cur.execute(f"PRAGMA mmap_size={1024 * 1024 * int(mmap_mib)}")
            cur.close()

    return engine


MIGRATIONS = Path(__file__).parent / "migrations"


@contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    """Worker processes starting together on one SQLite file migrate one at a time (the
    PostgreSQL path takes an advisory lock instead)."""
    path = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
    if not path or path == ":memory:":
        yield
        return
    with open(f"{path}.migrate.lock", "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def create_schema(engine: Engine) -> None:
    """Bring the database to the latest schema with Alembic (idempotent; also for PostgreSQL)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with _sqlite_file_lock(engine), engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # replicas starting together migrate one at a time
            conn.execute(text("SELECT pg_advisory_xact_lock(727274)"))
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
