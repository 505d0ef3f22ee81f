"""policy backtest: what each scored payment was decided on, shadow decisions, backtests

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feature_sets",
        sa.Column("digest", sa.String(length=32), nullable=False),
        sa.Column("names", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_table(
        "payment_facts",
        sa.Column("transaction_id", sa.String(length=128), nullable=False),
        sa.Column("payment_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payment", sa.JSON(), nullable=False),
        sa.Column("feature_set", sa.String(length=32), nullable=True),
        sa.Column("features", sa.LargeBinary(), nullable=True),
        sa.Column("thresholds", sa.JSON(), nullable=True),
        sa.Column("shadow_decision", sa.String(length=16), nullable=True),
        sa.Column("shadow_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["transaction_id"], ["decisions.transaction_id"]),
        sa.PrimaryKeyConstraint("transaction_id"),
    )
    with op.batch_alter_table("payment_facts", schema=None) as batch_op:
        batch_op.create_index("payment_facts_time", ["payment_time"], unique=False)
        batch_op.create_index("payment_facts_shadow", ["shadow_id"], unique=False)
    op.create_table(
        "policy_backtests",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("policy_digest", sa.String(length=64), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("policy_backtests", schema=None) as batch_op:
        batch_op.create_index("policy_backtests_digest", ["policy_digest", "created_at"])


def downgrade() -> None:
    op.drop_table("policy_backtests")
    op.drop_table("payment_facts")
    op.drop_table("feature_sets")
