"""The supervisors' commands on PostgreSQL (several agents share one register): the same day as
the SQLite unit tests, written by the real RegisterWriter, read by report/list/follow/export."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from softphone.cli import main
from tests.unit.test_cli_day import build_day, expected_tasks

pytest_plugins = ["tests.rig.postgres"]
pytestmark = pytest.mark.integration


@pytest.fixture
def pg_day(pg_url, tmp_path):
    return build_day(tmp_path, url=pg_url)


def cli(day, *args):
    result = CliRunner().invoke(main, [*args, *day.args()])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_report_list_follow_export_on_postgresql(pg_day):
    day = pg_day
    report = json.loads(cli(day, "report", "--json", *day.window))
    sqlite_day_figures = {  # what the plan implies (tests/unit/test_report.py checks the same)
        "calls": len(day.calls), "answered": sum(c.answered for c in day.calls),
        "answered_within_3_rings": sum(bool(c.r1_met) for c in day.calls),
        "missed": sum(c.outcome == "missed" for c in day.calls),
        "abandoned": sum(c.outcome == "abandoned" for c in day.calls)}
    assert {k: report[k] for k in sqlite_day_figures} == sqlite_day_figures
    tasks = expected_tasks(day)
    assert (report["callbacks_opened"], report["callbacks_open"]) == (tasks["opened"], tasks["open"])
    assert report["callback_attempts"] == 1 and report["callback_attempts_in_quiet_hours"] == 0
    assert [d["date"] for d in report["by_day"]] == [day.day.isoformat()]  # local days in SQL
    assert [h["hour"] for h in report["by_hour"] if h["calls"]] == sorted(
        {int(c.plan.clock[:2]) for c in day.calls})

    listed = [json.loads(line) for line in cli(day, "calls", "list", "--json", "--r1-missed").splitlines()]
    assert [r["uid"] for r in listed] == [c.uid for c in reversed(day.calls) if c.rings > 3]

    items = [json.loads(line) for line in
             cli(day, "follow", "--json", "--since", day.day.isoformat(), "--for", "0.3").splitlines()]
    assert [(i["uid"], i["kind"]) for i in items if i["source"] == "event"] == [
        (c.uid, kind) for c in day.calls for _, kind, _ in c.events]

    exported = json.loads(cli(day, "register", "export", "--format", "json", *day.window))
    assert [r["来电号码"] for r in exported] == [c.plan.caller for c in day.calls]
