"""Fixtures of the contract property tests: the session's one deployment.

titanoboa's pytest plugin rolls back everything a test, a fixture or a hypothesis example
does once it ends, so a deployment made inside a test would vanish before the next one.
Made here, in a session-scoped fixture, it lives until the session ends and every state
machine run starts from it. Modules that need it say
`pytestmark = pytest.mark.usefixtures("token_network_world")`.
"""

import pytest

from tests.property.test_token_network_model import World, world


@pytest.fixture(scope="session")
def token_network_world() -> World:
    """The deployment and funded accounts, created on first use and kept for the session."""
    return world()
