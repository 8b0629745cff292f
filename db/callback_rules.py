"""When a callback may happen (R13): quiet hours, working days, holidays, back-off, deadline.

Pure: no I/O, no clock. Every function takes the moment it is about (`now`, `t`) as a
timezone-aware datetime and returns timezone-aware UTC datetimes.

Local-time arithmetic is done on the wall clock of `tz` (a zoneinfo zone), so "08:00" stays
08:00 across a DST change (Europe/Berlin: the night of 28/29 March 2026 has 23 hours, and the
next allowed moment after 21:30 on the 28th is 08:00 CEST = 06:00 UTC, not 07:00 UTC). Wall
times that do not exist (the spring-forward gap) move forward by the size of the gap (02:30 ->
03:30); ambiguous ones (fall-back) resolve to the first occurrence that is not before `t`.

    rules = CallbackRules(tz=ZoneInfo("Asia/Shanghai"))   # defaults: quiet 12-14 and 21-08
    rules.next_allowed(t)            # t itself when allowed, else the start of the next window
    rules.retry_at(failures, now)    # back-off after the n-th attempt that did not reach anyone
    rules.deadline_for(first_call)   # first linked call + 3 days (R13 三天之内回访)
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Union

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
NEXT_MORNING = "next-morning"
#: R13 example rest hours (一个避免): lunch and night, local time.
DEFAULT_QUIET = ((time(12, 0), time(14, 0)), (time(21, 0), time(8, 0)))
DEFAULT_BACKOFF: tuple[Union[timedelta, str], ...] = (timedelta(minutes=30), timedelta(hours=2),
                                                     NEXT_MORNING)
DEFAULT_DEADLINE = timedelta(days=3)  # R13: within three days (= 259 200 s)
DEFAULT_LEASE = timedelta(minutes=10)
_SEARCH_DAYS = 800  # next_allowed gives up after this many local days (a config error)

Step = Union[timedelta, str]


class RulesError(ValueError):
    """A rule setting that cannot be parsed or that leaves no allowed time at all."""


# --- parsing (used by softphone.config and the CLI) -------------------------------------------

def _clock(text: str) -> time:
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if not m:
        raise RulesError(f"expected HH:MM, got {text!r}")
    hours, minutes = int(m.group(1)), int(m.group(2))
    if hours == 24 and minutes == 0:
        return time(0, 0)  # "…-24:00" ends at midnight
    if hours > 23 or minutes > 59:
        raise RulesError(f"not a time of day: {text!r}")
    return time(hours, minutes)


def _items(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, set, frozenset)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(",") if part.strip()]


def parse_quiet(value: object) -> tuple[tuple[time, time], ...]:
    """'12:00-14:00, 21:00-08:00' (or a list) -> ((12:00, 14:00), (21:00, 08:00)); '' -> ().
    A window whose end is before its start runs over midnight."""
    windows = []
    for item in _items(value):
        start, dash, end = item.partition("-")
        if not dash:
            raise RulesError(f"expected HH:MM-HH:MM, got {item!r}")
        first, last = _clock(start), _clock(end)
        if first == last:
            raise RulesError(f"a quiet window must not be empty or a whole day: {item!r}")
        windows.append((first, last))
    return tuple(windows)


def parse_days(value: object) -> frozenset[int]:
    """'mon-sun', 'mon-fri,sat', ['mon', 'tue'] -> weekday numbers (0 = Monday)."""
    days: set[int] = set()
    for item in _items(value):
        first, dash, last = item.lower().partition("-")
        try:
            a = DAYS.index(first.strip()[:3])
            b = DAYS.index(last.strip()[:3]) if dash else a
        except ValueError:
            raise RulesError(f"expected day names mon..sun, got {item!r}") from None
        i = a
        while True:
            days.add(i)
            if i == b:
                break
            i = (i + 1) % 7
    if not days:
        raise RulesError("at least one working day is needed")
    return frozenset(days)


def parse_dates(value: object) -> frozenset[date]:
    """'2026-10-01, 2026-10-02' or a list of dates / ISO strings -> dates."""
    if isinstance(value, (list, tuple, set, frozenset)):
        raw: Iterable[object] = value
    else:
        raw = _items(value)
    out = set()
    for item in raw:
        if isinstance(item, datetime):
            out.add(item.date())
        elif isinstance(item, date):
            out.add(item)
        else:
            try:
                out.add(date.fromisoformat(str(item).strip()))
            except ValueError:
                raise RulesError(f"expected a date YYYY-MM-DD, got {item!r}") from None
    return frozenset(out)


def parse_duration(text: str) -> timedelta:
    """'90s', '30m', '2h', '1d', '1h30m' -> timedelta."""
    s = str(text).strip().lower().replace(" ", "")
    m = re.fullmatch(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?:in)?)?(?:(\d+)s)?", s)
    if not s or not m or not any(m.groups()):
        raise RulesError(f"expected a duration like 30m, 2h or 1d, got {text!r}")
    d, h, mi, se = (int(g or 0) for g in m.groups())
    return timedelta(days=d, hours=h, minutes=mi, seconds=se)


def parse_backoff(value: object) -> tuple[Step, ...]:
    """'30m, 2h, next-morning' -> (30 min, 2 h, NEXT_MORNING); the last step repeats."""
    steps: list[Step] = []
    for item in _items(value):
        if item.lower() in (NEXT_MORNING, "morning", "next_morning"):
            steps.append(NEXT_MORNING)
        else:
            step = parse_duration(item)
            if step <= timedelta(0):
                raise RulesError(f"a retry step must be longer than 0: {item!r}")
            steps.append(step)
    if not steps:
        raise RulesError("at least one retry step is needed (e.g. 30m, 2h, next-morning)")
    return tuple(steps)


def format_quiet(windows: Iterable[tuple[time, time]]) -> str:
    return ",".join(f"{a:%H:%M}-{b:%H:%M}" for a, b in windows)


def format_backoff(steps: Iterable[Step]) -> str:
    def one(step: Step) -> str:
        if isinstance(step, str):
            return step
        seconds = int(step.total_seconds())
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds % size == 0:
                return f"{seconds // size}{unit}"
        return f"{seconds}s"
    return ",".join(one(s) for s in steps)


# --- the rules ----------------------------------------------------------------------------------

def _in_window(wall: time, start: time, end: time) -> bool:
    if start < end:
        return start <= wall < end
    return wall >= start or wall < end  # over midnight


@dataclass(frozen=True)
class CallbackRules:
    """R13 as data. `tz` is the desk's zone; `quiet` the rest hours, local wall clock."""

    tz: tzinfo = timezone.utc
    quiet: tuple[tuple[time, time], ...] = DEFAULT_QUIET
    working_days: frozenset[int] = frozenset(range(7))
    holidays: frozenset[date] = frozenset()
    backoff: tuple[Step, ...] = DEFAULT_BACKOFF
    deadline: timedelta = DEFAULT_DEADLINE
    lease: timedelta = DEFAULT_LEASE
    first_delay: timedelta = field(default=timedelta(0))

    def __post_init__(self) -> None:
        if not self.working_days:
            raise RulesError("at least one working day is needed")
        if not self.backoff:
            raise RulesError("at least one retry step is needed")
        if self.lease <= timedelta(0) or self.deadline <= timedelta(0):
            raise RulesError("lease and deadline must be longer than 0")
        # some moment of the day must be outside every quiet window
        minutes = [time(m // 60, m % 60) for m in range(0, 24 * 60)]
        if self.quiet and all(any(_in_window(t, a, b) for a, b in self.quiet) for t in minutes):
            raise RulesError(f"quiet hours {format_quiet(self.quiet)} leave no time to call back")

    # -- questions about one moment ---------------------------------------------------------
    def local(self, t: datetime) -> datetime:
        _aware(t)
        return t.astimezone(self.tz)

    def is_working_day(self, day: date) -> bool:
        return day.weekday() in self.working_days and day not in self.holidays

    def is_quiet(self, t: datetime) -> bool:
        wall = self.local(t).time()
        return any(_in_window(wall, a, b) for a, b in self.quiet)

    def is_allowed(self, t: datetime) -> bool:
        """May the customer be called at `t` (R13: not in rest hours, a working day)?"""
        local = self.local(t)
        return self.is_working_day(local.date()) and not self.is_quiet(t)

    # -- moving moments ---------------------------------------------------------------------
    def _at(self, day: date, wall: time, not_before: datetime) -> datetime:
        """The first real moment at or after wall clock `wall` on `day`, not before `not_before`."""
        for fold in (0, 1):
            candidate = datetime.combine(day, wall, tzinfo=self.tz).replace(fold=fold)
            # through UTC and back: a wall time in the spring-forward gap moves forward
            candidate = candidate.astimezone(timezone.utc).astimezone(self.tz)
            # compare in UTC: two datetimes in the same zone compare by wall clock, fold ignored
            if candidate.astimezone(timezone.utc) > not_before.astimezone(timezone.utc):
                return candidate
        return not_before + timedelta(minutes=1)  # cannot happen with sane zones; still moves on

    def next_allowed(self, t: datetime) -> datetime:
        """`t` if a callback is allowed then, else the first allowed moment after it (UTC)."""
        local = self.local(t)
        for _ in range(_SEARCH_DAYS * (len(self.quiet) + 2)):
            day = local.date()
            if not self.is_working_day(day):
                local = self._at(day + timedelta(days=1), time(0), local)
                continue
            wall = local.time()
            for start, end in self.quiet:
                if _in_window(wall, start, end):
                    ends_today = start < end or wall < end
                    local = self._at(day if ends_today else day + timedelta(days=1), end, local)
                    break
            else:
                return local.astimezone(timezone.utc)
        raise RulesError(f"no allowed callback time within {_SEARCH_DAYS} days of {t.isoformat()}")

    def next_morning(self, now: datetime) -> datetime:
        """The start of the next allowed window of a new day: today's first one if it is still
        ahead (it is 06:00 and the day starts at 08:00), else the next working day's."""
        local = self.local(now)
        today = self.next_allowed(self._day_start(local.date()))
        if today > now and self.local(today).date() == local.date():
            return today
        return self.next_allowed(self._day_start(local.date() + timedelta(days=1)))

    def _day_start(self, day: date) -> datetime:
        start = datetime.combine(day, time(0), tzinfo=self.tz)
        return start.astimezone(timezone.utc).astimezone(self.tz)

    # -- the schedule of a task -------------------------------------------------------------
    def first_due(self, call_end: datetime) -> datetime:
        """When a task opened by a call that ended at `call_end` is first due."""
        return self.next_allowed(call_end + self.first_delay)

    def retry_at(self, failures: int, now: datetime) -> datetime:
        """When to try again after the `failures`-th attempt that did not reach the customer
        (1 -> +30 min, 2 -> +2 h, 3 and more -> next morning, all moved out of quiet hours)."""
        if failures < 1:
            raise ValueError("failures counts from 1")
        step = self.backoff[min(failures, len(self.backoff)) - 1]
        if isinstance(step, str):
            return self.next_morning(now)
        return self.next_allowed(now + step)

    def deadline_for(self, first_call_at: datetime) -> datetime:
        """R13: the callback happens within three days of the first linked call."""
        _aware(first_call_at)
        return (first_call_at + self.deadline).astimezone(timezone.utc)

    @staticmethod
    def is_overdue(deadline_at: datetime, now: datetime, state: str = "open") -> bool:
        """An open (or claimed) task whose deadline has passed."""
        return state in ("open", "claimed") and now >= deadline_at


def _aware(t: datetime) -> None:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"naive datetime {t.isoformat()}: callback times must be aware")


def parse_when(text: str, now: datetime, tz: tzinfo) -> datetime:
    """A time a person types: ISO 8601 (without an offset: local time in `tz`), 'HH:MM' (today),
    'today HH:MM', 'tomorrow HH:MM', '+30m' / '+2h' (from now). Returns aware UTC."""
    s = text.strip().lower()
    if not s:
        raise RulesError("empty time")
    if s.startswith("+"):
        return (now + parse_duration(s[1:])).astimezone(timezone.utc)
    local_now = now.astimezone(tz)
    m = re.fullmatch(r"(?:(today|tomorrow)\s+)?(\d{1,2}:\d{2})", s)
    if m:
        day = local_now.date() + timedelta(days=1 if m.group(1) == "tomorrow" else 0)
        wall = _clock(m.group(2))
        local = datetime.combine(day, wall, tzinfo=tz)
        return local.astimezone(timezone.utc)
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise RulesError(f"not a time: {text!r} (use ISO 8601 like 2026-11-26T09:30, "
                         "'tomorrow 09:00', '15:30' or '+2h')") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value.astimezone(timezone.utc)
