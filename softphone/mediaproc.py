"""The media engine in a process of its own, so the 20 ms clock never waits for the agent's work.

One Python process cannot keep 100 calls on the clock: the line detector, the recordings and the
register writer share its interpreter lock with the RTP sender, and packets go out up to 200 ms
late (bench/load.py, docs/benchmarks.md).  `MediaProcess` has the interface of `MediaEngine`;
the engine itself runs in a child process, which does nothing but RTP and G.711.

- RTP ports are still chosen and bound here (so `open()` answers at once); the bound socket is
  handed to the child over the control pipe (SCM_RIGHTS).
- Commands (connect, play, stop, close) go down the pipe; the child applies them on its next tick.
- Every tick comes back up the pipe as one message (all calls' frames as bytes) and is turned
  into the same `MediaTick` the in-process engine produces.  A sender thread in the child does
  the writing, so the media thread never blocks on a slow reader.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import random
import signal
import socket
import threading
from multiprocessing.connection import Connection
from multiprocessing.reduction import recv_handle, send_handle
from typing import Callable

import numpy as np

from .media import CallFrame, MediaEngine, MediaTick, NoPortError

log = logging.getLogger("frontdesk.media")


def _bind_rtp_socket(host: str, free: list[int]) -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
    for _ in range(len(free)):
        port = free.pop(0)
        try:
            sock.bind((host, port))
            return sock, port
        except OSError:
            free.append(port)
    sock.close()
    raise NoPortError(f"no free RTP port on {host}")


class MediaProcess:
    def __init__(self, host: str, ports: range, sink: Callable[[MediaTick], None]):
        self.host = host
        self._free = [port for port in ports if port % 2 == 0]
        random.shuffle(self._free)
        self._ports: dict[str, int] = {}
        self._lock = threading.Lock()
        self._sink = sink
        self._conn: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._reader: threading.Thread | None = None
        self.ticks = 0
        self.alive = False
        self._stopping = False

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        self._process = ctx.Process(target=_child_main, args=(child, self.host), name="frontdesk-media", daemon=True)
        self._process.start()
        child.close()
        self._conn = parent
        hello = parent.recv()
        if not (isinstance(hello, tuple) and hello[0] == "ready"):
            raise RuntimeError("media process did not start")
        self.priority = hello[1]
        log.info("media process %s started (%s)", self._process.pid, self.priority)
        self.alive = True
        self._reader = threading.Thread(target=self._read, name="media-ticks", daemon=True)
        self._reader.start()

    def stop(self) -> None:
        if self._conn is None:
            return
        self._stopping = True
        try:
            self._send(("stop",))
        except OSError:
            pass
        if self._process is not None:
            self._process.join(3.0)
            if self._process.is_alive():
                self._process.kill()
        if self._reader is not None:
            self._reader.join(2.0)
        self._conn.close()
        self._conn = None

    # --- the engine's interface ---------------------------------------------------------------

    def open(self, key: str) -> int:
        with self._lock:
            sock, port = _bind_rtp_socket(self.host, self._free)
            self._ports[key] = port
            try:
                self._conn.send(("open", key, port))
                send_handle(self._conn, sock.fileno(), self._process.pid)
            finally:
                sock.close()  # the child holds its own copy now
        return port

    def connect(self, key: str, remote, codec: str, payload_type: int | None = None, dtmf_pt: int | None = None,
                sending: bool = True) -> None:
        self._send(("connect", key, remote, codec, payload_type, dtmf_pt, sending))

    def play(self, key: str, pcm: np.ndarray, token: object) -> None:
        self._send(("play", key, np.ascontiguousarray(pcm, dtype=np.int16).tobytes(), token))

    def stop_playing(self, key: str) -> None:
        self._send(("stop_playing", key))

    def close(self, key: str) -> None:
        self._send(("close", key))
        with self._lock:
            port = self._ports.pop(key, None)
            if port is not None:
                self._free.append(port)  # if the child still holds it, the next bind skips it

    @property
    def free_ports(self) -> int:
        with self._lock:
            return len(self._free)

    # --- internals ----------------------------------------------------------------------------

    def _send(self, message: tuple) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.send(message)

    def _read(self) -> None:
        conn = self._conn
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            at, index, late_ms, frames = message
            self.ticks = index
            self._sink(MediaTick(at, index, late_ms, [
                CallFrame(key, None if rx is None else np.frombuffer(rx, dtype=np.int16),
                          np.frombuffer(tx, dtype=np.int16), packets, played, digits)
                for key, rx, tx, packets, played, digits in frames]))
        self.alive = False
        if not self._stopping:
            log.error("the media process ended unexpectedly (exit code %s)",
                      self._process.exitcode if self._process else "?")


def _raise_priority() -> str:
    """Real-time scheduling for the media process if allowed (root or CAP_SYS_NICE), else nicer."""
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(10))
        return "SCHED_RR 10"
    except (OSError, AttributeError):
        pass
    try:
        os.nice(-10)
        return "nice -10"
    except OSError:
        return "normal"


def _child_main(conn: Connection, host: str) -> None:
    """The media process: one MediaEngine; commands in, ticks out."""
    # Ctrl-C reaches the whole process group; the agent decides when media stops (or the pipe
    # closes when the agent is gone).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    outbox: queue.SimpleQueue = queue.SimpleQueue()
    priority = _raise_priority()

    def sink(tick: MediaTick) -> None:
        outbox.put((tick.at, tick.index, tick.late_ms, [
            (f.key, None if f.rx is None else f.rx.tobytes(), f.tx.tobytes(), f.packets, f.played, f.digits)
            for f in tick.frames]))

    def sender() -> None:
        while True:
            item = outbox.get()
            if item is None:
                return
            try:
                conn.send(item)
            except (OSError, ValueError):
                return

    engine = MediaEngine(host, range(0), sink)
    conn.send(("ready", priority))  # before any tick can be sent
    threading.Thread(target=sender, name="media-out", daemon=True).start()
    engine.start()
    while True:
        try:
            command = conn.recv()
        except (EOFError, OSError):
            break
        name = command[0]
        if name == "stop":
            break
        if name == "open":
            fd = recv_handle(conn)
            engine.adopt(command[1], socket.socket(fileno=fd), command[2])
        elif name == "connect":
            engine.connect(*command[1:])
        elif name == "play":
            engine.play(command[1], np.frombuffer(command[2], dtype=np.int16), command[3])
        elif name == "stop_playing":
            engine.stop_playing(command[1])
        elif name == "close":
            engine.close(command[1])
    engine.stop()
    outbox.put(None)
