"""The hour summary behind `frontdesk report` on a large register (table `call_hours`,
db.models.CallHour).

Reading a million calls takes seconds, reading their summary milliseconds. So each past hour
is summarised once, by the report itself when it runs (`refresh`), never by the agent: one row
per UTC hour and direction (a register of a million calls over three years: ~20,000 rows)
with the counts (calls, answered, R1 met / broken, in progress, one column per outcome), the
ring times of the answered calls and of the missed + abandoned ones as count, total, max and a
histogram of 100 ms buckets (`BUCKET_MS`), and, for the calls never answered, how many rang how
many times (R1's "left ringing past three rings" depends on answer.max_rings, so it is decided
when reading). db/reports.py adds the summary of the whole hours in a window to the calls of
the rest (the recent hours and the window's edges): counts, means and maxima are exact;
percentiles over more than reports.EXACT_CALLS calls come from the buckets, to 100 ms.

The rule (SETTLE): an hour is summarised once it ended more than 48 h ago; the summary covers
every hour from the first call's up to `summarised_until` (hours without calls have no rows).
A call is closed within seconds of its end (the writer commits every ~50 ms), so 48 h leaves
room for a register outage and the journal's replay. What the summary cannot see: a call
written or changed later than that in a summarised hour (say, an agent restarted after a
stop of more than two days and replaying its journal). One case is looked after: an hour
whose summary counted calls still in progress is summarised again once they have all ended
(the agent's start-up marks the ones a crash left open `interrupted`). For anything else
`forget(session, since)` drops the summary from that time on and the next refresh redoes it.

Concurrency: `refresh` works in short transactions of at most CHUNK_CALLS calls each (the
first one on an old register summarises its history chunk by chunk, ~50,000 calls a
transaction), each one serialised against the others: on SQLite give it a session of
`make_engine(url, immediate=True)` (BEGIN IMMEDIATE: the write lock is taken before the
summary is read, so two supervisors cannot both add an hour), on PostgreSQL it takes a
transaction-level advisory lock; the primary key (hour, direction) with ON CONFLICT DO
NOTHING is the last guard. Summarising never blocks the agent's calls (R18);
the agent's writer waits for at most one such transaction (~0.1-0.3 s).
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Integer, case, delete, func, literal_column, or_, select
from sqlalchemy.orm import Session

from db.models import OUTCOMES, Call, CallHour

SETTLE = timedelta(hours=48)
BUCKET_MS = 100  # ring-time histogram resolution
LOST_OUTCOMES = ("missed", "abandoned")  # time to abandon: their ring times (reports.UNANSWERED)
CHUNK_CALLS = 50_000  # at most about this many calls summarised per transaction
ADVISORY_LOCK = 0x66726F6E7464  # PostgreSQL pg_advisory_xact_lock key: b"frontd"
_HOUR = 3600


# --- hours --------------------------------------------------------------------------------------

def hour_of(moment: datetime) -> int:
    """The hour `moment` lies in: whole hours since 1970-01-01T00:00Z (floor)."""
    return int(moment.timestamp() // _HOUR)


def hour_after(moment: datetime) -> int:
    """The first hour that starts at or after `moment` (ceiling)."""
    return -int(-moment.timestamp() // _HOUR)


def hour_start(hour: int) -> datetime:
    return datetime.fromtimestamp(hour * _HOUR, timezone.utc)


def hour_number(column: Any, dialect: str) -> Any:
    """SQL: `column` (UTC) as whole hours since 1970."""
    if dialect == "sqlite":
        import sqlite3

        seconds = (func.unixepoch(column) if sqlite3.sqlite_version_info >= (3, 38)
                   else func.cast(func.strftime("%s", column), Integer))
        return seconds.self_group().op("/")(_HOUR)
    return func.div(func.cast(func.floor(func.extract("epoch", column)), Integer), _HOUR)


def summarised_until(session: Session) -> int | None:
    """The first hour after the summary (its last row's hour + 1), None when it is empty.
    Every call that started before it is in the summary (see the rule above)."""
    last = session.scalar(select(func.max(CallHour.hour)))
    return None if last is None else int(last) + 1


# --- the histograms -----------------------------------------------------------------------------

def encode(pairs: Iterable[tuple[int, int]]) -> str | None:
    """(value, count) pairs as "value,count,value,count" (sorted); None when there are none."""
    items = sorted((int(v), int(n)) for v, n in pairs if v is not None and n)
    return ",".join(f"{v},{n}" for v, n in items) or None


def decode(texts: Iterable[str | None]) -> dict[int, int]:
    """The encoded histograms (or SQL group_concat / string_agg of them, comma-joined) merged:
    {value: count}."""
    joined = ",".join(t for t in texts if t)
    if not joined:
        return {}
    flat = json.loads(f"[{joined}]")
    values, counts = flat[0::2], flat[1::2]
    top = max(values)
    if 0 <= min(values) and top < 1_000_000:  # buckets of up to ~28 h: add up in a list
        dense = [0] * (top + 1)
        for value, count in zip(values, counts):
            dense[value] += count
        return {value: count for value, count in enumerate(dense) if count}
    merged: dict[int, int] = {}
    for value, count in zip(values, counts):
        merged[value] = merged.get(value, 0) + count
    return merged


def concat(column: Any, dialect: str) -> Any:
    """SQL aggregate: the column's texts joined with commas (NULLs skipped)."""
    return func.string_agg(column, ",") if dialect == "postgresql" else func.group_concat(column, ",")


# --- summarising --------------------------------------------------------------------------------

def _count(condition: Any) -> Any:
    return func.count().filter(condition)


def summarise(session: Session, start: int, end: int,
              now: datetime | None = None) -> list[dict[str, Any]]:
    """The call_hours rows of the hours [start, end) as dicts (read only)."""
    dialect = session.get_bind().dialect.name
    now = now or datetime.now(timezone.utc)
    # a label that names no column of calls, grouped by label: PostgreSQL cannot match two
    # renderings of one expression with bound parameters
    hour = hour_number(Call.started_at, dialect).label("k_hour")
    group = (literal_column("k_hour"), Call.direction)
    where = (Call.started_at >= hour_start(start), Call.started_at < hour_start(end))
    answered = Call.answered_at.is_not(None)
    lost = Call.outcome.in_(LOST_OUTCOMES)
    sums = {
        "calls": func.count(), "answered": _count(answered),
        "r1_met": _count(Call.r1_met.is_(True)), "r1_late": _count(Call.r1_met.is_(False)),
        "in_progress": _count(Call.status != "ended"),
        **{name: _count(Call.outcome == name) for name in OUTCOMES},
        "ring_count": func.count(case((answered, Call.ring_ms))),
        "ring_sum": func.coalesce(func.sum(case((answered, Call.ring_ms))), 0),
        "ring_max": func.max(case((answered, Call.ring_ms))),
        "lost_count": func.count(case((lost, Call.ring_ms))),
        "lost_sum": func.coalesce(func.sum(case((lost, Call.ring_ms))), 0),
        "lost_max": func.max(case((lost, Call.ring_ms))),
    }
    rows: dict[tuple[int, str], dict[str, Any]] = {}
    for row in session.execute(select(hour, Call.direction, *(v.label(k) for k, v in sums.items()))
                               .where(*where).group_by(*group)).mappings():
        key = (int(row["k_hour"]), row["direction"])
        rows[key] = {"hour": key[0], "direction": key[1],
                     **{k: int(row[k]) if row[k] is not None else None for k in sums},
                     "ring_hist": None, "lost_hist": None, "rings_hist": None,
                     "summarised_at": now}
    bucket = Call.ring_ms.op("/")(BUCKET_MS).label("k_bucket")  # integer division (>= 0)
    for column, value, condition in (
            ("ring_hist", bucket, answered & Call.ring_ms.is_not(None)),
            ("lost_hist", bucket, lost & Call.ring_ms.is_not(None)),
            # R1 for the calls never answered: how many rang how many times
            ("rings_hist", Call.rings.label("k_bucket"),
             Call.answered_at.is_(None) & Call.rings.is_not(None)
             & or_(Call.r1_met.is_(None), Call.r1_met.is_(True)))):
        pairs: dict[tuple[int, str], list[tuple[int, int]]] = {}
        for h, direction, v, n in session.execute(
                select(hour, Call.direction, value, func.count()).where(*where, condition)
                .group_by(*group, literal_column("k_bucket"))):
            pairs.setdefault((int(h), direction), []).append((int(v), n))
        for key, items in pairs.items():
            rows[key][column] = encode(items)
    return list(rows.values())


def _lock(session: Session) -> None:
    """Serialise refreshes (SQLite: the session's BEGIN IMMEDIATE already did)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(ADVISORY_LOCK)))


def _insert(session: Session, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:  # pragma: no cover - the register runs on SQLite or PostgreSQL
        from sqlalchemy import insert as plain

        session.execute(plain(CallHour), rows)
        return
    session.execute(insert(CallHour).on_conflict_do_nothing(), rows)


def _chunk_end(session: Session, start: int, horizon: int, chunk_calls: int) -> int:
    """The end of the next chunk: about `chunk_calls` calls from `start`, in whole hours."""
    nth = session.scalar(select(Call.started_at).where(Call.started_at >= hour_start(start))
                         .order_by(Call.started_at).offset(chunk_calls).limit(1))
    if nth is None:
        return horizon
    return min(horizon, max(start + 1, hour_of(nth)))


def _first_hour(session: Session) -> int | None:
    first = session.scalar(select(func.min(Call.started_at)))
    if first is None:
        return None
    if isinstance(first, str):  # SQLite min() comes back as text
        first = datetime.fromisoformat(first)
    return hour_of(first if first.tzinfo else first.replace(tzinfo=timezone.utc))


def _settled_open_hours(session: Session, before: int) -> list[int]:
    """Summarised hours that counted calls in progress, all of which have ended since."""
    hours = []
    for hour, counted in session.execute(
            select(CallHour.hour, func.sum(CallHour.in_progress))
            .where(CallHour.in_progress > 0, CallHour.hour < before).group_by(CallHour.hour)):
        still = session.scalar(select(func.count()).select_from(Call).where(
            Call.started_at >= hour_start(hour), Call.started_at < hour_start(hour + 1),
            Call.status != "ended"))
        if still != counted:
            hours.append(int(hour))
    return hours


def refresh(session: Session, now: datetime, *, settle: timedelta = SETTLE,
            chunk_calls: int = CHUNK_CALLS) -> int:
    """Summarise every hour that ended more than `settle` before `now` and is not summarised
    yet; returns the rows written. Commits (one short transaction per chunk of calls); on
    SQLite the session must come from make_engine(url, immediate=True). Idempotent, and safe
    when several run at once (see the module's doc)."""
    horizon = hour_of(now - settle)
    written = 0
    position: int | None = None
    if session.in_transaction():
        session.commit()
    try:
        while True:
            _lock(session)  # (the transaction began here: BEGIN IMMEDIATE on SQLite)
            if position is None:  # the first transaction also redoes hours whose calls ended
                for hour in _settled_open_hours(session, horizon):
                    session.execute(delete(CallHour).where(CallHour.hour == hour))
                    rows = summarise(session, hour, hour + 1, now)
                    _insert(session, rows)
                    written += len(rows)
            until = summarised_until(session)
            start = until if until is not None else _first_hour(session)
            if start is None:
                session.commit()
                return written
            if position is not None:
                start = max(start, position)
            if start >= horizon:
                session.commit()
                return written
            end = _chunk_end(session, start, horizon, chunk_calls)
            rows = summarise(session, start, end, now)
            _insert(session, rows)
            session.commit()
            written += len(rows)
            position = end
    except BaseException:
        session.rollback()
        raise


def refresh_url(url: str, now: datetime, **kwargs: Any) -> int:
    """`refresh` on a session of its own (BEGIN IMMEDIATE on SQLite)."""
    from db.engine import make_engine, session_factory

    engine = make_engine(url, immediate=True)
    try:
        with session_factory(engine)() as session:
            return refresh(session, now, **kwargs)
    finally:
        engine.dispose()


def forget(session: Session, since: datetime | None = None) -> int:
    """Drop the summary of the hours from `since` on (everything when None), so that the next
    refresh summarises them again from the calls; returns the rows dropped. Does not commit."""
    query = delete(CallHour)
    if since is not None:
        query = query.where(CallHour.hour >= hour_of(since))
    return session.execute(query).rowcount or 0

