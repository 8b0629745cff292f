"""`frontdesk analyze`: the line detector over WAV files (any rate; PCM, float, mu-law, A-law)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from callflows.detect import analyze_pcm
from recordings.wavio import read_wav, resample


def analyze_file(path: str | Path, channel: int = 0, **kwargs: Any) -> dict:
    """Detector verdicts for one file: the left (caller) channel of a stereo recording by default."""
    rate, samples = read_wav(path)
    pcm = resample(samples[:, min(channel, samples.shape[1] - 1)], rate, 8000)
    result = analyze_pcm(pcm, **kwargs)
    return {**result, "file": str(path), "channels": samples.shape[1]}
