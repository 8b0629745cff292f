"""Test-side audio: WAV files, G.711 RTP pcaps for SIPp, tones, speech, and audio measurements.

* ``make_rtp_pcap``: 8 kHz mono 16-bit audio -> Ethernet/IPv4/UDP/RTP pcap for SIPp's
  ``play_pcap_audio`` (PCMU PT 0 or PCMA PT 8, 20 ms packets), with optional loss (drop every
  k-th packet; sequence and timestamp still advance) and a DTX gap (stop sending S s at T s).
* ``tone``, ``silence``, ``speech_wav`` (espeak-ng + sox; fine for *caller* speech only, never for
  the product's prompts), ``to_8k_wav`` (sox resample/downmix).
* ``read_wav`` (PCM 8/16/32-bit, float, mu-law, A-law; mono or stereo), ``rms_dbfs``,
  ``peak_dbfs``, ``tone_sinad`` for assertions.

The G.711 code here is a numpy reference for tests only; the product has its own codec module
and this file does not import it, so one cannot hide a bug in the other.
"""
from __future__ import annotations

import shutil
import struct
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RATE = 8000
FRAME = 160  # samples per 20 ms at 8 kHz
FULL_SCALE = 32768.0

SOX = shutil.which("sox") or "sox"
ESPEAK = shutil.which("espeak-ng") or "espeak-ng"


# ------------------------------------------------------------------------------------------------
# G.711 (ITU-T reference algorithm, vectorised)
# ------------------------------------------------------------------------------------------------
def _codes(codes: np.ndarray | bytes) -> np.ndarray:
    if isinstance(codes, (bytes, bytearray, memoryview)):
        return np.frombuffer(bytes(codes), dtype=np.uint8).astype(np.int32)
    return np.asarray(codes, dtype=np.int32)


def ulaw_encode(samples: np.ndarray) -> np.ndarray:
    """int16 linear -> mu-law bytes (uint8), bit-exact with the ITU-T G.711 reference (14-bit)."""
    x14 = np.asarray(samples, dtype=np.int32) >> 2
    neg = x14 < 0
    mag = np.minimum(np.where(neg, -x14, x14), 8159) + 0x21
    raw_seg = np.floor(np.log2(mag)).astype(np.int32) - 5
    seg = np.clip(raw_seg, 0, 7)
    uval = np.where(raw_seg > 7, 0x7F, (seg << 4) | ((mag >> (seg + 1)) & 0x0F))
    return (uval ^ np.where(neg, 0x7F, 0xFF)).astype(np.uint8)


def ulaw_decode(codes: np.ndarray | bytes) -> np.ndarray:
    """mu-law bytes -> int16 linear."""
    u = ~_codes(codes) & 0xFF
    sign = u & 0x80
    exp = (u >> 4) & 0x07
    mant = u & 0x0F
    mag = (((mant << 3) + 0x84) << exp) - 0x84
    return np.where(sign != 0, -mag, mag).astype(np.int16)


def alaw_encode(samples: np.ndarray) -> np.ndarray:
    """int16 linear -> A-law bytes (uint8)."""
    x = np.asarray(samples, dtype=np.int32) >> 3  # 13-bit
    sign = np.where(x >= 0, 0x80, 0x00)
    mag = np.where(x >= 0, x, -x - 1)
    mag = np.minimum(mag, 0x0FFF)
    exp = np.where(mag >= 32, np.floor(np.log2(np.maximum(mag, 1))).astype(np.int32) - 4, 0)
    exp = np.clip(exp, 0, 7)
    mant = np.where(exp == 0, mag >> 1, mag >> exp) & 0x0F
    return ((sign | (exp << 4) | mant) ^ 0x55).astype(np.uint8)


def alaw_decode(codes: np.ndarray | bytes) -> np.ndarray:
    """A-law bytes -> int16 linear."""
    a = _codes(codes) ^ 0x55
    sign = a & 0x80
    exp = (a >> 4) & 0x07
    mant = a & 0x0F
    mag = np.where(exp == 0, (mant << 4) + 8, ((mant << 4) + 0x108) << np.maximum(exp - 1, 0))
    return np.where(sign != 0, mag, -mag).astype(np.int16)


ULAW_SILENCE = 0xFF  # mu-law code of 0
ALAW_SILENCE = 0xD5  # A-law code of +0


# ------------------------------------------------------------------------------------------------
# signals
# ------------------------------------------------------------------------------------------------
def tone(freq: float, seconds: float, dbfs: float = -20.0, rate: int = RATE, phase: float = 0.0) -> np.ndarray:
    """A sine as int16 whose *peak* is ``dbfs`` relative to full scale (the field test's convention)."""
    n = int(round(seconds * rate))
    amp = FULL_SCALE * 10 ** (dbfs / 20.0)
    t = np.arange(n) / rate
    return np.round(amp * np.sin(2 * np.pi * freq * t + phase)).clip(-32768, 32767).astype(np.int16)


def silence(seconds: float, rate: int = RATE) -> np.ndarray:
    """Digital silence (zeros) as int16."""
    return np.zeros(int(round(seconds * rate)), dtype=np.int16)


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    """Write int16 samples (n,) mono or (n, ch) as a 16-bit PCM WAV; returns ``path``."""
    a = np.asarray(samples, dtype=np.int16)
    ch = 1 if a.ndim == 1 else a.shape[1]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(ch)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(a.astype("<i2").tobytes())
    return Path(path)


def read_wav(path: Path) -> tuple[int, np.ndarray]:
    """``(rate, samples)`` as int16, shape (n,) for mono and (n, channels) otherwise.

    Handles PCM 8-bit unsigned / 16 / 24 / 32-bit, IEEE float, mu-law and A-law (format 7/6),
    and WAVE_FORMAT_EXTENSIBLE.  8-bit unsigned becomes ``(x - 128) << 8``.
    """
    data = Path(path).read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a RIFF/WAVE file")
    pos, fmt, raw = 12, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = data[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            fmt = body
        elif cid == b"data":
            raw = body
        pos += 8 + size + (size & 1)
    if fmt is None or raw is None:
        raise ValueError(f"{path}: missing fmt or data chunk")
    tag, ch, rate = struct.unpack("<HHI", fmt[:8])
    bits = struct.unpack("<H", fmt[14:16])[0]
    if tag == 0xFFFE and len(fmt) >= 26:
        tag = struct.unpack("<H", fmt[24:26])[0]
    width = bits // 8
    raw = raw[: len(raw) - len(raw) % (width * ch)]
    if tag == 7:
        out = ulaw_decode(np.frombuffer(raw, dtype=np.uint8))
    elif tag == 6:
        out = alaw_decode(np.frombuffer(raw, dtype=np.uint8))
    elif tag == 3:
        f = np.frombuffer(raw, dtype="<f4" if width == 4 else "<f8")
        out = np.clip(np.round(f * 32767), -32768, 32767).astype(np.int16)
    elif tag == 1 and width == 1:
        out = ((np.frombuffer(raw, dtype=np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)
    elif tag == 1 and width == 2:
        out = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    elif tag == 1 and width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        out = (b[:, 2].astype(np.int8).astype(np.int16) << 8 | b[:, 1]).astype(np.int16)
    elif tag == 1 and width == 4:
        out = (np.frombuffer(raw, dtype="<i4") >> 16).astype(np.int16)
    else:
        raise ValueError(f"{path}: unsupported WAV format tag {tag} / {bits} bit")
    if ch > 1:
        out = out.reshape(-1, ch)
    return rate, out


def to_8k_wav(src: Path, dst: Path, *, norm_db: float | None = None) -> Path:
    """Convert any audio sox reads to 8 kHz mono 16-bit signed WAV (optionally normalised)."""
    cmd = [SOX, str(src), "-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed-integer", str(dst)]
    if norm_db is not None:
        cmd += ["norm", str(norm_db)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    return Path(dst)


def speech_wav(dst: Path, text: str | None = None, *, voice: str = "en", seconds: float | None = None,
               norm_db: float = -3.0) -> Path:
    """Synthetic caller speech (espeak-ng -> sox -> 8 kHz mono s16) in ``dst``.

    ``voice="cmn"`` gives Mandarin (give ``text`` in Hanzi or pinyin).  ``seconds`` pads with
    silence or trims to an exact length.  For caller speech in tests only, never for prompts.
    """
    if text is None:
        text = ("Hello, this is a test caller. I would like to book a room for two nights, starting on Friday."
                if not voice.startswith(("cmn", "zh")) else "你好，我想预订一个房间，住两个晚上，谢谢。")
    dst = Path(dst)
    raw = dst.with_name(dst.stem + ".espeak.wav")
    subprocess.run([ESPEAK, "-v", voice, "-w", str(raw), text], check=True, capture_output=True, timeout=60)
    cmd = [SOX, str(raw), "-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed-integer", str(dst),
           "norm", str(norm_db)]
    if seconds is not None:
        cmd += ["pad", "0", str(seconds), "trim", "0", str(seconds)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    raw.unlink(missing_ok=True)
    return dst


# ------------------------------------------------------------------------------------------------
# RTP pcap for SIPp play_pcap_audio
# ------------------------------------------------------------------------------------------------
@dataclass
class PcapInfo:
    """What ``make_rtp_pcap`` wrote: path, packets written, frames (incl. dropped), payload type."""

    path: Path
    packets: int
    frames: int
    payload_type: int

    @property
    def seconds(self) -> float:
        return self.frames * 0.02


def _csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def _frame(rtp: bytes, sport: int, dport: int) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(rtp), 0) + rtp
    src = dst = bytes([127, 0, 0, 1])
    iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, src, dst)
    iph = iph[:10] + struct.pack("!H", _csum(iph)) + iph[12:]
    return b"\0" * 12 + b"\x08\x00" + iph + udp


def make_rtp_pcap(
    audio: Path | np.ndarray,
    out: Path,
    *,
    codec: str = "PCMU",
    payload_type: int | None = None,
    drop_every: int = 0,
    dtx_gap: tuple[float, float] | None = None,
    ssrc: int = 0x12345678,
    seq0: int = 1000,
    ts0: int = 160000,
) -> PcapInfo:
    """Write a G.711 RTP pcap (libpcap, Ethernet) from 8 kHz mono 16-bit audio.

    ``audio``: a WAV path (other rates/channels are converted with sox into ``<out>.8k.wav``
    first) or int16 samples at 8 kHz.
    ``codec``: ``"PCMU"`` (PT 0) or ``"PCMA"`` (PT 8); ``payload_type`` overrides the label only.
    ``drop_every=k`` omits every k-th packet; ``dtx_gap=(S, T)`` sends nothing for S seconds
    from T seconds on.  Sequence numbers and timestamps advance over dropped packets.
    SIPp replaces addresses and ports when it plays the file; only payload and timing matter.
    """
    if isinstance(audio, (str, Path)):
        rate, samples = read_wav(Path(audio))
        if rate != RATE or samples.ndim != 1:
            rate, samples = read_wav(to_8k_wav(Path(audio), Path(out).with_suffix(".8k.wav")))
    else:
        samples = np.asarray(audio, dtype=np.int16)
    codec = codec.upper()
    if codec == "PCMU":
        payload_all, pt = ulaw_encode(samples).tobytes(), 0
    elif codec == "PCMA":
        payload_all, pt = alaw_encode(samples).tobytes(), 8
    else:
        raise ValueError(f"codec must be PCMU or PCMA, not {codec}")
    if payload_type is not None:
        pt = payload_type
    return _write_pcap(payload_all, Path(out), pt, drop_every, dtx_gap, ssrc, seq0, ts0)


def make_silence_pcap(seconds: float, out: Path, *, codec: str = "PCMU", **kw: int) -> PcapInfo:
    """Digital silence (mu-law 0xFF / A-law 0xD5 payload) for ``seconds``."""
    codec = codec.upper()
    code, pt = (ULAW_SILENCE, 0) if codec == "PCMU" else (ALAW_SILENCE, 8)
    payload = bytes([code]) * int(round(seconds * RATE))
    return _write_pcap(payload, Path(out), pt, 0, None, kw.get("ssrc", 0x12345678), kw.get("seq0", 1000),
                       kw.get("ts0", 160000))


def _write_pcap(payload_all: bytes, out: Path, pt: int, drop_every: int, dtx_gap: tuple[float, float] | None,
                ssrc: int, seq0: int, ts0: int) -> PcapInfo:
    frames = [payload_all[i:i + FRAME] for i in range(0, len(payload_all) - FRAME + 1, FRAME)]
    seq, ts = seq0, ts0
    t0 = 1_700_000_000.0
    n = 0
    with open(out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, p in enumerate(frames):
            sec = i * 0.02
            skip = bool(drop_every) and (i % drop_every == drop_every - 1)
            if dtx_gap is not None and dtx_gap[1] <= sec < dtx_gap[1] + dtx_gap[0]:
                skip = True
            if not skip:
                marker = 0x80 if n == 0 else 0
                rtp = struct.pack("!BBHII", 0x80, marker | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + p
                fr = _frame(rtp, 6000, 20000)
                usec = int(round(sec * 1e6))
                f.write(struct.pack("<IIII", int(t0) + usec // 1_000_000, usec % 1_000_000, len(fr), len(fr)))
                f.write(fr)
                n += 1
            seq += 1
            ts += FRAME
    return PcapInfo(out, n, len(frames), pt)


def make_dtmf_pcap(digits: str, out: Path, *, lead_s: float = 3.0, tone_ms: int = 200, gap_ms: int = 300,
                   tail_s: float = 5.0, drop_first: bool = False, event_pt: int = 101, audio: np.ndarray | None = None,
                   ssrc: int = 0x1234ABCD, at: list[float] | None = None) -> PcapInfo:
    """A caller who presses keys: mu-law audio (silence, or ``audio``) with RFC 4733 events for
    ``digits`` starting at ``lead_s``.  Each event is sent as the standard does it: packets every
    20 ms with the same RTP timestamp and a growing duration, the first with the marker bit, the
    end packet three times.  ``drop_first`` leaves out the first packet of each event (the agent
    must still get the digit).  No audio packets are sent while a key is down.  ``at`` gives each
    key's press time in seconds instead of ``lead_s`` + regular gaps."""
    events = "0123456789*#ABCD"
    if at is None:
        at = [lead_s + k * (tone_ms + gap_ms) / 1000.0 for k in range(len(digits))]
    total = max(at) + tone_ms / 1000.0 + tail_s
    samples = np.zeros(int(total * RATE), dtype=np.int16) if audio is None else np.resize(audio, int(total * RATE))
    payload = ulaw_encode(samples).tobytes()
    packets: list[tuple[float, bytes]] = []
    busy: list[tuple[float, float]] = []
    seq, t0 = 1000, 1_700_000_000.0
    for start in at:
        busy.append((start, start + tone_ms / 1000.0 + 0.06))
    n_frames = len(payload) // FRAME
    timeline: list[tuple[float, int, bytes, int]] = []  # (time, pt|marker, payload, timestamp)
    for i in range(n_frames):
        sec = i * 0.02
        if any(a <= sec < b for a, b in busy):
            continue
        timeline.append((sec, 0, payload[i * FRAME:(i + 1) * FRAME], 160000 + i * FRAME))
    for k, digit in enumerate(digits):
        code = events.index(digit.upper())
        begin = busy[k][0]
        ts = 160000 + int(begin / 0.02) * FRAME
        steps = tone_ms // 20
        for j in range(steps):
            if drop_first and j == 0:
                continue
            marker = 0x80 if j == 0 else 0
            body = struct.pack("!BBH", code, 10, (j + 1) * FRAME)
            timeline.append((begin + j * 0.02, marker | event_pt, body, ts))
        for r in range(3):  # the end packet, three times (RFC 4733 2.5.1.4)
            body = struct.pack("!BBH", code, 0x80 | 10, steps * FRAME)
            timeline.append((begin + steps * 0.02 + r * 0.001, event_pt, body, ts))
    timeline.sort(key=lambda item: item[0])
    with open(out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for sec, pt, body, ts in timeline:
            rtp = struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + body
            seq += 1
            fr = _frame(rtp, 6000, 20000)
            usec = int(round(sec * 1e6))
            f.write(struct.pack("<IIII", int(t0) + usec // 1_000_000, usec % 1_000_000, len(fr), len(fr)))
            f.write(fr)
    return PcapInfo(Path(out), len(timeline), n_frames, 0)


def read_rtp_pcap(path: Path) -> list[tuple[float, int, int, int, bytes]]:
    """Packets of a pcap written by ``make_rtp_pcap``: (time, pt, seq, timestamp, payload)."""
    data = Path(path).read_bytes()
    pos, out = 24, []
    while pos + 16 <= len(data):
        sec, usec, incl, _ = struct.unpack("<IIII", data[pos:pos + 16])
        fr = data[pos + 16:pos + 16 + incl]
        rtp = fr[14 + 20 + 8:]
        b1, seq, ts = rtp[1], struct.unpack("!H", rtp[2:4])[0], struct.unpack("!I", rtp[4:8])[0]
        out.append((sec + usec / 1e6, b1 & 0x7F, seq, ts, rtp[12:]))
        pos += 16 + incl
    return out


# ------------------------------------------------------------------------------------------------
# measurements
# ------------------------------------------------------------------------------------------------
def rms_dbfs(samples: np.ndarray) -> float:
    """RMS level in dB relative to full scale (32768); -inf for digital silence.

    A full-scale sine measures -3.01 dB here (its peak is 0 dBFS).
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(x * x)))
    return 20 * np.log10(rms / FULL_SCALE) if rms > 0 else float("-inf")


def peak_dbfs(samples: np.ndarray) -> float:
    """Peak level in dB relative to full scale; -inf for digital silence."""
    x = np.abs(np.asarray(samples, dtype=np.float64))
    peak = float(x.max()) if x.size else 0.0
    return 20 * np.log10(peak / FULL_SCALE) if peak > 0 else float("-inf")


def tone_sinad(samples: np.ndarray, freq: float, rate: int = RATE) -> float:
    """SINAD in dB of a sine at ``freq``: least-squares fit of sin/cos/DC, signal vs residual."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size < 16:
        raise ValueError("need at least 16 samples")
    t = np.arange(x.size) / rate
    basis = np.column_stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t), np.ones_like(t)])
    coef, *_ = np.linalg.lstsq(basis, x, rcond=None)
    fit = basis[:, :2] @ coef[:2]
    resid = x - basis @ coef
    p_sig = float(np.mean(fit * fit))
    p_noise = float(np.mean(resid * resid))
    if p_noise == 0:
        return float("inf")
    if p_sig == 0:
        return float("-inf")
    return 10 * np.log10(p_sig / p_noise)
