"""merchant view: a merchant's payments by time

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # GET /merchants/{id}/payments and /summary read one merchant's decisions, newest first
    op.create_index("decisions_merchant", "decisions", ["merchant_id", "created_at"])


def downgrade() -> None:
    op.drop_index("decisions_merchant", table_name="decisions")
