"""Telling a database outage (keep everything, retry) from a bad op (dead-letter it) (R18)."""
from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import exc as sa_exc

from db.apply import BadOp, is_outage


class PgError(Exception):
    """Stands in for a psycopg error: what matters is its sqlstate."""

    def __init__(self, sqlstate):
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def wrapped(cls, orig, **kw):
    return cls("INSERT …", {}, orig, **kw)


@pytest.mark.parametrize("exc, outage", [
    (wrapped(sa_exc.OperationalError, sqlite3.OperationalError("database is locked")), True),
    (wrapped(sa_exc.OperationalError, sqlite3.OperationalError("disk I/O error")), True),
    (wrapped(sa_exc.OperationalError, sqlite3.OperationalError("no such table: calls")), True),
    (wrapped(sa_exc.DatabaseError, sqlite3.DatabaseError("file is not a database")), True),
    (wrapped(sa_exc.IntegrityError, sqlite3.IntegrityError("CHECK constraint failed")), False),
    (wrapped(sa_exc.InterfaceError, sqlite3.InterfaceError("Error binding parameter 1")), False),
    (wrapped(sa_exc.OperationalError, PgError("08006")), True),   # connection failure
    (wrapped(sa_exc.OperationalError, PgError("57P01")), True),   # admin shutdown
    (wrapped(sa_exc.OperationalError, PgError("53100")), True),   # disk full
    (wrapped(sa_exc.ProgrammingError, PgError("42P01")), True),   # table missing: not migrated
    (wrapped(sa_exc.OperationalError, PgError("40P01")), True),   # deadlock: retry
    (wrapped(sa_exc.DataError, PgError("22001")), False),         # string too long
    (wrapped(sa_exc.IntegrityError, PgError("23514")), False),    # CHECK violation
    (wrapped(sa_exc.OperationalError, PgError(None)), True),      # client side: cannot connect
    (wrapped(sa_exc.ProgrammingError, PgError(None)), False),     # cannot adapt a value
    (wrapped(sa_exc.DBAPIError, PgError(None), connection_invalidated=True), True),
    (ConnectionRefusedError(), True),
    (PermissionError("mkdir"), True),
    (BadOp("no call"), False),
    (ValueError("naive datetime"), False),
    (TypeError("not JSON"), False),
])
def test_outage_or_bad_op(exc, outage):
    assert is_outage(exc) is outage
