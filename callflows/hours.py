"""Working hours: is a moment inside the desk's opening hours (per weekday, minus holidays)?

Pure: takes a local datetime, never reads a clock.  Used by the agent when a call starts ringing,
to choose the after-hours script, and by the callback rules.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_span(text: str) -> tuple[time, time]:
    """'08:00-18:00' -> (08:00, 18:00); '00:00-24:00' is the whole day."""
    start, _, end = text.replace(" ", "").partition("-")
    def clock(value: str) -> time:
        hours, _, minutes = value.partition(":")
        if value == "24:00":
            return time.max
        return time(int(hours), int(minutes or 0))
    if not end:
        raise ValueError(f"expected HH:MM-HH:MM, got {text!r}")
    first, last = clock(start), clock(end)
    if last <= first:
        raise ValueError(f"a span must end after it starts: {text!r}")
    return first, last


@dataclass(frozen=True)
class WorkingHours:
    """Opening spans per weekday ('mon'..'sun' -> ['08:00-12:00', ...]) and closed dates."""

    week: dict[str, tuple[tuple[time, time], ...]] = field(default_factory=lambda: {
        day: ((time(0, 0), time.max),) for day in DAYS})
    holidays: frozenset[date] = frozenset()

    @classmethod
    def from_config(cls, week: dict[str, list[str]], holidays: list[str]) -> "WorkingHours":
        spans = {day: tuple(parse_span(s) for s in week.get(day, [])) for day in DAYS}
        return cls(spans, frozenset(date.fromisoformat(d) for d in holidays))

    def is_open(self, moment: datetime) -> bool:
        if moment.date() in self.holidays:
            return False
        now = moment.time()
        return any(start <= now < end for start, end in self.week.get(DAYS[moment.weekday()], ()))
