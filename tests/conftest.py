"""Shared fixtures: a throw-away PostgreSQL cluster (tests/rig/postgres.py) and the SIP rig
(Kamailio, SIPp, baresip, stock pyVoIP, raw SIP peers: tests/rig/fixtures.py)."""
pytest_plugins = ["tests.rig.postgres", "tests.rig.fixtures"]

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.agentproc import AgentProcess  # noqa: E402
from tests.rig.ports import free_endpoint  # noqa: E402


@pytest.fixture
def agent_factory(tmp_path: Path):
    """``make(**AgentProcess kwargs) -> started agent`` on a fresh 127.0.0.x:port; stopped at teardown."""
    made: list[AgentProcess] = []

    def make(start: bool = True, **kw) -> AgentProcess:
        endpoint = kw.pop("listen", None) or free_endpoint()
        agent = AgentProcess(tmp_path / f"agent{len(made)}", listen=(endpoint[0], endpoint[1]), **kw)
        made.append(agent)
        return agent.start() if start else agent

    yield make
    for agent in made:
        try:
            agent.stop()
        finally:
            agent.kill()
