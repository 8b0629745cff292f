"""Reading and writing WAV files: PCM 8/16/24/32-bit, float, G.711 mu-law and A-law; resampling.

The stdlib `wave` module refuses G.711 WAVs (format tags 7 and 6), which is what telephone
systems and the test corpus store; this reader walks the RIFF chunks itself.
"""
from __future__ import annotations

import struct
from math import gcd
from pathlib import Path

import numpy as np

_PCM, _FLOAT, _ALAW, _ULAW, _EXTENSIBLE = 1, 3, 6, 7, 0xFFFE


class WavError(ValueError):
    """Not a WAV file this reader understands; the message says why."""


def _g711_table(tag: int) -> np.ndarray:
    # Local tables so recordings/ does not depend on softphone/ (same values as softphone.g711).
    codes = np.arange(256, dtype=np.int32)
    if tag == _ULAW:
        u = ~codes & 0xFF
        magnitude = ((((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 7)) - 0x84
        return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)
    a = codes ^ 0x55
    exponent, mantissa = (a >> 4) & 7, a & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


def read_wav(path: str | Path) -> tuple[int, np.ndarray]:
    """(sample rate, int16 samples shaped (frames, channels)) of a WAV file."""
    try:
        return decode_wav(Path(path).read_bytes())
    except WavError as error:
        raise WavError(f"{path}: {error}") from None


def decode_wav(data: bytes) -> tuple[int, np.ndarray]:
    """(sample rate, int16 samples shaped (frames, channels)) of WAV bytes."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError("not a RIFF/WAVE file")
    fmt = None
    payload = None
    offset = 12
    while offset + 8 <= len(data):
        chunk, size = data[offset:offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        body = data[offset + 8:offset + 8 + size]
        if chunk == b"fmt ":
            fmt = body
        elif chunk == b"data":
            payload = body  # a crashed writer may have left size 0 or short: take what is there
            if size == 0 or offset + 8 + size > len(data):
                payload = data[offset + 8:]
            break
        offset += 8 + size + (size & 1)
    if fmt is not None and len(fmt) >= 16 and struct.unpack_from("<H", fmt)[0] == _EXTENSIBLE and len(fmt) < 26:
        raise WavError("short WAVE_FORMAT_EXTENSIBLE header")
    if fmt is None or payload is None or len(fmt) < 16:
        raise WavError("no fmt or data chunk")
    tag, channels, rate, _, block, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack_from("<H", fmt, 24)[0]
    if channels < 1 or block < 1:
        raise WavError("bad fmt chunk")
    usable = len(payload) - len(payload) % block
    raw = payload[:usable]
    if tag in (_ULAW, _ALAW) and bits == 8:
        samples = _g711_table(tag)[np.frombuffer(raw, dtype=np.uint8)]
    elif tag == _PCM and bits == 16:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    elif tag == _PCM and bits == 8:
        samples = ((np.frombuffer(raw, dtype=np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)
    elif tag == _PCM and bits == 24:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        samples = ((b[:, 0] << 8 | b[:, 1] << 16 | b[:, 2] << 24) >> 16).astype(np.int16)
    elif tag == _PCM and bits == 32:
        samples = (np.frombuffer(raw, dtype="<i4") >> 16).astype(np.int16)
    elif tag == _FLOAT and bits in (32, 64):
        floats = np.frombuffer(raw, dtype="<f4" if bits == 32 else "<f8")
        samples = np.clip(np.round(floats * 32767.0), -32768, 32767).astype(np.int16)
    else:
        raise WavError(f"unsupported WAV format (tag {tag}, {bits} bits)")
    return rate, samples.reshape(-1, channels)


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling of a mono int16 signal (windowed-sinc polyphase, numpy only)."""
    if rate_in == rate_out or len(samples) == 0:
        return np.asarray(samples, dtype=np.int16)
    g = gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g
    cutoff = 0.5 / max(up, down) * 0.95
    half = 16 * max(up, down)
    n = np.arange(-half, half + 1)
    taps = 2 * cutoff * np.sinc(2 * cutoff * n) * np.kaiser(len(n), 8.0) * up
    x = samples.astype(np.float64)
    out_len = (len(x) * up) // down
    positions = np.arange(out_len) * down  # in the upsampled grid
    result = np.zeros(out_len)
    # Each output sample sums the input samples k whose tap index (pos - k*up) lies in the filter.
    for phase in range(up):
        sel = positions % up == phase
        if not np.any(sel):
            continue
        idx = positions[sel]
        base = (idx - phase) // up
        offsets = np.arange(-(half // up) - 1, half // up + 2)
        k = base[:, None] + offsets[None, :]
        tap_index = idx[:, None] - k * up + half
        valid = (k >= 0) & (k < len(x)) & (tap_index >= 0) & (tap_index < len(taps))
        contrib = np.where(valid, x[np.clip(k, 0, len(x) - 1)] * taps[np.clip(tap_index, 0, len(taps) - 1)], 0.0)
        result[sel] = contrib.sum(axis=1)
    return np.clip(np.round(result), -32768, 32767).astype(np.int16)


def load_mono_8k(path: str | Path, channel: int = 0) -> np.ndarray:
    rate, samples = read_wav(path)
    return resample(samples[:, min(channel, samples.shape[1] - 1)], rate, 8000)


def wav_header(channels: int, rate: int, data_bytes: int, bits: int = 16) -> bytes:
    block = channels * bits // 8
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE" + b"fmt " +
            struct.pack("<IHHIIHH", 16, _PCM, channels, rate, rate * block, block, bits) +
            b"data" + struct.pack("<I", data_bytes))


def write_wav(path: str | Path, samples: np.ndarray, rate: int = 8000) -> None:
    samples = np.asarray(samples, dtype=np.int16)
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    data = samples.astype("<i2").tobytes()
    Path(path).write_bytes(wav_header(channels, rate, len(data)) + data)
