"""Relay accounting: what this node forwarded for whom, for the payment layer to pay later.

Belongs here: per (origin, destination) pair, the frames, bytes and messages this node
handed on to the next hop (counted when the next hop acknowledged them, so only work
that succeeded counts), exposed read-only. The origin and destination are those of the
routed header, which relays cannot authenticate (a fragment's signature is checked only
at the destination): the figures are this node's own observations, not proofs; a
payment scheme must pair them with something the endpoints sign (docs/mesh.md).

The table is bounded (``max_pairs``): relayed frames name origins a relay cannot check,
so a neighbour could invent pairs without end; beyond the bound, new pairs are added up
under ``OVERFLOW`` (the zero address twice), which no real node can be.

Does not belong here: prices, payments, anything of ``offchain``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from mesh_relay.identity import ZERO_ADDRESS, Address

OVERFLOW = (ZERO_ADDRESS, ZERO_ADDRESS)
"""The key under which pairs beyond the bound are counted together."""


@dataclass(frozen=True, slots=True)
class RelayCount:
    """Totals relayed for one (origin, destination) pair."""

    frames: int = 0
    bytes: int = 0
    messages: int = 0


class RelayAccounting:
    """Counters per (origin, destination), growing only; ``view`` is read-only."""

    __slots__ = ("_counts", "_view", "max_pairs")

    def __init__(self, max_pairs: int = 65_536) -> None:
        self.max_pairs = max_pairs
        self._counts: dict[tuple[Address, Address], RelayCount] = {}
        self._view = MappingProxyType(self._counts)

    def record(self, origin: Address, destination: Address, size: int, first: bool) -> None:
        """Count one frame of ``size`` bytes; ``first`` marks a message's first fragment."""
        key = (origin, destination)
        old = self._counts.get(key)
        if old is None and len(self._counts) >= self.max_pairs:
            key = OVERFLOW
            old = self._counts.get(key)
        if old is None:
            self._counts[key] = RelayCount(1, size, 1 if first else 0)
        else:
            self._counts[key] = RelayCount(
                old.frames + 1, old.bytes + size, old.messages + (1 if first else 0)
            )

    def view(self) -> Mapping[tuple[Address, Address], RelayCount]:
        """A live, read-only mapping (origin, destination) -> ``RelayCount``."""
        return self._view
