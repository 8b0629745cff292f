"""The line detector: is the caller speaking, is the line silent or noisy, is the speech too quiet.

Two parts, as in Home Assistant's VoiceCommandSegmenter (STYLE.md item 2):

- `LineDetector.classify(frame)` labels each 20 ms frame of the caller's audio (160 int16
  samples at 8 kHz) SPEECH, NOISE or SILENCE, with its level and the running noise floor.
  A small model over spectral and temporal features (callflows/detector_model.py) gives the
  speech probability; an onset/hold threshold pair and a short hangover turn it into a decision.
  `classify_missing()` stands for a frame where no RTP arrived.
- `LineSegmenter.push(verdict)` turns verdicts into line events, counting time from frame
  lengths only: speech start (after a minimum speech duration), speech end (after a hangover)
  and line-state changes: "speech", "quiet" (R8: active level below -40 dBFS), "noisy"
  (R7: mostly noise and no speech) and "silent" (R6).

`analyze_pcm` runs both over a whole 8 kHz signal; `softphone.analysis.analyze_file` reads and
resamples any WAV for it (`frontdesk analyze`, the benchmark).

Pure: no clock, no threads, no files.
"""
from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from callflows.detector_model import FRAME, LEVEL_FLOOR_DBFS, RATE, FrameFeatures, SpeechModel

__all__ = [
    "AudioFormatError", "FrameKind", "FrameVerdict", "LineDetector", "LineEvent", "LineSegmenter",
    "LineState", "analyze_file", "analyze_pcm", "read_wav", "resample",
]

FRAME_MS = 20


class FrameKind(str, enum.Enum):
    SPEECH = "s"
    NOISE = "n"
    SILENCE = "."


class LineState(str, enum.Enum):
    SPEECH = "speech"
    QUIET = "quiet"  # R8: speech whose active level is below the quiet threshold
    NOISY = "noisy"  # R7: noise-dominated, no speech
    SILENT = "silent"  # R6


@dataclass(frozen=True, slots=True)
class FrameVerdict:
    kind: FrameKind
    level_dbfs: float  # frame RMS re 32768; LEVEL_FLOOR_DBFS (-100) for digital zero
    noise_floor_dbfs: float  # running estimate (minimum statistics)
    speech_prob: float = 0.0
    missing: bool = False  # no RTP arrived for this frame (counted as silence)


_MODEL: SpeechModel | None = None


def _shared_model() -> SpeechModel:
    global _MODEL
    if _MODEL is None:
        _MODEL = SpeechModel.load()
    return _MODEL


class LineDetector:
    """Per-frame classifier for one call; stateful (noise floor, smoothing), time in frames.

    Speech starts when the model's probability reaches `onset_prob` on a frame at least
    `min_onset_snr_db` above the noise floor and louder than `min_speech_dbfs`; it holds while the
    probability stays above `hold_prob`, plus `hangover_frames`.  A non-speech frame is NOISE when
    the recent background (an average of non-speech frames over ~0.5 s) is above
    `noise_threshold_dbfs`, else SILENCE (digital silence, comfort noise, line hiss).
    Defaults for the three decision values come with the model's weights.
    """

    def __init__(
        self,
        *,
        noise_threshold_dbfs: float = -50.0,
        min_speech_dbfs: float = -65.0,
        min_onset_snr_db: float = 3.0,
        onset_prob: float | None = None,
        hold_prob: float | None = None,
        hangover_frames: int | None = None,
        model: SpeechModel | None = None,
    ) -> None:
        self.model = model or _shared_model()
        decision = self.model.meta.get("decision", {})
        self.onset_prob = float(decision.get("onset_prob", 0.7) if onset_prob is None else onset_prob)
        self.hold_prob = float(decision.get("hold_prob", 0.5) if hold_prob is None else hold_prob)
        self.hangover_frames = int(
            decision.get("hangover_frames", 3) if hangover_frames is None else hangover_frames
        )
        self.noise_threshold_dbfs = noise_threshold_dbfs
        self.min_speech_dbfs = min_speech_dbfs
        self.min_onset_snr_db = min_onset_snr_db
        self._features = FrameFeatures()
        self._speaking = False
        self._hang = 0
        self._background_ms: float | None = None  # mean square of recent non-speech frames
        self.frames = 0
        self.missing_frames = 0

    def classify(self, frame: np.ndarray | None) -> FrameVerdict:
        """Classify one 20 ms frame (160 int16 samples); None means no RTP arrived."""
        if frame is None:
            return self.classify_missing()
        frame = np.asarray(frame)
        if frame.shape != (FRAME,):
            raise ValueError(f"a frame is {FRAME} samples, got shape {frame.shape}")
        self.frames += 1
        if not frame.any():
            # Digital silence teaches nothing about the line: the feature trackers (noise floor,
            # level percentiles) are left as they are.  Fed to them, a few zero frames before a
            # noisy line start the percentile trackers at -100 dBFS, and steady noise then reads
            # as speech for half a minute while they climb (found with SIPp calls, where the first
            # ticks of a call carry no RTP yet).
            level, floor, prob = LEVEL_FLOOR_DBFS, self._features.noise_floor_dbfs, 0.0
        else:
            level, feats = self._features.push(frame)
            floor = self._features.noise_floor_dbfs
            prob = self.model.prob(feats)
        if self._speaking:
            if prob >= self.hold_prob:
                self._hang = self.hangover_frames
            elif self._hang > 0:
                self._hang -= 1
            else:
                self._speaking = False
        elif (prob >= self.onset_prob and level >= self.min_speech_dbfs
              and level - floor >= self.min_onset_snr_db):
            self._speaking = True
            self._hang = self.hangover_frames
        if self._speaking:
            return FrameVerdict(FrameKind.SPEECH, level, floor, prob)
        ms = 10.0 ** (level / 10.0)
        if self._background_ms is None:
            self._background_ms = ms
        else:
            self._background_ms += 0.04 * (ms - self._background_ms)  # ~25 frames
        noisy = 10.0 * math.log10(self._background_ms + 1e-12) > self.noise_threshold_dbfs
        return FrameVerdict(FrameKind.NOISE if noisy else FrameKind.SILENCE, level, floor, prob)

    def classify_missing(self) -> FrameVerdict:
        """A frame time with no RTP (DTX, comfort noise, a gap): silence, counted separately."""
        self.frames += 1
        self.missing_frames += 1
        return FrameVerdict(
            FrameKind.SILENCE, LEVEL_FLOOR_DBFS, self._features.noise_floor_dbfs, 0.0, missing=True
        )


@dataclass(frozen=True, slots=True)
class LineEvent:
    kind: str  # "speech_start", "speech_end" or "line"
    t_ms: int  # since the segmenter started, from frame counts
    data: Mapping[str, Any] = field(default_factory=dict)


class LineSegmenter:
    """Line events from frame verdicts; time counted from frame lengths, never a clock.

    - speech_start: after `min_speech_ms` of consecutive speech frames; data: onset_ms (start
      of the first of those frames), level_dbfs (active level so far).
    - speech_end: after `hangover_ms` of non-speech; data: end_ms (end of the last speech
      frame), duration_ms, level_dbfs (active level of the talkspurt).
    - line: on every change of `state`; data: state, previous, level_dbfs.

    The state is SPEECH or QUIET (R8, active level below `quiet_threshold_dbfs`, 1 dB hysteresis)
    during a talkspurt; otherwise NOISY (R7) once NOISE frames make up `noisy_fraction` of the
    last `noisy_window_ms` (and until they fall below `clear_fraction`), else SILENT (R6).
    `push` also takes a bare FrameKind or bool (True = speech), for tests and replays.
    """

    def __init__(
        self,
        frame_ms: int = FRAME_MS,
        *,
        min_speech_ms: int = 80,
        hangover_ms: int = 400,
        quiet_threshold_dbfs: float = -40.0,
        noisy_window_ms: int = 2000,
        noisy_fraction: float = 0.8,
        clear_fraction: float = 0.5,
    ) -> None:
        if frame_ms <= 0:
            raise ValueError("frame_ms must be positive")
        self.frame_ms = frame_ms
        self.min_speech_ms = min_speech_ms
        self.hangover_ms = hangover_ms
        self.quiet_threshold_dbfs = quiet_threshold_dbfs
        self.noisy_fraction = noisy_fraction
        self.clear_fraction = clear_fraction
        self._window: deque[bool] = deque(maxlen=max(1, noisy_window_ms // frame_ms))
        self._noise_in_window = 0
        self.t_ms = 0
        self.state = LineState.SILENT
        self.in_speech = False
        self.missing_ms = 0
        self.talkspurts = 0
        self.speech_ms = 0  # time in talkspurts (speech frames only)
        self._run_ms = 0  # consecutive speech before the start is declared
        self._run_start_ms = 0
        self._run_level = _Level()
        self._nonspeech_ms = 0
        self._last_speech_end_ms: int | None = None  # end of the last speech frame
        self._spurt = _Level()
        self._spurt_start_ms = 0
        self._call = _Level()
        self._last_spurt_level: float | None = None
        self._time_in: dict[LineState, int] = {s: 0 for s in LineState}

    # -- running figures the call flows query ------------------------------------------------
    @property
    def ms_since_speech(self) -> int | None:
        """Time since the end of the last speech frame; None if nobody has spoken yet."""
        if self.in_speech and self._nonspeech_ms == 0:
            return 0
        if self._last_speech_end_ms is None:
            return None
        return self.t_ms - self._last_speech_end_ms

    @property
    def nonspeech_ms(self) -> int:
        """Continuous non-speech time up to now (missing frames included)."""
        return self._nonspeech_ms

    @property
    def active_level_dbfs(self) -> float | None:
        """Active speech level of the current talkspurt, or of the last one."""
        if self.in_speech:
            return self._spurt.dbfs
        return self._last_spurt_level

    @property
    def call_active_level_dbfs(self) -> float | None:
        """Active speech level over every talkspurt so far."""
        return self._call.dbfs

    def time_in(self, state: LineState | str) -> int:
        """Milliseconds spent in a line state so far."""
        return self._time_in[LineState(state)]

    def overall_state(self, min_speech_ms: int = 500) -> LineState:
        """The line over the whole call so far: SPEECH or QUIET (by the active level over every
        talkspurt) once talkspurts add up to `min_speech_ms`; else NOISY if the line was ever
        noisy; else SILENT."""
        level = self._call.dbfs
        if self.speech_ms >= min_speech_ms and level is not None:
            return LineState.QUIET if level < self.quiet_threshold_dbfs else LineState.SPEECH
        return LineState.NOISY if self._time_in[LineState.NOISY] > 0 else LineState.SILENT

    # -- input --------------------------------------------------------------------------------
    def push(self, verdict: FrameVerdict | FrameKind | bool, level_dbfs: float | None = None) -> list[LineEvent]:
        kind, level, missing = _unpack(verdict, level_dbfs)
        start_ms = self.t_ms
        self.t_ms += self.frame_ms
        if missing:
            self.missing_ms += self.frame_ms
        events: list[LineEvent] = []
        speech = kind is FrameKind.SPEECH
        if speech:
            self._nonspeech_ms = 0
            if self.in_speech:
                self._add_level(level)
                self.speech_ms += self.frame_ms
                self._last_speech_end_ms = self.t_ms
            else:
                if self._run_ms == 0:
                    self._run_start_ms = start_ms
                    self._run_level = _Level()
                self._run_ms += self.frame_ms
                self._run_level.add(level)
                if self._run_ms >= self.min_speech_ms:
                    self._begin_spurt(events)
        else:
            self._nonspeech_ms += self.frame_ms
            self._run_ms = 0
            if self.in_speech and self._nonspeech_ms >= self.hangover_ms:
                self._end_spurt(events)
        self._note_noise(kind is FrameKind.NOISE)
        self._update_state(events)
        self._time_in[self.state] += self.frame_ms
        return events

    # -- internals ----------------------------------------------------------------------------
    def _add_level(self, level: float | None) -> None:
        self._spurt.add(level)
        self._call.add(level)

    def _begin_spurt(self, events: list[LineEvent]) -> None:
        self.in_speech = True
        self.talkspurts += 1
        self.speech_ms += self._run_ms
        self._spurt = self._run_level
        self._call.merge(self._run_level)
        self._spurt_start_ms = self._run_start_ms
        self._last_speech_end_ms = self.t_ms
        self._run_ms = 0
        events.append(LineEvent("speech_start", self.t_ms, {
            "onset_ms": self._spurt_start_ms, "level_dbfs": self._spurt.dbfs,
        }))

    def _end_spurt(self, events: list[LineEvent]) -> None:
        self.in_speech = False
        self._last_spurt_level = self._spurt.dbfs
        end_ms = self._last_speech_end_ms if self._last_speech_end_ms is not None else self.t_ms
        events.append(LineEvent("speech_end", self.t_ms, {
            "end_ms": end_ms, "duration_ms": end_ms - self._spurt_start_ms,
            "level_dbfs": self._last_spurt_level,
        }))

    def _note_noise(self, noise: bool) -> None:
        window = self._window
        if len(window) == window.maxlen and window[0]:
            self._noise_in_window -= 1
        window.append(noise)
        self._noise_in_window += noise

    def _update_state(self, events: list[LineEvent]) -> None:
        old = self.state
        if self.in_speech:
            level = self._spurt.dbfs
            threshold = self.quiet_threshold_dbfs + (1.0 if old is LineState.QUIET else 0.0)
            new = LineState.QUIET if level is not None and level < threshold else LineState.SPEECH
        else:
            full = len(self._window) == self._window.maxlen
            share = self._noise_in_window / self._window.maxlen
            if old is LineState.NOISY:
                new = LineState.NOISY if share >= self.clear_fraction else LineState.SILENT
            else:
                new = LineState.NOISY if full and share >= self.noisy_fraction else LineState.SILENT
        if new is not old:
            self.state = new
            events.append(LineEvent("line", self.t_ms, {
                "state": new.value, "previous": old.value, "level_dbfs": self.active_level_dbfs,
            }))


class _Level:
    """Active speech level, P.56-like: mean power of the frames within 25 dB of the estimate."""

    __slots__ = ("power", "count")

    def __init__(self) -> None:
        self.power = 0.0
        self.count = 0

    def add(self, level: float | None) -> None:
        if level is None or level <= LEVEL_FLOOR_DBFS:
            return
        current = self.dbfs
        if current is not None and level < current - 25.0:
            return
        self.power += 10.0 ** (level / 10.0)
        self.count += 1

    def merge(self, other: _Level) -> None:
        self.power += other.power
        self.count += other.count

    @property
    def dbfs(self) -> float | None:
        if self.count == 0:
            return None
        return 10.0 * math.log10(self.power / self.count)


def _unpack(verdict: FrameVerdict | FrameKind | bool, level: float | None) -> tuple[FrameKind, float | None, bool]:
    if isinstance(verdict, FrameVerdict):
        return verdict.kind, verdict.level_dbfs, verdict.missing
    if isinstance(verdict, bool):
        return (FrameKind.SPEECH if verdict else FrameKind.SILENCE), level, False
    return FrameKind(verdict), level, False


def analyze_pcm(samples: np.ndarray, *, quiet_threshold_dbfs: float = -40.0,
                detector: LineDetector | None = None) -> dict:
    """Run the detector and the segmenter over mono 8 kHz PCM (int16 scale).

    Reading files and resampling are the caller's (softphone.analysis): callflows touches no file.
    """
    pcm = np.clip(np.round(np.asarray(samples, dtype=np.float64)), -32768, 32767).astype(np.int16)
    detector = detector or LineDetector()
    segmenter = LineSegmenter(quiet_threshold_dbfs=quiet_threshold_dbfs)
    kinds: list[str] = []
    onsets: list[float] = []
    n = len(pcm) // FRAME
    for i in range(n):
        verdict = detector.classify(pcm[i * FRAME:(i + 1) * FRAME])
        kinds.append(verdict.kind.value)
        for event in segmenter.push(verdict):
            if event.kind == "speech_start":
                onsets.append(event.data["onset_ms"] / 1000.0)
    level = segmenter.call_active_level_dbfs
    line = segmenter.overall_state()
    return {
        "file": None,
        "frame_ms": FRAME_MS,
        "frames": "".join(kinds),
        "line": line.value,
        "onsets": onsets,
        "active_level_dbfs": None if level is None else round(level, 1),
        "duration_s": n * FRAME_MS / 1000.0,
    }
