"""What happens to a call (events, in) and what the flow asks for (actions, out).

Events carry the monotonic time they were received (`at`), not the time they were handled
(STYLE.md 4), so a call replayed from its timeline makes the same decisions.
"""
from __future__ import annotations

from dataclasses import dataclass, field


# --- events --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Event:
    at: float

    @property
    def kind(self) -> str:
        return type(self).__name__


@dataclass(frozen=True)
class Ringing(Event):
    """Our 180 Ringing went out: the call is ringing."""


@dataclass(frozen=True)
class TimerFired(Event):
    name: str = ""

    @property
    def kind(self) -> str:
        return f"timer:{self.name}"


@dataclass(frozen=True)
class Confirmed(Event):
    """The caller's ACK for our 200 OK: media flows both ways."""


@dataclass(frozen=True)
class Cancelled(Event):
    """CANCEL while ringing: the caller hung up before we answered."""


@dataclass(frozen=True)
class CallerHangup(Event):
    """BYE from the caller."""


@dataclass(frozen=True)
class LinkLost(Event):
    """The SIP layer ended the call: no ACK for our 200, or similar."""

    reason: str = ""


@dataclass(frozen=True)
class PromptFinished(Event):
    prompt: str = ""
    completed: bool = True


@dataclass(frozen=True)
class SpeechStarted(Event):
    level_dbfs: float = 0.0


@dataclass(frozen=True)
class SpeechEnded(Event):
    level_dbfs: float = 0.0  # active level of the talkspurt that ended


@dataclass(frozen=True)
class LineChanged(Event):
    state: str = ""  # speech | quiet | noisy | silent


@dataclass(frozen=True)
class Digit(Event):
    digit: str = ""


@dataclass(frozen=True)
class Hold(Event):
    on: bool = True


@dataclass(frozen=True)
class Shutdown(Event):
    """The agent is stopping."""


# --- actions -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Action:
    pass


@dataclass(frozen=True)
class Answer(Action):
    pass


@dataclass(frozen=True)
class Reject(Action):
    status: int = 480


@dataclass(frozen=True)
class Play(Action):
    prompt: str  # a name from recordings/prompts/catalogue.toml
    digits: str = ""  # for read-back prompts (R11)


@dataclass(frozen=True)
class StopPlaying(Action):
    pass


@dataclass(frozen=True)
class StartRecording(Action):
    pass


@dataclass(frozen=True)
class Hangup(Action):
    pass


@dataclass(frozen=True)
class SetTimer(Action):
    name: str
    at: float


@dataclass(frozen=True)
class CancelTimer(Action):
    name: str


@dataclass(frozen=True)
class Log(Action):
    kind: str
    data: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Finish(Action):
    """The flow is over: the register row is completed with these."""

    outcome: str
    hung_up_first: str | None
    reason: str = ""


@dataclass(frozen=True)
class Record(Action):
    """Store a value the caller gave in the register (R11: the callback number they typed)."""

    field: str
    value: str
    confirmed: bool = True


@dataclass(frozen=True)
class Dialing(Event):
    """An outgoing call (a callback, R13) has been placed and rings at the customer."""


@dataclass(frozen=True)
class Answered(Event):
    """The customer picked up an outgoing call."""


@dataclass(frozen=True)
class CallFailed(Event):
    """An outgoing call ended before it was answered: busy, no answer, refused."""

    status: int = 0
