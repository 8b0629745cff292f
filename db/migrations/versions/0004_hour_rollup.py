"""The report's hour summary: call_hours (db/rollup.py).

`frontdesk report --all` on 1,000,000 calls took 1.4-2 s: every call read, the calendar and
the ring times sorted. The report now summarises each past hour once (lazily, when it runs)
and reads the summary for whole past hours, the calls themselves only for the recent part and
the window's edges. Derived data only: the table starts empty and fills on the next report.

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


# Frozen copy of db.models.OUTCOMES at this revision: one count column each.
_OUTCOMES = ("handled", "message", "missed", "abandoned", "silent", "noisy", "after_hours", "busy",
             "rejected", "interrupted")


def _count(name: str) -> sa.Column:
    return sa.Column(name, sa.Integer(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "call_hours",
        sa.Column("hour", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        *[_count(name) for name in ("calls", "answered", "r1_met", "r1_late", "in_progress")],
        *[_count(name) for name in _OUTCOMES],
        _count("ring_count"),
        sa.Column("ring_sum", sa.BigInteger(), nullable=False),
        sa.Column("ring_max", sa.Integer(), nullable=True),
        sa.Column("ring_hist", sa.Text(), nullable=True),
        _count("lost_count"),
        sa.Column("lost_sum", sa.BigInteger(), nullable=False),
        sa.Column("lost_max", sa.Integer(), nullable=True),
        sa.Column("lost_hist", sa.Text(), nullable=True),
        sa.Column("rings_hist", sa.Text(), nullable=True),
        sa.Column("summarised_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("hour", "direction", name=op.f("pk_call_hours")),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_call_hours_in_progress", "call_hours", ["hour"],
                    sqlite_where=sa.text("in_progress > 0"),
                    postgresql_where=sa.text("in_progress > 0"))


def downgrade() -> None:
    op.drop_index("ix_call_hours_in_progress", table_name="call_hours")
    op.drop_table("call_hours")
