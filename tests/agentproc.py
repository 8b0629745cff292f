"""Running the real agent (`python -m softphone run`) as a subprocess for integration tests."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[1]


class AgentProcess:
    """The agent on its own SQLite register and recordings folder in `workdir`."""

    def __init__(self, workdir: Path, *, listen: tuple[str, int], registrar: tuple[str, int] | None = None,
                 user: str = "frontdesk", password: str = "", answer_delay_ms: int | None = 300,
                 db: str | None = None, config: dict | None = None, timezone: str = "Asia/Shanghai"):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.listen = listen
        self.db = db or f"sqlite:///{self.workdir / 'register.db'}"
        sections = {
            "sip": {"listen": f"{listen[0]}:{listen[1]}", "user": user, "password": password,
                    "rtp_ports": "30000-39999"},
            "storage": {"db": self.db, "recordings": str(self.workdir / "recordings"),
                        "journal": str(self.workdir / "register.journal")},
            "desk": {"timezone": timezone},
        }
        if registrar:
            sections["sip"]["registrar"] = f"{registrar[0]}:{registrar[1]}"
        if answer_delay_ms is not None:
            sections.setdefault("answer", {})["delay_ms"] = answer_delay_ms
        for section, values in (config or {}).items():
            sections.setdefault(section, {}).update(values)
        self.config_path = self.workdir / "agent.toml"
        self.config_path.write_text(_toml(sections), encoding="utf-8")
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []
        self.tz = ZoneInfo(timezone)

    def start(self, timeout: float = 20.0, wait_ready: bool = True) -> "AgentProcess":
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("FRONTDESK_DB", None)
        env.pop("FRONTDESK_CONFIG", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "softphone", "run", "--config", str(self.config_path)],
                                     cwd=self.workdir, stdout=subprocess.PIPE, stderr=open(self.workdir / "agent.log", "ab"),
                                     text=True, env=env)
        threading.Thread(target=self._read, daemon=True).start()
        if wait_ready and not self.wait_line("ready sip=", timeout):
            self.kill()
            raise RuntimeError(f"agent did not get ready:\n{self.log_text()[-3000:]}")
        return self

    def _read(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, prefix: str, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if line.startswith(prefix):
                    return line
            if self.proc and self.proc.poll() is not None and not any(l.startswith(prefix) for l in self.lines):
                time.sleep(0.1)
                return next((l for l in self.lines if l.startswith(prefix)), None)
            time.sleep(0.02)
        return None

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log_text(self) -> str:
        path = self.workdir / "agent.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    # --- the register, read in-process ---------------------------------------------------------

    def calls(self) -> list[dict]:
        from db import register
        from db.engine import make_engine, session_factory
        engine = make_engine(self.db)
        try:
            with session_factory(engine)() as session:
                return [register.call_to_dict(c, self.tz) for c in register.list_calls(session)][::-1]
        finally:
            engine.dispose()

    def events(self, call_ref) -> list[dict]:
        from db import register
        from db.engine import make_engine, session_factory
        engine = make_engine(self.db)
        try:
            with session_factory(engine)() as session:
                call = register.get_call(session, call_ref)
                return [register.event_to_dict(e, self.tz) for e in register.call_events(session, call)]
        finally:
            engine.dispose()

    def wait_calls(self, count: int, timeout: float = 15.0, ended: bool = True) -> list[dict]:
        deadline = time.monotonic() + timeout
        rows: list[dict] = []
        while time.monotonic() < deadline:
            rows = self.calls()
            done = [r for r in rows if not ended or r["status"] == "ended"]
            if len(done) >= count:
                return rows
            time.sleep(0.1)
        raise AssertionError(f"expected {count} calls in the register, have {rows}")

    def __enter__(self) -> "AgentProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            self.kill()


def _toml(sections: dict) -> str:
    out = []
    for name, values in sections.items():
        out.append(f"[{name}]")
        for key, value in values.items():
            if isinstance(value, str):
                out.append(f'{key} = "{value}"')
            elif isinstance(value, bool):
                out.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, (list, tuple)):
                out.append(f"{key} = {list(value)}")
            else:
                out.append(f"{key} = {value}")
        out.append("")
    return "\n".join(out)
