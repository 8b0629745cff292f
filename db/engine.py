"""Engines for the register: SQLite (the single-agent default) or PostgreSQL (several agents).

SQLite: the parent directory is created; every connection gets journal_mode=WAL,
synchronous=FULL, busy_timeout (5000 ms) and foreign_keys=ON. pysqlite's own transaction handling
is switched off and SQLAlchemy emits BEGIN itself, so that SAVEPOINTs and transactional DDL work
(SQLAlchemy docs, "Transactions with SQLite and the sqlite3 driver"); a writer asks for
`immediate=True` and gets BEGIN IMMEDIATE: a deferred BEGIN that later writes fails at once with
"database is locked" when another connection committed in between, busy_timeout or not.

PostgreSQL (postgresql+psycopg://…): pool_pre_ping, so that connections broken by a server
restart are replaced, and a connect timeout, so that a dead server cannot hang a thread.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, *, busy_timeout_ms: int = 5000, immediate: bool = False,
                connect_timeout_s: int = 5, **kwargs: Any) -> Engine:
    """An engine for `url`; extra keyword arguments go to `sqlalchemy.create_engine`."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        return _sqlite_engine(u, busy_timeout_ms, immediate, **kwargs)
    if u.get_backend_name() == "postgresql":
        kwargs.setdefault("pool_pre_ping", True)
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args.setdefault("connect_timeout", connect_timeout_s)
        return create_engine(u, connect_args=connect_args, **kwargs)
    return create_engine(u, **kwargs)


def _sqlite_engine(u: Any, busy_timeout_ms: int, immediate: bool, **kwargs: Any) -> Engine:
    database = u.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(u, **kwargs)
    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions on `engine`; objects stay readable after commit (expire_on_commit=False)."""
    return sessionmaker(engine, expire_on_commit=False)
