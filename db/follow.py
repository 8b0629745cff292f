"""Following the register live: new call events (and new callback tasks) as they are committed.

The feed polls by increasing primary key (`call_events.id > last`), which every backend answers
from the primary key alone, so a poll costs the same on an empty register and on a huge one,
and any number of followers can poll side by side (readers never block the writer in WAL mode
or on PostgreSQL). Ids are assigned in commit order, so nothing committed after a poll is
skipped by the next one.

    follower = Follower(caller="1001")
    follower.start(session)            # from now on (or from `since`)
    while True:
        for item in follower.poll(session): ...
        time.sleep(0.2)

`since` finds its first event by bisecting the primary key on `at` (events are appended in the
order they happened, give or take the writer's ~50 ms batches), so it needs no index on `at`.
`outcomes` can only be decided when a call has ended: the events of a call in progress are held
back and shown together once the call has ended with one of those outcomes.
Functions take a Session and never commit.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Call, CallEvent

MAX_HELD_PER_CALL = 2000  # a call held for --outcome keeps at most this many events


@dataclass(frozen=True)
class FeedItem:
    """One line of the feed: a call event, or a callback task that was queued."""

    id: int  # call_events.id, or callback_tasks.id for kind "callback_queued"
    at: datetime
    kind: str
    caller: str | None
    data: Any = None
    call: int | None = None  # calls.id
    uid: str | None = None
    seq: int | None = None
    t_ms: int | None = None
    source: str = "event"  # "event" or "callback"

    def to_dict(self, tz: Any) -> dict[str, Any]:
        """Plain data for JSON lines: the event_to_dict keys plus id, call, uid, caller, source."""
        data = self.data
        if self.source == "callback" and isinstance(data, dict):
            data = {k: _local(v, tz) for k, v in data.items()}
        return {"id": self.id, "source": self.source, "call": self.call, "uid": self.uid,
                "caller": self.caller, "seq": self.seq, "at": _local(self.at, tz),
                "t_ms": self.t_ms, "kind": self.kind, "data": data}


def _task_model() -> Any:
    from db import models
    return getattr(models, "CallbackTask", None)  # the callback queue, once it exists


def first_id_since(session: Session, id_column: Any, at_column: Any, since: datetime) -> int:
    """The smallest id whose row has `at` >= since (bisecting the primary key), or max id + 1."""
    # min and max asked apart: alone, each is one step down the primary key
    low = session.scalar(select(func.min(id_column)))
    high = session.scalar(select(func.max(id_column)))
    if low is None or high is None:
        return 1
    high += 1  # the answer lies in [low, high]; max id + 1 means "nothing at or after since"
    while low < high:
        mid = (low + high) // 2
        found, at = session.execute(select(id_column, at_column).where(id_column >= mid)
                                    .order_by(id_column).limit(1)).one()
        at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
        if at >= since:
            high = mid  # ids in [mid, found) do not exist
        else:
            low = found + 1
    first = session.scalar(select(func.min(id_column)).where(id_column >= low))
    return high if first is None else first


@dataclass
class Follower:
    """The state of one follower: where it is in call_events and callback_tasks, what it holds."""

    since: datetime | None = None
    caller: str | None = None
    outcomes: Iterable[str] | None = None
    batch: int = 500
    last_event: int = 0
    last_task: int = 0
    _held: dict[int, list[FeedItem]] = field(default_factory=dict)
    _full: bool = False

    def __post_init__(self) -> None:
        self.outcomes = None if self.outcomes is None else frozenset(self.outcomes)

    def start(self, session: Session) -> None:
        """Position the follower: at `since`, or after everything committed so far."""
        task = _task_model()
        if self.since is not None:
            self.last_event = first_id_since(session, CallEvent.id, CallEvent.at, self.since) - 1
            if task is not None:
                self.last_task = first_id_since(session, task.id, task.created_at, self.since) - 1
            return
        self.last_event = session.scalar(select(func.max(CallEvent.id))) or 0
        if task is not None:
            self.last_task = session.scalar(select(func.max(task.id))) or 0

    def poll(self, session: Session) -> list[FeedItem]:
        """Everything committed since the last poll (at most `batch` events; call again while
        `behind` is True), oldest first."""
        events = self._events(session)
        if self._held:
            events += self._released(session)
        # call events in the order they were written (a call's own events in seq order, even
        # where `at` is not monotonic: the first recorded frame's tick can be due a few ms before
        # the ACK was read); the callback tasks merged in by time, a task queued at the very
        # moment its call ended after the call
        events.sort(key=lambda item: item.id)
        tasks = sorted(self._tasks(session), key=lambda item: (item.at, item.id))
        items: list[FeedItem] = []
        t = 0
        for event in events:
            while t < len(tasks) and tasks[t].at < event.at:
                items.append(tasks[t])
                t += 1
            items.append(event)
        items += tasks[t:]
        return items

    @property
    def behind(self) -> bool:
        """The last poll was cut at `batch` events: poll again at once."""
        return self._full

    def _events(self, session: Session) -> list[FeedItem]:
        query = (select(CallEvent.id, CallEvent.at, CallEvent.kind, CallEvent.data, CallEvent.call_pk,
                        CallEvent.seq, CallEvent.t_ms, Call.uid, Call.caller, Call.status,
                        Call.outcome)
                 .join(Call, Call.id == CallEvent.call_pk)
                 .where(CallEvent.id > self.last_event).order_by(CallEvent.id).limit(self.batch))
        if self.caller is not None:
            query = query.where(Call.caller == self.caller)
        rows = session.execute(query).all()
        self._full = len(rows) >= self.batch
        out: list[FeedItem] = []
        for id_, at, kind, data, call_pk, seq, t_ms, uid, caller, status, outcome in rows:
            self.last_event = id_
            if self.since is not None and at < self.since:
                continue
            item = FeedItem(id_, at, kind, caller, data, call_pk, uid, seq, t_ms)
            if self.outcomes is None:
                out.append(item)
            elif status == "ended" and call_pk not in self._held:
                if outcome in self.outcomes:  # type: ignore[operator]
                    out.append(item)
            else:
                held = self._held.setdefault(call_pk, [])
                if len(held) < MAX_HELD_PER_CALL:
                    held.append(item)
        return out

    def _released(self, session: Session) -> list[FeedItem]:
        rows = session.execute(select(Call.id, Call.status, Call.outcome)
                               .where(Call.id.in_(list(self._held)))).all()
        out: list[FeedItem] = []
        for call_pk, status, outcome in rows:
            if status != "ended":
                continue
            held = self._held.pop(call_pk)
            if outcome in self.outcomes:  # type: ignore[operator]
                out += held
        return out

    def _tasks(self, session: Session) -> list[FeedItem]:
        task = _task_model()
        if task is None:
            return []
        query = select(task).where(task.id > self.last_task).order_by(task.id).limit(self.batch)
        if self.caller is not None:
            query = query.where(task.number == self.caller)
        out = []
        for row in session.scalars(query):
            self.last_task = row.id
            if self.outcomes is not None and getattr(row, "reason", None) not in self.outcomes:
                continue
            data = {key: getattr(row, key, None)
                    for key in ("number", "typed_number", "reason", "state", "due_at",
                                "deadline_at", "notes")}
            out.append(FeedItem(row.id, row.created_at, "callback_queued", row.number,
                                {k: v for k, v in data.items() if v is not None},
                                source="callback"))
        return out


def _local(value: Any, tz: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(tz).isoformat(timespec="milliseconds")
    return value
