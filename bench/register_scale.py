"""The supervisors' commands on a register of a million calls: `calls list`, `report`, `follow`.

    .venv/bin/python -m bench.register_scale [--calls 1000000] [--days 1000] [--db URL]
                                             [--postgres] [--reuse] [--out FILE.json]

Generates the register fast (bulk INSERTs in SQLite with the secondary indexes rebuilt after
the load, COPY on PostgreSQL; never the RegisterWriter) through the real migrations, with
realistic rows: the calls spread over `--days` days up to now (working hours busier), outcomes
in front-desk proportions (70 % handled, 10 % missed, 5 % abandoned ...), ring-to-answer around
8 s with 3 % answered late (R1 broken), the agent's event sequences (3 to 14 events a call),
callback tasks merged per number (R14) with their attempts outside quiet hours (R13).
Then it times, warm (the file was just written, so the OS cache holds it):
  * `report`'s hour summary (db/rollup.py) built from scratch over the whole history, once
    (what the first `frontdesk report` after the upgrade to 0004 does),
  * the service calls the commands make (median of 5; `report` rows include the summary's
    refresh when the CLI runs it, and `report (whole register), calls only` is the report
    without the summary, as it was before), and
  * the commands themselves as processes (`frontdesk ...`, median of 3, Python start-up
    included; `frontdesk --help` is printed as the start-up floor), and `follow`'s time to its
    first line (process start to the first event printed).
`--postgres` runs the same against a throw-away cluster (tests.rig.postgres) next to SQLite.
Figures go to docs/supervisors.md ("Scale"); a markdown table is printed at the end.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, time as dtime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[1]
TZ = ZoneInfo("Asia/Shanghai")
CHUNK = 20_000  # calls per insert batch
OUTCOMES = (("handled", 0.70), ("message", 0.05), ("missed", 0.10), ("abandoned", 0.05),
            ("silent", 0.03), ("noisy", 0.02), ("after_hours", 0.03), ("busy", 0.015),
            ("interrupted", 0.005))
OPENING = {"missed", "abandoned", "silent", "noisy", "message", "after_hours", "busy",
           "interrupted"}
CATEGORIES = ("咨询", "投诉", "报修", "找人", "找错", "其他")
HOUR_WEIGHTS = [0.2] * 7 + [3, 6, 8, 8, 6, 3, 4, 7, 7, 6, 5, 3, 2, 1.5, 1, 0.5, 0.3]  # 0..23 local


# --- generating the rows ----------------------------------------------------------------------

def _events(outcome: str, ring_ms: int, talk_ms: int | None, rng: random.Random,
            caller: str) -> list[tuple[int, str, Any]]:
    """(t_ms since the INVITE, kind, data) as the agent logs them."""
    r = 20
    ev: list[tuple[int, str, Any]] = [(r, "ringing", {"invite_to_180_ms": 20.0, "caller": caller,
                                                      "answer_in_ms": 8000})]
    if outcome == "busy":
        return [(0, "refused", {"status": 486, "reason": "all lines busy"})]
    if talk_ms is None:
        return ev + [(r + ring_ms, "cancelled", None),
                     (r + ring_ms, "ended", {"outcome": outcome, "hung_up_first": "caller",
                                             "reason": "CANCEL"})]
    a = r + ring_ms
    ev += [(a, "answered", {"ring_ms": ring_ms, "rings": ring_ms // 5000 + 1,
                            "r1_met": ring_ms // 5000 + 1 <= 3}),
           (a + 40, "confirmed", None), (a + 45, "script", {"step": "greeting"}),
           (a + 50, "prompt", {"prompt": "greeting", "text": "您好，物业服务中心，1号为您服务",
                               "ms": 5200})]
    end = a + talk_ms
    if outcome == "abandoned":
        return ev + [(end, "hangup", {"by": "caller", "reason": "BYE"}),
                     (end, "ended", {"outcome": outcome, "hung_up_first": "caller"})]
    ev.append((a + 5250, "prompt_done", {"prompt": "greeting", "completed": True}))
    if outcome in ("silent", "noisy"):
        ev += [(a + 8300, "script", {"script": outcome, "step": "1"}),
               (a + 12000, "script", {"script": outcome, "step": "goodbye"}),
               (end, "hangup", {"by": "agent"}),
               (end, "ended", {"outcome": outcome, "hung_up_first": "agent"})]
        return ev
    ev += [(a + 5600, "speech_start", {"level_dbfs": -24.5}),
           (a + 5600 + talk_ms // 3, "speech_end", {"level_dbfs": -26.0})]
    if rng.random() < 0.1:
        ev.append((a + 5700 + talk_ms // 3, "dtmf", {"digit": str(rng.randrange(10)), "via": "rfc4733"}))
    ev += [(end - 4000, "script", {"step": "closing"}),
           (end - 3990, "prompt", {"prompt": "closing", "text": "感谢您的来电，再见！", "ms": 2500}),
           (end - 1490, "prompt_done", {"prompt": "closing", "completed": True}),
           (end, "hangup", {"by": "caller", "reason": "BYE"}),
           (end, "ended", {"outcome": outcome, "hung_up_first": "caller"})]
    return ev


def _allowed(t: datetime) -> datetime:
    """Out of R13's quiet hours (12-14, 21-08 local): the next allowed moment."""
    local = t.astimezone(TZ)
    if 12 <= local.hour < 14:
        local = local.replace(hour=14, minute=5)
    elif local.hour >= 21:
        local = (local + timedelta(days=1)).replace(hour=8, minute=5)
    elif local.hour < 8:
        local = local.replace(hour=8, minute=5)
    return local.astimezone(timezone.utc)


class Generator:
    """Calls, events, tasks and attempts in id order; `now` is the newest moment."""

    def __init__(self, calls: int, days: int, seed: int = 7) -> None:
        self.calls, self.days = calls, days
        self.rng = random.Random(seed)
        self.now = datetime.now(timezone.utc).replace(microsecond=0)
        self.numbers = [f"13{self.rng.randrange(10**9):09d}" for _ in range(max(50, calls // 20))]
        self.tasks: list[dict[str, Any]] = []
        self.attempts: list[dict[str, Any]] = []
        self._open: dict[str, dict[str, Any]] = {}  # number -> its active task
        self.event_id = 0

    def start_times(self) -> list[datetime]:
        rng, first_day = self.rng, (self.now - timedelta(days=self.days)).astimezone(TZ).date()
        out = []
        hours = list(range(24))
        while len(out) < self.calls:
            day = first_day + timedelta(days=rng.randrange(self.days + 1))
            hour = rng.choices(hours, HOUR_WEIGHTS)[0]
            t = datetime.combine(day, dtime(hour, rng.randrange(60), rng.randrange(60),
                                            rng.randrange(1000) * 1000), TZ).astimezone(timezone.utc)
            if t < self.now - timedelta(minutes=2):
                out.append(t)
        out.sort()
        return out

    def rows(self) -> Iterator[tuple[list[dict], list[tuple]]]:
        """Chunks of (call rows, event rows)."""
        rng = self.rng
        names, weights = zip(*OUTCOMES)
        calls: list[dict[str, Any]] = []
        events: list[tuple] = []
        for call_id, started in enumerate(self.start_times(), start=1):
            outcome = rng.choices(names, weights)[0]
            caller = rng.choice(self.numbers)
            answered = outcome not in ("missed", "busy")
            if outcome == "busy":
                ring_ms = 0
            elif not answered:
                ring_ms = int(rng.uniform(1000, 25000))
            elif rng.random() < 0.03:
                ring_ms = int(rng.uniform(15000, 22000))  # late: R1 broken
            else:
                ring_ms = int(rng.gauss(8000, 400))
            talk_ms = None if not answered else (int(rng.uniform(800, 4000)) if outcome == "abandoned"
                                                 else int(rng.uniform(20000, 180000)))
            evs = _events(outcome, ring_ms, talk_ms, rng, caller)
            end_ms = evs[-1][0]
            ended = started + timedelta(milliseconds=end_ms)
            rings = 0 if outcome == "busy" else ring_ms // 5000 + 1
            row: dict[str, Any] = {
                "id": call_id, "uid": hashlib.md5(f"{call_id}".encode()).hexdigest(),
                "call_id": f"{call_id}-{rng.randrange(10**9)}@pbx", "agent": "desk1",
                "direction": "in", "caller": caller, "called": "8000",
                "remote_addr": "10.0.0.9:5060", "started_at": started,
                "ringing_at": None if outcome == "busy" else started + timedelta(milliseconds=20),
                "answered_at": started + timedelta(milliseconds=20 + ring_ms) if answered else None,
                "ended_at": ended, "ring_ms": ring_ms,
                "ring_ms_from_invite": None if outcome == "busy" else ring_ms + 20,
                "rings": rings, "r1_met": (rings <= 3) if answered else None,
                "talk_ms": talk_ms, "status": "ended", "outcome": outcome,
                "hung_up_first": "agent" if outcome in ("silent", "noisy", "busy") else "caller",
                "sip_code": 486 if outcome == "busy" else (200 if answered else 487),
                "codec": "PCMU", "created_at": started, "updated_at": ended,
            }
            if answered:
                if outcome == "handled" and rng.random() < 0.6:
                    row["category"] = rng.choice(CATEGORIES)
                    row["notes"] = "来电记录"
                if outcome in ("silent", "noisy"):
                    row["scripts"] = [outcome]
                local = started.astimezone(TZ)
                row["recording"] = (f"var/recordings/{local:%Y/%m/%d}/{local:%H%M%S}_{caller}_"
                                    f"{row['uid'][:8]}.wav")
                row["recording_sha256"] = hashlib.sha256(row["uid"].encode()).hexdigest()
                row["recording_ms"] = talk_ms
            self._callback(row, outcome, caller, started, ended)
            calls.append(row)
            for seq, (t_ms, kind, data) in enumerate(evs, start=1):
                self.event_id += 1
                events.append((self.event_id, call_id, seq, started + timedelta(milliseconds=t_ms),
                               t_ms, kind, data))
            if len(calls) >= CHUNK:
                yield calls, events
                calls, events = [], []
        if calls:
            yield calls, events

    def _callback(self, row: dict, outcome: str, caller: str, started: datetime,
                  ended: datetime) -> None:
        """R12/R14 as db.callbacks does it: open or join the number's task, or resolve it."""
        task = self._open.get(caller)
        if task is not None and task["closes_at"] <= ended:
            self._close(task)
            task = None
        if outcome not in OPENING:
            if task is not None and outcome == "handled":
                task.update(state="done", outcome="auto-resolved", closed_at=ended,
                            closed_by="auto")
                self._open.pop(caller)
                row["callback_task_id"] = row["resolved_task_id"] = task["id"]
            return
        if task is None:
            due = _allowed(ended)
            task = {"id": len(self.tasks) + 1, "number": caller, "reason": outcome, "state": "open",
                    "due_at": due, "deadline_at": started + timedelta(days=3), "attempts": 0,
                    "created_at": ended, "updated_at": ended,
                    "closes_at": _allowed(due + timedelta(hours=self.rng.uniform(0.2, 60)))}
            self.tasks.append(task)
            self._open[caller] = task
        row["callback_task_id"] = task["id"]

    def _close(self, task: dict[str, Any]) -> None:
        at = task.pop("closes_at")
        if self.rng.random() < 0.3:  # a first try nobody answered
            first = _allowed(task["due_at"])
            self.attempts.append({"task_id": task["id"], "started_at": first,
                                  "ended_at": first + timedelta(minutes=1), "worker": "desk1",
                                  "outcome": "no-answer"})
            task["attempts"] += 1
        self.attempts.append({"task_id": task["id"], "started_at": at,  # an allowed moment (R13)
                              "ended_at": at + timedelta(minutes=2), "worker": "desk1", "outcome": "reached"})
        task["attempts"] += 1
        task.update(state="done", outcome="reached", closed_at=at + timedelta(minutes=2), closed_by="desk1",
                    updated_at=at + timedelta(minutes=2))
        self._open.pop(task["number"], None)

    def finish(self) -> None:
        """Tasks whose close lies in the past are closed; the rest stay open (recent ones)."""
        for task in list(self._open.values()):
            if task["closes_at"] <= self.now:
                self._close(task)
            else:
                task.pop("closes_at")
        for task in self.tasks:
            task.pop("closes_at", None)


# --- loading ----------------------------------------------------------------------------------

def _columns(table: str) -> list[str]:
    from db.models import Base
    return [c.name for c in Base.metadata.tables[table].columns]


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value


def load_sqlite(path: Path, gen: Generator) -> dict[str, int]:
    from db import schema

    url = f"sqlite:///{path}"
    schema.upgrade(url)
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=DELETE")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA foreign_keys=OFF")
    indexes = [(name, sql) for name, sql in con.execute(
        "SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL")]
    for name, _ in indexes:
        con.execute(f'DROP INDEX "{name}"')
    call_cols, event_cols = _columns("calls"), _columns("call_events")
    insert_call = (f"INSERT INTO calls ({', '.join(call_cols)}) "
                   f"VALUES ({', '.join('?' * len(call_cols))})")
    insert_event = (f"INSERT INTO call_events ({', '.join(event_cols)}) "
                    f"VALUES ({', '.join('?' * len(event_cols))})")
    counts = {"calls": 0, "call_events": 0}
    con.execute("BEGIN")
    for calls, events in gen.rows():
        con.executemany(insert_call, [[_sqlite_value(c.get(k)) for k in call_cols] for c in calls])
        con.executemany(insert_event, [[_sqlite_value(v) for v in e] for e in events])
        counts["calls"] += len(calls)
        counts["call_events"] += len(events)
    gen.finish()
    for table, rows in (("callback_tasks", gen.tasks), ("callback_attempts", gen.attempts)):
        cols = _columns(table)
        con.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                        [[_sqlite_value(r.get(k, i + 1 if k == 'id' else None)) for k in cols]
                         for i, r in enumerate(rows)])
        counts[table] = len(rows)
    con.execute("COMMIT")
    for _, sql in indexes:
        con.execute(sql)
    con.execute("ANALYZE")
    con.execute("PRAGMA journal_mode=WAL")
    con.close()
    return counts


def load_postgres(cluster: Any, database: str, gen: Generator) -> dict[str, int]:
    from db import schema

    url = cluster.create_database(database)
    schema.upgrade(url)
    counts = {"calls": 0, "call_events": 0}
    call_cols, event_cols = _columns("calls"), _columns("call_events")
    with cluster.connect(database) as con:
        with con.cursor() as cur:
            cur.execute("SET session_replication_role = replica")  # FKs checked by the generator
            for calls, events in gen.rows():
                with cur.copy(f"COPY calls ({', '.join(call_cols)}) FROM STDIN") as copy:
                    for c in calls:
                        copy.write_row([_pg(c.get(k)) for k in call_cols])
                with cur.copy(f"COPY call_events ({', '.join(event_cols)}) FROM STDIN") as copy:
                    for e in events:
                        copy.write_row([_pg(v) for v in e])
                counts["calls"] += len(calls)
                counts["call_events"] += len(events)
            gen.finish()
            for table, rows in (("callback_tasks", gen.tasks), ("callback_attempts", gen.attempts)):
                cols = _columns(table)
                with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                    for i, r in enumerate(rows):
                        copy.write_row([_pg(r.get(k, i + 1 if k == "id" else None)) for k in cols])
                counts[table] = len(rows)
            for table in ("calls", "call_events", "callback_tasks", "callback_attempts"):
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                            f"(SELECT max(id) FROM {table}))")
        con.commit()
        con.autocommit = True
        con.execute("VACUUM ANALYZE")
    return counts | {"url": url}  # type: ignore[return-value]


def _pg(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    if isinstance(value, bool):
        return "t" if value else "f"
    return value


# --- timing -----------------------------------------------------------------------------------

def median_s(fn: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def service_timings(url: str) -> list[tuple[str, float]]:
    """The service calls behind the commands, in-process (median of 5)."""
    from sqlalchemy import select

    from db import register, rollup
    from db.engine import make_engine, session_factory
    from db.follow import Follower
    from db.models import Call, CallEvent
    from db.reports import report

    engine = make_engine(url)
    Session = session_factory(engine)
    now = datetime.now(timezone.utc)
    summarise_s = summarise_history(url, now)

    def summarised(**window):  # as `frontdesk report` does: refresh the summary, then read
        def fn(s):
            rollup.refresh_url(url, now)
            return report(s, tz=TZ, now=now, **window)
        return fn
    with Session() as session:
        some_caller = session.scalar(select(Call.caller).order_by(Call.id.desc()).limit(1))
        last_at = session.scalar(select(CallEvent.at).order_by(CallEvent.id.desc())
                                 .offset(20).limit(1))

    def run(fn):
        def go():
            with Session() as session:
                return fn(session)
        return go

    def follow_once(since):
        def fn(session):
            follower = Follower(since=since)
            follower.start(session)
            return follower.poll(session)
        return fn

    today = datetime.combine(now.astimezone(TZ).date(), dtime(0), TZ)
    cases = [
        ("list_calls (50 newest)", lambda s: register.list_calls(s, limit=50)),
        ("list_calls --outcome missed", lambda s: register.list_calls(s, outcome="missed", limit=50)),
        ("list_calls --r1-missed", lambda s: register.list_calls(s, r1_missed=True, limit=50)),
        ("list_calls --caller N", lambda s: register.list_calls(s, caller=some_caller, limit=50)),
        ("list_calls --category 投诉", lambda s: register.list_calls(s, category="投诉", limit=50)),
        ("list_calls --from 7d (limit 50)", lambda s: register.list_calls(
            s, since=now - timedelta(days=7), limit=50)),
        ("list_calls --outcome rejected (no such call)", lambda s: register.list_calls(
            s, outcome="rejected", limit=50)),
        ("list_calls --category with no such call (worst case)", lambda s: register.list_calls(
            s, category="none", limit=50)),
        ("report (whole register), calls only: no summary (as before 0004)", lambda s: report(
            s, since=None, until=None, tz=TZ, now=now, summary=False)),
        ("report (whole register): refresh + report", summarised(since=None, until=None)),
        ("report --from 30d: refresh + report", summarised(since=now - timedelta(days=30),
                                                           until=None)),
        ("report --from 365d: refresh + report", summarised(since=now - timedelta(days=365),
                                                            until=None)),
        ("report --from today (no refresh: nothing to summarise)", lambda s: report(
            s, since=today, until=None, tz=TZ, now=now)),
        ("follow: start + one poll", follow_once(None)),
        ("follow --since (20 events back): start + poll", follow_once(last_at)),
        ("follow --since 7d: start + first poll (500)", follow_once(now - timedelta(days=7))),
    ]
    out = [("report: summarise the whole history (once, after the upgrade)", summarise_s)]
    out += [(name, median_s(run(fn), 5)) for name, fn in cases]
    engine.dispose()
    return out


def summarise_history(url: str, now: datetime) -> float:
    """The hour summary dropped and built again over the whole register (seconds)."""
    from db import rollup
    from db.engine import make_engine, session_factory

    engine = make_engine(url, immediate=True)
    try:
        with session_factory(engine).begin() as session:
            rollup.forget(session)
    finally:
        engine.dispose()
    start = time.perf_counter()
    rollup.refresh_url(url, now)
    return time.perf_counter() - start


def command_timings(url: str, workdir: Path) -> list[tuple[str, float]]:
    """The commands as processes (median of 3), and follow's time to its first line."""
    from db.engine import make_engine
    from db.models import CallEvent
    from sqlalchemy import select

    env = {**os.environ, "PYTHONPATH": str(REPO), "FRONTDESK_DB": url}
    env.pop("FRONTDESK_CONFIG", None)
    config = workdir / "bench.toml"
    config.write_text('[desk]\ntimezone = "Asia/Shanghai"\n', encoding="utf-8")
    base = [sys.executable, "-m", "softphone"]

    def command(*args: str) -> Callable[[], None]:
        def go() -> None:
            subprocess.run([*base, *args, "--config", str(config)] if args[-1] != "--help" else
                           [*base, *args], env=env, cwd=workdir, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        return go

    cases = [
        ("frontdesk --help (start-up floor)", command("--help")),
        ("frontdesk calls list", command("calls", "list")),
        ("frontdesk calls list --outcome missed --json", command("calls", "list", "--outcome", "missed", "--json")),
        ("frontdesk calls list --r1-missed", command("calls", "list", "--r1-missed")),
        ("frontdesk report --json (default: last 30 days)", command("report", "--json")),
        ("frontdesk report --from today", command("report", "--from", "today")),
        ("frontdesk report --all --json (whole register)", command("report", "--all", "--json")),
    ]
    out = [(name, median_s(fn, 3)) for name, fn in cases]
    engine = make_engine(url)
    with engine.connect() as con:
        at = con.execute(select(CallEvent.at).order_by(CallEvent.id.desc()).offset(5).limit(1)).scalar()
    engine.dispose()
    at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)

    def first_line() -> None:
        proc = subprocess.Popen([*base, "follow", "--json", "--since", at.isoformat(), "--config",
                                 str(config)], env=env, cwd=workdir, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        try:
            assert proc.stdout.readline(), "follow printed nothing"
        finally:
            proc.kill()
            proc.wait(10)
    out.append(("frontdesk follow --since: process start to first line", median_s(first_line, 3)))
    return out


def report_table(title: str, counts: dict[str, Any], load_s: float, size: str,
                 rows: list[tuple[str, float]]) -> str:
    lines = [f"### {title}", "",
             f"{counts['calls']:,} calls, {counts['call_events']:,} events, "
             f"{counts.get('callback_tasks', 0):,} callback tasks, "
             f"{counts.get('callback_attempts', 0):,} attempts; generated and loaded in "
             f"{load_s:.0f} s; {size}.", "", "| what | time |", "|---|---|"]
    for name, seconds in rows:
        flag = "" if seconds < 1.0 else " **(over 1 s)**"
        lines.append(f"| {name} | {seconds * 1000:.0f} ms{flag} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=1000, help="spread the calls over this many days")
    parser.add_argument("--db", metavar="FILE", help="SQLite file to build (default: a temp dir)")
    parser.add_argument("--reuse", action="store_true", help="time an existing --db, do not build")
    parser.add_argument("--postgres", action="store_true", help="also on a throw-away PostgreSQL")
    parser.add_argument("--out", metavar="FILE.json", help="write the figures as JSON too")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    workdir = Path(tempfile.mkdtemp(prefix="register_scale_"))
    path = Path(args.db) if args.db else workdir / "register.db"
    results: dict[str, Any] = {}
    text = []
    if args.reuse:
        from db import schema

        schema.upgrade(f"sqlite:///{path}")  # an older file gets the newer indexes and tables
        counts = {"calls": 0, "call_events": 0}
        con = sqlite3.connect(path)
        for table in ("calls", "call_events", "callback_tasks", "callback_attempts"):
            counts[table] = con.execute(f"SELECT max(id) FROM {table}").fetchone()[0] or 0
        con.close()
        load_s = 0.0
    else:
        if path.exists():
            path.unlink()
        start = time.perf_counter()
        counts = load_sqlite(path, Generator(args.calls, args.days))
        load_s = time.perf_counter() - start
    url = f"sqlite:///{path}"
    size = f"SQLite file {path.stat().st_size / 2**20:,.0f} MiB"
    rows = service_timings(url) + command_timings(url, workdir)
    text.append(report_table("SQLite", counts, load_s, size, rows))
    results["sqlite"] = {"counts": counts, "load_s": load_s, "timings_s": dict(rows)}
    if args.postgres:
        from tests.rig.postgres import pg_cluster

        with pg_cluster() as cluster:
            start = time.perf_counter()
            counts = load_postgres(cluster, "bench", Generator(args.calls, args.days))
            load_s = time.perf_counter() - start
            pg_url = counts.pop("url")  # type: ignore[arg-type]
            rows = service_timings(pg_url) + command_timings(pg_url, workdir)
            text.append(report_table("PostgreSQL", counts, load_s, "throw-away cluster", rows))
            results["postgres"] = {"counts": counts, "load_s": load_s, "timings_s": dict(rows)}
    print("\n".join(text))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2), encoding="utf-8")
    slow = [name for r in results.values() for name, s in r["timings_s"].items() if s >= 1.0]
    if slow:
        print(f"over 1 s: {', '.join(slow)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
