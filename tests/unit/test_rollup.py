"""The report's hour summary (db/rollup.py): the report read from it equals the report read from
the calls, on days written by the real RegisterWriter (tests/unit/test_cli_day.py's builder)
around the DST changes of the desk's zone, local midnights and the 48 h horizon; refresh is
idempotent, never counts a call twice when two supervisors run it at once, and redoes an hour
whose open calls ended later."""
from __future__ import annotations

import json
import random
import threading
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update

from db import reports, rollup
from db.engine import make_engine, session_factory
from db.models import Call, CallHour
from db.reports import offset_segments
from softphone.cli import main
from tests.unit.test_cli_day import TZ, Day, Plan, build_day

BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
ZONES = (TZ, BERLIN, NEW_YORK, ZoneInfo("Asia/Kolkata"))  # no DST, two DSTs, +05:30
KINDS = ("handled",) * 6 + ("late", "missed", "missed", "abandoned", "silent", "busy")
# Shanghai clocks: both local midnights, the hours of the EU (09:00) and US (14:00) changes
CLOCKS = ("00:00", "00:10", "07:59", "08:30", "08:59", "09:00", "09:30", "11:45", "13:30",
          "13:59", "14:00", "14:40", "18:20", "21:05", "23:30", "23:59")


def last_change(tz: ZoneInfo, before: datetime) -> datetime:
    """The latest UTC offset change of `tz` before `before` (within 400 days)."""
    return offset_segments(before - timedelta(days=400), before, tz)[-1][0]


def plan_for(day: date, seed: int) -> tuple[Plan, ...]:
    """A day's calls: a realistic mix of outcomes and ring times (R1 broken now and then)."""
    rng = random.Random(seed)
    plans = []
    for i, clock in enumerate(CLOCKS):
        kind = rng.choice(KINDS)
        if kind == "abandoned" and not ("08:30" <= clock < "11:00" or "14:00" <= clock < "20:00"):
            kind = "missed"  # build_day calls the abandoned caller back 30 min later: not at rest
        ring = {"late": rng.randint(15_000, 22_000), "missed": rng.randint(1_000, 25_000),
                "busy": 0}.get(kind, rng.randint(2_000, 14_000))
        plans.append(Plan(clock, f"1380000{seed % 100:02d}{i:02d}", kind, ring))
    return tuple(plans)


def register_days(now: datetime) -> list[date]:
    """Local days around the latest DST changes in Berlin and New York (summarised), the one
    just past the 48 h horizon (cut by it) and yesterday (not summarised yet)."""
    days: set[date] = set()
    for zone in (BERLIN, NEW_YORK):
        change = last_change(zone, now - timedelta(days=3)).astimezone(TZ).date()
        days |= {change - timedelta(days=1), change, change + timedelta(days=1)}
    today = now.astimezone(TZ).date()
    return sorted(days | {today - timedelta(days=2), today - timedelta(days=1)})


def build_register(folder: Path, url: str | None = None) -> Day:
    """The register for these tests: register_days() placed with build_day, one register."""
    now = datetime.now(timezone.utc)
    url = url or f"sqlite:///{folder / 'register.db'}"
    whole: Day | None = None
    for n, day in enumerate(register_days(now)):
        placed = build_day(folder / f"day{n}", day=day, plan=plan_for(day, n), url=url)
        if whole is None:
            whole = placed
        else:
            whole.calls += placed.calls
    assert whole is not None
    return whole


@pytest.fixture(scope="module")
def register(tmp_path_factory) -> Day:
    """Built and summarised once for the module."""
    day = build_register(tmp_path_factory.mktemp("rollup"))
    assert rollup.refresh_url(day.url, datetime.now(timezone.utc)) > 0
    return day


@pytest.fixture
def fresh(tmp_path) -> Day:
    return build_register(tmp_path)


def sessions(url: str, *, immediate: bool = False):
    engine = make_engine(url, immediate=immediate)
    return engine, session_factory(engine)


def build(url, *, summary, tz=TZ, since=None, until=None, max_rings=3, now=None):
    engine, Session = sessions(url)
    try:
        with Session() as session:
            return reports.report(session, since=since, until=until, tz=tz,
                                  now=now or datetime.now(timezone.utc), max_rings=max_rings,
                                  summary=summary)
    finally:
        engine.dispose()


def table(url) -> list[dict]:
    """The summary's rows (but when they were written), in key order."""
    engine, Session = sessions(url)
    try:
        with Session() as session:
            return plain(session.execute(select(CallHour.__table__)).mappings())
    finally:
        engine.dispose()


def plain(rows) -> list[dict]:
    return sorted(({k: v for k, v in dict(r).items() if k != "summarised_at"} for r in rows),
                  key=lambda r: (r["hour"], r["direction"]))


def windows(now: datetime) -> list[tuple[datetime | None, datetime | None]]:
    """The whole register, and windows whose edges fall inside hours, around each DST change,
    across the 48 h horizon, and ending before it."""
    out: list[tuple[datetime | None, datetime | None]] = [(None, None)]
    for zone in (BERLIN, NEW_YORK):
        change = last_change(zone, now - timedelta(days=3))
        out.append((change - timedelta(hours=29, minutes=17), change + timedelta(hours=30, seconds=5)))
    out.append((now - timedelta(days=3, minutes=41), None))
    out.append((None, now - timedelta(days=2, hours=7, minutes=3)))
    return out


SAME = ("calls", "answered", "answered_within_3_rings", "answered_within_3_rings_pct", "r1_missed",
        "in_progress", "missed", "abandoned", "silent", "noisy", "messages", "after_hours", "busy",
        "rejected", "interrupted", "handled", "by_day", "by_hour", "ring_to_answer_histogram",
        "callbacks_opened", "callback_attempts", "callback_attempts_in_quiet_hours")


def assert_same_report(summarised: dict, raw: dict, exact: bool) -> None:
    for key in SAME:
        assert summarised[key] == raw[key], key
    for key in ("ring_to_answer_ms", "time_to_abandon_ms"):
        got, want = summarised[key], raw[key]
        assert {k: got[k] for k in ("count", "mean", "max")} == {
            k: want[k] for k in ("count", "mean", "max")}, key
        exact = exact or summarised["summary_until"] is None  # nothing from the summary
        for q in ("p50", "p90"):  # the bucket's start: the exact value floored to 100 ms
            expected = want[q] if exact or want[q] is None else want[q] // 100 * 100
            assert got[q] == expected, (key, q)
    assert summarised["percentile_resolution_ms"] == (1 if exact else rollup.BUCKET_MS)
    assert raw["percentile_resolution_ms"] == 1 and raw["summary_until"] is None


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "buckets"])
def test_the_summarised_report_is_the_report_of_the_calls(register, monkeypatch, exact):
    now = datetime.now(timezone.utc)
    if not exact:  # percentiles from the 100 ms buckets even for these few calls
        monkeypatch.setattr(reports, "EXACT_CALLS", -1)
    used = 0
    for since, until in windows(now):
        for tz in ZONES:
            for max_rings in (3, 2):
                summarised = build(register.url, summary=True, tz=tz, since=since, until=until,
                                   max_rings=max_rings, now=now)
                raw = build(register.url, summary=False, tz=tz, since=since, until=until,
                            max_rings=max_rings, now=now)
                assert_same_report(summarised, raw, exact)
                used += summarised["summary_until"] is not None
    assert used >= 4 * len(ZONES) * 2  # the summary really was read (all but the recent window)
    everything = build(register.url, summary=True, now=now)
    assert everything["calls"] == len(register.calls)
    # the figures are not empty: the comparison compares something
    assert everything["r1_missed"] > 0 and everything["missed"] > 0 and everything["by_day"]


def test_summary_only_holds_hours_past_the_horizon(register):
    now = datetime.now(timezone.utc)
    rollup.refresh_url(register.url, now)
    engine, Session = sessions(register.url)
    try:
        with Session() as session:
            until = rollup.summarised_until(session)
            summarised = session.scalar(select(func.sum(CallHour.calls)))
            before = session.scalar(select(func.count()).select_from(Call).where(
                Call.started_at < rollup.hour_start(until)))
    finally:
        engine.dispose()
    assert until <= rollup.hour_of(now - rollup.SETTLE)
    assert summarised == before  # every call before the summary's end, once
    assert 0 < summarised < len(register.calls)  # yesterday's calls are not in it


def test_dst_day_by_hour_from_the_summary(tmp_path):
    """Calls around Berlin's spring change: the summary's UTC hours land on the right local
    hours and dates on both sides (01:30 CET, 03:30 CEST)."""
    from db import schema

    url = f"sqlite:///{tmp_path}/r.db"
    schema.upgrade(url)
    change = last_change(BERLIN, datetime.now(timezone.utc) - timedelta(days=3))
    local = [change - timedelta(hours=h, minutes=30) for h in (3, 1, 0)] + [
        change + timedelta(minutes=m) for m in (30, 90, 150, 23 * 60)]
    engine, Session = sessions(url)
    try:
        with Session.begin() as session:
            session.add_all([Call(uid=f"u{i}", call_id=f"c{i}", agent="a", caller="1", called="2",
                                  started_at=t, status="ended", outcome="missed", rings=4,
                                  ring_ms=16_000 + i)
                             for i, t in enumerate(local)])
    finally:
        engine.dispose()
    rollup.refresh_url(url, datetime.now(timezone.utc))
    for tz in (BERLIN, NEW_YORK, TZ):
        summarised = build(url, summary=True, tz=tz)
        raw = build(url, summary=False, tz=tz)
        assert summarised["summary_until"] is not None
        assert_same_report(summarised, raw, exact=True)
        assert sum(h["calls"] for h in summarised["by_hour"]) == len(local)


def test_refresh_is_idempotent_and_forget_redoes_it(fresh):
    now = datetime.now(timezone.utc)
    written = rollup.refresh_url(fresh.url, now)
    first = table(fresh.url)
    assert written == len(first) > 0
    assert rollup.refresh_url(fresh.url, now) == 0
    assert rollup.refresh_url(fresh.url, now + timedelta(minutes=5)) == 0  # same hours
    assert table(fresh.url) == first
    engine, Session = sessions(fresh.url, immediate=True)
    try:
        with Session.begin() as session:
            dropped = rollup.forget(session, rollup.hour_start(first[len(first) // 2]["hour"]))
    finally:
        engine.dispose()
    assert 0 < dropped < len(first)
    assert rollup.refresh_url(fresh.url, now) == dropped
    assert table(fresh.url) == first
    # chunk by chunk (three calls per transaction) gives the same rows
    engine, Session = sessions(fresh.url, immediate=True)
    try:
        with Session.begin() as session:
            rollup.forget(session)
        with Session() as session:
            assert rollup.refresh(session, now, chunk_calls=3) == len(first)
    finally:
        engine.dispose()
    assert table(fresh.url) == first


def test_two_supervisors_refreshing_at_once_count_every_call_once(fresh):
    """Two sessions (BEGIN IMMEDIATE on SQLite) refresh together, chunk by chunk: the result is
    what one refresh writes, never a call counted twice."""
    now = datetime.now(timezone.utc)
    barrier = threading.Barrier(2)
    results: list[int] = []
    errors: list[BaseException] = []

    def supervisor() -> None:
        engine, Session = sessions(fresh.url, immediate=True)
        try:
            with Session() as session:
                barrier.wait(10)
                results.append(rollup.refresh(session, now, chunk_calls=2))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=supervisor) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 2
    together = table(fresh.url)
    assert sum(results) == len(together)  # each row written by exactly one of them
    engine, Session = sessions(fresh.url)
    try:
        with Session() as session:
            until = rollup.summarised_until(session)
            calls = session.scalar(select(func.count()).select_from(Call).where(
                Call.started_at < rollup.hour_start(until)))
            alone = rollup.summarise(session, rollup.hour_of(min(c.started_at for c in fresh.calls)),
                                     until)
    finally:
        engine.dispose()
    assert sum(row["calls"] for row in together) == calls
    assert plain(alone) == together


def test_a_late_insert_of_the_same_rows_is_ignored(fresh):
    """The last guard: rows computed before another refresh committed them are not added
    again (primary key, ON CONFLICT DO NOTHING)."""
    now = datetime.now(timezone.utc)
    engine, Session = sessions(fresh.url, immediate=True)
    try:
        with Session() as session:
            start = rollup.hour_of(min(c.started_at for c in fresh.calls))
            stale = rollup.summarise(session, start, rollup.hour_of(now - rollup.SETTLE))
            session.rollback()
            rollup.refresh(session, now)
            before = table(fresh.url)
            with session.begin():
                rollup._insert(session, stale)
    finally:
        engine.dispose()
    assert table(fresh.url) == before


def test_an_hour_with_calls_in_progress_is_summarised_again_once_they_end(fresh):
    """A crash leaves a call open; the agent's start-up (days later) marks it interrupted: the
    summary of its hour follows."""
    now = datetime.now(timezone.utc)
    old = min((c for c in fresh.calls if c.outcome == "handled"), key=lambda c: c.started_at)
    engine, Session = sessions(fresh.url, immediate=True)
    try:
        with Session.begin() as session:
            session.execute(update(Call).where(Call.uid == old.uid).values(
                status="answered", outcome=None, ended_at=None))
        rollup.refresh_url(fresh.url, now)
        assert build(fresh.url, summary=True)["in_progress"] == 1
        with Session.begin() as session:
            session.execute(update(Call).where(Call.uid == old.uid).values(
                status="ended", outcome="interrupted", ended_at=now))
    finally:
        engine.dispose()
    assert rollup.refresh_url(fresh.url, now) > 0
    summarised = build(fresh.url, summary=True)
    assert summarised["in_progress"] == 0 and summarised["interrupted"] == 1
    assert_same_report(summarised, build(fresh.url, summary=False), exact=True)
    assert rollup.refresh_url(fresh.url, now) == 0  # and it stays done


def test_a_call_written_late_into_a_summarised_hour_waits_for_forget(fresh):
    """The documented rule: the summary does not see a call written into an hour it already
    summarised; forget(since) and the next refresh bring it in."""
    now = datetime.now(timezone.utc)
    rollup.refresh_url(fresh.url, now)
    late_at = min(c.started_at for c in fresh.calls) + timedelta(minutes=1)
    engine, Session = sessions(fresh.url, immediate=True)
    try:
        with Session.begin() as session:
            session.add(Call(uid="late", call_id="late@pbx", agent="desk1", caller="139", called="8000",
                             started_at=late_at, status="ended", outcome="missed", rings=2,
                             ring_ms=7000))
        assert build(fresh.url, summary=True)["calls"] == len(fresh.calls)
        with Session.begin() as session:
            rollup.forget(session, late_at)
    finally:
        engine.dispose()
    rollup.refresh_url(fresh.url, now)
    assert build(fresh.url, summary=True)["calls"] == len(fresh.calls) + 1


def test_report_command_summarises_and_says_how_exact(fresh):
    result = CliRunner().invoke(main, ["report", "--all", "--json", *fresh.args()])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["calls"] == len(fresh.calls)
    assert figures["percentile_resolution_ms"] == 1  # a few calls: exact
    assert figures["summary_until"] is not None
    assert datetime.fromisoformat(figures["summary_until"]).utcoffset() == timedelta(hours=8)
    assert table(fresh.url)
    raw = build(fresh.url, summary=False)
    assert {k: figures[k] for k in SAME} == {k: raw[k] for k in SAME}


def test_report_command_without_write_access_still_reports(fresh, monkeypatch):
    from sqlalchemy.exc import OperationalError

    def refuse(url, now, **kwargs):
        raise OperationalError("INSERT", {}, Exception("attempt to write a readonly database"))

    monkeypatch.setattr(rollup, "refresh_url", refuse)
    result = CliRunner().invoke(main, ["report", "--all", "--json", *fresh.args()])
    assert result.exit_code == 0, result.output
    assert "hour summary was not brought up to date" in result.stderr
    assert "readonly" in result.stderr
    figures = json.loads(result.stdout)
    assert figures["calls"] == len(fresh.calls) and figures["summary_until"] is None
    assert not table(fresh.url)


def test_report_text_says_when_percentiles_come_from_the_buckets(fresh, monkeypatch):
    monkeypatch.setattr(reports, "EXACT_CALLS", -1)
    result = CliRunner().invoke(main, ["report", "--all", *fresh.args()])
    assert result.exit_code == 0, result.output
    assert "to 100 ms, from the hour summary" in result.stdout


def test_every_outcome_has_its_count_in_the_summary():
    from db.models import OUTCOMES

    assert set(OUTCOMES) <= set(CallHour.__table__.columns.keys())
    assert set(reports.OUTCOME_KEYS) == set(OUTCOMES)


def test_histogram_encoding_round_trip():
    pairs = [(80, 3), (81, 5), (0, 1), (605, 2)]
    text = rollup.encode(pairs)
    assert text == "0,1,80,3,81,5,605,2"
    assert rollup.encode([]) is None
    assert rollup.decode([text, None, "80,1"]) == {0: 1, 80: 4, 81: 5, 605: 2}
    assert rollup.decode([None, ""]) == {}


def test_summary_split_edges():
    hour = rollup.hour_start
    at = lambda h, m=0: hour(h) + timedelta(minutes=m)  # noqa: E731
    assert reports.summary_split(at(10, 15), at(20, 5), None) == (None, [(at(10, 15), at(20, 5))])
    assert reports.summary_split(at(10, 15), at(20, 5), 30) == (
        (11, 20), [(at(10, 15), at(11)), (at(20), at(20, 5))])
    assert reports.summary_split(at(10), at(20), 15) == ((10, 15), [(at(15), at(20))])
    assert reports.summary_split(None, None, 15) == ((None, 15), [(at(15), None)])
    assert reports.summary_split(at(10, 15), at(11, 5), 30) == (None, [(at(10, 15), at(11, 5))])
    assert reports.summary_split(at(16), None, 15) == (None, [(at(16), None)])
