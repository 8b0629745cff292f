"""R18, nothing is lost: kill -9 during a call, and a database outage while calls come in."""
from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from db import callbacks
from db.engine import make_engine, session_factory
from recordings.wavio import read_wav
from tests.rig.sipp import run_sipp, start_sipp

pytestmark = pytest.mark.integration


def wait_for(predicate, timeout: float, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not met in time")


def test_kill_9_during_a_call_leaves_an_interrupted_row_a_playable_recording_and_a_callback(
        agent_factory, rig_media, tmp_path):
    agent = agent_factory(answer_delay_ms=200)
    target = f"{agent.listen[0]}:{agent.listen[1]}"
    sipp = start_sipp("uac_wait_bye", target, pcap=rig_media.speech_pcmu, workdir=tmp_path, local_ip="127.0.0.1",
                      scenario_vars={"WAIT_BYE_MS": "8000"})
    wait_for(lambda: any(r["status"] == "answered" and r["recording"] for r in agent.calls()), 10)
    time.sleep(3.0)  # a few seconds of recording reach the disk (the writer flushes every second)
    agent.kill()  # SIGKILL: no shutdown code runs
    sipp.stop()
    (row,) = agent.calls()
    assert row["status"] == "answered" and row["outcome"] is None  # the row was there before the crash
    rate, partial = read_wav(row["recording"])  # already playable as it lies on disk
    assert rate == 8000 and len(partial) >= 8000 * 1.5

    agent.start()  # the same register, journal and recordings folder
    (row,) = wait_for(lambda: [r for r in agent.calls() if r["status"] == "ended"], 10)
    assert row["outcome"] == "interrupted" and row["hung_up_first"] == "system" and row["end_reason"] == "crash"
    assert row["recording_sha256"] and row["recording_ms"] >= 1500
    rate, repaired = read_wav(row["recording"])
    assert len(repaired) >= len(partial)
    engine = make_engine(agent.db)
    try:
        with session_factory(engine)() as session:
            tasks = callbacks.list_tasks(session, datetime.now(timezone.utc))
            assert [(t.number, t.state, t.reason) for t in tasks] == [("13800138000", "open", "interrupted")]
    finally:
        engine.dispose()


def test_missed_and_abandoned_calls_queue_one_callback_per_number(agent_factory, rig_media, tmp_path):
    """R12/R14 through the running agent: two unanswered calls from one number -> one task, two calls."""
    agent = agent_factory(answer_delay_ms=3000)
    target = f"{agent.listen[0]}:{agent.listen[1]}"
    for n in range(2):
        result = run_sipp("uac_cancel", target, duration_ms=500, timeout_s=20, workdir=tmp_path,
                          local_ip="127.0.0.1", name=f"cancel{n}", scenario_vars={"FINAL_WAIT_MS": "5000"})
        assert result.log_has("RESULT 487"), result.describe()
    rows = agent.wait_calls(2)
    engine = make_engine(agent.db)
    try:
        with session_factory(engine)() as session:
            (task,) = callbacks.list_tasks(session, datetime.now(timezone.utc))
            linked = sorted(call.id for call in callbacks.task_calls(session, task))
            assert task.reason == "missed" and linked == sorted(r["id"] for r in rows)
    finally:
        engine.dispose()


def test_database_outage_loses_no_register_entry(agent_factory, pg_database_factory, pg_server, rig_media, tmp_path):
    """PostgreSQL goes away while calls come in: calls are answered as usual, the rows arrive later."""
    url = pg_database_factory()
    agent = agent_factory(answer_delay_ms=200, db=url)
    target = f"{agent.listen[0]}:{agent.listen[1]}"
    run_sipp("uac_normal", target, pcap=rig_media.speech_pcmu, duration_ms=1000, timeout_s=20, workdir=tmp_path,
             local_ip="127.0.0.1", name="before").assert_ok(1)
    agent.wait_calls(1)
    pg_server.stop()
    try:
        result = run_sipp("uac_normal", target, pcap=rig_media.speech_pcmu, duration_ms=1000, calls=3, rate=5,
                          timeout_s=30, workdir=tmp_path, local_ip="127.0.0.1", name="during")
        result.assert_ok(3)  # the call path never waits on the database
        for timing in result.timings:
            assert timing["invite_to_180_ms"] < 50
    finally:
        pg_server.start()
    rows = agent.wait_calls(4, timeout=30)
    assert all(r["status"] == "ended" and r["recording_sha256"] for r in rows)
