"""Correctness under load: 30 calls at once through the agent, speech both ways (not a benchmark:
the figures are bench/load.py's, docs/benchmarks.md).

SIPp places 30 calls within a second, each plays caller speech for ~6 s; the agent answers after
its ring delay, plays the greeting, listens (line detector) and records every call.  Then every
call must be in the register, ended, with its recording's checksum; every recording must be as
long as the talk time and its caller channel must carry the very speech SIPp sent, with no gap or
stretch: the offset found by cross-correlation near the start equals the one near the end.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from bench.common import check_recording
from recordings.wavio import read_wav as read_recording
from tests.rig import media
from tests.rig.sipp import run_sipp

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CALLS = 30
TALK_MS = 6000
RING_MS = 300
SPEECH = Path(__file__).resolve().parents[1] / "fixtures" / "corpus" / "dev" / "sp_clean_clean_0_en_allison.wav"


def test_thirty_calls_at_once_recorded_completely(agent_factory, tmp_path):
    rate, speech = media.read_wav(SPEECH)
    assert rate == 8000
    audio = np.tile(speech, 2)[: 8000 * (TALK_MS // 1000 + 3)]
    pcap = media.make_rtp_pcap(audio, tmp_path / "speech.pcap").path
    sent = media.ulaw_decode(media.ulaw_encode(audio))  # what the agent can hear at best
    agent = agent_factory(answer_delay_ms=RING_MS, config={"sip": {"max_calls": CALLS + 10}})

    result = run_sipp("uac_normal", f"{agent.listen[0]}:{agent.listen[1]}", pcap=pcap, duration_ms=TALK_MS,
                      calls=CALLS, rate=CALLS, rate_period_ms=1000, limit=CALLS, timeout_s=40,
                      workdir=tmp_path, local_ip=agent.listen[0].rsplit(".", 1)[0] + ".250")
    result.assert_ok(CALLS)

    # SIP timing as SIPp saw it: a loose bound for CI (the bench measures the real figure)
    to_180 = sorted(t["invite_to_180_ms"] for t in result.timings)
    assert len(to_180) == CALLS
    assert np.percentile(to_180, 99) < 50, to_180

    rows = agent.wait_calls(CALLS, timeout=20)
    by_call_id = {r["call_id"]: r for r in rows}
    problems = []
    for timing in result.timings:
        row = by_call_id.get(timing["call_id"])
        if row is None:
            problems.append(f"{timing['call_id']}: not in the register")
            continue
        if row["status"] != "ended" or not row["recording_sha256"] or not row["recording"]:
            problems.append(f"{row['id']}: status {row['status']}, recording {row['recording']!r}, "
                            f"sha256 {row['recording_sha256']!r}")
            continue
        data = Path(row["recording"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != row["recording_sha256"]:
            problems.append(f"{row['id']}: recording changed after its checksum was taken")
        wav_rate, stereo = read_recording(row["recording"])
        caller = stereo[:, 0]
        length_ms = len(caller) / 8
        if wav_rate != 8000 or abs(length_ms - row["talk_ms"]) > 200:
            problems.append(f"{row['id']}: {length_ms:.0f} ms recorded for {row['talk_ms']} ms of talk")
        if media.rms_dbfs(caller) < -45:  # the caller spoke the whole call
            problems.append(f"{row['id']}: caller channel nearly silent ({media.rms_dbfs(caller):.1f} dBFS)")
        check = check_recording(caller, sent, exact=False, window_s=2.0, search_s=1.0)
        if "error" in check:
            problems.append(f"{row['id']}: {check['error']}")
            continue
        if min(check["corr_start"], check["corr_end"]) < 0.9:  # the caller channel is SIPp's speech
            problems.append(f"{row['id']}: caller channel does not match the speech sent {check}")
        if abs(check["offset_shift_ms"]) > 40:  # a gap or a stretch between start and end
            problems.append(f"{row['id']}: audio moved by {check['offset_shift_ms']} ms during the call {check}")
    assert not problems, "\n".join(problems)
