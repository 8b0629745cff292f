"""R1: answer every call within three rings, normally between the second and the third.

Rings are counted from the moment the call starts ringing (our 180 Ringing) on a configurable
cadence; the default is the Chinese one, 1 s on / 4 s off, so ring k starts at 5*(k-1) s.
The default answer point is the middle of the pause after the second ring: 8 s.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RingCadence:
    on_ms: int = 1000
    off_ms: int = 4000

    @property
    def period_ms(self) -> int:
        return self.on_ms + self.off_ms

    def rings(self, ring_ms: float) -> int:
        """How many rings had started `ring_ms` after ringing began (the caller heard that many)."""
        if ring_ms < 0:
            return 0
        return int(ring_ms // self.period_ms) + 1


@dataclass(frozen=True)
class AnswerPolicy:
    cadence: RingCadence = RingCadence()
    after_rings: int = 2
    delay_ms: int | None = None  # a fixed delay overrides the ring count (tests keep calls short)
    max_rings: int = 3  # R1

    def answer_delay_ms(self) -> int:
        """Milliseconds from the start of ringing to the answer."""
        if self.delay_ms is not None:
            return self.delay_ms
        c = self.cadence
        return (self.after_rings - 1) * c.period_ms + c.on_ms + c.off_ms // 2

    def assess(self, ring_ms: float) -> tuple[int, bool]:
        """(rings heard, R1 met) for a call answered `ring_ms` after it started ringing."""
        rings = self.cadence.rings(ring_ms)
        return rings, rings <= self.max_rings
