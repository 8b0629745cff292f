"""Applying register ops to a session, and telling a database outage from a bad op.

`apply_op` runs inside the writer's transaction (one SAVEPOINT per op). A `BadOp`, or any error
for which `is_outage` is False, means "this op can never succeed": the writer dead-letters it
and goes on. An outage means "nothing can succeed now": the writer keeps every op and retries.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import CALL_FIELDS, Call, CallEvent
from db.ops import AddEvent, CloseCall, OpenCall, Op, UpdateCall

#: on_close(session, call): runs inside the transaction that closes the call; must be idempotent
#: (a replayed CloseCall runs it again). An exception rolls the CloseCall back with it.
CloseHook = Callable[[Session, Call], None]


class BadOp(ValueError):
    """An op that cannot be applied, whatever the state of the database."""


# SQLSTATE classes that say "the server cannot take writes now", not "this row is wrong":
# 08 connection, 25 invalid transaction state (read-only standby), 28 authorisation,
# 3D no such database, 40 serialisation/deadlock, 53 resources (disk full …), 55 object not
# in prerequisite state (lock not available), 57 operator intervention (shutdown), 58 system,
# XX internal. Plus 42P01/42703: a table or column missing, i.e. the schema is not migrated yet.
_OUTAGE_CLASSES = {"08", "25", "28", "3D", "40", "53", "55", "57", "58", "XX"}
_OUTAGE_STATES = {"42P01", "42703"}


def is_outage(exc: BaseException) -> bool:
    """True when `exc` says the database is unavailable (retry later, keep everything)."""
    if isinstance(exc, BadOp):
        return False
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        state = getattr(exc.orig, "sqlstate", None)
        if state:
            return state[:2] in _OUTAGE_CLASSES or state in _OUTAGE_STATES
        if isinstance(exc.orig, sqlite3.Error):
            # locked, busy, I/O error, disk full, read-only, cannot open, no such table: all
            # OperationalError; a corrupt file is a bare DatabaseError. Constraint, binding and
            # value errors (Integrity/Interface/Programming/DataError) are the op's fault.
            return (isinstance(exc, sa_exc.OperationalError)
                    or type(exc.orig) is sqlite3.DatabaseError)
        return isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError,
                                sa_exc.InternalError))
    return isinstance(exc, (sa_exc.DisconnectionError, sa_exc.TimeoutError, OSError))


def _fields(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - CALL_FIELDS
    if unknown:
        raise BadOp(f"unknown call fields: {', '.join(sorted(unknown))}")
    return fields


class Applier:
    """Applies ops within one transaction; remembers the calls it has looked up by uid."""

    def __init__(self, session: Session, close_hooks: Iterable[CloseHook] = ()) -> None:
        self.session = session
        self.close_hooks = tuple(close_hooks)
        self._calls: dict[str, Call] = {}

    def forget(self) -> None:
        """After a rolled-back SAVEPOINT the cached objects may be stale."""
        self._calls.clear()

    def call(self, uid: str) -> Call | None:
        call = self._calls.get(uid)
        if call is None:
            call = self.session.scalars(select(Call).where(Call.uid == uid)).one_or_none()
            if call is not None:
                self._calls[uid] = call
        return call

    def _existing(self, uid: str) -> Call:
        call = self.call(uid)
        if call is None:
            raise BadOp(f"no call with uid {uid!r}")
        return call

    def apply(self, op: Op) -> None:
        if isinstance(op, AddEvent):
            self._add_event(op)
        elif isinstance(op, OpenCall):
            call = self.call(op.uid)
            if call is None:
                call = Call(uid=op.uid, **_fields(op.fields))
                self.session.add(call)
                self._calls[op.uid] = call
            else:
                self._set(call, op.fields)
        elif isinstance(op, UpdateCall):
            self._set(self._existing(op.uid), op.fields)
        elif isinstance(op, CloseCall):
            call = self._existing(op.uid)
            self._set(call, {"status": "ended", **op.fields})
            self.session.flush()
            for hook in self.close_hooks:
                hook(self.session, call)
        else:
            raise BadOp(f"not a register op: {op!r}")
        self.session.flush()

    def _set(self, call: Call, fields: dict[str, Any]) -> None:
        for key, value in _fields(fields).items():
            setattr(call, key, value)

    def _add_event(self, op: AddEvent) -> None:
        call = self._existing(op.uid)
        if call.id is None:
            self.session.flush()
        exists = self.session.scalar(select(CallEvent.id).where(
            CallEvent.call_pk == call.id, CallEvent.seq == op.seq))
        if exists is None:
            self.session.add(CallEvent(call_pk=call.id, seq=op.seq, at=op.at, t_ms=op.t_ms,
                                       kind=op.kind, data=op.data))
