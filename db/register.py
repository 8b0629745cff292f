"""Reading the register (R16, R17): the service layer under the CLI and the agent's start-up.

Functions take a Session and never commit: the caller owns the transaction.
`call_to_dict` / `event_to_dict` are a public interface (JSON and CSV output): their keys are
stable; later work adds keys, never renames or removes one.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import Select, and_, func, literal_column, or_, select
from sqlalchemy.orm import Session

from db.models import CATEGORIES, OUTCOMES, Call, CallEvent

CALL_KEYS = ("id", "uid", "call_id", "agent", "caller", "caller_name", "called", "started_at",
             "ringing_at", "ring_ms", "ring_ms_from_invite", "rings", "r1_met", "answered_at",
             "ended_at", "talk_ms", "status", "outcome", "hung_up_first", "end_reason",
             "sip_code", "codec", "category", "notes", "scripts", "dtmf", "recording",
             "recording_sha256", "recording_ms",
             # the callback queue (db/callbacks.py, R11-R14): the call's task, the number typed
             # on the keypad, and the task this handled call closed automatically
             "callback_task_id", "callback_number", "resolved_task_id",
             # "in" for calls to the desk, "out" for the callbacks the agent placed itself
             "direction")
EVENT_KEYS = ("seq", "at", "t_ms", "kind", "data")

RARE_OUTCOME = 20_000  # list_calls: up to this many calls, an outcome is read via its index

# R16: the categories in English as well (the register stores the Chinese word)
CATEGORY_ALIASES = {"consultation": "咨询", "complaint": "投诉", "repair": "报修",
                    "looking-for-someone": "找人", "wrong-number": "找错", "other": "其他"}


class UnknownValue(ValueError):
    """A category or outcome the register does not know; the message lists the known ones."""


def category_of(text: str) -> str:
    """The register's category (R16) for a Chinese word or its English alias."""
    value = text.strip()
    alias = CATEGORY_ALIASES.get(value.lower().replace("_", "-").replace(" ", "-"))
    if value in CATEGORIES or alias:
        return value if value in CATEGORIES else alias  # type: ignore[return-value]
    known = ", ".join(f"{zh} ({en})" for en, zh in CATEGORY_ALIASES.items())
    raise UnknownValue(f"unknown category {text!r}; one of {known}")


def outcomes_of(text: str | Iterable[str]) -> list[str]:
    """Outcomes from "missed,abandoned" (or a list), each checked against the register's list."""
    items = text.split(",") if isinstance(text, str) else list(text)
    values = [v.strip() for v in items if v.strip()]
    bad = [v for v in values if v not in OUTCOMES]
    if bad:
        raise UnknownValue(f"unknown outcome {bad[0]!r}; one of {', '.join(OUTCOMES)}")
    return values


def r1_missed_clause(max_rings: int = 3) -> Any:
    """Calls on which R1 was broken: answered after more than `max_rings` rings, or never
    answered while the caller heard more than `max_rings` rings."""
    return or_(Call.r1_met.is_(False),
               and_(Call.answered_at.is_(None), Call.rings > max_rings))


def calls_query(*, since: datetime | None = None, until: datetime | None = None,
                outcome: str | Iterable[str] | None = None, caller: str | None = None,
                category: str | None = None, r1_missed: bool = False,
                max_rings: int = 3) -> Select[tuple[Call]]:
    """The SELECT behind list_calls/iter_calls (no order, no limit)."""
    query = select(Call)
    if since is not None:
        query = query.where(Call.started_at >= since)
    if until is not None:
        query = query.where(Call.started_at < until)
    if outcome is not None:
        outcomes = [outcome] if isinstance(outcome, str) else list(outcome)
        query = query.where(Call.outcome.in_(outcomes))
    if caller is not None:
        query = query.where(Call.caller == caller)
    if category is not None:
        query = query.where(Call.category == category)
    if r1_missed:
        query = query.where(r1_missed_clause(max_rings))
    return query


def list_calls(session: Session, *, since: datetime | None = None, until: datetime | None = None,
               outcome: str | Iterable[str] | None = None, caller: str | None = None,
               limit: int | None = None, category: str | None = None, r1_missed: bool = False,
               max_rings: int = 3) -> list[Call]:
    """Calls newest first; `since` <= started_at < `until`; `outcome` one value or several;
    `category` one of CATEGORIES; `r1_missed` only calls that broke R1 (r1_missed_clause)."""
    query = calls_query(since=since, until=until, outcome=outcome, caller=caller,
                        category=category, r1_missed=r1_missed, max_rings=max_rings)
    newest: Any = Call.started_at
    if outcome is not None and caller is None and since is None and until is None:
        # Walking started_at backwards finds common outcomes at once, but reads the whole
        # table for a rare one; the outcome index counts them cheaply: when there are few,
        # read them through it and sort them (`|| ''` keeps the planner off started_at).
        outcomes = [outcome] if isinstance(outcome, str) else list(outcome)
        if (session.scalar(select(func.count()).where(Call.outcome.in_(outcomes)))
                or 0) <= RARE_OUTCOME:
            newest = Call.started_at.op("||")(literal_column("''"))
    query = query.order_by(newest.desc(), Call.id.desc())
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def iter_calls(session: Session, *, since: datetime | None = None,
               until: datetime | None = None, batch: int = 1000, **filters: Any) -> Iterator[Call]:
    """Calls oldest first (the order of the paper register), fetched `batch` rows at a time;
    filters as list_calls."""
    query = calls_query(since=since, until=until, **filters).order_by(Call.started_at, Call.id)
    yield from session.scalars(query.execution_options(yield_per=batch))


def note_call(session: Session, call: Call, category: str | None = None,
              text: str | None = None, *, append: bool = False) -> None:
    """R16: classify the call and write what it was about. `category` in Chinese or English;
    `text` replaces the notes (or is added on a new line with `append`). The caller commits."""
    if category is not None:
        call.category = category_of(category)
    if text is not None:
        call.notes = f"{call.notes}\n{text}" if append and call.notes else text


def get_call(session: Session, call_ref: int | str) -> Call | None:
    """The call named by its id (int, or a string of digits), its uid, or its SIP Call-ID.

    A string is tried as a uid first, then as an id if it is all digits, then as a SIP Call-ID
    (the newest call with it: forked or retried INVITEs may share one).
    """
    if isinstance(call_ref, int):
        return session.get(Call, call_ref)
    ref = call_ref.strip()
    call = session.scalars(select(Call).where(Call.uid == ref)).one_or_none()
    if call is None and ref.isdigit():
        call = session.get(Call, int(ref))
    if call is None:
        call = session.scalars(select(Call).where(Call.call_id == ref)
                               .order_by(Call.started_at.desc(), Call.id.desc()).limit(1)).first()
    return call


def call_events(session: Session, call: Call) -> list[CallEvent]:
    """The call's events in order (seq)."""
    return list(session.scalars(select(CallEvent).where(CallEvent.call_pk == call.id)
                                .order_by(CallEvent.seq)))


def _time(value: datetime | None, tz: tzinfo) -> str | None:
    return None if value is None else value.astimezone(tz).isoformat(timespec="milliseconds")


def call_to_dict(call: Call, tz: tzinfo) -> dict[str, Any]:
    """The call as plain data (CALL_KEYS); times ISO 8601 in `tz` with their offset, to the ms."""
    out: dict[str, Any] = {}
    for key in CALL_KEYS:
        value = getattr(call, key)
        out[key] = _time(value, tz) if isinstance(value, datetime) else value
    if out["scripts"] is not None:
        out["scripts"] = list(out["scripts"])
    return out


def event_to_dict(event: CallEvent, tz: tzinfo) -> dict[str, Any]:
    """The event as plain data (EVENT_KEYS), times like call_to_dict."""
    return {"seq": event.seq, "at": _time(event.at, tz), "t_ms": event.t_ms, "kind": event.kind,
            "data": event.data}


def unfinished_calls(session: Session, agent: str) -> list[Call]:
    """This agent's calls that never ended (left by a crash), oldest first."""
    return list(session.scalars(select(Call).where(Call.agent == agent, Call.status != "ended")
                                .order_by(Call.started_at, Call.id)))


def mark_interrupted(session: Session, call: Call, ended_at: datetime) -> None:
    """Close a call a crash left open: outcome "interrupted", ended by the system (R16: the row
    says what happened, it is never just missing). The caller commits."""
    call.status = "ended"
    call.outcome = "interrupted"
    call.hung_up_first = "system"
    call.end_reason = "crash"
    call.ended_at = ended_at
    if call.answered_at is not None:
        call.talk_ms = max(0, round((ended_at - call.answered_at).total_seconds() * 1000))


# --- the callback task of a call (the queue itself is db/callbacks.py) -------------------------

def _task_model() -> Any:
    from db import models
    return getattr(models, "CallbackTask", None)


def callback_task(session: Session, call: Call) -> Any | None:
    """The callback task this call opened or joined (R12, R14), or None."""
    model = _task_model()
    task_id = getattr(call, "callback_task_id", None)
    if model is None or task_id is None:
        return None
    return session.get(model, task_id)


def register_rows(session: Session, *, since: datetime | None = None,
                  until: datetime | None = None, batch: int = 1000,
                  **filters: Any) -> Iterator[tuple[Call, str | None, str | None]]:
    """(call, callback task state, task outcome), oldest first: the paper register's lines."""
    model = _task_model()
    query = calls_query(since=since, until=until, **filters).order_by(Call.started_at, Call.id)
    if model is None:
        for call in session.scalars(query.execution_options(yield_per=batch)):
            yield call, None, None
        return
    query = (query.add_columns(model.state, model.outcome)
             .outerjoin(model, model.id == Call.callback_task_id))
    for call, state, outcome in session.execute(query.execution_options(yield_per=batch)):
        yield call, state, outcome
