"""The dialer: the agent calls customers back by itself (R13, `callbacks.dial = true`).

A thread of its own, because claiming and finishing tasks are database transactions and the
call path never waits on the database.  Every `dial_interval_s` it claims the next due task
(never in quiet hours: db.callbacks refuses, R13), hands it to the agent as a call to place, and
when the agent reports how the attempt went it records the attempt with the register row of the
outgoing call (R13: the callback record is complete), which reschedules or closes the task.
"""
from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

from db import callbacks
from db.engine import make_engine

log = logging.getLogger("frontdesk.dialer")


@dataclass(frozen=True)
class DialRequest:
    task_id: int
    number: str
    reason: str


@dataclass(frozen=True)
class AttemptResult:
    task_id: int
    outcome: str  # db.callbacks FINISH_OUTCOMES
    call_uid: str | None
    note: str


class Dialer:
    def __init__(self, config, *, place_call: Callable[[DialRequest], None], free_lines: Callable[[], int],
                 flush_register: Callable[[float], bool], once: bool = False):
        self.config = config
        self.rules = config.callbacks.rules(config.tz)
        self.worker = config.callbacks.worker or f"{config.desk.name}@{socket.gethostname()}"
        self._place_call = place_call
        self._free_lines = free_lines
        self._flush_register = flush_register
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._in_flight = 0
        self.once = once
        self.placed = 0
        self.finished = threading.Event()  # with `once`: the single attempt is recorded

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="dialer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def report(self, result: AttemptResult) -> None:
        """From the agent thread: how an attempt ended (never blocks)."""
        self._results.put(result)
        self._wake.set()

    # --- the dialer thread --------------------------------------------------------------------

    def _run(self) -> None:
        engine = make_engine(self.config.storage.db, immediate=True)
        work = callbacks.CallbackQueue(engine, self.rules)
        try:
            while not self._stop.is_set():
                self._record_results(work)
                if self.once and self.placed and not self._in_flight:
                    self.finished.set()
                    return
                if self._may_dial():
                    self._dial_next(work)
                self._wake.wait(self.config.callbacks.dial_interval_s)
                self._wake.clear()
            self._record_results(work)  # what ended meanwhile: no attempt is lost on stop
        finally:
            engine.dispose()

    def _may_dial(self) -> bool:
        if self.once and self.placed:
            return False
        return self._in_flight < self.config.callbacks.dial_lines and self._free_lines() > 0

    def _dial_next(self, work: callbacks.CallbackQueue) -> None:
        try:
            task = work.claim(self.worker)
        except Exception as error:  # the database may be down: try again next round
            log.warning("cannot claim a callback: %s", error)
            return
        if task is None:
            return
        number = task.typed_number or task.number
        log.info("calling back %s for task %s (%s)", number, task.id, task.reason)
        self._in_flight += 1
        self.placed += 1
        self._place_call(DialRequest(task.id, number, task.reason))

    def _record_results(self, work: callbacks.CallbackQueue) -> None:
        while True:
            try:
                result = self._results.get_nowait()
            except queue.Empty:
                return
            self._in_flight = max(0, self._in_flight - 1)
            self._flush_register(10.0)  # the outgoing call's row must be in before it is linked
            for attempt in range(20):
                try:
                    work.finish(result.task_id, self.worker, result.outcome, note=result.note,
                                call_ref=result.call_uid)
                    break
                except callbacks.NoSuchCall:
                    time.sleep(0.5)  # the register writer has not caught up yet
                except callbacks.CallbackError as error:
                    log.error("callback task %s: %s", result.task_id, error)
                    break
                except Exception as error:  # database outage: keep trying a while
                    log.warning("recording the callback attempt failed (%s); retrying", error)
                    time.sleep(1.0)
