"""Times on the command line (--from/--to/--since): ISO, dates, today/yesterday, 7d/30m."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from softphone.cli.when import BadTime, parse_range, parse_time

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 25, 14, 30, tzinfo=timezone.utc)  # 22:30 in Shanghai


@pytest.mark.parametrize("text, end, expected", [
    ("now", False, NOW),
    ("today", False, datetime(2026, 11, 25, tzinfo=TZ)),
    ("today", True, datetime(2026, 11, 26, tzinfo=TZ)),
    ("yesterday", False, datetime(2026, 11, 24, tzinfo=TZ)),
    ("yesterday", True, datetime(2026, 11, 25, tzinfo=TZ)),
    ("7d", False, NOW - timedelta(days=7)),
    ("30m", False, NOW - timedelta(minutes=30)),
    ("12H", False, NOW - timedelta(hours=12)),
    ("2w", False, NOW - timedelta(weeks=2)),
    ("2026-11-01", False, datetime(2026, 11, 1, tzinfo=TZ)),
    ("2026-11-30", True, datetime(2026, 12, 1, tzinfo=TZ)),
    ("2026-11-25T08:30", True, datetime(2026, 11, 25, 8, 30, tzinfo=TZ)),
    ("2026-11-25 08:30:05+00:00", False, datetime(2026, 11, 25, 8, 30, 5, tzinfo=timezone.utc)),
])
def test_parse_time(text, end, expected):
    assert parse_time(text, TZ, NOW, end=end) == expected


def test_today_is_the_desks_day_not_utcs():
    late = datetime(2026, 11, 25, 17, 0, tzinfo=timezone.utc)  # 01:00 on the 26th in Shanghai
    assert parse_time("today", TZ, late) == datetime(2026, 11, 26, tzinfo=TZ)


def test_bad_times_and_ranges():
    with pytest.raises(BadTime, match="cannot read the time 'last week'"):
        parse_time("last week", TZ, NOW)
    with pytest.raises(BadTime, match="is not after"):
        parse_range("today", "yesterday", TZ, NOW)
    assert parse_range(None, None, TZ, NOW) == (None, None)
    assert parse_range("yesterday", "yesterday", TZ, NOW) == (
        datetime(2026, 11, 24, tzinfo=TZ), datetime(2026, 11, 25, tzinfo=TZ))
