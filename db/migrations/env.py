"""Alembic environment of the register.

Used programmatically by db.schema.upgrade(url) (which hands over an open connection in
`config.attributes["connection"]`), or by developers with db/alembic.ini:
    .venv/bin/alembic -c db/alembic.ini upgrade head      (URL: -x url=… or $FRONTDESK_DB)
render_as_batch on SQLite, which can barely ALTER a table (Alembic docs, batch.rst).
"""
from __future__ import annotations

import os

from alembic import context
from sqlalchemy.engine import Connection

from db.engine import make_engine
from db.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get("FRONTDESK_DB")
    url = url or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: pass -x url=…, set FRONTDESK_DB or sqlalchemy.url")
    return url


def _configure(**kwargs: object) -> None:
    context.configure(target_metadata=target_metadata, compare_type=True, **kwargs)


def run_migrations_offline() -> None:
    url = _url()
    _configure(url=url, literal_binds=True, render_as_batch=url.startswith("sqlite"),
               dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run_online(connection: Connection) -> None:
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite",
               transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_online(connection)
        return
    engine = make_engine(_url())
    try:
        with engine.begin() as connection:
            _run_online(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
