"""`frontdesk calls list/show/note` on a day written by the real RegisterWriter (R16, R17)."""
from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

from db.register import CALL_KEYS, EVENT_KEYS
from softphone.cli import main
from tests.unit.test_cli_day import build_day, desk_day  # noqa: F401 (fixture)


def cli(day, *args, ok=True):
    """`frontdesk ARGS --config <the day's config>` in-process."""
    result = CliRunner().invoke(main, [*args, *day.args()])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def lines(result):
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_list_json_keeps_the_stable_keys_newest_first(desk_day):
    rows = lines(cli(desk_day, "calls", "list", "--json"))
    assert [r["uid"] for r in rows] == [c.uid for c in reversed(desk_day.calls)]
    for row in rows:
        assert tuple(row)[:len(CALL_KEYS)] == CALL_KEYS
    first = rows[-1]
    placed = desk_day.calls[0]
    assert first["started_at"].startswith(f"{desk_day.day.isoformat()}T08:05:00.123+08:00")
    assert (first["ring_ms"], first["rings"], first["r1_met"], first["category"]) == (
        placed.ring_ms, placed.rings, True, "报修")


@pytest.mark.parametrize("args, wanted", [
    (["--outcome", "missed"], lambda c: c.outcome == "missed"),
    (["--outcome", "missed,abandoned"], lambda c: c.outcome in ("missed", "abandoned")),
    (["--caller", "13800000004"], lambda c: c.plan.caller == "13800000004"),
    # R1 broken: answered on the 4th ring, or left ringing for more than three rings
    (["--r1-missed"], lambda c: c.rings > 3),
    (["--category", "repair"], lambda c: c.plan.category == "报修"),
    (["--category", "咨询"], lambda c: c.plan.category == "咨询"),
    (["--from", "{day}T09:00", "--to", "{day}T11:00"],
     lambda c: "09:00" <= c.plan.clock < "11:00"),
    (["--from", "{day}", "--to", "{day}"], lambda c: True),
    (["--to", "{day}T08:30+08:00"], lambda c: c.plan.clock < "08:30"),
])
def test_list_filters_select_the_calls_placed(desk_day, args, wanted):
    args = [a.format(day=desk_day.day.isoformat()) for a in args]
    got = [r["uid"] for r in lines(cli(desk_day, "calls", "list", "--json", *args))]
    expected = [c.uid for c in reversed(desk_day.calls) if wanted(c)]
    assert got == expected and expected


def test_list_relative_times_and_limit(desk_day):
    assert lines(cli(desk_day, "calls", "list", "--json", "--from", "today")) == []
    rows = lines(cli(desk_day, "calls", "list", "--json", "--from", "yesterday", "--to",
                     "yesterday", "--limit", "3"))
    assert [r["uid"] for r in rows] == [c.uid for c in reversed(desk_day.calls)][:3]
    assert len(lines(cli(desk_day, "calls", "list", "--json", "--from", "30d"))) == len(
        desk_day.calls)


def test_list_csv_and_table(desk_day):
    out = cli(desk_day, "calls", "list", "--csv").stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0])[:len(CALL_KEYS)] == list(CALL_KEYS)
    assert [r["caller"] for r in rows] == [c.plan.caller for c in reversed(desk_day.calls)]
    assert rows[-1]["r1_met"] == "true" and rows[-1]["notes"] == "3栋2单元漏水"
    table = cli(desk_day, "calls", "list").stdout
    assert "13800000003" in table and "NO" in table  # the R1 breach stands out


@pytest.mark.parametrize("args, message", [
    (["--outcome", "lost"], "unknown outcome 'lost'"),
    (["--category", "gossip"], "unknown category 'gossip'"),
    (["--from", "last tuesday"], "cannot read the time"),
    (["--from", "2026-11-25", "--to", "2026-11-01"], "is not after"),
    (["--json", "--csv"], "choose one of --json and --csv"),
])
def test_list_bad_options_are_one_line_errors(desk_day, args, message):
    result = cli(desk_day, "calls", "list", *args, ok=False)
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output


def test_show_json_timeline_relative_to_the_ring(desk_day):
    placed = desk_day.calls[0]
    row = json.loads(cli(desk_day, "calls", "show", placed.uid, "--json").stdout)
    assert tuple(row)[:len(CALL_KEYS)] == CALL_KEYS
    ring = placed.events[0][0]
    assert row["ring_start_ms"] == ring
    assert [(e["kind"], e["t_ms"], e["since_ring_ms"]) for e in row["events"]] == [
        (kind, t, t - ring) for t, kind, _ in placed.events]
    assert all(tuple(e)[:len(EVENT_KEYS)] == EVENT_KEYS for e in row["events"])
    answered = next(e for e in row["events"] if e["kind"] == "answered")
    assert answered["since_ring_ms"] == placed.ring_ms  # ring to answer
    assert row["recording"] == str(placed.recording) and row["recording_sha256"] == placed.sha256
    assert row["recording_check"] == "ok" and row["callback"] is None


def test_show_text_and_the_callback_task(desk_day):
    abandoned = next(c for c in desk_day.calls if c.outcome == "abandoned")
    row = json.loads(cli(desk_day, "calls", "show", abandoned.uid, "--json").stdout)
    task = row["callback"]
    assert task["number"] == abandoned.plan.caller and task["reason"] == "abandoned"
    assert task["state"] == "done" and task["outcome"] == "reached"
    assert [a["outcome"] for a in task["attempt_log"]] == ["reached"]
    text = cli(desk_day, "calls", "show", str(row["id"])).stdout
    assert f"callback task {task['id']} for {abandoned.plan.caller}: called back" in text
    assert "+0:08.000" in text and "answered after 2 rings (8.0 s), R1 met" in text
    assert "matches the register" in text
    missed = [c for c in desk_day.calls if c.plan.caller == "13800000004"]
    shown = [json.loads(cli(desk_day, "calls", "show", c.uid, "--json").stdout) for c in missed]
    assert shown[0]["callback"]["id"] == shown[1]["callback"]["id"]  # R14: one task per number
    assert shown[0]["callback"]["calls"] == [s["id"] for s in shown]


def test_show_says_when_the_recording_no_longer_matches(tmp_path):
    day = build_day(tmp_path)
    placed = day.calls[0]
    placed.recording.write_bytes(placed.recording.read_bytes()[:-4] + b"\0\0\0\0")
    row = json.loads(cli(day, "calls", "show", placed.uid, "--json").stdout)
    assert row["recording_check"] == "mismatch"
    assert "DOES NOT MATCH" in cli(day, "calls", "show", placed.uid).stdout
    placed.recording.unlink()
    assert "FILE MISSING" in cli(day, "calls", "show", placed.uid).stdout


def test_show_unknown_call(desk_day):
    result = cli(desk_day, "calls", "show", "nosuchcall", ok=False)
    assert result.exit_code == 1 and "no call 'nosuchcall' in the register" in result.output
    assert "Traceback" not in result.output


def test_note_classifies_and_writes_the_register(tmp_path):
    day = build_day(tmp_path)
    target = day.calls[2]
    out = cli(day, "calls", "note", target.uid, "--category", "complaint", "--text", "投诉等待太久").stdout
    assert "投诉" in out
    cli(day, "calls", "note", target.uid, "--category", "投诉", "--text", "已转主管", "--append")
    row = json.loads(cli(day, "calls", "show", target.uid, "--json").stdout)
    assert (row["category"], row["notes"]) == ("投诉", "投诉等待太久\n已转主管")
    listed = lines(cli(day, "calls", "list", "--json", "--category", "complaint"))
    assert [r["uid"] for r in listed] == [target.uid]
    bad = cli(day, "calls", "note", target.uid, "--category", "spam", ok=False)
    assert bad.exit_code == 2 and "unknown category 'spam'" in bad.output
    missing = cli(day, "calls", "note", "999", "--category", "other", ok=False)
    assert missing.exit_code == 1 and "no call '999'" in missing.output
