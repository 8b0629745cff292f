"""The agent's timer heap does not keep ended calls' timers (the soak found it growing)."""
from __future__ import annotations

import heapq
import itertools
from types import SimpleNamespace

from softphone.agent import live_timers


def test_dead_entries_are_dropped_and_the_live_keep_their_order():
    seq = itertools.count()
    heap: list = []
    calls = {}
    for i in range(1000):  # 1000 calls, each with a max_call timer and an answer timer
        key = f"call-{i}"
        calls[key] = SimpleNamespace(timers={"max_call": 1800.0 + i, "answer": 8.0 + i})
        heapq.heappush(heap, (1800.0 + i, next(seq), key, "max_call"))
        heapq.heappush(heap, (8.0 + i, next(seq), key, "answer"))
    for i in range(0, 1000, 2):  # half the calls ended
        del calls[f"call-{i}"]
    calls["call-1"].timers.pop("answer")  # cancelled
    calls["call-3"].timers["answer"] = 99.0  # replaced: the old entry is dead, the new one is pushed
    heapq.heappush(heap, (99.0, next(seq), "call-3", "answer"))

    out = live_timers(heap, calls)

    assert len(out) == 500 * 2 - 1
    fired = [heapq.heappop(out) for _ in range(len(out))]
    assert [f[0] for f in fired] == sorted(f[0] for f in fired)
    assert (99.0, "call-3", "answer") in {(f[0], f[2], f[3]) for f in fired}
    assert not any(f[2] == "call-1" and f[3] == "answer" for f in fired)
    assert not any(int(f[2].split("-")[1]) % 2 == 0 for f in fired)


def test_nothing_is_dropped_while_every_entry_is_live():
    calls = {"a": SimpleNamespace(timers={"x": 1.0, "y": 2.0})}
    heap = [(1.0, 0, "a", "x"), (2.0, 1, "a", "y")]
    assert live_timers(heap, calls) == heap


def _bare_agent(now: float):
    """An Agent with only its event loop's state: the loop's ordering is what is tested."""
    import queue

    from softphone.agent import Agent

    agent = Agent.__new__(Agent)
    agent._queue = queue.Queue()
    agent._timers = []
    agent._wall_timers = []
    agent._timer_seq = itertools.count()
    agent._calls = {"c": SimpleNamespace(timers={})}
    agent._clock = lambda: now
    seen: list = []
    agent._dispatch = lambda call, event: seen.append(("timer", event.name, event.at))

    def on_sip(event):
        seen.append(("sip", type(event).__name__, event.at))
        agent._calls.pop(event.key, None)  # the call ends, its timers with it

    agent._on_sip = on_sip
    agent._on_tick = lambda tick: seen.append(("tick", tick.index, tick.at))
    return agent, seen


def test_a_backlog_keeps_events_and_timers_in_the_order_they_happened():
    """R3 under load (bench.load at 200 calls): the caller's BYE read at t=100.0 was queued
    behind a media tick when the agent's 10 s wait for the caller to hang up fell due (t=100.5).
    The BYE must win: the call ends as hung up by the caller."""
    from softphone.media import MediaTick
    from softphone.sip import CallEnded

    agent, seen = _bare_agent(now=101.0)  # the agent thread is 1 s behind
    agent._calls["c"].timers["wait_hangup"] = 100.5
    heapq.heappush(agent._timers, (100.5, next(agent._timer_seq), "c", "wait_hangup"))
    agent._queue.put(MediaTick(at=99.98, index=4999, late_ms=0.0, frames=[]))
    agent._queue.put(CallEnded(key="c", at=100.0, by="caller", reason="BYE"))
    agent._queue.put(("stop",))
    agent._run()
    assert seen == [("tick", 4999, 99.98), ("sip", "CallEnded", 100.0)]


def test_timers_due_before_an_event_fire_before_it():
    from softphone.sip import CallEnded

    agent, seen = _bare_agent(now=101.0)
    agent._calls["c"].timers["wait_hangup"] = 100.5
    heapq.heappush(agent._timers, (100.5, next(agent._timer_seq), "c", "wait_hangup"))
    agent._queue.put(CallEnded(key="c", at=100.8, by="caller", reason="BYE"))
    agent._queue.put(("stop",))
    agent._run()
    assert seen == [("timer", "wait_hangup", 100.5), ("sip", "CallEnded", 100.8)]


def test_the_answer_point_waits_for_nothing_queued():
    """R1: the answer timer fires on the clock even while older media ticks are queued (at 150
    calls the agent thread ran up to 2 s behind on ticks; the answer point must not)."""
    from softphone.media import MediaTick

    agent, seen = _bare_agent(now=101.0)
    agent._calls["c"].timers["answer"] = 100.5
    heapq.heappush(agent._wall_timers, (100.5, next(agent._timer_seq), "c", "answer"))
    agent._calls["c"].timers["no_speech"] = 100.5
    heapq.heappush(agent._timers, (100.5, next(agent._timer_seq), "c", "no_speech"))
    agent._queue.put(MediaTick(at=99.0, index=1, late_ms=0.0, frames=[]))
    agent._queue.put(MediaTick(at=100.9, index=2, late_ms=0.0, frames=[]))
    agent._queue.put(("stop",))
    agent._run()
    assert seen == [("timer", "answer", 100.5), ("tick", 1, 99.0), ("timer", "no_speech", 100.5),
                    ("tick", 2, 100.9)]
