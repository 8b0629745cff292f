"""`frontdesk callbacks` with click's CliRunner on a register filled through the writer (R11-R14).

The commands use the real clock, so the calls are placed relative to now and the quiet hours
are switched off in the config (except where a test is about them)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import click
import pytest
from click.testing import CliRunner

from db import callbacks, schema
from db.callback_rules import CallbackRules
from db.ops import CloseCall, OpenCall, new_uid
from db.writer import RegisterWriter
from softphone import config as config_module
from softphone.cli import main
from softphone.cli.callbacks import callbacks as callbacks_group

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime.now(timezone.utc)


def write_config(path, quiet: str = "[]") -> str:
    path.write_text(f'[desk]\ntimezone = "Asia/Shanghai"\n\n[callbacks]\nquiet_hours = {quiet}\n'
                    'worker = "desk-a"\n', encoding="utf-8")
    return str(path)


@pytest.fixture
def desk(tmp_path):
    """(invoke, url): a register with four unanswered cases and a handled call."""
    url = f"sqlite:///{tmp_path}/register.db"
    cfg = write_config(tmp_path / "desk.toml")
    schema.upgrade(url)
    config = config_module.load(cfg, {"storage": {"db": url}}, environ={})
    writer = RegisterWriter(url, tmp_path / "register.journal")
    callbacks.register_hooks(writer, config.callbacks.rules(config.tz))
    writer.start()

    def call(caller, outcome, ago, **fields):
        uid = new_uid()
        started = NOW - ago
        writer.submit(OpenCall(uid, dict(call_id=uid, agent="desk1", caller=caller, called="8000",
                                         started_at=started)))
        writer.submit(CloseCall(uid, dict(outcome=outcome, ended_at=started + timedelta(seconds=30),
                                          **fields)))

    call("13800138000", "missed", timedelta(days=4))  # overdue: more than three days ago
    call("13800138000", "message", timedelta(hours=3), callback_number="02166668888",
         recording="var/recordings/msg.wav", category="找人")
    call("13900139000", "missed", timedelta(hours=2))
    call("13700137000", "missed", timedelta(hours=1))
    call("13700137000", "handled", timedelta(minutes=30))  # resolves 137's task (R14)
    call("anonymous", "silent", timedelta(minutes=20))
    assert writer.flush(5)
    writer.stop()
    runner = CliRunner()

    def invoke(*args, config_file=cfg):
        return runner.invoke(main, ["callbacks", *args, "--db", url, "--config", config_file])

    return invoke, tmp_path


def rows(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines() if line.strip()]


def test_list_json_has_the_stable_keys_in_desk_time(desk):
    invoke, _ = desk
    listed = rows(invoke("list", "--json"))
    assert [(r["number"], r["state"]) for r in listed] == [
        ("13800138000", "open"), ("13900139000", "open"), ("anonymous", "failed")]
    first = listed[0]
    for key in ("id", "number", "reason", "state", "due_at", "deadline_at", "attempts", "calls",
                "overdue"):
        assert key in first
    assert first["reason"] == "missed" and first["typed_number"] == "02166668888"
    assert first["overdue"] is True and listed[1]["overdue"] is False
    assert len(first["calls"]) == 2
    assert first["due_at"].endswith("+08:00") and first["deadline_at"].endswith("+08:00")
    deadline = datetime.fromisoformat(first["deadline_at"])
    assert abs(deadline - (NOW - timedelta(days=1))) < timedelta(seconds=1)

    assert [r["number"] for r in rows(invoke("list", "--json", "--overdue"))] == ["13800138000"]
    done = rows(invoke("list", "--json", "--state", "done"))
    assert [(r["number"], r["outcome"]) for r in done] == [("13700137000", "auto-resolved")]
    assert len(rows(invoke("list", "--json", "--state", "all"))) == 4


def test_list_table_flags_overdue_tasks(desk):
    invoke, _ = desk
    result = invoke("list")
    assert result.exit_code == 0, result.output
    assert "OVERDUE" in result.output and "13900139000" in result.output
    assert "no-number" in result.output


def test_next_claims_the_oldest_and_shows_the_callers_history(desk):
    invoke, _ = desk
    out = json.loads(invoke("next", "--json", "--worker", "desk-a").output)
    task = out["task"]
    assert (task["number"], task["state"], task["claimed_by"], task["attempts"]) == (
        "13800138000", "claimed", "desk-a", 1)
    assert [c["outcome"] for c in out["history"]] == ["message", "missed"]  # newest first
    assert out["history"][0]["recording"] == "var/recordings/msg.wav"
    assert {c["id"] for c in out["linked_calls"]} == set(task["calls"])
    assert out["attempts"][-1]["worker"] == "desk-a" and out["attempts"][-1]["outcome"] is None

    text = invoke("next", "--worker", "desk-b")
    assert text.exit_code == 0, text.output
    assert "13900139000" in text.output and "Caller's history" in text.output
    nothing = invoke("next", "--worker", "desk-c")
    assert nothing.exit_code == 0 and "next task is due" in nothing.output


def test_done_needs_the_claim_and_reschedules_unreached_attempts(desk):
    invoke, _ = desk
    task = json.loads(invoke("next", "--json").output)["task"]  # worker from the config: desk-a
    tid = str(task["id"])

    wrong = invoke("done", tid, "--outcome", "reached", "--worker", "desk-b")
    assert wrong.exit_code == 1 and "claimed by 'desk-a', not by 'desk-b'" in wrong.output
    unknown = invoke("done", "999", "--outcome", "reached")
    assert unknown.exit_code == 1 and "no callback task 999" in unknown.output
    bad = invoke("done", tid, "--outcome", "maybe")
    assert bad.exit_code == 2  # click refuses the choice

    again = invoke("done", tid, "--outcome", "no-answer", "--note", "rang 15 s")
    assert again.exit_code == 0, again.output
    assert "next try at" in again.output and "OVERDUE" in again.output
    after = {r["id"]: r for r in rows(invoke("list", "--json"))}[task["id"]]
    assert after["state"] == "open" and after["outcome"] == "no-answer"
    assert "rang 15 s" in after["notes"]
    not_claimed = invoke("done", tid, "--outcome", "reached")
    assert not_claimed.exit_code == 1 and "not claimed" in not_claimed.output

    second = json.loads(invoke("next", "--json", "--id", tid).output)["task"]
    assert second["attempts"] == 2
    closed = invoke("done", tid, "--outcome", "resolved", "--note", "plumber booked")
    assert closed.exit_code == 0 and "done (resolved)" in closed.output
    shown = json.loads(invoke("show", tid, "--json").output)
    assert [a["outcome"] for a in shown["attempts"]] == ["no-answer", "resolved"]
    assert shown["task"]["state"] == "done"


def test_reschedule_refuses_quiet_hours_with_the_next_allowed_time(desk):
    invoke, tmp_path = desk
    default_quiet = write_config(tmp_path / "quiet.toml", quiet='["12:00-14:00", "21:00-08:00"]')
    tid = str(rows(invoke("list", "--json"))[1]["id"])
    refused = invoke("reschedule", tid, "--at", "tomorrow 12:30", config_file=default_quiet)
    assert refused.exit_code == 1
    tomorrow = (NOW.astimezone(SH) + timedelta(days=1)).strftime("%Y-%m-%d")
    assert "quiet hours" in refused.output and f"{tomorrow}T14:00:00.000+08:00" in refused.output
    moved = invoke("reschedule", tid, "--at", "tomorrow 09:30", "--note", "asked for the morning",
                   config_file=default_quiet)
    assert moved.exit_code == 0 and f"due at {tomorrow} 09:30" in moved.output
    nonsense = invoke("reschedule", tid, "--at", "soonish")
    assert nonsense.exit_code == 1 and "not a time" in nonsense.output


def test_nothing_is_claimed_in_quiet_hours(desk):
    invoke, tmp_path = desk
    local = NOW.astimezone(SH)
    window = f'["{(local - timedelta(hours=1)):%H:%M}-{(local + timedelta(hours=1)):%H:%M}"]'
    quiet = write_config(tmp_path / "now-quiet.toml", quiet=window)
    out = json.loads(invoke("next", "--json", config_file=quiet).output)
    assert out["task"] is None and "Quiet hours" in out["why"]
    assert all(r["state"] != "claimed" for r in rows(invoke("list", "--json")))


def test_add_merges_into_the_open_task_of_the_number(desk):
    invoke, _ = desk
    created = invoke("add", "13500135000", "--reason", "repair follow-up", "--note", "boiler")
    assert created.exit_code == 0 and "Task" in created.output
    merged = invoke("add", "13900139000", "--reason", "message", "--note", "call after 3pm")
    assert merged.exit_code == 0 and "already has open task" in merged.output
    by_number = {r["number"]: r for r in rows(invoke("list", "--json"))}
    assert by_number["13500135000"]["reason"] == "repair follow-up"
    assert "call after 3pm" in by_number["13900139000"]["notes"]
    nobody = invoke("add", "anonymous", "--reason", "x")
    assert nobody.exit_code == 1 and "no number" in nobody.output


def test_cancel_closes_a_looked_at_anonymous_case(desk):
    invoke, _ = desk
    anon = [r for r in rows(invoke("list", "--json")) if r["number"] == "anonymous"][0]
    result = invoke("cancel", str(anon["id"]), "--note", "silent line, nothing to do")
    assert result.exit_code == 0, result.output
    assert all(r["number"] != "anonymous" for r in rows(invoke("list", "--json")))
    twice = invoke("cancel", str(anon["id"]), "--note", "again")
    assert twice.exit_code == 1 and "already cancelled" in twice.output


def test_every_command_and_option_has_help():
    assert callbacks_group.help
    for name, command in callbacks_group.commands.items():
        assert command.help, name
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts}"


def test_the_callbacks_config_section_builds_the_rules(tmp_path):
    path = tmp_path / "desk.toml"
    path.write_text('[desk]\ntimezone = "Europe/Berlin"\n[callbacks]\n'
                    'quiet_hours = ["12:30-13:30", "20:00-09:00"]\nworking_days = ["mon-fri"]\n'
                    'holidays = [2026-12-24, "2026-12-25"]\nretry_backoff = "15m, 1h, next-morning"\n'
                    'deadline_hours = 48\nlease_minutes = 5\n', encoding="utf-8")
    config = config_module.load(str(path), environ={})
    rules = config.callbacks.rules(config.tz)
    assert config.callbacks.holidays == ("2026-12-24", "2026-12-25")
    assert rules.deadline == timedelta(hours=48) and rules.lease == timedelta(minutes=5)
    assert rules.working_days == frozenset(range(5))
    friday_evening = datetime(2026, 12, 18, 20, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    assert rules.next_allowed(friday_evening) == datetime(2026, 12, 21, 9, 0,
                                                          tzinfo=ZoneInfo("Europe/Berlin"))
    assert rules.retry_at(1, friday_evening - timedelta(hours=6)) == friday_evening - timedelta(
        hours=5, minutes=45)
    defaults = config_module.Config().callbacks.rules(SH)
    assert defaults == CallbackRules(tz=SH)  # the config defaults are the rules' own
    assert "[callbacks]" in config_module.reference()
    for bad, key in ((("quiet_hours", '"12-14"'), "callbacks.quiet_hours"),
                     (("working_days", '["funday"]'), "callbacks.working_days"),
                     (("retry_backoff", '"soon"'), "callbacks.retry_backoff"),
                     (("holidays", '["xmas"]'), "callbacks.holidays")):
        path.write_text(f"[callbacks]\n{bad[0]} = {bad[1]}\n", encoding="utf-8")
        with pytest.raises(config_module.ConfigError, match=key):
            config_module.load(str(path), environ={})
