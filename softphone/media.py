"""The media engine: one thread sends and receives the RTP of every call on one 20 ms clock.

pyVoIP 1.6.8 runs two polling threads per call and paces with relative sleeps, so it drifts
0.85 s/min with one call and collapses at 50 (field test M1, 5.6).  Here tick n is due at
t0 + n x 20 ms (STYLE.md 6): the clock cannot drift, and a stall only delays the ticks it covers.
Each tick the engine, for every call:
- sends one packet: the next 160 samples of the prompt being played, or silence;
- takes one frame of the caller's audio out of a small jitter buffer, decoded G.711 -> int16;
  a lost packet becomes silence (pyVoIP: 20 ms of full-scale noise, M8), a DTX gap is silence
  in real time (pyVoIP replayed it later, M9), a late or duplicate packet is dropped;
- reports RFC 4733 digits once per event, from whichever packet of the event arrives first.
Everything the tick produced goes to one sink callback as a `MediaTick`; the agent thread does
the line detection and the recording, never this thread.  Commands from other threads are queued
and applied at the start of a tick.
"""
from __future__ import annotations

import collections
import errno
import logging
import queue
import random
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import g711
from .rtp import PT_OF_CODEC, RtpError, RtpPacket, TelephoneEvent, is_rtcp, seq_delta

log = logging.getLogger("frontdesk.media")

FRAME_SAMPLES = 160
FRAME_S = 0.020
SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16)
SILENCE.setflags(write=False)
_MAX_DEPTH = 4  # frames of caller audio held before the oldest is dropped (80 ms)
_STALL_S = 0.2  # a tick later than this is skipped, not sent in a burst
_CN_PT = 13


@dataclass
class CallFrame:
    key: str
    rx: np.ndarray | None  # the caller's 20 ms, or None when no RTP was due (none arrived, DTX)
    tx: np.ndarray  # what we sent on this tick (silence when nothing was played or on hold)
    packets: int  # RTP packets received since the previous tick
    played: list[tuple[object, bool]] = field(default_factory=list)  # (token, completed) finished now
    digits: list[str] = field(default_factory=list)  # RFC 4733 digits first seen now


@dataclass
class MediaTick:
    at: float  # monotonic time the tick was due
    index: int
    late_ms: float
    frames: list[CallFrame]


@dataclass
class MediaStats:
    sent: int = 0
    received: int = 0
    lost: int = 0
    late: int = 0
    dropped: int = 0


class _Stream:
    """One call's RTP: socket, sender state, jitter buffer, prompt queue.  Media thread only."""

    def __init__(self, key: str, sock: socket.socket, port: int, owned_port: bool = True):
        self.owned_port = owned_port
        self.key = key
        self.sock = sock
        self.port = port
        self.remote: tuple[str, int] | None = None
        self.codec = "PCMU"
        self.pt = 0
        self.dtmf_pt: int | None = None
        self.sending = False
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(16)
        self.timestamp = random.getrandbits(32)
        self.marker = True
        self.silence_payload = bytes([g711.SILENCE_BYTE["PCMU"]]) * FRAME_SAMPLES
        self.playlist: collections.deque[list] = collections.deque()  # [pcm, offset, token]
        self.buffer: dict[int, bytes] = {}
        self.buffer_pts: dict[int, int] = {}
        self.playout: int | None = None
        self.rx_ssrc: int | None = None
        self.packets = 0
        self.digits: list[str] = []
        self.seen_events: collections.deque[int] = collections.deque(maxlen=32)
        self.played: list[tuple[object, bool]] = []
        self.stats = MediaStats()
        self.latched = False

    # receive side
    def on_datagram(self, data: bytes, source: tuple[str, int]) -> None:
        if is_rtcp(data):
            return
        try:
            packet = RtpPacket.parse(data)
        except RtpError:
            return  # a bad packet never kills a call
        if not self.latched:
            # Symmetric RTP: send where the caller's media really comes from (NAT, PBX relays).
            self.latched = True
            if self.remote is not None and source != self.remote:
                log.info("call %s: RTP comes from %s:%s, not the SDP address; answering there", self.key, *source)
                self.remote = source
        self.packets += 1
        self.stats.received += 1
        if packet.payload_type == self.dtmf_pt and self.dtmf_pt is not None:
            self._on_event(packet)
            return
        if packet.payload_type not in (self.pt, _CN_PT):
            return
        if packet.ssrc != self.rx_ssrc:
            self.rx_ssrc, self.playout = packet.ssrc, None
            self.buffer.clear()
            self.buffer_pts.clear()
        if self.playout is not None and seq_delta(packet.sequence, self.playout) < 0:
            self.stats.late += 1
            return
        self.buffer[packet.sequence] = packet.payload
        self.buffer_pts[packet.sequence] = packet.payload_type

    def _on_event(self, packet: RtpPacket) -> None:
        try:
            event = TelephoneEvent.parse(packet.payload)
        except RtpError:
            return
        # All packets of one event share its RTP timestamp: the first that arrives names the
        # digit, so losing the first packet (or two) of a tone does not lose the digit.
        if packet.timestamp in self.seen_events or event.digit is None:
            return
        self.seen_events.append(packet.timestamp)
        self.digits.append(event.digit)

    def next_rx(self) -> np.ndarray | None:
        if not self.buffer:
            return None
        if self.playout is None:
            self.playout = min(self.buffer, key=lambda s: seq_delta(s, next(iter(self.buffer))))
        while len(self.buffer) > _MAX_DEPTH:  # a burst: catch up, keep latency bounded
            oldest = min(self.buffer, key=lambda s: seq_delta(s, self.playout))
            self.buffer.pop(oldest)
            self.buffer_pts.pop(oldest, None)
            self.stats.dropped += 1
            self.playout = (oldest + 1) & 0xFFFF
            if self.playout in self.buffer:
                break
        payload = self.buffer.pop(self.playout, None)
        if payload is None:
            if len(self.buffer) < 2:
                return None  # maybe only late: wait one tick
            self.stats.lost += 1  # lost: conceal with silence, never with noise
            self.playout = (self.playout + 1) & 0xFFFF
            return SILENCE
        pt = self.buffer_pts.pop(self.playout, self.pt)
        self.playout = (self.playout + 1) & 0xFFFF
        if pt == _CN_PT or len(payload) == 0:
            return SILENCE
        samples = g711.decode(payload, self.codec)
        if len(samples) != FRAME_SAMPLES:
            samples = np.resize(samples, FRAME_SAMPLES) if len(samples) else SILENCE
        return samples

    # send side
    def next_tx(self) -> np.ndarray:
        if not self.playlist:
            return SILENCE
        out = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        filled = 0
        while filled < FRAME_SAMPLES and self.playlist:
            item = self.playlist[0]
            pcm, offset, token = item
            take = min(FRAME_SAMPLES - filled, len(pcm) - offset)
            out[filled:filled + take] = pcm[offset:offset + take]
            filled += take
            item[1] += take
            if item[1] >= len(pcm):
                self.playlist.popleft()
                self.played.append((token, True))
        return out

    def send(self, pcm: np.ndarray, skipped: int = 0) -> None:
        self.timestamp = (self.timestamp + FRAME_SAMPLES * skipped) & 0xFFFFFFFF
        if self.sending and self.remote is not None:
            payload = self.silence_payload if pcm is SILENCE else g711.encode(pcm, self.codec)
            packet = RtpPacket(self.pt, self.seq, self.timestamp, self.ssrc, payload, self.marker)
            try:
                self.sock.sendto(packet.serialize(), self.remote)
                self.stats.sent += 1
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.ECONNREFUSED):
                    log.debug("RTP send for %s failed: %s", self.key, error)
            self.seq = (self.seq + 1) & 0xFFFF
            self.marker = False
        self.timestamp = (self.timestamp + FRAME_SAMPLES) & 0xFFFFFFFF


class MediaEngine:
    def __init__(self, host: str, ports: range, sink: Callable[[MediaTick], None],
                 clock: Callable[[], float] = time.monotonic):
        self.host = host
        self._free = [port for port in ports if port % 2 == 0]  # even ports; +1 left for RTCP
        random.shuffle(self._free)
        self._ports_lock = threading.Lock()
        self._sink = sink
        self._clock = clock
        self._streams: dict[str, _Stream] = {}
        self._by_fd: dict[int, _Stream] = {}
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._epoll = select.epoll()
        self._running = False
        self._thread: threading.Thread | None = None
        self.ticks = 0
        self.stalls = 0

    # --- commands (any thread) ------------------------------------------------------------

    def open(self, key: str) -> int:
        """Bind an RTP socket for a call and return its port (NoPortError when none is free)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
        sock.setblocking(False)
        with self._ports_lock:
            for attempt in range(len(self._free)):
                port = self._free.pop(0)
                try:
                    sock.bind((self.host, port))
                    break
                except OSError:
                    self._free.append(port)  # taken by someone else: try it again later
            else:
                sock.close()
                raise NoPortError(f"no free RTP port on {self.host}")
        self._commands.put(("open", _Stream(key, sock, port)))
        return port

    def adopt(self, key: str, sock: socket.socket, port: int) -> None:
        """Take over an RTP socket bound elsewhere (softphone.mediaproc binds in the parent)."""
        sock.setblocking(False)
        self._commands.put(("open", _Stream(key, sock, port, owned_port=False)))

    def connect(self, key: str, remote: tuple[str, int] | None, codec: str, payload_type: int | None = None,
                dtmf_pt: int | None = None, sending: bool = True) -> None:
        self._commands.put(("connect", key, remote, codec, payload_type, dtmf_pt, sending))

    def play(self, key: str, pcm: np.ndarray, token: object) -> None:
        self._commands.put(("play", key, np.ascontiguousarray(pcm, dtype=np.int16), token))

    def stop_playing(self, key: str) -> None:
        self._commands.put(("stop_playing", key))

    def close(self, key: str) -> None:
        self._commands.put(("close", key))

    @property
    def free_ports(self) -> int:
        with self._ports_lock:
            return len(self._free)

    def stats(self, key: str) -> MediaStats | None:
        stream = self._streams.get(key)
        return stream.stats if stream else None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._run, name="media", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._running = False
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        for stream in list(self._streams.values()):
            self._close(stream)
        self._epoll.close()

    # --- the media thread -----------------------------------------------------------------

    def _run(self) -> None:
        start = self._clock()
        index = 0
        try:
            while self._running:
                due = start + index * FRAME_S
                while True:
                    wait = due - self._clock()
                    if wait <= 0:
                        break
                    for fd, _ in self._epoll.poll(wait):
                        self._drain(fd)
                for fd in list(self._by_fd):  # what arrived right at the deadline
                    self._drain(fd)
                self._apply_commands()
                late = self._clock() - due
                skipped = 0
                if late > _STALL_S:  # a stall: skip the missed ticks instead of bursting them
                    skipped = int(late / FRAME_S)
                    index += skipped
                    due += skipped * FRAME_S
                    self.stalls += 1
                self._sink(MediaTick(due, index, late * 1000.0, [self._tick(s, skipped) for s in self._streams.values()]))
                index += 1
                self.ticks = index
        except Exception:
            log.exception("media engine stopped by an error")
            raise

    def _tick(self, stream: _Stream, skipped: int) -> CallFrame:
        tx = stream.next_tx()
        stream.send(tx, skipped)
        frame = CallFrame(stream.key, stream.next_rx(), tx, stream.packets, stream.played, stream.digits)
        stream.packets, stream.played, stream.digits = 0, [], []
        return frame

    def _drain(self, fd: int) -> None:
        stream = self._by_fd.get(fd)
        if stream is None:
            return
        for _ in range(64):
            try:
                data, source = stream.sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            stream.on_datagram(data, source)

    def _apply_commands(self) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            name, *args = command
            if name == "open":
                stream = args[0]
                self._streams[stream.key] = stream
                self._by_fd[stream.sock.fileno()] = stream
                self._epoll.register(stream.sock.fileno(), select.EPOLLIN)
                continue
            stream = self._streams.get(args[0])
            if stream is None:
                continue
            if name == "connect":
                _, remote, codec, payload_type, dtmf_pt, sending = args
                if remote != stream.remote:
                    stream.latched = False
                stream.remote, stream.codec, stream.dtmf_pt = remote, codec, dtmf_pt
                stream.pt = PT_OF_CODEC[codec] if payload_type is None else payload_type
                stream.silence_payload = bytes([g711.SILENCE_BYTE[codec]]) * FRAME_SAMPLES
                stream.sending = sending and remote is not None and remote[1] != 0
            elif name == "play":
                stream.playlist.append([args[1], 0, args[2]])
            elif name == "stop_playing":
                stream.played += [(item[2], False) for item in stream.playlist]
                stream.playlist.clear()
            elif name == "close":
                self._close(stream)

    def _close(self, stream: _Stream) -> None:
        self._streams.pop(stream.key, None)
        fd = stream.sock.fileno()
        if self._by_fd.pop(fd, None) is not None:
            try:
                self._epoll.unregister(fd)
            except (OSError, ValueError):
                pass
        stream.sock.close()
        if stream.owned_port:
            with self._ports_lock:
                self._free.append(stream.port)


class NoPortError(RuntimeError):
    """Every RTP port of the configured range is in use."""
