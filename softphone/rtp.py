"""RTP packets (RFC 3550) and telephone-events (RFC 4733): parse and serialize, nothing else.

Sequence numbers and timestamps are kept modulo 2**16 / 2**32 here, so the packet at the
sequence wrap is well formed (pyVoIP 1.6.8 sends one malformed packet there, field test M13).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

_HEADER = struct.Struct("!BBHII")

#: Static payload types the agent speaks.
PCMU = 0
PCMA = 8
CODEC_OF_PT = {PCMU: "PCMU", PCMA: "PCMA"}
PT_OF_CODEC = {"PCMU": PCMU, "PCMA": PCMA}

DTMF_EVENTS = "0123456789*#ABCD"


class RtpError(ValueError):
    """A datagram that is not a usable RTP packet."""


@dataclass(frozen=True, slots=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False

    def serialize(self) -> bytes:
        first = 0x80  # version 2, no padding, no extension, no CSRC
        second = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        return _HEADER.pack(first, second, self.sequence & 0xFFFF,
                            self.timestamp & 0xFFFFFFFF, self.ssrc & 0xFFFFFFFF) + self.payload

    @classmethod
    def parse(cls, data: bytes) -> "RtpPacket":
        if len(data) < 12:
            raise RtpError(f"short packet ({len(data)} bytes)")
        first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
        if first >> 6 != 2:
            raise RtpError(f"RTP version {first >> 6}")
        offset = 12 + 4 * (first & 0x0F)
        if first & 0x10:  # header extension
            if len(data) < offset + 4:
                raise RtpError("truncated header extension")
            (words,) = struct.unpack_from("!H", data, offset + 2)
            offset += 4 + 4 * words
        end = len(data)
        if first & 0x20:  # padding
            end -= data[-1]
        if offset > end:
            raise RtpError("header longer than packet")
        return cls(second & 0x7F, sequence, timestamp, ssrc, bytes(data[offset:end]), bool(second & 0x80))


def is_rtcp(data: bytes) -> bool:
    """RTCP sent to the RTP port (rtcp-mux or a confused peer): payload types 200-204 collide with 72-76."""
    return len(data) >= 2 and 200 <= data[1] <= 204


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One RFC 4733 event payload: the digit, the end flag and the duration so far (in samples)."""

    event: int
    end: bool
    volume: int
    duration: int

    @property
    def digit(self) -> str | None:
        return DTMF_EVENTS[self.event] if self.event < len(DTMF_EVENTS) else None

    def serialize(self) -> bytes:
        return struct.pack("!BBH", self.event, (0x80 if self.end else 0) | (self.volume & 0x3F), self.duration)

    @classmethod
    def parse(cls, payload: bytes) -> "TelephoneEvent":
        if len(payload) < 4:
            raise RtpError("short telephone-event payload")
        event, flags, duration = struct.unpack_from("!BBH", payload)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)


def seq_delta(a: int, b: int) -> int:
    """a - b for 16-bit sequence numbers, in -32768..32767."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000
