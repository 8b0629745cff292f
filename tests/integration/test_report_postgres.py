"""The report's hour summary on PostgreSQL (several agents and supervisors share one register):
the same days as tests/unit/test_rollup.py, written by the real RegisterWriter; the report read
from the summary equals the report read from the calls, refresh is idempotent, and two
supervisors refreshing at once (advisory lock, primary key) count every call once."""
from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from db import reports, rollup
from db.engine import make_engine, session_factory
from db.models import Call, CallHour
from softphone.cli import main
from tests.unit.test_rollup import (SAME, ZONES, assert_same_report, build, build_register, table,
                                    windows)

pytest_plugins = ["tests.rig.postgres"]
pytestmark = pytest.mark.integration


@pytest.fixture
def pg_register(pg_url, tmp_path):
    return build_register(tmp_path, url=pg_url)


def test_summarised_report_equals_the_calls_on_postgresql(pg_register, monkeypatch):
    day = pg_register
    now = datetime.now(timezone.utc)
    result = CliRunner().invoke(main, ["report", "--all", "--json", *day.args()])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["calls"] == len(day.calls) and figures["summary_until"] is not None
    written = table(day.url)
    assert written
    assert rollup.refresh_url(day.url, now) == 0 and table(day.url) == written  # idempotent
    for exact in (True, False):
        monkeypatch.setattr(reports, "EXACT_CALLS", 100_000 if exact else -1)
        for since, until in windows(now):
            for tz in ZONES:
                summarised = build(day.url, summary=True, tz=tz, since=since, until=until, now=now)
                raw = build(day.url, summary=False, tz=tz, since=since, until=until, now=now)
                assert_same_report(summarised, raw, exact)
    assert {k: figures[k] for k in SAME} == {
        k: v for k, v in build(day.url, summary=False).items() if k in SAME}


def test_two_supervisors_refreshing_at_once_on_postgresql(pg_register):
    day = pg_register
    now = datetime.now(timezone.utc)
    barrier = threading.Barrier(2)
    results: list[int] = []
    errors: list[BaseException] = []

    def supervisor() -> None:
        engine = make_engine(day.url)
        try:
            with session_factory(engine)() as session:
                barrier.wait(10)
                results.append(rollup.refresh(session, now, chunk_calls=2))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=supervisor) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 2
    together = table(day.url)
    assert sum(results) == len(together) > 0
    engine = make_engine(day.url)
    try:
        with session_factory(engine)() as session:
            until = rollup.summarised_until(session)
            assert session.scalar(select(func.sum(CallHour.calls))) == session.scalar(
                select(func.count()).select_from(Call).where(
                    Call.started_at < rollup.hour_start(until)))
            # the last guard as well: the same rows inserted again change nothing
            start = rollup.hour_of(min(c.started_at for c in day.calls))
            rows = rollup.summarise(session, start, until)
            session.rollback()
            with session.begin():
                rollup._insert(session, rows)
    finally:
        engine.dispose()
    assert table(day.url) == together
    assert rollup.hour_start(until) <= now - rollup.SETTLE + timedelta(hours=1)
