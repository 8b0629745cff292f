"""The attendant's call flow: the house scripts as a transition table (SPEC.md R1-R11).

`CallFlow.handle(event, now) -> [actions]` is the whole interface (STYLE.md 1, 3): no socket,
thread, file or clock.  `TRANSITIONS` maps (state, event kind) to (next state, handler); the
handler may return `Goto(state)` to pick between the states its row allows (`also`), e.g. a
prompt finishing in the silent script either moves to the next step or ends the call.  A pair in
neither the table nor `IGNORED` raises `IllegalTransition` (the agent logs it, the call goes on).
docs/call-states.md is generated from the table (`python -m callflows.diagram`).

The scripts:
- R1 answer after the configured rings; R2 greeting (or the after-hours prompt);
- LISTENING: the caller states their business (it is recorded); 3 s after they stop, the
  message menu (R11: 1 leave a callback number, 2 leave a voice message); no key: the R4
  "we will get back to you" closing; R3 then wait up to 10 s for the caller to hang up;
- R6 silent call: no speech 3 s after the greeting -> 您好, pause, 您好！{company}, pause,
  the apology and goodbye, hang up; speech at any point ends the script;
- R7 noisy line: noise-dominated with no clear speech for 2 s -> ask louder, hold on 10 s for
  clear speech, else the call-back-later goodbye and hang up;
- R8 quiet caller: speech below the quiet threshold -> "请您大声些" once per call, carry on;
- R11 keypad number, read back for confirmation (1 confirm, 2 enter again), or voice message.
Outcomes: missed, abandoned, silent, noisy, message (a request or message to call back on),
after_hours.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .answer import AnswerPolicy
from .events import (Action, Answer, CancelTimer, Event, Finish, Hangup, LinkLost, Log, Play, Record, Reject,
                     SetTimer, StartRecording, StopPlaying)


class State(str, Enum):
    NEW = "NEW"
    RINGING = "RINGING"
    ANSWERING = "ANSWERING"
    GREETING = "GREETING"
    LISTENING = "LISTENING"
    SILENT_SCRIPT = "SILENT_SCRIPT"
    NOISY_SCRIPT = "NOISY_SCRIPT"
    MENU = "MENU"
    ENTER_NUMBER = "ENTER_NUMBER"
    CONFIRM_NUMBER = "CONFIRM_NUMBER"
    RECORD_MESSAGE = "RECORD_MESSAGE"
    CLOSING = "CLOSING"
    WAIT_CALLER_HANGUP = "WAIT_CALLER_HANGUP"
    MISSED = "MISSED"
    ENDED = "ENDED"


TERMINAL = {State.MISSED, State.ENDED}
ANSWERED = [s for s in State if s not in TERMINAL and s not in (State.NEW, State.RINGING)]
CONVERSING = [State.LISTENING, State.SILENT_SCRIPT, State.NOISY_SCRIPT, State.MENU, State.ENTER_NUMBER,
              State.CONFIRM_NUMBER, State.RECORD_MESSAGE]


class IllegalTransition(Exception):
    """An event the flow has no move for in its current state."""

    def __init__(self, state: State, kind: str):
        super().__init__(f"no transition from {state.value} on {kind}")
        self.state, self.kind = state, kind


@dataclass(frozen=True)
class Goto:
    """Returned (first) by a handler whose table row allows more than one next state."""

    state: State


@dataclass(frozen=True)
class FlowSettings:
    no_speech_ms: int = 3000  # R6: silence after the greeting before the script starts
    silent_pause_ms: int = 2000  # R6: 稍停 between the steps
    end_of_turn_ms: int = 3000  # silence after the caller spoke: they have finished
    noisy_after_ms: int = 2000  # R7: noise-dominated, no clear speech, for this long
    noisy_hold_ms: int = 10_000  # R7: 坚持10秒
    quiet_dbfs: float = -40.0  # R8: active speech level below this is too quiet
    menu_timeout_ms: int = 5000  # R11: waiting for 1 or 2 after the message menu
    menu_offers: int = 2
    digit_timeout_ms: int = 6000  # R11: between keypad digits
    max_digits: int = 20
    number_tries: int = 3
    message_silence_ms: int = 3000  # a voice message ends on this much silence ...
    message_max_ms: int = 60_000  # ... or this long
    max_listen_ms: int = 120_000
    wait_caller_hangup_ms: int = 10_000  # R3
    max_call_ms: int = 1_800_000  # no call holds a line longer than this (a peer that vanished on hold)


_T = {"timer:" + name for name in ("answer", "no_speech", "silent_pause", "end_of_turn", "noisy", "noisy_hold",
                                   "menu", "digits", "confirm", "message_silence", "message_max", "max_listen",
                                   "caller_hangup", "max_call")}
_LINE_TIMERS = ("no_speech", "silent_pause", "end_of_turn", "noisy", "noisy_hold", "menu", "digits", "confirm",
                "message_silence", "message_max", "max_listen", "caller_hangup", "max_call")

# (state, event kind) -> (next state, handler, other states the handler may choose with Goto)
_ROWS: list[tuple[State, str, State, str, tuple[State, ...]]] = [
    (State.NEW, "Ringing", State.RINGING, "start_ringing", ()),
    (State.RINGING, "timer:answer", State.ANSWERING, "answer", ()),
    (State.RINGING, "Cancelled", State.MISSED, "missed", ()),
    (State.RINGING, "CallerHangup", State.MISSED, "missed", ()),
    (State.RINGING, "LinkLost", State.MISSED, "missed", ()),
    (State.RINGING, "Shutdown", State.MISSED, "refuse_ringing", ()),
    (State.ANSWERING, "Confirmed", State.GREETING, "greet", ()),
    (State.ANSWERING, "CallerHangup", State.ENDED, "abandoned", ()),
    (State.GREETING, "PromptFinished", State.GREETING, "greeting_done", (State.LISTENING, State.MENU)),
    (State.GREETING, "CallerHangup", State.ENDED, "abandoned", ()),
    (State.GREETING, "SpeechStarted", State.GREETING, "heard", ()),
    (State.GREETING, "Digit", State.GREETING, "menu_key", (State.ENTER_NUMBER, State.RECORD_MESSAGE)),
    # the caller states their business
    (State.LISTENING, "SpeechStarted", State.LISTENING, "speech_started", ()),
    (State.LISTENING, "SpeechEnded", State.LISTENING, "speech_ended", ()),
    (State.LISTENING, "LineChanged", State.LISTENING, "line_changed", ()),
    (State.LISTENING, "PromptFinished", State.LISTENING, "prompt_done_listening", ()),
    (State.LISTENING, "timer:end_of_turn", State.MENU, "offer_menu", (State.CLOSING,)),
    (State.LISTENING, "timer:max_listen", State.MENU, "offer_menu", (State.CLOSING,)),
    (State.LISTENING, "timer:no_speech", State.SILENT_SCRIPT, "silent_start", ()),
    (State.LISTENING, "timer:noisy", State.NOISY_SCRIPT, "noisy_start", ()),
    (State.LISTENING, "Digit", State.LISTENING, "menu_key", (State.ENTER_NUMBER, State.RECORD_MESSAGE)),
    (State.LISTENING, "Hold", State.LISTENING, "hold", ()),
    (State.LISTENING, "CallerHangup", State.ENDED, "caller_hung_up", ()),
    # R6 silent call
    (State.SILENT_SCRIPT, "PromptFinished", State.SILENT_SCRIPT, "silent_prompt_done", (State.ENDED,)),
    (State.SILENT_SCRIPT, "timer:silent_pause", State.SILENT_SCRIPT, "silent_next", ()),
    (State.SILENT_SCRIPT, "SpeechStarted", State.LISTENING, "script_interrupted", ()),
    (State.SILENT_SCRIPT, "Digit", State.SILENT_SCRIPT, "menu_key", (State.ENTER_NUMBER, State.RECORD_MESSAGE)),
    (State.SILENT_SCRIPT, "CallerHangup", State.ENDED, "caller_hung_up", ()),
    # R7 noisy line
    (State.NOISY_SCRIPT, "PromptFinished", State.NOISY_SCRIPT, "noisy_prompt_done", (State.ENDED,)),
    (State.NOISY_SCRIPT, "timer:noisy_hold", State.NOISY_SCRIPT, "noisy_give_up", ()),
    (State.NOISY_SCRIPT, "SpeechStarted", State.LISTENING, "script_interrupted", ()),
    (State.NOISY_SCRIPT, "Digit", State.NOISY_SCRIPT, "menu_key", (State.ENTER_NUMBER, State.RECORD_MESSAGE)),
    (State.NOISY_SCRIPT, "CallerHangup", State.ENDED, "caller_hung_up", ()),
    # R11 message menu
    (State.MENU, "PromptFinished", State.MENU, "menu_prompt_done", ()),
    (State.MENU, "Digit", State.MENU, "menu_key", (State.ENTER_NUMBER, State.RECORD_MESSAGE)),
    (State.MENU, "timer:menu", State.CLOSING, "close_with_callback", ()),
    (State.MENU, "SpeechStarted", State.LISTENING, "back_to_listening", ()),
    (State.MENU, "CallerHangup", State.ENDED, "caller_hung_up", ()),
    (State.ENTER_NUMBER, "Digit", State.ENTER_NUMBER, "number_digit", (State.CONFIRM_NUMBER,)),
    (State.ENTER_NUMBER, "PromptFinished", State.ENTER_NUMBER, "number_prompt_done", ()),
    (State.ENTER_NUMBER, "timer:digits", State.CONFIRM_NUMBER, "number_entered", (State.CLOSING,)),
    (State.ENTER_NUMBER, "CallerHangup", State.ENDED, "caller_hung_up", ()),
    (State.CONFIRM_NUMBER, "PromptFinished", State.CONFIRM_NUMBER, "confirm_prompt_done", ()),
    (State.CONFIRM_NUMBER, "Digit", State.CONFIRM_NUMBER, "confirm_key", (State.CLOSING, State.ENTER_NUMBER)),
    (State.CONFIRM_NUMBER, "timer:confirm", State.CLOSING, "confirm_timeout", ()),
    (State.CONFIRM_NUMBER, "CallerHangup", State.ENDED, "caller_hung_up", ()),
    (State.RECORD_MESSAGE, "PromptFinished", State.RECORD_MESSAGE, "message_prompt_done", ()),
    (State.RECORD_MESSAGE, "SpeechStarted", State.RECORD_MESSAGE, "message_speech", ()),
    (State.RECORD_MESSAGE, "SpeechEnded", State.RECORD_MESSAGE, "message_pause", ()),
    (State.RECORD_MESSAGE, "timer:message_silence", State.CLOSING, "message_done", ()),
    (State.RECORD_MESSAGE, "timer:message_max", State.CLOSING, "message_done", ()),
    (State.RECORD_MESSAGE, "CallerHangup", State.ENDED, "caller_hung_up", ()),
    # R4 closing, R3 let the caller hang up first
    (State.CLOSING, "PromptFinished", State.WAIT_CALLER_HANGUP, "wait_for_caller", ()),
    (State.CLOSING, "CallerHangup", State.ENDED, "caller_hung_up", ()),
    (State.WAIT_CALLER_HANGUP, "CallerHangup", State.ENDED, "caller_hung_up", ()),
    (State.WAIT_CALLER_HANGUP, "timer:caller_hangup", State.ENDED, "agent_hangs_up", ()),
]
_ROWS += [(state, "Shutdown", State.ENDED, "shutdown", ()) for state in ANSWERED]
_ROWS += [(state, "LinkLost", State.ENDED, "link_lost", ()) for state in ANSWERED]
_ROWS += [(state, "timer:max_call", State.ENDED, "too_long", ()) for state in ANSWERED]
_ROWS += [(state, "Hold", state, "hold", ()) for state in CONVERSING if state != State.LISTENING]

TRANSITIONS: dict[tuple[State, str], tuple[State, str]] = {(s, k): (t, h) for s, k, t, h, _ in _ROWS}
ALTERNATIVES: dict[tuple[State, str], tuple[State, ...]] = {(s, k): alt for s, k, _, _, alt in _ROWS if alt}

# Events that may arrive in any state and change nothing there (media keeps flowing, late timers).
_QUIET = {"SpeechStarted", "SpeechEnded", "LineChanged", "Digit", "Hold", "PromptFinished", "Confirmed"}
IGNORED: set[tuple[State, str]] = {(state, kind) for state in State for kind in _QUIET | _T}
IGNORED |= {(state, kind) for state in TERMINAL for kind in ("Cancelled", "CallerHangup", "LinkLost", "Shutdown")}
IGNORED |= {(state, "Cancelled") for state in ANSWERED}  # CANCEL after our 200 changes nothing (RFC 3261 9.2)


class CallFlow:
    """One call's flow.  Create, then feed events; never blocks, never reads a clock."""

    def __init__(self, policy: AnswerPolicy | None = None, settings: FlowSettings | None = None,
                 after_hours: bool = False):
        self.policy = policy or AnswerPolicy()
        self.s = settings or FlowSettings()
        self.after_hours = after_hours
        self.state = State.NEW
        self.heard_speech = False
        self.line = "silent"
        self.previous_line = "silent"
        self.on_hold = False
        self.quiet_prompted = False
        self.menu_offers = 0
        self.silent_step = 0
        self.noisy_step = 0
        self.typed = ""
        self.number_tries = 0
        self.message_started = False
        self.playing: str | None = None
        self.outcome: str | None = None
        self.scripts: list[str] = []

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL

    def handle(self, event: Event, now: float) -> list[Action]:
        if event.kind == "LineChanged":  # the line state is known in every state, acted on in some
            self.previous_line, self.line = self.line, event.state
        key = (self.state, event.kind)
        move = TRANSITIONS.get(key)
        if move is None:
            if key in IGNORED:
                return []
            raise IllegalTransition(self.state, event.kind)
        next_state, handler = move
        if event.kind == "PromptFinished":
            if event.prompt != self.playing:
                return []  # an earlier prompt of a queue, or one that was stopped: nothing to do
            self.playing = None
        result = getattr(self, "_" + handler)(event, now)
        if result and isinstance(result[0], Goto):
            goto, result = result[0], result[1:]
            if goto.state != next_state and goto.state not in ALTERNATIVES.get(key, ()):
                raise IllegalTransition(self.state, f"{event.kind} -> {goto.state.value}")
            next_state = goto.state
        self.state = next_state
        for action in result:
            if isinstance(action, Play):
                self.playing = action.prompt
            elif isinstance(action, Finish):
                self.outcome = action.outcome
        return result

    # --- helpers --------------------------------------------------------------------------

    def _at(self, now: float, ms: float) -> float:
        return now + ms / 1000.0

    def _base_outcome(self) -> str:
        return "after_hours" if self.after_hours else "message"

    def _cancel(self, *names: str) -> list[Action]:
        return [CancelTimer(name) for name in (names or _LINE_TIMERS)]

    def _stop_prompt(self) -> list[Action]:
        if not self.playing:
            return []
        self.playing = None
        return [StopPlaying()]

    def _script(self, name: str, step: str, **data) -> Log:
        if name not in self.scripts:
            self.scripts.append(name)
        return Log("script", {"script": name, "step": step, **data})

    def _listen_timers(self, now: float) -> list[Action]:
        """What LISTENING waits for, given what is known of the line."""
        if self.on_hold:
            return []
        if self.heard_speech:
            return [SetTimer("end_of_turn", self._at(now, self.s.end_of_turn_ms))]
        if self.line == "noisy":
            return [SetTimer("noisy", self._at(now, self.s.noisy_after_ms))]
        return [SetTimer("no_speech", self._at(now, self.s.no_speech_ms))]

    # --- ringing and answering (R1, R2) -----------------------------------------------------

    def _start_ringing(self, event, now):
        return [SetTimer("answer", self._at(event.at, self.policy.answer_delay_ms()))]

    def _answer(self, event, now):
        return [Answer(), StartRecording(), SetTimer("max_call", self._at(now, self.s.max_call_ms))]

    def _too_long(self, event, now):
        return self._stop_prompt() + self._cancel() + [
            Log("script", {"step": "max_call_duration"}), Hangup(), Finish(self._outcome_now(), "agent", "max call duration")]

    def _missed(self, event, now):
        return [CancelTimer("answer"), Finish("missed", "caller", _reason(event))]

    def _refuse_ringing(self, event, now):
        return [CancelTimer("answer"), Reject(480), Finish("missed", "agent", "shutdown")]

    def _greet(self, event, now):
        if self.after_hours:
            return [self._script("after_hours", "after_hours_prompt"), Play("after_hours")]
        return [self._script("greeting", "greeting"), Play("greeting")]

    def _heard(self, event, now):
        self.heard_speech = True
        return []

    def _greeting_done(self, event, now):
        if self.after_hours:  # outside working hours: offer the message option at once
            self.menu_offers += 1
            return [Goto(State.MENU), self._script("message", "menu"), Play("message_menu")]
        return [Goto(State.LISTENING), SetTimer("max_listen", self._at(now, self.s.max_listen_ms))] + \
            self._listen_timers(now)

    # --- listening ------------------------------------------------------------------------

    def _speech_started(self, event, now):
        self.heard_speech = True
        return self._cancel("no_speech", "end_of_turn", "noisy")

    def _speech_ended(self, event, now):
        actions: list[Action] = []
        if event.level_dbfs < self.s.quiet_dbfs and not self.quiet_prompted:  # R8, once per call
            self.quiet_prompted = True
            actions += [self._script("quiet", "ask_louder", level_dbfs=round(event.level_dbfs, 1)),
                        Play("quiet_louder")]
        return actions + [SetTimer("end_of_turn", self._at(event.at, self.s.end_of_turn_ms))]

    def _prompt_done_listening(self, event, now):  # after the R8 prompt: give the caller time again
        return [] if self.heard_speech is False else [SetTimer("end_of_turn", self._at(now, self.s.end_of_turn_ms))]

    def _line_changed(self, event, now):
        previous = self.previous_line
        if self.on_hold or self.heard_speech or previous == self.line:
            return []
        if self.line == "noisy":  # R7 watch: noise, not silence
            return self._cancel("no_speech") + [SetTimer("noisy", self._at(now, self.s.noisy_after_ms))]
        if previous == "noisy":
            return self._cancel("noisy") + [SetTimer("no_speech", self._at(now, self.s.no_speech_ms))]
        return []

    def _hold(self, event, now):  # RFC 3264 hold: the caller is not there to answer; pause the timers
        self.on_hold = event.on
        if event.on:
            return [Log("script", {"step": "hold"})] + self._cancel(
                "no_speech", "end_of_turn", "noisy", "silent_pause", "noisy_hold", "menu", "digits", "confirm",
                "message_silence")
        if self.state == State.LISTENING:
            return self._listen_timers(now)
        resume = {State.SILENT_SCRIPT: ("silent_pause", self.s.silent_pause_ms),
                  State.NOISY_SCRIPT: ("noisy_hold", self.s.noisy_hold_ms), State.MENU: ("menu", self.s.menu_timeout_ms),
                  State.ENTER_NUMBER: ("digits", self.s.digit_timeout_ms),
                  State.CONFIRM_NUMBER: ("confirm", self.s.digit_timeout_ms),
                  State.RECORD_MESSAGE: ("message_silence", self.s.message_silence_ms)}.get(self.state)
        return [SetTimer(resume[0], self._at(now, resume[1]))] if resume else []

    def _outcome_now(self) -> str:
        """What the call amounts to if it ends now."""
        outcome = {State.SILENT_SCRIPT: "silent", State.NOISY_SCRIPT: "noisy"}.get(self.state)
        if outcome is not None:
            return outcome
        if self.state in (State.ANSWERING, State.GREETING):
            return "abandoned"
        spoke = self.heard_speech or self.typed or self.message_started
        if spoke or self.after_hours or self.state in (State.CLOSING, State.WAIT_CALLER_HANGUP):
            return self._base_outcome()
        return "silent"

    def _caller_hung_up(self, event, now):
        return self._cancel() + [Finish(self._outcome_now(), "caller", "BYE")]

    # --- R6 silent call -------------------------------------------------------------------

    _SILENT_STEPS = ("silent_hello", "silent_hello_company", "silent_goodbye")

    def _silent_start(self, event, now):
        self.silent_step = 0
        return [self._script("silent", "hello", n=1), Play(self._SILENT_STEPS[0])]

    def _silent_prompt_done(self, event, now):
        if self.silent_step == len(self._SILENT_STEPS) - 1:
            return [Goto(State.ENDED), self._script("silent", "hang_up"), Hangup()] + self._cancel() + \
                [Finish("silent", "agent", "R6 silent call")]
        return [SetTimer("silent_pause", self._at(now, self.s.silent_pause_ms))]

    def _silent_next(self, event, now):
        self.silent_step += 1
        name = self._SILENT_STEPS[self.silent_step]
        step = "goodbye" if self.silent_step == 2 else "hello"
        return [self._script("silent", step, n=self.silent_step + 1), Play(name)]

    def _script_interrupted(self, event, now):  # speech ends the R6/R7 script; the call goes on
        self.heard_speech = True
        script = "silent" if self.state == State.SILENT_SCRIPT else "noisy"
        return self._stop_prompt() + self._cancel() + [
            self._script(script, "ended_by_speech"), SetTimer("max_listen", self._at(now, self.s.max_listen_ms))]

    # --- R7 noisy line ----------------------------------------------------------------------

    def _noisy_start(self, event, now):
        self.noisy_step = 0
        return self._cancel("no_speech") + [self._script("noisy", "ask_louder"), Play("noisy_louder")]

    def _noisy_prompt_done(self, event, now):
        if self.noisy_step == 1:
            return [Goto(State.ENDED), self._script("noisy", "hang_up"), Hangup()] + self._cancel() + \
                [Finish("noisy", "agent", "R7 noisy line")]
        return [self._script("noisy", "hold_on", ms=self.s.noisy_hold_ms),
                SetTimer("noisy_hold", self._at(now, self.s.noisy_hold_ms))]

    def _noisy_give_up(self, event, now):
        self.noisy_step = 1
        return [self._script("noisy", "goodbye"), Play("noisy_goodbye")]

    # --- R11 message menu, callback number, voice message -----------------------------------

    def _offer_menu(self, event, now):
        if self.menu_offers >= self.s.menu_offers:
            return [Goto(State.CLOSING)] + self._close_with_callback(event, now)
        self.menu_offers += 1
        return self._cancel("end_of_turn", "max_listen") + [self._script("message", "menu"), Play("message_menu")]

    def _menu_prompt_done(self, event, now):
        return [SetTimer("menu", self._at(now, self.s.menu_timeout_ms))]

    def _back_to_listening(self, event, now):
        self.heard_speech = True
        return self._stop_prompt() + self._cancel("menu")

    def _menu_key(self, event, now):
        if event.digit == "1":
            self.number_tries += 1
            self.typed = ""
            return [Goto(State.ENTER_NUMBER)] + self._stop_prompt() + self._cancel() + [
                self._script("message", "enter_number"), Play("enter_number")]
        if event.digit == "2":
            return [Goto(State.RECORD_MESSAGE)] + self._stop_prompt() + self._cancel() + [
                self._script("message", "voice_message"), Play("record_message")]
        return []  # other keys change nothing

    def _number_prompt_done(self, event, now):
        return [SetTimer("digits", self._at(now, self.s.digit_timeout_ms))]

    def _number_digit(self, event, now):
        if event.digit == "#" or len(self.typed) >= self.s.max_digits:
            if not self.typed:
                return []
            return [Goto(State.CONFIRM_NUMBER)] + self._read_back()
        if event.digit == "*":  # start again
            self.typed = ""
            return [SetTimer("digits", self._at(now, self.s.digit_timeout_ms))]
        self.typed += event.digit
        return self._stop_prompt() + [SetTimer("digits", self._at(now, self.s.digit_timeout_ms))]

    def _number_entered(self, event, now):  # the caller stopped typing without '#'
        if not self.typed:
            return [Goto(State.CLOSING)] + self._close_with_callback(event, now)
        return self._read_back()

    def _read_back(self) -> list[Action]:
        return self._cancel("digits") + [self._script("message", "confirm", number=self.typed),
                                         Play("confirm_intro", digits=self.typed), Play("confirm_menu")]

    def _confirm_prompt_done(self, event, now):
        if event.prompt == "confirm_menu":
            return [SetTimer("confirm", self._at(now, self.s.digit_timeout_ms))]
        return []

    def _confirm_key(self, event, now):
        if event.digit == "1":
            return [Goto(State.CLOSING)] + self._stop_prompt() + self._cancel("confirm") + [
                Record("callback_number", self.typed, True), self._script("message", "number_confirmed"),
                Play("message_saved")]
        if event.digit == "2" and self.number_tries < self.s.number_tries:
            self.number_tries += 1
            self.typed = ""
            return [Goto(State.ENTER_NUMBER)] + self._stop_prompt() + self._cancel("confirm") + [
                self._script("message", "enter_number", again=True), Play("enter_number")]
        return []

    def _confirm_timeout(self, event, now):  # kept, but marked unconfirmed
        return [Record("callback_number", self.typed, False),
                self._script("message", "number_unconfirmed"), Play("closing_callback")]

    def _message_prompt_done(self, event, now):
        if event.prompt != "record_message":
            return []
        self.message_started = True
        return [self._script("message", "recording"), Play("beep"),
                SetTimer("message_silence", self._at(now, self.s.message_silence_ms + 2000)),
                SetTimer("message_max", self._at(now, self.s.message_max_ms))]

    def _message_speech(self, event, now):
        return self._cancel("message_silence") if self.message_started else []

    def _message_pause(self, event, now):
        if not self.message_started:
            return []
        return [SetTimer("message_silence", self._at(event.at, self.s.message_silence_ms))]

    def _message_done(self, event, now):
        return self._stop_prompt() + self._cancel() + [self._script("message", "saved"), Play("message_saved")]

    # --- closing (R4) and waiting for the caller to hang up first (R3) ----------------------

    def _close_with_callback(self, event, now):
        return self._stop_prompt() + self._cancel() + [
            self._script("closing", "closing_callback", after=event.kind), Play("closing_callback")]

    def _wait_for_caller(self, event, now):
        return [self._script("closing", "wait_caller_hangup"),
                SetTimer("caller_hangup", self._at(now, self.s.wait_caller_hangup_ms))]

    def _agent_hangs_up(self, event, now):
        return [Hangup(), Finish(self._base_outcome(), "agent", "caller did not hang up (R3)")]

    # --- ends -------------------------------------------------------------------------------

    def _abandoned(self, event, now):
        return self._cancel() + [Finish("abandoned", "caller", _reason(event))]

    def _shutdown(self, event, now):
        return self._cancel() + [Hangup(), Finish("interrupted", "agent", "shutdown")]

    def _link_lost(self, event: LinkLost, now):
        return self._cancel() + [Finish(self._outcome_now(), "system", event.reason)]


def _reason(event: Event) -> str:
    return {"Cancelled": "CANCEL", "CallerHangup": "BYE"}.get(event.kind, getattr(event, "reason", "") or event.kind)
