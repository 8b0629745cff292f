"""Re-running a recorded call offline: the same flow, fed what the call's timeline and recording
say happened, must make the same decisions (STYLE.md 1, 4).

External events (the ACK, prompts finishing, keys, the caller's BYE, hold) come from the
register's timeline; what the caller said comes from the recording's left channel, heard again
by the same listener the agent uses; timers are the flow's own.  `compare` returns both lists of
decisions so a test (or `frontdesk calls replay --rerun`) can show they agree.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from callflows.answer import AnswerPolicy
from callflows.driver import FlowDriver
from callflows.events import (CallerHangup, Cancelled, Confirmed, Digit, Event, Hold, LineChanged, PromptFinished,
                              Ringing, SpeechEnded, SpeechStarted)
from callflows.flow import CallFlow, FlowSettings

from .listening import LineListener

FRAME = 160


@dataclass(frozen=True)
class Decision:
    t_ms: int
    what: str


def recorded_decisions(events: list[dict]) -> list[Decision]:
    """What the agent did, from the timeline: prompts played, hanging up, the outcome."""
    out = []
    for event in events:
        data = event.get("data") or {}
        if event["kind"] == "prompt":
            out.append(Decision(event["t_ms"], f"play {data['prompt']}"))
        elif event["kind"] == "hangup" and data.get("by") == "agent":
            out.append(Decision(event["t_ms"], "hangup"))
        elif event["kind"] == "ended":
            out.append(Decision(event["t_ms"], f"finish {data['outcome']}"))
    return out


def external_events(events: list[dict]) -> list[Event]:
    """The flow's inputs that did not come from the caller's audio or the flow's timers."""
    out: list[Event] = []
    for event in events:
        at, data = event["t_ms"] / 1000.0, event.get("data") or {}
        kind = event["kind"]
        if kind == "ringing":
            out.append(Ringing(at))
        elif kind == "confirmed":
            out.append(Confirmed(at))
        elif kind == "prompt_done":
            out.append(PromptFinished(at, data["prompt"], data.get("completed", True)))
        elif kind == "dtmf":
            out.append(Digit(at, data["digit"]))
        elif kind == "cancelled":
            out.append(Cancelled(at))
        elif kind == "hangup" and data.get("by") == "caller":
            out.append(CallerHangup(at))
        elif kind in ("hold", "resume"):
            out.append(Hold(at, kind == "hold"))
    return out


def heard_events(events: list[dict], caller: np.ndarray, quiet_dbfs: float) -> list[Event]:
    """The caller's audio heard again, frame by frame, from the first recorded frame's time."""
    start = next((e["t_ms"] for e in events if e["kind"] == "recording"), None)
    if start is None:
        return []
    listener = LineListener(quiet_dbfs)
    out: list[Event] = []
    for index in range(len(caller) // FRAME):
        tick = start / 1000.0 + index * 0.020
        for kind, data, _ in listener.push(caller[index * FRAME:(index + 1) * FRAME]):
            at = tick  # when the agent heard of it, as in softphone.agent
            if kind == "speech_start":
                out.append(SpeechStarted(at, data.get("level_dbfs") or 0.0))
            elif kind == "speech_end":
                out.append(SpeechEnded(at, data.get("level_dbfs") or 0.0))
            elif kind == "line":
                out.append(LineChanged(at, data["state"]))
    return out


def rerun(events: list[dict], caller: np.ndarray | None, settings: FlowSettings) -> list[Decision]:
    ringing = next(e for e in events if e["kind"] == "ringing")
    info = ringing.get("data") or {}
    flow = CallFlow(AnswerPolicy(delay_ms=info.get("answer_in_ms")), settings, after_hours=bool(info.get("after_hours")))
    driver = FlowDriver(flow)
    inputs = external_events(events)
    if caller is not None:
        inputs += heard_events(events, caller, settings.quiet_dbfs)
    driver.run(inputs)
    out = []
    for at, what in driver.decisions():
        words = what.split(" ")
        if words[0] in ("play", "finish"):
            out.append(Decision(round(at * 1000), f"{words[0]} {words[1]}"))
        elif words[0] == "hangup":
            out.append(Decision(round(at * 1000), "hangup"))
    return out


def agree(recorded: list[Decision], rerun_: list[Decision], tolerance_ms: int = 2) -> bool:
    """Same decisions in the same order, at the same times (within rounding)."""
    return len(recorded) == len(rerun_) and all(
        a.what == b.what and abs(a.t_ms - b.t_ms) <= tolerance_ms for a, b in zip(recorded, rerun_))
