"""Helpers shared by the timing/capacity benches (bench/load.py, bench/soak.py) and tests/integration/test_load.py.

- `quiet_gate`: wait (bounded) until the machine is quiet: 1-min load average below a limit and
  no pytest / SIPp / Kamailio / py-spy / agent process of someone else running.
- `Family` / `Sampler`: a process and its descendants read from /proc: CPU seconds, threads, RSS,
  PSS, open fds, UDP sockets and their kernel drop counters.
- `Capture`: dumpcap on `lo` with a capture filter (libpcap format), its drop count on stop.
- `read_pcap`, `rtp_streams`, `stream_stats`, `pacing_summary`: RTP on the wire, per stream
  keyed by (src, sport, dst, dport, SSRC): inter-packet interval, drift, loss (sequence gaps),
  lateness = arrival - (first arrival + n x 20 ms) with n from the sequence number.
- `sip_leg_timings`: INVITE in -> 180 / 200 out on the agent's own SIP port, from the capture.
- `check_recording`: the caller channel of a recording against the audio SIPp played.

Nothing here imports the product's media code: G.711 comes from tests/rig/media.py.
"""
from __future__ import annotations

import math
import os
import re
import signal
import socket
import struct
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from tests.rig import media
from tests.rig.procs import ManagedProcess

FRAME = 160
FRAME_S = 0.020
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


# --------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------
def pct(values: Iterable[float], q: float) -> float | None:
    """Percentile ``q`` (0-100, linear interpolation) or None for no values."""
    a = np.asarray([v for v in values if v is not None], dtype=float)
    return float(np.percentile(a, q)) if a.size else None


def rnd(x: float | None, nd: int = 1) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), nd)


# --------------------------------------------------------------------------------------------
# the machine must be quiet
# --------------------------------------------------------------------------------------------
FOREIGN = re.compile(r"(\bpytest\b|(^|/)sipp\b|(^|/)kamailio\b|py-spy|softphone run|stock_agent|(^|/)baresip\b"
                     r"|-m bench\b|\bbench/\w+\.py|(^|/)(dumpcap|tshark)\b)")


def loadavg() -> tuple[float, float, float]:
    a, b, c = open("/proc/loadavg").read().split()[:3]
    return float(a), float(b), float(c)


def _ancestors(pid: int) -> set[int]:
    out = set()
    while pid > 1 and pid not in out:
        out.add(pid)
        try:
            rest = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            pid = int(rest[1])
        except (OSError, IndexError, ValueError):
            break
    return out


def foreign_processes(exclude: Iterable[int] = ()) -> list[tuple[int, str]]:
    """(pid, cmdline) of test/peer processes that are not this process, its ancestors or ``exclude``."""
    mine = _ancestors(os.getpid()) | set(exclude)
    for pid in [os.getpid(), *exclude]:
        mine |= set(descendants(pid))
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in mine:
            continue
        try:
            cmd = open(f"/proc/{entry}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if cmd and FOREIGN.search(cmd):
            out.append((int(entry), cmd[:160]))
    return out


def quiet_gate(max_wait_s: float = 600.0, every_s: float = 30.0, load_max: float = 0.8,
               log=print) -> dict[str, Any]:
    """Wait until the 1-min load is below ``load_max`` and no foreign peer/test process runs.

    Bounded: gives up after ``max_wait_s`` and reports the state it measured in anyway.
    Returns ``{"loadavg": (1, 5, 15), "waited_s", "quiet": bool, "foreign": [...]}``.
    """
    t0 = time.monotonic()
    checks = 0
    while True:
        checks += 1
        la = loadavg()
        foreign = foreign_processes()
        quiet = la[0] < load_max and not foreign
        waited = time.monotonic() - t0
        if quiet or waited >= max_wait_s:
            if not quiet:
                log(f"[gate] machine still busy after {waited:.0f} s (load {la[0]:.2f}, "
                    f"{len(foreign)} foreign processes): measuring anyway, see the load in the report")
            return {"loadavg": la, "waited_s": round(waited), "quiet": quiet,
                    "foreign": [c for _, c in foreign][:5], "checks": checks}
        why = f"load {la[0]:.2f}" + (f", {len(foreign)} foreign: {foreign[0][1][:70]}" if foreign else "")
        log(f"[gate] busy ({why}); waiting {every_s:.0f} s (up to {max_wait_s - waited:.0f} s more)")
        time.sleep(min(every_s, max(1.0, max_wait_s - waited)))


# --------------------------------------------------------------------------------------------
# a process family
# --------------------------------------------------------------------------------------------
def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            rest = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            kids[int(rest[1])].append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return kids


def descendants(pid: int) -> list[int]:
    kids = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def udp_table() -> dict[int, tuple[str, int, int]]:
    """inode -> (local ip, local port, drops) for every UDP socket (/proc/net/udp)."""
    out = {}
    try:
        with open("/proc/net/udp") as fh:
            next(fh)
            for line in fh:
                f = line.split()
                hex_ip, hex_port = f[1].split(":")
                ip = socket.inet_ntoa(struct.pack("<I", int(hex_ip, 16)))
                out[int(f[9])] = (ip, int(hex_port, 16), int(f[12]))
    except (OSError, StopIteration):
        pass
    return out


@dataclass
class Sample:
    t: float          # time.time()
    cpu_s: float      # utime+stime of the live family members
    threads: int
    rss_kb: int
    pss_kb: int
    fds: int
    udp: int          # UDP sockets held
    udp_drops: int    # kernel drop counter summed over those sockets
    pids: int
    cpu_by: dict[int, float] = field(default_factory=dict)  # pid -> CPU seconds


class Family:
    """A process and all its descendants, found afresh at each sample (``pid`` may be a list)."""

    def __init__(self, pid: int | list[int], name: str = "", pss: bool = True):
        self.roots = pid if isinstance(pid, list) else [pid]
        self.name = name
        self.pss = pss

    def pids(self) -> list[int]:
        kids = _children_map()
        out, todo = [], list(self.roots)
        while todo:
            p = todo.pop()
            if p in out:
                continue
            out.append(p)
            todo.extend(kids.get(p, []))
        return [p for p in out if os.path.exists(f"/proc/{p}")]

    def sample(self, sockets: bool = True) -> Sample:
        cpu = 0.0
        threads = rss = pss = fds = 0
        inodes: set[int] = set()
        cpu_by: dict[int, float] = {}
        pids = self.pids()
        for p in pids:
            try:
                rest = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
                c = (int(rest[11]) + int(rest[12])) / CLK_TCK
                cpu += c
                cpu_by[p] = c
                threads += int(rest[17])
                rss += int(rest[21]) * PAGE_KB
                if self.pss:
                    for line in open(f"/proc/{p}/smaps_rollup"):
                        if line.startswith("Pss:"):
                            pss += int(line.split()[1])
                            break
                if sockets:
                    for fd in os.listdir(f"/proc/{p}/fd"):
                        fds += 1
                        try:
                            link = os.readlink(f"/proc/{p}/fd/{fd}")
                        except OSError:
                            continue
                        if link.startswith("socket:["):
                            inodes.add(int(link[8:-1]))
            except (OSError, IndexError, ValueError):
                continue
        udp = drops = 0
        if sockets:
            table = udp_table()
            for ino in inodes:
                if ino in table:
                    udp += 1
                    drops += table[ino][2]
        return Sample(time.time(), cpu, threads, rss, pss, fds, udp, drops, len(pids), cpu_by)


def _role(pid: int) -> str:
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"
    if "resource_tracker" in cmd:
        return "resource-tracker"
    if "multiprocessing" in cmd:
        return "media-process"
    return Path(cmd.split(" ")[0]).name + " " + " ".join(cmd.split(" ")[1:4])


class Sampler:
    """Samples some ``Family`` objects every ``every_s`` in a thread until ``stop()``."""

    def __init__(self, families: dict[str, Family], every_s: float = 0.5, sockets: dict[str, bool] | None = None):
        self.families = families
        self.every_s = every_s
        self.sockets = sockets or {}
        self.samples: dict[str, list[Sample]] = {k: [] for k in families}
        self.machine: list[tuple[float, float, float, float]] = []  # (t, busy, total, steal) jiffies
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def add(self, name: str, family: Family, sockets: bool = True) -> None:
        with self._lock:
            self.families[name] = family
            self.samples[name] = []
            self.sockets[name] = sockets

    def start(self) -> "Sampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _run(self) -> None:
        next_t = time.monotonic()
        for _ in range(100_000):  # bounded: ~14 h at 0.5 s
            with self._lock:
                fams = list(self.families.items())
            for name, fam in fams:
                self.samples[name].append(fam.sample(self.sockets.get(name, True)))
            f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
            idle = f[3] + f[4]
            self.machine.append((time.time(), sum(f) - idle, sum(f), f[7] if len(f) > 7 else 0))
            next_t += self.every_s
            if self._stop.wait(max(0.0, next_t - time.monotonic())):
                return

    def window(self, name: str, t0: float, t1: float) -> dict[str, Any]:
        """CPU % of one core (mean over [t0, t1], and the busiest 1 s), threads max, RSS/PSS median."""
        s = [x for x in self.samples.get(name, []) if t0 <= x.t <= t1]
        if len(s) < 2:
            return {}
        cpu = (s[-1].cpu_s - s[0].cpu_s) / (s[-1].t - s[0].t) * 100.0
        peaks = []
        for a in s:
            b = next((y for y in s if y.t >= a.t + 1.0), None)
            if b is not None:
                peaks.append((b.cpu_s - a.cpu_s) / (b.t - a.t) * 100.0)
        members = {}
        for pid in set(s[0].cpu_by) & set(s[-1].cpu_by):
            members[f"{pid} {_role(pid)}"] = rnd((s[-1].cpu_by[pid] - s[0].cpu_by[pid]) / (s[-1].t - s[0].t) * 100.0)
        return {"cpu_pct": rnd(cpu), "cpu_peak_pct": rnd(max(peaks) if peaks else cpu), "cpu_by_process": members,
                "threads": max(x.threads for x in s), "rss_mb": rnd(np.median([x.rss_kb for x in s]) / 1024, 1),
                "pss_mb": rnd(np.median([x.pss_kb for x in s]) / 1024, 1), "fds": max(x.fds for x in s),
                "udp": max(x.udp for x in s), "udp_drops": max(x.udp_drops for x in s)}

    def steal_ms(self, t0: float, t1: float) -> float | None:
        """CPU time the hypervisor took from this VM in [t0, t1] (ms, all CPUs)."""
        m = [x for x in self.machine if t0 <= x[0] <= t1]
        return rnd((m[-1][3] - m[0][3]) * 1000.0 / CLK_TCK, 0) if len(m) >= 2 else None

    def machine_busy(self, t0: float, t1: float) -> float | None:
        """Whole-machine CPU use in [t0, t1] as % of all cores."""
        m = [x for x in self.machine if t0 <= x[0] <= t1]
        if len(m) < 2 or m[-1][2] == m[0][2]:
            return None
        return rnd((m[-1][1] - m[0][1]) / (m[-1][2] - m[0][2]) * 100.0)


# --------------------------------------------------------------------------------------------
# wire capture
# --------------------------------------------------------------------------------------------
class Capture:
    """``dumpcap -i lo -f FILTER -P -B 64 -w FILE``; ``stop()`` returns the kernel/dumpcap drops."""

    def __init__(self, workdir: Path, bpf: str, name: str = "capture", snaplen: int = 0):
        self.path = Path(workdir) / f"{name}.pcap"
        self.log = Path(workdir) / f"{name}.log"
        argv = ["dumpcap", "-i", "lo", "-f", bpf, "-P", "-B", "64", "-w", str(self.path)]
        if snaplen:
            argv += ["-s", str(snaplen)]
        self.proc = ManagedProcess(argv, cwd=Path(workdir), log_path=self.log, name=name, stop_signal=signal.SIGINT)
        self.dropped: int | None = None
        self.captured: int | None = None

    def start(self, timeout_s: float = 10.0) -> "Capture":
        self.proc.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:  # dumpcap says "Capturing on 'Loopback: lo'" once the filter is set
            if "Capturing on" in self.proc.log_text() and self.path.exists():
                time.sleep(0.3)
                return self
            if not self.proc.running():
                break
            time.sleep(0.05)
        raise RuntimeError(f"dumpcap did not start:\n{self.proc.log_tail()}")

    def stop(self) -> "Capture":
        time.sleep(0.3)
        self.proc.stop(10.0)
        text = self.proc.log_text()
        m = re.findall(r"Packets received/dropped on interface '[^']*': (\d+)/(\d+)", text)
        if m:
            self.captured, self.dropped = int(m[-1][0]), int(m[-1][1])
        return self


@dataclass
class Packet:
    t: float
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes


def read_pcap(path: Path) -> list[Packet]:
    """IPv4/UDP packets of a libpcap file (Ethernet, Linux cooked v1/v2 or raw IP link types)."""
    data = Path(path).read_bytes()
    if len(data) < 24:
        return []
    magic = struct.unpack("<I", data[:4])[0]
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        endian = "<"
    else:
        endian = ">"
        magic = struct.unpack(">I", data[:4])[0]
    nano = magic == 0xA1B23C4D
    link = struct.unpack(endian + "I", data[20:24])[0]
    l2 = {1: 14, 113: 16, 276: 20, 101: 0, 228: 0}.get(link)
    if l2 is None:
        raise ValueError(f"{path}: unsupported link type {link}")
    hdr = struct.Struct(endian + "IIII")
    div = 1e9 if nano else 1e6
    out: list[Packet] = []
    pos, n = 24, len(data)
    inet_ntoa = socket.inet_ntoa
    while pos + 16 <= n:
        sec, frac, incl, _ = hdr.unpack_from(data, pos)
        pos += 16
        fr = data[pos:pos + incl]
        pos += incl
        ip = l2
        if len(fr) < ip + 28 or (fr[ip] >> 4) != 4 or fr[ip + 9] != 17:
            continue
        ihl = (fr[ip] & 0x0F) * 4
        u = ip + ihl
        sport, dport, ulen = struct.unpack_from("!HHH", fr, u)
        out.append(Packet(sec + frac / div, inet_ntoa(fr[ip + 12:ip + 16]), sport, inet_ntoa(fr[ip + 16:ip + 20]),
                          dport, fr[u + 8:u + ulen]))
    return out


# --------------------------------------------------------------------------------------------
# RTP on the wire
# --------------------------------------------------------------------------------------------
def is_rtp(payload: bytes) -> bool:
    return len(payload) >= 12 and (payload[0] >> 6) == 2 and not 200 <= payload[1] <= 204  # RTCP SR..APP


@dataclass
class Stream:
    key: tuple
    t: np.ndarray      # arrival (capture) times, s
    seq: np.ndarray    # unwrapped sequence numbers
    ts: np.ndarray     # RTP timestamps (unwrapped)
    pt: np.ndarray
    payloads: list[bytes] = field(repr=False, default_factory=list)


def _unwrap(values: list[int], modulo: int) -> np.ndarray:
    a = np.asarray(values, dtype=np.int64)
    if a.size < 2:
        return a
    d = np.diff(a)
    d = (d + modulo // 2) % modulo - modulo // 2
    return np.concatenate([[a[0]], a[0] + np.cumsum(d)])


def rtp_streams(packets: Iterable[Packet], *, src: str | None = None, dst: str | None = None,
                keep_payload: bool = False) -> list[Stream]:
    """RTP streams (RFC 3550 v2, not RTCP) from ``src`` and/or to ``dst``, in arrival order."""
    groups: dict[tuple, list[Packet]] = defaultdict(list)
    for p in packets:
        if (src and p.src != src) or (dst and p.dst != dst) or not is_rtp(p.payload):
            continue
        ssrc = struct.unpack_from("!I", p.payload, 8)[0]
        groups[(p.src, p.sport, p.dst, p.dport, ssrc)].append(p)
    out = []
    for key, ps in groups.items():
        hdr = [struct.unpack_from("!BBHI", p.payload, 0) for p in ps]
        cc = [h[0] & 0x0F for h in hdr]
        out.append(Stream(key, np.array([p.t for p in ps]), _unwrap([h[2] for h in hdr], 1 << 16),
                          _unwrap([h[3] for h in hdr], 1 << 32), np.array([h[1] & 0x7F for h in hdr]),
                          [p.payload[12 + 4 * c:] for p, c in zip(ps, cc)] if keep_payload else []))
    return out


def stream_stats(s: Stream) -> dict[str, Any]:
    """Per stream: packets, lost (sequence gaps), duplicates, inter-packet interval, drift, lateness."""
    n = len(s.t)
    if n < 2:
        return {"packets": n}
    order = np.argsort(s.seq, kind="stable")
    seq_sorted = s.seq[order]
    uniq = np.unique(seq_sorted)
    expected = int(uniq[-1] - uniq[0] + 1)
    ipi = np.diff(s.t) * 1000.0
    dur = s.t[-1] - s.t[0]
    n0 = s.seq - s.seq[0]
    late = ((s.t - s.t[0]) - n0 * FRAME_S) * 1000.0
    # drift: slope of arrival time against sequence number (least squares) vs the 20 ms clock, so
    # one late first or last packet does not decide it
    if dur > 0 and len(np.unique(s.seq)) > 2:
        slope = np.polyfit((s.seq - s.seq[0]).astype(float), s.t - s.t[0], 1)[0]
        drift = (slope - FRAME_S) / FRAME_S * 60_000.0
    else:
        drift = 0.0
    reordered = int(np.sum(np.diff(s.seq) < 0))
    worst = int(np.argmax(ipi))
    return {"packets": n, "lost": expected - len(uniq), "dup": n - len(uniq), "reordered": reordered,
            "ipi_max_t": float(s.t[worst + 1]),
            "duration_s": dur, "ipi": ipi, "drift_ms_min": drift, "late_max_ms": float(late.max()),
            "early_max_ms": float(-late.min()), "late_over_40": int(np.sum(late > 40.0))}


def pacing_summary(streams: list[Stream], min_packets: int = 25, drift_min_s: float = 10.0,
                   t_ref: float | None = None) -> dict[str, Any]:
    """Pooled over the streams: IPI p50/p99/max, worst stream p99, drift, loss, lateness.

    Drift (ms per minute: the least-squares slope of arrival time against sequence number, minus
    20 ms, per minute) only over streams of at least ``drift_min_s``: on a 1 s stream a
    millisecond of jitter already reads as tens of ms per minute.
    """
    stats = [stream_stats(s) for s in streams]
    stats = [x for x in stats if x["packets"] >= min_packets]
    if not stats:
        return {"streams": 0}
    ipi = np.concatenate([x["ipi"] for x in stats])
    drifts = [x["drift_ms_min"] for x in stats if x["duration_s"] >= drift_min_s] or [float("nan")]
    return {
        "streams": len(stats), "packets": int(sum(x["packets"] for x in stats)),
        "pps_per_stream": rnd(np.median([(x["packets"] - 1) / x["duration_s"] for x in stats]), 2),
        "drift_streams": sum(1 for x in stats if x["duration_s"] >= drift_min_s),
        "ipi_p50": rnd(np.percentile(ipi, 50), 2), "ipi_p99": rnd(np.percentile(ipi, 99), 2),
        "ipi_p999": rnd(np.percentile(ipi, 99.9), 2), "ipi_max": rnd(ipi.max(), 2),
        "ipi_p99_worst_stream": rnd(max(np.percentile(x["ipi"], 99) for x in stats), 2),
        # when the worst gap ended, seconds after t_ref (SIPp's start): one moment for all streams
        # points at the machine, not at one call
        "ipi_max_at_s": rnd(max(stats, key=lambda x: x["ipi"].max())["ipi_max_t"] - t_ref, 2) if t_ref else None,
        "streams_gap_over_40": sum(1 for x in stats if x["ipi"].max() > 40.0),
        "drift_median": rnd(float(np.median(drifts)), 2), "drift_worst": rnd(max(drifts, key=abs), 2),
        "lost": int(sum(x["lost"] for x in stats)), "dup": int(sum(x["dup"] for x in stats)),
        "reordered": int(sum(x["reordered"] for x in stats)),
        "late_max": rnd(max(x["late_max_ms"] for x in stats), 2),
        "late_over_40": int(sum(x["late_over_40"] for x in stats)),
    }


def stream_audio(s: Stream, codec: str = "PCMU") -> np.ndarray:
    """What the stream carried, in sequence order, a lost packet as 20 ms of zeros (int16)."""
    if not s.payloads:
        return np.zeros(0, dtype=np.int16)
    first = int(s.seq.min())
    n = int(s.seq.max()) - first + 1
    codes = np.full(n * FRAME, media.ULAW_SILENCE if codec == "PCMU" else media.ALAW_SILENCE, dtype=np.uint8)
    for q, p in zip(s.seq, s.payloads):
        i = int(q) - first
        b = np.frombuffer(p[:FRAME], dtype=np.uint8)
        codes[i * FRAME:i * FRAME + len(b)] = b
    return media.ulaw_decode(codes) if codec == "PCMU" else media.alaw_decode(codes)


# --------------------------------------------------------------------------------------------
# SIP on the agent's own port
# --------------------------------------------------------------------------------------------
_HDR = re.compile(rb"^(call-id|i|cseq)\s*:\s*(.*?)\s*$", re.IGNORECASE | re.MULTILINE)


def sip_leg_timings(packets: Iterable[Packet], host: str, port: int) -> dict[str, dict[str, float]]:
    """Per Call-ID on the agent's leg: first INVITE in, first 180 / 200 (INVITE) out, epoch seconds."""
    calls: dict[str, dict[str, float]] = {}
    for p in packets:
        inbound = p.dst == host and p.dport == port
        outbound = p.src == host and p.sport == port
        if not (inbound or outbound) or is_rtp(p.payload):
            continue
        head = p.payload.split(b"\r\n\r\n", 1)[0]
        first = head.split(b"\r\n", 1)[0]
        hdrs = {k.lower(): v for k, v in _HDR.findall(head)}
        cid = (hdrs.get(b"call-id") or hdrs.get(b"i") or b"").decode(errors="replace")
        cseq = hdrs.get(b"cseq", b"")
        if not cid:
            continue
        row = calls.setdefault(cid, {})
        if inbound and first.startswith(b"INVITE ") and "invite" not in row:
            row["invite"] = p.t
        elif outbound and cseq.endswith(b"INVITE"):
            if first.startswith(b"SIP/2.0 180") and "r180" not in row:
                row["r180"] = p.t
            elif first.startswith(b"SIP/2.0 200") and "r200" not in row:
                row["r200"] = p.t
    return calls


# --------------------------------------------------------------------------------------------
# recordings against the audio that was sent
# --------------------------------------------------------------------------------------------
def _xcorr_lag(hay: np.ndarray, needle: np.ndarray) -> tuple[int, float]:
    """Lag of ``needle`` inside ``hay`` (FFT cross-correlation) and the normalised peak."""
    h = hay.astype(np.float64)
    nd = needle.astype(np.float64)
    if len(h) < len(nd) or not np.any(nd):
        return 0, 0.0
    nfft = 1 << int(math.ceil(math.log2(len(h) + len(nd))))
    c = np.fft.irfft(np.fft.rfft(h, nfft) * np.conj(np.fft.rfft(nd, nfft)), nfft)[: len(h) - len(nd) + 1]
    lag = int(np.argmax(c))
    seg = h[lag:lag + len(nd)]
    norm = math.sqrt(float(np.sum(nd * nd)) * float(np.sum(seg * seg))) or 1.0
    return lag, float(c[lag] / norm)


def check_recording(caller: np.ndarray, sent: np.ndarray, *, exact: bool = True,
                    window_s: float = 3.0, search_s: float = 2.0) -> dict[str, Any]:
    """The caller channel against ``sent`` (the audio SIPp played, as the far end decodes it).

    Offsets (ms) of the sent audio in the recording, by cross-correlation of a ``window_s``
    window near the start and another near the end of the recording; their difference is the
    gap/stretch the recording accumulated.  With ``exact`` (a 16-bit G.711 decode on both
    sides) every 20 ms frame from the start offset on is also compared sample for sample:
    ``frames_exact`` is the share identical, ``gap_frames`` the frames that are silence in the
    recording where the sent audio had sound.
    """
    rate = media.RATE
    w, srch = int(window_s * rate), int(search_s * rate)
    out: dict[str, Any] = {"rms_dbfs": rnd(media.rms_dbfs(caller), 1)}
    if len(caller) < 2 * w + srch:
        out["error"] = "recording too short"
        return out
    lag0, c0 = _xcorr_lag(caller[: w + srch], sent[:w])
    # near the end: the sent window that should sit 1 s before the recording's end
    end_rec = len(caller) - rate
    k = end_rec - w - lag0  # index into `sent`
    if k < 0 or k + w > len(sent):
        out["error"] = "sent audio shorter than the recording"
        return out
    lo = max(0, lag0 + k - srch // 2)
    lag1, c1 = _xcorr_lag(caller[lo: lo + w + srch], sent[k:k + w])
    lag1 = lo + lag1 - k
    out.update(offset_start_ms=rnd(lag0 / 8, 1), offset_end_ms=rnd(lag1 / 8, 1),
               offset_shift_ms=rnd((lag1 - lag0) / 8, 1), corr_start=rnd(c0, 3), corr_end=rnd(c1, 3))
    if exact:
        out.update(_frame_walk(caller[lag0:], sent))
    return out


def _frame_walk(rec_all: np.ndarray, sent: np.ndarray, reach: int = 5) -> dict[str, Any]:
    """Frame by frame from the start offset: which sent frame each recorded frame is.

    A recorded frame equal to the sent frame at the current offset is exact; one equal to a
    sent frame up to ``reach`` frames away moves the offset (sent frames skipped = dropped,
    recorded frames without a match before it = inserted); a silent recorded frame where the
    sent frame was not silent is a gap (``loud_gap_frames`` when the sent frame had sound above
    -54 dBFS peak).
    """
    n = min(len(rec_all) // FRAME, len(sent) // FRAME) - 5  # the last frames may follow the BYE
    if n <= 0:
        return {"frames": 0}
    rec = rec_all[: n * FRAME].reshape(-1, FRAME)
    ref = sent[: (n + reach) * FRAME]
    ref = ref[: len(ref) // FRAME * FRAME].reshape(-1, FRAME)
    silent_rec = ~np.any(rec, axis=1)
    silent_ref = ~np.any(ref, axis=1)
    loud_ref = np.max(np.abs(ref.astype(np.int32)), axis=1) > 64
    off = 0
    exact = zero = loud_gap = dropped = inserted = other = slips = 0
    same0 = np.all(rec == ref[:n], axis=1)
    if bool(np.all(same0)):
        return {"frames": int(n), "frames_exact": 100.0, "zero_frames": 0, "loud_gap_frames": 0,
                "dropped_frames": 0, "inserted_frames": 0, "slips": 0}
    pending = 0  # recorded frames since the last match that matched nothing
    for j in range(n):
        i = j - off
        if 0 <= i < len(ref) and np.array_equal(rec[j], ref[i]):
            exact += 1
            pending = 0
            continue
        if silent_rec[j]:
            if 0 <= i < len(ref) and not silent_ref[i]:
                zero += 1
                loud_gap += int(loud_ref[i])
            pending += 1
            continue
        found = None
        for d in sorted(range(-reach, reach + 1), key=abs):
            k = i + d
            if d and 0 <= k < len(ref) and not silent_ref[k] and np.array_equal(rec[j], ref[k]):
                found = d
                break
        if found is None:
            other += 1
            continue
        slips += 1
        if found > 0:
            dropped += found
        else:
            inserted += -found
        off -= found
        exact += 1
        pending = 0
    return {"frames": int(n), "frames_exact": rnd(exact / n * 100, 2), "zero_frames": zero,
            "loud_gap_frames": loud_gap, "dropped_frames": dropped, "inserted_frames": inserted,
            "other_frames": other, "slips": slips}
