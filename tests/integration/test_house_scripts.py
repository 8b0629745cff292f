"""The house scripts with real peers (issue 4): SIPp callers send corpus audio and keys through
Kamailio to the agent; the outcome, the script steps in the timeline and the prompts in the agent
channel of the recording are checked, and each call re-runs offline to the same decisions.

The calls run at the same time against one agent, each from its own number.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from callflows.flow import FlowSettings
from recordings.prompts import PromptLibrary
from recordings.wavio import read_wav
from softphone.rerun import agree, recorded_decisions, rerun
from tests.rig import media
from tests.rig.sipp import run_sipp, start_sipp

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "corpus"
SPEECH = CORPUS / "dev" / "sp_clean_clean_0_en_allison.wav"
AGENT_CONFIG = {"flow": {"no_speech_ms": 2000, "silent_pause_ms": 1000, "noisy_hold_ms": 5000,
                         "wait_caller_hangup_ms": 3000}}


def corpus(name: str) -> np.ndarray:
    split = "quiet" if name.startswith("quiet") else "dev"
    return read_wav(CORPUS / split / name)[1][:, 0]


def line(audio: np.ndarray, seconds: float, lead_s: float = 0.0) -> np.ndarray:
    """`audio` from `lead_s` (silence before), repeated to fill `seconds`."""
    lead = np.zeros(int(lead_s * 8000), np.int16)
    return np.resize(np.concatenate([lead, audio]), int(seconds * 8000)) if lead_s == 0 else \
        np.concatenate([lead, np.resize(audio, int((seconds - lead_s) * 8000))])


def once(audio: np.ndarray, seconds: float, lead_s: float) -> np.ndarray:
    """Silence, `audio` once, silence to fill `seconds`: a caller who says one thing."""
    out = np.zeros(int(seconds * 8000), np.int16)
    start = int(lead_s * 8000)
    out[start:start + len(audio)] = audio[:len(out) - start]
    return out


CALLS = {
    # number: (scenario, caller audio or keys, SIPp -d, what to expect)
    "13800000001": ("uac_wait_bye", "silent", None),
    "13800000002": ("uac_wait_bye", "comfort_noise", None),
    "13800000003": ("uac_wait_bye", "noisy", None),
    "13800000004": ("uac_normal", "quiet", 32_000),
    "13800000005": ("uac_normal", "speech", 32_000),
    "13800000006": ("uac_normal", "keys", 30_000),
}


@pytest.fixture(scope="module")
def desk(tmp_path_factory, kamailio_factory_module):
    """One agent registered at Kamailio; six callers at once; their rows, events and recordings."""
    from tests.agentproc import AgentProcess
    from tests.rig.ports import free_endpoint

    tmp = tmp_path_factory.mktemp("house")
    kam = kamailio_factory_module()
    endpoint = free_endpoint()
    agent = AgentProcess(tmp / "agent", listen=(endpoint.host, endpoint.port), registrar=kam.address,
                         user="8800", password="secret", answer_delay_ms=300, config=AGENT_CONFIG).start()
    kam.wait_for_binding("8800", 5.0)
    speech = corpus(SPEECH.name)
    audio = {
        "silent": np.zeros(8000 * 40, np.int16),
        "comfort_noise": line(corpus("silent_pink_65dBFS.wav"), 40),
        "noisy": line(corpus("noise_pink_25dBFS.wav"), 40),
        "quiet": once(corpus("quiet_45dBFS_none_2_en_allison.wav")[:8000 * 5], 40, lead_s=6.0),
        "speech": once(speech, 40, lead_s=6.0),
    }
    pcaps = {kind: media.make_rtp_pcap(samples, tmp / f"{kind}.pcap").path for kind, samples in audio.items()}
    # keys: 1 (leave a number) after the greeting, the number and #, then 1 to confirm the read-back
    presses = [7.0] + [11.0 + 0.5 * i for i in range(6)] + [22.0]
    pcaps["keys"] = media.make_dtmf_pcap("113800#1", tmp / "keys.pcap", at=presses, tail_s=10).path
    runs = []
    for number, (scenario, kind, duration) in CALLS.items():
        runs.append(start_sipp(scenario, kam.hostport, service="8800", pcap=pcaps[kind], duration_ms=duration,
                               workdir=tmp, local_ip="127.0.0.1", name=f"c{number}",
                               scenario_vars={"CALLER": number, "WAIT_BYE_MS": "40000"}))
    results = [run.wait(70) for run in runs]
    rows = {row["caller"]: row for row in agent.wait_calls(len(CALLS), timeout=30)}
    yield agent, rows, results
    agent.stop()


@pytest.fixture(scope="module")
def kamailio_factory_module(tmp_path_factory):
    from tests.rig.fixtures import require
    from tests.rig.kamailio import Kamailio
    require("kamailio", "kamcmd")
    made = []

    def make(**kw):
        k = Kamailio(tmp_path_factory.mktemp("kam"), password="secret", **kw)
        made.append(k)
        return k.start()
    yield make
    for k in made:
        k.stop()


def steps(agent, row) -> list[tuple[str, str]]:
    return [(e["data"]["script"], e["data"]["step"]) for e in agent.events(row["id"])
            if e["kind"] == "script" and "script" in (e["data"] or {})]


def prompts(agent, row) -> list[str]:
    return [e["data"]["prompt"] for e in agent.events(row["id"]) if e["kind"] == "prompt"]


def assert_prompts_audible(agent, row):
    """Each prompt the timeline says was played is in the agent channel at that time (within 50 ms)."""
    events = agent.events(row["id"])
    start = next(e["t_ms"] for e in events if e["kind"] == "recording")
    agent_side = read_wav(row["recording"])[1][:, 1].astype(float)
    library = PromptLibrary()
    checked = 0
    for event in events:
        if event["kind"] != "prompt" or event["data"]["prompt"] == "beep":
            continue
        offset = (event["t_ms"] - start) * 8
        heard = agent_side[max(0, offset - 400):offset + 8000 + 400]
        expected = library.render(event["data"]["prompt"]).pcm.astype(float)[:max(0, len(heard) - 800)]
        if len(expected) < 2000:
            continue  # the call ended just as this prompt began
        corr = np.correlate(heard, expected, mode="valid")
        energy = np.convolve(heard ** 2, np.ones(len(expected)), mode="valid")
        best = np.max(corr / np.sqrt(np.sum(expected ** 2) * np.maximum(energy, 1e-9)))
        assert best > 0.95, f"{event['data']['prompt']} not in the agent channel (correlation {best:.2f})"
        checked += 1
    assert checked >= 2


def assert_rerun_agrees(agent, row):
    events = agent.events(row["id"])
    caller = read_wav(row["recording"])[1][:, 0]
    settings = FlowSettings(**{k: v for k, v in AGENT_CONFIG["flow"].items()})
    assert agree(recorded_decisions(events), rerun(events, caller, settings))


def test_silent_line_runs_the_r6_script(desk):
    agent, rows, _ = desk
    for number in ("13800000001", "13800000002"):  # digital silence, and comfort noise at -65 dBFS
        row = rows[number]
        assert row["outcome"] == "silent" and row["hung_up_first"] == "agent", number
        assert steps(agent, row)[-4:] == [("silent", "hello"), ("silent", "hello"), ("silent", "goodbye"),
                                          ("silent", "hang_up")]
        assert prompts(agent, row) == ["greeting", "silent_hello", "silent_hello_company", "silent_goodbye"]
        assert_prompts_audible(agent, row)
        assert_rerun_agrees(agent, row)


def test_noisy_line_runs_the_r7_script(desk):
    agent, rows, _ = desk
    row = rows["13800000003"]
    assert row["outcome"] == "noisy" and row["hung_up_first"] == "agent"
    assert ("noisy", "ask_louder") in steps(agent, row) and ("noisy", "goodbye") in steps(agent, row)
    assert prompts(agent, row)[-2:] == ["noisy_louder", "noisy_goodbye"]
    assert_prompts_audible(agent, row)
    assert_rerun_agrees(agent, row)


def test_quiet_caller_is_asked_once_to_speak_up_r8(desk):
    agent, rows, _ = desk
    row = rows["13800000004"]
    assert prompts(agent, row).count("quiet_louder") == 1
    assert row["outcome"] == "message"
    assert_prompts_audible(agent, row)
    assert_rerun_agrees(agent, row)


def test_caller_who_speaks_gets_the_menu_and_the_callback_closing(desk):
    agent, rows, _ = desk
    row = rows["13800000005"]
    assert row["outcome"] == "message" and row["hung_up_first"] == "caller"
    assert prompts(agent, row)[:3] == ["greeting", "message_menu", "closing_callback"]
    assert "quiet_louder" not in prompts(agent, row) and "silent_hello" not in prompts(agent, row)
    assert_prompts_audible(agent, row)
    assert_rerun_agrees(agent, row)
    assert row["callback_task_id"] is not None  # R4/R12: a request that could not be answered at once


def test_keypad_callback_number_is_read_back_and_kept_r11(desk):
    agent, rows, _ = desk
    row = rows["13800000006"]
    assert row["callback_number"] == "13800" and row["dtmf"] == "113800#1"
    assert prompts(agent, row)[:4] == ["greeting", "enter_number", "confirm_intro", "confirm_menu"]
    read_back = next(e for e in agent.events(row["id"]) if e["kind"] == "prompt" and e["data"]["prompt"] == "confirm_intro")
    assert read_back["data"]["text"].endswith("13800")
    assert row["outcome"] == "message"
    assert_rerun_agrees(agent, row)


def test_after_hours_and_busy(agent_factory, rig_media, tmp_path):
    """Outside working hours: the after-hours prompt and the message option; over the line limit: 486."""
    import datetime
    today = datetime.date.today().isoformat()
    agent = agent_factory(answer_delay_ms=200, config={"hours": {"holidays": [today, (
        datetime.date.today() + datetime.timedelta(days=1)).isoformat(), (
        datetime.date.today() - datetime.timedelta(days=1)).isoformat()]}, "sip": {"max_calls": 1}})
    target = f"{agent.listen[0]}:{agent.listen[1]}"
    first = start_sipp("uac_normal", target, pcap=rig_media.silence_pcmu, duration_ms=9000, workdir=tmp_path,
                       local_ip="127.0.0.1", name="first", scenario_vars={"CALLER": "13700000001"})
    import time
    time.sleep(1.0)
    busy = run_sipp("uac_normal", target, duration_ms=500, workdir=tmp_path, local_ip="127.0.0.1", name="second",
                    timeout_s=10, scenario_vars={"CALLER": "13700000002"})
    assert busy.failed == 1  # refused
    first.wait(20)
    rows = {row["caller"]: row for row in agent.wait_calls(2)}
    assert rows["13700000002"]["outcome"] == "busy" and rows["13700000002"]["sip_code"] == 486
    after = rows["13700000001"]
    assert after["outcome"] == "after_hours"
    assert prompts(agent, after)[:2] == ["after_hours", "message_menu"]
