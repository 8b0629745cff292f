"""`frontdesk calls replay`: the recording through pyaudio/PortAudio/ALSA, checked byte for byte.

No sound card is needed: each test gives the replay its own $HOME with an .asoundrc whose
default PCM is a `file` plugin on a `null` slave, so what PortAudio plays lands in out.raw.
The replay runs as a subprocess (ALSA reads $HOME/.asoundrc once per process).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from recordings.wavio import read_wav
from softphone.cli import main
from tests.unit.test_cli_day import build_day

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    return build_day(tmp_path_factory.mktemp("replay"))


def sound_home(folder: Path, default_pcm: str | None = None) -> tuple[Path, Path]:
    """A $HOME whose ALSA default output writes raw frames to <folder>/out.raw."""
    home = folder / "home"
    home.mkdir(parents=True, exist_ok=True)
    raw = folder / "out.raw"
    pcm = default_pcm or (f'pcm.!default {{\n  type file\n  slave.pcm "null"\n'
                          f'  file "{raw}"\n  format "raw"\n}}\n')
    (home / ".asoundrc").write_text(pcm, encoding="utf-8")
    return home, raw


def replay(day, home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
           "LANG": "C.UTF-8"}
    return subprocess.run([sys.executable, "-m", "softphone", "calls", "replay", *args,
                           *day.args()], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)


def played(raw: Path, channels: int) -> np.ndarray:
    return np.frombuffer(raw.read_bytes(), dtype="<i2").reshape(-1, channels)


def test_replay_plays_the_stereo_recording_and_prints_the_timeline(day, tmp_path):
    placed = day.calls[0]
    home, raw = sound_home(tmp_path)
    result = replay(day, home, placed.uid)
    assert result.returncode == 0, result.stderr
    _, recorded = read_wav(placed.recording)
    assert np.array_equal(played(raw, 2), recorded)  # every frame, both sides
    out = result.stdout.splitlines()
    timeline = [line for line in out if line.startswith(("  +", " +"))]
    assert len(timeline) == len(placed.events)  # every event printed once, in order
    kinds = ["ringing", "answered", "call set up", "script", "prompt greeting (", "prompt greeting done",
             "caller speaking", "DTMF 5", "caller stopped", "hung up by the caller", "ended: handled"]
    assert all(k in line for k, line in zip(kinds, timeline))
    assert result.stderr == ""  # ALSA/JACK chatter kept off the terminal


@pytest.mark.parametrize("channel, column", [("caller", 0), ("agent", 1)])
def test_replay_one_side_is_mono(day, tmp_path, channel, column):
    placed = day.calls[1]
    home, raw = sound_home(tmp_path)
    result = replay(day, home, placed.uid, "--channel", channel)
    assert result.returncode == 0, result.stderr
    assert np.array_equal(played(raw, 1)[:, 0], placed.samples[:, column])


def test_replay_faster_is_shorter_and_still_the_same_side(day, tmp_path):
    placed = day.calls[0]
    home, raw = sound_home(tmp_path)
    result = replay(day, home, placed.uid, "--channel", "caller", "--speed", "2")
    assert result.returncode == 0, result.stderr
    fast = played(raw, 1)[:, 0].astype(float)
    assert len(fast) == len(placed.samples) // 2
    # the caller's tone at twice its frequency; the agent's 700 Hz would be 1400 Hz
    spectrum = np.abs(np.fft.rfft(fast))
    peak_hz = np.argmax(spectrum) * 8000 / len(fast)
    assert abs(peak_hz - 2 * 300) < 15


def test_replay_out_exports_instead_of_playing(day, tmp_path):
    placed = day.calls[0]
    out = tmp_path / "slow.wav"
    result = CliRunner().invoke(main, ["calls", "replay", placed.uid, "--channel", "agent",
                                       "--speed", "0.5", "--out", str(out), *day.args()])
    assert result.exit_code == 0, result.output
    rate, samples = read_wav(out)
    assert rate == 8000 and samples.shape == (2 * len(placed.samples), 1)
    assert "wrote" in result.output


def test_replay_refuses_an_altered_recording_unless_forced(tmp_path):
    day = build_day(tmp_path / "day")
    placed = day.calls[0]
    data = bytearray(placed.recording.read_bytes())
    data[-2:] = b"\x01\x02"
    placed.recording.write_bytes(bytes(data))
    home, raw = sound_home(tmp_path)
    refused = replay(day, home, placed.uid)
    assert refused.returncode == 1 and "does not match its SHA-256" in refused.stderr
    assert "Traceback" not in refused.stderr and not raw.exists()
    forced = replay(day, home, placed.uid, "--force")
    assert forced.returncode == 0 and played(raw, 2).shape == placed.samples.shape


def test_replay_missing_recording_unanswered_call_and_no_device(day, tmp_path):
    missed = next(c for c in day.calls if c.outcome == "missed")
    result = CliRunner().invoke(main, ["calls", "replay", missed.uid, *day.args()])
    assert result.exit_code == 1 and "has no recording" in result.output
    home, raw = sound_home(tmp_path, 'pcm.!default {\n  type hw\n  card 42\n}\n')
    result = replay(day, home, day.calls[0].uid)
    assert result.returncode == 1, result.stderr
    assert "no sound device" in result.stderr and "--out FILE.wav" in result.stderr
    assert "Traceback" not in result.stderr
    home, _ = sound_home(tmp_path / "other")
    result = replay(day, home, day.calls[0].uid, "--device", "99")
    assert result.returncode == 1 and "no output device 99" in result.stderr


def test_replay_missing_file(tmp_path):
    day = build_day(tmp_path / "day")
    day.calls[0].recording.unlink()
    result = CliRunner().invoke(main, ["calls", "replay", day.calls[0].uid, *day.args()])
    assert result.exit_code == 1 and "is missing" in result.output
    assert "Traceback" not in result.output
