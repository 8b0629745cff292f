"""LineDetector on synthetic signals and corpus files, and analyze_file (R6 silent, R7 noisy, R8 quiet).

The corpus lives in the repo (tests/fixtures/corpus, G.711 mu-law at 8 kHz with 20 ms frame
labels); the benchmark figures are bench/detector.py's, these only check behaviour.
"""
import json
import time
import wave
import warnings
from pathlib import Path

import numpy as np
import pytest

from callflows.detect import FrameKind, LineDetector, LineSegmenter, LineState, analyze_pcm
from recordings.wavio import WavError, decode_wav, read_wav, resample
from softphone.analysis import analyze_file

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "corpus"
RATE, FRAME = 8000, 160


def manifest(split):
    with open(CORPUS / split / "manifest.jsonl", encoding="utf-8") as fh:
        return {m["file"]: m for m in map(json.loads, fh)}


def corpus_pcm(split, name):
    rate, samples = read_wav(CORPUS / split / name)
    assert rate == RATE
    return samples[:, 0]


def frames_of(pcm):
    n = len(pcm) // FRAME
    return [pcm[i * FRAME:(i + 1) * FRAME] for i in range(n)]


def classify_all(pcm):
    det = LineDetector()
    return [det.classify(f) for f in frames_of(pcm)]


def kinds(verdicts):
    return "".join(v.kind.value for v in verdicts)


def tone_noise(seconds, dbfs, rng, kind):
    n = int(seconds * RATE)
    if kind == "white":
        x = rng.standard_normal(n)
    else:  # 50 Hz mains hum with harmonics, as it reaches a phone line
        t = np.arange(n) / RATE
        x = sum(a * np.sin(2 * np.pi * 50 * k * t + k) for k, a in ((1, 1.0), (2, 0.5), (3, 0.6), (5, 0.3), (7, 0.2)))
    x *= 32768 * 10 ** (dbfs / 20) / np.sqrt(np.mean(x ** 2))
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


# -- synthetic signals --------------------------------------------------------------------------
def test_digital_silence_is_silence_at_the_level_floor():
    verdicts = classify_all(np.zeros(RATE * 3, dtype=np.int16))
    assert kinds(verdicts) == "." * 150
    assert all(v.level_dbfs == -100.0 for v in verdicts)


def test_line_hiss_at_minus_70_dbfs_is_silence():
    verdicts = classify_all(tone_noise(5, -70, np.random.default_rng(1), "white"))
    assert set(kinds(verdicts)) == {"."}
    assert np.median([v.level_dbfs for v in verdicts]) == pytest.approx(-70, abs=1)
    assert verdicts[-1].noise_floor_dbfs == pytest.approx(-70, abs=3)


@pytest.mark.parametrize("kind", ["white", "hum"])
def test_steady_noise_at_minus_30_dbfs_is_noise_r7(kind):
    verdicts = classify_all(tone_noise(8, -30, np.random.default_rng(2), kind))
    k = kinds(verdicts)
    assert k.count("s") <= len(k) * 0.01
    assert k[25:].count("n") >= 0.98 * len(k[25:])  # noise once the background is measured
    assert verdicts[-1].noise_floor_dbfs == pytest.approx(-30, abs=3)


def test_missing_frames_are_silence_counted_separately():
    det = LineDetector()
    for f in frames_of(tone_noise(1, -30, np.random.default_rng(3), "white")):
        det.classify(f)
    v = det.classify(None)
    w = det.classify_missing()
    assert v.kind is FrameKind.SILENCE and v.missing and w.missing
    assert det.missing_frames == 2 and det.frames == 52


def test_a_frame_is_160_samples():
    with pytest.raises(ValueError):
        LineDetector().classify(np.zeros(320, dtype=np.int16))


def test_cpu_per_frame_sanity_bound():
    # A unit test is not a benchmark (bench/detector.py measures it); this only catches a
    # detector that became an order of magnitude slower than its 100 us budget.
    frames = frames_of(corpus_pcm("dev", "sp_babble_10dB_0_es_allison.wav"))
    det = LineDetector()
    t0 = time.perf_counter()
    for f in frames:
        det.classify(f)
    assert (time.perf_counter() - t0) / len(frames) < 1e-3


# -- corpus files -------------------------------------------------------------------------------
def speech_scores(split, name):
    m = manifest(split)[name]
    out = np.array([c == "s" for c in kinds(classify_all(corpus_pcm(split, name)))])
    seg = np.array([c == "1" for c in m["seg"][:len(out)]])
    tp = np.sum(out & seg)
    return tp / max(1, out.sum()), tp / max(1, seg.sum())


@pytest.mark.parametrize("split,name", [
    ("dev", "sp_clean_clean_0_en_allison.wav"),
    ("dev", "sp_white_10dB_0_it_menardi.wav"),
    ("quiet", "quiet_45dBFS_hiss_1_ru_ivr.wav"),  # held out of training, -45 dBFS (R8)
])
def test_speech_is_found_where_labelled(split, name):
    precision, recall = speech_scores(split, name)
    assert recall >= 0.9
    assert precision >= 0.85


@pytest.mark.parametrize("name,limit", [
    ("silent_digital_xdBFS.wav", 0.0),
    ("silent_white_60dBFS.wav", 0.0),
    ("silent_hum_60dBFS.wav", 0.0),
    ("noise_white_25dBFS.wav", 0.01),
    ("noise_pink_35dBFS.wav", 0.01),
    ("noise_hum_28dBFS.wav", 0.01),
    ("noise_music_40dBFS.wav", 0.05),
])
def test_lines_without_speech_stay_below_the_false_alarm_targets(name, limit):
    k = kinds(classify_all(corpus_pcm("dev", name)))
    assert k.count("s") / len(k) <= limit
    expected = "." if name.startswith("silent") else "n"
    assert k[50:].count(expected) >= 0.95 * len(k[50:])


# -- analyze_file / analyze_pcm ----------------------------------------------------------------
def test_analyze_a_mulaw_corpus_file():
    name = "sp_clean_clean_1_fr_june.wav"
    result = analyze_file(CORPUS / "dev" / name)
    m = manifest("dev")[name]
    assert result["file"].endswith(name)
    assert result["frame_ms"] == 20
    assert len(result["frames"]) == m["n_frames"]
    assert set(result["frames"]) <= {"s", "n", "."}
    assert result["line"] == "speech"
    assert result["active_level_dbfs"] == pytest.approx(m["asl_dbfs"], abs=1.0)
    first_label = m["seg"].index("1") * 0.02
    assert result["onsets"] and abs(result["onsets"][0] - first_label) <= 0.1


def test_analyze_reports_quiet_and_silent_and_noisy_lines():
    assert analyze_file(CORPUS / "quiet" / "quiet_45dBFS_none_2_en_allison.wav")["line"] == "quiet"
    assert analyze_file(CORPUS / "dev" / "silent_white_70dBFS.wav")["line"] == "silent"
    noisy = analyze_file(CORPUS / "dev" / "noise_pink_25dBFS.wav")
    assert noisy["line"] == "noisy" and noisy["onsets"] == []


def write_wav16(path, rate, channels):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels.shape[0])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(channels.T.astype("<i2").tobytes())


def test_analyze_a_16khz_stereo_pcm_wav(tmp_path):
    speech = corpus_pcm("dev", "sp_clean_clean_0_en_allison.wav").astype(np.float64)
    t8 = np.arange(len(speech)) / 8000
    t16 = np.arange(2 * len(speech)) / 16000
    left = np.interp(t16, t8, speech)  # the caller, upsampled to 16 kHz
    right = tone_noise(len(t16) / 8000, -20, np.random.default_rng(4), "white")[:len(t16)]
    path = tmp_path / "call16k.wav"
    write_wav16(path, 16000, np.stack([left, right]))

    result = analyze_file(path)
    direct = analyze_pcm(speech)
    assert result["channels"] == 2
    assert result["line"] == "speech"  # the left channel, not the noisy right one
    assert len(result["frames"]) == len(direct["frames"])
    agree = sum(a == b for a, b in zip(result["frames"], direct["frames"])) / len(direct["frames"])
    assert agree >= 0.95
    assert result["onsets"] == pytest.approx(direct["onsets"], abs=0.06)


def test_read_alaw_and_mulaw_wav_match_the_reference_decoder():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")
    pcm = (np.sin(np.arange(800) / 7.0) * 12000).astype(np.int16)
    for tag, encode, decode in ((6, audioop.lin2alaw, audioop.alaw2lin), (7, audioop.lin2ulaw, audioop.ulaw2lin)):
        payload = encode(pcm.tobytes(), 2)
        fmt = (tag).to_bytes(2, "little") + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little") \
            + (8000).to_bytes(4, "little") + (1).to_bytes(2, "little") + (8).to_bytes(2, "little") + b"\0\0"
        chunks = b"fmt " + len(fmt).to_bytes(4, "little") + fmt \
            + b"LIST" + (3).to_bytes(4, "little") + b"abc\0" \
            + b"data" + len(payload).to_bytes(4, "little") + payload
        data = b"RIFF" + (4 + len(chunks)).to_bytes(4, "little") + b"WAVE" + chunks
        rate, samples = decode_wav(data)
        assert (rate, samples.shape[1]) == (8000, 1)
        assert np.array_equal(samples[:, 0], np.frombuffer(decode(payload, 2), dtype=np.int16))


@pytest.mark.parametrize("data", [b"", b"RIFF\0\0\0\0WAVE", b"RIFF\0\0\0\0AVI fmt ", b"not a wav at all"])
def test_unreadable_files_raise_one_error_type(data):
    with pytest.raises(WavError):
        decode_wav(data)


def test_resample_keeps_a_tone_and_its_level():
    t = np.arange(16000) / 16000
    tone = (10000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    out = resample(tone, 16000, 8000).astype(np.float64)
    assert len(out) == 8000
    ref = 10000 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)
    assert np.sqrt(np.mean((out[400:-400] - ref[400:-400]) ** 2)) < 100


@pytest.mark.parametrize("name,line", [("noise_pink_25dBFS.wav", "noisy"), ("noise_hum_28dBFS.wav", "noisy"),
                                       ("silent_pink_65dBFS.wav", "silent")])
def test_a_few_frames_of_digital_silence_first_do_not_turn_noise_into_speech(name, line):
    """A call's first ticks carry no RTP (zeros); the trackers must not start from -100 dBFS."""
    noise = corpus_pcm("dev", name)
    pcm = np.concatenate([np.zeros(160 * 20, np.int16), np.resize(noise, 8000 * 15)])
    result = analyze_pcm(pcm)
    assert result["line"] == line and result["frames"].count("s") == 0


# -- a noise that starts mid-call (R7) --------------------------------------------------------
def run_line(pcm):
    """Frame kinds, line events and the segmenter's final state, as the call flows see them."""
    det, seg = LineDetector(), LineSegmenter()
    kinds_, events = [], []
    for f in frames_of(pcm):
        verdict = det.classify(f)
        kinds_.append(verdict.kind.value)
        events += seg.push(verdict)
    return "".join(kinds_), events, seg.state


def noise_after_quiet(kind, seconds=12):
    rng = np.random.default_rng(5)
    hiss = tone_noise(3, -70, rng, "white")  # a quiet line first, then a noise starts
    if kind.endswith(".wav"):  # a corpus noise-only line, repeated
        noise = np.resize(corpus_pcm("dev", kind), RATE * seconds)
    else:
        noise = tone_noise(seconds, -28, rng, kind)
    return np.concatenate([hiss, noise]), len(hiss) // FRAME


@pytest.mark.parametrize("kind", ["noise_pink_25dBFS.wav", "white", "noise_hum_28dBFS.wav"])
def test_a_noise_that_starts_after_a_quiet_stretch_stops_reading_as_speech_r7(kind):
    """Found with real calls: 3 s of hiss, then a noise; the level trackers started from the
    hiss and 85 % of the next 20 s read as speech (the R7 script failed, no end of turn)."""
    pcm, onset = noise_after_quiet(kind)
    k, events, state = run_line(pcm)
    settled = k[onset + 125:]  # 2.5 s after the onset: the noise floor has caught up
    assert settled.count("s") == 0
    assert settled.count("n") >= 0.98 * len(settled)
    assert state is LineState.NOISY
    # whatever was taken for speech while the floor settled has ended (end of turn fires)
    starts = [e for e in events if e.kind == "speech_start"]
    ends = [e for e in events if e.kind == "speech_end"]
    assert len(ends) == len(starts)
    assert all(e.t_ms <= (onset + 150) * 20 for e in ends)


def test_a_caller_who_walks_from_a_quiet_room_into_the_street_r7():
    """The same noise, 25 dB louder from one moment on (a step, not an onset from silence)."""
    pink = np.resize(corpus_pcm("dev", "noise_pink_25dBFS.wav"), RATE * 15).astype(np.float64)
    room = np.round(pink[:RATE * 3] * 10 ** (-25 / 20)).astype(np.int16)  # -50 dBFS
    k, _, state = run_line(np.concatenate([room, pink[RATE * 3:].astype(np.int16)]))
    assert k[150 + 125:].count("s") == 0
    assert state is LineState.NOISY


def test_the_reported_case_pink_noise_after_hiss_is_speech_for_at_most_the_floor_horizon():
    rng = np.random.default_rng(6)
    pcm = np.concatenate([tone_noise(3, -70, rng, "white"),
                          np.resize(corpus_pcm("dev", "noise_pink_25dBFS.wav"), RATE * 20)])
    after = analyze_pcm(pcm)["frames"][150:1150]  # the 1000 frames after the onset (was 851 "s")
    assert after.count("s") <= 115  # ~2.2 s: the noise floor's horizon
    assert "s" not in after[125:]


def test_speech_over_a_noise_that_started_mid_call_is_still_found():
    """The trackers adapt to the new background but speech on top of it still reads as speech."""
    m = manifest("dev")["sp_clean_clean_0_en_allison.wav"]
    speech = corpus_pcm("dev", "sp_clean_clean_0_en_allison.wav").astype(np.float64)
    rng = np.random.default_rng(7)
    noise = tone_noise(3 + len(speech) / RATE, -52, rng, "white").astype(np.float64)  # ~20 dB SNR
    lead = tone_noise(2, -70, rng, "white")
    body = np.concatenate([noise[:3 * RATE], noise[3 * RATE:] + speech])
    pcm = np.concatenate([lead, np.clip(np.round(body), -32768, 32767).astype(np.int16)])
    k, events, _ = run_line(pcm)
    skip = (len(lead) + 3 * RATE) // FRAME  # speech file starts 3 s after the noise did
    out = np.array([c == "s" for c in k[skip:]])
    seg = np.array([c == "1" for c in m["seg"][:len(out)]])
    assert np.sum(out & seg) / seg.sum() >= 0.9
    assert np.sum(out & seg) / max(1, out.sum()) >= 0.85
    first_label_ms = (skip + m["seg"].index("1")) * 20
    onsets = [e.data["onset_ms"] for e in events if e.kind == "speech_start"]
    assert any(abs(o - first_label_ms) <= 100 for o in onsets)
