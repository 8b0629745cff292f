"""Listening to the caller: each 20 ms frame of their audio -> line events for the flow.

Until callflows.detect (the line detector) is wired in, this is the plain energy test the first
version needs: a frame is speech when it is 12 dB above the running noise floor and above
-50 dBFS; speech starts after 60 ms of speech frames and ends after 500 ms without.
"""
from __future__ import annotations

import numpy as np

_ONSET_FRAMES = 3
_HANGOVER_FRAMES = 25


class LineListener:
    def __init__(self) -> None:
        self.floor_dbfs = -70.0
        self.in_speech = False
        self._run = 0
        self._quiet = 0
        self._levels: list[float] = []

    def push(self, frame: np.ndarray | None) -> list[tuple[str, dict]]:
        if frame is None:
            level = -100.0
        else:
            rms = float(np.sqrt(np.mean(frame.astype(np.float64) ** 2)))
            level = 20 * np.log10(max(rms, 1e-3) / 32768.0)
        speech = level > max(-50.0, self.floor_dbfs + 12.0)
        if not speech:
            self.floor_dbfs += (level - self.floor_dbfs) * (0.05 if level > self.floor_dbfs else 0.3)
        events: list[tuple[str, dict]] = []
        if speech:
            self._run += 1
            self._quiet = 0
            self._levels.append(level)
            if not self.in_speech and self._run >= _ONSET_FRAMES:
                self.in_speech = True
                events.append(("speech_start", {"level_dbfs": round(level, 1)}))
        else:
            self._run = 0
            self._quiet += 1
            if self.in_speech and self._quiet >= _HANGOVER_FRAMES:
                self.in_speech = False
                active = float(np.mean(self._levels)) if self._levels else level
                self._levels = []
                events.append(("speech_end", {"level_dbfs": round(active, 1)}))
            elif not self.in_speech:
                self._levels = []
        return events
