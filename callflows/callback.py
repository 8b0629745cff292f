"""The callback call (R13): the agent rings the customer back and asks whether the matter is settled.

  DIALING --answered--> ANNOUNCING: callback_intro ({company}), the reason, the menu
      (1: the matter is settled, 2: leave a message)
  1 -> "resolved"; 2 -> a voice message -> "reached"; no key: "voicemail" when the other side
  talked over our prompts (an answering machine), else "no-answer" -- never "resolved" (issue 5:
  a call answered by voicemail or with no key pressed is not resolved).
  DIALING --busy / no answer / ring timeout--> ENDED ("busy", "no-answer", "failed").
`Finish.outcome` here is the attempt's outcome (db.callbacks FINISH_OUTCOMES); the agent maps it
to the register's outcome of the outgoing call.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .events import Action, CancelTimer, Event, Finish, Hangup, Log, Play, SetTimer, StartRecording, StopPlaying


class CallbackState(str, Enum):
    DIALING = "DIALING"
    ANNOUNCING = "ANNOUNCING"
    MENU = "MENU"
    RECORD_MESSAGE = "RECORD_MESSAGE"
    CLOSING = "CLOSING"
    ENDED = "ENDED"


@dataclass(frozen=True)
class CallbackSettings:
    ring_timeout_ms: int = 30_000  # let it ring at least 15 s (anchors d.3); 30 s by default
    menu_timeout_ms: int = 8000
    menu_offers: int = 2
    message_silence_ms: int = 3000
    message_max_ms: int = 60_000


REASON_PROMPTS = {
    "missed": "callback_reason_missed", "abandoned": "callback_reason_missed", "busy": "callback_reason_missed",
    "after_hours": "callback_reason_missed", "interrupted": "callback_reason_missed",
    "silent": "callback_reason_unclear", "noisy": "callback_reason_unclear", "message": "callback_reason_message",
}
BUSY = {486, 600, 603}
NO_ANSWER = {408, 480, 487}

S = CallbackState
TRANSITIONS: dict[tuple[CallbackState, str], tuple[CallbackState, str]] = {
    (S.DIALING, "Dialing"): (S.DIALING, "ring"),
    (S.DIALING, "Answered"): (S.ANNOUNCING, "announce"),
    (S.DIALING, "CallFailed"): (S.ENDED, "failed"),
    (S.DIALING, "timer:ring_timeout"): (S.DIALING, "give_up_ringing"),
    (S.DIALING, "CallerHangup"): (S.ENDED, "failed"),
    (S.ANNOUNCING, "PromptFinished"): (S.ANNOUNCING, "announced"),
    (S.ANNOUNCING, "Digit"): (S.ANNOUNCING, "key"),
    (S.MENU, "Digit"): (S.MENU, "key"),
    (S.MENU, "timer:menu"): (S.MENU, "menu_timeout"),
    (S.MENU, "PromptFinished"): (S.MENU, "menu_prompt_done"),
    (S.RECORD_MESSAGE, "PromptFinished"): (S.RECORD_MESSAGE, "message_prompt_done"),
    (S.RECORD_MESSAGE, "SpeechEnded"): (S.RECORD_MESSAGE, "message_pause"),
    (S.RECORD_MESSAGE, "SpeechStarted"): (S.RECORD_MESSAGE, "message_speech"),
    (S.RECORD_MESSAGE, "timer:message_silence"): (S.CLOSING, "message_done"),
    (S.RECORD_MESSAGE, "timer:message_max"): (S.CLOSING, "message_done"),
    (S.CLOSING, "PromptFinished"): (S.ENDED, "hang_up"),
}
for _state in (S.ANNOUNCING, S.MENU, S.RECORD_MESSAGE, S.CLOSING):
    TRANSITIONS[(_state, "CallerHangup")] = (S.ENDED, "they_hung_up")
    TRANSITIONS[(_state, "LinkLost")] = (S.ENDED, "they_hung_up")
    TRANSITIONS[(_state, "Shutdown")] = (S.ENDED, "shutdown")
TRANSITIONS[(S.DIALING, "Shutdown")] = (S.ENDED, "shutdown")
TRANSITIONS[(S.DIALING, "LinkLost")] = (S.ENDED, "failed")
_NEXT_BY_KEY = {"1": S.CLOSING, "2": S.RECORD_MESSAGE}


class CallbackFlow:
    """One callback call; `handle(event, now) -> actions`, like callflows.flow.CallFlow."""

    def __init__(self, reason: str, settings: CallbackSettings | None = None):
        self.reason = reason
        self.s = settings or CallbackSettings()
        self.state = S.DIALING
        self.result: str | None = None  # "resolved" / "reached" once a key says so
        self.heard_speech = False
        self.menu_offers = 0
        self.message_started = False
        self.playing: str | None = None
        self.outcome: str | None = None
        self.scripts = ["callback"]

    @property
    def finished(self) -> bool:
        return self.state == S.ENDED

    def handle(self, event: Event, now: float) -> list[Action]:
        if event.kind == "SpeechStarted" and self.state in (S.ANNOUNCING, S.MENU):
            self.heard_speech = True  # someone (or a machine) talks over our prompts
        if event.kind == "PromptFinished":
            if event.prompt != self.playing:
                return []
            self.playing = None
        move = TRANSITIONS.get((self.state, event.kind))
        if move is None:
            return []  # everything else (media, late timers) changes nothing in a callback call
        next_state, handler = move
        actions = getattr(self, "_" + handler)(event, now)
        if actions and isinstance(actions[0], CallbackState):
            next_state, actions = actions[0], actions[1:]
        self.state = next_state
        for action in actions:
            if isinstance(action, Play):
                self.playing = action.prompt
            elif isinstance(action, StopPlaying):
                self.playing = None
            elif isinstance(action, Finish):
                self.outcome = action.outcome
        return actions

    def _at(self, now: float, ms: int) -> float:
        return now + ms / 1000.0

    def _unresolved(self) -> str:
        return self.result or ("voicemail" if self.heard_speech else "no-answer")

    def _ring(self, event, now):
        return [SetTimer("ring_timeout", self._at(event.at, self.s.ring_timeout_ms))]

    def _give_up_ringing(self, event, now):
        return [Log("script", {"script": "callback", "step": "ring_timeout"}), Hangup()]

    def _failed(self, event, now):
        status = getattr(event, "status", 0)
        outcome = "busy" if status in BUSY else "no-answer" if status in NO_ANSWER or status == 0 else "failed"
        return [CancelTimer("ring_timeout"), Finish(outcome, "caller", f"SIP {status}" if status else event.kind)]

    def _announce(self, event, now):
        actions: list[Action] = [CancelTimer("ring_timeout"), StartRecording(),
                                 Log("script", {"script": "callback", "step": "announce", "reason": self.reason}),
                                 Play("callback_intro")]
        if self.reason in REASON_PROMPTS:
            actions.append(Play(REASON_PROMPTS[self.reason]))
        self.menu_offers = 1
        return actions + [Play("callback_menu")]

    def _announced(self, event, now):
        if event.prompt != "callback_menu":
            return []
        return [S.MENU, SetTimer("menu", self._at(now, self.s.menu_timeout_ms))]

    def _menu_prompt_done(self, event, now):
        return [SetTimer("menu", self._at(now, self.s.menu_timeout_ms))]

    def _key(self, event, now):
        target = _NEXT_BY_KEY.get(event.digit)
        if target is None:
            return []
        stop = [StopPlaying()] if self.playing else []
        if target is S.CLOSING:
            self.result = "resolved"
            return [target, *stop, CancelTimer("menu"), Log("script", {"script": "callback", "step": "resolved"}),
                    Play("callback_resolved")]
        self.result = "reached"
        return [target, *stop, CancelTimer("menu"), Log("script", {"script": "callback", "step": "voice_message"}),
                Play("record_message")]

    def _menu_timeout(self, event, now):
        if self.menu_offers < self.s.menu_offers:
            self.menu_offers += 1
            return [Play("callback_menu")]
        return [S.CLOSING, Log("script", {"script": "callback", "step": "no_key"}), Play("closing")]

    def _message_prompt_done(self, event, now):
        if event.prompt != "record_message":
            return []
        self.message_started = True
        return [Play("beep"), SetTimer("message_silence", self._at(now, self.s.message_silence_ms + 2000)),
                SetTimer("message_max", self._at(now, self.s.message_max_ms))]

    def _message_speech(self, event, now):
        return [CancelTimer("message_silence")] if self.message_started else []

    def _message_pause(self, event, now):
        if not self.message_started:
            return []
        return [SetTimer("message_silence", self._at(event.at, self.s.message_silence_ms))]

    def _message_done(self, event, now):
        return [CancelTimer("message_silence"), CancelTimer("message_max"),
                Log("script", {"script": "callback", "step": "message_saved"}), Play("message_saved")]

    def _hang_up(self, event, now):
        return [Hangup(), Finish(self._unresolved(), "agent", "callback done")]

    def _they_hung_up(self, event, now):
        cancel = [CancelTimer(n) for n in ("menu", "message_silence", "message_max")]
        return cancel + [Finish(self._unresolved(), "caller", "BYE")]

    def _shutdown(self, event, now):
        return [Hangup(), Finish(self._unresolved() if self.state != S.DIALING else "failed", "agent", "shutdown")]
