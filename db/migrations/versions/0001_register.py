"""The telephone reception register: calls and call_events (R16, R17).

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the value lists in db.models at the time of this revision: a migration
# never imports the models, which keep changing after it.
_STATUSES = ("ringing", "answered", "ended")
_OUTCOMES = ("handled", "message", "missed", "abandoned", "silent", "noisy", "after_hours", "busy",
             "rejected", "interrupted")
_HUNG_UP_FIRST = ("caller", "agent", "system")
_CATEGORIES = ("咨询", "投诉", "报修", "找人", "找错", "其他")
_DIRECTIONS = ("in", "out")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _time(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.String(36), nullable=False),
        sa.Column("call_id", sa.String(255), nullable=False),
        sa.Column("agent", sa.String(64), nullable=False),
        sa.Column("direction", sa.String(8), server_default="in", nullable=False),
        sa.Column("caller", sa.String(128), nullable=False),
        sa.Column("caller_name", sa.String(128), nullable=True),
        sa.Column("called", sa.String(128), nullable=False),
        sa.Column("remote_addr", sa.String(64), nullable=True),
        _time("started_at", nullable=False),
        _time("ringing_at"),
        _time("answered_at"),
        _time("ended_at"),
        sa.Column("ring_ms", sa.Integer(), nullable=True),
        sa.Column("ring_ms_from_invite", sa.Integer(), nullable=True),
        sa.Column("rings", sa.Integer(), nullable=True),
        sa.Column("r1_met", sa.Boolean(), nullable=True),
        sa.Column("talk_ms", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), server_default="ringing", nullable=False),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("hung_up_first", sa.String(8), nullable=True),
        sa.Column("end_reason", sa.String(32), nullable=True),
        sa.Column("sip_code", sa.Integer(), nullable=True),
        sa.Column("codec", sa.String(8), nullable=True),
        sa.Column("category", sa.String(8), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("scripts", sa.JSON(), nullable=True),
        sa.Column("dtmf", sa.String(64), nullable=True),
        sa.Column("recording", sa.String(512), nullable=True),
        sa.Column("recording_sha256", sa.String(64), nullable=True),
        sa.Column("recording_ms", sa.Integer(), nullable=True),
        _time("created_at", nullable=False),
        _time("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calls")),
        sa.UniqueConstraint("uid", name=op.f("uq_calls_uid")),
        sa.CheckConstraint(_one_of("status", _STATUSES), name=op.f("ck_calls_status")),
        sa.CheckConstraint(_one_of("outcome", _OUTCOMES), name=op.f("ck_calls_outcome")),
        sa.CheckConstraint(_one_of("hung_up_first", _HUNG_UP_FIRST),
                           name=op.f("ck_calls_hung_up_first")),
        sa.CheckConstraint(_one_of("category", _CATEGORIES), name=op.f("ck_calls_category")),
        sa.CheckConstraint(_one_of("direction", _DIRECTIONS), name=op.f("ck_calls_direction")),
    )
    op.create_index(op.f("ix_calls_call_id"), "calls", ["call_id"])
    op.create_index("ix_calls_started_at", "calls", ["started_at"])
    op.create_index("ix_calls_caller_started_at", "calls", ["caller", "started_at"])
    op.create_index("ix_calls_outcome", "calls", ["outcome"])

    op.create_table(
        "call_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_pk", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        _time("at", nullable=False),
        sa.Column("t_ms", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["call_pk"], ["calls.id"], ondelete="CASCADE",
                                name=op.f("fk_call_events_call_pk_calls")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_events")),
        sa.UniqueConstraint("call_pk", "seq", name=op.f("uq_call_events_call_pk_seq")),
    )
    op.create_index(op.f("ix_call_events_call_pk"), "call_events", ["call_pk"])


def downgrade() -> None:
    op.drop_index(op.f("ix_call_events_call_pk"), table_name="call_events")
    op.drop_table("call_events")
    op.drop_index("ix_calls_outcome", table_name="calls")
    op.drop_index("ix_calls_caller_started_at", table_name="calls")
    op.drop_index("ix_calls_started_at", table_name="calls")
    op.drop_index(op.f("ix_calls_call_id"), table_name="calls")
    op.drop_table("calls")
