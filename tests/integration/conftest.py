"""Fixtures for integration tests on a real anvil node: the node, web3, a full deployment.

Belongs here: one anvil per test session (per xdist worker), started by scripts.anvil on
a free loopback port and stopped at the end; a web3 connection to it; and the contracts
deployed through scripts.deployer exactly as `make demo` and operators deploy them
(shipped artifacts, locally signed transactions from anvil's first dev key), with the
manifest in a temporary folder. Tests that move time (evm_increaseTime) share this
chain, so none may assume the clock stands still.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from web3 import Web3

from scripts.anvil import DEV_PRIVATE_KEYS, Anvil
from scripts.deployer import DeployResult, Web3Sender, deploy


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    """A real anvil node (chain id 31337, five funded dev accounts)."""
    with Anvil.start() as node:
        yield node


@pytest.fixture(scope="session")
def w3(anvil: Anvil) -> Web3:
    return Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 30}))


@pytest.fixture(scope="session")
def deployer_key() -> str:
    return DEV_PRIVATE_KEYS[0]


@pytest.fixture(scope="session")
def deployments_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("deployments")


@pytest.fixture(scope="session")
def deployed(w3: Web3, deployer_key: str, deployments_dir: Path) -> DeployResult:
    """Everything deployed once per session: registry, implementation, secret registry,
    a TestToken and its token network."""
    return deploy(
        w3,
        Web3Sender(w3, deployer_key),
        path=deployments_dir / "31337.json",
        log=lambda _line: None,
    )
