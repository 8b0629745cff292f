"""Shared fixtures: a throw-away PostgreSQL cluster (tests/rig/postgres.py) and the SIP rig
(Kamailio, SIPp, baresip, stock pyVoIP, raw SIP peers: tests/rig/fixtures.py)."""
pytest_plugins = ["tests.rig.postgres", "tests.rig.fixtures"]
