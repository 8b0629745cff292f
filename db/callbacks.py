"""The callback queue (R11-R15): every unanswered case becomes a task that is called back on
time, never in rest hours, never twice, never forgotten.

Where tasks come from
  * `register_hooks(writer, rules)`: a RegisterWriter close hook. In the SAME transaction that
    closes an inbound call whose outcome is in OPENING_OUTCOMES (missed, abandoned, silent,
    noisy, message, after_hours, busy, interrupted) it opens a task for the caller's number, or
    links the call to the number's open task (R14: one open task per number, also enforced by
    a partial unique index). A handled inbound call from a number with an open task closes it
    (state done, outcome auto-resolved) and the call says so (calls.resolved_task_id).
    Idempotent: a replayed CloseCall finds the call already linked and does nothing.
    A caller with no usable number (anonymous, empty) and no typed number still gets a task,
    number "anonymous", state failed, outcome no-number: nobody can be called, but the case is
    in the listings (R12) until a person cancels it.
  * `add(...)`: a manual task (merged into the number's open task if there is one).
  * `sweep(...)`: the safety net, for calls closed without the hook (or when it failed).

The queue (short transactions; the phone call happens between claim and finish)
  * `claim_next`: the next due task (state open and due_at <= now, or claimed with a lease that
    ran out), oldest due first; PostgreSQL SELECT … FOR UPDATE SKIP LOCKED LIMIT 1, SQLite
    BEGIN IMMEDIATE (make_engine(url, immediate=True)). Nothing is claimed in quiet hours.
    A claim is a lease (default 10 min) and opens a CallbackAttempt row (R13: complete record).
  * `finish`: reached/resolved close the task; no-answer/busy/voicemail/failed record the
    attempt and reschedule with back-off (CallbackRules.retry_at), past the deadline too (the
    task is then overdue and stays open until a person closes it). Only the worker that still
    holds an unexpired claim may finish: anyone else gets NotClaimed and nothing changes.
  * `reschedule`, `renew`, `cancel`.
Session-level functions take a Session and never commit (the caller owns the transaction);
`CallbackQueue` wraps them in short transactions with a bounded retry on "database is locked"
(SQLite) and serialization failures / deadlocks / lock timeouts (PostgreSQL).
"""
from __future__ import annotations

import logging
import random
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Any, TypeVar

from sqlalchemy import Engine, and_, func, or_, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from db.apply import is_outage
from db.callback_rules import CallbackRules
from db.models import CallbackAttempt, CallbackTask, Call, utcnow

log = logging.getLogger("frontdesk.callbacks")

#: R12: call outcomes that open (or join) a callback task.
OPENING_OUTCOMES = ("missed", "abandoned", "silent", "noisy", "message", "after_hours", "busy",
                    "interrupted")
REACHED = ("reached", "resolved")  # the task is done
UNREACHED = ("no-answer", "busy", "voicemail", "failed")  # the task is rescheduled
FINISH_OUTCOMES = REACHED + UNREACHED
ACTIVE_STATES = ("open", "claimed")
CLOSED_STATES = ("done", "failed", "cancelled")
ANONYMOUS = "anonymous"
_NO_NUMBER = {"", "anonymous", "unknown", "unavailable", "private", "restricted", "withheld",
              "invalid", "none", "null"}

TASK_KEYS = ("id", "number", "typed_number", "reason", "state", "outcome", "due_at",
             "deadline_at", "overdue", "attempts", "calls", "claimed_by", "lease_until",
             "created_at", "updated_at", "closed_at", "closed_by", "notes")
ATTEMPT_KEYS = ("id", "task_id", "started_at", "ended_at", "worker", "outcome", "note", "call_id")

T = TypeVar("T")


# --- errors ---------------------------------------------------------------------------------

class CallbackError(Exception):
    """Something a person asked for that cannot be done; the message says why."""


class NoSuchTask(CallbackError):
    pass


class NoSuchCall(CallbackError):
    pass


class TaskClosed(CallbackError):
    """The task is done, failed or cancelled already."""


class NotClaimed(CallbackError):
    """The task is not (or no longer) claimed by this worker."""


class LeaseExpired(NotClaimed):
    """This worker's claim ran out; the task went back to the queue."""


class NotAllowed(CallbackError):
    """A time inside quiet hours or on a day off (R13). `next_allowed` says when it could be."""

    def __init__(self, message: str, next_allowed: datetime) -> None:
        super().__init__(message)
        self.next_allowed = next_allowed


# --- small helpers --------------------------------------------------------------------------

def usable_number(text: str | None) -> str | None:
    """The number to call back, or None when there is none (anonymous, empty, no digits)."""
    value = (text or "").strip()
    if value.lower() in _NO_NUMBER or not any(ch.isdigit() for ch in value):
        return None
    return value


def iso(value: datetime | None, tz: tzinfo) -> str | None:
    """ISO 8601 in `tz` with its offset, to the millisecond (as db.register.call_to_dict)."""
    return None if value is None else value.astimezone(tz).isoformat(timespec="milliseconds")


def _note(task: CallbackTask, at: datetime, who: str, text: str, tz: tzinfo) -> None:
    line = f"{at.astimezone(tz):%Y-%m-%d %H:%M} {who}: {text}".strip()
    task.notes = f"{task.notes}\n{line}" if task.notes else line


def _active_task(session: Session, number: str, *, lock: bool = False) -> CallbackTask | None:
    query = select(CallbackTask).where(CallbackTask.number == number,
                                       CallbackTask.state.in_(ACTIVE_STATES))
    if lock:
        query = query.with_for_update()
    return session.scalars(query).first()


def _in_flight(session: Session, task_id: int) -> list[CallbackAttempt]:
    return list(session.scalars(select(CallbackAttempt).where(
        CallbackAttempt.task_id == task_id, CallbackAttempt.ended_at.is_(None))
        .order_by(CallbackAttempt.id)))


def _end_in_flight(session: Session, task: CallbackTask, now: datetime, outcome: str,
                   note: str) -> None:
    for attempt in _in_flight(session, task.id):
        attempt.ended_at = now
        attempt.outcome = outcome
        attempt.note = f"{attempt.note}\n{note}" if attempt.note else note


def _release(task: CallbackTask) -> None:
    task.claimed_by = None
    task.lease_until = None


def _new_task(session: Session, **values: Any) -> CallbackTask | None:
    """Insert a task; None when another transaction opened one for the number first (R14)."""
    try:
        with session.begin_nested():
            task = CallbackTask(**values)
            session.add(task)
            session.flush()
        return task
    except sa_exc.IntegrityError:
        return None


# --- where tasks come from ------------------------------------------------------------------

def on_call_closed(session: Session, call: Call, rules: CallbackRules,
                   now: datetime | None = None) -> CallbackTask | None:
    """The close hook (R12, R14). Runs in the transaction that closes `call`; idempotent.

    A failure that is not a database outage is logged and swallowed: the register entry must
    never be lost over its callback (R18); `sweep` picks the call up again later. An outage
    propagates, so the writer retries the whole CloseCall.
    """
    try:
        with session.begin_nested():
            return _on_call_closed(session, call, rules, now or utcnow())
    except Exception as exc:
        if is_outage(exc):
            raise
        log.error("callbacks: call %s from %r not linked to a task (%s: %s); sweep retries",
                  call.id, call.caller, type(exc).__name__, exc, exc_info=True)
        return None


def _on_call_closed(session: Session, call: Call, rules: CallbackRules,
                    now: datetime) -> CallbackTask | None:
    if call.direction != "in" or call.status != "ended":
        return None
    if call.callback_task_id is not None or call.resolved_task_id is not None:
        return None  # done before: a replayed CloseCall, or the sweep after the hook
    if call.outcome == "handled":
        return _resolve_by_call(session, call, rules, now)
    if call.outcome in OPENING_OUTCOMES:
        return _open_or_join(session, call, rules, now)
    return None


def _open_or_join(session: Session, call: Call, rules: CallbackRules,
                  now: datetime) -> CallbackTask:
    caller = usable_number(call.caller)
    typed = usable_number(call.callback_number)
    key = caller or typed
    end = call.ended_at or call.started_at
    outcome = call.outcome or "missed"
    if key is None:  # nobody to call: a closed task, visible, until a person cancels it
        task = CallbackTask(number=ANONYMOUS, reason=outcome, state="failed", outcome="no-number",
                            due_at=end, deadline_at=rules.deadline_for(call.started_at),
                            created_at=now, updated_at=now, closed_at=end, closed_by="auto")
        _note(task, end, "auto", f"no number to call back (caller {call.caller!r}, nothing "
              "typed); cancel this task once it has been looked at", rules.tz)
        session.add(task)
        session.flush()
        call.callback_task_id = task.id
        return task
    task = _active_task(session, key, lock=True)
    if task is None:
        task = _new_task(session, number=key, typed_number=typed, reason=outcome, state="open",
                         due_at=rules.first_due(end),
                         deadline_at=rules.deadline_for(call.started_at), attempts=0,
                         created_at=now, updated_at=now)
        if task is not None:
            call.callback_task_id = task.id
            return task
        # another transaction opened the number's task first (unique index): join that one
        task = _active_task(session, key, lock=True)
        if task is None:
            raise RuntimeError(f"no open callback task for {key!r} after a unique conflict")
    _join(task, call, typed, rules, now, end)
    call.callback_task_id = task.id
    return task


def _join(task: CallbackTask, call: Call, typed: str | None, rules: CallbackRules,
          now: datetime, end: datetime) -> None:
    """A further unanswered call on the number's task (R14): the customer is trying to reach
    us, so an open task becomes due again at the first allowed moment after this call."""
    if typed and typed != task.typed_number:
        task.typed_number = typed
    if task.state == "open":
        first = rules.first_due(end)
        if first < task.due_at:
            task.due_at = first
    task.updated_at = now


def _resolve_by_call(session: Session, call: Call, rules: CallbackRules,
                     now: datetime) -> CallbackTask | None:
    number = usable_number(call.caller)
    if number is None:
        return None
    task = _active_task(session, number, lock=True)
    if task is None:
        return None
    end = call.ended_at or now
    _end_in_flight(session, task, end, "cancelled",
                   f"task auto-resolved by inbound call {call.id} while this attempt ran")
    task.state = "done"
    task.outcome = "auto-resolved"
    task.closed_at = end
    task.closed_by = "auto"
    task.updated_at = now
    _release(task)
    _note(task, end, "auto", f"the customer called in (call {call.id}) and was handled (R14)",
          rules.tz)
    call.callback_task_id = task.id
    call.resolved_task_id = task.id
    return task


def register_hooks(writer: Any, rules: CallbackRules) -> Callable[[Session, Call], None]:
    """Make `writer` (a db.writer.RegisterWriter, before start()) open, link and resolve
    callback tasks in the transaction that closes each call."""
    def callback_hook(session: Session, call: Call) -> None:
        on_call_closed(session, call, rules)

    writer.on_close(callback_hook)
    return callback_hook


def add(session: Session, number: str, reason: str, now: datetime, rules: CallbackRules, *,
        note: str | None = None, typed_number: str | None = None,
        by: str = "manual") -> tuple[CallbackTask, bool]:
    """A manual task (R11: e.g. a message taken by hand). Returns (task, created); a number
    that has an open task gets the note on that task instead (R14), and it becomes due now."""
    key = usable_number(number) or usable_number(typed_number)
    if key is None:
        raise CallbackError(f"no number to call back in {number!r}")
    reason = (reason or "manual").strip()[:64] or "manual"
    typed = usable_number(typed_number)
    text = f"{reason}: {note}" if note else reason
    created = False
    task = _active_task(session, key, lock=True)
    if task is None:
        task = _new_task(session, number=key, typed_number=typed, reason=reason, state="open",
                         due_at=rules.next_allowed(now), deadline_at=rules.deadline_for(now),
                         attempts=0, created_at=now, updated_at=now)
        created = task is not None
        if task is None:
            task = _active_task(session, key, lock=True)
            if task is None:
                raise CallbackError(f"could not open a task for {key!r}; try again")
    if not created:
        if typed and typed != task.typed_number:
            task.typed_number = typed
        if task.state == "open":
            task.due_at = min(task.due_at, rules.next_allowed(now))
        task.updated_at = now
    _note(task, now, by, text, rules.tz)
    session.flush()
    return task, created


def sweep(session: Session, rules: CallbackRules, now: datetime) -> int:
    """Give a task to every recent unanswered inbound call that has none (the hook did not run
    or failed), oldest first; calls older than the deadline (3 days) are left alone. A missed
    call followed by a handled one from the same number is linked and auto-resolved (R14).
    Returns how many calls were linked."""
    since = now - rules.deadline
    calls = list(session.scalars(select(Call).where(
        Call.direction == "in", Call.status == "ended", Call.outcome.in_(OPENING_OUTCOMES),
        Call.callback_task_id.is_(None), Call.started_at >= since)
        .order_by(Call.started_at, Call.id)))
    linked = 0
    for call in calls:
        if on_call_closed(session, call, rules, now) is None:
            continue
        linked += 1
        number = usable_number(call.caller)
        if number is None:
            continue
        later = session.scalars(select(Call).where(
            Call.direction == "in", Call.status == "ended", Call.outcome == "handled",
            Call.caller == call.caller, Call.resolved_task_id.is_(None),
            Call.callback_task_id.is_(None), Call.started_at >= call.started_at)
            .order_by(Call.started_at, Call.id).limit(1)).first()
        if later is not None:
            on_call_closed(session, later, rules, now)
    if linked:
        log.warning("callbacks: sweep linked %d call(s) that had no callback task", linked)
    return linked


# --- the queue ------------------------------------------------------------------------------

def claim_next(session: Session, worker: str, now: datetime, rules: CallbackRules, *,
               lease: timedelta | None = None, task_id: int | None = None) -> CallbackTask | None:
    """Claim the next due task for `worker` (None: nothing due, or quiet hours / a day off).

    `task_id`: claim that task instead, if it is open (due or not) or its lease ran out.
    """
    if not worker:
        raise ValueError("a worker name is needed")
    if not rules.is_allowed(now):
        return None  # R13: never disturb the customer in rest hours
    expired = and_(CallbackTask.state == "claimed", CallbackTask.lease_until <= now)
    if task_id is None:
        claimable = or_(and_(CallbackTask.state == "open", CallbackTask.due_at <= now), expired)
    else:
        claimable = and_(CallbackTask.id == task_id,
                         or_(CallbackTask.state == "open", expired))
    task = session.scalars(select(CallbackTask).where(claimable)
                           .order_by(CallbackTask.due_at, CallbackTask.id).limit(1)
                           .with_for_update(skip_locked=True)).first()
    if task is None:
        return None
    if task.state == "claimed":  # the previous worker never reported: record it, take over
        _end_in_flight(session, task, now, "expired",
                       f"lease of {task.claimed_by} ran out at "
                       f"{iso(task.lease_until, rules.tz)}; claimed again by {worker}")
    task.state = "claimed"
    task.claimed_by = worker
    task.lease_until = now + (lease or rules.lease)
    task.attempts = task.attempts + 1
    task.updated_at = now
    session.add(CallbackAttempt(task_id=task.id, started_at=now, worker=worker))
    session.flush()
    return task


def _locked(session: Session, task_id: int) -> CallbackTask:
    task = session.scalars(select(CallbackTask).where(CallbackTask.id == task_id)
                           .with_for_update()).first()
    if task is None:
        raise NoSuchTask(f"no callback task {task_id}")
    return task


def _held(session: Session, task_id: int, worker: str, now: datetime,
          tz: tzinfo) -> CallbackTask:
    """The task, if `worker` holds an unexpired claim on it; otherwise a clear error."""
    task = _locked(session, task_id)
    if task.state in CLOSED_STATES:
        raise TaskClosed(f"task {task_id} is already {task.state}"
                         + (f" ({task.outcome})" if task.outcome else ""))
    if task.state != "claimed":
        raise NotClaimed(f"task {task_id} is not claimed; claim it first "
                         f"(frontdesk callbacks next --id {task_id})")
    if task.claimed_by != worker:
        raise NotClaimed(f"task {task_id} is claimed by {task.claimed_by!r}, not by {worker!r}")
    if task.lease_until is None or task.lease_until <= now:
        raise LeaseExpired(f"your claim on task {task_id} ran out at "
                           f"{iso(task.lease_until, tz)}; it is back in the queue "
                           f"(claim it again: frontdesk callbacks next --id {task_id})")
    return task


def _current_attempt(session: Session, task: CallbackTask, worker: str,
                     now: datetime) -> CallbackAttempt:
    attempt = session.scalars(select(CallbackAttempt).where(
        CallbackAttempt.task_id == task.id, CallbackAttempt.worker == worker,
        CallbackAttempt.ended_at.is_(None)).order_by(CallbackAttempt.id.desc()).limit(1)).first()
    if attempt is None:  # a claim made before attempts were recorded: keep the record whole
        attempt = CallbackAttempt(task_id=task.id, started_at=now, worker=worker)
        session.add(attempt)
    return attempt


def _link_call(session: Session, task: CallbackTask, call_ref: int | str) -> int:
    from db.register import get_call

    call = get_call(session, call_ref)
    if call is None:
        raise NoSuchCall(f"no call {call_ref!r} in the register")
    if call.callback_task_id is None:
        call.callback_task_id = task.id
    return call.id


def finish(session: Session, task_id: int, worker: str, outcome: str, now: datetime,
           rules: CallbackRules, *, note: str | None = None,
           call_ref: int | str | None = None) -> CallbackTask:
    """Report this worker's attempt (R13). reached/resolved: the task is done. no-answer, busy,
    voicemail, failed: rescheduled with back-off out of quiet hours (past the deadline too: the
    task stays open and overdue until a person closes it). `call_ref`: the register row of the
    outbound call (id or uid) when the agent dialled itself."""
    if outcome not in FINISH_OUTCOMES:
        raise CallbackError(f"unknown outcome {outcome!r}; one of {', '.join(FINISH_OUTCOMES)}")
    task = _held(session, task_id, worker, now, rules.tz)
    attempt = _current_attempt(session, task, worker, now)
    attempt.ended_at = now
    attempt.outcome = outcome
    if note:
        attempt.note = note
    if call_ref is not None:
        attempt.call_id = _link_call(session, task, call_ref)
    task.outcome = outcome
    task.updated_at = now
    _release(task)
    if outcome in REACHED:
        task.state = "done"
        task.closed_at = now
        task.closed_by = worker
    else:
        session.flush()
        failures = session.scalar(select(func.count()).select_from(CallbackAttempt).where(
            CallbackAttempt.task_id == task.id, CallbackAttempt.outcome.in_(UNREACHED))) or 1
        task.state = "open"
        task.due_at = rules.retry_at(failures, now)
    if note:
        _note(task, now, worker, f"{outcome}: {note}", rules.tz)
    session.flush()
    return task


def reschedule(session: Session, task_id: int, at: datetime, now: datetime,
               rules: CallbackRules, *, worker: str | None = None, note: str | None = None,
               outcome: str = "reached") -> CallbackTask:
    """Call again at `at` (R13 再约一个时间). Refused inside quiet hours or on a day off
    (NotAllowed says the next allowed time) and in the past. A task `worker` holds a live claim
    on has its attempt closed with `outcome` (default reached: the customer asked for that
    time); an open task, or one whose lease ran out, can be rescheduled by anyone; another
    worker's live claim is refused."""
    if not rules.is_allowed(at):
        nxt = rules.next_allowed(at)
        raise NotAllowed(f"{iso(at, rules.tz)} is inside quiet hours or on a day off (R13); "
                         f"the next allowed time is {iso(nxt, rules.tz)}", nxt)
    if at < now - timedelta(minutes=1):
        raise CallbackError(f"{iso(at, rules.tz)} is in the past")
    if outcome not in FINISH_OUTCOMES:
        raise CallbackError(f"unknown outcome {outcome!r}; one of {', '.join(FINISH_OUTCOMES)}")
    task = _locked(session, task_id)
    if task.state in CLOSED_STATES:
        raise TaskClosed(f"task {task_id} is already {task.state}")
    who = worker or "manual"
    if task.state == "claimed":
        live = task.lease_until is not None and task.lease_until > now
        if live and task.claimed_by != worker:
            raise NotClaimed(f"task {task_id} is claimed by {task.claimed_by!r} until "
                             f"{iso(task.lease_until, rules.tz)}")
        if live:  # this worker's attempt: the customer asked for another time
            attempt = _current_attempt(session, task, worker or who, now)
            attempt.ended_at = now
            attempt.outcome = outcome
            attempt.note = f"rescheduled to {iso(at, rules.tz)}" + (f": {note}" if note else "")
            task.outcome = outcome
        else:  # the lease ran out: the task is back in the queue, as if open
            _end_in_flight(session, task, now, "expired",
                           f"lease of {task.claimed_by} ran out; rescheduled by {who}")
    task.state = "open"
    _release(task)
    task.due_at = at
    task.updated_at = now
    _note(task, now, who, f"rescheduled to {iso(at, rules.tz)}" + (f": {note}" if note else ""),
          rules.tz)
    session.flush()
    return task


def renew(session: Session, task_id: int, worker: str, now: datetime, rules: CallbackRules, *,
          lease: timedelta | None = None) -> CallbackTask:
    """Extend this worker's claim (a long call); NotClaimed / LeaseExpired otherwise."""
    task = _held(session, task_id, worker, now, rules.tz)
    task.lease_until = now + (lease or rules.lease)
    task.updated_at = now
    session.flush()
    return task


def cancel(session: Session, task_id: int, now: datetime, rules: CallbackRules, *, note: str,
           by: str = "manual") -> CallbackTask:
    """A person closes the task without a callback (e.g. the customer came to the desk, or an
    anonymous `failed` task has been looked at). The reason is required."""
    if not note or not note.strip():
        raise CallbackError("say why the task is cancelled (--note)")
    task = _locked(session, task_id)
    if task.state in ("done", "cancelled"):
        raise TaskClosed(f"task {task_id} is already {task.state}")
    _end_in_flight(session, task, now, "cancelled", f"task cancelled by {by}")
    task.state = "cancelled"
    if task.outcome != "no-number":
        task.outcome = "cancelled"
    task.closed_at = now
    task.closed_by = by
    task.updated_at = now
    _release(task)
    _note(task, now, by, f"cancelled: {note.strip()}", rules.tz)
    session.flush()
    return task


# --- reading --------------------------------------------------------------------------------

def get_task(session: Session, task_id: int) -> CallbackTask:
    task = session.get(CallbackTask, task_id)
    if task is None:
        raise NoSuchTask(f"no callback task {task_id}")
    return task


def list_tasks(session: Session, now: datetime, *, states: Sequence[str] | None = None,
               overdue: bool = False, number: str | None = None,
               limit: int | None = None) -> list[CallbackTask]:
    """Tasks by due time. `states` None: open, claimed and failed (what needs a person);
    `overdue`: only open/claimed tasks past their deadline."""
    query = select(CallbackTask)
    states = list(states) if states is not None else ["open", "claimed", "failed"]
    query = query.where(CallbackTask.state.in_(states))
    if overdue:
        query = query.where(CallbackTask.state.in_(ACTIVE_STATES),
                            CallbackTask.deadline_at <= now)
    if number is not None:
        query = query.where(CallbackTask.number == number)
    query = query.order_by(CallbackTask.due_at, CallbackTask.id)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def linked_calls(session: Session, task_ids: Iterable[int]) -> dict[int, list[int]]:
    """task id -> ids of the calls linked to it, oldest first."""
    ids = list(task_ids)
    out: dict[int, list[int]] = {i: [] for i in ids}
    if not ids:
        return out
    for call_id, task_id in session.execute(
            select(Call.id, Call.callback_task_id).where(Call.callback_task_id.in_(ids))
            .order_by(Call.started_at, Call.id)):
        out[task_id].append(call_id)
    return out


def task_calls(session: Session, task: CallbackTask) -> list[Call]:
    """The calls linked to the task, newest first."""
    return list(session.scalars(select(Call).where(Call.callback_task_id == task.id)
                                .order_by(Call.started_at.desc(), Call.id.desc())))


def caller_history(session: Session, task: CallbackTask, limit: int = 20) -> list[Call]:
    """Every call in the register from the task's number (or typed number), newest first."""
    numbers = [n for n in (task.number, task.typed_number) if n and n != ANONYMOUS]
    if not numbers:
        return []
    return list(session.scalars(select(Call).where(Call.caller.in_(numbers))
                                .order_by(Call.started_at.desc(), Call.id.desc()).limit(limit)))


def attempts_of(session: Session, task: CallbackTask) -> list[CallbackAttempt]:
    return list(session.scalars(select(CallbackAttempt).where(CallbackAttempt.task_id == task.id)
                                .order_by(CallbackAttempt.id)))


def task_to_dict(task: CallbackTask, tz: tzinfo, now: datetime,
                 calls: list[int] | None = None) -> dict[str, Any]:
    """The task as plain data (TASK_KEYS); times like db.register.call_to_dict."""
    out: dict[str, Any] = {}
    for key in TASK_KEYS:
        if key == "overdue":
            value: Any = CallbackRules.is_overdue(task.deadline_at, now, task.state)
        elif key == "calls":
            value = list(calls or [])
        else:
            value = getattr(task, key)
        out[key] = iso(value, tz) if isinstance(value, datetime) else value
    return out


def attempt_to_dict(attempt: CallbackAttempt, tz: tzinfo) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ATTEMPT_KEYS:
        value = getattr(attempt, key)
        out[key] = iso(value, tz) if isinstance(value, datetime) else value
    return out


# --- short transactions with a bounded retry --------------------------------------------------

_RETRY_SQLSTATES = {"40001", "40P01", "55P03"}  # serialization, deadlock, lock not available


def is_contention(exc: BaseException) -> bool:
    """A lock conflict worth retrying at once: SQLite busy/locked, PostgreSQL 40001/40P01/55P03."""
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    orig = exc.orig
    if isinstance(orig, sqlite3.OperationalError):
        text = str(orig).lower()
        return "locked" in text or "busy" in text
    return getattr(orig, "sqlstate", None) in _RETRY_SQLSTATES


class CallbackQueue:
    """The queue on an engine (SQLite: make_engine(url, immediate=True)): every method is one
    short transaction, retried on lock contention up to `max_tries` / `max_wait_s`.
    Returned tasks are detached; their columns stay readable."""

    def __init__(self, engine: Engine, rules: CallbackRules, *, max_tries: int = 50,
                 max_wait_s: float = 60.0, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.rules = rules
        self.max_tries = max_tries
        self.max_wait_s = max_wait_s
        self.clock = clock
        self.retries = 0  # lock conflicts retried, for the benchmark and the logs

    def run(self, fn: Callable[[Session, datetime], T], now: datetime | None = None) -> T:
        """fn(session, now) in one transaction, retried on lock contention."""
        deadline = time.monotonic() + self.max_wait_s
        tries = 0
        while True:
            tries += 1
            at = now or self.clock()
            try:
                with Session(self.engine, expire_on_commit=False, autoflush=False) as session:
                    with session.begin():
                        return fn(session, at)
            except sa_exc.DBAPIError as exc:
                if not is_contention(exc) or tries >= self.max_tries \
                        or time.monotonic() >= deadline:
                    raise
                self.retries += 1
                time.sleep(random.uniform(0, min(0.1, 0.002 * 2 ** min(tries, 8))))

    def claim(self, worker: str, *, now: datetime | None = None, lease: timedelta | None = None,
              task_id: int | None = None) -> CallbackTask | None:
        return self.run(lambda s, t: claim_next(s, worker, t, self.rules, lease=lease,
                                                task_id=task_id), now)

    def finish(self, task_id: int, worker: str, outcome: str, *, now: datetime | None = None,
               note: str | None = None, call_ref: int | str | None = None) -> CallbackTask:
        return self.run(lambda s, t: finish(s, task_id, worker, outcome, t, self.rules,
                                            note=note, call_ref=call_ref), now)

    def reschedule(self, task_id: int, at: datetime, *, worker: str | None = None,
                   note: str | None = None, outcome: str = "reached",
                   now: datetime | None = None) -> CallbackTask:
        return self.run(lambda s, t: reschedule(s, task_id, at, t, self.rules, worker=worker,
                                                note=note, outcome=outcome), now)

    def renew(self, task_id: int, worker: str, *, now: datetime | None = None,
              lease: timedelta | None = None) -> CallbackTask:
        return self.run(lambda s, t: renew(s, task_id, worker, t, self.rules, lease=lease), now)

    def add(self, number: str, reason: str = "manual", *, note: str | None = None,
            typed_number: str | None = None, by: str = "manual",
            now: datetime | None = None) -> tuple[CallbackTask, bool]:
        return self.run(lambda s, t: add(s, number, reason, t, self.rules, note=note,
                                         typed_number=typed_number, by=by), now)

    def cancel(self, task_id: int, *, note: str, by: str = "manual",
               now: datetime | None = None) -> CallbackTask:
        return self.run(lambda s, t: cancel(s, task_id, t, self.rules, note=note, by=by), now)

    def sweep(self, *, now: datetime | None = None) -> int:
        return self.run(lambda s, t: sweep(s, self.rules, t), now)
