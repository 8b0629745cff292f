"""Call recordings: one stereo WAV per call (caller left, agent right, 8 kHz 16-bit).

One writer thread owns every open file; the agent hands it frames through a queue and never
waits on the disk.  The file is written as the call goes (R18): the data is appended and the
header's sizes are brought up to date every `flush_s`, so a crash leaves a playable file that
lacks at most the last flush interval; `repair()` then sets the header to what is really on disk.
A full disk stops the recording, not the call: what was written stays playable.
When a recording is closed its SHA-256 is computed in this thread and handed to a callback.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .wavio import wav_header

log = logging.getLogger("frontdesk.recordings")

RATE = 8000
FRAME_BYTES = 4  # one stereo 16-bit sample frame
_HEADER_BYTES = 44


@dataclass(frozen=True)
class RecordingInfo:
    path: str
    sha256: str
    frames: int  # stereo sample frames

    error: str | None = None

    @property
    def ms(self) -> int:
        return self.frames * 1000 // RATE


class _Open:
    def __init__(self, path: Path):
        self.path = path
        self.file = open(path, "w+b")  # noqa: SIM115 (closed by the writer thread)
        self.file.write(wav_header(2, RATE, 0))
        self.data_bytes = 0
        self.buffer = bytearray()
        self.since_flush = 0
        self.error: str | None = None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def repair(path: str | Path) -> RecordingInfo:
    """Make a recording left by a crash consistent: header sizes = the whole frames on disk."""
    path = Path(path)
    with open(path, "r+b") as file:
        size = file.seek(0, os.SEEK_END)
        data_bytes = max(0, size - _HEADER_BYTES)
        data_bytes -= data_bytes % FRAME_BYTES
        file.truncate(_HEADER_BYTES + data_bytes)
        file.seek(0)
        file.write(wav_header(2, RATE, data_bytes))
        file.flush()
        os.fsync(file.fileno())
    return RecordingInfo(str(path), _sha256(path), data_bytes // FRAME_BYTES)


class RecordingWriter:
    def __init__(self, flush_s: float = 1.0):
        self._flush_frames = max(1, int(flush_s * 50))  # in 20 ms frames
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._open: dict[str, _Open] = {}
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="recordings", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Close every open recording (their callbacks run) and stop."""
        self._queue.put(("stop",))
        if self._thread is not None:
            self._thread.join(timeout)

    # --- the agent's side (any thread, never blocks) ----------------------------------------

    def open(self, key: str, path: str | Path) -> None:
        self._queue.put(("open", key, Path(path)))

    def write(self, key: str, caller: np.ndarray | None, agent: np.ndarray) -> None:
        self._queue.put(("write", key, caller, agent))

    def write_tick(self, frames: list[tuple[str, np.ndarray | None, np.ndarray]]) -> None:
        """Every call's 20 ms at once: one queue item per tick, not per call."""
        self._queue.put(("tick", frames))

    def close(self, key: str, on_done: Callable[[RecordingInfo], None] | None = None) -> None:
        self._queue.put(("close", key, on_done))

    # --- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            name = item[0]
            try:
                if name == "stop":
                    for key in list(self._open):
                        self._close(key, None)
                    return
                if name == "open":
                    self._do_open(item[1], item[2])
                elif name == "write":
                    self._write(*item[1:])
                elif name == "tick":
                    for key, caller, agent in item[1]:
                        self._write(key, caller, agent)
                elif name == "close":
                    self._close(item[1], item[2])
            except Exception:  # one bad recording must not stop the others
                log.exception("recording writer: %s failed", name)

    def _do_open(self, key: str, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._open[key] = _Open(path)
        except OSError as error:
            log.error("cannot open recording %s: %s", path, error)

    def _write(self, key: str, caller: np.ndarray | None, agent: np.ndarray) -> None:
        rec = self._open.get(key)
        if rec is None or rec.error:
            return
        frame = np.empty((len(agent), 2), dtype="<i2")
        frame[:, 0] = 0 if caller is None else caller
        frame[:, 1] = agent
        rec.buffer += frame.tobytes()
        rec.since_flush += 1
        if rec.since_flush >= self._flush_frames:
            self._flush(rec)

    def _flush(self, rec: _Open, sync: bool = False) -> None:
        rec.since_flush = 0
        try:
            if rec.buffer:
                rec.file.seek(_HEADER_BYTES + rec.data_bytes)
                rec.file.write(rec.buffer)
                rec.data_bytes += len(rec.buffer)
                rec.buffer.clear()
            rec.file.seek(0)
            rec.file.write(wav_header(2, RATE, rec.data_bytes))
            rec.file.flush()
            if sync:
                os.fsync(rec.file.fileno())
        except OSError as error:
            rec.error = "disk full" if error.errno == errno.ENOSPC else str(error)
            rec.buffer.clear()
            log.error("recording %s stopped: %s (the part written is kept)", rec.path, rec.error)
            self._fix_header(rec)

    def _fix_header(self, rec: _Open) -> None:
        """After a failed write, make the header match what really reached the disk."""
        try:
            rec.file.flush()
        except OSError:
            pass
        try:
            size = os.fstat(rec.file.fileno()).st_size
            rec.data_bytes = max(0, size - _HEADER_BYTES) // FRAME_BYTES * FRAME_BYTES
            rec.file.seek(0)
            rec.file.write(wav_header(2, RATE, rec.data_bytes))
            rec.file.flush()
        except OSError:
            pass

    def _close(self, key: str, on_done: Callable[[RecordingInfo], None] | None) -> None:
        rec = self._open.pop(key, None)
        if rec is None:
            return
        if not rec.error:
            self._flush(rec, sync=True)
        try:
            rec.file.close()
        except OSError:
            pass
        info = RecordingInfo(str(rec.path), _sha256(rec.path), rec.data_bytes // FRAME_BYTES, rec.error)
        if on_done is not None:
            try:
                on_done(info)
            except Exception:
                log.exception("recording callback failed for %s", rec.path)
