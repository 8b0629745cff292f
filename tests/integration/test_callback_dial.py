"""The agent calls customers back itself (issue 5, R13): a SIPp customer answers and presses a key,
or does not, or is busy; the attempt is recorded against the task with the outgoing call."""
from __future__ import annotations

import time
from datetime import datetime, timezone

import numpy as np
import pytest

from db import callbacks
from db.engine import make_engine, session_factory
from recordings.wavio import read_wav
from softphone import config as config_module
from tests.rig import media
from tests.rig.ports import free_endpoint
from tests.rig.sipp import start_sipp

pytestmark = pytest.mark.integration
NUMBER = "13900139000"


def dialing_agent(agent_factory, customer, *, quiet_hours=()):
    return agent_factory(config={"callbacks": {
        "dial": True, "dial_interval_s": 1, "quiet_hours": list(quiet_hours),
        "dial_target": f"sip:{{number}}@{customer.host}:{customer.port}"}})


def open_task(agent, reason="missed"):
    engine = make_engine(agent.db, immediate=True)
    cfg = config_module.load(agent.config_path, environ={})
    work = callbacks.CallbackQueue(engine, cfg.callbacks.rules(cfg.tz))
    task, _ = work.add(NUMBER, reason, note="test")
    engine.dispose()
    return task.id


def task_state(agent, task_id):
    engine = make_engine(agent.db)
    try:
        with session_factory(engine)() as session:
            task = callbacks.get_task(session, task_id)
            attempts = callbacks.attempts_of(session, task)
            return task.state, task.outcome, [(a.outcome, a.call_id) for a in attempts]
    finally:
        engine.dispose()


def wait_attempt(agent, task_id, timeout=40.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state, outcome, attempts = task_state(agent, task_id)
        if attempts and attempts[-1][0] is not None:
            return state, outcome, attempts
        time.sleep(0.3)
    raise AssertionError(f"no attempt recorded: {task_state(agent, task_id)}")


def test_customer_presses_1_and_the_task_is_resolved(agent_factory, tmp_path):
    customer = free_endpoint()
    keys = media.make_dtmf_pcap("1", tmp_path / "press1.pcap", lead_s=4.0, drop_first=True)  # a lost first packet
    uas = start_sipp("uas_callback", None, workdir=tmp_path, local_ip=customer.host, local_port=customer.port,
                     pcap=keys.path, duration_ms=500, calls=1, scenario_vars={"WAIT_BYE_MS": "40000"})
    agent = dialing_agent(agent_factory, customer)
    task_id = open_task(agent)
    state, outcome, attempts = wait_attempt(agent, task_id)
    assert (state, outcome) == ("done", "resolved")
    result = uas.wait(15)
    assert result.log_has("UAS answered") and result.log_has("UAS got BYE"), result.describe()
    (call,) = [c for c in agent.calls() if c["direction"] == "out"]
    assert attempts == [("resolved", call["id"])]  # the attempt names the outgoing call (R13 record)
    assert call["called"] == NUMBER and call["outcome"] == "handled" and call["dtmf"] == "1"
    rate, stereo = read_wav(call["recording"])
    assert media.rms_dbfs(stereo[:, 1]) > -35  # the agent spoke: intro, reason, menu, thanks
    kinds = [e["kind"] for e in agent.events(call["id"])]
    assert kinds[:2] == ["dialing", "ringing"] and "answered" in kinds and "dtmf" in kinds


def test_no_key_is_never_resolved_and_the_task_is_rescheduled(agent_factory, rig_media, tmp_path):
    """A customer (or an answering machine) who talks but presses nothing: voicemail, not resolved."""
    customer = free_endpoint()
    speech = read_wav(rig_media.speech_wav)[1][:, 0]
    talk = media.make_rtp_pcap(np.tile(speech, 6), tmp_path / "talk.pcap")
    uas = start_sipp("uas_callback", None, workdir=tmp_path, local_ip=customer.host, local_port=customer.port,
                     pcap=talk.path, duration_ms=300, calls=1, scenario_vars={"WAIT_BYE_MS": "60000"})
    agent = dialing_agent(agent_factory, customer)
    task_id = open_task(agent, reason="silent")
    state, outcome, attempts = wait_attempt(agent, task_id, timeout=60)
    assert state == "open" and outcome == "voicemail" and attempts[0][0] == "voicemail"
    uas.stop()


def test_busy_customer_is_retried_later(agent_factory, tmp_path):
    customer = free_endpoint()
    uas = start_sipp("uas_busy", None, workdir=tmp_path, local_ip=customer.host, local_port=customer.port, calls=1)
    agent = dialing_agent(agent_factory, customer)
    task_id = open_task(agent)
    state, outcome, attempts = wait_attempt(agent, task_id)
    assert (state, outcome) == ("open", "busy")
    engine = make_engine(agent.db)
    with session_factory(engine)() as session:
        task = callbacks.get_task(session, task_id)
        assert task.due_at > datetime.now(timezone.utc)  # back-off: not before 30 min from now
    engine.dispose()
    uas.stop()


def test_no_callback_is_placed_in_quiet_hours(agent_factory, tmp_path):
    """R13: never disturb the customer in rest hours."""
    customer = free_endpoint()
    uas = start_sipp("uas_busy", None, workdir=tmp_path, local_ip=customer.host, local_port=customer.port, calls=1)
    agent = dialing_agent(agent_factory, customer, quiet_hours=["00:00-23:59"])
    task_id = open_task(agent)
    time.sleep(4.0)  # four dialer rounds
    assert task_state(agent, task_id) == ("open", None, [])
    assert not uas.running() or not uas.stop().messages  # nobody was called


def test_nobody_answers_the_agent_cancels_after_the_ring_timeout(agent_factory, tmp_path):
    customer = free_endpoint()
    uas = start_sipp("uas_ringing", None, workdir=tmp_path, local_ip=customer.host, local_port=customer.port,
                     calls=1, scenario_vars={"WAIT_BYE_MS": "30000"})
    agent = agent_factory(config={"callbacks": {
        "dial": True, "dial_interval_s": 1, "quiet_hours": [], "ring_timeout_s": 5,
        "dial_target": f"sip:{{number}}@{customer.host}:{customer.port}"}})
    task_id = open_task(agent)
    state, outcome, attempts = wait_attempt(agent, task_id)
    assert (state, outcome) == ("open", "no-answer")
    result = uas.wait(10)
    assert result.log_has("UAS cancelled"), result.describe()  # CANCEL, then the 487 was ACKed
    (call,) = [c for c in agent.calls() if c["direction"] == "out"]
    assert call["outcome"] == "missed" and call["sip_code"] == 487 and call["answered_at"] is None
