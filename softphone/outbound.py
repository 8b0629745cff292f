"""The agent's outgoing calls: a callback placed for the dialer (softphone.dialer), run by
callflows.callback.CallbackFlow, written to the register as a call with direction "out".

A mixin of softphone.agent.Agent: the same thread, the same call table, timers and actions.
"""
from __future__ import annotations

import logging
import uuid
from typing import Any

from callflows.callback import CallbackFlow, CallbackSettings
from callflows.events import Answered, CallFailed, Dialing
from db.ops import OpenCall, UpdateCall, new_uid

from .dialer import AttemptResult, DialRequest
from .listening import LineListener
from .media import NoPortError
from .sipout import OutboundAnswered, OutboundFailed, OutboundRinging

log = logging.getLogger("frontdesk.agent")

#: the register's outcome of an outgoing call, from the callback attempt's outcome
REGISTER_OUTCOME = {"resolved": "handled", "reached": "handled", "no-answer": "missed", "voicemail": "missed",
                    "busy": "busy", "failed": "rejected"}


class OutgoingCallsMixin:
    dialer = None  # set by the runtime when the agent places callbacks itself

    def place_callback(self, request: DialRequest) -> None:
        """From the dialer's thread: queue a call to place."""
        self._queue.put(("dial", request))

    def free_lines(self) -> int:
        return self.config.sip.max_calls - self.sip.active_calls

    def _dial(self, request: DialRequest) -> None:
        from .agent import ActiveCall
        call_id = uuid.uuid4().hex + "@frontdesk"
        key = f"out:{call_id}"
        now = self._clock()
        target = request.number
        template = self.config.callbacks.dial_target
        if template:
            target = template.format(number=request.number)
        flow = CallbackFlow(request.reason, CallbackSettings(ring_timeout_ms=self.config.callbacks.ring_timeout_s * 1000))
        call = ActiveCall(key, new_uid(), flow, self.config.sip.user, now, now, LineListener(self.config.flow.quiet_dbfs))
        call.direction, call.task_id = "out", request.task_id
        self._calls[key] = call
        self.register.submit(OpenCall(call.uid, {
            "call_id": call_id, "agent": self.config.desk.name, "direction": "out", "caller": self.config.sip.user,
            "called": request.number, "started_at": self._utc(now), "status": "ringing"}))
        self._log(call, "dialing", {"number": request.number, "target": target, "task": request.task_id,
                                    "reason": request.reason}, now)
        try:
            port = self.media.open(key)
            call.media_open = True
            self.sip.dial(target, (self.sip.contact_host(), port), call_id=call_id)
        except (NoPortError, ValueError, OSError) as error:
            log.error("callback to %s not placed: %s", request.number, error)
            self._log(call, "error", {"dial": str(error)}, now)
            self._dispatch(call, CallFailed(now, 0))
            return
        self._dispatch(call, Dialing(now))

    def _on_outbound(self, event: Any) -> None:
        call = self._calls.get(event.key)
        if call is None:
            return
        if isinstance(event, OutboundRinging):
            call.ringing_at = event.at
            self.register.submit(UpdateCall(call.uid, {"ringing_at": self._utc(event.at)}))
            self._log(call, "ringing", {"status": event.status}, event.at)
        elif isinstance(event, OutboundAnswered):
            n = event.negotiated
            self.media.connect(call.key, event.remote, n.codec, n.payload_type, n.dtmf_payload_type,
                               sending=n.direction in ("sendrecv", "sendonly"))
            call.answered_at, call.sip_code, call.codec, call.confirmed = event.at, 200, n.codec, True
            self.register.submit(UpdateCall(call.uid, {
                "status": "answered", "answered_at": self._utc(event.at), "sip_code": 200, "codec": n.codec,
                "ring_ms": round((event.at - call.ringing_at) * 1000)}))
            self._log(call, "answered", {"by": "customer"}, event.at)
            self._dispatch(call, Answered(event.at))
        elif isinstance(event, OutboundFailed):
            call.sip_code = event.status
            self._log(call, "failed", {"status": event.status, "reason": event.reason}, event.at)
            self._dispatch(call, CallFailed(event.at, event.status))

    def _finish_outbound(self, call: Any, attempt_outcome: str, fields: dict) -> None:
        """The register fields of an outgoing call, and the attempt reported to the dialer."""
        fields["outcome"] = REGISTER_OUTCOME.get(attempt_outcome, "rejected")
        if self.dialer is not None and call.task_id is not None:
            note = f"callback call {call.uid[:8]}: {attempt_outcome}"
            if call.recording is not None:
                note += f"; recording {call.recording}"
            self.dialer.report(AttemptResult(call.task_id, attempt_outcome, call.uid, note))
