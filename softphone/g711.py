"""G.711 (PCMU, PCMA) to and from 16-bit linear PCM with numpy lookup tables.

pyVoIP 1.6.8 decodes to 8-bit unsigned audio (a -40 dBFS voice keeps 4 distinct values) and
encodes PCMA as mu-law; the agent never uses its codec path.  Decoding is a 256-entry table,
encoding a 65536-entry table indexed by the sample's bit pattern, so a 20 ms frame costs two
numpy fancy-index operations.
"""
from __future__ import annotations

import numpy as np

_BIAS = 0x84


def _ulaw_decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _alaw_decode_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    sign = a & 0x80
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    magnitude = np.where(
        exponent == 0,
        (mantissa << 4) + 8,
        ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0),
    )
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


def _ulaw_encode_table() -> np.ndarray:
    # The ITU reference (and CPython's audioop) work on 14-bit magnitudes with bias 0x21.
    pcm = np.arange(65536, dtype=np.int32).astype(np.uint16).view(np.int16).astype(np.int32) >> 2
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(pcm), 8159) + 0x21
    segment = np.searchsorted(np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF]), magnitude)
    value = np.where(segment >= 8, 0x7F, (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F))
    return ((value ^ mask) & 0xFF).astype(np.uint8)


def _alaw_encode_table() -> np.ndarray:
    pcm = np.arange(65536, dtype=np.int32).astype(np.uint16).view(np.int16).astype(np.int32)
    sign = np.where(pcm >= 0, 0x80, 0)
    magnitude = np.where(pcm < 0, -pcm - 1, pcm) >> 3          # 13-bit magnitude
    magnitude = np.minimum(magnitude, 0x0FFF)
    exponent = np.where(magnitude < 32, 0, np.floor(np.log2(np.maximum(magnitude, 1))).astype(np.int32) - 4)
    mantissa = np.where(exponent == 0, magnitude >> 1, magnitude >> exponent) & 0x0F
    return ((sign | (exponent << 4) | mantissa) ^ 0x55).astype(np.uint8)


ULAW_TO_LINEAR = _ulaw_decode_table()
ALAW_TO_LINEAR = _alaw_decode_table()
LINEAR_TO_ULAW = _ulaw_encode_table()
LINEAR_TO_ALAW = _alaw_encode_table()

#: Payload byte for silence in each law (what a silent 20 ms frame carries on the wire).
SILENCE_BYTE = {"PCMU": 0xFF, "PCMA": 0xD5}

_DECODE = {"PCMU": ULAW_TO_LINEAR, "PCMA": ALAW_TO_LINEAR}
_ENCODE = {"PCMU": LINEAR_TO_ULAW, "PCMA": LINEAR_TO_ALAW}


def decode(payload: bytes, codec: str) -> np.ndarray:
    """G.711 payload -> int16 samples."""
    return _DECODE[codec][np.frombuffer(payload, dtype=np.uint8)]


def encode(samples: np.ndarray, codec: str) -> bytes:
    """int16 samples -> G.711 payload."""
    return _ENCODE[codec][np.ascontiguousarray(samples, dtype=np.int16).view(np.uint16)].tobytes()
