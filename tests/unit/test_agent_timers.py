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
