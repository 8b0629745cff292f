"""Replaying a call's recording: check it against the register, pick a side, change the speed,
play it through the sound card (pyaudio) or export it as WAV.

A recording is stereo, caller left and agent right, 8 kHz 16-bit (recordings/writer.py), and
starts at the answer. `marks` are (frame, payload) pairs: `play` hands each payload to `on_mark`
when the audio reaches its frame (written frames minus the device's output latency), which is
how `frontdesk calls replay` prints the timeline in step with the sound.
"""
from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .wavio import WavError, read_wav, resample, write_wav

CHANNELS = ("caller", "agent", "both")
SPEED_STEP_HZ = 80  # speeds are rounded to 1 % (8000 Hz * 0.01) so resampling stays cheap
CHUNK_FRAMES = 160  # 20 ms at 8 kHz


class PlaybackError(Exception):
    """A recording cannot be replayed; the message says why (missing, altered, no device …)."""


class RecordingMissing(PlaybackError):
    pass


class ChecksumMismatch(PlaybackError):
    pass


class NoSoundDevice(PlaybackError):
    pass


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def check(path: str | Path | None, expected: str | None) -> str:
    """"none" (no recording), "missing", "unchecked" (no checksum), "ok" or "mismatch"."""
    if not path:
        return "none"
    if not Path(path).is_file():
        return "missing"
    if not expected:
        return "unchecked"
    return "ok" if sha256_of(path) == expected.lower() else "mismatch"


def load(path: str | Path | None, expected_sha256: str | None,
         force: bool = False) -> tuple[int, np.ndarray]:
    """(rate, samples shaped (frames, 2)) after checking the file against the register."""
    state = check(path, expected_sha256)
    if state == "none":
        raise RecordingMissing("the call has no recording (it was never answered)")
    if state == "missing":
        raise RecordingMissing(f"the recording {path} is missing")
    if state == "mismatch" and not force:
        raise ChecksumMismatch(f"the recording {path} does not match its SHA-256 in the register "
                               "(changed or damaged); --force plays it anyway")
    try:
        rate, samples = read_wav(path)  # type: ignore[arg-type]
    except (OSError, WavError) as error:
        raise PlaybackError(f"cannot read the recording {path}: {error}") from None
    if samples.shape[1] == 1:
        samples = np.repeat(samples, 2, axis=1)
    return rate, samples


def select_channel(samples: np.ndarray, channel: str) -> np.ndarray:
    """caller (left) or agent (right) as mono (frames,), or both as stereo (frames, 2)."""
    if channel == "caller":
        return np.ascontiguousarray(samples[:, 0])
    if channel == "agent":
        return np.ascontiguousarray(samples[:, 1])
    if channel == "both":
        return samples
    raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, got {channel!r}")


def speed_rate(rate: int, speed: float) -> int:
    """The rate the samples are taken to be at for `speed` (rounded to SPEED_STEP_HZ)."""
    if not 0.25 <= speed <= 4.0:
        raise ValueError(f"speed must be between 0.25 and 4, got {speed}")
    return max(SPEED_STEP_HZ, round(rate * speed / SPEED_STEP_HZ) * SPEED_STEP_HZ)


def change_speed(samples: np.ndarray, rate: int, speed: float) -> np.ndarray:
    """The samples played `speed` times as fast at the same rate (resampled; pitch moves too)."""
    source = speed_rate(rate, speed)
    if source == rate:
        return samples
    if samples.ndim == 1:
        return resample(samples, source, rate)
    return np.stack([resample(samples[:, c], source, rate) for c in range(samples.shape[1])],
                    axis=1)


def frame_at(offset_ms: float, rate: int, speed: float) -> int:
    """Where `offset_ms` into the original recording falls in the speed-changed audio."""
    return max(0, round(offset_ms / 1000.0 * rate * rate / speed_rate(rate, speed)))


def export(path: str | Path, samples: np.ndarray, rate: int) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, samples, rate)


@contextmanager
def _quiet_stderr():
    """ALSA and JACK print their probing to fd 2; keep it off the user's terminal."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        sys.stderr.flush()
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class Output:
    """An open output stream on the default or given device (see `open_output`)."""

    def __init__(self, pa: Any, stream: Any, rate: int, source_rate: int) -> None:
        self._pa, self._stream = pa, stream
        self.rate, self.source_rate = rate, source_rate

    def play(self, samples: np.ndarray, marks: Sequence[tuple[int, Any]] = (),
             on_mark: Callable[[Any], None] | None = None,
             chunk_frames: int = CHUNK_FRAMES) -> None:
        """Play int16 `samples` (at the rate given to open_output); blocks until played.
        `marks` are (frame, payload): on_mark(payload) when the audio reaches that frame."""
        rate, out_rate = self.source_rate, self.rate
        if out_rate != rate:  # the device refused 8 kHz: resample to what it takes
            samples = (resample(samples, rate, out_rate) if samples.ndim == 1 else
                       np.stack([resample(samples[:, c], rate, out_rate)
                                 for c in range(samples.shape[1])], axis=1))
            marks = [(frame * out_rate // rate, payload) for frame, payload in marks]
        pending = sorted(marks, key=lambda m: m[0])
        latency = int(self._stream.get_output_latency() * out_rate)
        data = np.ascontiguousarray(samples, dtype="<i2")
        step = max(1, chunk_frames * out_rate // rate)
        written = 0
        while written < len(data):
            _marks_until(pending, written - latency, on_mark)
            block = data[written:written + step]
            self._stream.write(block.tobytes(), len(block))
            written += len(block)
        self._stream.stop_stream()  # returns once what is buffered has been played
        _marks_until(pending, sys.maxsize, on_mark)

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._pa.terminate()

    def __enter__(self) -> Output:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_output(channels: int, rate: int, device: int | None = None) -> Output:
    """An output stream for int16 audio of `channels` at `rate` (or at the device's own rate
    when it refuses that one). Raises NoSoundDevice with the reason."""
    import pyaudio

    with _quiet_stderr():
        pa = pyaudio.PyAudio()
    try:
        stream, out_rate = _open(pa, pyaudio, channels, rate, device)
    except BaseException:
        pa.terminate()
        raise
    return Output(pa, stream, out_rate, rate)


def play(samples: np.ndarray, rate: int, *, device: int | None = None,
         marks: Sequence[tuple[int, Any]] = (), on_mark: Callable[[Any], None] | None = None) -> None:
    """Play int16 `samples` (mono or stereo) on the default or given output device; blocks."""
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    with open_output(channels, rate, device) as out:
        out.play(samples, marks, on_mark)


def _marks_until(pending: list[tuple[int, Any]], frame: int,
                 on_mark: Callable[[Any], None] | None) -> None:
    while pending and pending[0][0] <= frame:
        _, payload = pending.pop(0)
        if on_mark is not None:
            on_mark(payload)


def _open(pa: Any, pyaudio: Any, channels: int, rate: int, device: int | None) -> tuple[Any, int]:
    if device is not None:
        known = dict(_devices(pa))
        if device not in known:
            listed = "; ".join(f"{i}: {name}" for i, name in _devices(pa)) or "none"
            raise NoSoundDevice(f"no output device {device} (output devices: {listed})")
    rates: Iterable[int] = (rate,)
    try:
        info = (pa.get_device_info_by_index(device) if device is not None
                else pa.get_default_output_device_info())
        rates = (rate, int(info["defaultSampleRate"]))
    except OSError as error:
        raise NoSoundDevice(f"no sound device to play on ({_reason(error)}); "
                            "use --out FILE.wav to export the recording instead") from None
    last: OSError | None = None
    for candidate in dict.fromkeys(rates):
        try:
            with _quiet_stderr():
                stream = pa.open(format=pyaudio.paInt16, channels=channels, rate=candidate,
                                 output=True, output_device_index=device,
                                 frames_per_buffer=256)
            return stream, candidate
        except (OSError, ValueError) as error:
            last = error if isinstance(error, OSError) else OSError(str(error))
    raise NoSoundDevice(f"cannot open the sound device ({_reason(last)}); "
                        "use --out FILE.wav to export the recording instead")


def _devices(pa: Any) -> list[tuple[int, str]]:
    out = []
    for i in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(i)
        if info["maxOutputChannels"] > 0:
            out.append((i, info["name"]))
    return out


def _reason(error: BaseException | None) -> str:
    if error is None:
        return "unknown error"
    args = getattr(error, "args", ())
    return str(args[1]) if len(args) >= 2 else str(error)
