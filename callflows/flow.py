"""The attendant's call flow: a transition table and the actions of each move.

`CallFlow.handle(event, now) -> [actions]` is the whole interface (STYLE.md 1, 3): no socket,
thread, file or clock.  The table `TRANSITIONS` maps (state, event kind) to (next state, handler);
a pair that is in neither the table nor `IGNORED` raises `IllegalTransition` (the agent logs it
and keeps the call).  docs/call-states.md is generated from the table (`python -m callflows.diagram`).

The flow of an ordinary call:
  RINGING --answer timer (R1)--> ANSWERING --ACK--> GREETING (R2) --prompt done--> LISTENING
  LISTENING --3 s without speech after the caller spoke, or no speech at all--> CLOSING:
      the R4 "we will get back to you" closing --> WAIT_CALLER_HANGUP (R3: up to 10 s) --> ENDED
  RINGING --CANCEL/BYE--> MISSED;  any answered state --BYE--> ENDED.
Outcomes: missed (hung up while ringing), abandoned (hung up before the greeting ended),
handled (the caller heard the greeting and the call ran its course).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Callable

from .answer import AnswerPolicy
from .events import (Action, Answer, CallerHangup, Cancelled, CancelTimer, Confirmed, Event, Finish, Hangup,
                     LinkLost, Log, Play, PromptFinished, Reject, Ringing, SetTimer, Shutdown, SpeechEnded,
                     SpeechStarted, StartRecording)


class State(str, Enum):
    NEW = "NEW"
    RINGING = "RINGING"
    ANSWERING = "ANSWERING"
    GREETING = "GREETING"
    LISTENING = "LISTENING"
    CLOSING = "CLOSING"
    WAIT_CALLER_HANGUP = "WAIT_CALLER_HANGUP"
    MISSED = "MISSED"
    ENDED = "ENDED"


TERMINAL = {State.MISSED, State.ENDED}


class IllegalTransition(Exception):
    """An event the flow has no move for in its current state."""

    def __init__(self, state: State, kind: str):
        super().__init__(f"no transition from {state.value} on {kind}")
        self.state, self.kind = state, kind


@dataclass(frozen=True)
class FlowSettings:
    no_speech_ms: int = 3000  # after the greeting, before the caller has said anything
    end_of_turn_ms: int = 3000  # after the caller stops speaking: they have finished
    max_listen_ms: int = 120_000  # a caller who talks on and on still gets the closing
    wait_caller_hangup_ms: int = 10_000  # R3


# (state, event kind) -> (next state, handler method name)
TRANSITIONS: dict[tuple[State, str], tuple[State, str]] = {
    (State.NEW, "Ringing"): (State.RINGING, "start_ringing"),
    (State.RINGING, "timer:answer"): (State.ANSWERING, "answer"),
    (State.RINGING, "Cancelled"): (State.MISSED, "missed"),
    (State.RINGING, "CallerHangup"): (State.MISSED, "missed"),
    (State.RINGING, "LinkLost"): (State.MISSED, "missed"),
    (State.RINGING, "Shutdown"): (State.MISSED, "refuse_ringing"),
    (State.ANSWERING, "Confirmed"): (State.GREETING, "greet"),
    (State.ANSWERING, "CallerHangup"): (State.ENDED, "abandoned"),
    (State.ANSWERING, "LinkLost"): (State.ENDED, "abandoned"),
    (State.GREETING, "PromptFinished"): (State.LISTENING, "listen"),
    (State.GREETING, "CallerHangup"): (State.ENDED, "abandoned"),
    (State.GREETING, "SpeechStarted"): (State.GREETING, "heard"),
    (State.LISTENING, "SpeechStarted"): (State.LISTENING, "speech_started"),
    (State.LISTENING, "SpeechEnded"): (State.LISTENING, "speech_ended"),
    (State.LISTENING, "timer:no_speech"): (State.CLOSING, "close_with_callback"),
    (State.LISTENING, "timer:end_of_turn"): (State.CLOSING, "close_with_callback"),
    (State.LISTENING, "timer:max_listen"): (State.CLOSING, "close_with_callback"),
    (State.LISTENING, "CallerHangup"): (State.ENDED, "caller_hung_up"),
    (State.CLOSING, "PromptFinished"): (State.WAIT_CALLER_HANGUP, "wait_for_caller"),
    (State.CLOSING, "CallerHangup"): (State.ENDED, "caller_hung_up"),
    (State.WAIT_CALLER_HANGUP, "CallerHangup"): (State.ENDED, "caller_hung_up"),
    (State.WAIT_CALLER_HANGUP, "timer:caller_hangup"): (State.ENDED, "agent_hangs_up"),
}
for _state in (State.ANSWERING, State.GREETING, State.LISTENING, State.CLOSING, State.WAIT_CALLER_HANGUP):
    TRANSITIONS.setdefault((_state, "Shutdown"), (State.ENDED, "shutdown"))
    TRANSITIONS.setdefault((_state, "LinkLost"), (State.ENDED, "link_lost"))

# Events that may arrive in a state and change nothing there (media keeps flowing, late timers).
_EVERYWHERE = {"SpeechStarted", "SpeechEnded", "LineChanged", "Digit", "Hold", "PromptFinished", "Confirmed"}
IGNORED: set[tuple[State, str]] = {(state, kind) for state in State for kind in _EVERYWHERE}
IGNORED |= {(state, kind) for state in TERMINAL for kind in
            ("Cancelled", "CallerHangup", "LinkLost", "Shutdown", "timer:answer", "timer:no_speech",
             "timer:end_of_turn", "timer:max_listen", "timer:caller_hangup")}


class CallFlow:
    """One call's flow.  Create, then feed events; never blocks, never reads a clock."""

    def __init__(self, policy: AnswerPolicy | None = None, settings: FlowSettings | None = None):
        self.policy = policy or AnswerPolicy()
        self.settings = settings or FlowSettings()
        self.state = State.NEW
        self.ringing_at: float | None = None
        self.answered_at: float | None = None
        self.heard_speech = False
        self.outcome: str | None = None

    def handle(self, event: Event, now: float) -> list[Action]:
        key = (self.state, event.kind)
        move = TRANSITIONS.get(key)
        if move is None:
            if key in IGNORED:
                return []
            raise IllegalTransition(self.state, event.kind)
        next_state, handler = move
        actions = getattr(self, "_" + handler)(event, now)
        self.state = next_state
        finish = next((a for a in actions if isinstance(a, Finish)), None)
        if finish is not None:
            self.outcome = finish.outcome
        return actions

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL

    # --- handlers ---------------------------------------------------------------------------

    def _ms(self, now: float, ms: int) -> float:
        return now + ms / 1000.0

    def _start_ringing(self, event: Ringing, now: float) -> list[Action]:
        self.ringing_at = event.at
        return [SetTimer("answer", self._ms(event.at, self.policy.answer_delay_ms()))]

    def _answer(self, event: Event, now: float) -> list[Action]:
        self.answered_at = now
        return [Answer(), StartRecording()]

    def _missed(self, event: Event, now: float) -> list[Action]:
        return [CancelTimer("answer"), Finish("missed", "caller", _reason(event))]

    def _refuse_ringing(self, event: Event, now: float) -> list[Action]:
        return [CancelTimer("answer"), Reject(480), Finish("missed", "agent", "shutdown")]

    def _greet(self, event: Confirmed, now: float) -> list[Action]:  # R2
        return [Log("script", {"step": "greeting"}), Play("greeting")]

    def _heard(self, event: SpeechStarted, now: float) -> list[Action]:
        self.heard_speech = True
        return []

    def _listen(self, event: PromptFinished, now: float) -> list[Action]:
        actions: list[Action] = [SetTimer("max_listen", self._ms(now, self.settings.max_listen_ms))]
        if self.heard_speech:
            return actions + [SetTimer("end_of_turn", self._ms(now, self.settings.end_of_turn_ms))]
        return actions + [SetTimer("no_speech", self._ms(now, self.settings.no_speech_ms))]

    def _speech_started(self, event: SpeechStarted, now: float) -> list[Action]:
        self.heard_speech = True
        return [CancelTimer("no_speech"), CancelTimer("end_of_turn")]

    def _speech_ended(self, event: SpeechEnded, now: float) -> list[Action]:
        return [SetTimer("end_of_turn", self._ms(event.at, self.settings.end_of_turn_ms))]

    def _close_with_callback(self, event: Event, now: float) -> list[Action]:  # R4, "we will get back to you"
        return [CancelTimer("no_speech"), CancelTimer("end_of_turn"), CancelTimer("max_listen"),
                Log("script", {"step": "closing", "after": event.kind}), Play("closing_callback")]

    def _wait_for_caller(self, event: PromptFinished, now: float) -> list[Action]:  # R3
        return [Log("script", {"step": "wait_caller_hangup"}),
                SetTimer("caller_hangup", self._ms(now, self.settings.wait_caller_hangup_ms))]

    def _caller_hung_up(self, event: CallerHangup, now: float) -> list[Action]:
        return self._cancel_all() + [Finish("handled", "caller", "BYE")]

    def _agent_hangs_up(self, event: Event, now: float) -> list[Action]:
        return [Hangup(), Finish("handled", "agent", "caller did not hang up (R3)")]

    def _abandoned(self, event: Event, now: float) -> list[Action]:
        return self._cancel_all() + [Finish("abandoned", "caller" if isinstance(event, CallerHangup) else "system",
                                            _reason(event))]

    def _shutdown(self, event: Shutdown, now: float) -> list[Action]:
        return self._cancel_all() + [Hangup(), Finish("interrupted", "agent", "shutdown")]

    def _link_lost(self, event: LinkLost, now: float) -> list[Action]:
        outcome = "handled" if self.state in (State.LISTENING, State.CLOSING, State.WAIT_CALLER_HANGUP) else "abandoned"
        return self._cancel_all() + [Finish(outcome, "system", event.reason)]

    def _cancel_all(self) -> list[Action]:
        return [CancelTimer(name) for name in ("no_speech", "end_of_turn", "max_listen", "caller_hangup")]


def _reason(event: Event) -> str:
    return {"Cancelled": "CANCEL", "CallerHangup": "BYE"}.get(event.kind, getattr(event, "reason", "") or event.kind)


Handler = Callable[[CallFlow, Event, float], list[Action]]
