"""The register's write-ahead journal and its dead-letter file (R18: nothing is lost).

The journal is a JSON-lines file of the batches that are not yet known to be committed:
    {"batch": 7, "ops": [<op>, …]}     appended, flushed and fsync'ed BEFORE the database sees it
    {"done": 7}                        appended (no fsync) after batch 7 is committed
and it is truncated to nothing whenever every batch it holds is committed. Why that is safe:
  * a crash before a batch line is on disk loses only ops that were never in the journal
    (the in-memory window, about batch_ms);
  * a crash after the commit but before its "done" line replays a committed batch: ops are
    idempotent, so nothing is duplicated;
  * replay starts at the first batch without a "done" line and re-applies everything after it,
    committed or not, in order. Re-applying a suffix of the history in order ends in the same
    state, even if a power cut kept a later "done" line and lost an earlier one;
  * a torn last line (crash mid-write, disk full) is skipped when loading; before appending
    again, a missing newline is added so the fragment never glues onto the next batch.
One writer per journal: `open()` takes an exclusive flock on `<journal>.lock`.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import stat
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger("frontdesk.register")


class JournalBusy(RuntimeError):
    """Another live writer holds this journal."""


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._broken = False  # the last write failed: reopen the path before the next one
        self._lock_fd: int | None = None
        self.next_batch = 1

    # -- start-up -----------------------------------------------------------------------------
    def lock(self) -> None:
        """Take the journal for this writer; JournalBusy if another process has it."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            log.warning("register journal lock %s unavailable (%s); going on without it",
                        lock_path, exc)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalBusy(f"{self.path} is in use by another register writer") from None
        except OSError as exc:
            log.warning("cannot flock %s (%s); going on without it", lock_path, exc)
        self._lock_fd = fd

    def load(self) -> list[tuple[int, list[dict[str, Any]]]]:
        """The batches to replay, oldest first: (batch number, op objects as decoded JSON)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return []
        if not stat.S_ISREG(st.st_mode):
            log.warning("register journal %s is not a regular file; nothing to replay", self.path)
            return []
        with open(self.path, "rb") as f:
            lines = f.read().split(b"\n")
        batches: list[tuple[int, list[dict[str, Any]]]] = []
        done: set[int] = set()
        torn = 0
        for raw in lines:
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
                if "batch" in record:
                    batches.append((int(record["batch"]), list(record["ops"])))
                else:
                    done.add(int(record["done"]))
            except (ValueError, KeyError, TypeError):
                torn += 1
        if torn:
            log.warning("register journal %s: skipped %d torn line(s)", self.path, torn)
        self.next_batch = max((b for b, _ in batches), default=0) + 1
        first = next((i for i, (b, _) in enumerate(batches) if b not in done), len(batches))
        return batches[first:]

    # -- running ------------------------------------------------------------------------------
    def _open(self) -> int:
        if self._broken:
            self._drop()  # the path may name another file now (space freed, disk replaced)
        if self._fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                st = os.fstat(fd)
                torn = (stat.S_ISREG(st.st_mode) and st.st_size > 0
                        and os.pread(fd, 1, st.st_size - 1) != b"\n")
                if torn:  # a crash or a full disk cut the last line: seal it off
                    _write_all(fd, b"\n")
            except OSError:
                os.close(fd)
                raise
            _sync_dir(self.path.parent)  # a newly created journal's name survives a power cut
            self._fd = fd
        return self._fd

    def append(self, ops_json: list[str]) -> int:
        """Write one batch line, fsync it, return its number. OSError when the journal cannot."""
        batch = self.next_batch
        self._write(f'{{"batch":{batch},"ops":[{",".join(ops_json)}]}}\n'.encode(), sync=True)
        self.next_batch += 1
        return batch

    def mark_done(self, batch: int) -> None:
        self._write(f'{{"done":{batch}}}\n'.encode(), sync=False)

    def truncate(self) -> None:
        """Everything in the journal is committed: empty it."""
        fd = self._open()
        try:
            os.ftruncate(fd, 0)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # not a regular file (a device): nothing to empty
                self._broken = True
                raise

    def _write(self, data: bytes, *, sync: bool) -> None:
        fd = self._open()
        size = None
        try:
            size = os.fstat(fd).st_size
            _write_all(fd, data)
            if sync:
                os.fsync(fd)
            self._broken = False
        except OSError:
            if size is not None:
                try:
                    os.ftruncate(fd, size)  # take back a partial line if we can
                except OSError:
                    pass
            self._broken = True
            raise

    def _drop(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def close(self) -> None:
        self._drop()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None


def _sync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class DeadLetters:
    """Ops that can never be applied, one JSON line each, with the error: kept, never retried."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def add(self, op_json: str | None, op_repr: str, error: str) -> None:
        record = {"at": datetime.now(timezone.utc).isoformat(), "error": error,
                  "op": json.loads(op_json) if op_json else None, "repr": op_repr}
        line = json.dumps(record, ensure_ascii=False, default=repr) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            log.error("cannot write dead letter to %s (%s): %s", self.path, exc, line.rstrip())
