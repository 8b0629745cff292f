"""Soak: 10,000 short calls one after another; the agent must not grow (memory, threads, fds, sockets).

    .venv/bin/python -m bench.soak [--calls 10000] [--rate 20] [--limit 20] [--talk-ms 400]
                                   [--every 1000] [--no-gate] [--keep]

SIPp (uac_normal, speech pcap) places the calls straight at the agent (answer delay 0) at
`--rate` calls/s with at most `--limit` at once, each `--talk-ms` long.  Every `--every` calls
placed (SIPp's -fd 1 statistics) the agent's process family is sampled from /proc: RSS, PSS,
threads, open fds, UDP sockets (its own, and every socket bound to its address), and the
register: rows, rows ended.  At the end, with no call up, the family must be back where it
started for threads, fds and sockets, every call must be in the register (ended, recording
checksum set), and RSS must be flat: the slope of RSS against calls after the first
`--every` (warm-up: allocator arenas, SQLAlchemy caches) is printed in KB per 1000 calls.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import Family, quiet_gate, rnd, udp_table  # noqa: E402
from bench.load import SPEECH  # noqa: E402
from tests.agentproc import AgentProcess  # noqa: E402
from tests.rig import media  # noqa: E402
from tests.rig.ports import free_udp_port, loopback_host  # noqa: E402
from tests.rig.sipp import run_sipp, start_sipp  # noqa: E402

WARMUP = 20  # calls before the baseline sample
RSS_SLOPE_LIMIT_KB = 256.0  # per 1000 calls after warm-up: 0.26 KB a call would be a leak worth finding


def _stat(path: Path) -> dict[str, int]:
    try:
        rows = list(csv.reader(path.read_text(errors="replace").splitlines(), delimiter=";"))
    except FileNotFoundError:
        return {}
    if len(rows) < 2:
        return {}
    head, last = rows[0], rows[-1]
    out = {}
    for key in ("TotalCallCreated", "CurrentCall", "SuccessfulCall(C)", "FailedCall(C)"):
        try:
            out[key] = int(last[head.index(key)])
        except (ValueError, IndexError):
            pass
    return out


def _register(db: Path) -> tuple[int, int, int]:
    """(rows, ended, ended with a recording checksum)."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            return tuple(int(x or 0) for x in con.execute(
                "select count(*), sum(status = 'ended'), sum(status = 'ended' and recording_sha256 is not null) "
                "from calls").fetchone())
        finally:
            con.close()
    except sqlite3.Error:
        return (-1, -1, -1)


def fd_kinds(fam: Family) -> Counter:
    """What the family's open fds point at: files by path, sockets/pipes/anon inodes by kind."""
    out: Counter = Counter()
    for pid in fam.pids():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            out[link.split(":[")[0] if ":[" in link else link] += 1
    return out


def _row(calls: int, fam: Family, host: str, db: Path, current: int | None) -> dict[str, Any]:
    s = fam.sample()
    bound = sum(1 for ip, _, _ in udp_table().values() if ip == host)
    rows, ended, with_sha = _register(db)
    return {"calls": calls, "t": round(time.time(), 1), "rss_mb": rnd(s.rss_kb / 1024, 1), "pss_mb": rnd(s.pss_kb / 1024, 1),
            "threads": s.threads, "fds": s.fds, "udp": s.udp, "udp_bound": bound, "rows": rows, "ended": ended,
            "with_sha256": with_sha, "up": current}


def _wait_register(db: Path, count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows, ended, with_sha = _register(db)
        if ended >= count and with_sha >= count:
            return
        time.sleep(0.5)


def run(calls: int, rate: float, limit: int, talk_ms: int, every: int, workdir: Path, log=print) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    _, speech = media.read_wav(SPEECH)
    pcap = media.make_rtp_pcap(speech[: int((talk_ms / 1000 + 1) * media.RATE)], workdir / "speech.pcap").path
    host = loopback_host()
    port = free_udp_port(host)
    agent = AgentProcess(workdir / "agent", listen=(host, port), answer_delay_ms=0,
                         config={"sip": {"max_calls": 200, "rtp_ports": "30000-39999"}})
    sipp = None
    samples: list[dict[str, Any]] = []
    t0 = time.monotonic()
    try:
        agent.start(timeout=30)
        fam = Family(agent.proc.pid)
        db = agent.workdir / "register.db"
        # warm-up: the first calls open the register's files (db, -wal, -shm, journal) and fill caches once
        run_sipp("uac_normal", f"{host}:{port}", workdir=workdir, local_ip=loopback_host(), pcap=pcap,
                 duration_ms=talk_ms, calls=WARMUP, rate=rate, limit=limit, name="warmup", timeout_s=60).assert_ok(WARMUP)
        _wait_register(db, WARMUP, 30)
        time.sleep(3.0)
        samples.append(_row(0, fam, host, db, 0))
        fds_before = fd_kinds(fam)
        log(f"  {'calls':>6} {'RSS MB':>7} {'PSS MB':>7} {'thr':>4} {'fds':>4} {'udp':>4} {'bound':>5} {'rows':>6} {'ended':>6} {'up':>3}")
        log("  " + _fmt(samples[-1]))
        sipp = start_sipp("uac_normal", f"{host}:{port}", workdir=workdir, local_ip=loopback_host(), pcap=pcap,
                          duration_ms=talk_ms, calls=calls, rate=rate, limit=limit, name="soak",
                          extra_args=["-fd", "1"])
        stat_path = sipp.files["stat"]
        next_mark = every
        deadline = time.monotonic() + calls / rate * 1.5 + 120
        while sipp.running() and time.monotonic() < deadline:
            st = _stat(stat_path)
            created = st.get("TotalCallCreated", 0)
            if created >= next_mark:
                samples.append(_row(created, fam, host, db, st.get("CurrentCall")))
                log("  " + _fmt(samples[-1]))
                next_mark += every
            time.sleep(0.25)
        res = sipp.wait(max(5.0, deadline - time.monotonic()))
        _wait_register(db, WARMUP + res.successful, 60)  # every call in the register, then idle again
        time.sleep(3.0)
        end = _row(calls, fam, host, db, 0)
        end["idle_again"] = True
        fds_after = fd_kinds(fam)
        samples.append(end)
        log("  " + _fmt(end) + "   (all calls over)")
    finally:
        if sipp is not None and sipp.running():
            sipp.stop()
        try:
            agent.stop(20)
        finally:
            agent.kill()
    first, last = samples[0], samples[-1]
    steady = [s for s in samples[1:-1] if s["calls"] >= every * 2] or samples[1:-1]
    slope = None
    if len(steady) >= 3:
        x = np.array([s["calls"] for s in steady], dtype=float)
        y = np.array([s["rss_mb"] * 1024 for s in steady], dtype=float)
        slope = float(np.polyfit(x, y, 1)[0] * 1000)  # KB per 1000 calls
    half = [s for s in samples[1:-1] if s["calls"] >= calls / 2]
    slope2 = float(np.polyfit([s["calls"] for s in half], [s["rss_mb"] * 1024 for s in half], 1)[0] * 1000) \
        if len(half) >= 3 else None
    out = {
        "rss_slope_second_half_kb_per_1000": rnd(slope2, 1),
        "calls": calls, "rate": rate, "limit": limit, "talk_ms": talk_ms, "elapsed_s": round(time.monotonic() - t0),
        "sipp_ok": res.successful, "sipp_failed": res.failed, "samples": samples,
        "rss_slope_kb_per_1000": rnd(slope, 1),
        "rss_start_mb": first["rss_mb"], "rss_end_mb": last["rss_mb"],
        "rss_max_mb": max(s["rss_mb"] for s in samples),
        "threads": (first["threads"], max(s["threads"] for s in samples), last["threads"]),
        "fds": (first["fds"], max(s["fds"] for s in samples), last["fds"]),
        "udp": (first["udp"], max(s["udp"] for s in samples), last["udp"]),
        "udp_bound": (first["udp_bound"], max(s["udp_bound"] for s in samples), last["udp_bound"]),
        "register": (last["rows"], last["ended"], last["with_sha256"]),
        "fds_new": dict(fds_after - fds_before), "fds_gone": dict(fds_before - fds_after),
    }
    out["verdict"] = {
        "all_calls_ok": res.successful == calls and res.failed == 0,
        "register_complete": last["rows"] == calls + WARMUP and last["ended"] == calls + WARMUP
                             and last["with_sha256"] == calls + WARMUP,
        "threads_back": last["threads"] == first["threads"],
        "fds_back": last["fds"] == first["fds"],
        "sockets_back": last["udp"] == first["udp"] and last["udp_bound"] == first["udp_bound"],
        "rss_flat": slope is not None and slope < RSS_SLOPE_LIMIT_KB,
    }
    out["verdict"]["all"] = all(out["verdict"].values())
    return out


def _fmt(s: dict[str, Any]) -> str:
    return (f"{s['calls']:>6} {s['rss_mb']:>7.1f} {s['pss_mb']:>7.1f} {s['threads']:>4} {s['fds']:>4} {s['udp']:>4} "
            f"{s['udp_bound']:>5} {s['rows']:>6} {s['ended']:>6} {s['up'] if s['up'] is not None else '-':>3}")


def table(r: dict[str, Any]) -> str:
    lines = ["| calls placed | RSS MB | PSS MB | threads | open fds | UDP sockets (agent / bound to its address) | register rows (ended) | calls up |",
             "|---|---|---|---|---|---|---|---|"]
    for s in r["samples"]:
        label = f"{s['calls']}" + (" (idle again)" if s.get("idle_again") else " (idle)" if s["calls"] == 0 else "")
        lines.append(f"| {label} | {s['rss_mb']:.1f} | {s['pss_mb']:.1f} | {s['threads']} | {s['fds']} | "
                     f"{s['udp']} / {s['udp_bound']} | {s['rows']} ({s['ended']}) | {s['up'] if s['up'] is not None else '-'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--talk-ms", type=int, default=400)
    ap.add_argument("--every", type=int, default=1000)
    ap.add_argument("--no-gate", action="store_true")
    ap.add_argument("--gate-wait-s", type=float, default=600.0)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    gate = {"loadavg": open("/proc/loadavg").read().split()[:3], "waited_s": 0} if args.no_gate \
        else quiet_gate(args.gate_wait_s)
    work = Path(tempfile.mkdtemp(prefix="frontdesk-soak-"))
    print(f"bench.soak: {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; load before {gate['loadavg']}; "
          f"{args.calls} calls at {args.rate:g}/s, at most {args.limit} up, {args.talk_ms} ms each; work {work}")
    try:
        r = run(args.calls, args.rate, args.limit, args.talk_ms, args.every, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    r["gate"] = gate
    out = args.json or Path(tempfile.gettempdir()) / f"frontdesk-soak-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(r, indent=1, default=str))
    print("\n" + table(r))
    v = r["verdict"]
    print(f"\n(register rows include the {WARMUP} warm-up calls)\nSIPp: {r['sipp_ok']} ok, {r['sipp_failed']} failed; register rows/ended/with checksum: {r['register']}")
    print(f"RSS {r['rss_start_mb']} MB idle -> max {r['rss_max_mb']} -> {r['rss_end_mb']} MB idle again; slope after "
          f"warm-up {r['rss_slope_kb_per_1000']} KB per 1000 calls (limit {RSS_SLOPE_LIMIT_KB:.0f}), over the second "
          f"half {r['rss_slope_second_half_kb_per_1000']} KB per 1000 calls")
    print(f"fds opened and still open at the end: {r['fds_new']}; closed: {r['fds_gone']}")
    print(f"threads {r['threads']}, fds {r['fds']}, UDP sockets {r['udp']}, bound to its address {r['udp_bound']} "
          "(start, max, end)")
    print("verdict: " + ", ".join(f"{k} {'ok' if ok else 'FAILED'}" for k, ok in v.items() if k != "all")
          + f"; elapsed {r['elapsed_s']} s; figures: {out}")
    return 0 if v["all"] else 1


if __name__ == "__main__":
    sys.exit(main())
