"""Callback queue throughput and correctness under contention (R13: never twice, never lost).

    .venv/bin/python -m bench.callback_queue [--tasks 10000] [--workers 4] [--doomed 3]
                                             [--backend both|sqlite|postgres]

N tasks, all due, are claimed and finished by W worker processes (multiprocessing spawn, one
engine each, started together on a barrier) through db.callbacks.CallbackQueue: one short
transaction to claim (a lease + an attempt row), one to finish ("reached"). Besides them,
`doomed` processes each claim one task with a 1 s lease and exit without finishing (a crashed
worker): their leases run out while the others are still busy and the tasks must be taken over.

Verified on every run (any problem is printed and the exit status is 1):
  every task done, exactly one "reached" attempt per task, task.attempts == its attempt rows,
  no attempt left in flight; no task finished by two workers, the finished ids are exactly all
  ids; every task a doomed worker took has an "expired" attempt followed by a later one that
  started after its lease ran out.
PostgreSQL is a throw-away cluster (tests.rig.postgres: fsync, synchronous_commit off); SQLite
is a file in a temp dir with the register's settings (WAL, synchronous=FULL, BEGIN IMMEDIATE).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

WORKER_LEASE = timedelta(minutes=5)
DOOMED_LEASE = timedelta(seconds=1)


@dataclass
class Result:
    backend: str
    tasks: int
    workers: int
    doomed: int
    elapsed_s: float
    claims: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def per_s(self) -> float:
        return self.tasks / self.elapsed_s if self.elapsed_s else 0.0

    def line(self) -> str:
        ok = "verified" if not self.problems else f"{len(self.problems)} PROBLEM(S)"
        claims = "/".join(str(v) for k, v in sorted(self.claims.items()) if not k.startswith("doomed"))
        return (f"{self.backend:<10} {self.tasks} tasks, {self.workers} workers (+{self.doomed} dying): "
                f"{self.per_s:7.1f} tasks/s in {self.elapsed_s:6.2f} s; claims per worker {claims}; "
                f"lock retries {self.retries}; {ok}")


def _rules():
    from db.callback_rules import CallbackRules

    return CallbackRules(tz=timezone.utc, quiet=(), lease=WORKER_LEASE)  # no rest hours here


def prepare(url: str, tasks: int) -> None:
    """Migrate `url` and insert `tasks` open tasks, all due (the oldest first by id)."""
    import sqlalchemy as sa

    from db import schema
    from db.engine import make_engine
    from db.models import CallbackTask, utcnow

    schema.upgrade(url)
    now = utcnow()
    rows = [dict(number=f"1{i:09d}", reason="missed", state="open", attempts=0,
                 due_at=now - timedelta(hours=1) + timedelta(milliseconds=i),
                 deadline_at=now + timedelta(days=3), created_at=now, updated_at=now)
            for i in range(tasks)]
    engine = make_engine(url, immediate=True)
    try:
        with engine.begin() as conn:
            for start in range(0, len(rows), 2000):
                conn.execute(sa.insert(CallbackTask), rows[start:start + 2000])
    finally:
        engine.dispose()


def _worker(url: str, name: str, barrier: Any, out: str, doomed: bool, stop_after_s: float) -> None:
    from sqlalchemy import func, select

    from db.callbacks import CallbackQueue
    from db.engine import make_engine
    from db.models import CallbackTask

    engine = make_engine(url, immediate=True)
    queue = CallbackQueue(engine, _rules())
    claimed: list[int] = []
    finished: list[int] = []
    errors: list[str] = []
    barrier.wait(timeout=60)
    stop_at = time.monotonic() + stop_after_s

    def active(session, _now):
        return session.scalar(select(func.count()).select_from(CallbackTask)
                              .where(CallbackTask.state.in_(("open", "claimed"))))

    def report() -> None:
        Path(out).write_text(json.dumps({"name": name, "claimed": claimed, "finished": finished,
                                         "retries": queue.retries, "errors": errors}))

    try:
        while time.monotonic() < stop_at:
            task = queue.claim(name, lease=DOOMED_LEASE if doomed else None)
            if task is None:
                if doomed or queue.run(active) == 0:
                    break
                time.sleep(0.02)  # only leases of dead workers are left: wait for them
                continue
            claimed.append(task.id)
            if doomed:  # die holding the claim
                report()
                os._exit(0)
            try:
                queue.finish(task.id, name, "reached")
                finished.append(task.id)
            except Exception as exc:  # noqa: BLE001 - counted, the check fails on it
                errors.append(f"finish {task.id}: {type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001
        errors.append(f"{type(exc).__name__}: {exc}")
    report()
    engine.dispose()


def run(url: str, tasks: int, workers: int = 4, *, doomed: int = 3, timeout_s: float = 300.0,
        backend: str = "") -> Result:
    """Prepare `url`, run the workers, verify. Raises TimeoutError (after killing the workers it
    started) when they do not finish within `timeout_s`."""
    prepare(url, tasks)
    ctx = mp.get_context("spawn")
    tmp = Path(tempfile.mkdtemp(prefix="fdcbq-"))
    barrier = ctx.Barrier(workers + doomed + 1)
    names = [f"w{i}" for i in range(workers)] + [f"doomed{i}" for i in range(doomed)]
    procs = [ctx.Process(target=_worker, args=(url, n, barrier, str(tmp / f"{n}.json"),
                                               n.startswith("doomed"), timeout_s), daemon=True)
             for n in names]
    try:
        for p in procs:
            p.start()
        barrier.wait(timeout=120)  # every worker has its engine module loaded
        t0 = time.perf_counter()
        deadline = time.monotonic() + timeout_s + 10
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        elapsed = time.perf_counter() - t0
        alive = [p for p in procs if p.is_alive()]
        if alive:
            raise TimeoutError(f"{len(alive)} worker(s) still running after {timeout_s:.0f} s")
        reports = []
        for n in names:
            path = tmp / f"{n}.json"
            reports.append(json.loads(path.read_text()) if path.exists()
                           else {"name": n, "claimed": [], "finished": [], "retries": 0,
                                 "errors": ["no report"]})
    finally:
        for p in procs:  # only the processes started here
            if p.is_alive():
                p.kill()
                p.join(5)
        shutil.rmtree(tmp, ignore_errors=True)
    result = Result(backend or url.split(":", 1)[0], tasks, workers, doomed, elapsed,
                    claims={r["name"]: len(r["claimed"]) for r in reports},
                    retries=sum(r["retries"] for r in reports))
    result.problems = verify(url, reports)
    return result


def verify(url: str, reports: list[dict]) -> list[str]:
    """Every check named in the module docstring; the problems found (empty: all good)."""
    from collections import Counter, defaultdict

    from sqlalchemy import select

    from db.engine import make_engine, session_factory
    from db.models import CallbackAttempt, CallbackTask

    problems: list[str] = []
    for r in reports:
        problems += [f"{r['name']}: {e}" for e in r["errors"]]
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            tasks = {t.id: t for t in session.scalars(select(CallbackTask))}
            attempts = defaultdict(list)
            for a in session.scalars(select(CallbackAttempt).order_by(CallbackAttempt.id)):
                attempts[a.task_id].append(a)
    finally:
        engine.dispose()
    not_done = [i for i, t in tasks.items() if t.state != "done" or t.outcome != "reached"]
    if not_done:
        problems.append(f"{len(not_done)} task(s) not done, e.g. {not_done[:5]}")
    finished = Counter(i for r in reports for i in r["finished"])
    twice = [i for i, n in finished.items() if n > 1]
    if twice:
        problems.append(f"{len(twice)} task(s) finished by two workers, e.g. {twice[:5]}")
    if set(finished) != set(tasks):
        problems.append(f"finished ids differ from the task ids: {len(set(tasks) - set(finished))} "
                        f"missing, {len(set(finished) - set(tasks))} unknown")
    regular = Counter(i for r in reports if not r["name"].startswith("doomed") for i in r["claimed"])
    if any(n > 1 for n in regular.values()):
        problems.append("a task was claimed twice by live workers")
    doomed_ids = {i for r in reports if r["name"].startswith("doomed") for i in r["claimed"]}
    for task_id, task in tasks.items():
        rows = attempts.get(task_id, [])
        reached = [a for a in rows if a.outcome == "reached"]
        if len(reached) != 1:
            problems.append(f"task {task_id}: {len(reached)} reached attempts")
        if task.attempts != len(rows):
            problems.append(f"task {task_id}: attempts {task.attempts} != {len(rows)} rows")
        if any(a.ended_at is None for a in rows):
            problems.append(f"task {task_id}: an attempt still in flight")
        if task_id in doomed_ids:
            first, last = rows[0], rows[-1]
            if not (first.outcome == "expired" and first.worker.startswith("doomed")
                    and last.started_at >= first.started_at + DOOMED_LEASE):
                problems.append(f"task {task_id}: the dead worker's claim was not taken over "
                                "after its lease")
        elif len(rows) != 1:
            problems.append(f"task {task_id}: {len(rows)} attempts without a dead worker")
        if len(problems) > 50:
            problems.append("... (stopped listing)")
            break
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.callback_queue",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks per backend (default 10000)")
    parser.add_argument("--workers", type=int, default=4, help="worker processes (default 4)")
    parser.add_argument("--doomed", type=int, default=3,
                        help="extra workers that die holding a claim (default 3)")
    parser.add_argument("--backend", choices=("both", "sqlite", "postgres"), default="both")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per backend before failing")
    args = parser.parse_args(argv)
    results: list[Result] = []
    print(f"callback queue: {args.tasks} tasks, {args.workers} workers, {args.doomed} dying, "
          f"{os.cpu_count()} CPU(s), Python {sys.version.split()[0]}", flush=True)
    if args.backend in ("both", "sqlite"):
        tmp = Path(tempfile.mkdtemp(prefix="fdcbq-sqlite-"))
        try:
            results.append(run(f"sqlite:///{tmp}/queue.db", args.tasks, args.workers,
                               doomed=args.doomed, timeout_s=args.timeout, backend="sqlite"))
            print(results[-1].line(), flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.backend in ("both", "postgres"):
        from tests.rig.postgres import pg_cluster

        with pg_cluster() as cluster:
            version = cluster.connect().execute("SHOW server_version").fetchone()[0]
            url = cluster.create_database("bench")
            results.append(run(url, args.tasks, args.workers, doomed=args.doomed,
                               timeout_s=args.timeout, backend=f"pg {version.split()[0]}"))
            print(results[-1].line(), flush=True)
    for result in results:
        for problem in result.problems[:20]:
            print(f"  {result.backend}: {problem}")
    return 1 if any(r.problems for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
