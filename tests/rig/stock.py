"""Run ``bench/stock_agent.py`` (stock pyVoIP 1.6.8) as a peer of the tests.

    agent = StockAgent(tmp_path / "stock", registrar=kam.hostport, user="frontdesk").start()
    ...                 # agent.sip = Endpoint, agent.events() = parsed JSON lines
    agent.stop()

``start()`` returns when the agent printed ``ready sip=...`` (i.e. ``phone.start()`` returned,
which for stock pyVoIP means the synchronous REGISTER is done) and then waits
``settle_s`` (default 1.1 s) because stock pyVoIP ignores all SIP for 1 s after ``start()``.
"""
from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from tests.rig.ports import Endpoint, free_endpoint, free_rtp_range
from tests.rig.procs import ManagedProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
STOCK_AGENT = REPO_ROOT / "bench" / "stock_agent.py"


class StockAgent:
    """``bench/stock_agent.py`` in its own process (same interpreter as the tests)."""

    def __init__(
        self,
        workdir: Path,
        *,
        registrar: str,
        user: str = "frontdesk",
        password: str = "secret",
        sip: Endpoint | None = None,
        rtp: tuple[int, int] | None = None,
        answer_delay_ms: int = 0,
        no_answer: bool = False,
        hangup_after_ms: int = 0,
        play: Path | None = None,
        record: bool = True,
        run_seconds: float = 0.0,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sip = sip or free_endpoint()
        self.rtp = rtp or free_rtp_range(self.sip.host, 40)
        self.events_path = self.workdir / "events.jsonl"
        self.record_dir = self.workdir / "rec"
        self.log_path = self.workdir / "stock_agent.log"
        argv = [
            sys.executable, "-u", str(STOCK_AGENT),
            "--registrar", registrar, "--user", user, "--password", password,
            "--sip", str(self.sip), "--rtp", f"{self.rtp[0]}-{self.rtp[1]}",
            "--answer-delay-ms", str(answer_delay_ms), "--events", str(self.events_path),
        ]
        if no_answer:
            argv.append("--no-answer")
        if hangup_after_ms:
            argv += ["--hangup-after-ms", str(hangup_after_ms)]
        if play is not None:
            argv += ["--play", str(Path(play).resolve())]
        if record:
            argv += ["--record-dir", str(self.record_dir)]
        if run_seconds:
            argv += ["--run-seconds", str(run_seconds)]
        self.proc = ManagedProcess(argv, cwd=REPO_ROOT, log_path=self.log_path, name="stock_agent",
                                   stop_signal=signal.SIGTERM)
        self.start_seconds: float | None = None
        self.stop_seconds: float | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    def start(self, timeout_s: float = 40.0, settle_s: float = 1.1) -> "StockAgent":
        """Start; wait for ``ready sip=`` (bounded: stock start() may block 30 s), then ``settle_s``."""
        t0 = time.monotonic()
        self.proc.start()
        self.proc.wait_for_log(rf"^ready sip={self.sip.host}:{self.sip.port}$", timeout_s)
        self.start_seconds = time.monotonic() - t0
        if settle_s > 0:
            time.sleep(settle_s)
        return self

    def stop(self, timeout_s: float = 35.0) -> int | None:
        """SIGTERM -> the agent calls phone.stop() (de-REGISTER; up to 30 s if the registrar is gone)."""
        t0 = time.monotonic()
        rc = self.proc.stop(timeout_s)
        self.stop_seconds = time.monotonic() - t0
        return rc

    def events(self) -> list[dict[str, Any]]:
        """The agent's JSON-lines events so far."""
        try:
            lines = self.events_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def wait_event(self, name: str, timeout_s: float, **match: Any) -> dict[str, Any]:
        """Wait (polling 20 ms) for an event ``name`` whose fields include ``match``."""
        deadline = time.monotonic() + timeout_s
        while True:
            for ev in self.events():
                if ev.get("event") == name and all(ev.get(k) == v for k, v in match.items()):
                    return ev
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {name} event {match} in {timeout_s} s; events: {self.events()}")
            time.sleep(0.02)

    def recordings(self) -> list[Path]:
        return sorted(self.record_dir.glob("*.wav"))

    def __enter__(self) -> "StockAgent":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
