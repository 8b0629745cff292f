"""Indexes for the supervisors' reports on a large register (bench/register_scale.py).

`calls list --category X` and `--outcome X` over a date range, and the callback figures of
`report`, scanned whole tables on 1,000,000 calls (0.3-0.6 s); with these they take milliseconds.

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_calls_outcome", table_name="calls")
    op.create_index("ix_calls_outcome_started_at", "calls", ["outcome", "started_at"])
    op.create_index("ix_calls_category_started_at", "calls", ["category", "started_at"])
    op.create_index("ix_callback_tasks_created_at", "callback_tasks", ["created_at"])
    op.create_index("ix_callback_attempts_started_at", "callback_attempts", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_callback_attempts_started_at", table_name="callback_attempts")
    op.drop_index("ix_callback_tasks_created_at", table_name="callback_tasks")
    op.drop_index("ix_calls_category_started_at", table_name="calls")
    op.drop_index("ix_calls_outcome_started_at", table_name="calls")
    op.create_index("ix_calls_outcome", "calls", ["outcome"])
