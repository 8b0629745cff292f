"""The register's schema comes only from the Alembic migrations and matches the models (R16/17)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from db import schema
from db.engine import make_engine, session_factory
from db.models import Base, Call, CallEvent


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path}/var/register.db"


def diff(url: str, metadata: sa.MetaData) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()


def test_migrations_build_exactly_the_models(url):
    assert schema.current_revision(url) is None
    schema.upgrade(url)
    assert schema.current_revision(url) == schema.head_revision() == "0004"
    assert diff(url, Base.metadata) == []


def test_the_comparison_can_fail(url):
    """A model the migrations do not build shows up as a difference."""
    schema.upgrade(url)
    changed = sa.MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["calls"].append_column(sa.Column("callback_task", sa.Integer()))
    found = diff(url, changed)
    assert [(d[0], d[3].name) for d in found] == [("add_column", "callback_task")]


def test_upgrade_is_repeatable_and_downgrade_removes_everything(url):
    schema.upgrade(url)
    schema.upgrade(url)  # already at head: nothing to do, no error
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            cfg = schema.alembic_config(url)
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "base")
        assert set(sa.inspect(engine).get_table_names()) == {"alembic_version"}
    finally:
        engine.dispose()
    schema.upgrade(url)
    assert diff(url, Base.metadata) == []


def test_sqlite_engine_settings_and_parent_directory(tmp_path):
    url = f"sqlite:///{tmp_path}/a/b/register.db"
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            pragma = {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                      for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")}
    finally:
        engine.dispose()
    assert (tmp_path / "a" / "b").is_dir()
    assert pragma == {"journal_mode": "wal", "synchronous": 2, "busy_timeout": 5000,
                      "foreign_keys": 1}


def test_times_read_back_aware_utc_and_naive_times_are_refused(url):
    schema.upgrade(url)
    engine = make_engine(url)
    Session = session_factory(engine)
    beijing = timezone(timedelta(hours=8))
    started = datetime(2026, 11, 25, 21, 3, 5, 123456, tzinfo=beijing)
    try:
        with Session.begin() as session:
            session.add(Call(uid="u1", call_id="c1", agent="a", caller="1001", called="8000",
                             started_at=started))
        with Session() as session:
            call = session.scalars(sa.select(Call)).one()
            assert call.started_at == started
            assert call.started_at.utcoffset() == timedelta(0)
            assert call.started_at.hour == 13
            assert call.created_at.tzinfo is not None
            # comparisons against other zones work (bind values are converted to UTC)
            assert session.scalar(sa.select(sa.func.count()).select_from(Call)
                                  .where(Call.started_at >= started)) == 1
        with pytest.raises(sa.exc.StatementError, match="naive"):
            with Session.begin() as session:
                session.add(Call(uid="u2", call_id="c2", agent="a", caller="1", called="2",
                                 started_at=datetime(2026, 11, 25, 13, 3, 5)))
    finally:
        engine.dispose()


def test_deleting_a_call_deletes_its_events(url):
    """ON DELETE CASCADE, which SQLite honours only with foreign_keys=ON."""
    schema.upgrade(url)
    engine = make_engine(url)
    now = datetime.now(timezone.utc)
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(Call).values(id=1, uid="u", call_id="c", agent="a",
                                                caller="1", called="2", started_at=now,
                                                created_at=now, updated_at=now))
            conn.execute(sa.insert(CallEvent).values(call_pk=1, seq=1, at=now, t_ms=0,
                                                     kind="ringing"))
            conn.execute(sa.delete(Call))
            assert conn.scalar(sa.select(sa.func.count()).select_from(CallEvent)) == 0
    finally:
        engine.dispose()
