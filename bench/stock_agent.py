"""A minimal answering agent on *stock* pyVoIP 1.6.8: public API only, nothing patched.

It is the baseline beside our agent in the benchmarks, and the peer of the tests that show a
defect of stock pyVoIP ("fails on stock pyVoIP, passes on our adapter").  Known stock defects
are deliberately left alone: ``start()`` registers synchronously (blocks up to 30 s when the
registrar is down), SIP is ignored for 1 s after ``start()``, the call callback runs 1 s after
the INVITE, audio is 8-bit unsigned both ways, CANCEL never reaches the application.

    python -m bench.stock_agent --registrar 127.0.0.5:25060 --user 1001 --password secret \
        --sip 127.0.0.6:25070 --rtp 26000-26099 --play prompt8k.wav --record-dir rec \
        --events events.jsonl --run-seconds 30

Prints exactly one line ``ready sip=HOST:PORT`` once ``phone.start()`` has returned.
Events (JSON lines, each with ``mono`` = time.monotonic() and ``wall`` = time.time()):
``start``, ``registered`` (with ``status``), ``call_received`` (``call_id``),
``answered``/``answer_failed``, ``hangup`` (agent hung up), ``ended`` (``call_id``, ``by``),
``recorded`` (``path``), ``stopping``, ``stopped``; ``killed_during_start`` when SIGTERM arrives
while ``start()`` still blocks.  SIGTERM/SIGINT after that run ``phone.stop()`` (de-REGISTER,
which stock pyVoIP lets block up to 30 s when the registrar is gone).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
from pyVoIP.VoIP import CallState, InvalidStateError, VoIPPhone

FRAME_S = 0.020
FRAME_BYTES = 160  # 20 ms of 8 kHz 8-bit audio


class EventLog:
    """Thread-safe JSON-lines writer (a no-op without a path: stdout is for the ready line)."""

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        self._fh = open(path, "a", buffering=1) if path else None

    def emit(self, event: str, **fields: Any) -> None:
        rec = {"event": event, "mono": time.monotonic(), "wall": time.time(), **fields}
        line = json.dumps(rec, default=str)
        with self._lock:
            if self._fh:
                self._fh.write(line + "\n")
                self._fh.flush()


def hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def port_range(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)-(\d+)", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected LOW-HIGH, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def load_u8(path: Path) -> bytes:
    """A WAV (8 kHz mono, 8- or 16-bit PCM) as the 8-bit unsigned bytes pyVoIP's write_audio takes."""
    with wave.open(str(path), "rb") as w:
        if w.getframerate() != 8000 or w.getnchannels() != 1:
            raise SystemExit(f"{path}: need 8 kHz mono, got {w.getframerate()} Hz x{w.getnchannels()}")
        width, raw = w.getsampwidth(), w.readframes(w.getnframes())
    if width == 1:
        return raw
    if width != 2:
        raise SystemExit(f"{path}: need 8- or 16-bit PCM")
    s16 = np.frombuffer(raw, dtype="<i2").astype(np.int32)
    return ((s16 >> 8) + 128).astype(np.uint8).tobytes()


def write_u8_as_s16(path: Path, data: bytes) -> None:
    """What read_audio returned (8-bit unsigned) as a 16-bit WAV."""
    s16 = ((np.frombuffer(data, dtype=np.uint8).astype(np.int16) - 128) << 8).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(s16.tobytes())


class Agent:
    def __init__(self, args: argparse.Namespace, events: EventLog) -> None:
        self.args = args
        self.events = events
        self.prompt = load_u8(args.play) if args.play else b""
        self.stop_event = threading.Event()

    def on_call(self, call: Any) -> None:
        """pyVoIP's callCallback (runs in pyVoIP's Timer thread, 1 s after the INVITE)."""
        cid = call.call_id
        self.events.emit("call_received", call_id=cid, state=call.state.value)
        if self.args.no_answer:
            return
        if self.args.answer_delay_ms > 0:
            time.sleep(self.args.answer_delay_ms / 1000.0)
        try:
            call.answer()
        except InvalidStateError as exc:
            self.events.emit("answer_failed", call_id=cid, error=str(exc), state=call.state.value)
            return
        self.events.emit("answered", call_id=cid)
        if self.prompt:
            call.write_audio(self.prompt)
        recorded = bytearray()
        t0 = time.monotonic()
        k = 0
        hangup_at = t0 + self.args.hangup_after_ms / 1000.0 if self.args.hangup_after_ms else None
        by = "caller"
        while call.state == CallState.ANSWERED:
            if self.stop_event.is_set():
                by = "agent-stop"
                break
            if hangup_at is not None and time.monotonic() >= hangup_at:
                try:
                    call.hangup()
                    self.events.emit("hangup", call_id=cid)
                except InvalidStateError:
                    pass
                by = "agent"
                break
            if self.args.record_dir:
                recorded += call.read_audio(FRAME_BYTES, blocking=False)
            k += 1
            delay = t0 + k * FRAME_S - time.monotonic()  # absolute 20 ms clock, no drift
            if delay > 0:
                time.sleep(delay)
        self.events.emit("ended", call_id=cid, by=by, state=call.state.value)
        if self.args.record_dir:
            out = Path(self.args.record_dir) / (re.sub(r"[^A-Za-z0-9_.-]", "_", cid) + ".wav")
            write_u8_as_s16(out, bytes(recorded))
            self.events.emit("recorded", call_id=cid, path=str(out), samples=len(recorded))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--registrar", type=hostport, required=True, help="HOST:PORT of the registrar/proxy")
    p.add_argument("--user", default="1001")
    p.add_argument("--password", default="secret")
    p.add_argument("--sip", type=hostport, required=True, help="HOST:PORT to bind (also the Contact)")
    p.add_argument("--rtp", type=port_range, default=(10000, 20000), help="LOW-HIGH RTP ports")
    p.add_argument("--answer-delay-ms", type=int, default=0, help="wait this long in the callback, then answer")
    p.add_argument("--no-answer", action="store_true", help="never answer (the call keeps ringing)")
    p.add_argument("--hangup-after-ms", type=int, default=0, help="hang up this long after answering (0: never)")
    p.add_argument("--play", type=Path, help="WAV (8 kHz mono) written to the call once answered")
    p.add_argument("--record-dir", type=Path, help="write what read_audio returns, per call, as 16-bit WAV")
    p.add_argument("--events", type=Path, help="JSON-lines event log")
    p.add_argument("--run-seconds", type=float, default=0.0, help="stop after this long (0: until SIGTERM)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.record_dir:
        args.record_dir.mkdir(parents=True, exist_ok=True)
    events = EventLog(args.events)
    agent = Agent(args, events)
    done = threading.Event()
    started = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        # Harness hygiene, not a pyVoIP fix: a SIGTERM while the stock start() is still blocked
        # on its synchronous REGISTER (up to 30 s) ends the process at once.
        if not started.is_set():
            events.emit("killed_during_start", signal=signum)
            os._exit(128 + signum)
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    (reg_host, reg_port), (sip_host, sip_port) = args.registrar, args.sip
    phone = VoIPPhone(
        reg_host, reg_port, args.user, args.password,
        callCallback=agent.on_call, myIP=sip_host, sipPort=sip_port,
        rtpPortLow=args.rtp[0], rtpPortHigh=args.rtp[1],
    )
    events.emit("start", sip=f"{sip_host}:{sip_port}", registrar=f"{reg_host}:{reg_port}", user=args.user)
    phone.start()  # registers synchronously (stock behaviour)
    started.set()
    events.emit("registered", status=phone.get_status().value)
    print(f"ready sip={sip_host}:{sip_port}", flush=True)

    deadline = time.monotonic() + args.run_seconds if args.run_seconds > 0 else None
    while not done.is_set():
        if deadline is not None and time.monotonic() >= deadline:
            break
        done.wait(0.1)
    events.emit("stopping", status=phone.get_status().value)
    agent.stop_event.set()
    try:
        phone.stop()
    except Exception as exc:  # noqa: BLE001 - stock stop() can raise on closed sockets
        events.emit("stop_error", error=repr(exc))
    events.emit("stopped", status=phone.get_status().value)
    return 0


if __name__ == "__main__":
    sys.exit(main())
