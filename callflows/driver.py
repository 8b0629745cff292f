"""Running a flow offline: its own timers, optional simulated prompts, a record of every decision.

The agent pumps a flow with real time; this driver pumps the same flow with the times written in
an event list.  Tests use it to assert whole sequences of states and actions with their times;
`frontdesk calls replay --rerun` uses it to re-run a recorded call and show that the decisions
come out the same (STYLE.md 1, 4).
"""
from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from typing import Callable, Iterable

from .events import Action, CancelTimer, Event, Finish, Play, PromptFinished, SetTimer, StopPlaying, TimerFired
from .flow import CallFlow, State


@dataclass(frozen=True)
class Step:
    at: float
    event: Event
    state: State  # after the event
    actions: tuple[Action, ...]


class FlowDriver:
    """Feed events in time order; timers fire by themselves, prompts finish if `prompt_ms` is given."""

    def __init__(self, flow: CallFlow, prompt_ms: Callable[[Play], float] | None = None):
        self.flow = flow
        self.prompt_ms = prompt_ms
        self.steps: list[Step] = []
        self._timers: dict[str, float] = {}
        self._queue: list[tuple[float, int, Event]] = []  # simulated prompt completions
        self._seq = itertools.count()
        self._playing: list[Play] = []
        self._play_end = 0.0

    def run(self, events: Iterable[Event], until: float | None = None) -> list[Step]:
        for event in sorted(events, key=lambda e: e.at):
            self._advance(event.at, inclusive=False)
            self._feed(event)
        self._advance(until if until is not None else float("inf"), inclusive=True)
        return self.steps

    def _next_internal(self) -> tuple[float, Event] | None:
        best: tuple[float, Event] | None = None
        if self._timers:
            name, at = min(self._timers.items(), key=lambda item: (item[1], item[0]))
            best = (at, TimerFired(at, name))
        if self._queue and (best is None or self._queue[0][0] < best[0]):
            best = (self._queue[0][0], self._queue[0][2])
        return best

    def _advance(self, until: float, inclusive: bool) -> None:
        while not self.flow.finished:
            item = self._next_internal()
            if item is None or item[0] > until or (not inclusive and item[0] >= until):
                return
            at, event = item
            if isinstance(event, TimerFired):
                del self._timers[event.name]
            else:
                heapq.heappop(self._queue)
            self._feed(event)

    def _feed(self, event: Event) -> None:
        actions = self.flow.handle(event, event.at)
        self.steps.append(Step(event.at, event, self.flow.state, tuple(actions)))
        for action in actions:
            if isinstance(action, SetTimer):
                self._timers[action.name] = action.at
            elif isinstance(action, CancelTimer):
                self._timers.pop(action.name, None)
            elif isinstance(action, Finish):
                self._timers.clear()
            elif self.prompt_ms is not None and isinstance(action, Play):
                start = max(event.at, self._play_end)
                self._play_end = start + self.prompt_ms(action) / 1000.0
                heapq.heappush(self._queue, (self._play_end, next(self._seq),
                                             PromptFinished(self._play_end, action.prompt, True)))
            elif self.prompt_ms is not None and isinstance(action, StopPlaying):
                self._queue = [(event.at, n, PromptFinished(event.at, e.prompt, False)) for _, n, e in self._queue]
                heapq.heapify(self._queue)
                self._play_end = event.at

    # --- reading the record ---------------------------------------------------------------

    def decisions(self) -> list[tuple[float, str]]:
        """What the flow did, as (time, description): prompts, hang-ups, the outcome."""
        out = []
        for step in self.steps:
            for action in step.actions:
                if isinstance(action, (Play, Finish)) or type(action).__name__ in ("Hangup", "Answer", "Record"):
                    out.append((round(step.at, 3), _describe(action)))
        return out


def _describe(action: Action) -> str:
    if isinstance(action, Play):
        return f"play {action.prompt}" + (f" {action.digits}" if action.digits else "")
    if isinstance(action, Finish):
        return f"finish {action.outcome} ({action.hung_up_first} hung up first)"
    if type(action).__name__ == "Record":
        return f"record {action.field}={action.value}"
    return type(action).__name__.lower()
