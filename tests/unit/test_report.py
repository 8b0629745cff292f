"""`frontdesk report`: R1, the unanswered cases (R12) and the callback rules (R13, R14), checked
against the calls placed on a day written by the real RegisterWriter."""
from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from click.testing import CliRunner
from sqlalchemy import text

from db import schema
from db.engine import make_engine, session_factory
from db.models import Call, CallbackAttempt, CallbackTask
from db.reports import calendar, distribution, offset_segments
from softphone.cli import main
from tests.unit.test_cli_day import TZ, build_day, desk_day, expected_tasks  # noqa: F401


def report(day, *args):
    result = CliRunner().invoke(main, ["report", "--json", *args, *day.args()])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.strip().splitlines()) == 1  # ONE object
    return json.loads(result.stdout)


def nearest_rank(values, q):
    values = sorted(values)
    return values[max(1, math.ceil(q * len(values))) - 1]


def test_report_figures_are_the_calls_placed(desk_day):
    r = report(desk_day)
    calls = desk_day.calls
    answered = [c for c in calls if c.answered]
    assert r["calls"] == len(calls)
    assert r["answered"] == len(answered)
    assert r["answered_within_3_rings"] == sum(c.r1_met for c in answered)
    assert r["answered_within_3_rings_pct"] == round(
        100 * r["answered_within_3_rings"] / len(answered), 1)
    assert r["r1_missed"] == sum(c.rings > 3 for c in calls)
    for outcome, key in (("missed", "missed"), ("abandoned", "abandoned"), ("silent", "silent"),
                         ("busy", "busy"), ("noisy", "noisy"), ("message", "messages"),
                         ("after_hours", "after_hours")):
        assert r[key] == sum(c.outcome == outcome for c in calls), key
    rings = [c.ring_ms for c in answered]
    assert r["ring_to_answer_ms"] == {
        "count": len(rings), "mean": round(sum(rings) / len(rings), 1),
        "p50": nearest_rank(rings, 0.5), "p90": nearest_rank(rings, 0.9), "max": max(rings)}
    lost = [c.ring_ms for c in calls if c.outcome in ("missed", "abandoned")]
    assert r["time_to_abandon_ms"]["mean"] == round(sum(lost) / len(lost), 1)
    assert r["time_to_abandon_ms"]["p50"] == nearest_rank(lost, 0.5)
    tasks = expected_tasks(desk_day)
    assert (r["callbacks_opened"], r["callbacks_done"], r["callbacks_open"]) == (
        tasks["opened"], tasks["done"], tasks["open"])
    assert r["callbacks_done_within_3_days"] == 1 and r["callbacks_overdue"] == 0
    assert r["callback_attempts"] == 1 and r["callback_attempts_in_quiet_hours"] == 0
    assert r["callback_duplicates"] == 0


def test_report_by_day_and_by_hour(desk_day):
    r = report(desk_day, "--from", desk_day.day.isoformat(), "--to", desk_day.day.isoformat())
    assert [d["date"] for d in r["by_day"]] == [desk_day.day.isoformat()]
    day = r["by_day"][0]
    assert (day["calls"], day["answered"], day["missed"]) == (r["calls"], r["answered"], r["missed"])
    assert [h["hour"] for h in r["by_hour"]] == list(range(24))
    for hour in r["by_hour"]:
        placed = [c for c in desk_day.calls if int(c.plan.clock[:2]) == hour["hour"]]
        assert hour["calls"] == len(placed)
        assert hour["answered"] == sum(c.answered for c in placed)
        answered = [c.ring_ms for c in placed if c.answered]
        assert hour["ring_to_answer_max_ms"] == (max(answered) if answered else None)


def test_report_window(desk_day):
    day = desk_day.day.isoformat()
    afternoon = report(desk_day, "--from", f"{day}T12:00")
    assert afternoon["calls"] == sum(c.plan.clock >= "12:00" for c in desk_day.calls)
    assert afternoon["missed"] == 0 and afternoon["callbacks_opened"] == 2  # silent, busy
    assert report(desk_day, "--from", "today")["calls"] == 0


def test_report_table_and_plot(desk_day, tmp_path):
    png = tmp_path / "report.png"
    result = CliRunner().invoke(main, ["report", "--plot", str(png), *desk_day.args()])
    assert result.exit_code == 0, result.output
    assert "answered within three rings (R1)" in result.stdout
    assert "attempts in quiet hours (must be 0, R13)" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_report_sees_breaches_of_the_callback_rules(tmp_path):
    """The checks that must stay at 0 can fail: an attempt in the rest hours, a second open task
    for one number (after dropping the index that forbids it), a task past its deadline."""
    day = build_day(tmp_path)
    engine = make_engine(day.url, immediate=True)
    try:
        with session_factory(engine).begin() as session:
            task = session.query(CallbackTask).filter_by(state="open").order_by(CallbackTask.id).first()
            night = datetime.combine(day.day, datetime.min.time(), TZ) + timedelta(hours=22, minutes=30)
            session.add(CallbackAttempt(task_id=task.id, started_at=night, worker="night-shift",
                                        ended_at=night + timedelta(minutes=1), outcome="no-answer"))
            session.execute(text("DROP INDEX uq_callback_tasks_open_number"))
            now = datetime.now(timezone.utc)
            session.add(CallbackTask(number=task.number, reason="missed", state="open",
                                     due_at=now, deadline_at=now - timedelta(hours=1),
                                     created_at=night, updated_at=night))
    finally:
        engine.dispose()
    r = report(day)
    assert r["callback_attempts"] == 2 and r["callback_attempts_in_quiet_hours"] == 1
    assert r["callback_duplicates"] == 1 and r["callbacks_overdue"] == 1


def test_distribution_nearest_rank():
    assert distribution([]) == {"count": 0, "mean": None, "p50": None, "p90": None, "max": None}
    pairs = [(8000, 3), (7500, 1), (16200, 1), (9000, 1)]
    flat = [8000, 8000, 8000, 7500, 16200, 9000]
    assert distribution(pairs) == {"count": 6, "mean": round(sum(flat) / 6, 1),
                                   "p50": nearest_rank(flat, 0.5), "p90": nearest_rank(flat, 0.9),
                                   "max": 16200}


def test_offset_segments_cut_at_the_dst_changes():
    berlin = ZoneInfo("Europe/Berlin")
    year = (datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2027, 1, 1, tzinfo=timezone.utc))
    assert offset_segments(*year, berlin) == [
        (year[0], datetime(2026, 3, 29, 1, tzinfo=timezone.utc), 60),
        (datetime(2026, 3, 29, 1, tzinfo=timezone.utc), datetime(2026, 10, 25, 1, tzinfo=timezone.utc), 120),
        (datetime(2026, 10, 25, 1, tzinfo=timezone.utc), year[1], 60)]
    assert offset_segments(*year, TZ) == [(*year, 480)]


def test_calendar_uses_the_local_hour_on_both_sides_of_a_dst_change(tmp_path):
    url = f"sqlite:///{tmp_path}/r.db"
    schema.upgrade(url)
    berlin = ZoneInfo("Europe/Berlin")
    local = [datetime(2026, 3, 28, 23, 30, tzinfo=berlin), datetime(2026, 3, 29, 1, 30, tzinfo=berlin),
             datetime(2026, 3, 29, 3, 30, tzinfo=berlin), datetime(2026, 3, 29, 9, 15, tzinfo=berlin)]
    engine = make_engine(url)
    try:
        with session_factory(engine).begin() as session:
            session.add_all([Call(uid=f"u{i}", call_id=f"c{i}", agent="a", caller="1", called="2",
                                  started_at=t, status="ended", outcome="missed")
                             for i, t in enumerate(local)])
        with session_factory(engine)() as session:
            by_day, by_hour = calendar(session, since=None, until=None, tz=berlin)
    finally:
        engine.dispose()
    assert [(d["date"], d["calls"]) for d in by_day] == [("2026-03-28", 1), ("2026-03-29", 3)]
    assert [h["hour"] for h in by_hour if h["calls"]] == [1, 3, 9, 23]


def test_report_default_is_the_last_30_days_and_all_is_everything(tmp_path):
    from tests.unit.test_cli_day import PLAN

    old = build_day(tmp_path, day=datetime.now(TZ).date() - timedelta(days=40), plan=PLAN[:3])
    assert report(old)["calls"] == 0
    everything = report(old, "--all")
    assert everything["calls"] == 3 and everything["from"] is None
    result = CliRunner().invoke(main, ["report", "--all", "--from", "7d", *old.args()])
    assert result.exit_code == 2 and "--all is the whole register" in result.output
