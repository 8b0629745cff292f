"""Shared fixtures: the throw-away PostgreSQL cluster (tests/rig/postgres.py)."""
pytest_plugins = ["tests.rig.postgres"]
