"""Reading the register (R16, R17): the service layer under the CLI and the agent's start-up.

Functions take a Session and never commit: the caller owns the transaction.
`call_to_dict` / `event_to_dict` are a public interface (JSON and CSV output): their keys are
stable; later work adds keys, never renames or removes one.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Call, CallEvent

CALL_KEYS = ("id", "uid", "call_id", "agent", "caller", "caller_name", "called", "started_at",
             "ringing_at", "ring_ms", "ring_ms_from_invite", "rings", "r1_met", "answered_at",
             "ended_at", "talk_ms", "status", "outcome", "hung_up_first", "end_reason",
             "sip_code", "codec", "category", "notes", "scripts", "dtmf", "recording",
             "recording_sha256", "recording_ms")
EVENT_KEYS = ("seq", "at", "t_ms", "kind", "data")


def list_calls(session: Session, *, since: datetime | None = None, until: datetime | None = None,
               outcome: str | Iterable[str] | None = None, caller: str | None = None,
               limit: int | None = None) -> list[Call]:
    """Calls newest first; `since` <= started_at < `until`; `outcome` one value or several."""
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
    query = query.order_by(Call.started_at.desc(), Call.id.desc())
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


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
