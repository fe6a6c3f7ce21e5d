"""Fixtures for contract tests: one deployment per session, rolled back after each test."""

from collections.abc import Iterator

import boa
import pytest

from tests.lib import harness
from tests.lib.harness import Account, Deployment


@pytest.fixture(scope="session")
def deployed() -> Deployment:
    return harness.deploy()


@pytest.fixture
def d(deployed: Deployment) -> Iterator[Deployment]:
    """The deployment, with every change the test makes undone afterwards."""
    with boa.env.anchor():
        yield deployed


@pytest.fixture(scope="session")
def accounts() -> list[Account]:
    return [harness.make_account(i) for i in range(8)]


@pytest.fixture
def funded(d: Deployment, accounts: list[Account]) -> list[Account]:
    """Accounts 0..3 holding 10**24 tokens each, the network approved."""
    for account in accounts[:4]:
        d.fund(account, 10**24)
    return accounts
