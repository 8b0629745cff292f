"""The supervisors' commands on real calls: SIPp calls the real agent (direct mode, 127.0.0.x),
`frontdesk follow` watches live, then `calls list`, `report`, `calls show/replay` and
`register export` are checked against the calls placed and against the register itself."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from recordings.wavio import read_wav
from softphone.cli import main
from tests.rig.sipp import run_sipp

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ANSWER_MS = 1500  # one ring (R1 met); the cancelled call hangs up before it


def cli(agent, *args):
    result = CliRunner().invoke(main, [*args, "--config", str(agent.config_path)])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_follow_list_report_show_replay_export_on_real_calls(agent_factory, rig_media, tmp_path):
    agent = agent_factory(answer_delay_ms=ANSWER_MS)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("FRONTDESK_DB", None)
    follower = subprocess.Popen(
        [sys.executable, "-m", "softphone", "follow", "--json", "--since", "1m",
         "--config", str(agent.config_path)], cwd=REPO, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        sipp = dict(local_ip=agent.listen[0].rsplit(".", 1)[0] + ".250")
        where = f"{agent.listen[0]}:{agent.listen[1]}"
        placed = []
        run_sipp("uac_normal", where, pcap=rig_media.speech_pcmu, duration_ms=9000, timeout_s=30,
                 workdir=tmp_path / "c1", **sipp).assert_ok(1)  # talks past the greeting
        placed.append("answered")
        run_sipp("uac_cancel", where, duration_ms=500, timeout_s=30, workdir=tmp_path / "c2",
                 scenario_vars={"FINAL_WAIT_MS": "3000"}, **sipp)
        placed.append("missed")
        run_sipp("uac_normal", where, pcap=rig_media.silence_pcmu, duration_ms=1000, timeout_s=30,
                 workdir=tmp_path / "c3", **sipp).assert_ok(1)
        placed.append("abandoned")
        run_sipp("uac_normal", where, pcap=rig_media.speech_pcmu, duration_ms=9000, timeout_s=30,
                 workdir=tmp_path / "c4", **sipp).assert_ok(1)
        placed.append("answered")
        register = agent.wait_calls(len(placed))  # oldest first, read in-process
        time.sleep(1.0)  # a few polls of the follower after the last commit
    finally:
        follower.send_signal(signal.SIGINT)
        try:
            out, err = follower.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            follower.kill()  # leave nothing running
            follower.communicate(timeout=5)
            raise
    assert follower.returncode == 0 and "Traceback" not in err

    # the register as the agent wrote it matches what was placed (answered calls: handled or a
    # message, whatever the caller said; the flow decides that, not this test)
    outcomes = [r["outcome"] for r in register]
    assert outcomes[1:3] == ["missed", "abandoned"]
    assert not {outcomes[0], outcomes[3]} & {"missed", "abandoned"}, outcomes
    answered = [r for r in register if r["answered_at"]]
    assert len(answered) == placed.count("answered") + placed.count("abandoned")

    # calls list --json: the same rows, newest first
    listed = [json.loads(line) for line in cli(agent, "calls", "list", "--json").splitlines()]
    assert listed == register[::-1]
    missed = [json.loads(line) for line in
              cli(agent, "calls", "list", "--json", "--outcome", "missed").splitlines()]
    assert [r["uid"] for r in missed] == [register[1]["uid"]]

    # report --json against the calls placed
    report = json.loads(cli(agent, "report", "--json", "--from", "today"))
    assert report["calls"] == len(placed)
    assert report["answered"] == len(answered)
    assert report["answered_within_3_rings"] == len(answered)  # answered after one ring
    assert report["missed"] == 1 and report["abandoned"] == 1
    assert abs(report["ring_to_answer_ms"]["p50"] - ANSWER_MS) <= 60
    assert report["ring_to_answer_ms"]["max"] == max(r["ring_ms"] for r in answered)
    assert report["time_to_abandon_ms"]["count"] == 2
    assert report["callbacks_open"] >= 0 and report["callbacks_overdue"] == 0
    assert report["callback_duplicates"] == 0 and report["callback_attempts_in_quiet_hours"] == 0
    assert sum(d["calls"] for d in report["by_day"]) == len(placed)

    # follow saw every event of every call, in order, as the register holds them
    items = [json.loads(line) for line in out.splitlines()]
    for row in register:
        kinds = [i["kind"] for i in items if i["uid"] == row["uid"]]
        assert kinds == [e["kind"] for e in agent.events(row["id"])], row["outcome"]
        assert kinds[0] == "ringing" and kinds[-1] == "ended"

    # show and replay --out the first call: its recording matches the register
    first = register[0]
    shown = json.loads(cli(agent, "calls", "show", str(first["id"]), "--json"))
    assert shown["recording_check"] == "ok" and shown["ring_start_ms"] >= 0
    answered_event = next(e for e in shown["events"] if e["kind"] == "answered")
    assert abs(answered_event["since_ring_ms"] - first["ring_ms"]) <= 5
    wav = tmp_path / "caller.wav"
    cli(agent, "calls", "replay", str(first["id"]), "--channel", "caller", "--out", str(wav))
    assert len(read_wav(wav)[1]) == len(read_wav(first["recording"])[1])

    # the paper register
    exported = json.loads(cli(agent, "register", "export", "--format", "json", "--lang", "en"))
    assert [r["No."] for r in exported] == [r["id"] for r in register]
    assert [r["Number"] for r in exported] == [r["caller"] for r in register]
