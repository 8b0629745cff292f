"""The telephone reception register and the callback queue: SQLAlchemy 2.0 models, Alembic migrations, services."""
