"""4 worker processes, each with its own engine, claim and finish 10,000 callback tasks on SQLite
and on PostgreSQL while 3 more die holding a claim (R13: never twice, never lost).

bench/callback_queue.py does the work and the checks (see its docstring): every task done
once, no task finished by two workers, the dead workers' tasks taken over after their lease.
The count can be lowered with FRONTDESK_QUEUE_TASKS (10,000 takes ~26 s per backend on 2 CPUs);
each backend is bounded to QUEUE_TIMEOUT_S, after which the workers are killed and it fails.
"""
from __future__ import annotations

import os

import pytest

from bench.callback_queue import run

pytest_plugins = ["tests.rig.postgres"]
pytestmark = [pytest.mark.integration, pytest.mark.slow]

TASKS = int(os.environ.get("FRONTDESK_QUEUE_TASKS", "10000"))
QUEUE_TIMEOUT_S = 150.0


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/queue.db"
    return request.getfixturevalue("pg_url")


def test_four_workers_never_claim_twice_and_lose_nothing(url, capsys):
    result = run(url, TASKS, workers=4, doomed=3, timeout_s=QUEUE_TIMEOUT_S,
                 backend=url.split(":", 1)[0])
    with capsys.disabled():
        print(f"\n  {result.line()}")
    assert result.problems == []
    assert sum(n for name, n in result.claims.items() if name.startswith("doomed")) == 3
    # the live workers claimed every task exactly once, the 3 taken over included
    assert sum(n for name, n in result.claims.items() if not name.startswith("doomed")) == TASKS
