"""R13 callback rules as pure functions: quiet hours, working days, holidays, DST, back-off,
deadline and overdue; fixed datetimes only."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from db.callback_rules import (NEXT_MORNING, CallbackRules, RulesError, format_backoff,
                               format_quiet, parse_backoff, parse_dates, parse_days,
                               parse_duration, parse_quiet, parse_when)

SH = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
UTC = timezone.utc
RULES = CallbackRules(tz=SH)  # defaults: quiet 12-14 and 21-08, every day


def sh(*args: int) -> datetime:
    return datetime(*args, tzinfo=SH)


def local(rules: CallbackRules, t: datetime) -> str:
    return t.astimezone(rules.tz).strftime("%Y-%m-%d %a %H:%M %z")


# --- quiet hours ---------------------------------------------------------------------------------

@pytest.mark.parametrize("at, allowed", [
    ((7, 59), False), ((8, 0), True), ((11, 59), True), ((12, 0), False), ((12, 30), False),
    ((13, 59), False), ((14, 0), True), ((20, 59), True), ((21, 0), False), ((23, 30), False),
    ((0, 0), False), ((3, 0), False),
])
def test_default_quiet_hours_are_lunch_and_night(at, allowed):
    assert RULES.is_allowed(sh(2026, 11, 25, *at)) is allowed


@pytest.mark.parametrize("at, expected", [
    ((12, 30), "2026-11-25 Wed 14:00 +0800"),   # lunch -> 14:00 the same day
    ((21, 30), "2026-11-26 Thu 08:00 +0800"),   # evening -> next morning
    ((2, 0), "2026-11-25 Wed 08:00 +0800"),     # after midnight -> the same morning
    ((10, 15), "2026-11-25 Wed 10:15 +0800"),   # allowed: unchanged
])
def test_next_allowed_leaves_quiet_hours(at, expected):
    out = RULES.next_allowed(sh(2026, 11, 25, *at))
    assert out.tzinfo == UTC
    assert local(RULES, out) == expected


def test_the_input_zone_does_not_matter_only_the_moment():
    t = datetime(2026, 11, 25, 4, 30, tzinfo=UTC)  # 12:30 in Shanghai
    assert RULES.next_allowed(t) == sh(2026, 11, 25, 14, 0)
    assert not RULES.is_allowed(t)


def test_no_quiet_hours_means_any_time():
    rules = CallbackRules(tz=SH, quiet=())
    t = sh(2026, 11, 25, 3, 0)
    assert rules.is_allowed(t) and rules.next_allowed(t) == t


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="naive"):
        RULES.next_allowed(datetime(2026, 11, 25, 12, 30))


# --- working days and holidays ----------------------------------------------------------------

def test_days_off_move_to_the_next_working_morning():
    rules = CallbackRules(tz=SH, working_days=parse_days("mon-fri"))
    saturday = sh(2026, 11, 28, 10, 0)
    assert not rules.is_allowed(saturday)
    assert local(rules, rules.next_allowed(saturday)) == "2026-11-30 Mon 08:00 +0800"
    friday_night = sh(2026, 11, 27, 21, 30)
    assert local(rules, rules.next_allowed(friday_night)) == "2026-11-30 Mon 08:00 +0800"


def test_holidays_are_skipped():
    rules = CallbackRules(tz=SH, holidays=parse_dates("2026-10-01, 2026-10-02, 2026-10-03"))
    assert local(rules, rules.next_allowed(sh(2026, 9, 30, 21, 30))) == "2026-10-04 Sun 08:00 +0800"
    assert rules.is_allowed(sh(2026, 10, 4, 9, 0))
    assert not rules.is_allowed(sh(2026, 10, 2, 9, 0))


def test_default_is_every_day():
    assert RULES.working_days == frozenset(range(7))
    assert RULES.is_allowed(sh(2026, 11, 29, 10, 0))  # a Sunday


# --- DST (China has none; the arithmetic must still be right where there is) ---------------------

def test_spring_forward_night_keeps_the_wall_clock():
    rules = CallbackRules(tz=BERLIN)
    evening = datetime(2026, 3, 28, 21, 30, tzinfo=BERLIN)  # CET, +01:00
    out = rules.next_allowed(evening)
    assert local(rules, out) == "2026-03-29 Sun 08:00 +0200"
    assert out == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)  # not 07:00 UTC (naive +10.5 h)


def test_fall_back_night_keeps_the_wall_clock():
    rules = CallbackRules(tz=BERLIN)
    out = rules.next_allowed(datetime(2026, 10, 24, 21, 30, tzinfo=BERLIN))  # CEST
    assert local(rules, out) == "2026-10-25 Sun 08:00 +0100"
    assert out == datetime(2026, 10, 25, 7, 0, tzinfo=UTC)


def test_a_window_ending_in_the_spring_forward_gap_ends_after_the_gap():
    rules = CallbackRules(tz=BERLIN, quiet=parse_quiet("01:00-02:30"))
    out = rules.next_allowed(datetime(2026, 3, 29, 1, 30, tzinfo=BERLIN))
    assert out == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST: 02:30 never happens
    assert rules.is_allowed(out)


def test_an_ambiguous_hour_never_moves_backwards():
    rules = CallbackRules(tz=BERLIN, quiet=parse_quiet("02:00-02:30"))
    second = datetime(2026, 10, 25, 2, 10, tzinfo=BERLIN, fold=1)  # 01:10 UTC, after the fall-back
    out = rules.next_allowed(second)
    assert out == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30 CET, the second 02:30
    assert out > second


def test_retry_steps_are_real_durations_across_dst():
    rules = CallbackRules(tz=BERLIN, quiet=())
    before = datetime(2026, 3, 29, 1, 45, tzinfo=BERLIN)
    assert rules.retry_at(1, before) - before == timedelta(minutes=30)  # 03:15 CEST on the wall


# --- back-off -----------------------------------------------------------------------------------

def test_backoff_sequence_30_min_2_h_then_next_morning():
    t = sh(2026, 11, 25, 9, 0)
    assert local(RULES, RULES.retry_at(1, t)) == "2026-11-25 Wed 09:30 +0800"
    assert local(RULES, RULES.retry_at(2, t)) == "2026-11-25 Wed 11:00 +0800"
    assert local(RULES, RULES.retry_at(3, t)) == "2026-11-26 Thu 08:00 +0800"
    assert local(RULES, RULES.retry_at(7, t)) == "2026-11-26 Thu 08:00 +0800"  # last step repeats


def test_backoff_is_moved_out_of_quiet_hours():
    assert local(RULES, RULES.retry_at(2, sh(2026, 11, 25, 10, 30))) == "2026-11-25 Wed 14:00 +0800"
    assert local(RULES, RULES.retry_at(2, sh(2026, 11, 25, 20, 0))) == "2026-11-26 Thu 08:00 +0800"


def test_next_morning_is_today_when_the_day_has_not_started():
    assert local(RULES, RULES.next_morning(sh(2026, 11, 25, 6, 0))) == "2026-11-25 Wed 08:00 +0800"
    assert local(RULES, RULES.next_morning(sh(2026, 11, 25, 8, 0))) == "2026-11-26 Thu 08:00 +0800"
    rules = CallbackRules(tz=SH, working_days=parse_days("mon-fri"))
    assert local(rules, rules.next_morning(sh(2026, 11, 27, 15, 0))) == "2026-11-30 Mon 08:00 +0800"


def test_retry_counts_from_one():
    with pytest.raises(ValueError):
        RULES.retry_at(0, sh(2026, 11, 25, 9, 0))


# --- deadline and overdue ------------------------------------------------------------------------

def test_deadline_is_three_days_after_the_first_call():
    first = sh(2026, 11, 25, 21, 3)
    assert RULES.deadline_for(first) == sh(2026, 11, 28, 21, 3)
    assert RULES.deadline_for(first).tzinfo == UTC


def test_overdue_only_while_open_and_past_the_deadline():
    deadline = sh(2026, 11, 28, 21, 3)
    assert not RULES.is_overdue(deadline, deadline - timedelta(seconds=1))
    assert RULES.is_overdue(deadline, deadline)
    assert RULES.is_overdue(deadline, deadline + timedelta(days=1), "claimed")
    assert not RULES.is_overdue(deadline, deadline + timedelta(days=1), "done")


def test_first_due_is_the_first_allowed_moment_after_the_call():
    assert local(RULES, RULES.first_due(sh(2026, 11, 25, 22, 15))) == "2026-11-26 Thu 08:00 +0800"
    assert RULES.first_due(sh(2026, 11, 25, 15, 0)) == sh(2026, 11, 25, 15, 0)


# --- parsing -------------------------------------------------------------------------------------

def test_parsers():
    assert parse_quiet("12:00-14:00, 21:00-08:00") == ((time(12), time(14)), (time(21), time(8)))
    assert parse_quiet("") == () and parse_quiet([]) == ()
    assert parse_quiet("22:00-24:00") == ((time(22), time(0)),)
    assert format_quiet(parse_quiet(["12:00-14:00", "21:00-08:00"])) == "12:00-14:00,21:00-08:00"
    assert parse_days("mon-fri") == frozenset(range(5))
    assert parse_days("fri-mon") == frozenset({4, 5, 6, 0})
    assert parse_days(["mon", "sat"]) == frozenset({0, 5})
    assert parse_dates([date(2026, 10, 1), "2026-10-02"]) == {date(2026, 10, 1), date(2026, 10, 2)}
    assert parse_backoff("30m, 2h, next-morning") == (timedelta(minutes=30), timedelta(hours=2),
                                                      NEXT_MORNING)
    assert format_backoff(parse_backoff("90m,1d,morning")) == "90m,1d,next-morning"
    assert parse_duration("1h30m") == timedelta(minutes=90)


@pytest.mark.parametrize("bad", ["12-14", "25:00-26:00", "12:00-12:00", "noon"])
def test_bad_quiet_hours_are_refused(bad):
    with pytest.raises(RulesError):
        parse_quiet(bad)


def test_rules_that_leave_no_time_are_refused():
    with pytest.raises(RulesError, match="no time"):
        CallbackRules(quiet=parse_quiet("00:00-12:00, 12:00-00:00"))
    with pytest.raises(RulesError):
        parse_days("")
    with pytest.raises(RulesError):
        parse_backoff("")
    with pytest.raises(RulesError):
        parse_days("someday")


def test_parse_when_in_the_desk_zone():
    now = sh(2026, 11, 25, 16, 20)
    assert parse_when("tomorrow 09:00", now, SH) == sh(2026, 11, 26, 9, 0)
    assert parse_when("15:30", now, SH) == sh(2026, 11, 25, 15, 30)
    assert parse_when("+2h", now, SH) == sh(2026, 11, 25, 18, 20)
    assert parse_when("2026-11-27T10:00", now, SH) == sh(2026, 11, 27, 10, 0)
    assert parse_when("2026-11-27T10:00+00:00", now, SH) == sh(2026, 11, 27, 18, 0)
    with pytest.raises(RulesError, match="not a time"):
        parse_when("whenever", now, SH)
