"""A day at the desk, written the way the agent writes it: the real RegisterWriter (ops, events,
close), real stereo recordings from recordings.writer.RecordingWriter, and the callback queue's
own close hook (db.callbacks.on_call_closed) run at each call's end. The CLI tests read it back.

`build_day(folder)` returns a `Day` with the URL, a config file (Asia/Shanghai) and what was
placed (`Placed`), so tests compute what the CLI must say from the plan, not from constants.
The day is yesterday (local), so that its times are past and its callback deadlines are not.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from db import schema
from db.ops import AddEvent, CloseCall, OpenCall, UpdateCall, new_uid
from db.writer import RegisterWriter
from recordings.writer import RecordingInfo, RecordingWriter

TZ = ZoneInfo("Asia/Shanghai")
RATE = 8000
INVITE_TO_180_MS = 20


@dataclass(frozen=True)
class Plan:
    clock: str  # local HH:MM
    caller: str
    kind: str  # handled, late (R1 broken), missed, abandoned, silent, busy
    ring_ms: int = 0
    dtmf: str = ""
    category: str | None = None
    notes: str | None = None


# One day: handled calls, an R1 breach, two missed calls from one number (one rang 5 times),
# an abandoned call, a silent call, a busy refusal.
PLAN = (
    Plan("08:05", "13800000001", "handled", 8000, dtmf="5", category="报修", notes="3栋2单元漏水"),
    Plan("08:40", "13800000002", "handled", 7500, category="咨询", notes="问物业费"),
    Plan("09:10", "13800000003", "late", 16200),
    Plan("09:30", "13800000004", "missed", 6000),
    Plan("10:15", "13800000004", "missed", 21000),
    Plan("11:00", "13800000005", "abandoned", 8000),
    Plan("14:20", "13800000006", "silent", 8000),
    Plan("15:00", "13800000007", "busy"),
    Plan("16:45", "13800000001", "handled", 9000),
)
OUTCOME = {"handled": "handled", "late": "handled", "missed": "missed", "abandoned": "abandoned",
           "silent": "silent", "busy": "busy"}


@dataclass
class Placed:
    plan: Plan
    uid: str
    started_at: datetime
    outcome: str
    answered: bool
    ring_ms: int
    rings: int
    r1_met: bool | None
    talk_ms: int | None
    events: list[tuple[int, str, dict | None]]  # (t_ms, kind, data)
    recording: Path | None = None
    sha256: str | None = None
    samples: np.ndarray | None = None  # (frames, 2) as written

    @property
    def answered_t_ms(self) -> int | None:
        return next((t for t, kind, _ in self.events if kind == "answered"), None)


@dataclass
class Day:
    url: str
    config: Path
    day: date
    calls: list[Placed] = field(default_factory=list)
    folder: Path | None = None

    def args(self) -> list[str]:
        return ["--config", str(self.config)]

    @property
    def window(self) -> list[str]:
        return ["--from", self.day.isoformat(), "--to", self.day.isoformat()]


def rings(ring_ms: int) -> int:
    return ring_ms // 5000 + 1  # the default cadence, 1 s on / 4 s off (R1)


def _events(p: Plan) -> tuple[list[tuple[int, str, dict | None]], int | None]:
    """(events, talk_ms) the agent would log for this plan, t_ms from the INVITE."""
    ring = [(INVITE_TO_180_MS, "ringing", {"invite_to_180_ms": 20.0, "caller": p.caller,
                                           "answer_in_ms": 8000})]
    if p.kind == "busy":
        return [(0, "refused", {"status": 486, "reason": "all lines busy"})], None
    if p.kind == "missed":
        end = INVITE_TO_180_MS + p.ring_ms
        return ring + [(end, "cancelled", None),
                       (end, "ended", {"outcome": "missed", "hung_up_first": "caller",
                                       "reason": "CANCEL"})], None
    a = INVITE_TO_180_MS + p.ring_ms
    events = ring + [(a, "answered", {"ring_ms": p.ring_ms, "rings": rings(p.ring_ms),
                                      "r1_met": rings(p.ring_ms) <= 3}),
                     (a + 40, "confirmed", None),
                     (a + 45, "script", {"step": "greeting"}),
                     (a + 50, "prompt", {"prompt": "greeting", "text": "您好，物业服务中心，1号为您服务",
                                         "ms": 1200})]
    if p.kind == "abandoned":
        return events + [(a + 700, "hangup", {"by": "caller", "reason": "BYE"}),
                         (a + 700, "ended", {"outcome": "abandoned", "hung_up_first": "caller",
                                             "reason": "BYE"})], 700
    events.append((a + 1250, "prompt_done", {"prompt": "greeting", "completed": True}))
    if p.kind == "silent":
        return events + [(a + 1300, "script", {"script": "silent", "step": "hello"}),
                         (a + 1900, "script", {"script": "silent", "step": "goodbye"}),
                         (a + 2900, "hangup", {"by": "agent"}),
                         (a + 2900, "ended", {"outcome": "silent", "hung_up_first": "agent",
                                              "reason": "silent line"})], 2900
    events.append((a + 1500, "speech_start", {"level_dbfs": -24.5}))
    if p.dtmf:
        events.append((a + 1800, "dtmf", {"digit": p.dtmf, "via": "rfc4733"}))
    return events + [(a + 2200, "speech_end", {"level_dbfs": -26.0}),
                     (a + 2600, "hangup", {"by": "caller", "reason": "BYE"}),
                     (a + 2600, "ended", {"outcome": "handled", "hung_up_first": "caller",
                                          "reason": "BYE"})], 2600


def _audio(index: int, ms: int) -> np.ndarray:
    """Distinct caller (left) and agent (right) signals, so a test can tell the sides apart."""
    n = ms * RATE // 1000
    t = np.arange(n) / RATE
    caller = (6000 * np.sin(2 * np.pi * (300 + 10 * index) * t)).astype(np.int16)
    agent = (3000 * np.sin(2 * np.pi * 700 * t)).astype(np.int16) - 1
    return np.stack([caller, agent], axis=1)


def build_day(folder: Path, day: date | None = None, plan: tuple[Plan, ...] = PLAN,
              url: str | None = None) -> Day:
    """Place `plan` on `day` (default: yesterday, local) in a register at `url` (default: a new
    SQLite file in `folder`); recordings and the config file go to `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    day = day or (datetime.now(TZ).date() - timedelta(days=1))
    url = url or f"sqlite:///{folder / 'register.db'}"
    schema.upgrade(url)
    config = folder / "desk.toml"
    config.write_text(f'[storage]\ndb = "{url}"\nrecordings = "{folder / "recordings"}"\n'
                      f'journal = "{folder / "register.journal"}"\n\n'
                      '[desk]\ntimezone = "Asia/Shanghai"\nname = "desk1"\n', encoding="utf-8")
    result = Day(url, config, day, folder=folder)
    recorder = RecordingWriter(flush_s=0.1)
    recorder.start()
    writer = RegisterWriter(url, folder / "register.journal", batch_ms=5)
    writer.start()
    try:
        for index, p in enumerate(plan):
            result.calls.append(_place(writer, recorder, index, p, day, folder))
        assert writer.flush(10), writer.last_error
    finally:
        writer.stop()
        recorder.stop()
    _run_callback_hooks(url, result)
    return result


def _place(writer: RegisterWriter, recorder: RecordingWriter, index: int, p: Plan, day: date,
           folder: Path) -> Placed:
    uid = new_uid()
    hour, minute = map(int, p.clock.split(":"))
    invite = datetime.combine(day, time(hour, minute, 0, 123000), TZ).astimezone(timezone.utc)
    at = lambda t_ms: invite + timedelta(milliseconds=t_ms)  # noqa: E731
    events, talk_ms = _events(p)
    outcome = OUTCOME[p.kind]
    placed = Placed(p, uid, invite, outcome, talk_ms is not None, p.ring_ms,
                    rings(p.ring_ms) if p.kind != "busy" else 0,
                    None if talk_ms is None else rings(p.ring_ms) <= 3, talk_ms, events)
    writer.submit(OpenCall(uid, {
        "call_id": f"{uid}@pbx", "agent": "desk1", "direction": "in", "caller": p.caller,
        "caller_name": None, "called": "8000", "remote_addr": "127.0.0.9:5060",
        "started_at": invite, "status": "ringing",
        **({} if p.kind == "busy" else {"ringing_at": at(INVITE_TO_180_MS), "codec": "PCMU"})}))
    close: dict = {"status": "ended", "outcome": outcome, "ended_at": at(events[-1][0]),
                   "hung_up_first": events[-1][2]["hung_up_first"] if events[-1][2] and
                   "hung_up_first" in events[-1][2] else "agent",
                   "category": p.category, "notes": p.notes}
    for seq, (t_ms, kind, data) in enumerate(events, start=1):
        if kind == "answered":
            writer.submit(UpdateCall(uid, {
                "status": "answered", "answered_at": at(t_ms), "ring_ms": p.ring_ms,
                "ring_ms_from_invite": t_ms, "rings": placed.rings, "r1_met": placed.r1_met,
                "sip_code": 200}))
        writer.submit(AddEvent(uid, seq, at(t_ms), t_ms, kind, data))
    if p.kind == "busy":
        close.update(end_reason="all lines busy", sip_code=486, ring_ms=0, hung_up_first="agent")
    elif talk_ms is None:
        close.update(ring_ms=p.ring_ms, ring_ms_from_invite=INVITE_TO_180_MS + p.ring_ms,
                     rings=placed.rings, sip_code=487, end_reason="CANCEL")
    else:
        close.update(talk_ms=talk_ms, sip_code=200,
                     scripts=["silent"] if p.kind == "silent" else None, dtmf=p.dtmf or None)
        local = invite.astimezone(TZ)
        path = (folder / "recordings" / local.strftime("%Y/%m/%d") /
                f"{local:%H%M%S}_{p.caller}_{uid[:8]}.wav")
        samples = _audio(index, talk_ms)
        done: list[RecordingInfo] = []
        finished = threading.Event()
        recorder.open(uid, path)
        for start in range(0, len(samples), 160):
            block = samples[start:start + 160]
            recorder.write(uid, block[:, 0].copy(), block[:, 1].copy())
        recorder.close(uid, lambda info: (done.append(info), finished.set()))
        assert finished.wait(10), "recording not closed"
        info = done[0]
        placed.recording, placed.sha256, placed.samples = path, info.sha256, samples
        close.update(recording=info.path, recording_sha256=info.sha256, recording_ms=info.ms)
    writer.submit(CloseCall(uid, {k: v for k, v in close.items() if v is not None}))
    return placed


def _run_callback_hooks(url: str, day: Day) -> None:
    """The callback queue's close hook at each call's end (as the agent's writer runs it), then
    one task called back and reached within the hour (R13)."""
    from db import callbacks
    from db.callback_rules import CallbackRules
    from db.engine import make_engine, session_factory
    from db.models import Call
    from sqlalchemy import select

    rules = CallbackRules(tz=TZ)
    engine = make_engine(url, immediate=True)
    try:
        with session_factory(engine).begin() as session:
            for call in session.scalars(select(Call).order_by(Call.ended_at)):
                callbacks.on_call_closed(session, call, rules, now=call.ended_at)
            abandoned = next((c for c in day.calls if c.outcome == "abandoned"), None)
            if abandoned is None:
                return
            call = session.scalars(select(Call).where(Call.uid == abandoned.uid)).one()
            now = call.ended_at + timedelta(minutes=30)
            task = callbacks.claim_next(session, "desk1", now, rules, task_id=call.callback_task_id)
            assert task is not None
            callbacks.finish(session, task.id, "desk1", "reached", now + timedelta(minutes=2),
                             rules, note="已回电，客户满意")
    finally:
        engine.dispose()


def expected_tasks(day: Day) -> dict[str, int]:
    """Callback figures the plan implies: one task per number with an unanswered call (R12,
    R14), the abandoned caller's task done within the hour."""
    opening = {"missed", "abandoned", "silent", "noisy", "message", "after_hours", "busy"}
    numbers = {c.plan.caller for c in day.calls if c.outcome in opening}
    return {"opened": len(numbers), "done": 1, "open": len(numbers) - 1}


@pytest.fixture(scope="module")
def desk_day(tmp_path_factory) -> Day:
    return build_day(tmp_path_factory.mktemp("day"))


def test_the_day_is_in_the_register_as_placed(desk_day):
    from db.engine import make_engine, session_factory
    from db.register import call_events, list_calls

    engine = make_engine(desk_day.url)
    try:
        with session_factory(engine)() as session:
            calls = list_calls(session)[::-1]
            assert [c.uid for c in calls] == [p.uid for p in desk_day.calls]
            for call, placed in zip(calls, desk_day.calls):
                assert (call.outcome, call.ring_ms, call.r1_met) == (
                    placed.outcome, placed.ring_ms, placed.r1_met)
                assert [(e.t_ms, e.kind) for e in call_events(session, call)] == [
                    (t, k) for t, k, _ in placed.events]
                assert call.recording_sha256 == placed.sha256
    finally:
        engine.dispose()
