"""Timing and capacity under load: our agent beside stock pyVoIP 1.6.8, measured on the wire.

    .venv/bin/python -m bench.load [--calls 20,50,100] [--capacity 150,200] [--talk-s 30]
                                   [--ring-ms 1000] [--probes 20] [--no-direct] [--no-stock]
                                   [--profile] [--no-gate] [--keep] [--json FILE]

For each N: SIPp (uac_normal) places N calls in 1 s through Kamailio (registrar + record-routing
proxy; one more run of ours at the largest N goes straight at the agent), each plays a speech pcap (G.711 PCMU) for the talk time
and hangs up.  The agent answers after the ring delay and plays its greeting (ours) or the same
greeting through write_audio (stock: bench/stock_agent.py, which answers after pyVoIP's fixed
1 s); both record.  Near the end of the talk time a second SIPp places `--probes` short calls at
2/s: INVITE -> 180 "with N calls up".  Then the same load runs against the other agent.

Measured, all outside the agent:
- SIP, as SIPp saw it (-trace_msg): INVITE -> 180, and the answer point = 180 -> 200 minus the
  configured ring delay (stock: its fixed 1000 ms); also the agent's own leg from the capture;
- RTP, from dumpcap on lo (filter: host of the agent): per stream inter-packet interval, drift
  (ms per minute against a 20 ms clock), loss (sequence gaps), lateness = arrival - (first
  arrival + n x 20 ms); agent -> caller (the agent's pacing) and caller -> agent (SIPp's);
- the greeting as it left on the wire, frame for frame (ours) / by correlation (stock);
- recordings (ours): caller channel vs the audio SIPp sent, aligned by cross-correlation near
  the start and near the end (the offsets must agree), every 20 ms frame compared, length vs
  the register's talk_ms; register rows complete (ended, recording_sha256);
- the agent's process family from /proc every 0.5 s: CPU (% of one core) while all N calls are
  up and before the probes, threads, RSS/PSS (memory per call = (RSS at N - idle) / N), fds,
  UDP sockets and their kernel drop counters; SIPp's, Kamailio's and the whole machine's CPU.
`--profile` runs py-spy (record, --subprocesses; then again with --gil) on our agent at the
largest N instead, with 50 s calls.  Before every run the machine must be quiet (bench.common.
quiet_gate: 1-min load < 0.8, no one else's pytest/SIPp/Kamailio/agent/bench; waits up to 10 min);
the CPU that other processes took during the run is measured and printed beside the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import (Capture, Family, Sampler, check_recording, pacing_summary, pct, quiet_gate,  # noqa: E402
                          read_pcap, rnd, rtp_streams, sip_leg_timings, stream_audio, _xcorr_lag)
from recordings.prompts import PromptLibrary  # noqa: E402
from tests.agentproc import AgentProcess  # noqa: E402
from tests.rig import media  # noqa: E402
from tests.rig.kamailio import Kamailio  # noqa: E402
from tests.rig.ports import Endpoint, free_rtp_range, free_udp_port, loopback_host  # noqa: E402
from tests.rig.sipp import SippResult, start_sipp  # noqa: E402
from tests.rig.stock import StockAgent  # noqa: E402

SPEECH = REPO / "tests" / "fixtures" / "corpus" / "dev" / "sp_clean_clean_0_en_allison.wav"
USER = "8001"
PASSWORD = "secret"

# the targets
TARGET_180_P99_MS = 20.0
TARGET_ANSWER_P99_MS = 20.0
TARGET_IPI_P99_MS = 22.0
TARGET_DRIFT_MS_MIN = 20.0
TARGET_LATE_MS = 40.0
TARGET_SHIFT_MS = 40.0


@dataclass
class Media:
    pcap: Path           # caller speech, PCMU RTP, talk + 6 s
    sent: np.ndarray     # that speech as the far end decodes it (int16, 8 kHz)
    greeting: np.ndarray  # our greeting as the far end decodes it
    greeting_wav: Path   # the greeting for the stock agent's write_audio


def prepare_media(d: Path, talk_s: float) -> Media:
    d.mkdir(parents=True, exist_ok=True)
    _, speech = media.read_wav(SPEECH)
    n = int((talk_s + 6) * media.RATE)
    audio = np.tile(speech, n // len(speech) + 1)[:n]
    pcap = media.make_rtp_pcap(audio, d / "speech.pcap").path
    greeting = PromptLibrary().render("greeting").pcm
    wav = media.write_wav(d / "greeting.wav", greeting)
    return Media(pcap, media.ulaw_decode(media.ulaw_encode(audio)), media.ulaw_decode(media.ulaw_encode(greeting)), wav)


# ------------------------------------------------------------------------------------------------
# one run
# ------------------------------------------------------------------------------------------------
def _sipp_sip_stats(res: SippResult, ring_ms: float) -> dict[str, Any]:
    inv180 = [t["invite_to_180_ms"] for t in res.timings if t["invite_to_180_ms"] is not None]
    ans = [abs(t["invite_to_200_ms"] - t["invite_to_180_ms"] - ring_ms) for t in res.timings
           if t["invite_to_200_ms"] is not None and t["invite_to_180_ms"] is not None]
    signed = [t["invite_to_200_ms"] - t["invite_to_180_ms"] - ring_ms for t in res.timings
              if t["invite_to_200_ms"] is not None and t["invite_to_180_ms"] is not None]
    inv200 = [t["invite_to_200_ms"] for t in res.timings if t["invite_to_200_ms"] is not None]
    return {"ok": res.successful, "failed": res.failed, "timed_out": res.timed_out,
            "n_180": len(inv180), "inv180_p50": rnd(pct(inv180, 50), 2), "inv180_p99": rnd(pct(inv180, 99), 2),
            "inv180_max": rnd(max(inv180), 2) if inv180 else None,
            "inv200_p50": rnd(pct(inv200, 50), 1), "inv200_max": rnd(max(inv200), 1) if inv200 else None,
            "answer_err_p50": rnd(pct(ans, 50), 2), "answer_err_p99": rnd(pct(ans, 99), 2),
            "answer_err_max": rnd(max(ans), 2) if ans else None,
            "answer_err_min_signed": rnd(min(signed), 2) if signed else None,
            "answer_err_max_signed": rnd(max(signed), 2) if signed else None,
            "retransmissions": sum(1 for msgs in res.messages.values() for m in msgs
                                   if m.direction == "sent" and m.method == "INVITE") - len(res.timings)}


def _leg_stats(leg: dict[str, dict[str, float]], ring_ms: float) -> dict[str, Any]:
    i180 = [(r["r180"] - r["invite"]) * 1000 for r in leg.values() if "r180" in r and "invite" in r]
    ans = [abs((r["r200"] - r["r180"]) * 1000 - ring_ms) for r in leg.values() if "r200" in r and "r180" in r]
    return {"leg_inv180_p99": rnd(pct(i180, 99), 2), "leg_inv180_max": rnd(max(i180), 2) if i180 else None,
            "leg_answer_err_p99": rnd(pct(ans, 99), 2)}


def _registered(agent: AgentProcess, kam: Kamailio, timeout_s: float = 10.0) -> None:
    if not agent.wait_line("registration registered", timeout_s):
        raise RuntimeError(f"agent did not register:\n{agent.log_text()[-2000:]}")
    kam.wait_for_binding(USER, timeout_s)


def _rows(db: Path) -> list[dict[str, Any]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(
            "select call_id, status, outcome, talk_ms, recording, recording_sha256, recording_ms, ring_ms from calls")]
    finally:
        con.close()


def _wait_rows(db: Path, count: int, timeout_s: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            rows = _rows(db)
        except sqlite3.Error:
            rows = []
        if sum(1 for r in rows if r["status"] == "ended" and (r["recording_sha256"] or not r["talk_ms"])) >= count:
            break
        time.sleep(0.5)
    return rows


def _tx_audio_ours(streams, greeting: np.ndarray) -> dict[str, Any]:
    """The greeting as it left on the wire, frame for frame (each stream starts with it)."""
    exact, corr = [], []
    w = 2 * media.RATE
    for s in streams:
        audio = stream_audio(s)
        if len(audio) < len(greeting) + media.RATE:
            continue
        lag, c = _xcorr_lag(audio[: w + media.RATE], greeting[:w])
        n = len(greeting) // 160
        seg = audio[lag: lag + n * 160].reshape(-1, 160)
        ref = greeting[: n * 160].reshape(-1, 160)
        exact.append(float(np.mean(np.all(seg == ref, axis=1))) * 100)
        corr.append(c)
    return {"tx_streams_checked": len(exact), "tx_greeting_exact_min": rnd(min(exact), 2) if exact else None,
            "tx_corr_min": rnd(min(corr), 3) if corr else None}


def _tx_audio_stock(streams, greeting: np.ndarray) -> dict[str, Any]:
    corr = []
    w = 2 * media.RATE
    for s in streams:
        audio = stream_audio(s)
        if len(audio) < w + media.RATE:
            continue
        corr.append(_xcorr_lag(audio[: w + 2 * media.RATE], greeting[:w])[1])
    return {"tx_streams_checked": len(corr), "tx_corr_min": rnd(min(corr), 3) if corr else None,
            "tx_corr_median": rnd(float(np.median(corr)), 3) if corr else None}


def _recordings_summary(checks: list[dict[str, Any]], length_diffs: list[float]) -> dict[str, Any]:
    ok = [c for c in checks if "offset_shift_ms" in c]
    out: dict[str, Any] = {"rec_checked": len(checks), "rec_errors": len(checks) - len(ok)}
    if ok:
        shifts = [abs(c["offset_shift_ms"]) for c in ok]
        out.update(rec_shift_max_ms=rnd(max(shifts), 1), rec_shift_p50_ms=rnd(pct(shifts, 50), 1),
                   rec_offset_start_max_ms=rnd(max(c["offset_start_ms"] for c in ok), 1),
                   rec_corr_min=rnd(min(min(c["corr_start"], c["corr_end"]) for c in ok), 3),
                   rec_rms_min=rnd(min(c["rms_dbfs"] for c in ok), 1))
        if "frames_exact" in ok[0]:
            out.update(rec_frames_exact_min=rnd(min(c["frames_exact"] for c in ok), 2),
                       rec_frames_exact_mean=rnd(float(np.mean([c["frames_exact"] for c in ok])), 3),
                       rec_gap_frames=int(sum(c["loud_gap_frames"] for c in ok)),
                       rec_zero_frames=int(sum(c["zero_frames"] for c in ok)),
                       rec_inserted_frames=int(sum(c["inserted_frames"] for c in ok)),
                       rec_dropped_frames=int(sum(c["dropped_frames"] for c in ok)),
                       rec_calls_slipped=sum(1 for c in ok if c["slips"]))
    if length_diffs:
        out["rec_len_minus_talk_max_ms"] = rnd(max(length_diffs, key=abs), 1)
    return out


def run_one(impl: str, n: int, *, workdir: Path, med: Media, talk_s: float, ring_ms: int, probes: int,
            direct: bool = False, profile_s: float = 0.0, log=print) -> dict[str, Any]:
    """One load run against ``impl`` ("ours" or "stock"); returns the measured figures."""
    workdir.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {"impl": impl, "calls": n, "talk_s": talk_s, "via": "direct" if direct else "kamailio",
                           "ring_ms": ring_ms if impl == "ours" else 1000, "probes": probes,
                           "loadavg_before": open("/proc/loadavg").read().split()[:3]}
    ring = res["ring_ms"]
    kam = agent = stock = cap = sampler = None
    sipp = probe = None
    started: list[Any] = []
    try:
        host = loopback_host()
        port = free_udp_port(host)
        if not direct:
            kam = Kamailio(workdir / "kam", password=PASSWORD, children=4).start()
            started.append(kam)
        registrar = kam.address if kam else None
        if impl == "ours":
            agent = AgentProcess(workdir / "agent", listen=(host, port), registrar=registrar, user=USER,
                                 password=PASSWORD if kam else "", answer_delay_ms=ring_ms,
                                 config={"sip": {"max_calls": 500, "rtp_ports": "30000-39999"}})
            agent.start(timeout=30)
            if kam:
                _registered(agent, kam)
            pid = agent.proc.pid
        else:
            if direct:
                raise SystemExit("the stock agent needs a registrar (it only answers through one)")
            stock = StockAgent(workdir / "stock", registrar=kam.hostport, user=USER, password=PASSWORD,
                               sip=Endpoint(host, port), rtp=free_rtp_range(host, 4 * max(n, 50) + 20),
                               play=med.greeting_wav, record=True)
            stock.start(timeout_s=40)
            kam.wait_for_binding(USER, 10)
            pid = stock.pid
        cap = Capture(workdir, f"udp and host {host}", name="wire").start()
        fams = {"agent": Family(pid), "ours_all": Family(os.getpid(), pss=False)}  # everything this bench started
        if kam:
            fams["kamailio"] = Family(kam.pids())
        sampler = Sampler(fams, 0.5, sockets={"kamailio": False, "ours_all": False}).start()
        time.sleep(2.0)
        idle = sampler.samples["agent"][-1]
        target = kam.hostport if kam else f"{host}:{port}"
        sipp_ip, probe_ip = loopback_host(), loopback_host()
        t0 = time.time()
        sipp = start_sipp("uac_normal", target, service=USER, workdir=workdir, local_ip=sipp_ip, pcap=med.pcap,
                          duration_ms=int(talk_s * 1000), calls=n, rate=n, rate_period_ms=1000, limit=n,
                          name="load")
        sampler.add("sipp", Family(sipp.pid, pss=False), sockets=False)
        # probes in the last part of the talk time, so the CPU window before them has exactly N calls
        probe_at = t0 + 1.0 + ring / 1000 + talk_s - probes / 2.0 - 4.0
        steady = (t0 + 1.0 + ring / 1000 + 2.5, probe_at - 0.5)
        prof = None
        if profile_s and impl == "ours":
            time.sleep(max(0.0, steady[0] - time.time()))
            span = min(profile_s, (steady[1] - steady[0]) / 2 - 1)
            prof = {"active": _profile(pid, workdir, span, gil=False), "gil": _profile(pid, workdir, span, gil=True)}
        time.sleep(max(0.0, probe_at - time.time()))
        if probes:
            probe = start_sipp("uac_normal", target, service=USER, workdir=workdir, local_ip=probe_ip,
                               pcap=med.pcap, duration_ms=1000, calls=probes, rate=2, rate_period_ms=1000,
                               limit=probes, name="probe")
        main = sipp.wait(1.0 + ring / 1000 + talk_s + 60)
        pres = probe.wait(60) if probe else None
        t_end = time.time()
        answered = main.successful + (pres.successful if pres else 0)
        if agent is not None:
            rows = _wait_rows(agent.workdir / "register.db", answered, 60)
        time.sleep(1.0)
        sampler.stop()
        cap.stop()
        after = Family(pid).sample()
        # ---- SIP
        res["sip"] = _sipp_sip_stats(main, ring)
        if pres:
            ps = _sipp_sip_stats(pres, ring)
            res["probe"] = {k: ps[k] for k in ("ok", "failed", "inv180_p50", "inv180_p99", "inv180_max",
                                               "answer_err_p99", "answer_err_max")}
        # ---- resources
        res["idle"] = {"rss_mb": rnd(idle.rss_kb / 1024, 1), "pss_mb": rnd(idle.pss_kb / 1024, 1),
                       "threads": idle.threads, "fds": idle.fds, "udp": idle.udp}
        res["steady_window_s"] = rnd(steady[1] - steady[0], 1)
        res["agent"] = sampler.window("agent", *steady)
        res["sipp_cpu_pct"] = sampler.window("sipp", *steady).get("cpu_pct")
        if kam:  # idle while the calls are up: its work is the set-up and tear-down, so over the run
            res["kamailio_cpu_pct"] = sampler.window("kamailio", t0, t_end).get("cpu_pct")
        res["machine_busy_pct"] = sampler.machine_busy(*steady)
        res["steal_ms"] = sampler.steal_ms(t0, t_end)
        ours_all = sampler.window("ours_all", *steady).get("cpu_pct")
        if res["machine_busy_pct"] is not None and ours_all is not None:
            # CPU used by processes this bench did not start (other people's jobs), % of one core
            res["foreign_cpu_pct"] = rnd(max(0.0, res["machine_busy_pct"] * (os.cpu_count() or 1) - ours_all))
        if res["agent"]:
            res["agent"]["rss_per_call_kb"] = rnd((res["agent"]["rss_mb"] - res["idle"]["rss_mb"]) * 1024 / n, 0)
            res["agent"]["pss_per_call_kb"] = rnd((res["agent"]["pss_mb"] - res["idle"]["pss_mb"]) * 1024 / n, 0)
        res["after"] = {"threads": after.threads, "fds": after.fds, "udp": after.udp,
                        "rss_mb": rnd(after.rss_kb / 1024, 1)}
        whole = [s for s in sampler.samples["agent"] if t0 <= s.t <= t_end]
        if len(whole) >= 2:
            res["agent"]["cpu_whole_run_pct"] = rnd((whole[-1].cpu_s - whole[0].cpu_s) / (whole[-1].t - whole[0].t) * 100)
            res["agent"]["threads_max_run"] = max(s.threads for s in whole)
            res["agent"]["udp_drops_run"] = max(s.udp_drops for s in whole)
        if prof:
            res["profile"] = prof
        # ---- the wire
        packets = read_pcap(cap.path)
        res["capture"] = {"packets": len(packets), "dropped": cap.dropped}
        tx = rtp_streams(packets, src=host, keep_payload=True)
        main_ids = {t["call_id"] for t in main.timings}
        res["rtp_tx"] = pacing_summary(tx, t_ref=t0)
        res["rtp_rx"] = pacing_summary(rtp_streams(packets, dst=host), t_ref=t0)
        res["rtp_tx"].update(_tx_audio_ours(tx, med.greeting) if impl == "ours" else _tx_audio_stock(tx, med.greeting))
        leg = sip_leg_timings(packets, host, port)
        res["sip"].update(_leg_stats({k: v for k, v in leg.items() if k in main_ids}, ring))
        del packets, tx
        # ---- register and recordings
        if agent is not None:
            by_id = {r["call_id"]: r for r in rows}
            ended = [r for r in rows if r["status"] == "ended"]
            res["register"] = {"rows": len(rows), "ended": len(ended),
                               "with_sha256": sum(1 for r in ended if r["recording_sha256"]),
                               "outcomes": dict(Counter(r["outcome"] for r in ended))}
            checks, diffs = [], []
            for cid in main_ids:
                r = by_id.get(cid)
                if not r or not r["recording"] or not Path(r["recording"]).exists():
                    checks.append({"error": "no recording"})
                    continue
                _, stereo = media.read_wav(Path(r["recording"]))
                checks.append(check_recording(stereo[:, 0], med.sent, exact=True))
                diffs.append(len(stereo) / 8 - (r["talk_ms"] or 0))
            res["recordings"] = _recordings_summary(checks, diffs)
        else:
            evs = stock.events()
            answered_ev = {e["call_id"]: e for e in evs if e["event"] == "answered"}
            ended_ev = {e["call_id"]: e for e in evs if e["event"] == "ended"}
            checks, diffs = [], []
            for e in evs:
                if e["event"] != "recorded" or e["call_id"] not in main_ids:
                    continue
                _, mono = media.read_wav(Path(e["path"]))
                checks.append(check_recording(mono, med.sent, exact=False))
                if e["call_id"] in answered_ev and e["call_id"] in ended_ev:
                    talk = (ended_ev[e["call_id"]]["mono"] - answered_ev[e["call_id"]]["mono"]) * 1000
                    diffs.append(len(mono) / 8 - talk)
            res["register"] = {"answered": len(answered_ev), "recorded": len(checks)}
            res["recordings"] = _recordings_summary(checks, diffs)
        res["verdict"] = verdict(res)
        return res
    finally:
        for proc in (probe, sipp):
            if proc is not None and proc.running():
                proc.stop()
        if sampler is not None:
            sampler.stop()
        if cap is not None and cap.proc.running():
            cap.proc.stop()
        if agent is not None:
            try:
                agent.stop(20)
            finally:
                agent.kill()
        if stock is not None:
            stock.stop()
        if kam is not None:
            kam.stop()


def _profile(pid: int, workdir: Path, seconds: float, gil: bool) -> dict[str, Any]:
    """py-spy record --subprocesses (raw collapsed stacks), summarised per thread and per function.

    Without ``gil``: samples of threads that are not idle (on CPU, or in a call py-spy does not
    know as idle); with ``gil``: only the thread holding the GIL, i.e. who keeps the others waiting.
    """
    out = workdir / f"pyspy{'-gil' if gil else ''}.txt"
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    argv = [spy, "record", "-p", str(pid), "--subprocesses", "--threads", "-r", "100", "-d",
            str(max(1, int(seconds))), "-f", "raw", "-o", str(out), "--nonblocking"]
    if gil:
        argv.append("--gil")
    subprocess.run(argv, capture_output=True, timeout=seconds + 60)
    return summarise_profile(out, max(1, int(seconds)) * 100)


def summarise_profile(path: Path, slots: int, top: int = 18) -> dict[str, Any]:
    """Collapsed py-spy stacks -> % of one core (samples / (seconds x rate)) per thread and function."""
    threads: Counter = Counter()
    leaf: Counter = Counter()
    incl: Counter = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        c = int(count)
        frames = stack.split(";")
        total += c
        thread = next((f for f in frames if f.startswith("thread ")), "")
        code = [f for f in frames if "(" in f and not f.startswith(("process", "thread"))]
        tname = thread
        root = next((f.split(" ")[0] for f in code if any(k in f for k in ("_run", "_read", "sender", "_guard",
                                                                            "recv_loop", "main"))), "?")
        threads[f"{tname} [{root}]"] += c
        if code:
            leaf[code[-1]] += c
        for f in set(f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0] + ")" for f in code if " (" in f):
            incl[f] += c
    pcts = lambda cnt: [(k, round(v / slots * 100, 1)) for k, v in cnt.most_common(top)] if total else []
    return {"samples": total, "slots": slots, "threads": pcts(threads), "leaf": pcts(leaf), "inclusive": pcts(incl), "raw": str(path)}


# ------------------------------------------------------------------------------------------------
# verdicts and tables
# ------------------------------------------------------------------------------------------------
def verdict(r: dict[str, Any]) -> dict[str, Any]:
    """Each target of the issue: True (met), False (missed), with the figure that decided it."""
    s, tx = r.get("sip", {}), r.get("rtp_tx", {})
    rec = r.get("recordings", {})
    v: dict[str, Any] = {}
    v["all_calls_ok"] = s.get("ok") == r["calls"] and not s.get("failed")
    p180 = max(x for x in (s.get("inv180_p99"), r.get("probe", {}).get("inv180_p99")) if x is not None) \
        if s.get("inv180_p99") is not None else None
    v["invite_180_p99"] = p180 is not None and p180 < TARGET_180_P99_MS
    ans = [x for x in (s.get("answer_err_p99"), r.get("probe", {}).get("answer_err_p99")) if x is not None]
    v["answer_p99"] = bool(ans) and max(ans) <= TARGET_ANSWER_P99_MS
    v["ipi_p99"] = tx.get("ipi_p99") is not None and tx["ipi_p99"] <= TARGET_IPI_P99_MS
    v["drift"] = tx.get("drift_worst") is not None and abs(tx["drift_worst"]) < TARGET_DRIFT_MS_MIN
    v["no_loss"] = tx.get("lost") == 0 and tx.get("streams") == r["calls"] + r.get("probe", {}).get("ok", 0) \
        if tx.get("streams") else False
    v["none_late_40"] = tx.get("late_over_40") == 0
    if r["impl"] == "ours":
        reg = r.get("register", {})
        v["register_complete"] = reg.get("with_sha256", 0) >= r["calls"] and reg.get("ended") == reg.get("rows")
        v["recordings_clean"] = (rec.get("rec_errors") == 0 and rec.get("rec_shift_max_ms") is not None
                                 and rec["rec_shift_max_ms"] <= TARGET_SHIFT_MS and rec.get("rec_gap_frames") == 0
                                 and rec.get("rec_dropped_frames") == 0
                                 and abs(rec.get("rec_len_minus_talk_max_ms", 1e9)) <= 200)
    v["all"] = all(v.values())
    return v


def _f(x: Any, nd: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "NO"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def _ratio(a: Any, b: Any) -> str:
    try:
        if a is None or b is None or float(a) == 0:
            return "-"
        return f"{float(b) / float(a):.1f}x"
    except (TypeError, ValueError):
        return "-"


ROWS = [  # (label, getter, digits, ratio?)
    ("calls ok / placed (SIPp)", lambda r: f"{r['sip']['ok']}/{r['calls']}", 0, False),
    ("INVITE->180 p50 / p99 / max, ms (SIPp)", lambda r: f"{_f(r['sip']['inv180_p50'], 2)} / {_f(r['sip']['inv180_p99'], 2)} / {_f(r['sip']['inv180_max'], 2)}", 0, False),
    ("INVITE->180 p99 with N up (probes), ms", lambda r: r.get("probe", {}).get("inv180_p99"), 2, True),
    ("INVITE->180 p99, agent leg on the wire, ms", lambda r: r["sip"].get("leg_inv180_p99"), 2, True),
    ("answer point error p99 / max, ms (SIPp, 180->200 vs delay)", lambda r: f"{_f(r['sip']['answer_err_p99'], 1)} / {_f(r['sip']['answer_err_max'], 1)}", 0, False),
    ("INVITE->200 max, ms", lambda r: r["sip"].get("inv200_max"), 0, True),
    ("RTP out: streams / packets per s per stream", lambda r: f"{r['rtp_tx'].get('streams')} / {_f(r['rtp_tx'].get('pps_per_stream'), 2)}", 0, False),
    ("RTP out: inter-packet p50 / p99 / max, ms", lambda r: f"{_f(r['rtp_tx'].get('ipi_p50'), 2)} / {_f(r['rtp_tx'].get('ipi_p99'), 2)} / {_f(r['rtp_tx'].get('ipi_max'), 1)}", 0, False),
    ("RTP out: p99 inter-packet, ms", lambda r: r["rtp_tx"].get("ipi_p99"), 2, True),
    ("RTP out: drift median / worst, ms per min", lambda r: f"{_f(r['rtp_tx'].get('drift_median'), 1)} / {_f(r['rtp_tx'].get('drift_worst'), 1)}", 0, False),
    ("RTP out: lost packets / later than 40 ms / latest, ms", lambda r: f"{r['rtp_tx'].get('lost')} / {r['rtp_tx'].get('late_over_40')} / {_f(r['rtp_tx'].get('late_max'), 1)}", 0, False),
    ("RTP out: worst gap at (s after start)", lambda r: r["rtp_tx"].get("ipi_max_at_s"), 1, False),
    ("RTP in (SIPp's pacing): p99 / max, ms / at (s)", lambda r: f"{_f(r['rtp_rx'].get('ipi_p99'), 2)} / {_f(r['rtp_rx'].get('ipi_max'), 1)} / {_f(r['rtp_rx'].get('ipi_max_at_s'), 1)}", 0, False),
    ("recordings: offset end-start max, ms", lambda r: r["recordings"].get("rec_shift_max_ms"), 1, True),
    ("recordings: frames identical to sent (min %)", lambda r: r["recordings"].get("rec_frames_exact_min"), 2, False),
    ("recordings: silence frames inserted (in speech) / frames dropped / calls slipped", lambda r: f"{_f(r['recordings'].get('rec_zero_frames'), 0)} ({_f(r['recordings'].get('rec_gap_frames'), 0)}) / {_f(r['recordings'].get('rec_dropped_frames'), 0)} / {_f(r['recordings'].get('rec_calls_slipped'), 0)}", 0, False),
    ("recordings: length - talk time, worst ms", lambda r: r["recordings"].get("rec_len_minus_talk_max_ms"), 0, False),
    ("probe calls: answer error p99, ms", lambda r: r.get("probe", {}).get("answer_err_p99"), 1, False),
    ("agent CPU, % of one core (mean / peak 1 s)", lambda r: f"{_f(r['agent'].get('cpu_pct'))} / {_f(r['agent'].get('cpu_peak_pct'))}", 0, False),
    ("agent CPU, % of one core", lambda r: r["agent"].get("cpu_pct"), 1, True),
    ("agent threads (max)", lambda r: r["agent"].get("threads"), 0, True),
    ("agent RSS idle -> N calls, MB", lambda r: f"{_f(r['idle']['rss_mb'])} -> {_f(r['agent'].get('rss_mb'))}", 0, False),
    ("memory per call, KB (RSS / PSS)", lambda r: f"{_f(r['agent'].get('rss_per_call_kb'), 0)} / {_f(r['agent'].get('pss_per_call_kb'), 0)}", 0, False),
    ("UDP receive drops on the agent's sockets", lambda r: r["agent"].get("udp_drops_run"), 0, False),
    ("SIPp / Kamailio (whole run) CPU, % of one core", lambda r: f"{_f(r.get('sipp_cpu_pct'))} / {_f(r.get('kamailio_cpu_pct'))}", 0, False),
    ("machine busy, % of 2 cores / others' processes, % of one core", lambda r: f"{_f(r.get('machine_busy_pct'))} / {_f(r.get('foreign_cpu_pct'))}", 0, False),
    ("all targets met", lambda r: r["verdict"]["all"] if r["impl"] == "ours" else "-", 0, False),
]


def _cell(get, r, nd):
    try:
        return _f(get(r), nd)
    except (KeyError, TypeError, ValueError):
        return "-"


def comparison_table(results: list[dict[str, Any]]) -> str:
    """Markdown: for each N, ours | stock | stock/ours."""
    ns = sorted({r["calls"] for r in results})
    by = {(r["impl"], r["calls"]): r for r in results}
    head = ["measure"]
    for n in ns:
        head += [f"ours {n}", f"stock {n}"] + (["stock/ours"] if ("stock", n) in by else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, get, nd, ratio in ROWS:
        cells = [label]
        for n in ns:
            o, s = by.get(("ours", n)), by.get(("stock", n))
            cells.append(_cell(get, o, nd) if o else "-")
            if s is not None:
                cells.append(_cell(get, s, nd))
                try:
                    cells.append(_ratio(get(o), get(s)) if ratio and o else "")
                except (KeyError, TypeError, ValueError):
                    cells.append("-")
            elif ("stock", n) in by:
                cells += ["-", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def capacity_table(results: list[dict[str, Any]]) -> str:
    rows = sorted((r for r in results if r["impl"] == "ours"), key=lambda r: r["calls"])
    head = ["N", "calls ok", "INVITE->180 p99 (probe p99), ms", "answer err p99 (probe p99), ms", "RTP out p99 / max, ms",
            "drift worst, ms/min", "lost / >40 ms", "rec. shift max, ms / silence inserted (in speech) / dropped", "rec. length - talk, worst ms", "agent CPU %",
            "threads", "RSS MB", "machine busy % (others' %)", "targets"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        s, tx, rec, a = r["sip"], r["rtp_tx"], r["recordings"], r["agent"]
        failed = [k for k, v in r["verdict"].items() if k != "all" and not v]
        lines.append("| " + " | ".join([
            str(r["calls"]), f"{s['ok']}/{r['calls']}",
            f"{_f(s['inv180_p99'], 2)} ({_f(r.get('probe', {}).get('inv180_p99'), 2)})",
            f"{_f(s['answer_err_p99'])} ({_f(r.get('probe', {}).get('answer_err_p99'))})",
            f"{_f(tx.get('ipi_p99'), 2)} / {_f(tx.get('ipi_max'), 1)}", _f(tx.get("drift_worst")),
            f"{tx.get('lost')} / {tx.get('late_over_40')}",
            f"{_f(rec.get('rec_shift_max_ms'))} / {_f(rec.get('rec_zero_frames'), 0)} ({_f(rec.get('rec_gap_frames'), 0)}) / {_f(rec.get('rec_dropped_frames'), 0)}",
            _f(rec.get("rec_len_minus_talk_max_ms"), 0),
            f"{_f(a.get('cpu_pct'))} (peak {_f(a.get('cpu_peak_pct'))})", _f(a.get("threads")), _f(a.get("rss_mb")),
            f"{_f(r.get('machine_busy_pct'))} ({_f(r.get('foreign_cpu_pct'))})",
            "met" if not failed else "missed: " + ", ".join(failed)]) + " |")
    return "\n".join(lines)


def one_line(r: dict[str, Any]) -> str:
    s, tx, a, rec = r.get("sip", {}), r.get("rtp_tx", {}), r.get("agent", {}), r.get("recordings", {})
    return (f"[{r['impl']} {r['calls']} {r['via']}] ok {s.get('ok')}/{r['calls']} 180 p99 {s.get('inv180_p99')} "
            f"(probe {r.get('probe', {}).get('inv180_p99')}) ans p99 {s.get('answer_err_p99')} | "
            f"rtp p99 {tx.get('ipi_p99')} max {tx.get('ipi_max')}@{tx.get('ipi_max_at_s')}s "
            f"(in: max {r.get('rtp_rx', {}).get('ipi_max')}@{r.get('rtp_rx', {}).get('ipi_max_at_s')}s) drift {tx.get('drift_worst')} lost {tx.get('lost')} "
            f">40 {tx.get('late_over_40')} | rec shift {rec.get('rec_shift_max_ms')} gaps {rec.get('rec_gap_frames')} | "
            f"cpu {a.get('cpu_pct')} thr {a.get('threads')} rss {a.get('rss_mb')} | others {r.get('foreign_cpu_pct')} | "
            f"{'MET' if r['verdict'].get('all') else 'missed ' + ','.join(k for k, v in r['verdict'].items() if not v and k != 'all')}")


# ------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", default="20,50,100", help="N for the comparison with stock pyVoIP")
    ap.add_argument("--capacity", default="150,200", help="further N for our agent only ('' for none)")
    ap.add_argument("--talk-s", type=float, default=30.0)
    ap.add_argument("--ring-ms", type=int, default=1000, help="our agent's ring delay (stock: fixed 1000)")
    ap.add_argument("--probes", type=int, default=20)
    ap.add_argument("--no-direct", action="store_true",
                    help="skip the run of our agent at the largest --calls straight from SIPp (no Kamailio)")
    ap.add_argument("--no-stock", action="store_true")
    ap.add_argument("--profile", action="store_true", help="only: py-spy on our agent at the largest --calls")
    ap.add_argument("--no-gate", action="store_true", help="do not wait for a quiet machine")
    ap.add_argument("--gate-wait-s", type=float, default=600.0)
    ap.add_argument("--keep", action="store_true", help="keep the work folder (pcaps, logs, recordings)")
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--json", type=Path, help="write all figures here (default: a file in /tmp)")
    args = ap.parse_args(argv)

    calls = [int(x) for x in args.calls.split(",") if x.strip()]
    capacity = [int(x) for x in args.capacity.split(",") if x.strip()]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="frontdesk-load-"))
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    med = prepare_media(work / "media", max(args.talk_s, 50.0) if args.profile else args.talk_s)
    print(f"bench.load: {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, {os.cpu_count()} CPUs, work folder {work}")
    plan: list[tuple[str, int, bool]] = []
    if args.profile:
        plan = [("ours", max(calls), False)]
    else:
        for n in calls:
            plan.append(("ours", n, False))
            if not args.no_stock:
                plan.append(("stock", n, False))
        plan += [("ours", n, False) for n in capacity]
        if not args.no_direct:
            plan.append(("ours", max(calls), True))
    results: list[dict[str, Any]] = []
    gates = []
    try:
        for i, (impl, n, direct) in enumerate(plan):
            gate = {"loadavg": open("/proc/loadavg").read().split()[:3], "waited_s": 0, "quiet": None} if args.no_gate \
                else quiet_gate(args.gate_wait_s)
            gates.append(gate)
            print(f"-- {impl} {n} calls{' direct' if direct else ''}: load before {gate['loadavg']}"
                  f"{' (waited %d s)' % gate['waited_s'] if gate['waited_s'] else ''}", flush=True)
            t_run = time.monotonic()
            try:
                r = run_one(impl, n, workdir=work / f"{i:02d}_{impl}_{n}{'_direct' if direct else ''}", med=med,
                            talk_s=max(args.talk_s, 50.0) if args.profile else args.talk_s, ring_ms=args.ring_ms,
                            probes=args.probes, direct=direct, profile_s=15.0 if args.profile else 0.0)
            except Exception as error:  # one broken run must not lose the others' figures
                import traceback
                traceback.print_exc()
                r = {"impl": impl, "calls": n, "via": "direct" if direct else "kamailio", "error": repr(error),
                     "verdict": {"all": False, "error": False}}
                print(f"[{impl} {n}] FAILED: {error!r}", flush=True)
                results.append(r)
                continue
            r["gate"] = gate
            r["elapsed_s"] = round(time.monotonic() - t_run)
            results.append(r)
            print(one_line(r), flush=True)
            if args.profile and "profile" in r:
                print("\n== py-spy, threads not idle (both processes)")
                print_profile(r["profile"]["active"])
                print("\n== py-spy --gil (the thread holding the GIL, agent process)")
                print_profile(r["profile"]["gil"])
    finally:
        out = args.json or Path(tempfile.gettempdir()) / f"frontdesk-load-{datetime.now():%Y%m%d-%H%M%S}.json"
        out.write_text(json.dumps(results, indent=1, default=str))
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - t_start
    results_ok = [r for r in results if "error" not in r]
    failed = [r for r in results if "error" in r]
    comp = [r for r in results_ok if not r["via"] == "direct" and r["calls"] in calls]
    if comp and not args.profile:
        print("\n### Our agent beside stock pyVoIP 1.6.8 (through Kamailio)\n")
        print(comparison_table(comp))
    cap = [r for r in results_ok if r["impl"] == "ours" and r["via"] != "direct"]
    if cap and not args.profile:
        print("\n### Our agent, capacity\n")
        print(capacity_table(cap))
    direct = [r for r in results_ok if r["via"] == "direct"]
    if direct:
        print("\n### Direct (no Kamailio)\n")
        print(capacity_table(direct))
    for r in failed:
        print(f"run {r['impl']} {r['calls']} {r['via']} failed: {r['error']}")
    print(f"\nloads before the runs (1-min): {[g['loadavg'][0] for g in gates]}"
          f"{'; waited for a quiet machine %d s' % sum(g['waited_s'] for g in gates) if any(g['waited_s'] for g in gates) else ''}"
          f"{'; NOT quiet before %d run(s)' % sum(1 for g in gates if g.get('quiet') is False) if any(g.get('quiet') is False for g in gates) else ''}; elapsed {elapsed / 60:.1f} min; figures: {out}")
    return 0 if all(r["verdict"]["all"] for r in results if r["impl"] == "ours" and r["calls"] <= 100) and results else 1


def print_profile(p: dict[str, Any]) -> None:
    print(f"\npy-spy: {p['samples']} samples in {p['slots']} sampling slots (% of one core; {p['raw']})")
    for title in ("threads", "inclusive", "leaf"):
        print(f"  {title}:")
        for k, v in p[title]:
            print(f"    {v:5.1f} %  {k[:150]}")


if __name__ == "__main__":
    sys.exit(main())
