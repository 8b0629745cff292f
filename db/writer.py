"""The register's single writer: the call path never waits on the database (R18: nothing is lost).

    writer = RegisterWriter("sqlite:///var/register.db", "var/register.journal")
    writer.start()                        # replays what a crash left in the journal first
    writer.submit(OpenCall(uid, {...}))   # never blocks, never raises, from any thread
    …
    writer.stop()

Two threads, joined by an in-memory backlog:
  intake  drains the submit queue in batches (up to batch_ms, or max_batch ops), appends each
          batch to the journal (flush + fsync) and hands it to the backlog;
  db      applies the backlog, oldest first, up to max_batch ops per transaction (one SAVEPOINT
          per op), then marks those batches done in the journal (db/journal.py says why that
          is crash-safe). A slow or dead database therefore never delays the journal.

Failures:
  * database outage (server stopped, SQLite locked, file unreachable, schema not migrated):
    every op stays in the backlog and in the journal; retried with back-off 0.1 s doubling to
    5 s (flush() retries at once); one warning when the database goes away, one info line when
    it is back; everything then arrives in order.
  * journal unwritable or disk full: logged once, the ops stay in memory and still go to the
    database; the journal is reopened on the next batch and catches up, in order.
  * crash (SIGKILL, power cut): start() replays the journal before anything new. Lost are only
    ops that had not reached the journal: those submitted in the last ~batch_ms (the intake
    wait) plus one fsync before the kill; with the default 50 ms, about 50-60 ms of ops.
  * a bad op (unknown uid, unknown field, a value the database rejects, a naive datetime): its
    SAVEPOINT is rolled back, it is logged as an error and appended to the dead-letter file
    `<journal>.dead`, and the rest of the batch commits.
Outage or bad op is decided by db.apply.is_outage (SQLSTATE classes on PostgreSQL, exception
types on SQLite). The backlog has no bound: during an outage it holds every op in memory (a
front desk makes a few thousand ops a day).

One journal per agent process (start() locks it). The agent's start-up: start(), flush(t),
then db.register.unfinished_calls / mark_interrupted in a session of its own (on SQLite from
make_engine(url, immediate=True), as anything else that writes next to this writer).
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from db.apply import Applier, CloseHook, is_outage
from db.engine import make_engine
from db.journal import DeadLetters, Journal
from db.ops import Op, op_from_json, op_to_json

log = logging.getLogger("frontdesk.register")

BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 5.0
STOP_GRACE_S = 1.0
_STOP = object()


@dataclass(eq=False)
class _Batch:
    ops: list[Op]
    lines: list[str]  # op_to_json of each op
    number: int | None = None  # journal batch number once journaled


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:1000]


class RegisterWriter:
    def __init__(self, url: str, journal_path: str | Path, *, batch_ms: int = 50,
                 max_batch: int = 500, busy_timeout_ms: int = 5000,
                 close_hooks: Iterable[CloseHook] = ()) -> None:
        self.url = url
        make_url(url)  # a malformed URL fails here, not later in the writer thread
        self.journal_path = Path(journal_path)
        self.dead_letter_path = self.journal_path.with_name(self.journal_path.name + ".dead")
        self._batch_s = batch_ms / 1000
        self._max_batch = max_batch
        self._busy_timeout_ms = busy_timeout_ms
        self._hooks: list[CloseHook] = list(close_hooks)
        self._journal = Journal(self.journal_path)
        self._dead = DeadLetters(self.dead_letter_path)
        self._engine: Engine | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Condition()  # backlog, journal, intake_done
        self._backlog: deque[_Batch] = deque()
        self._intake_done = False
        self._count = threading.Condition()  # submitted, done
        self._submitted = 0
        self._done = 0
        self._wake = threading.Event()  # cut a back-off short (flush, stop)
        self._stop_at: float | None = None
        self._threads: list[threading.Thread] = []
        self._db_error: str | None = None
        self._journal_error: str | None = None

    # -- public -------------------------------------------------------------------------------
    def on_close(self, hook: CloseHook) -> CloseHook:
        """Run `hook(session, call)` inside every transaction that closes a call (CloseCall).

        The extension point for the callback queue (R12-R14). Hooks must be idempotent: a
        replayed CloseCall runs them again. If a hook raises, the CloseCall is rolled back and
        dead-lettered with it (an outage error is retried instead). Register before start().
        """
        self._hooks.append(hook)
        return hook

    def start(self) -> None:
        """Replay the journal's uncommitted ops (ahead of anything new), then start the threads.

        Does not wait for the database: call flush() afterwards to wait for the replay, e.g.
        before looking for calls a crash left unfinished (db.register.unfinished_calls).
        Raises JournalBusy when another live writer holds the journal.
        """
        if self._threads or self._stop_at is not None:
            raise RuntimeError("a RegisterWriter starts once (make a new one after stop())")
        self._journal.lock()
        try:
            replay = self._journal.load()
        except OSError:
            self._journal.close()  # an unreadable journal is never emptied: refuse to start
            raise
        replayed = 0
        for number, objs in replay:
            batch = _Batch([], [], number=number)
            for obj in objs:
                try:
                    op = op_from_json(obj)
                    line = op_to_json(op)
                except (ValueError, TypeError) as exc:
                    self._dead_letter(json.dumps(obj, ensure_ascii=False), repr(obj), exc)
                    continue
                batch.ops.append(op)
                batch.lines.append(line)
            self._backlog.append(batch)
            replayed += len(batch.ops)
        if replayed:
            log.info("register: replaying %d op(s) from %s", replayed, self.journal_path)
            with self._count:
                self._submitted += replayed
        self._threads = [threading.Thread(target=self._guard, args=(self._intake_loop,),
                                          name="register-intake", daemon=True),
                         threading.Thread(target=self._guard, args=(self._db_loop,),
                                          name="register-db", daemon=True)]
        for thread in self._threads:
            thread.start()

    def submit(self, op: Op) -> None:
        """Queue one op. Never blocks on the database or the disk, never raises."""
        with self._count:
            self._submitted += 1
        self._queue.put(op)

    def flush(self, timeout: float) -> bool:
        """Wait until all ops submitted so far are committed or dead-lettered; False on timeout."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._count:
            target = self._submitted
            while self._done < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._count.wait(remaining)
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Commit what can be committed within `timeout`, then stop. What is left stays in the
        journal and is replayed by the next start(). Waits at most timeout + 1 s (a database
        call in flight); a writer thread still busy after that is left behind as a daemon."""
        if not self._threads:
            return
        deadline = time.monotonic() + timeout
        self._stop_at = deadline
        self._queue.put(_STOP)
        self._wake.set()
        for thread in self._threads:  # + a grace for a database call in flight at the deadline
            thread.join(max(0.0, deadline - time.monotonic()) + STOP_GRACE_S)
        alive = [t.name for t in self._threads if t.is_alive()]
        with self._lock:
            unjournaled = sum(len(b.ops) for b in self._backlog if b.number is None)
        if alive:
            unjournaled += self._queue.qsize()
        if self.pending:
            log.warning("register: stopped with %d op(s) not committed (%d not in the journal "
                        "and lost)", self.pending, unjournaled)
        if alive:
            log.warning("register: %s still busy at stop; left running as daemon", alive)
            return
        self._threads = []
        self._journal.close()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __enter__(self) -> RegisterWriter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pending(self) -> int:
        """Ops submitted (or replayed) and not yet committed or dead-lettered."""
        with self._count:
            return self._submitted - self._done

    @property
    def last_error(self) -> str | None:
        """The current problem ("database: …" / "journal: …"), None when all is well."""
        return self._db_error or self._journal_error

    @property
    def healthy(self) -> bool:
        """Running, the database takes writes and the journal takes appends."""
        return (bool(self._threads) and all(t.is_alive() for t in self._threads)
                and self._stop_at is None and self.last_error is None)

    def _guard(self, loop: Any) -> None:
        try:
            loop()
        except BaseException:  # a bug: say so loudly; `healthy` turns False with the thread
            log.critical("register: %s died; ops stay in the journal for the next start",
                         threading.current_thread().name, exc_info=True)
            raise

    # -- intake thread: queue -> journal -> backlog --------------------------------------------
    def _intake_loop(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is _STOP:
                break
            ops = [item]
            until = time.monotonic() + self._batch_s
            while len(ops) < self._max_batch:
                try:
                    item = self._queue.get(timeout=max(0.0, until - time.monotonic()))
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                ops.append(item)
            self._take_in(ops)
        with self._lock:
            self._intake_done = True
            self._lock.notify_all()

    def _take_in(self, ops: list[Any]) -> None:
        batch = _Batch([], [])
        for op in ops:
            try:
                batch.lines.append(op_to_json(op))
                batch.ops.append(op)
            except Exception as exc:  # noqa: BLE001 - not JSON, not an op: a bad op
                self._dead_letter(None, repr(op), exc)
                self._mark_done(1)
        if not batch.ops:
            return
        with self._lock:
            self._backlog.append(batch)
            self._journal_backlog()
            self._lock.notify_all()

    def _journal_backlog(self) -> None:
        """Journal, in order, every backlog batch not in the journal yet (called with _lock)."""
        for batch in self._backlog:
            if batch.number is not None:
                continue
            try:
                batch.number = self._journal.append(batch.lines)
            except OSError as exc:
                self._journal_state(exc)
                return
            self._journal_state(None)

    # -- db thread: backlog -> database -------------------------------------------------------
    def _db_loop(self) -> None:
        delay = BACKOFF_FIRST_S
        while True:
            with self._lock:
                while not self._backlog and not self._intake_done:
                    self._lock.wait()
                if not self._backlog:
                    return
                batches = self._head()
            if self._stop_at is not None and time.monotonic() >= self._stop_at:
                return  # stop(): out of time, the rest stays in the journal
            try:
                dead = self._apply(batches)
            except Exception as exc:  # every failure that escapes _apply is an outage
                self._db_state(exc)
                if self._stop_at is not None and time.monotonic() >= self._stop_at:
                    return
                wait = delay if self._stop_at is None else min(delay,
                                                               self._stop_at - time.monotonic())
                self._wake.wait(max(0.0, wait))
                self._wake.clear()
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            delay = BACKOFF_FIRST_S
            self._db_state(None)
            for line, op_repr, exc in dead:
                self._dead_letter(line, op_repr, exc)
            self._committed(batches)

    def _head(self) -> list[_Batch]:
        """The oldest backlog batches, up to max_batch ops (at least one batch)."""
        taken: list[_Batch] = []
        size = 0
        for batch in self._backlog:
            if taken and size + len(batch.ops) > self._max_batch:
                break
            taken.append(batch)
            size += len(batch.ops)
        return taken

    def _apply(self, batches: list[_Batch]) -> list[tuple[str, str, BaseException]]:
        """Apply the ops in one transaction; return the bad ones (already rolled back)."""
        if self._engine is None:
            self._engine = make_engine(self.url, busy_timeout_ms=self._busy_timeout_ms,
                                       immediate=True)
        dead: list[tuple[str, str, BaseException]] = []
        with Session(self._engine, autoflush=False, expire_on_commit=False) as session:
            with session.begin():
                applier = Applier(session, self._hooks)
                for batch in batches:
                    for op, line in zip(batch.ops, batch.lines):
                        try:
                            with session.begin_nested():
                                applier.apply(op)
                        except Exception as exc:
                            if is_outage(exc):
                                raise
                            applier.forget()
                            dead.append((line, repr(op), exc))
        return dead

    def _committed(self, batches: list[_Batch]) -> None:
        with self._lock:
            for _ in batches:
                self._backlog.popleft()
            try:
                if not self._backlog:
                    self._journal.truncate()
                else:
                    for batch in batches:
                        if batch.number is not None:
                            self._journal.mark_done(batch.number)
            except OSError as exc:
                self._journal_state(exc)
        self._mark_done(sum(len(b.ops) for b in batches))

    # -- bookkeeping --------------------------------------------------------------------------
    def _mark_done(self, n: int) -> None:
        with self._count:
            self._done += n
            self._count.notify_all()

    def _dead_letter(self, line: str | None, op_repr: str, exc: BaseException) -> None:
        error = _describe(exc)
        log.error("register: bad op dead-lettered to %s: %s (%s)", self.dead_letter_path,
                  op_repr[:300], error)
        self._dead.add(line, op_repr, error)

    def _db_state(self, exc: BaseException | None) -> None:
        if exc is None:
            if self._db_error is not None:
                log.info("register: database is back; writing %d pending op(s)", self.pending)
                self._db_error = None
            return
        was_ok = self._db_error is None
        self._db_error = f"database: {_describe(exc)}"
        if was_ok:
            log.warning("register: database unavailable, keeping ops in memory and in the "
                        "journal and retrying: %s", _describe(exc))

    def _journal_state(self, exc: BaseException | None) -> None:
        if exc is None:
            if self._journal_error is not None:
                log.info("register: journal %s writable again", self.journal_path)
                self._journal_error = None
            return
        was_ok = self._journal_error is None
        self._journal_error = f"journal: {_describe(exc)}"
        if was_ok:
            log.warning("register: journal %s unwritable, keeping ops in memory only: %s",
                        self.journal_path, _describe(exc))
