"""A private chain for tests of ``offchain.chain``: its own anvil, a full deployment, parties.

Belongs here: ``ChainEnv`` (a fresh anvil started by scripts.anvil, the contracts deployed
by scripts.deployer exactly as operators deploy them, the manifest on disk and its
``Deployment``), the dev-key ``Party`` values, and small synchronous helpers that act as
"someone else" on the chain (mint, approve, raw JSON-RPC such as ``evm_mine``), plus the
node-style SQLite database (WAL, the package's tables). Tests that reorganise the chain,
stop mining or move its clock get a chain of their own instead of the session's.

Does not belong here: the code under test's own calls (tests go through
``offchain.chain``), assertions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from web3 import Web3
from web3.contract import Contract

from offchain.chain import schema
from offchain.chain.artifacts import load_artifact
from offchain.chain.manifest import Deployment, load_deployment
from offchain.chain.rpc import Endpoint, connect
from offchain.protocol.crypto import address_from_private_key, keccak256
from offchain.protocol.types import Address
from scripts.anvil import DEV_PRIVATE_KEYS, Anvil, rpc
from scripts.deployer import TEST_TOKEN, DeployResult, Receipt, Web3Sender, deploy

ONE = 10**18


@dataclass(frozen=True)
class Party:
    """An anvil dev account: key (bytes), raw address and checksummed address."""

    key: bytes
    raw: Address

    @property
    def address(self) -> str:
        return Web3.to_checksum_address(self.raw)

    @property
    def hex_key(self) -> str:
        return "0x" + self.key.hex()


def party(index: int) -> Party:
    key = bytes.fromhex(DEV_PRIVATE_KEYS[index][2:])
    return Party(key, address_from_private_key(key))


def make_party(seed: str) -> Party:
    """A party of its own for one test (a key derived from ``seed``); fund it with ether
    through ``ChainEnv.give_ether``."""
    key = keccak256(seed.encode())
    return Party(key, address_from_private_key(key))


@dataclass
class ChainEnv:
    anvil: Anvil
    w3: Web3
    result: DeployResult
    manifest: Path
    deployment: Deployment

    @property
    def url(self) -> str:
        return self.anvil.url

    @property
    def token(self) -> Address:
        return Address(bytes.fromhex(self.result.address(TEST_TOKEN)[2:]))

    @property
    def network(self) -> Address:
        network = self.deployment.network_of(self.token)
        assert network is not None
        return network

    def contract(self, artifact: str, address: Address) -> Contract:
        return self.w3.eth.contract(
            address=Web3.to_checksum_address(address),
            abi=load_artifact(artifact).abi_list(),
            decode_tuples=True,
        )

    def send(self, who: Party, function: Any) -> Receipt:
        return Web3Sender(self.w3, who.hex_key).send(function)

    def rpc(self, method: str, *params: object) -> Any:
        return rpc(self.url, method, list(params))

    def mine(self, blocks: int = 1) -> None:
        self.rpc("anvil_mine", hex(blocks))

    def head(self) -> int:
        return int(self.w3.eth.block_number)

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def give_ether(self, *parties: Party, amount: int = 100 * ONE) -> None:
        for who in parties:
            self.rpc("anvil_setBalance", who.address, hex(amount))

    def parties(self, *seeds: str, tokens: int = 1000 * ONE) -> list[Party]:
        """Fresh parties with ether, test tokens and the token network approved."""
        made = [make_party(seed) for seed in seeds]
        self.give_ether(*made)
        for who in made:
            self.fund(who, tokens)
        return made

    def fund(self, who: Party, amount: int = 1000 * ONE, network: Address | None = None) -> None:
        """Mint test tokens to ``who`` and approve the token network for all of them."""
        token = self.contract("test_token", self.token)
        self.send(who, token.functions.mint(who.address, amount))
        spender = Web3.to_checksum_address(network or self.network)
        self.send(who, token.functions.approve(spender, 2**256 - 1))

    def balance(self, who: Party) -> int:
        token = self.contract("test_token", self.token)
        return int(token.functions.balanceOf(who.address).call())


@contextmanager
def chain_env(directory: Path) -> Iterator[ChainEnv]:
    """A fresh anvil with everything deployed; the manifest goes to ``directory``."""
    with Anvil.start() as node:
        w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 30}))
        manifest = directory / "31337.json"
        result = deploy(w3, Web3Sender(w3, DEV_PRIVATE_KEYS[0]), path=manifest, log=lambda _: None)
        yield ChainEnv(node, w3, result, manifest, load_deployment(manifest))


@asynccontextmanager
async def endpoint(url: str, timeout: float = 5.0) -> AsyncIterator[Endpoint]:
    """An ``Endpoint`` on ``url`` for the running event loop, disconnected at the end."""
    w3 = connect(url, timeout)
    try:
        yield Endpoint(w3)
    finally:
        await w3.provider.disconnect()


def open_db(path: Path) -> sqlite3.Connection:
    """The node's kind of database: WAL mode, the chain package's tables."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    schema.create_tables(conn)
    return conn
