"""review operations: queue, escalation, hold (SLA pause), four eyes, explanation arm per case

Revision ID: 0003
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = (
    ("queue", sa.String(length=64)),
    ("queue_pinned", sa.Boolean()),
    ("escalated_at", sa.DateTime(timezone=True)),
    ("escalated_by", sa.String(length=128)),
    ("escalation_reason", sa.Text()),
    ("hold_since", sa.DateTime(timezone=True)),
    ("hold_reason", sa.Text()),
    ("paused_seconds", sa.Float()),
    ("pending_decision", sa.String(length=16)),
    ("pending_by", sa.String(length=128)),
    ("pending_key_id", sa.String(length=32)),
    ("pending_at", sa.DateTime(timezone=True)),
    ("pending_note", sa.Text()),
    ("confirmed_by", sa.String(length=128)),
    ("explain_arm", sa.String(length=32)),
)


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        for name, type_ in COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=True))
        batch_op.create_index("cases_queue_name", ["queue", "status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index("cases_queue_name")
        for name, _ in reversed(COLUMNS):
            batch_op.drop_column(name)
