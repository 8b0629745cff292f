"""Listening to the caller: each 20 ms frame of their audio -> line events for the call flow.

A thin adapter over callflows.detect: the detector labels the frame, the segmenter turns labels
into speech start/end and line-state changes.  The segmenter reports a start or an end after its
onset and hangover delays; `push` says how long ago it really happened, so the timeline can keep
both moments.
"""
from __future__ import annotations

import numpy as np

from callflows.detect import LineDetector, LineSegmenter

_SILENCE = np.zeros(160, dtype=np.int16)


class LineListener:
    def __init__(self, quiet_threshold_dbfs: float = -40.0) -> None:
        self.detector = LineDetector()
        self.segmenter = LineSegmenter(quiet_threshold_dbfs=quiet_threshold_dbfs)

    def push(self, frame: np.ndarray | None) -> list[tuple[str, dict, float]]:
        """(kind, data, seconds ago) for each event this frame completes."""
        # A frame without RTP is heard as the silence the recording keeps for it, so a call re-run
        # from its recording (softphone.rerun) hears exactly what the agent heard.
        verdict = self.detector.classify(frame if frame is not None else _SILENCE)
        out = []
        now_ms = None
        for event in self.segmenter.push(verdict):
            now_ms = self.segmenter.t_ms if now_ms is None else now_ms
            data = dict(event.data)
            level = data.get("level_dbfs")
            if level is not None:
                data["level_dbfs"] = round(float(level), 1)
            happened_ms = data.get("onset_ms", data.get("end_ms", now_ms))
            out.append((event.kind, data, max(0.0, (now_ms - happened_ms) / 1000.0)))
        return out
