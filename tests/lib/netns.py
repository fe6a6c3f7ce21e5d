"""The island harness (``scripts.netns``) for tests, and a net of node processes on it.

Belongs here: the names of ``scripts.netns`` the tests use, and ``island_net``: a fresh
anvil with everything deployed (``chain_env``), funded parties, one node process per
party placed on an island (network namespaces or loopback), mesh links along the line
A-B-C-..., all stopped and the island removed at the end. The nodes are driven through
``NodeNet`` (``tests.lib.node_net``), whose API clients carry each node's token.

Does not belong here: the island itself (``scripts.netns``, which the demo uses too),
assertions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scripts.netns import (
    Island,
    IslandError,
    Kind,
    LoopbackIsland,
    NetnsIsland,
    Place,
    available,
    cleanup_stale,
    island,
    leftovers,
    unavailable_reason,
)
from tests.lib.chain_env import ONE, chain_env
from tests.lib.node_net import NAMES, NodeNet

__all__ = [
    "Island",
    "IslandError",
    "Kind",
    "LoopbackIsland",
    "NetnsIsland",
    "Place",
    "available",
    "cleanup_stale",
    "island",
    "island_net",
    "leftovers",
    "unavailable_reason",
]


@contextmanager
def island_net(
    directory: Path,
    count: int,
    kind: Kind,
    tokens: int = 1_000 * ONE,
    settings: dict[str, dict[str, Any]] | None = None,
    node_settings: dict[int, dict[str, dict[str, Any]]] | None = None,
) -> Iterator[tuple[NodeNet, Island]]:
    """``count`` node processes on an island of ``kind``, in a line (each dials the one
    before it), on a fresh anvil; stopped, and the island removed, at the end.

    ``settings`` go to every node; ``node_settings[i]`` (tables of node.toml) to node ``i``
    only, on top of them.
    """
    with chain_env(directory) as env:
        parties = env.parties(*[f"node-{NAMES[i]}" for i in range(count)], tokens=tokens)
        with island(count, env.url, kind) as isle:
            nodes = []
            for i, who in enumerate(parties):
                tables = {table: dict(values) for table, values in (settings or {}).items()}
                for table, values in (node_settings or {}).get(i, {}).items():
                    tables.setdefault(table, {}).update(values)
                node = isle.node(
                    i, NAMES[i], who.key, directory / NAMES[i], env.manifest,
                    dial=[i - 1] if i else [], settings=tables,
                )  # fmt: skip
                nodes.append(node)
            try:
                for node in nodes:
                    node.start()
                yield NodeNet(env, parties, nodes, directory), isle
            finally:
                for node in nodes:
                    node.stop()
