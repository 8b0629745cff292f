"""The agent: the one thread that owns call state (DESIGN.md, "One incoming call, as data").

SIP events (from the adapter's thread), media ticks (from the media thread) and the agent's own
timers all arrive on one queue.  For each call the agent feeds events, stamped with the time they
were received, to the call's flow (`callflows`) and carries out the actions it returns: answer,
play, record, hang up, set timers, log, finish.  It never waits on the disk or the database:
recordings go to the recording writer's queue and every register change to the register
writer's queue (db.writer), each with its own thread.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Protocol

from callflows.answer import AnswerPolicy, RingCadence
from callflows.events import (Answer, CallerHangup, Cancelled, CancelTimer, Confirmed, Digit, Event, Finish,
                              Hangup, Hold, LineChanged, LinkLost, Log, Play, PromptFinished, Record, Reject,
                              Ringing, SetTimer, Shutdown, SpeechEnded, SpeechStarted, StartRecording,
                              StopPlaying, TimerFired)
from callflows.flow import CallFlow, FlowSettings, IllegalTransition
from db.ops import AddEvent, CloseCall, OpenCall, UpdateCall, new_uid
from recordings.prompts import PromptError, PromptLibrary
from recordings.writer import RecordingInfo, RecordingWriter

from .config import Config
from .listening import LineListener
from .media import MediaEngine, MediaTick, NoPortError
from .mediaproc import MediaProcess
from .outbound import OutgoingCallsMixin
from .sipout import OutboundAnswered, OutboundFailed, OutboundRinging
from .sip import (CallCancelled, CallConfirmed, CallEnded, CallRefused, DtmfInfo, IncomingCall, MediaChanged,
                  RegistrationEvent, SipEndpoint, SipEvent, SipSettings)

log = logging.getLogger("frontdesk.agent")

Timer = tuple[float, int, str, str]  # (due, sequence, call key, timer name)

# Timers that only wait for the clock: R1's answer point and an outgoing call's ring time-out.
# They fire on time whatever is queued (a CANCEL that races the answer is settled by the SIP
# layer, which has answered it 487 already). Every other timer waits on what the caller does
# (speech, DTMF, BYE) and fires in the order of events: see Agent._horizon.
WALL_CLOCK_TIMERS = frozenset({"answer", "ring_timeout"})


def _happened_at(item: object) -> float | None:
    """When a queued item happened (monotonic), or None for a command (fire up to now)."""
    if item is None or isinstance(item, tuple):
        return None
    at = getattr(item, "at", None)
    return at if at is not None else getattr(item, "invite_at", None)


def live_timers(heap: list[Timer], calls: dict[str, "ActiveCall"]) -> list[Timer]:
    """The entries of ``heap`` that can still fire, as a heap.

    A cancelled or replaced timer stays in the heap until its time comes (lazy deletion); an
    ended call's ``max_call`` (30 min by default) would otherwise be kept that long, so a desk
    taking 20 calls/s would carry ~36,000 dead entries. The agent drops them when they
    outnumber the live ones (see ``Agent._finish``); the order of the rest is unchanged.
    """
    out = [t for t in heap if (c := calls.get(t[2])) is not None and c.timers.get(t[3]) == t[0]]
    heapq.heapify(out)
    return out


class RegisterSink(Protocol):
    def submit(self, op: Any) -> None: ...


@dataclass
class ActiveCall:
    key: str
    uid: str
    flow: CallFlow
    caller: str
    invite_at: float
    ringing_at: float
    listener: LineListener
    seq: int = 0
    answered_at: float | None = None
    confirmed: bool = False
    media_open: bool = False
    recording: Path | None = None
    sip_code: int | None = None
    codec: str | None = None
    timers: dict[str, float] = field(default_factory=dict)
    playing: str | None = None
    dtmf: str = ""
    first_frame_logged: bool = False
    direction: str = "in"
    task_id: int | None = None  # the callback task an outgoing call works on
    last_rtp_at: float | None = None  # when the caller's RTP last arrived (None: not answered yet)
    on_hold: bool = False


class Agent(OutgoingCallsMixin):
    def __init__(self, config: Config, *, register: RegisterSink, prompts: PromptLibrary,
                 recorder: RecordingWriter, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, on_status: Callable[[str], None] | None = None):
        self.config = config
        self.register = register
        self.prompts = prompts
        self.recorder = recorder
        self._clock = clock
        self._mono0, self._wall0 = clock(), wall()
        self._on_status = on_status or (lambda line: None)
        self.policy = AnswerPolicy(RingCadence(*config.answer.ring_cadence), config.answer.after_rings,
                                   config.answer.delay_ms, config.answer.max_rings)
        self.flow_settings = FlowSettings(**{name: getattr(config.flow, name) for name in FlowSettings.__dataclass_fields__
                                             if hasattr(config.flow, name)})
        self.hours = config.hours.working_hours()
        s = config.sip
        self.sip = SipEndpoint(SipSettings(listen=s.listen, user=s.user, registrar=s.registrar, password=s.password,
                                           domain=s.domain, public_address=s.public_address,
                                           register_expires=s.register_expires, max_calls=s.max_calls),
                               self._queue_put, clock=clock)
        ports = range(s.rtp_ports[0], s.rtp_ports[1] + 1)
        self.media = (MediaProcess(s.listen[0], ports, self._queue_put) if s.media_process
                      else MediaEngine(s.listen[0], ports, self._queue_put, clock=clock))
        self._queue: queue.Queue = queue.Queue()  # a Queue, not a SimpleQueue: _horizon peeks at its head
        self._calls: dict[str, ActiveCall] = {}
        self._timers: list[Timer] = []       # in event order (see _horizon)
        self._wall_timers: list[Timer] = []  # WALL_CLOCK_TIMERS: on the clock
        self._timer_seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.tz = config.tz

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self.media.start()
        self.sip.start()
        self._thread = threading.Thread(target=self._run, name="agent", daemon=True)
        self._thread.start()

    def stop(self, grace_s: float = 1.0) -> None:
        """Stop taking calls, end the active ones (BYE; their rows are completed), stop the parts."""
        self.sip.accepting = False
        done = threading.Event()
        self._queue.put(("shutdown", done))
        done.wait(5.0)
        deadline = time.monotonic() + grace_s  # let the BYEs reach the callers and be answered
        while self.sip.active_calls and time.monotonic() < deadline:
            time.sleep(0.02)
        self._queue.put(("stop",))
        if self._thread is not None:
            self._thread.join(5.0)
        self.sip.stop()
        self.media.stop()

    @property
    def active_calls(self) -> int:
        return len(self._calls)

    # --- the queue ------------------------------------------------------------------------------

    def _queue_put(self, item: SipEvent | MediaTick) -> None:
        self._queue.put(item)

    def _run(self) -> None:
        while True:
            timeout = 0.5
            for heap in (self._wall_timers, self._timers):
                if heap:
                    timeout = max(0.0, min(timeout, heap[0][0] - self._clock()))
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            try:
                # Timers and events in the order they happened (R3, R6, R7 timings): under a
                # backlog a BYE read 1 s ago must not lose to a timer that fell due since.
                self._fire_timers(_happened_at(item))
                if isinstance(item, tuple):
                    if item[0] == "stop":
                        return
                    if item[0] == "shutdown":
                        self._shutdown_calls()
                        item[1].set()
                    elif item[0] == "dial":
                        self._dial(item[1])
                elif isinstance(item, MediaTick):
                    self._on_tick(item)
                elif item is not None:
                    self._on_sip(item)
                self._fire_timers(self._horizon())
            except Exception:  # one bad event must not stop the agent answering
                log.exception("agent: error handling %r", type(item).__name__)

    def _horizon(self) -> float:
        """Now, or when the oldest queued item happened if that is earlier: the timers due
        before it may fire, the others wait until it has been handled."""
        now = self._clock()
        with self._queue.mutex:
            head = self._queue.queue[0] if self._queue.queue else None
        at = _happened_at(head)
        return now if at is None else min(now, at)

    def _fire_timers(self, until: float | None = None) -> None:
        """Fire the wall-clock timers due by now and the others due by ``until`` (default: now)."""
        now = self._clock()
        self._fire(self._wall_timers, now)
        self._fire(self._timers, now if until is None else min(now, until))

    def _fire(self, heap: list[Timer], now: float) -> None:
        while heap and heap[0][0] <= now:
            at, _, key, name = heapq.heappop(heap)
            call = self._calls.get(key)
            if call is not None and call.timers.get(name) == at:
                del call.timers[name]
                self._dispatch(call, TimerFired(at, name))

    # --- SIP events -----------------------------------------------------------------------------

    def _on_sip(self, event: SipEvent) -> None:
        if isinstance(event, IncomingCall):
            self._on_incoming(event)
            return
        if isinstance(event, CallRefused):
            self._on_refused(event)
            return
        if isinstance(event, (OutboundRinging, OutboundAnswered, OutboundFailed)):
            self._on_outbound(event)
            return
        if isinstance(event, RegistrationEvent):
            detail = f"expires={event.expires}" if event.expires else event.reason
            self._on_status(f"registration {event.state} {detail}".strip())
            return
        call = self._calls.get(event.key)
        if call is None:
            return
        if isinstance(event, CallCancelled):
            call.sip_code = 487
            self._log(call, "cancelled", {}, event.at)
            self._dispatch(call, Cancelled(event.at))
        elif isinstance(event, CallConfirmed):
            call.confirmed = True
            if event.negotiated is not None and event.remote is not None and call.media_open:
                self.media.connect(call.key, event.remote, event.negotiated.codec, event.negotiated.payload_type,
                                   event.negotiated.dtmf_payload_type,
                                   sending=event.negotiated.direction in ("sendrecv", "sendonly"))
                if call.codec is None:
                    call.codec = event.negotiated.codec
                    self.register.submit(UpdateCall(call.uid, {"codec": call.codec}))
            self._log(call, "confirmed", {}, event.at)
            self._dispatch(call, Confirmed(event.at))
        elif isinstance(event, CallEnded):
            self._log(call, "hangup", {"by": event.by, "reason": event.reason}, event.at)
            self._dispatch(call, CallerHangup(event.at) if event.by == "caller" else LinkLost(event.at, event.reason))
        elif isinstance(event, MediaChanged):
            n = event.negotiated
            self.media.connect(call.key, event.remote, n.codec, n.payload_type, n.dtmf_payload_type,
                               sending=not event.on_hold and n.direction in ("sendrecv", "sendonly"))
            call.on_hold = event.on_hold
            self._log(call, "hold" if event.on_hold else "resume", {"remote": f"{event.remote[0]}:{event.remote[1]}"},
                      event.at)
            self._dispatch(call, Hold(event.at, event.on_hold))
        elif isinstance(event, DtmfInfo):
            call.dtmf += event.digit
            self._log(call, "dtmf", {"digit": event.digit, "via": "INFO"}, event.at)
            self._dispatch(call, Digit(event.at, event.digit))

    def _on_incoming(self, event: IncomingCall) -> None:
        uid = new_uid()
        after_hours = not self.hours.is_open(datetime.fromtimestamp(self._wall(event.invite_at), self.tz))
        call = ActiveCall(event.key, uid, CallFlow(self.policy, self.flow_settings, after_hours=after_hours),
                          event.caller, event.invite_at, event.ringing_at,
                          LineListener(self.config.flow.quiet_dbfs))
        call.codec = event.negotiated.codec if event.negotiated else None
        self._calls[event.key] = call
        self.register.submit(OpenCall(uid, {
            "call_id": event.call_id, "agent": self.config.desk.name, "direction": "in",
            "caller": event.caller, "caller_name": event.caller_name or None, "called": event.called,
            "remote_addr": event.remote_addr, "started_at": self._utc(event.invite_at),
            "ringing_at": self._utc(event.ringing_at), "status": "ringing", "codec": call.codec,
        }))
        self._log(call, "ringing", {"invite_to_180_ms": round((event.ringing_at - event.invite_at) * 1000, 2),
                                    "caller": event.caller, "answer_in_ms": self.policy.answer_delay_ms(),
                                    "after_hours": after_hours}, event.ringing_at)
        self._dispatch(call, Ringing(event.ringing_at))

    def _on_refused(self, event: CallRefused) -> None:
        uid = new_uid()
        outcome = {486: "busy"}.get(event.status, "rejected")
        at = self._utc(event.invite_at)
        self.register.submit(OpenCall(uid, {
            "call_id": event.call_id, "agent": self.config.desk.name, "direction": "in", "caller": event.caller,
            "caller_name": event.caller_name or None, "called": event.called, "remote_addr": event.remote_addr,
            "started_at": at, "status": "ringing"}))
        self.register.submit(AddEvent(uid, 1, at, 0, "refused", {"status": event.status, "reason": event.reason}))
        self.register.submit(CloseCall(uid, {"status": "ended", "outcome": outcome, "ended_at": at,
                                             "hung_up_first": "agent", "end_reason": event.reason,
                                             "sip_code": event.status, "ring_ms": 0}))

    # --- media ----------------------------------------------------------------------------------

    def _on_tick(self, tick: MediaTick) -> None:
        recorded = []
        for n, frame in enumerate(tick.frames):
            if n % 16 == 15:
                self._fire_timers(self._horizon())  # a tick of 100 calls takes ms: answer points stay on time
            call = self._calls.get(frame.key)
            if call is None:
                continue
            if call.recording is not None:
                recorded.append((call.key, frame.rx, frame.tx))
                if not call.first_frame_logged:  # aligns the recording with the timeline (replay, rerun)
                    call.first_frame_logged = True
                    self._log(call, "recording", {"path": str(call.recording), "first_frame": True}, tick.at)
            for token, completed in frame.played:
                if call.playing == token:
                    call.playing = None
                self._log(call, "prompt_done", {"prompt": token, "completed": completed}, tick.at)
                self._dispatch(call, PromptFinished(tick.at, str(token), completed))
                if call.key not in self._calls:
                    break
            for digit in frame.digits:
                call.dtmf += digit
                self._log(call, "dtmf", {"digit": digit, "via": "rfc4733"}, tick.at)
                self._dispatch(call, Digit(tick.at, digit))
            if call.recording is None or call.key not in self._calls:
                continue
            if frame.packets or call.last_rtp_at is None or call.on_hold:
                call.last_rtp_at = tick.at
            elif tick.at - call.last_rtp_at > self.config.flow.rtp_timeout_ms / 1000.0:
                # the caller's side has gone silent at the IP level: a dead line, not a quiet caller
                self._log(call, "rtp_timeout", {"ms": round((tick.at - call.last_rtp_at) * 1000)}, tick.at)
                self.sip.hangup(call.key)
                self._dispatch(call, LinkLost(tick.at, "no RTP"))
                continue
            for kind, data, ago in call.listener.push(frame.rx):
                # The flow hears of it now (the detector's onset and hangover delays included);
                # the timeline also keeps when the caller really started or stopped.
                at = tick.at
                if kind in ("speech_start", "speech_end"):
                    data["real_t_ms"] = round((tick.at - ago - call.invite_at) * 1000.0)
                self._log(call, kind, data, at)
                if kind == "speech_start":
                    self._dispatch(call, SpeechStarted(at, data.get("level_dbfs") or 0.0))
                elif kind == "speech_end":
                    self._dispatch(call, SpeechEnded(at, data.get("level_dbfs") or 0.0))
                elif kind == "line":
                    self._dispatch(call, LineChanged(at, data["state"]))
                if call.key not in self._calls:
                    break
        if recorded:
            self.recorder.write_tick(recorded)

    # --- flows and their actions ----------------------------------------------------------------

    def _dispatch(self, call: ActiveCall, event: Event) -> None:
        if call.key not in self._calls:
            return
        try:
            actions = call.flow.handle(event, event.at)
        except IllegalTransition as error:
            log.error("call %s: %s", call.uid, error)
            self._log(call, "error", {"illegal": event.kind, "state": error.state.value}, event.at)
            return
        for action in actions:
            self._execute(call, action, event.at)

    def _execute(self, call: ActiveCall, action: Any, now: float) -> None:
        if isinstance(action, SetTimer):
            call.timers[action.name] = action.at
            heap = self._wall_timers if action.name in WALL_CLOCK_TIMERS else self._timers
            heapq.heappush(heap, (action.at, next(self._timer_seq), call.key, action.name))
        elif isinstance(action, CancelTimer):
            call.timers.pop(action.name, None)
        elif isinstance(action, Answer):
            self._answer(call, now)
        elif isinstance(action, StartRecording):
            self._start_recording(call)
        elif isinstance(action, Play):
            self._play(call, action, now)
        elif isinstance(action, StopPlaying):
            self.media.stop_playing(call.key)
        elif isinstance(action, Hangup):
            self._log(call, "hangup", {"by": "agent"}, now)
            self.sip.hangup(call.key)
        elif isinstance(action, Reject):
            call.sip_code = action.status
            self.sip.hangup(call.key, action.status)
        elif isinstance(action, Log):
            self._log(call, action.kind, action.data, now)
        elif isinstance(action, Record):
            self.register.submit(UpdateCall(call.uid, {action.field: action.value}))
            self._log(call, "recorded", {"field": action.field, "value": action.value,
                                         "confirmed": action.confirmed}, now)
        elif isinstance(action, Finish):
            self._finish(call, action, now)

    def _answer(self, call: ActiveCall, now: float) -> None:
        try:
            port = self.media.open(call.key)
        except NoPortError as error:
            log.error("call %s: %s", call.uid, error)
            self._log(call, "error", {"answer": str(error)}, now)
            self._dispatch(call, LinkLost(now, "no free RTP port"))
            return
        call.media_open = True
        negotiated = self.sip.answer(call.key, (self.sip.contact_host(), port))
        if negotiated is False:  # the caller cancelled at this very moment: the CANCEL event follows
            self.media.close(call.key)
            call.media_open = False
            return
        call.answered_at = now
        call.sip_code = 200
        ring_ms = (now - call.ringing_at) * 1000.0
        rings, r1_met = self.policy.assess(ring_ms)
        if negotiated is not None:
            offer_remote = self.sip.remote_media(call.key)
            self.media.connect(call.key, offer_remote, negotiated.codec, negotiated.payload_type,
                               negotiated.dtmf_payload_type, sending=negotiated.direction in ("sendrecv", "sendonly"))
        self.register.submit(UpdateCall(call.uid, {
            "status": "answered", "answered_at": self._utc(now), "ring_ms": round(ring_ms),
            "ring_ms_from_invite": round((now - call.invite_at) * 1000.0), "rings": rings, "r1_met": r1_met,
            "sip_code": 200, "codec": call.codec}))
        self._log(call, "answered", {"ring_ms": round(ring_ms), "rings": rings, "r1_met": r1_met}, now)

    def _start_recording(self, call: ActiveCall) -> None:
        local = datetime.fromtimestamp(self._wall(call.invite_at), self.tz)
        safe_caller = "".join(c for c in call.caller if c.isalnum() or c in "+-_")[:32] or "unknown"
        path = (Path(self.config.storage.recordings) / local.strftime("%Y/%m/%d") /
                f"{local.strftime('%H%M%S')}_{safe_caller}_{call.uid[:8]}.wav")
        call.recording = path
        self.recorder.open(call.key, path)
        self.register.submit(UpdateCall(call.uid, {"recording": str(path)}))

    def _play(self, call: ActiveCall, action: Play, now: float) -> None:
        try:
            prompt = self.prompts.render(action.prompt, action.digits)
        except PromptError as error:
            log.error("call %s: %s", call.uid, error)
            self._log(call, "error", {"prompt": action.prompt, "problem": str(error)}, now)
            self._dispatch(call, PromptFinished(now, action.prompt, False))
            return
        call.playing = action.prompt
        self.media.play(call.key, prompt.pcm, action.prompt)
        self._log(call, "prompt", {"prompt": action.prompt, "text": prompt.text, "ms": prompt.ms}, now)

    def _finish(self, call: ActiveCall, action: Finish, now: float) -> None:
        self._calls.pop(call.key, None)
        call.timers.clear()
        if len(self._timers) + len(self._wall_timers) > 256 and \
                len(self._timers) + len(self._wall_timers) > 4 * sum(len(c.timers) for c in self._calls.values()):
            self._timers = live_timers(self._timers, self._calls)  # amortised: at most every ~N calls
            self._wall_timers = live_timers(self._wall_timers, self._calls)
        if call.media_open:
            self.media.close(call.key)
        fields: dict[str, Any] = {
            "status": "ended", "outcome": action.outcome, "hung_up_first": action.hung_up_first,
            "end_reason": action.reason or None, "ended_at": self._utc(now),
            "sip_code": call.sip_code, "scripts": list(call.flow.scripts) or None, "dtmf": call.dtmf or None,
        }
        if call.answered_at is not None:
            fields["talk_ms"] = round((now - call.answered_at) * 1000.0)
        elif call.direction == "in":
            fields["ring_ms"] = round((now - call.ringing_at) * 1000.0)
            fields["ring_ms_from_invite"] = round((now - call.invite_at) * 1000.0)
            fields["rings"] = self.policy.cadence.rings(fields["ring_ms"])
        if call.direction == "out":
            self._finish_outbound(call, action.outcome, fields)
        self._log(call, "ended", {"outcome": action.outcome, "hung_up_first": action.hung_up_first,
                                  "reason": action.reason}, now)
        if call.recording is None:
            self.register.submit(CloseCall(call.uid, fields))
            return
        uid, register = call.uid, self.register

        def recorded(info: RecordingInfo) -> None:  # runs in the recording writer's thread
            register.submit(CloseCall(uid, {**fields, "recording": info.path, "recording_sha256": info.sha256,
                                            "recording_ms": info.ms}))
        self.recorder.close(call.key, recorded)

    def _shutdown_calls(self) -> None:
        now = self._clock()
        for call in list(self._calls.values()):
            self._dispatch(call, Shutdown(now))

    # --- register helpers -----------------------------------------------------------------------

    def _wall(self, mono: float) -> float:
        return self._wall0 + (mono - self._mono0)

    def _utc(self, mono: float) -> datetime:
        return datetime.fromtimestamp(self._wall(mono), timezone.utc)

    def _log(self, call: ActiveCall, kind: str, data: dict, at: float) -> None:
        call.seq += 1
        self.register.submit(AddEvent(call.uid, call.seq, self._utc(at), round((at - call.invite_at) * 1000.0),
                                      kind, data or None))
