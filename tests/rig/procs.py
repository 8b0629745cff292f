"""A child process of the rig: started in its own session, stopped by its own PID, bounded waits.

Why a new session: Kamailio's main process signals its whole process group on shutdown
(``kill(0, SIGTERM)``).  Started in pytest's group it would take pytest down with it.  In its
own session the group id equals the child's PID, which also lets ``stop()`` find any worker
the child forked (by scanning ``/proc`` for that session/group) and kill each one by its PID.

Every live ``ManagedProcess`` is also stopped from an ``atexit`` hook, so an aborted test run
does not leave peers behind (a SIGKILLed pytest cannot be helped).
"""
from __future__ import annotations

import atexit
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

_live: set["ManagedProcess"] = set()
_history: list["ManagedProcess"] = []
_live_lock = threading.Lock()


def started() -> list["ManagedProcess"]:
    """Every ManagedProcess started in this interpreter, in start order (for leak checks)."""
    with _live_lock:
        return list(_history)


def leaked() -> list[tuple[str, int]]:
    """(name, pid) of every process the rig started that is still alive, workers included."""
    out: list[tuple[str, int]] = []
    for proc in started():
        for pid in proc.leftover_pids():
            out.append((proc.name, pid))
    return out


def session_pids(sid: int) -> list[int]:
    """PIDs of all processes whose session id or process group id is ``sid`` (read from /proc)."""
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode("latin-1")
        except OSError:
            continue
        # fields after "(comm)": state ppid pgrp session ...
        rest = stat[stat.rfind(")") + 2:].split()
        if len(rest) < 4:
            continue
        state, pgrp, session = rest[0], int(rest[2]), int(rest[3])
        if state == "Z":
            continue
        if pgrp == sid or session == sid:
            found.append(int(entry))
    return found


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("latin-1")
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].split()[0] != "Z"


class ManagedProcess:
    """One child process with its output in a log file.

    ``argv`` runs with ``cwd``; stdout and stderr go to ``log_path`` (appended, so a restart keeps
    the earlier output), stderr to ``stderr_path`` instead when that is given.  ``start()`` returns
    at once; readiness is the caller's business (``wait_for_log``/``wait_for`` help).  ``stop()``
    sends ``stop_signal`` to the PID, waits up to ``timeout_s``, then SIGKILLs the PID, then
    SIGKILLs any process left in its session by PID.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        log_path: Path,
        stderr_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        name: str | None = None,
        stop_signal: int = signal.SIGTERM,
        stdin_pipe: bool = False,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.cwd = Path(cwd)
        self.log_path = Path(log_path)
        self.stderr_path = Path(stderr_path) if stderr_path is not None else None
        self.env = dict(env) if env is not None else None
        self.name = name or Path(self.argv[0]).name
        self.stop_signal = stop_signal
        self.stdin_pipe = stdin_pipe
        self.popen: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "ManagedProcess":
        """Spawn the process (new session; stdin /dev/null, or an idle pipe with ``stdin_pipe``).

        Raises if already running.  (baresip needs the pipe: it cannot epoll /dev/null.)
        """
        if self.running():
            raise RuntimeError(f"{self.name} already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = None
        if self.env is not None:
            env = dict(os.environ)
            env.update(self.env)
        with open(self.log_path, "ab") as log:
            log.write(f"=== rig: start {self.name}: {' '.join(self.argv)}\n".encode())
            log.flush()
            err = open(self.stderr_path, "ab") if self.stderr_path is not None else None
            try:
                self.popen = subprocess.Popen(
                    self.argv,
                    cwd=self.cwd,
                    stdin=subprocess.PIPE if self.stdin_pipe else subprocess.DEVNULL,
                    stdout=log,
                    stderr=err if err is not None else subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            finally:
                if err is not None:
                    err.close()
        self.started_at = time.monotonic()
        with _live_lock:
            _live.add(self)
            _history.append(self)
        return self

    @property
    def pid(self) -> int | None:
        """PID of the current (or last) child, None before ``start()``."""
        return self.popen.pid if self.popen else None

    @property
    def returncode(self) -> int | None:
        """Exit status once the process has ended (negative: killed by that signal)."""
        return self.popen.poll() if self.popen else None

    def running(self) -> bool:
        """True while the child has not exited."""
        return self.popen is not None and self.popen.poll() is None

    def wait(self, timeout_s: float) -> int:
        """Wait at most ``timeout_s`` for the exit; returns the exit status or raises TimeoutError."""
        if self.popen is None:
            raise RuntimeError(f"{self.name} was never started")
        try:
            rc = self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{self.name} (pid {self.pid}) still running after {timeout_s} s") from None
        self._forget()
        return rc

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the child's PID (only if it is still running)."""
        if self.running() and self.popen is not None:
            os.kill(self.popen.pid, sig)

    def leftover_pids(self) -> list[int]:
        """Processes still alive in the child's session (the child itself included)."""
        if self.popen is None:
            return []
        return session_pids(self.popen.pid)

    def stop(self, timeout_s: float = 5.0) -> int | None:
        """Stop the child and everything it forked; returns its exit status (None if never started)."""
        if self.popen is None:
            return None
        p = self.popen
        if p.poll() is None:
            try:
                os.kill(p.pid, self.stop_signal)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=5.0)
        # forked workers that outlived the main process: kill each by its PID
        deadline = time.monotonic() + 2.0
        while True:
            rest = [pid for pid in session_pids(p.pid) if pid != os.getpid()]
            if not rest:
                break
            for pid in rest:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        self._forget()
        return p.returncode

    def _forget(self) -> None:
        if self.popen is not None and self.popen.stdin is not None:
            try:
                self.popen.stdin.close()
            except OSError:
                pass
        with _live_lock:
            _live.discard(self)

    # -- output -------------------------------------------------------------------------------
    def log_text(self) -> str:
        """Everything the child wrote so far (all starts), decoded leniently."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the log, for error messages."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_for_log(self, pattern: str, timeout_s: float, *, since: int = 0) -> re.Match[str]:
        """Wait (polling every 20 ms) until ``pattern`` matches the log after offset ``since``.

        Raises RuntimeError if the process exits first and TimeoutError after ``timeout_s``.
        """
        rx = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout_s
        while True:
            m = rx.search(self.log_text(), since)
            if m:
                return m
            if not self.running():
                m = rx.search(self.log_text(), since)
                if m:
                    return m
                raise RuntimeError(
                    f"{self.name} exited (rc={self.returncode}) before /{pattern}/ appeared:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"/{pattern}/ not in {self.name}'s log after {timeout_s} s:\n{self.log_tail()}")
            time.sleep(0.02)

    def __enter__(self) -> "ManagedProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for(predicate: Callable[[], T], timeout_s: float, interval_s: float = 0.02, what: str = "condition") -> T:
    """Poll ``predicate()`` until it returns a truthy value (returned); TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout_s} s")
        time.sleep(interval_s)


@atexit.register
def _stop_all() -> None:
    with _live_lock:
        procs = list(_live)
    for proc in procs:
        try:
            proc.stop(timeout_s=2.0)
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass
