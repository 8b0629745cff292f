"""Recording writer (stereo, crash-safe, R18), WAV reading, resampling, prompt library (R2, R11)."""
import os
import struct
import time

import numpy as np
import pytest

from recordings.prompts import PromptError, PromptLibrary
from recordings.wavio import WavError, read_wav, resample, write_wav
from recordings.writer import RecordingWriter, repair


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_stereo_recording_caller_left_agent_right(tmp_path):
    writer = RecordingWriter(flush_s=0.1)
    writer.start()
    path = tmp_path / "2026" / "11" / "25" / "call.wav"
    writer.open("k", path)
    for i in range(100):  # 2 s
        writer.write("k", np.full(160, i, dtype=np.int16), np.full(160, -i, dtype=np.int16))
    writer.write("k", None, np.zeros(160, dtype=np.int16))  # no RTP: the caller channel is silence
    done = []
    writer.close("k", done.append)
    assert wait_for(lambda: done)
    writer.stop()
    info = done[0]
    rate, samples = read_wav(path)
    assert (rate, samples.shape) == (8000, (101 * 160, 2)) and info.frames == 101 * 160 and info.ms == 2020
    assert samples[160 * 7, 0] == 7 and samples[160 * 7, 1] == -7 and samples[-1, 0] == 0
    import hashlib
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_crash_leaves_a_playable_file_and_repair_fixes_the_header(tmp_path):
    writer = RecordingWriter(flush_s=0.2)
    writer.start()
    path = tmp_path / "crash.wav"
    writer.open("k", path)
    for _ in range(60):  # 1.2 s; header updated every 0.2 s
        writer.write("k", np.ones(160, dtype=np.int16), np.zeros(160, dtype=np.int16))
    assert wait_for(lambda: path.exists() and path.stat().st_size >= 44 + 50 * 640)
    # simulate the crash: never close; what is on disk must already be a valid WAV
    rate, samples = read_wav(path)
    assert rate == 8000 and samples.shape[1] == 2 and len(samples) >= 50 * 160
    with open(path, "ab") as file:  # a torn last frame, as a kill -9 mid-write can leave
        file.write(b"\x01\x02")
    info = repair(path)
    declared = struct.unpack_from("<I", path.read_bytes(), 40)[0]
    assert declared == os.path.getsize(path) - 44 and declared % 4 == 0
    assert info.frames == declared // 4
    writer.stop()


def test_full_disk_stops_the_recording_not_the_writer(tmp_path, monkeypatch):
    writer = RecordingWriter(flush_s=0.02)
    writer.start()
    writer.open("full", tmp_path / "full.wav")
    writer.open("ok", tmp_path / "ok.wav")
    assert wait_for(lambda: (tmp_path / "ok.wav").exists())
    writer.write("full", np.ones(160, dtype=np.int16), np.ones(160, dtype=np.int16))
    assert wait_for(lambda: (tmp_path / "full.wav").stat().st_size >= 44 + 640)
    rec = writer._open["full"]
    real_write = rec.file.write

    def enospc(data):
        if len(data) > 44:
            raise OSError(28, "No space left on device")
        return real_write(data)
    monkeypatch.setattr(rec.file, "write", enospc)
    for _ in range(3):
        writer.write("full", np.ones(160, dtype=np.int16), np.ones(160, dtype=np.int16))
        writer.write("ok", np.ones(160, dtype=np.int16), np.ones(160, dtype=np.int16))
    results = {}
    writer.close("full", lambda info: results.setdefault("full", info))
    writer.close("ok", lambda info: results.setdefault("ok", info))
    assert wait_for(lambda: len(results) == 2)
    writer.stop()
    assert results["full"].error == "disk full" and results["full"].frames == 160
    assert read_wav(tmp_path / "full.wav")[1].shape == (160, 2)  # the part written is playable
    assert results["ok"].error is None and results["ok"].frames == 3 * 160


@pytest.mark.parametrize("tag,bits", [(7, 8), (6, 8), (1, 16), (1, 8), (3, 32)])
def test_read_wav_formats(tmp_path, tag, bits):
    n = 80
    if tag in (6, 7):
        data = bytes([0xFF if tag == 7 else 0xD5]) * n
    elif tag == 1 and bits == 16:
        data = np.full(n, 1000, "<i2").tobytes()
    elif tag == 1:
        data = bytes([128 + 4]) * n
    else:
        data = np.full(n, 0.5, "<f4").tobytes()
    block = bits // 8
    fmt = struct.pack("<HHIIHH", tag, 1, 8000, 8000 * block, block, bits)
    raw = b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE" + b"fmt " + struct.pack(
        "<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    (tmp_path / "x.wav").write_bytes(raw)
    rate, samples = read_wav(tmp_path / "x.wav")
    expected = {(7, 8): 0, (6, 8): 8, (1, 16): 1000, (1, 8): 1024, (3, 32): 16384}[(tag, bits)]
    assert rate == 8000 and samples.shape == (n, 1) and abs(int(samples[0, 0]) - expected) <= 8


def test_read_wav_rejects_garbage(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"not a wav at all")
    with pytest.raises(WavError):
        read_wav(tmp_path / "bad.wav")


def test_resample_keeps_in_band_and_removes_aliases():
    t = np.arange(48000) / 48000
    tone = (8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    out = resample(tone, 48000, 8000)
    assert len(out) == 8000 and 5500 < np.sqrt(np.mean(out.astype(float) ** 2)) < 5800
    alias = resample((8000 * np.sin(2 * np.pi * 6000 * t)).astype(np.int16), 48000, 8000)
    assert np.sqrt(np.mean(alias.astype(float) ** 2)) < 60


def test_prompt_library_assembles_the_greeting_r2():
    library = PromptLibrary(agent_no="12")
    greeting = library.render("greeting")
    assert greeting.text == "您好，物业服务中心，12号为您服务，请问有什么可以帮到您？"
    pieces = [library.render("closing").pcm]  # sanity: other prompts load too
    assert 4000 < greeting.ms < 9000 and len(pieces[0]) > 8000
    assert greeting.pcm.dtype == np.int16 and np.abs(greeting.pcm).max() > 3000


def test_site_recording_replaces_a_whole_prompt(tmp_path):
    write_wav(tmp_path / "closing.wav", np.full(16000, 500, dtype=np.int16), rate=16000)
    library = PromptLibrary(site_dir=tmp_path)
    closing = library.render("closing")
    assert closing.ms == 1000 and abs(int(np.median(closing.pcm)) - 500) < 10


def test_a_company_name_without_its_recording_is_refused():
    with pytest.raises(PromptError, match="desk.company_audio"):
        PromptLibrary(company="阳光花园物业").check()
    with pytest.raises(PromptError, match="unknown prompt"):
        PromptLibrary().render("no_such_prompt")


def test_read_back_digits_r11():
    library = PromptLibrary()
    plain = library.render("confirm_intro")
    with_number = library.render("confirm_intro", digits="138")
    assert with_number.ms > plain.ms + 3 * 200 and with_number.text.endswith("138")
