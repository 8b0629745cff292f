"""Callback tasks from the register (R12, R14) through the real RegisterWriter on SQLite: the
task is opened in the transaction that closes the call, repeated calls join it, a handled call
resolves it, and a journal replay creates nothing twice."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from alembic import command

from db import callbacks, schema
from db.callback_rules import CallbackRules
from db.engine import make_engine, session_factory
from db.journal import Journal
from db.models import CallbackTask, Call, CallEvent
from db.ops import AddEvent, CloseCall, OpenCall, new_uid, op_to_json
from db.register import CALL_KEYS, call_to_dict, get_call
from db.writer import RegisterWriter

SH = ZoneInfo("Asia/Shanghai")
RULES = CallbackRules(tz=SH)
T0 = datetime(2026, 11, 25, 12, 30, tzinfo=SH)  # lunch: quiet hours (R13)


@pytest.fixture
def url(tmp_path):
    url = f"sqlite:///{tmp_path}/register.db"
    schema.upgrade(url)
    return url


@pytest.fixture
def writers(tmp_path):
    """make(url, *hooks) -> a started writer with the callback hook (then `hooks`)."""
    made: list[RegisterWriter] = []

    def make(url, *hooks, rules=RULES, journal="register.journal"):
        writer = RegisterWriter(url, tmp_path / journal)
        if rules is not None:
            callbacks.register_hooks(writer, rules)
        for hook in hooks:
            writer.on_close(hook)
        made.append(writer)
        writer.start()
        return writer

    yield make
    for writer in made:
        writer.stop(timeout=2)


def call_ops(caller: str, outcome: str, started: datetime, *, typed: str | None = None,
             direction: str = "in", uid: str | None = None) -> list:
    uid = uid or new_uid()
    close = dict(outcome=outcome, ended_at=started + timedelta(seconds=20), hung_up_first="caller")
    if outcome == "handled":
        close.update(answered_at=started + timedelta(seconds=5), talk_ms=15000)
    if typed:
        close["callback_number"] = typed
    return [OpenCall(uid, dict(call_id=f"{uid}@pbx", agent="desk1", direction=direction,
                               caller=caller, called="8000", started_at=started)),
            AddEvent(uid, 1, started, 0, "ringing", None),
            CloseCall(uid, close)]


def submit(writer, ops) -> str:
    for op in ops:
        writer.submit(op)
    assert writer.flush(5)
    return ops[0].uid


def read(url, fn):
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            return fn(session)
    finally:
        engine.dispose()


def tasks(session) -> list[CallbackTask]:
    return list(session.scalars(sa.select(CallbackTask).order_by(CallbackTask.id)))


def test_a_missed_call_opens_a_task_and_the_register_says_so(url, writers):
    writer = writers(url)
    uid = submit(writer, call_ops("13800138000", "missed", T0))

    def check(session):
        [task] = tasks(session)
        call = get_call(session, uid)
        assert (task.number, task.reason, task.state, task.attempts) == ("13800138000", "missed",
                                                                         "open", 0)
        assert task.due_at == datetime(2026, 11, 25, 14, 0, tzinfo=SH)  # after lunch (R13)
        assert task.deadline_at == T0 + timedelta(days=3)  # R13: three days
        d = call_to_dict(call, SH)
        assert d["callback_task_id"] == task.id and d["resolved_task_id"] is None
        assert tuple(d)[-4:-1] == ("callback_task_id", "callback_number", "resolved_task_id")
        assert set(CALL_KEYS) >= {"id", "uid", "outcome", "recording"}  # nothing removed
    read(url, check)


def test_the_task_commits_or_rolls_back_with_the_closing_of_the_call(url, writers, caplog):
    """Same transaction: when a later close hook fails, the CloseCall is dead-lettered and the
    task the callback hook had already made is rolled back with it."""
    doomed = new_uid()

    def fail_for_doomed(session, call):
        if call.uid == doomed:
            raise ValueError("boom")

    writer = writers(url, fail_for_doomed)
    with caplog.at_level(logging.ERROR, logger="frontdesk.register"):
        submit(writer, call_ops("13800138001", "missed", T0, uid=doomed))
    ok = submit(writer, call_ops("13800138002", "missed", T0))

    def check(session):
        assert [t.number for t in tasks(session)] == ["13800138002"]
        assert get_call(session, doomed).status == "ringing"  # its close was rolled back
        assert get_call(session, ok).callback_task_id is not None
    read(url, check)
    assert writer.dead_letter_path.exists()


def test_repeated_unanswered_calls_join_the_open_task(url, writers):
    """R14: one open task per number, every call linked; a new call makes it due again."""
    writer = writers(url)
    first = submit(writer, call_ops("13800138000", "missed", T0))
    second = submit(writer, call_ops("13800138000", "silent", T0 + timedelta(hours=3)))
    other = submit(writer, call_ops("13900139000", "abandoned", T0 + timedelta(hours=3)))

    [task_id] = read(url, lambda s: [t.id for t in tasks(s) if t.number == "13800138000"])
    # an attempt that reached nobody: retry in 30 min ...
    engine = make_engine(url, immediate=True)
    try:
        queue = callbacks.CallbackQueue(engine, RULES)
        at = datetime(2026, 11, 25, 15, 40, tzinfo=SH)
        assert queue.claim("desk-a", now=at).id == task_id
        assert queue.finish(task_id, "desk-a", "no-answer", now=at).due_at == at + timedelta(
            minutes=30)
    finally:
        engine.dispose()
    # ... but the customer calls again (and hangs up) at 15:50: due at once
    third = submit(writer, call_ops("13800138000", "busy", datetime(2026, 11, 25, 15, 50,
                                                                    tzinfo=SH)))

    def check(session):
        assert len(tasks(session)) == 2
        task = session.get(CallbackTask, task_id)
        assert task.reason == "missed" and task.state == "open"
        assert [get_call(session, u).callback_task_id for u in (first, second, third)] == [
            task_id] * 3
        assert get_call(session, other).callback_task_id != task_id
        assert callbacks.linked_calls(session, [task_id])[task_id] == [
            get_call(session, u).id for u in (first, second, third)]
        assert task.due_at == datetime(2026, 11, 25, 15, 50, 20, tzinfo=SH)
        assert task.deadline_at == T0 + timedelta(days=3)  # from the FIRST call
    read(url, check)


def test_a_handled_call_from_the_number_resolves_its_task(url, writers):
    writer = writers(url)
    submit(writer, call_ops("13800138000", "missed", T0))
    unrelated = submit(writer, call_ops("13900139000", "handled", T0 + timedelta(hours=1)))
    back = submit(writer, call_ops("13800138000", "handled", T0 + timedelta(hours=2)))
    later = submit(writer, call_ops("13800138000", "handled", T0 + timedelta(hours=3)))

    def check(session):
        [task] = tasks(session)
        assert (task.state, task.outcome, task.closed_by) == ("done", "auto-resolved", "auto")
        assert task.closed_at == T0 + timedelta(hours=2, seconds=20)
        d = call_to_dict(get_call(session, back), SH)
        assert d["resolved_task_id"] == task.id == d["callback_task_id"]
        assert call_to_dict(get_call(session, unrelated), SH)["resolved_task_id"] is None
        assert call_to_dict(get_call(session, later), SH)["resolved_task_id"] is None  # no task left
        assert "R14" in task.notes
    read(url, check)


def test_a_journal_replay_creates_and_links_nothing_twice(url, writers, tmp_path):
    writer = writers(url)
    missed = call_ops("13800138000", "missed", T0)
    joined = call_ops("13800138000", "noisy", T0 + timedelta(hours=2), typed="13700137000")
    handled = call_ops("13800138000", "handled", T0 + timedelta(hours=4))
    again = call_ops("13800138000", "missed", T0 + timedelta(hours=5))
    for ops in (missed, joined, handled, again):
        submit(writer, ops)
    writer.stop()
    snapshot = lambda s: [(t.id, t.state, t.outcome, t.due_at, t.updated_at, t.typed_number,  # noqa: E731
                           t.notes) for t in tasks(s)] + [
        (c.id, c.callback_task_id, c.resolved_task_id) for c in s.scalars(sa.select(Call))]
    before = read(url, snapshot)
    assert len([row for row in before if len(row) == 7]) == 2  # the resolved one and a new one

    # the same ops again, as committed-but-unmarked batches: the writer replays them
    journal = Journal(tmp_path / "register.journal")
    for ops in (missed, joined, handled, again):
        journal.append([op_to_json(op) for op in ops])
    journal.append([op_to_json(op) for op in (missed + joined + handled + again)])
    journal.close()
    replayed = writers(url)
    assert replayed.pending > 0
    assert replayed.flush(5)
    assert read(url, snapshot) == before
    assert not replayed.dead_letter_path.exists()


def test_a_caller_without_a_number_still_leaves_a_visible_case(url, writers):
    """R12 every case; nobody can be called: state failed, outcome no-number, listed."""
    writer = writers(url)
    anon = submit(writer, call_ops("anonymous", "missed", T0))
    submit(writer, call_ops("", "silent", T0 + timedelta(minutes=1)))
    typed = submit(writer, call_ops("anonymous", "message", T0 + timedelta(minutes=2),
                                    typed="13600136000"))

    def check(session):
        now = T0 + timedelta(minutes=5)
        listed = callbacks.list_tasks(session, now)
        by_number = {}
        for t in listed:
            by_number.setdefault(t.number, []).append(t)
        assert [(t.state, t.outcome) for t in by_number["anonymous"]] == [
            ("failed", "no-number")] * 2
        [reachable] = by_number["13600136000"]  # R11: the typed number is the one to call
        assert (reachable.state, reachable.typed_number) == ("open", "13600136000")
        assert get_call(session, typed).callback_task_id == reachable.id
        assert get_call(session, anon).callback_task_id == by_number["anonymous"][0].id
        assert callbacks.claim_next(session, "w", datetime(2026, 11, 25, 15, 0, tzinfo=SH),
                                    RULES).id == reachable.id  # failed ones are never claimed
    read(url, check)


def test_the_typed_number_is_kept_next_to_the_caller_id(url, writers):
    writer = writers(url)
    uid = submit(writer, call_ops("13800138000", "message", T0, typed="02166668888"))

    def check(session):
        [task] = tasks(session)
        assert (task.number, task.typed_number, task.reason) == ("13800138000", "02166668888",
                                                                 "message")
        assert call_to_dict(get_call(session, uid), SH)["callback_number"] == "02166668888"
    read(url, check)


def test_outbound_rejected_and_unanswered_outcomes_are_told_apart(url, writers):
    writer = writers(url)
    submit(writer, call_ops("13800138000", "missed", T0, direction="out"))
    submit(writer, call_ops("13800138000", "rejected", T0))
    submit(writer, call_ops("13800138000", "handled", T0))
    assert read(url, tasks) == []
    for n, outcome in enumerate(callbacks.OPENING_OUTCOMES):
        submit(writer, call_ops(f"1380013{n:04d}", outcome, T0))
    assert sorted(read(url, lambda s: [t.reason for t in tasks(s)])) == sorted(
        callbacks.OPENING_OUTCOMES)


class BrokenRules(CallbackRules):
    def first_due(self, call_end):
        raise RuntimeError("a bug in the rules")


def test_a_failing_hook_never_loses_the_register_entry_and_the_sweep_catches_up(
        url, writers, caplog):
    writer = writers(url, rules=BrokenRules(tz=SH))
    with caplog.at_level(logging.ERROR, logger="frontdesk.callbacks"):
        uid = submit(writer, call_ops("13800138000", "missed", T0))
    assert "not linked to a task" in caplog.text
    assert read(url, lambda s: (get_call(s, uid).status, get_call(s, uid).outcome,
                                get_call(s, uid).callback_task_id)) == ("ended", "missed", None)
    assert not writer.dead_letter_path.exists()

    engine = make_engine(url, immediate=True)
    try:
        queue = callbacks.CallbackQueue(engine, RULES)
        assert queue.sweep(now=T0 + timedelta(hours=1)) == 1
        assert queue.sweep(now=T0 + timedelta(hours=1)) == 0
    finally:
        engine.dispose()
    assert read(url, lambda s: get_call(s, uid).callback_task_id) is not None


def test_sweep_links_old_calls_and_resolves_those_the_customer_followed_up(url, writers):
    writer = writers(url, rules=None)  # an agent without the hook
    missed = submit(writer, call_ops("13800138000", "missed", T0))
    handled = submit(writer, call_ops("13800138000", "handled", T0 + timedelta(hours=1)))
    open_one = submit(writer, call_ops("13900139000", "abandoned", T0 + timedelta(hours=1)))
    ancient = submit(writer, call_ops("13700137000", "missed", T0 - timedelta(days=10)))
    engine = make_engine(url, immediate=True)
    try:
        assert callbacks.CallbackQueue(engine, RULES).sweep(now=T0 + timedelta(hours=2)) == 2
    finally:
        engine.dispose()

    def check(session):
        by_number = {t.number: t for t in tasks(session)}
        assert set(by_number) == {"13800138000", "13900139000"}  # older than 3 days: left alone
        assert by_number["13800138000"].outcome == "auto-resolved"
        assert get_call(session, handled).resolved_task_id == by_number["13800138000"].id
        assert get_call(session, missed).callback_task_id == by_number["13800138000"].id
        assert by_number["13900139000"].state == "open"
        assert get_call(session, open_one).callback_task_id == by_number["13900139000"].id
        assert get_call(session, ancient).callback_task_id is None
    read(url, check)


def test_migrations_build_exactly_the_models_with_callbacks(url):
    """The schema check of tests/unit/test_db_schema.py, with the callback tables (SQLite;
    PostgreSQL in tests/integration/test_db_postgres.py)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from db.models import Base

    assert schema.current_revision(url) == schema.head_revision()
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
            indexes = {i["name"]: i for i in sa.inspect(conn).get_indexes("callback_tasks")}
    finally:
        engine.dispose()
    assert indexes["uq_callback_tasks_open_number"]["unique"]


def test_downgrade_to_0001_keeps_every_call_and_event(url, writers):
    """The SQLite migration never copies `calls` (that would cascade into call_events)."""
    writer = writers(url)
    uid = submit(writer, call_ops("13800138000", "missed", T0))
    writer.stop()
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            cfg = schema.alembic_config(url)
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0001")
        names = {c["name"] for c in sa.inspect(engine).get_columns("calls")}
        assert "callback_task_id" not in names
        assert "callback_tasks" not in sa.inspect(engine).get_table_names()
        with engine.connect() as conn:
            assert conn.scalar(sa.select(sa.func.count()).select_from(CallEvent.__table__)) == 1
            assert conn.scalar(sa.text("SELECT uid FROM calls")) == uid
    finally:
        engine.dispose()
    schema.upgrade(url)
    assert read(url, lambda s: get_call(s, uid).callback_task_id) is None


def test_now_is_aware_in_the_task_times(url, writers):
    writer = writers(url)
    submit(writer, call_ops("13800138000", "missed", T0))
    task = read(url, lambda s: tasks(s)[0])
    for value in (task.due_at, task.deadline_at, task.created_at, task.updated_at):
        assert value.tzinfo is not None and value.utcoffset() == timedelta(0)
    assert task.created_at <= datetime.now(timezone.utc)
