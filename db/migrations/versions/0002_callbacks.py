"""The callback queue (R11-R15): callback_tasks, callback_attempts, and the calls' links to them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

SQLite: the three new columns of `calls` are added with plain ALTER TABLE ADD COLUMN (the
foreign keys inline, REFERENCES …), never by batch mode's copy-and-move: with foreign_keys=ON
(db.engine) dropping the old `calls` table would cascade into call_events and delete every
event. The downgrade drops them with ALTER TABLE DROP COLUMN (SQLite >= 3.35). These two
foreign keys have no ON DELETE: SQLite does not reflect the options of an inline REFERENCES
(so the schema check could not see them), and tasks are never deleted anyway (they are
cancelled); a task that calls point to cannot be deleted.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the value lists in db.models at the time of this revision.
_TASK_STATES = ("open", "claimed", "done", "failed", "cancelled")
_TASK_OUTCOMES = ("reached", "resolved", "auto-resolved", "no-answer", "busy", "voicemail",
                  "failed", "no-number", "cancelled")
_ATTEMPT_OUTCOMES = ("reached", "resolved", "no-answer", "busy", "voicemail", "failed", "expired",
                     "cancelled")
_ACTIVE = "state IN ('open', 'claimed')"


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _time(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _where(clause: str) -> dict[str, sa.TextClause]:
    return {"sqlite_where": sa.text(clause), "postgresql_where": sa.text(clause)}


def upgrade() -> None:
    op.create_table(
        "callback_tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(128), nullable=False),
        sa.Column("typed_number", sa.String(64), nullable=True),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), server_default="open", nullable=False),
        sa.Column("outcome", sa.String(16), nullable=True),
        _time("due_at", nullable=False),
        _time("deadline_at", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        _time("lease_until"),
        _time("created_at", nullable=False),
        _time("updated_at", nullable=False),
        _time("closed_at"),
        sa.Column("closed_by", sa.String(64), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_tasks")),
        sa.CheckConstraint(_one_of("state", _TASK_STATES), name=op.f("ck_callback_tasks_state")),
        sa.CheckConstraint(_one_of("outcome", _TASK_OUTCOMES),
                           name=op.f("ck_callback_tasks_outcome")),
    )
    op.create_index("uq_callback_tasks_open_number", "callback_tasks", ["number"], unique=True,
                    **_where(_ACTIVE))
    op.create_index("ix_callback_tasks_open_due", "callback_tasks", ["due_at", "id"],
                    **_where("state = 'open'"))
    op.create_index("ix_callback_tasks_claimed_lease", "callback_tasks", ["lease_until"],
                    **_where("state = 'claimed'"))
    op.create_index("ix_callback_tasks_number", "callback_tasks", ["number"])
    op.create_index("ix_callback_tasks_state_due", "callback_tasks", ["state", "due_at"])

    op.create_table(
        "callback_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        _time("started_at", nullable=False),
        _time("ended_at"),
        sa.Column("worker", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("call_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["task_id"], ["callback_tasks.id"], ondelete="CASCADE",
                                name=op.f("fk_callback_attempts_task_id_callback_tasks")),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"], ondelete="SET NULL",
                                name=op.f("fk_callback_attempts_call_id_calls")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_attempts")),
        sa.CheckConstraint(_one_of("outcome", _ATTEMPT_OUTCOMES),
                           name=op.f("ck_callback_attempts_outcome")),
    )
    op.create_index(op.f("ix_callback_attempts_task_id"), "callback_attempts", ["task_id"])

    if op.get_bind().dialect.name == "sqlite":
        for ddl in ("ADD COLUMN callback_task_id INTEGER REFERENCES callback_tasks (id)",
                    "ADD COLUMN callback_number VARCHAR(64)",
                    "ADD COLUMN resolved_task_id INTEGER REFERENCES callback_tasks (id)"):
            op.execute(f"ALTER TABLE calls {ddl}")
    else:
        op.add_column("calls", sa.Column("callback_task_id", sa.Integer(), nullable=True))
        op.add_column("calls", sa.Column("callback_number", sa.String(64), nullable=True))
        op.add_column("calls", sa.Column("resolved_task_id", sa.Integer(), nullable=True))
        op.create_foreign_key(op.f("fk_calls_callback_task_id_callback_tasks"), "calls",
                              "callback_tasks", ["callback_task_id"], ["id"])
        op.create_foreign_key(op.f("fk_calls_resolved_task_id_callback_tasks"), "calls",
                              "callback_tasks", ["resolved_task_id"], ["id"])
    op.create_index(op.f("ix_calls_callback_task_id"), "calls", ["callback_task_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_calls_callback_task_id"), table_name="calls")
    if op.get_bind().dialect.name == "sqlite":
        for column in ("resolved_task_id", "callback_number", "callback_task_id"):
            op.execute(f"ALTER TABLE calls DROP COLUMN {column}")
    else:
        op.drop_constraint(op.f("fk_calls_resolved_task_id_callback_tasks"), "calls",
                           type_="foreignkey")
        op.drop_constraint(op.f("fk_calls_callback_task_id_callback_tasks"), "calls",
                           type_="foreignkey")
        op.drop_column("calls", "resolved_task_id")
        op.drop_column("calls", "callback_number")
        op.drop_column("calls", "callback_task_id")
    op.drop_index(op.f("ix_callback_attempts_task_id"), table_name="callback_attempts")
    op.drop_table("callback_attempts")
    op.drop_index("ix_callback_tasks_state_due", table_name="callback_tasks")
    op.drop_index("ix_callback_tasks_number", table_name="callback_tasks")
    op.drop_index("ix_callback_tasks_claimed_lease", table_name="callback_tasks")
    op.drop_index("ix_callback_tasks_open_due", table_name="callback_tasks")
    op.drop_index("uq_callback_tasks_open_number", table_name="callback_tasks")
    op.drop_table("callback_tasks")
