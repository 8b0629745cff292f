"""Run SIPp 3.6.1 scenarios (``tests/rig/scenarios/*.xml``) as caller or simple UAS.

``run_sipp`` blocks until SIPp exits (bounded by ``timeout_s``); ``start_sipp`` returns a
``SippProcess`` for tests that must act while the call is up.  Both give a ``SippResult`` with
SIPp's exit code, successful/failed call counts, the message trace parsed per call, per-call
INVITE->180 / INVITE->200 times (from the trace timestamps, i.e. as SIPp saw them), SIPp's own
rtd samples (``rtd["1"]`` = INVITE->180, ``rtd["2"]`` = INVITE->200/final), and the
scenario's ``<log>`` lines.

Scenario placeholders, filled when the scenario is copied into the workdir:
``@PCAP@`` (the ``pcap`` argument; without one the ``play_pcap_audio`` line is removed),
``@WAIT_BYE_MS@``, ``@FINAL_WAIT_MS@``, ``@CANCEL_WAIT_MS@``, ``@EXPIRES@``, ``@CONTACT@``, ``@SERVICE_AT@``
(defaults in ``SCENARIO_DEFAULTS``; override with ``scenario_vars``).  SIPp keywords
(``[service]`` from ``service`` = ``-s``, ``-d`` from ``duration_ms``) work as usual.

Every SIPp binds only its own address (``-bind_local``), its own media ports (``-mp``) and its
own control port (``-cp``; the default 8888 would collide between parallel instances).
"""
from __future__ import annotations

import csv
import re
import shutil
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from glob import escape as glob_escape
from pathlib import Path
from typing import Any, TypedDict

from tests.rig.ports import free_rtp_range, free_udp_port
from tests.rig.procs import ManagedProcess

SIPP = shutil.which("sipp") or "sipp"
SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"

SCENARIO_DEFAULTS: dict[str, str] = {
    "WAIT_BYE_MS": "30000",
    "FINAL_WAIT_MS": "20000",
    "CANCEL_WAIT_MS": "8000",
    "EXPIRES": "3600",
    "CONTACT": "[local_ip]:[local_port]",
    "SERVICE_AT": "[service]@",
    "CALLER": "13800138000",  # the From user of the caller scenarios: a caller ID the desk can call back
}

_SEP = re.compile(r"^-{20,} (\d{4}-\d{2}-\d{2}[ \t]\d{2}:\d{2}:\d{2}\.\d+)\s*$")
_DIR = re.compile(r"message (sent|received)", re.IGNORECASE)


@dataclass
class TracedMessage:
    """One SIP message from SIPp's ``-trace_msg`` log."""

    t: float            # wall-clock epoch seconds (SIPp's timestamp, microseconds)
    direction: str      # "sent" or "received"
    first_line: str
    text: str

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive; compact forms not handled)."""
        rx = re.compile(rf"^{re.escape(name)}\s*:\s*(.*)$", re.IGNORECASE | re.MULTILINE)
        head = self.text.split("\n\n", 1)[0]
        m = rx.search(head)
        return m.group(1).strip() if m else None

    @property
    def call_id(self) -> str | None:
        return self.header("Call-ID") or self.header("i")

    @property
    def cseq(self) -> tuple[int, str] | None:
        v = self.header("CSeq")
        if not v:
            return None
        n, _, meth = v.partition(" ")
        return (int(n), meth.strip()) if n.isdigit() else None

    @property
    def status(self) -> int | None:
        m = re.match(r"^SIP/2\.0 (\d{3})", self.first_line)
        return int(m.group(1)) if m else None

    @property
    def method(self) -> str | None:
        return None if self.status is not None else self.first_line.split(" ", 1)[0]

    @property
    def body(self) -> str:
        parts = self.text.split("\n\n", 1)
        return parts[1] if len(parts) > 1 else ""


def parse_message_log(text: str) -> list[TracedMessage]:
    """Messages of a SIPp ``-trace_msg`` file, in file order."""
    out: list[TracedMessage] = []
    blocks: list[tuple[float, list[str]]] = []
    cur: list[str] | None = None
    for line in text.replace("\r\n", "\n").split("\n"):
        m = _SEP.match(line)
        if m:
            stamp = m.group(1).replace("\t", " ")
            t = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
            cur = []
            blocks.append((t, cur))
        elif cur is not None:
            cur.append(line)
    for t, lines in blocks:
        if not lines:
            continue
        d = _DIR.search(lines[0])
        if not d:
            continue
        body = "\n".join(lines[1:]).strip("\n")
        first = body.split("\n", 1)[0].strip()
        if not first:
            continue
        out.append(TracedMessage(t, d.group(1).lower(), first, body.rstrip() + "\n"))
    return out


class CallTiming(TypedDict):
    """Per-call timing as SIPp saw it (ms; None when that response never came)."""

    call_id: str
    role: str                         # "uac" (SIPp sent the INVITE) or "uas"
    invite_t: float                   # epoch seconds of the first INVITE
    invite_to_180_ms: float | None
    invite_to_200_ms: float | None
    invite_to_final_ms: float | None
    final_status: int | None


def call_timings(messages: Sequence[TracedMessage]) -> list[CallTiming]:
    """Per Call-ID: from the first INVITE (either direction) to the first 180 / 200 / final
    response for that INVITE's CSeq going the other way.  Keys: ``call_id``, ``role``
    (``uac``/``uas``), ``invite_t`` (epoch s), ``invite_to_180_ms``, ``invite_to_200_ms``,
    ``invite_to_final_ms``, ``final_status`` (None when absent)."""
    by_call: dict[str, list[TracedMessage]] = {}
    for m in messages:
        if m.call_id:
            by_call.setdefault(m.call_id, []).append(m)
    out: list[CallTiming] = []
    for cid, msgs in by_call.items():
        inv = next((m for m in msgs if m.method == "INVITE"), None)
        if inv is None:
            continue
        other = "received" if inv.direction == "sent" else "sent"
        row: CallTiming = {
            "call_id": cid, "role": "uac" if inv.direction == "sent" else "uas", "invite_t": inv.t,
            "invite_to_180_ms": None, "invite_to_200_ms": None, "invite_to_final_ms": None, "final_status": None,
        }
        for m in msgs:
            if m.direction != other or m.status is None or m.cseq != inv.cseq or m.t < inv.t:
                continue
            ms = round((m.t - inv.t) * 1000.0, 3)
            if m.status == 180 and row["invite_to_180_ms"] is None:
                row["invite_to_180_ms"] = ms
            if m.status == 200 and row["invite_to_200_ms"] is None:
                row["invite_to_200_ms"] = ms
            if m.status >= 200 and row["final_status"] is None:
                row["final_status"] = m.status
                row["invite_to_final_ms"] = ms
        out.append(row)
    return sorted(out, key=lambda r: r["invite_t"])


@dataclass
class SippResult:
    """Outcome of one SIPp run (see module doc)."""

    returncode: int | None
    successful: int
    failed: int
    timings: list[CallTiming]
    messages: dict[str, list[TracedMessage]]
    logs: list[str]
    rtd: dict[str, list[float]]
    stdout_path: Path
    stderr_path: Path
    message_path: Path
    log_path: Path
    error_path: Path
    workdir: Path
    argv: list[str]
    timed_out: bool = False
    elapsed_s: float = 0.0

    @property
    def all_messages(self) -> list[TracedMessage]:
        """Every traced message of every call, in time order."""
        return sorted((m for ms in self.messages.values() for m in ms), key=lambda m: m.t)

    def first_lines(self, call_id: str | None = None) -> list[tuple[str, str]]:
        """(direction, first line) pairs, for one call or all, in time order."""
        msgs = self.messages.get(call_id, []) if call_id else self.all_messages
        return [(m.direction, m.first_line) for m in msgs]

    def log_has(self, needle: str) -> bool:
        """True if any scenario ``<log>`` line contains ``needle``."""
        return any(needle in line for line in self.logs)

    def describe(self) -> str:
        """A readable summary (counts, logs, ladder, stderr tail) for assertion messages."""
        ladder = "\n".join(f"  {m.direction:8} {m.first_line}" for m in self.all_messages)
        err = _tail(self.stderr_path, 15) + _tail(self.error_path, 15)
        return (f"sipp rc={self.returncode} ok={self.successful} failed={self.failed} timed_out={self.timed_out}\n"
                f"argv: {' '.join(self.argv)}\nlogs:\n  " + "\n  ".join(self.logs) + f"\nladder:\n{ladder}\n{err}")

    def assert_ok(self, calls: int = 1) -> "SippResult":
        """Raise AssertionError (with ``describe()``) unless rc 0 and ``calls`` successful calls."""
        if self.returncode != 0 or self.successful != calls or self.failed != 0 or self.timed_out:
            raise AssertionError(self.describe())
        return self


def _tail(path: Path, n: int) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    return f"--- {path.name}:\n" + "\n".join(lines[-n:]) + "\n" if lines else ""


def resolve_scenario(scenario: str | Path) -> Path:
    """A scenario name from ``scenarios/`` (with or without ``.xml``) or a path to an XML file."""
    p = Path(scenario)
    if p.suffix == ".xml" and p.exists():
        return p.resolve()
    cand = SCENARIO_DIR / (p.name if p.suffix == ".xml" else f"{p.name}.xml")
    if not cand.exists():
        raise FileNotFoundError(f"no SIPp scenario {scenario!r} (looked in {SCENARIO_DIR})")
    return cand


def render_scenario(src: Path, dst: Path, *, pcap: Path | None, variables: Mapping[str, str]) -> Path:
    """Copy ``src`` to ``dst`` with the ``@NAME@`` placeholders filled (see module doc)."""
    text = src.read_text(encoding="iso-8859-1")
    if pcap is not None:
        text = text.replace("@PCAP@", str(Path(pcap).resolve()))
    else:
        text = "\n".join(line for line in text.split("\n") if 'play_pcap_audio="@PCAP@"' not in line)
        text = text.replace("@PCAP@", "(no pcap)")
    for k, v in variables.items():
        text = text.replace(f"@{k}@", v)
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise ValueError(f"{src.name}: unfilled placeholders {sorted(set(left))}")
    dst.write_text(text, encoding="iso-8859-1")
    return dst


class SippProcess:
    """A running SIPp; ``wait(timeout_s)`` / ``stop()`` return its ``SippResult``."""

    def __init__(self, proc: ManagedProcess, files: dict[str, Path], workdir: Path, argv: list[str],
                 stem: str) -> None:
        self.proc = proc
        self.stem = stem
        self.files = files
        self.workdir = workdir
        self.argv = argv
        self.t0 = time.monotonic()
        self._result: SippResult | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.running()

    def wait(self, timeout_s: float) -> SippResult:
        """Wait at most ``timeout_s`` for SIPp to exit; on timeout stop it (``timed_out=True``)."""
        if self._result is not None:
            return self._result
        timed_out = False
        try:
            self.proc.wait(timeout_s)
        except TimeoutError:
            timed_out = True
            self._terminate()
        return self._collect(timed_out)

    def stop(self, grace_s: float = 3.0) -> SippResult:
        """Ask SIPp to finish (SIGUSR1: no new calls, let calls end), then SIGTERM/SIGKILL after ``grace_s``."""
        if self._result is not None:
            return self._result
        if self.proc.running():
            self.proc.signal(signal.SIGUSR1)
            try:
                self.proc.wait(grace_s)
            except TimeoutError:
                self._terminate()
        return self._collect(False)

    def _terminate(self) -> None:
        self.proc.stop(timeout_s=2.0)

    def _collect(self, timed_out: bool) -> SippResult:
        rc = self.proc.returncode
        f = self.files
        msgs = parse_message_log(_read(f["messages"]))
        per_call: dict[str, list[TracedMessage]] = {}
        for m in msgs:
            per_call.setdefault(m.call_id or "?", []).append(m)
        ok, failed = _counts(f["screen"], f["stat"])
        logs = [line for line in _read(f["log"]).splitlines() if line.strip()]
        self._result = SippResult(
            returncode=rc, successful=ok, failed=failed, timings=call_timings(msgs), messages=per_call,
            logs=logs, rtd=_rtt(self.workdir, self.stem), stdout_path=f["stdout"], stderr_path=f["stderr"],
            message_path=f["messages"], log_path=f["log"], error_path=f["errors"], workdir=self.workdir,
            argv=self.argv, timed_out=timed_out, elapsed_s=time.monotonic() - self.t0,
        )
        return self._result


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _counts(screen: Path, stat: Path) -> tuple[int, int]:
    text = _read(screen)
    ok = re.findall(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", text)
    bad = re.findall(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)", text)
    if ok and bad:
        return int(ok[-1]), int(bad[-1])
    rows = list(csv.reader(_read(stat).splitlines(), delimiter=";"))
    if len(rows) >= 2:
        head, last = rows[0], rows[-1]
        try:
            return int(last[head.index("SuccessfulCall(C)")]), int(last[head.index("FailedCall(C)")])
        except (ValueError, IndexError):
            pass
    return 0, 0


def _rtt(workdir: Path, stem: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for path in sorted(workdir.glob(f"{glob_escape(stem)}_*_rtt.csv")):
        for row in csv.reader(_read(path).splitlines(), delimiter=";"):
            if len(row) >= 3 and row[1].replace(".", "", 1).isdigit():
                out.setdefault(row[2].strip(), []).append(float(row[1]))
    return out


def start_sipp(
    scenario: str | Path,
    target: str | None,
    *,
    workdir: Path,
    local_ip: str,
    service: str = "frontdesk",
    local_port: int | None = None,
    media_ip: str | None = None,
    media_port: int | None = None,
    calls: int | None = 1,
    rate: float | None = None,
    rate_period_ms: int | None = None,
    limit: int | None = None,
    duration_ms: int | None = None,
    pcap: Path | None = None,
    auth_user: str | None = None,
    auth_pass: str | None = None,
    scenario_vars: Mapping[str, str] | None = None,
    keys: Mapping[str, str] | None = None,
    global_timeout_s: float | None = None,
    extra_args: Sequence[str] = (),
    name: str | None = None,
) -> SippProcess:
    """Start SIPp and return at once (see ``run_sipp`` for the arguments).

    ``target`` is ``host:port`` of the peer (``None`` for a UAS that only waits).  SIPp's
    ``-timeout`` is set to ``global_timeout_s`` when given, as a second bound inside SIPp.
    """
    src = resolve_scenario(scenario)
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    tag = name or src.stem
    n = 0
    while (workdir / f"{tag}.{n}.xml").exists():
        n += 1
    stem = f"{tag}.{n}"
    variables = dict(SCENARIO_DEFAULTS)
    if not service:
        variables["SERVICE_AT"] = ""
    variables.update(scenario_vars or {})
    sf = render_scenario(src, workdir / f"{stem}.xml", pcap=pcap, variables=variables)
    files = {k: workdir / f"{stem}.{k}.log" for k in ("messages", "log", "errors", "screen", "stdout", "stderr")}
    files["stat"] = workdir / f"{stem}.stat.csv"
    lport = local_port if local_port is not None else free_udp_port(local_ip)
    mip = media_ip or local_ip
    mport = media_port if media_port is not None else free_rtp_range(mip, 4)[0]
    argv: list[str] = [SIPP]
    if target:
        argv.append(target)
    argv += [
        "-sf", str(sf), "-i", local_ip, "-p", str(lport), "-bind_local",
        "-mi", mip, "-mp", str(mport),
        "-ci", local_ip, "-cp", str(free_udp_port(local_ip)),
        "-nostdin",
        "-trace_msg", "-message_file", str(files["messages"]),
        "-trace_logs", "-log_file", str(files["log"]),
        "-trace_err", "-error_file", str(files["errors"]),
        "-trace_screen", "-screen_file", str(files["screen"]),
        "-trace_stat", "-stf", str(files["stat"]),
        "-trace_rtt", "-rtt_freq", "1",
    ]
    if service:
        argv += ["-s", service]
    if calls is not None:
        argv += ["-m", str(calls)]
    if rate is not None:
        argv += ["-r", str(rate)]
    if rate_period_ms is not None:
        argv += ["-rp", str(rate_period_ms)]
    if limit is not None:
        argv += ["-l", str(limit)]
    if duration_ms is not None:
        argv += ["-d", str(duration_ms)]
    if auth_user is not None:
        argv += ["-au", auth_user]
    if auth_pass is not None:
        argv += ["-ap", auth_pass]
    for k, v in (keys or {}).items():
        argv += ["-key", k, v]
    if global_timeout_s is not None:
        argv += ["-timeout", f"{int(global_timeout_s)}s", "-timeout_error"]
    argv += list(extra_args)
    proc = ManagedProcess(argv, cwd=workdir, log_path=files["stdout"], stderr_path=files["stderr"],
                          name=f"sipp:{stem}")
    proc.start()
    return SippProcess(proc, files, workdir, argv, stem)


def run_sipp(scenario: str | Path, target: str | None, *, timeout_s: float = 30.0, **options: Any) -> SippResult:
    """Run one SIPp scenario to completion and parse what it recorded.

    ``options`` are ``start_sipp``'s: ``workdir``, ``local_ip``, ``service`` (R-URI user, ``-s``),
    ``local_port``, ``media_ip``/``media_port``, ``calls`` (``-m``), ``rate`` (``-r``),
    ``rate_period_ms`` (``-rp``), ``limit`` (``-l``), ``duration_ms`` (``-d``: every ``<pause/>``),
    ``pcap`` (audio for ``play_pcap_audio``), ``auth_user``/``auth_pass``, ``scenario_vars``,
    ``keys``, ``extra_args``, ``name``.  ``timeout_s``: hard bound, after which SIPp is killed
    and ``timed_out`` is set.
    """
    proc = start_sipp(scenario, target, **options)
    return proc.wait(timeout_s)
