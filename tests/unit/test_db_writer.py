"""The register's single writer on SQLite: the call path never waits, nothing is lost (R16-R18)."""
from __future__ import annotations

import json
import logging
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from db import schema
from db.engine import make_engine, session_factory
from db.journal import Journal, JournalBusy
from db.models import Call, CallEvent
from db.ops import AddEvent, CloseCall, OpenCall, UpdateCall, new_uid, op_to_json
from db.register import call_events, get_call
from db.writer import RegisterWriter

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 25, 13, 3, 5, 123456, tzinfo=timezone.utc)
LOGGER = "frontdesk.register"


@pytest.fixture
def url(tmp_path):
    url = f"sqlite:///{tmp_path}/register.db"
    schema.upgrade(url)
    return url


@pytest.fixture
def journal(tmp_path):
    return tmp_path / "register.journal"


@pytest.fixture
def writers():
    """make(url, journal, **kw) -> a started writer, stopped after the test."""
    made: list[RegisterWriter] = []

    def make(url, journal, **kw):
        writer = RegisterWriter(url, journal, **kw)
        made.append(writer)
        writer.start()
        return writer

    yield make
    for writer in made:
        writer.stop(timeout=2)


def call_ops(uid: str, events: int = 3, *, outcome: str = "handled") -> list:
    """A whole answered call, as the agent would submit it."""
    answered = T0 + timedelta(seconds=5)
    ops = [OpenCall(uid, dict(call_id=f"{uid}@pbx", agent="desk1", caller="1001",
                              caller_name="王先生", called="8000", remote_addr="127.0.0.5:5060",
                              started_at=T0, ringing_at=T0 + timedelta(milliseconds=30))),
           AddEvent(uid, 1, T0 + timedelta(milliseconds=30), 30, "ringing", None),
           UpdateCall(uid, dict(status="answered", answered_at=answered, ring_ms=4970,
                                ring_ms_from_invite=5000, rings=1, r1_met=True, codec="PCMU")),
           AddEvent(uid, 2, answered, 5000, "answered", None)]
    ops += [AddEvent(uid, 2 + i, answered + timedelta(seconds=i), 5000 + 1000 * i, "prompt",
                     {"prompt": "greeting", "n": i}) for i in range(1, events + 1)]
    ops.append(CloseCall(uid, dict(outcome=outcome, ended_at=answered + timedelta(seconds=30),
                                   talk_ms=30000, hung_up_first="caller", sip_code=200,
                                   scripts=["silent"], dtmf="1380013", category="报修")))
    return ops


def read(url: str, fn):
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            return fn(session)
    finally:
        engine.dispose()


def event_seqs(url: str, uid: str) -> list[int]:
    return read(url, lambda s: [e.seq for e in call_events(s, get_call(s, uid))])


def journal_ops(journal: Path) -> list[dict]:
    """The ops in the journal's batch lines (torn lines skipped)."""
    ops = []
    for line in journal.read_bytes().split(b"\n"):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        ops += record.get("ops", [])
    return ops


@pytest.fixture
def db_lock(url):
    """lock() holds SQLite's write lock from another connection (an outage); unlock() frees it."""
    conn = sqlite3.connect(sa.make_url(url).database, isolation_level=None, timeout=5)

    class Lock:
        def events(self) -> int:
            return conn.execute("SELECT count(*) FROM call_events").fetchone()[0]

        def lock(self):
            conn.execute("BEGIN EXCLUSIVE")

        def unlock(self):
            if conn.in_transaction:
                conn.execute("ROLLBACK")

    lock = Lock()
    yield lock
    lock.unlock()
    conn.close()


def test_round_trip_open_events_close(url, journal, writers):
    writer = writers(url, journal)
    uid = new_uid()
    for op in call_ops(uid, events=3):
        writer.submit(op)
    assert writer.flush(5)
    assert (writer.pending, writer.healthy, writer.last_error) == (0, True, None)

    def check(session):
        call = get_call(session, uid)
        assert (call.status, call.outcome, call.caller_name, call.rings, call.r1_met) == (
            "ended", "handled", "王先生", 1, True)
        assert call.answered_at == T0 + timedelta(seconds=5)
        assert call.scripts == ["silent"] and call.category == "报修"
        events = call_events(session, call)
        assert [(e.seq, e.kind, e.t_ms) for e in events] == [
            (1, "ringing", 30), (2, "answered", 5000), (3, "prompt", 6000), (4, "prompt", 7000),
            (5, "prompt", 8000)]
        assert events[2].data == {"prompt": "greeting", "n": 1}
    read(url, check)
    assert journal.read_bytes() == b""  # everything committed: the journal is emptied
    assert not writer.dead_letter_path.exists()


def test_idempotent_replay_duplicates_nothing(url, journal, writers):
    """Replaying every op again (as after a crash right after the commit) changes nothing."""
    uid = new_uid()
    ops = call_ops(uid, events=4)
    writer = writers(url, journal)
    for op in ops:
        writer.submit(op)
    assert writer.flush(5)
    writer.stop()
    before = read(url, lambda s: (s.scalar(sa.select(sa.func.count()).select_from(CallEvent)),
                                  get_call(s, uid).status, get_call(s, uid).talk_ms))

    # a journal holding the same ops twice, as committed-but-unmarked batches
    j = Journal(journal)
    j.append([op_to_json(op) for op in ops])
    j.append([op_to_json(op) for op in ops])
    j.close()
    again = writers(url, journal)
    assert again.pending == 2 * len(ops)  # replayed ops count as pending until committed
    assert again.flush(5)
    after = read(url, lambda s: (s.scalar(sa.select(sa.func.count()).select_from(CallEvent)),
                                 get_call(s, uid).status, get_call(s, uid).talk_ms))
    assert after == before == (6, "ended", 30000)
    assert read(url, lambda s: s.scalar(sa.select(sa.func.count()).select_from(Call))) == 1


def test_replay_starts_at_the_first_batch_not_marked_done(url, journal, writers):
    uid = new_uid()
    ops = call_ops(uid, events=2)
    j = Journal(journal)
    first = j.append([op_to_json(ops[0])])
    j.mark_done(first)
    j.append([op_to_json(UpdateCall(uid, {"notes": "replayed"}))])
    j.close()
    journal.write_bytes(journal.read_bytes() + b'{"batch":3,"ops":[{"op":"upd')  # torn tail
    writer = writers(url, journal)
    assert writer.pending == 1  # batch 1 is done; the torn line is skipped
    assert writer.flush(5)
    # batch 1 (the OpenCall) was not replayed, so the UpdateCall had no call: dead-lettered
    assert read(url, lambda s: get_call(s, uid)) is None
    dead = [json.loads(line) for line in writer.dead_letter_path.read_text().splitlines()]
    assert [d["op"]["fields"] for d in dead] == [{"notes": "replayed"}]


def test_a_bad_op_is_dead_lettered_and_the_queue_moves_on(url, journal, writers, caplog):
    caplog.set_level(logging.ERROR, logger=LOGGER)
    writer = writers(url, journal)
    uid = new_uid()
    ops = call_ops(uid, events=1)
    bad = [UpdateCall("no-such-call", {"notes": "x"}),           # unknown uid
           UpdateCall(uid, {"colour": "blue"}),                  # unknown field
           UpdateCall(uid, {"outcome": "teleported"}),           # the database's CHECK refuses it
           AddEvent(uid, 9, datetime(2026, 11, 25, 13, 0), 0, "line", None),  # naive time
           UpdateCall(uid, {"notes": {1, 2}})]                   # not even JSON
    for op in ops[:2] + bad + ops[2:]:
        writer.submit(op)
    assert writer.flush(5)
    assert writer.pending == 0 and writer.healthy
    assert read(url, lambda s: get_call(s, uid).status) == "ended"
    assert event_seqs(url, uid) == [1, 2, 3]
    dead = [json.loads(line) for line in writer.dead_letter_path.read_text().splitlines()]
    assert len(dead) == len(bad)
    assert {d["repr"] for d in dead} == {repr(op) for op in bad}
    assert any("no call with uid 'no-such-call'" in d["error"] for d in dead)
    assert any("IntegrityError" in d["error"] for d in dead)
    assert len([r for r in caplog.records if r.name == LOGGER and r.levelno == logging.ERROR]) == 5


def test_close_hooks_run_in_the_closing_transaction(url, journal, writers):
    seen = []

    def hook(session, call):
        seen.append((call.uid, call.status, call.outcome))
        session.add(CallEvent(call_pk=call.id, seq=99, at=T0, t_ms=0, kind="callback",
                              data={"queued": True}))

    def failing_hook(session, call):
        if call.outcome == "missed":
            raise RuntimeError("callback queue refused it")

    writer = RegisterWriter(url, journal, close_hooks=[hook])
    writer.on_close(failing_hook)
    writer.start()
    try:
        good, bad = new_uid(), new_uid()
        for op in call_ops(good, events=0) + call_ops(bad, events=0, outcome="missed"):
            writer.submit(op)
        assert writer.flush(5)
    finally:
        writer.stop()
    assert seen == [(good, "ended", "handled"), (bad, "ended", "missed")]
    assert event_seqs(url, good) == [1, 2, 99]
    # the failing hook rolled its CloseCall back (and the first hook's event with it)
    assert read(url, lambda s: get_call(s, bad).status) == "answered"
    assert event_seqs(url, bad) == [1, 2]
    assert "callback queue refused it" in writer.dead_letter_path.read_text()


def test_database_locked_keeps_everything_and_delivers_it_in_order(url, journal, writers,
                                                                  db_lock, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    writer = writers(url, journal, busy_timeout_ms=50)
    uid = new_uid()
    ops = call_ops(uid, events=40)
    db_lock.lock()
    t0 = time.perf_counter()
    for op in ops:
        writer.submit(op)
    submit_s = time.perf_counter() - t0
    deadline = time.monotonic() + 5
    while (writer.healthy or len(journal_ops(journal)) < len(ops)) and time.monotonic() < deadline:
        time.sleep(0.02)
    # blocked on the database, each submit would take the 50 ms busy_timeout at least
    assert submit_s < 0.5, f"{len(ops)} submits took {submit_s:.3f} s"
    assert not writer.healthy and "locked" in writer.last_error
    assert len(journal_ops(journal)) == len(ops) == writer.pending  # all journaled, none lost
    assert not writer.flush(0.2)
    db_lock.unlock()
    assert writer.flush(5)
    assert writer.healthy and writer.pending == 0
    assert event_seqs(url, uid) == list(range(1, 43))
    assert read(url, lambda s: get_call(s, uid).status) == "ended"
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "database unavailable" in warnings[0].getMessage()
    assert any("database is back" in r.getMessage() for r in caplog.records)
    assert journal.read_bytes() == b""


def test_stop_during_an_outage_leaves_the_ops_to_the_next_start(url, journal, writers, db_lock):
    uid = new_uid()
    ops = call_ops(uid, events=5)
    db_lock.lock()
    writer = writers(url, journal, busy_timeout_ms=50)
    for op in ops:
        writer.submit(op)
    writer.stop(timeout=0.3)
    assert writer.pending == len(ops)
    db_lock.unlock()
    assert read(url, lambda s: get_call(s, uid)) is None
    again = writers(url, journal)
    assert again.flush(5)
    assert event_seqs(url, uid) == list(range(1, 8))


def test_unwritable_journal_still_writes_the_database(url, tmp_path, writers, caplog):
    """A full disk (the journal is /dev/full): logged once, ops still reach the database."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    journal = tmp_path / "register.journal"
    journal.symlink_to("/dev/full")
    writer = writers(url, journal, batch_ms=10)
    first = new_uid()
    for op in call_ops(first, events=2):
        writer.submit(op)
        assert writer.flush(5)  # one batch each: the journal fails again and again
    assert not writer.healthy and "No space left" in writer.last_error
    assert read(url, lambda s: get_call(s, first).status) == "ended"

    journal.unlink()  # the disk has room again
    second = new_uid()
    for op in call_ops(second, events=2):
        writer.submit(op)
    assert writer.flush(5)
    assert writer.healthy and writer.last_error is None
    assert event_seqs(url, second) == [1, 2, 3, 4]
    assert journal.is_file() and journal.read_bytes() == b""
    warnings = [r.getMessage() for r in caplog.records
                if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len([w for w in warnings if "unwritable, keeping" in w]) == 1  # once per state change
    assert any("writable again" in r.getMessage() for r in caplog.records)
    assert not writer.dead_letter_path.exists()


def test_one_writer_per_journal(url, journal, writers):
    writers(url, journal)
    with pytest.raises(JournalBusy):
        RegisterWriter(url, journal).start()


CHILD = r"""
import sys, time
from datetime import datetime, timezone
from db.ops import AddEvent, OpenCall
from db.writer import RegisterWriter

url, journal, uid = sys.argv[1:4]
writer = RegisterWriter(url, journal, batch_ms=20, busy_timeout_ms=50)
writer.start()
now = datetime.now(timezone.utc)
writer.submit(OpenCall(uid, dict(call_id="crash@pbx", agent="desk1", caller="1001",
                                 called="8000", started_at=now)))
print(0, flush=True)
for seq in range(1, 20001):
    writer.submit(AddEvent(uid, seq, datetime.now(timezone.utc), seq, "line", {"n": seq}))
    print(seq, flush=True)  # after submit() returned
    time.sleep(0.001)
"""


def test_sigkill_loses_nothing_that_reached_the_journal(url, journal, db_lock, tmp_path):
    """The agent is SIGKILLed while it submits (the database locked for part of the time, so
    the journal holds uncommitted batches). After a restart every op that reached the journal
    or the database is there exactly once, and the register holds a prefix of what was
    submitted: only the tail still in memory (about batch_ms) may be missing."""
    uid = new_uid()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    stderr = tmp_path / "child.stderr"
    with open(stderr, "w") as err:
        child = subprocess.Popen([sys.executable, "-c", CHILD, url, str(journal), uid],
                                 cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    lines: queue.SimpleQueue[str] = queue.SimpleQueue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in child.stdout], daemon=True)
    reader.start()
    submitted = -1
    try:
        deadline = time.monotonic() + 20
        locked = False
        while time.monotonic() < deadline and child.poll() is None:
            try:
                submitted = int(lines.get(timeout=0.5))
            except queue.Empty:
                continue
            if submitted >= 150 and not locked and db_lock.events() > 0:
                db_lock.lock()  # waits for the child's current transaction
                locked = True
            # kill once the journal holds batches the locked database could not take
            if locked and submitted >= 400 and submitted % 20 == 0 \
                    and len(journal_ops(journal)) >= 100:
                break
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    reader.join(timeout=5)
    child.stdout.close()
    while not lines.empty():
        submitted = max(submitted, int(lines.get()))
    assert submitted >= 400, f"the child did not get going: {stderr.read_text()[-2000:]}"

    in_journal = {op["seq"] for op in journal_ops(journal) if op["op"] == "event"}
    db_lock.unlock()
    committed = set(event_seqs(url, uid))
    assert in_journal, "the outage should have left uncommitted batches in the journal"
    assert committed and max(committed) < min(in_journal - committed)

    writer = RegisterWriter(url, journal)
    writer.start()
    try:
        assert writer.flush(10)
    finally:
        writer.stop()
    seqs = event_seqs(url, uid)
    assert len(seqs) == len(set(seqs))  # nothing duplicated
    assert seqs == list(range(1, len(seqs) + 1))  # a prefix, in order
    assert (in_journal | committed) <= set(seqs)
    lost = submitted - len(seqs)
    assert 0 <= lost < 200, f"{lost} ops lost"
    print(f"submitted {submitted}, committed before the kill {len(committed)}, "
          f"replayed {len(set(seqs) - committed)}, lost {lost}")
