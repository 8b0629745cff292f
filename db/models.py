"""The telephone reception register (电话接待记录本) as SQLAlchemy 2.0 typed models.

One `Call` row per call, answered or not (R16), holding what R17 asks for; its `CallEvent` rows
are the prompts, scripts, DTMF and line changes with their times. The schema is built only by
the Alembic migrations in db/migrations; `Base.metadata` is what they are checked against.

Times: every DateTime column is `UTCDateTime`: it refuses naive datetimes, stores UTC and reads
back timezone-aware UTC on SQLite (which has no time zones) and PostgreSQL (timestamptz) alike.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (JSON, BigInteger, Boolean, CheckConstraint, DateTime, ForeignKey, Index,
                        Integer, MetaData, String, Text, UniqueConstraint, text)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

STATUSES = ("ringing", "answered", "ended")
OUTCOMES = ("handled", "message", "missed", "abandoned", "silent", "noisy", "after_hours", "busy",
            "rejected", "interrupted")
HUNG_UP_FIRST = ("caller", "agent", "system")
# R16: consultation, complaint, repair, looking for someone, wrong number, other
CATEGORIES = ("咨询", "投诉", "报修", "找人", "找错", "其他")
DIRECTIONS = ("in", "out")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend; a naive datetime is refused (ValueError)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}: register times must be aware")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Call(Base):
    """One entry of the register (R16, R17); the agent names it by `uid` (uuid4 hex), not id."""

    __tablename__ = "calls"
    __table_args__ = (
        Index("ix_calls_started_at", "started_at"),
        Index("ix_calls_caller_started_at", "caller", "started_at"),
        Index("ix_calls_outcome_started_at", "outcome", "started_at"),
        Index("ix_calls_category_started_at", "category", "started_at"),
        CheckConstraint(_one_of("status", STATUSES), name="status"),
        CheckConstraint(_one_of("outcome", OUTCOMES), name="outcome"),
        CheckConstraint(_one_of("hung_up_first", HUNG_UP_FIRST), name="hung_up_first"),
        CheckConstraint(_one_of("category", CATEGORIES), name="category"),
        CheckConstraint(_one_of("direction", DIRECTIONS), name="direction"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(36), unique=True)
    call_id: Mapped[str] = mapped_column(String(255), index=True)  # SIP Call-ID
    agent: Mapped[str] = mapped_column(String(64))  # agent instance; several may share PostgreSQL
    direction: Mapped[str] = mapped_column(String(8), default="in", server_default="in")
    caller: Mapped[str] = mapped_column(String(128))
    caller_name: Mapped[str | None] = mapped_column(String(128))
    called: Mapped[str] = mapped_column(String(128))
    remote_addr: Mapped[str | None] = mapped_column(String(64))

    started_at: Mapped[datetime] = mapped_column(UTCDateTime)  # INVITE arrival
    ringing_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # 180 sent
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # R1: 180 sent -> answer (-> end for an unanswered call), rings counted, rule met or not
    ring_ms: Mapped[int | None] = mapped_column(Integer)
    ring_ms_from_invite: Mapped[int | None] = mapped_column(Integer)
    rings: Mapped[int | None] = mapped_column(Integer)
    r1_met: Mapped[bool | None] = mapped_column(Boolean)  # None: never answered

    talk_ms: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="ringing", server_default="ringing")
    outcome: Mapped[str | None] = mapped_column(String(16))
    hung_up_first: Mapped[str | None] = mapped_column(String(8))  # R3
    end_reason: Mapped[str | None] = mapped_column(String(32))
    sip_code: Mapped[int | None] = mapped_column(Integer)  # final response: 200, 487, 486 …

    codec: Mapped[str | None] = mapped_column(String(8))
    category: Mapped[str | None] = mapped_column(String(8))  # R16
    notes: Mapped[str | None] = mapped_column(Text)
    scripts: Mapped[list[str] | None] = mapped_column(JSON)  # R6-R10 scripts applied
    dtmf: Mapped[str | None] = mapped_column(String(64))  # R11

    recording: Mapped[str | None] = mapped_column(String(512))
    recording_sha256: Mapped[str | None] = mapped_column(String(64))
    recording_ms: Mapped[int | None] = mapped_column(Integer)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    # The callback queue (R11-R14, db/callbacks.py): the task this call belongs to (an unanswered
    # call that opened or joined it, the inbound call that resolved it, an outbound callback),
    # the number the caller typed on the keypad to be called back on (R11; the agent fills it),
    # and, on a handled call that closed an open task automatically (R14), that task.
    # (no ON DELETE: tasks are never deleted, a task that calls point to cannot be)
    callback_task_id: Mapped[int | None] = mapped_column(ForeignKey("callback_tasks.id"),
                                                         index=True)
    callback_number: Mapped[str | None] = mapped_column(String(64))
    resolved_task_id: Mapped[int | None] = mapped_column(ForeignKey("callback_tasks.id"))

    events: Mapped[list[CallEvent]] = relationship(
        back_populates="call", order_by="CallEvent.seq", cascade="all, delete-orphan",
        passive_deletes=True)

    def __repr__(self) -> str:
        return f"<Call {self.id} uid={self.uid} caller={self.caller!r} status={self.status}>"


class CallEvent(Base):
    """Something that happened during a call, in order (`seq` 1..n per call)."""

    __tablename__ = "call_events"
    __table_args__ = (UniqueConstraint("call_pk", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_pk: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime)  # UTC wall time
    t_ms: Mapped[int] = mapped_column(Integer)  # ms since the INVITE arrived (monotonic clock)
    kind: Mapped[str] = mapped_column(String(32))  # ringing, answered, prompt, script, dtmf …
    data: Mapped[Any | None] = mapped_column(JSON)

    call: Mapped[Call] = relationship(back_populates="events")

    def __repr__(self) -> str:
        return f"<CallEvent call={self.call_pk} #{self.seq} {self.kind} +{self.t_ms}ms>"


# --- the callback queue (R11-R15) ------------------------------------------------------------

TASK_STATES = ("open", "claimed", "done", "failed", "cancelled")
#: reached / resolved: a person spoke to the customer; auto-resolved: the customer called in and
#: the call was handled (R14); no-answer, busy, voicemail, failed: the latest attempt while the
#: task is still open; no-number: nobody to call (anonymous caller, state failed);
#: cancelled: closed by a person without a callback.
TASK_OUTCOMES = ("reached", "resolved", "auto-resolved", "no-answer", "busy", "voicemail",
                 "failed", "no-number", "cancelled")
#: expired: the worker's lease ran out before it reported (the task went back to the queue);
#: cancelled: the task was closed (auto-resolved, cancelled) while this attempt was in flight.
ATTEMPT_OUTCOMES = ("reached", "resolved", "no-answer", "busy", "voicemail", "failed", "expired",
                    "cancelled")
_ACTIVE = "state IN ('open', 'claimed')"


class CallbackTask(Base):
    """One case to call back (R12): every unanswered call from a number joins the one open task
    of that number (R14); done on time, never in rest hours, never twice, never forgotten (R13).
    """

    __tablename__ = "callback_tasks"
    __table_args__ = (
        CheckConstraint(_one_of("state", TASK_STATES), name="state"),
        CheckConstraint(_one_of("outcome", TASK_OUTCOMES), name="outcome"),
        # R14: one open task per number, enforced by the database on both backends
        Index("uq_callback_tasks_open_number", "number", unique=True,
              sqlite_where=text(_ACTIVE), postgresql_where=text(_ACTIVE)),
        # the queue: what is due, and which leases ran out
        Index("ix_callback_tasks_open_due", "due_at", "id",
              sqlite_where=text("state = 'open'"), postgresql_where=text("state = 'open'")),
        Index("ix_callback_tasks_claimed_lease", "lease_until",
              sqlite_where=text("state = 'claimed'"), postgresql_where=text("state = 'claimed'")),
        Index("ix_callback_tasks_number", "number"),
        Index("ix_callback_tasks_state_due", "state", "due_at"),
        Index("ix_callback_tasks_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(128))  # the caller's number ("anonymous": none)
    typed_number: Mapped[str | None] = mapped_column(String(64))  # R11: typed on the keypad
    reason: Mapped[str] = mapped_column(String(64))  # the outcome that opened it, or manual
    state: Mapped[str] = mapped_column(String(16), default="open", server_default="open")
    outcome: Mapped[str | None] = mapped_column(String(16))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[str | None] = mapped_column(String(64))  # worker, "auto", a person
    notes: Mapped[str | None] = mapped_column(Text)

    attempt_rows: Mapped[list[CallbackAttempt]] = relationship(
        back_populates="task", order_by="CallbackAttempt.id", cascade="all, delete-orphan",
        passive_deletes=True)

    def __repr__(self) -> str:
        return f"<CallbackTask {self.id} {self.number!r} {self.state} due={self.due_at}>"


class CallbackAttempt(Base):
    """One try at calling the customer back (R13: the callback record is complete)."""

    __tablename__ = "callback_attempts"
    __table_args__ = (CheckConstraint(_one_of("outcome", ATTEMPT_OUTCOMES), name="outcome"),
                      Index("ix_callback_attempts_started_at", "started_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("callback_tasks.id", ondelete="CASCADE"),
                                         index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)  # when it was claimed
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # None: in flight
    worker: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    # the agent's own outbound call in the register, when it dialled itself
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id", ondelete="SET NULL"))

    task: Mapped[CallbackTask] = relationship(back_populates="attempt_rows")

    def __repr__(self) -> str:
        return f"<CallbackAttempt {self.id} task={self.task_id} {self.worker} {self.outcome}>"


# --- the report's hour summary (db/rollup.py) ------------------------------------------------

class CallHour(Base):
    """The calls of one past UTC hour, summarised for `frontdesk report` (db/rollup.py): one
    row per hour and direction with the sums the report's figures and its by-day / by-hour
    tables need: counts (one column per outcome), R1, and the ring times as count / sum / max
    and as 100 ms histograms. Written only by rollup.refresh, for hours that ended more than
    rollup.SETTLE (48 h) ago; never by the agent. Derived data: deleting rows (rollup.forget)
    only makes the next refresh redo them. A new outcome in OUTCOMES needs its column here (and
    a migration, as the calls' CHECK does): tests/unit/test_rollup.py checks.
    """

    __tablename__ = "call_hours"
    __table_args__ = (
        # the hours whose open calls may still end (rollup.refresh looks at them again)
        Index("ix_call_hours_in_progress", "hour", sqlite_where=text("in_progress > 0"),
              postgresql_where=text("in_progress > 0")),
        {"sqlite_with_rowid": False},
    )

    # hours since 1970-01-01T00:00Z of the calls' started_at (an integer: groups and shifts to
    # the desk's offset cheaply); rollup.hour_start(hour) is the UTC datetime
    hour: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    direction: Mapped[str] = mapped_column(String(8), primary_key=True)
    calls: Mapped[int] = mapped_column(Integer)
    answered: Mapped[int] = mapped_column(Integer)  # answered_at set
    r1_met: Mapped[int] = mapped_column(Integer)  # r1_met true
    r1_late: Mapped[int] = mapped_column(Integer)  # r1_met false (answered late: R1 broken)
    in_progress: Mapped[int] = mapped_column(Integer)  # status not ended when summarised
    # calls by outcome (OUTCOMES; calls without an outcome yet are in `calls` only)
    handled: Mapped[int] = mapped_column(Integer)
    message: Mapped[int] = mapped_column(Integer)
    missed: Mapped[int] = mapped_column(Integer)
    abandoned: Mapped[int] = mapped_column(Integer)
    silent: Mapped[int] = mapped_column(Integer)
    noisy: Mapped[int] = mapped_column(Integer)
    after_hours: Mapped[int] = mapped_column(Integer)
    busy: Mapped[int] = mapped_column(Integer)
    rejected: Mapped[int] = mapped_column(Integer)
    interrupted: Mapped[int] = mapped_column(Integer)
    # ring to answer (ring_ms of the answered calls): how many, total and max ms, histogram
    # "bucket,count,bucket,count…" of ring_ms // rollup.BUCKET_MS (100 ms)
    ring_count: Mapped[int] = mapped_column(Integer)
    ring_sum: Mapped[int] = mapped_column(BigInteger)
    ring_max: Mapped[int | None] = mapped_column(Integer)
    ring_hist: Mapped[str | None] = mapped_column(Text)
    # time to abandon (ring_ms of the missed and abandoned calls), the same way
    lost_count: Mapped[int] = mapped_column(Integer)
    lost_sum: Mapped[int] = mapped_column(BigInteger)
    lost_max: Mapped[int | None] = mapped_column(Integer)
    lost_hist: Mapped[str | None] = mapped_column(Text)
    # R1 for the calls never answered: "rings,count,…" of those with r1_met not false (the
    # report counts rings > answer.max_rings)
    rings_hist: Mapped[str | None] = mapped_column(Text)
    summarised_at: Mapped[datetime] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<CallHour {self.hour} {self.direction} calls={self.calls}>"


#: Columns an op may set on a call (everything but the keys and the bookkeeping times).
CALL_FIELDS = frozenset(c.key for c in Call.__table__.columns) - {"id", "uid", "created_at",
                                                                 "updated_at"}
