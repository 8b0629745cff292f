"""The supervisors' report: R1 (answered within three rings), the unanswered cases (R12) and the
callback rules (R13, R14), over a time window, by day and by hour of the day.

Aggregation runs in SQL, so the cost grows with what is read, not with what Python does with it.
Two sources, added together:
  * the hour summary (`call_hours`, db/rollup.py) for the whole UTC hours of the window that
    ended more than 48 h ago and are summarised: one row per hour and direction;
  * the calls themselves (GROUP BY over the indexed started_at range) for the rest: the recent
    hours, the window's edges, and hours not summarised yet.
Counts, means and maxima are exact either way. Ring-time percentiles are exact (nearest rank over
the calls' own values) while the summarised part of the window holds at most EXACT_CALLS calls;
above that they come from the summary's 100 ms buckets, reported as the bucket's start
(`percentile_resolution_ms`: 1 exact, 100 from the buckets). Without the summary a million calls
took ~2 s (docs/supervisors.md, "Scale"); with it the whole register takes ~0.3 s, half of it
the callback figures (still read from the tasks and attempts).
Local time: SQLite has no time zones and PostgreSQL's may not know the desk's, so the window is
cut where the desk's UTC offset changes (DST) and each piece is grouped with its own fixed offset
(`offset_segments`); the summary's UTC hours serve the pieces whose offset is whole hours (the
others, e.g. +05:30, read the calls).
Functions take a Session and never commit (db.rollup.refresh, which writes the summary, is the
caller's to run first: the CLI does).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

from sqlalchemy import Integer, case, func, literal_column, select, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from db import rollup
from db.models import Call, CallHour
from db.register import r1_missed_clause

UNANSWERED = rollup.LOST_OUTCOMES  # ("missed", "abandoned")
# outcome -> the report's key for its count (R12: every one of these gets a callback task)
OUTCOME_KEYS = {"handled": "handled", "message": "messages", "missed": "missed",
                "abandoned": "abandoned", "silent": "silent", "noisy": "noisy",
                "after_hours": "after_hours", "busy": "busy", "rejected": "rejected",
                "interrupted": "interrupted"}
# R13's example rest hours; the callback settings override them when they exist
DEFAULT_QUIET_HOURS = ("12:00-14:00", "21:00-08:00")
DAY = timedelta(days=1)
# percentiles from the calls themselves up to this many calls in the window's summarised part
# (reading their ring times costs ~0.05 s per 100,000 calls); above it, from the 100 ms buckets
EXACT_CALLS = 100_000


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
    """SQL: how many rows meet `condition` (an aggregate FILTER: ~30 % cheaper than sum(CASE))."""
    return func.count().filter(condition)


def summary_split(since: datetime | None, until: datetime | None, summarised: int | None
                  ) -> tuple[tuple[int | None, int] | None, list[tuple[datetime | None, datetime | None]]]:
    """How [since, until) is read: (the summary's hours [lo, hi), lo None: from its start; or
    None) and the ranges read from the calls. `summarised`: rollup.summarised_until."""
    if summarised is None:
        return None, [(since, until)]
    lo = rollup.hour_after(since) if since is not None else None
    hi = summarised if until is None else min(summarised, rollup.hour_of(until))
    if lo is not None and lo >= hi:
        return None, [(since, until)]
    raw: list[tuple[datetime | None, datetime | None]] = []
    if since is not None and lo is not None and rollup.hour_start(lo) > since:
        raw.append((since, rollup.hour_start(lo)))
    if until is None or rollup.hour_start(hi) < until:
        raw.append((rollup.hour_start(hi), until))
    return (lo, hi), raw


def _hours(lo: int | None, hi: int) -> list[Any]:
    return ([CallHour.hour >= lo] if lo is not None else []) + [CallHour.hour < hi]


class _Ring:
    """A ring-time distribution added up from parts: exact count, total and max; the values
    themselves (exact) or their 100 ms buckets."""

    def __init__(self) -> None:
        self.count = self.total = 0
        self.max: int | None = None
        self.buckets: dict[int, int] = {}

    def add_summary(self, count: int, total: int, maximum: int | None) -> None:
        self.count += int(count or 0)
        self.total += int(total or 0)
        if maximum is not None:
            self.max = max(self.max if self.max is not None else maximum, int(maximum))

    def add_buckets(self, merged: dict[int, int]) -> None:
        for bucket, n in merged.items():
            self.buckets[bucket] = self.buckets.get(bucket, 0) + n

    def add_values(self, pairs: Iterable[tuple[int, int]]) -> None:
        for value, n in pairs:
            if value is None or not n:
                continue
            self.add_summary(n, int(value) * n, int(value))
            bucket = int(value) // rollup.BUCKET_MS
            self.buckets[bucket] = self.buckets.get(bucket, 0) + n

    def pairs(self) -> list[tuple[int, int]]:
        return [(b * rollup.BUCKET_MS, n) for b, n in self.buckets.items()]

    def figures(self) -> dict[str, Any]:
        """distribution()'s keys: count, mean and max exact, p50/p90 the bucket's start."""
        out = distribution(self.pairs())
        if self.count:
            out.update(count=self.count, mean=round(self.total / self.count, 1), max=self.max)
        return out


def call_figures(session: Session, *, since: datetime | None, until: datetime | None,
                 max_rings: int = 3, summary: bool = True) -> dict[str, Any]:
    """Counts by outcome, R1, ring-to-answer and time-to-abandon distributions; with
    `percentile_resolution_ms` (1: exact, else the summary's bucket) and `summary_hours` (the
    hours [lo, hi) read from the summary, or None). summary=False: from the calls only."""
    hours, raw = summary_split(since, until,
                               rollup.summarised_until(session) if summary else None)
    out: dict[str, Any] = {"calls": 0, "answered": 0, "answered_within_3_rings": 0,
                           "r1_missed": 0, "in_progress": 0}
    out.update({key: 0 for key in OUTCOME_KEYS.values()})
    answered, lost = _Ring(), _Ring()
    texts: tuple[str | None, str | None] = (None, None)  # the summary's ring histograms
    summarised = 0
    if hours is not None:
        dialect = session.get_bind().dialect.name
        H = CallHour
        sums = [H.calls, H.answered, H.r1_met, H.r1_late, H.in_progress, H.ring_count, H.ring_sum,
                H.lost_count, H.lost_sum, *(getattr(H, name) for name in OUTCOME_KEYS)]
        row = session.execute(select(
            *(func.coalesce(func.sum(c), 0) for c in sums), func.max(H.ring_max),
            func.max(H.lost_max), rollup.concat(H.ring_hist, dialect),
            rollup.concat(H.lost_hist, dialect), rollup.concat(H.rings_hist, dialect))
            .where(*_hours(*hours))).one()
        values = dict(zip((c.key for c in sums), map(int, row[:len(sums)])))
        ring_max, lost_max, ring_hist, lost_hist, rings_hist = row[len(sums):]
        summarised = values["calls"]
        _add_outcome(out, None, values["calls"], values["answered"], values["r1_met"],
                     values["in_progress"])
        for name, key in OUTCOME_KEYS.items():
            out[key] += values[name]
        # R1 broken: answered late, or never answered after more than max_rings rings
        out["r1_missed"] += values["r1_late"] + sum(
            n for rings, n in rollup.decode([rings_hist]).items() if rings > max_rings)
        answered.add_summary(values["ring_count"], values["ring_sum"], ring_max)
        lost.add_summary(values["lost_count"], values["lost_sum"], lost_max)
        texts = (ring_hist, lost_hist)
    for start, end in raw:
        _raw_counts(session, start, end, max_rings, out)
    out["answered_within_3_rings_pct"] = _pct(out["answered_within_3_rings"], out["answered"])
    if hours is None or summarised <= EXACT_CALLS:  # exact: the window's calls' ring times
        pairs = _ring_pairs(session, since, until)
        out["ring_to_answer_ms"] = distribution(pairs[0])
        out["ring_to_answer_histogram"] = histogram(pairs[0])
        out["time_to_abandon_ms"] = distribution(pairs[1])
        out["percentile_resolution_ms"] = 1
    else:
        answered.add_buckets(rollup.decode([texts[0]]))
        lost.add_buckets(rollup.decode([texts[1]]))
        for start, end in raw:
            recent_answered, recent_lost = _ring_pairs(session, start, end)
            answered.add_values(recent_answered)
            lost.add_values(recent_lost)
        out["ring_to_answer_ms"] = answered.figures()
        out["ring_to_answer_histogram"] = histogram(answered.pairs())
        out["time_to_abandon_ms"] = lost.figures()
        out["percentile_resolution_ms"] = rollup.BUCKET_MS
    out["summary_hours"] = hours
    return out


def _add_outcome(out: dict[str, Any], name: str | None, count: int, answered: int, r1_met: int,
                 in_progress: int) -> None:
    out["calls"] += count
    out["answered"] += answered
    out["answered_within_3_rings"] += r1_met
    out["in_progress"] += in_progress
    if name in OUTCOME_KEYS:
        out[OUTCOME_KEYS[name]] += count


def _raw_counts(session: Session, since: datetime | None, until: datetime | None,
                max_rings: int, out: dict[str, Any]) -> None:
    where = _in_window(Call.started_at, since, until)
    # in a window the started_at index must lead, not the outcome index (see _unindexed)
    outcome = _unindexed(Call.outcome) if where else Call.outcome
    for name, count, answered, r1_met, r1_missed, open_ in session.execute(
            select(outcome, func.count(), _flag(Call.answered_at.is_not(None)),
                   _flag(Call.r1_met.is_(True)), _flag(r1_missed_clause(max_rings)),
                   _flag(Call.status != "ended"))
            .where(*where).group_by(outcome)):
        _add_outcome(out, name, count, answered, r1_met, open_)
        out["r1_missed"] += r1_missed


def _ring_pairs(session: Session, since: datetime | None, until: datetime | None
                ) -> tuple[list[Any], list[Any]]:
    """(ring_ms, count) of the answered calls, and of the missed + abandoned ones."""
    where = _in_window(Call.started_at, since, until)
    outcome = _unindexed(Call.outcome) if where else Call.outcome
    answered = session.execute(
        select(Call.ring_ms, func.count()).where(*where, Call.answered_at.is_not(None))
        .group_by(Call.ring_ms)).all()
    lost = session.execute(
        select(Call.ring_ms, func.count()).where(*where, outcome.in_(UNANSWERED))
        .group_by(Call.ring_ms)).all()
    return answered, lost


def calendar(session: Session, *, since: datetime | None, until: datetime | None, tz: tzinfo,
             max_rings: int = 3, summary: bool = True
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(by_day, by_hour): per local date, and per hour of the day (0-23) over the window."""
    bounds = _bounds(session, Call.started_at, since, until)
    if bounds is None:
        return [], [_hour_row(h) for h in range(24)]
    dialect = session.get_bind().dialect.name
    summarised = rollup.summarised_until(session) if summary else None
    # local day number / hour of the day -> [calls, answered, r1_met, missed, abandoned,
    # ring_sum, ring_max], added up straight from the rows (a whole register: ~20,000 hours)
    days: dict[int, list[Any]] = {}
    by_hour: list[list[Any]] = [[0, 0, 0, 0, 0, 0, None] for _ in range(24)]
    for start, end, offset_min in offset_segments(*bounds, tz):
        # the summary's UTC hours are local hours only where the offset is whole hours
        part, raw = (summary_split(start, end, summarised) if offset_min % 60 == 0
                     else (None, [(start, end)]))
        rows: list[Any] = []
        if part is not None:
            rows += _summary_calendar(session, part, offset_min // 60)
        for low, high in raw:
            rows += _raw_calendar(session, low, high, offset_min, dialect)
        for number, calls, answered, r1, missed, abandoned, ring_sum, ring_max in rows:
            number = int(number)
            day = days.get(number // 24)
            if day is None:
                day = days[number // 24] = [0, 0, 0, 0, 0, 0, None]
            for acc in (day, by_hour[number % 24]):
                acc[0] += calls
                acc[1] += answered
                acc[2] += r1
                acc[3] += missed
                acc[4] += abandoned
                acc[5] += int(ring_sum or 0)
                if ring_max is not None and (acc[6] is None or ring_max > acc[6]):
                    acc[6] = ring_max
    return ([_finish({"date": _hour_text(number * 24)[:10], **_row(days[number])})
             for number in sorted(days)],
            [_finish({"hour": h, **_row(by_hour[h])}) for h in range(24)])


def _row(values: list[Any]) -> dict[str, Any]:
    return dict(zip(("calls", "answered", "r1_met", "missed", "abandoned", "ring_sum", "ring_max"),
                    values))


def _raw_calendar(session: Session, start: datetime, end: datetime, offset_min: int,
                  dialect: str) -> list[Any]:
    """(local hour number, calls, answered, R1 met, missed, abandoned, ring sum, ring max)."""
    bucket = _local_hour(Call.started_at, offset_min, dialect).label("bucket")
    answered = Call.answered_at.is_not(None)
    return session.execute(
        select(bucket, func.count(), _flag(answered), _flag(Call.r1_met.is_(True)),
               _flag(Call.outcome == "missed"), _flag(Call.outcome == "abandoned"),
               func.coalesce(func.sum(case((answered, Call.ring_ms), else_=0)), 0),
               func.max(case((answered, Call.ring_ms), else_=None)))
        .where(Call.started_at >= start, Call.started_at < end)
        .group_by(literal_column("bucket"))).all()


def _summary_calendar(session: Session, part: tuple[int | None, int], offset_h: int) -> list[Any]:
    """The same rows from the summary's hours [lo, hi), shifted to local hours (one row per
    hour and direction, added up by the caller)."""
    H = CallHour
    return session.execute(
        select(H.hour + offset_h, H.calls, H.answered, H.r1_met, H.missed, H.abandoned,
               H.ring_sum, H.ring_max).where(*_hours(*part))).all()


def _zero() -> dict[str, Any]:
    return {"calls": 0, "answered": 0, "r1_met": 0, "missed": 0, "abandoned": 0,
            "ring_sum": 0, "ring_max": None}


def _hour_row(hour: int) -> dict[str, Any]:
    return {"hour": hour, **_zero()}


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
           quiet_hours: Sequence[str] = DEFAULT_QUIET_HOURS, summary: bool = True) -> dict[str, Any]:
    """The whole report as plain data (the CLI's `report --json`). summary=False reads only
    the calls (slow on a large register; the tests compare the two)."""
    out: dict[str, Any] = {
        "from": since.astimezone(tz).isoformat() if since else None,
        "to": until.astimezone(tz).isoformat() if until else None,
        "max_rings": max_rings,
    }
    out.update(call_figures(session, since=since, until=until, max_rings=max_rings,
                            summary=summary))
    hours = out.pop("summary_hours")
    # the end of the part of this window read from the hour summary (None: all from the calls)
    out["summary_until"] = (rollup.hour_start(hours[1]).astimezone(tz).isoformat()
                            if hours is not None else None)
    out.update(callback_figures(session, since=since, until=until, now=now, tz=tz,
                                quiet_hours=quiet_hours))
    out["by_day"], out["by_hour"] = calendar(session, since=since, until=until, tz=tz,
                                             max_rings=max_rings, summary=summary)
    return out
