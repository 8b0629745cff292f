"""The callback queue on SQLite and PostgreSQL (R13): claims return due tasks only, never in quiet
hours; a lease that runs out returns the task; only the holder of a live claim can finish it;
retries back off; every attempt is recorded; one open task per number (R14)."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from db import callbacks, schema
from db.callback_rules import CallbackRules
from db.callbacks import CallbackQueue
from db.engine import make_engine
from db.models import CallbackAttempt, CallbackTask

pytest_plugins = ["tests.rig.postgres"]
pytestmark = pytest.mark.integration

SH = ZoneInfo("Asia/Shanghai")
RULES = CallbackRules(tz=SH)
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=SH)


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/register.db"
    else:
        url = request.getfixturevalue("pg_url")
    schema.upgrade(url)
    return url


@pytest.fixture
def engines(url):
    made = []

    def make(**kw):
        engine = make_engine(url, immediate=True, **kw)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.dispose()


@pytest.fixture
def queue(engines):
    return CallbackQueue(engines(), RULES)


def snapshot(queue, task_id):
    def read(session, _now):
        task = session.get(CallbackTask, task_id)
        rows = session.execute(sa.select(CallbackAttempt.worker, CallbackAttempt.outcome,
                                         CallbackAttempt.ended_at)
                               .where(CallbackAttempt.task_id == task_id)
                               .order_by(CallbackAttempt.id)).all()
        return (task.state, task.claimed_by, task.lease_until, task.due_at, task.attempts,
                task.outcome, task.notes, [tuple(r) for r in rows])
    return queue.run(read)


def test_claims_return_due_tasks_only_oldest_first(queue):
    late, _ = queue.add("13800000002", "message", now=T0 + timedelta(minutes=5))
    early, _ = queue.add("13800000001", "missed", now=T0)
    future, _ = queue.add("13800000003", "message", now=T0)
    queue.reschedule(future.id, T0 + timedelta(hours=5), now=T0)

    got = queue.claim("w1", now=T0 + timedelta(minutes=10))
    assert got.id == early.id and got.state == "claimed" and got.attempts == 1
    assert got.lease_until == T0 + timedelta(minutes=20)  # the 10 min lease
    assert queue.claim("w2", now=T0 + timedelta(minutes=10)).id == late.id
    assert queue.claim("w3", now=T0 + timedelta(minutes=10)) is None  # the rest is not due
    # w1 never reports: at 14:00 its lease has long run out, and its task is older than `future`
    queue.finish(late.id, "w2", "reached", now=T0 + timedelta(minutes=11))
    assert queue.claim("w3", now=T0 + timedelta(hours=5)).id == early.id
    assert queue.claim("w3", now=T0 + timedelta(hours=5)).id == future.id
    assert queue.claim("w3", now=T0 + timedelta(hours=5)) is None


def test_nothing_is_claimed_in_quiet_hours_or_on_a_day_off(engines):
    rules = CallbackRules(tz=SH, holidays=frozenset({T0.date() + timedelta(days=1)}))
    queue = CallbackQueue(engines(), rules)
    task, _ = queue.add("13800000001", "missed", now=T0)
    assert queue.claim("w", now=datetime(2026, 11, 25, 12, 30, tzinfo=SH)) is None
    assert queue.claim("w", now=datetime(2026, 11, 25, 21, 30, tzinfo=SH)) is None
    assert queue.claim("w", now=datetime(2026, 11, 26, 10, 0, tzinfo=SH)) is None  # holiday
    assert queue.claim("w", task_id=task.id, now=datetime(2026, 11, 25, 13, 0, tzinfo=SH)) is None
    assert queue.claim("w", now=datetime(2026, 11, 25, 14, 0, tzinfo=SH)).id == task.id


def test_an_expired_lease_returns_the_task_and_fences_off_the_old_worker(queue):
    task, _ = queue.add("13800000001", "missed", now=T0)
    assert queue.claim("w1", now=T0).id == task.id
    assert queue.claim("w2", now=T0 + timedelta(minutes=9)) is None  # w1's lease still runs
    taken = queue.claim("w2", now=T0 + timedelta(minutes=10, seconds=1))
    assert taken.id == task.id and taken.claimed_by == "w2" and taken.attempts == 2

    before = snapshot(queue, task.id)
    with pytest.raises(callbacks.NotClaimed, match="claimed by 'w2', not by 'w1'"):
        queue.finish(task.id, "w1", "reached", now=T0 + timedelta(minutes=11))
    assert snapshot(queue, task.id) == before  # nothing changed

    done = queue.finish(task.id, "w2", "reached", note="spoke to Mr Wang",
                        now=T0 + timedelta(minutes=12))
    assert (done.state, done.outcome, done.closed_by) == ("done", "reached", "w2")
    attempts = snapshot(queue, task.id)[-1]
    assert [(w, o) for w, o, _ in attempts] == [("w1", "expired"), ("w2", "reached")]
    assert all(ended is not None for _, _, ended in attempts)


def test_finishing_without_the_claim_fails_and_changes_nothing(queue):
    task, _ = queue.add("13800000001", "missed", now=T0)
    with pytest.raises(callbacks.NotClaimed, match="not claimed"):
        queue.finish(task.id, "w1", "reached", now=T0)
    with pytest.raises(callbacks.NoSuchTask):
        queue.finish(task.id + 100, "w1", "reached", now=T0)
    queue.claim("w1", now=T0)
    before = snapshot(queue, task.id)
    with pytest.raises(callbacks.LeaseExpired, match="ran out"):
        queue.finish(task.id, "w1", "reached", now=T0 + timedelta(minutes=10))
    with pytest.raises(callbacks.NotClaimed):
        queue.reschedule(task.id, T0 + timedelta(hours=1), worker="w2", now=T0 + timedelta(minutes=1))
    with pytest.raises(callbacks.CallbackError, match="unknown outcome"):
        queue.finish(task.id, "w1", "maybe", now=T0 + timedelta(minutes=1))
    assert snapshot(queue, task.id) == before
    queue.renew(task.id, "w1", now=T0 + timedelta(minutes=9))  # a long call: extend the lease
    queue.finish(task.id, "w1", "resolved", now=T0 + timedelta(minutes=15))
    with pytest.raises(callbacks.TaskClosed, match="already done"):
        queue.finish(task.id, "w1", "reached", now=T0 + timedelta(minutes=16))


def test_unreached_attempts_back_off_and_stay_open_past_the_deadline(queue):
    task, _ = queue.add("13800000001", "missed", now=T0)
    t = T0
    expected = [("no-answer", t + timedelta(minutes=30))]
    queue.claim("w", now=t)
    assert queue.finish(task.id, "w", "no-answer", now=t).due_at == expected[0][1]
    t = t + timedelta(minutes=30)
    queue.claim("w", now=t)
    # +2 h from 09:30 is 11:30
    assert queue.finish(task.id, "w", "busy", now=t).due_at == datetime(2026, 11, 25, 11, 30, tzinfo=SH)
    t = datetime(2026, 11, 25, 11, 30, tzinfo=SH)
    queue.claim("w", now=t)
    third = queue.finish(task.id, "w", "voicemail", now=t)
    assert third.due_at == datetime(2026, 11, 26, 8, 0, tzinfo=SH)  # next morning
    # three days on, nobody reached: overdue, still open, still claimable, never dropped (R13)
    late = datetime(2026, 11, 28, 10, 0, tzinfo=SH)
    queue.claim("w", now=late)
    fourth = queue.finish(task.id, "w", "failed", now=late)
    assert fourth.state == "open" and RULES.is_overdue(fourth.deadline_at, late, fourth.state)
    assert fourth.due_at == datetime(2026, 11, 29, 8, 0, tzinfo=SH)

    def listed(session, now):
        return [t.id for t in callbacks.list_tasks(session, now, overdue=True)]
    assert queue.run(listed, now=late) == [task.id]
    outcomes = [o for _, o, _ in snapshot(queue, task.id)[-1]]
    assert outcomes == ["no-answer", "busy", "voicemail", "failed"]  # R13: the complete record


def test_reschedule_refuses_quiet_hours_and_says_when_it_could_be(queue):
    task, _ = queue.add("13800000001", "message", now=T0)
    queue.claim("w", now=T0)
    with pytest.raises(callbacks.NotAllowed) as refused:
        queue.reschedule(task.id, datetime(2026, 11, 25, 12, 30, tzinfo=SH), worker="w", now=T0)
    assert refused.value.next_allowed == datetime(2026, 11, 25, 14, 0, tzinfo=SH)
    assert "2026-11-25T14:00:00.000+08:00" in str(refused.value)
    moved = queue.reschedule(task.id, datetime(2026, 11, 26, 9, 30, tzinfo=SH), worker="w",
                             note="customer asked for tomorrow", now=T0 + timedelta(minutes=2))
    assert (moved.state, moved.due_at, moved.claimed_by) == (
        "open", datetime(2026, 11, 26, 9, 30, tzinfo=SH), None)
    assert snapshot(queue, task.id)[-1][0][:2] == ("w", "reached")


def test_one_open_task_per_number_even_against_direct_inserts(queue, engines):
    first, created = queue.add("13800000001", "message", note="leak in the kitchen", now=T0)
    again, created_again = queue.add("13800000001", "repair", note="still leaking",
                                     now=T0 + timedelta(hours=1))
    assert created and not created_again and again.id == first.id
    assert "leak in the kitchen" in again.notes and "still leaking" in again.notes
    with pytest.raises(sa.exc.IntegrityError):
        with Session(engines()) as session, session.begin():
            session.add(CallbackTask(number="13800000001", reason="x", due_at=T0,
                                     deadline_at=T0, state="open"))
    queue.cancel(first.id, note="customer came to the desk", now=T0 + timedelta(hours=2))
    fresh, created = queue.add("13800000001", "message", now=T0 + timedelta(hours=3))
    assert created and fresh.id != first.id  # a closed task does not block a new one


def test_cancel_closes_the_attempt_in_flight(queue):
    task, _ = queue.add("13800000001", "missed", now=T0)
    queue.claim("w", now=T0)
    with pytest.raises(callbacks.CallbackError, match="why"):
        queue.cancel(task.id, note=" ", now=T0)
    done = queue.cancel(task.id, note="duplicate", by="supervisor", now=T0 + timedelta(minutes=1))
    assert (done.state, done.closed_by) == ("cancelled", "supervisor")
    assert snapshot(queue, task.id)[-1][0][:2] == ("w", "cancelled")
    with pytest.raises(callbacks.TaskClosed):
        queue.finish(task.id, "w", "reached", now=T0 + timedelta(minutes=2))


def test_a_claim_in_progress_does_not_hand_out_its_task(url, engines):
    """PostgreSQL: the second claimer skips the locked row at once (SKIP LOCKED). SQLite: it
    waits for the first transaction (BEGIN IMMEDIATE), then takes the next task."""
    setup = CallbackQueue(engines(), RULES)
    one, _ = setup.add("13800000001", "missed", now=T0)
    two, _ = setup.add("13800000002", "missed", now=T0 + timedelta(seconds=1))
    holder = engines()
    session = Session(holder)
    session.begin()
    held = callbacks.claim_next(session, "slow", T0 + timedelta(minutes=1), RULES)
    assert held.id == one.id
    result: dict = {}

    def other() -> None:
        t0 = time.monotonic()
        task = CallbackQueue(engines(), RULES).claim("fast", now=T0 + timedelta(minutes=1))
        result.update(id=task.id if task else None, waited=time.monotonic() - t0)

    thread = threading.Thread(target=other)
    thread.start()
    if url.startswith("postgresql"):
        thread.join(10)
        assert result["id"] == two.id and result["waited"] < 2.0
        session.commit()
    else:
        time.sleep(0.5)
        assert thread.is_alive()  # waiting for the write lock
        session.commit()
        thread.join(10)
        assert result["id"] == two.id
    session.close()


def test_a_task_whose_lease_ran_out_can_be_rescheduled_by_anyone(queue):
    task, _ = queue.add("13800000001", "missed", now=T0)
    queue.claim("w1", now=T0)
    later = T0 + timedelta(minutes=30)
    moved = queue.reschedule(task.id, T0 + timedelta(hours=2), worker="supervisor", now=later)
    assert (moved.state, moved.claimed_by) == ("open", None)
    [(worker, outcome, _)] = snapshot(queue, task.id)[-1]
    assert (worker, outcome) == ("w1", "expired")
    with pytest.raises(callbacks.NotClaimed):  # w1's late report is refused
        queue.finish(task.id, "w1", "reached", now=later)
