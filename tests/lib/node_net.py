"""A line of real `smartmesh node` processes on a private anvil, for integration tests.

Belongs here: ``node_net`` (a context manager: a fresh anvil with everything deployed,
funded parties, one ``scripts.nodes.NodeProcess`` per party, mesh links along the line
A-B-C-...), and small async helpers to drive them through their HTTP API
(``offchain.api.client.ApiClient``). The same harness the demo and the benches use.

Does not belong here: assertions (the tests), the node itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offchain.api.client import ApiClient
from scripts.nodes import NodeProcess
from tests.lib.chain_env import ONE, ChainEnv, Party, chain_env

NAMES = "ABCDEFGH"


@dataclass
class NodeNet:
    env: ChainEnv
    parties: list[Party]
    nodes: list[NodeProcess]
    directory: Path
    clients: dict[str, ApiClient] = field(default_factory=dict)

    @property
    def token(self) -> str:
        return "0x" + self.env.token.hex()

    def address(self, index: int) -> str:
        return self.nodes[index].address

    async def client(self, index: int) -> ApiClient:
        """An open API client of node ``index`` (closed by ``close_clients``)."""
        node = self.nodes[index]
        client = self.clients.get(node.api)
        if client is None:
            client = await node.client().__aenter__()
            self.clients[node.api] = client
        return client

    async def close_clients(self) -> None:
        for client in self.clients.values():
            await client.close()
        self.clients.clear()

    async def open_line(self, deposit: int, both_sides: bool = True) -> None:
        """Open A-B, B-C, ... with ``deposit`` from the left node (and the right one)."""
        for i in range(len(self.nodes) - 1):
            left = await self.client(i)
            await left.open_channel(self.token, self.address(i + 1), deposit)
            if both_sides:
                right = await self.client(i + 1)
                await until_async(
                    lambda i=i, right=right: _has_channel(right, self.token, self.address(i)), 60
                )
                await right.deposit(self.token, self.address(i), deposit)

    def restart(self, index: int, env: dict[str, str] | None = None) -> dict[str, Any]:
        node = self.nodes[index]
        node.stop()
        self.clients.pop(node.api, None)
        return node.start(env)


async def _has_channel(client: ApiClient, token: str, partner: str) -> bool:
    channels = await client.channels(token)
    return any(c["partner"].lower() == partner.lower() for c in channels)


async def until_async(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.1)


@contextmanager
def node_net(
    directory: Path,
    count: int,
    tokens: int = 1_000 * ONE,
    settings: dict[str, dict[str, Any]] | None = None,
    node_settings: dict[int, dict[str, dict[str, Any]]] | None = None,
) -> Iterator[NodeNet]:
    """``count`` node processes in a line on a fresh anvil; stopped at the end.

    ``settings`` go to every node; ``node_settings[i]`` (tables of node.toml) to node ``i``
    only, on top of them (e.g. a fee for the middle node).
    """
    with chain_env(directory) as env:
        parties = env.parties(*[f"node-{NAMES[i]}" for i in range(count)], tokens=tokens)
        nodes: list[NodeProcess] = []
        previous: list[int] = []
        for i, who in enumerate(parties):
            tables = {table: dict(values) for table, values in (settings or {}).items()}
            for table, values in (node_settings or {}).get(i, {}).items():
                tables.setdefault(table, {}).update(values)
            node = NodeProcess(
                NAMES[i], who.key, directory / NAMES[i], env.url, env.manifest,
                peers=previous, settings=tables,
            )  # fmt: skip
            previous = [node.tcp_port]
            nodes.append(node)
        try:
            for node in nodes:
                node.start()
            yield NodeNet(env, parties, nodes, directory)
        finally:
            for node in nodes:
                node.stop()
