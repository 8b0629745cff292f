"""The supervisors' report: R1 (answered within three rings), the unanswered cases (R12) and the
callback rules (R13, R14), over a time window, by day and by hour of the day.

Aggregation runs in SQL (GROUP BY over the indexed started_at range), so the cost grows with
the calls in the window, not with what Python does with them: the ring-time distributions come
back as (ring_ms, count) rows, from which mean, percentiles and max are exact; the calendar
comes back as one row per local hour (an integer: hours since 1970 at the desk's offset).
At a million calls the whole register takes ~2 s (docs/supervisors.md, "Scale"): every call is
read and the calendar and the ring times are sorted; a window of a month takes ~0.15 s. Local time: SQLite has no time zones and PostgreSQL's may
not know the desk's, so the window is cut where the desk's UTC offset changes (DST) and each
piece is grouped with its own fixed offset (`offset_segments`).
Functions take a Session and never commit.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

from sqlalchemy import Integer, case, func, literal_column, select, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from db.models import Call
from db.register import r1_missed_clause

UNANSWERED = ("missed", "abandoned")
# outcome -> the report's key for its count (R12: every one of these gets a callback task)
OUTCOME_KEYS = {"handled": "handled", "message": "messages", "missed": "missed",
                "abandoned": "abandoned", "silent": "silent", "noisy": "noisy",
                "after_hours": "after_hours", "busy": "busy", "rejected": "rejected",
                "interrupted": "interrupted"}
# R13's example rest hours; the callback settings override them when they exist
DEFAULT_QUIET_HOURS = ("12:00-14:00", "21:00-08:00")
DAY = timedelta(days=1)


# --- local time in SQL ------------------------------------------------------------------------

def offset_segments(since: datetime, until: datetime, tz: tzinfo) -> list[tuple[datetime, datetime, int]]:
    """[(start, end, UTC offset in minutes)] covering [since, until) with one offset each."""
    def offset(moment: datetime) -> int:
        delta = moment.astimezone(tz).utcoffset() or timedelta(0)
        return int(delta.total_seconds() // 60)

    segments: list[tuple[datetime, datetime, int]] = []
    start, current, probe = since, offset(since), since
    while probe < until:
        step = min(probe + DAY, until)
        if offset(step) == current:
            probe = step
            continue
        low, high = probe, step  # the change lies in (low, high]: bisect it to the microsecond
        while high - low > timedelta(microseconds=1):
            mid = low + (high - low) / 2
            low, high = (mid, high) if offset(mid) == current else (low, mid)
        if high >= until:
            break
        segments.append((start, high, current))
        start, current, probe = high, offset(high), high
    segments.append((start, until, current))
    return segments


def _epoch_seconds(column: Any, dialect: str) -> ColumnElement[int]:
    """`column` (UTC) as whole seconds since 1970."""
    if dialect == "sqlite":
        import sqlite3

        if sqlite3.sqlite_version_info >= (3, 38):
            return func.unixepoch(column)
        return func.cast(func.strftime("%s", column), Integer)
    return func.cast(func.floor(func.extract("epoch", column)), Integer)


def _local_second_of_day(column: Any, offset_min: int, dialect: str) -> ColumnElement[int]:
    """`column` (UTC) as the second of the local day (0-86399) at a fixed UTC offset."""
    local = _epoch_seconds(column, dialect) + offset_min * 60
    return local.self_group().op("%")(86400) if dialect == "sqlite" else func.mod(local, 86400)


def _local_hour(column: Any, offset_min: int, dialect: str) -> ColumnElement[int]:
    """`column` (UTC) as a whole number of local hours since 1970 (fixed offset): an integer
    groups faster than text; `_hour_text` turns it back into 'YYYY-MM-DD HH'."""
    local = _epoch_seconds(column, dialect) + offset_min * 60
    return local.self_group().op("/")(3600) if dialect == "sqlite" else func.div(local, 3600)


def _hour_text(bucket: int) -> str:
    return datetime.fromtimestamp(int(bucket) * 3600, timezone.utc).strftime("%Y-%m-%d %H")


def _unindexed(column: Any) -> Any:
    """`column || ''`: the same value, but the planner will not walk that column's index to
    GROUP BY or filter it (it would read the whole table in that order, window or not)."""
    return column.op("||")("")


def _bounds(session: Session, column: Any, since: datetime | None,
            until: datetime | None) -> tuple[datetime, datetime] | None:
    """The window, closed with the first/last row where it is open; None when it is empty.
    min() and max() are asked separately: alone, each is one step down an index."""
    if since is None:
        first = session.scalar(select(func.min(column)))
        if first is None:
            return None
        since = _aware(first)
    if until is None:
        last = session.scalar(select(func.max(column)))
        if last is None:
            return None
        until = _aware(last) + timedelta(seconds=1)
    return (since, until) if until > since else None


def _aware(value: datetime | str) -> datetime:
    if isinstance(value, str):  # SQLite min()/max() come back as text
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _in_window(column: Any, since: datetime | None, until: datetime | None) -> list[Any]:
    where = []
    if since is not None:
        where.append(column >= since)
    if until is not None:
        where.append(column < until)
    return where


# --- distributions ----------------------------------------------------------------------------

def distribution(pairs: Iterable[tuple[int, int]]) -> dict[str, Any]:
    """count, mean, p50, p90, max (ms) of a distribution given as (value, how many) pairs;
    percentiles by the nearest-rank method (a value that really occurred)."""
    items = sorted((int(v), int(n)) for v, n in pairs if v is not None and n)
    total = sum(n for _, n in items)
    if not total:
        return {"count": 0, "mean": None, "p50": None, "p90": None, "max": None}

    def rank(q: float) -> int:
        target = max(1, -(-q * total // 1))  # ceil(q * total)
        seen = 0
        for value, n in items:
            seen += n
            if seen >= target:
                return value
        return items[-1][0]

    mean = sum(v * n for v, n in items) / total
    return {"count": total, "mean": round(mean, 1), "p50": rank(0.5), "p90": rank(0.9),
            "max": items[-1][0]}


def histogram(pairs: Iterable[tuple[int, int]], bin_ms: int = 1000) -> list[dict[str, int]]:
    """(value, count) pairs folded into bins of `bin_ms`: [{"from_ms", "count"}]."""
    bins: dict[int, int] = {}
    for value, n in pairs:
        if value is not None:
            key = int(value) // bin_ms * bin_ms
            bins[key] = bins.get(key, 0) + int(n)
    return [{"from_ms": k, "count": bins[k]} for k in sorted(bins)]


# --- the report -------------------------------------------------------------------------------

def _flag(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def call_figures(session: Session, *, since: datetime | None, until: datetime | None,
                 max_rings: int = 3) -> dict[str, Any]:
    """Counts by outcome, R1, ring-to-answer and time-to-abandon distributions."""
    where = _in_window(Call.started_at, since, until)
    # in a window the started_at index must lead, not the outcome index (see _unindexed)
    outcome = _unindexed(Call.outcome) if where else Call.outcome
    rows = session.execute(
        select(outcome, func.count(), _flag(Call.answered_at.is_not(None)),
               _flag(Call.r1_met.is_(True)), _flag(r1_missed_clause(max_rings)),
               _flag(Call.status != "ended"))
        .where(*where).group_by(outcome)).all()
    out: dict[str, Any] = {"calls": 0, "answered": 0, "answered_within_3_rings": 0,
                           "r1_missed": 0, "in_progress": 0}
    out.update({key: 0 for key in OUTCOME_KEYS.values()})
    for name, count, answered, r1_met, r1_missed, open_ in rows:
        out["calls"] += count
        out["answered"] += answered
        out["answered_within_3_rings"] += r1_met
        out["r1_missed"] += r1_missed
        out["in_progress"] += open_
        if name in OUTCOME_KEYS:
            out[OUTCOME_KEYS[name]] += count
    out["answered_within_3_rings_pct"] = _pct(out["answered_within_3_rings"], out["answered"])
    answered = session.execute(
        select(Call.ring_ms, func.count()).where(*where, Call.answered_at.is_not(None))
        .group_by(Call.ring_ms)).all()
    lost = session.execute(
        select(Call.ring_ms, func.count()).where(*where, outcome.in_(UNANSWERED))
        .group_by(Call.ring_ms)).all()
    out["ring_to_answer_ms"] = distribution(answered)
    out["ring_to_answer_histogram"] = histogram(answered)
    out["time_to_abandon_ms"] = distribution(lost)
    return out


def calendar(session: Session, *, since: datetime | None, until: datetime | None, tz: tzinfo,
             max_rings: int = 3) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(by_day, by_hour): per local date, and per hour of the day (0-23) over the window."""
    bounds = _bounds(session, Call.started_at, since, until)
    if bounds is None:
        return [], [_hour_row(h) for h in range(24)]
    dialect = session.get_bind().dialect.name
    hours: dict[str, dict[str, Any]] = {}
    for start, end, offset_min in offset_segments(*bounds, tz):
        bucket = _local_hour(Call.started_at, offset_min, dialect).label("bucket")
        query = (select(bucket, func.count(), _flag(Call.answered_at.is_not(None)),
                        _flag(Call.r1_met.is_(True)), _flag(Call.outcome == "missed"),
                        _flag(Call.outcome == "abandoned"),
                        func.coalesce(func.sum(case((Call.answered_at.is_not(None), Call.ring_ms),
                                                    else_=0)), 0),
                        func.max(case((Call.answered_at.is_not(None), Call.ring_ms), else_=None)))
                 .where(Call.started_at >= start, Call.started_at < end)
                 .group_by(literal_column("bucket")))
        for number, calls, answered, r1, missed, abandoned, ring_sum, ring_max in session.execute(query):
            _add(hours.setdefault(_hour_text(number), _zero()),
                 {"calls": calls, "answered": answered, "r1_met": r1, "missed": missed,
                  "abandoned": abandoned, "ring_sum": ring_sum or 0, "ring_max": ring_max})
    days: dict[str, dict[str, Any]] = {}
    by_hour = {h: _hour_row(h) for h in range(24)}
    for key in sorted(hours):
        day, hour = key[:10], int(key[11:13])
        for target in (days.setdefault(day, {"date": day, **_zero()}), by_hour[hour]):
            _add(target, hours[key])
    return ([_finish(d) for d in days.values()], [_finish(by_hour[h]) for h in range(24)])


def _zero() -> dict[str, Any]:
    return {"calls": 0, "answered": 0, "r1_met": 0, "missed": 0, "abandoned": 0,
            "ring_sum": 0, "ring_max": None}


def _hour_row(hour: int) -> dict[str, Any]:
    return {"hour": hour, **_zero()}


def _add(target: dict[str, Any], row: dict[str, Any]) -> None:
    for key in ("calls", "answered", "r1_met", "missed", "abandoned", "ring_sum"):
        target[key] += row[key]
    if row["ring_max"] is not None:
        target["ring_max"] = max(target["ring_max"] or 0, row["ring_max"])


def _finish(row: dict[str, Any]) -> dict[str, Any]:
    ring_sum = row.pop("ring_sum")
    row["ring_to_answer_mean_ms"] = round(ring_sum / row["answered"], 1) if row["answered"] else None
    row["ring_to_answer_max_ms"] = row.pop("ring_max")
    row["answered_within_3_rings_pct"] = _pct(row["r1_met"], row["answered"])
    return row


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


# --- callbacks (R12-R14) ----------------------------------------------------------------------

def _seconds(clock: str) -> int:
    hours, _, minutes = clock.strip().partition(":")
    return int(hours) * 3600 + int(minutes or 0) * 60


def quiet_clause(second: ColumnElement[int], spans: Sequence[str]) -> Any:
    """SQL: the local second of the day `second` lies in one of the spans 'HH:MM-HH:MM'
    ('21:00-08:00' runs over midnight; '…-00:00' and '…-24:00' end at midnight)."""
    from sqlalchemy import and_, false, or_

    parts = []
    for span in spans:
        start_text, _, end_text = span.replace(" ", "").partition("-")
        start, end = _seconds(start_text), _seconds(end_text) or 86400
        parts.append(and_(second >= start, second < end) if start < end
                     else or_(second >= start, second < end))
    return or_(*parts) if parts else false()


def callback_figures(session: Session, *, since: datetime | None, until: datetime | None,
                     now: datetime, tz: tzinfo,
                     quiet_hours: Sequence[str] = DEFAULT_QUIET_HOURS) -> dict[str, Any]:
    """R13/R14 figures from the callback queue: tasks opened in the window, done within three
    days, still open, overdue now, attempts made in quiet hours (must be 0) and numbers with
    more than one open task (must be 0)."""
    from db import models

    task_model = getattr(models, "CallbackTask", None)
    attempt_model = getattr(models, "CallbackAttempt", None)
    out: dict[str, Any] = {"callbacks_opened": 0, "callbacks_done": 0,
                           "callbacks_done_within_3_days": 0,
                           "callbacks_done_within_3_days_pct": None, "callbacks_open": 0,
                           "callbacks_overdue": 0, "callbacks_failed": 0,
                           "callback_attempts": 0, "callback_attempts_in_quiet_hours": 0,
                           "callback_duplicates": 0, "callbacks_available": task_model is not None}
    if task_model is None:
        return out
    T = task_model
    opened = _in_window(T.created_at, since, until)
    done = T.state == "done"
    within = T.closed_at.is_not(None) & (T.closed_at <= T.deadline_at)  # R13: the first call + 3 days
    open_ = T.state.in_(("open", "claimed"))
    # literally the WHERE of the partial index uq_callback_tasks_open_number, so it is used
    active = text("callback_tasks.state IN ('open', 'claimed')")
    row = session.execute(select(
        func.count(), _flag(done), _flag(done & within), _flag(open_),
        _flag(open_ & (T.deadline_at <= now)), _flag(T.state == "failed")).where(*opened)).one()
    (out["callbacks_opened"], out["callbacks_done"], out["callbacks_done_within_3_days"],
     out["callbacks_open"], out["callbacks_overdue"], out["callbacks_failed"]) = row
    out["callbacks_done_within_3_days_pct"] = _pct(out["callbacks_done_within_3_days"],
                                                   out["callbacks_opened"])
    # R14 is about now, not about the window: one open task per number
    dupes = (select(T.number).where(active).group_by(T.number)
             .having(func.count() > 1).subquery())
    out["callback_duplicates"] = session.scalar(select(func.count()).select_from(dupes)) or 0
    if attempt_model is not None:
        A = attempt_model
        bounds = _bounds(session, A.started_at, since, until)
        if bounds is not None:
            dialect = session.get_bind().dialect.name
            for start, end, offset_min in offset_segments(*bounds, tz):
                seconds = (select(_local_second_of_day(A.started_at, offset_min, dialect)
                                  .label("second"))
                           .where(A.started_at >= start, A.started_at < end).subquery())
                total, quiet = session.execute(  # the local time computed once per attempt
                    select(func.count(), _flag(quiet_clause(seconds.c.second, quiet_hours)))).one()
                out["callback_attempts"] += total
                out["callback_attempts_in_quiet_hours"] += quiet
    return out


def report(session: Session, *, since: datetime | None, until: datetime | None, tz: tzinfo,
           now: datetime, max_rings: int = 3,
           quiet_hours: Sequence[str] = DEFAULT_QUIET_HOURS) -> dict[str, Any]:
    """The whole report as plain data (the CLI's `report --json`)."""
    out: dict[str, Any] = {
        "from": since.astimezone(tz).isoformat() if since else None,
        "to": until.astimezone(tz).isoformat() if until else None,
        "max_rings": max_rings,
    }
    out.update(call_figures(session, since=since, until=until, max_rings=max_rings))
    out.update(callback_figures(session, since=since, until=until, now=now, tz=tz,
                                quiet_hours=quiet_hours))
    out["by_day"], out["by_hour"] = calendar(session, since=since, until=until, tz=tz,
                                             max_rings=max_rings)
    return out
