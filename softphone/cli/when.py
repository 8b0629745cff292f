"""Times on the command line: `--from/--to/--since` as ISO times, dates, today/yesterday or 7d.

Pure: the desk's time zone and "now" come in; nothing reads a clock. Accepted:
  now, today, yesterday            (the desk's local midnight; `today` as an end is tomorrow 00:00)
  7d, 12h, 30m, 45s, 2w            (that long before now)
  2026-11-25                       (a local date: its midnight; as an end, the next midnight)
  2026-11-25T08:30, 2026-11-25 08:30:05+08:00   (ISO time; without an offset it is local)
A date as the END of a range includes that whole day (`--from 2026-11-01 --to 2026-11-30` is
all of November); an instant as the end is excluded (started_at < end).
"""
from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, tzinfo

_AGO = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
HELP = "ISO time, date, today, yesterday, now or an age like 7d / 12h / 30m"


class BadTime(ValueError):
    """A time the command line cannot read; the message says what is accepted."""


def _midnight(day: date, tz: tzinfo) -> datetime:
    return datetime.combine(day, time(0), tz)


def parse_time(text: str, tz: tzinfo, now: datetime, *, end: bool = False) -> datetime:
    """The aware datetime `text` names; `end=True` turns a whole day into its following midnight."""
    value = text.strip().lower()
    local_today = now.astimezone(tz).date()
    if value == "now":
        return now
    if value in ("today", "yesterday"):
        day = local_today - timedelta(days=1 if value == "yesterday" else 0)
        return _midnight(day + timedelta(days=1) if end else day, tz)
    match = _AGO.match(value)
    if match:
        return now - timedelta(**{_UNITS[match.group(2).lower()]: int(match.group(1))})
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            day = date.fromisoformat(value)
            return _midnight(day + timedelta(days=1) if end else day, tz)
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadTime(f"cannot read the time {text!r}: use {HELP}") from None
    return moment.replace(tzinfo=tz) if moment.tzinfo is None else moment


def parse_range(start: str | None, end: str | None, tz: tzinfo,
                now: datetime) -> tuple[datetime | None, datetime | None]:
    """(since, until) for `--from START --to END`; either may be None (open-ended)."""
    since = parse_time(start, tz, now) if start else None
    until = parse_time(end, tz, now, end=True) if end else None
    if since is not None and until is not None and until <= since:
        raise BadTime(f"--to {end!r} is not after --from {start!r}")
    return since, until
