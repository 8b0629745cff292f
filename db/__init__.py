"""The telephone reception register and the callback queue: SQLAlchemy 2.0 models, Alembic migrations, services.

Uses nothing but sqlalchemy, alembic and the standard library.

* ``models``    Call, CallEvent on a Base with a naming convention; UTCDateTime (R16, R17)
* ``schema``    upgrade(url) / current_revision(url): the schema only through ``migrations/``
* ``engine``    make_engine(url) (SQLite WAL + FULL + busy_timeout + foreign keys; PostgreSQL
  pre-ping), session_factory(engine)
* ``ops``       OpenCall, UpdateCall, AddEvent, CloseCall: idempotent, by call uid
* ``writer``    RegisterWriter: the single writer; journal first, never blocks the call (R18)
* ``journal``   the write-ahead journal and the dead-letter file behind the writer
* ``apply``     how an op changes the database; outage or bad op
* ``register``  reading the register: list_calls, get_call, call_to_dict … (the CLI's services)
"""
