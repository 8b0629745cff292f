"""The register on a real PostgreSQL (several agents share one): migrations, the writer's round
trip, a value the server rejects, and a server outage that loses nothing (R16-R18)."""
from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from db import schema
from db.engine import make_engine, session_factory
from db.models import Base
from db.ops import AddEvent, CloseCall, OpenCall, UpdateCall, new_uid
from db.register import call_events, call_to_dict, get_call
from db.writer import RegisterWriter

# pg_server, pg_database_factory, pg_url; registered once even if the root conftest also lists it
pytest_plugins = ["tests.rig.postgres"]
pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 25, 13, 3, 5, 123456, tzinfo=timezone.utc)
BEIJING = timezone(timedelta(hours=8))
LOGGER = "frontdesk.register"


@pytest.fixture
def url(pg_url):
    schema.upgrade(pg_url)
    return pg_url


def call_ops(uid: str, events: int) -> list:
    answered = T0 + timedelta(seconds=5)
    ops = [OpenCall(uid, dict(call_id=f"{uid}@pbx", agent="desk2", caller="1001",
                              called="8000", started_at=T0.astimezone(BEIJING))),
           UpdateCall(uid, dict(status="answered", answered_at=answered, ring_ms=4970,
                                rings=1, r1_met=True, codec="PCMA"))]
    ops += [AddEvent(uid, i, answered + timedelta(milliseconds=20 * i), 5000 + 20 * i, "line",
                     {"n": i, "level_dbfs": -31.5}) for i in range(1, events + 1)]
    ops.append(CloseCall(uid, dict(outcome="message", ended_at=answered + timedelta(seconds=9),
                                   talk_ms=9000, hung_up_first="caller", category="找人")))
    return ops


def read(url: str, fn):
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            return fn(session)
    finally:
        engine.dispose()


def test_migrations_build_exactly_the_models(pg_url):
    assert schema.current_revision(pg_url) is None
    schema.upgrade(pg_url)
    assert schema.current_revision(pg_url) == schema.head_revision()
    engine = make_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
            kinds = dict(conn.execute(sa.text(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'calls' AND column_name IN ('started_at', 'scripts')")).all())
    finally:
        engine.dispose()
    assert kinds == {"started_at": "timestamp with time zone", "scripts": "json"}


def test_writer_round_trip(url, tmp_path):
    uid = new_uid()
    with RegisterWriter(url, tmp_path / "register.journal") as writer:
        for op in call_ops(uid, events=5):
            writer.submit(op)
        writer.submit(UpdateCall(uid, {"caller_name": "x" * 200}))  # longer than String(128)
        assert writer.flush(10)
        assert writer.healthy and writer.pending == 0

    def check(session):
        call = get_call(session, uid)
        d = call_to_dict(call, BEIJING)
        assert d["started_at"] == "2026-11-25T21:03:05.123+08:00"
        assert (d["status"], d["outcome"], d["category"], d["caller_name"]) == (
            "ended", "message", "找人", None)
        assert call.answered_at == T0 + timedelta(seconds=5)
        assert call.answered_at.utcoffset() == timedelta(0)
        events = call_events(session, call)
        assert [e.seq for e in events] == [1, 2, 3, 4, 5]
        assert events[0].data == {"n": 1, "level_dbfs": -31.5}
    read(url, check)
    dead = [json.loads(line) for line in writer.dead_letter_path.read_text().splitlines()]
    assert len(dead) == 1 and "DataError" in dead[0]["error"]  # a bad value, not an outage


def test_server_outage_loses_nothing(url, pg_server, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    journal = tmp_path / "register.journal"
    writer = RegisterWriter(url, journal)
    writer.start()
    try:
        before, during = new_uid(), new_uid()
        for op in call_ops(before, events=3):
            writer.submit(op)
        assert writer.flush(10)  # the pool now holds a connection the outage will break

        pg_server.stop()
        try:
            ops = call_ops(during, events=50)
            t0 = time.perf_counter()
            for op in ops:
                writer.submit(op)
            submit_s = time.perf_counter() - t0
            assert submit_s < 0.5, f"{len(ops)} submits took {submit_s:.3f} s"
            deadline = time.monotonic() + 10
            while writer.healthy and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not writer.healthy and writer.last_error.startswith("database:")
            assert not writer.flush(0.5)
            assert writer.pending == len(ops)
            journaled = sum(len(json.loads(line).get("ops", []))
                            for line in journal.read_text().splitlines())
            assert journaled == len(ops)
        finally:
            pg_server.start()
        assert writer.flush(15)
        assert writer.healthy and writer.pending == 0
    finally:
        writer.stop()

    def check(session):
        assert get_call(session, before).status == "ended"
        call = get_call(session, during)
        assert (call.status, call.outcome) == ("ended", "message")
        assert [e.seq for e in call_events(session, call)] == list(range(1, 51))
    read(url, check)
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "database unavailable" in warnings[0].getMessage()
    assert any("database is back" in r.getMessage() for r in caplog.records)
    assert journal.read_bytes() == b""
