"""Neighbour discovery: signed, fresh hellos; who is adjacent on which link, until when.

Belongs here: the neighbour table and the hello rules. A hello is accepted when its
timestamp is within ``hello_tolerance`` of our clock, its signature recovers an address
other than ours, and its timestamp is later than the last hello accepted from that
address on that link (so a replayed hello is ignored; the tolerance is shorter than the
neighbour timeout, so a replay can never revive a neighbour that timed out). An accepted
hello binds the address to the link address it came from; a neighbour not heard for
``neighbour_timeout`` is gone.

Does not belong here: routes (``routing``), what a neighbour may send (``reliability``
limits rates per link address, known neighbour or not).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

from mesh_relay.config import LinkAddr, MeshConfig
from mesh_relay.errors import EnvelopeError
from mesh_relay.frames import Hello, hello_digest
from mesh_relay.identity import Address, recover
from mesh_relay.routing import NeighbourKey


@dataclass(slots=True)
class Neighbour:
    """One adjacent node on one link."""

    key: NeighbourKey
    address: Address
    cost: int
    last_heard: float
    seqno: int


class HelloVerdict(enum.Enum):
    """What ``NeighbourTable.receive_hello`` concluded."""

    NEW = "new"
    REFRESHED = "refreshed"
    OWN = "own"
    """Our own hello came back (a broadcast echo): ignored, not an error."""
    STALE = "stale hello (timestamp outside the tolerance window)"
    REPLAYED = "replayed hello"
    BAD_SIGNATURE = "hello signature does not verify"
    FULL = "neighbour table full"


@dataclass(slots=True)
class HelloResult:
    """The verdict, the neighbour when accepted, and a neighbour it replaced, if any."""

    verdict: HelloVerdict
    neighbour: Neighbour | None = None
    replaced: NeighbourKey | None = None


class NeighbourTable:
    """Neighbours by (link id, link address), with replay state per (link id, address)."""

    def __init__(self, me: Address, config: MeshConfig) -> None:
        self._me = me
        self._config = config
        self._by_key: dict[NeighbourKey, Neighbour] = {}
        self._by_address: dict[tuple[str, Address], NeighbourKey] = {}
        self._last_hello_ms: dict[tuple[str, Address], int] = {}

    def receive_hello(
        self, link_id: str, link_addr: LinkAddr, hello: Hello, cost: int, now: float
    ) -> HelloResult:
        """Check a hello from ``link_addr`` on ``link_id``; update the table."""
        tolerance_ms = self._config.hello_tolerance * 1000
        if abs(hello.time_ms - now * 1000) > tolerance_ms:
            return HelloResult(HelloVerdict.STALE)
        try:
            address, _ = recover(
                hello_digest(hello.seqno, hello.time_ms, hello.nonce), hello.signature
            )
        except EnvelopeError:
            return HelloResult(HelloVerdict.BAD_SIGNATURE)
        if address == self._me:
            return HelloResult(HelloVerdict.OWN)
        replay_key = (link_id, address)
        if self._last_hello_ms.get(replay_key, -1) >= hello.time_ms:
            return HelloResult(HelloVerdict.REPLAYED)
        key: NeighbourKey = (link_id, link_addr)
        neighbour = self._by_key.get(key)
        if neighbour is not None and neighbour.address == address:
            self._last_hello_ms[replay_key] = hello.time_ms
            neighbour.last_heard = now
            neighbour.seqno = hello.seqno
            return HelloResult(HelloVerdict.REFRESHED, neighbour)
        replaced: NeighbourKey | None = None
        if neighbour is not None:
            # Another node now answers at this link address: the old one is gone.
            replaced = key
            self._remove(key)
        elif (moved := self._by_address.get(replay_key)) is not None:
            # The same node at a new link address on the same link (a new IP address).
            replaced = moved
            self._remove(moved)
        if len(self._by_key) >= self._config.max_neighbours or (
            len(self._last_hello_ms) >= 4 * self._config.max_neighbours
            and not self._gc_replay_state(now)
        ):
            return HelloResult(HelloVerdict.FULL, replaced=replaced)
        self._last_hello_ms[replay_key] = hello.time_ms
        neighbour = Neighbour(key, address, cost, now, hello.seqno)
        self._by_key[key] = neighbour
        self._by_address[replay_key] = key
        return HelloResult(HelloVerdict.NEW, neighbour, replaced)

    def get(self, key: NeighbourKey) -> Neighbour | None:
        """The neighbour at ``key``, if any."""
        return self._by_key.get(key)

    def on_link(self, link_id: str) -> list[Neighbour]:
        """Every neighbour on one link."""
        return [n for n in self._by_key.values() if n.key[0] == link_id]

    def expire(self, now: float) -> list[NeighbourKey]:
        """Remove neighbours not heard for ``neighbour_timeout``; return their keys."""
        deadline = now - self._config.neighbour_timeout
        gone = [key for key, n in self._by_key.items() if n.last_heard <= deadline]
        for key in gone:
            self._remove(key)
        self._gc_replay_state(now)
        return gone

    def drop_link(self, link_id: str) -> list[NeighbourKey]:
        """Remove every neighbour of a link that went down; return their keys."""
        gone = [key for key in self._by_key if key[0] == link_id]
        for key in gone:
            self._remove(key)
        return gone

    def _remove(self, key: NeighbourKey) -> None:
        neighbour = self._by_key.pop(key)
        self._by_address.pop((key[0], neighbour.address), None)

    def _gc_replay_state(self, now: float) -> bool:
        # A hello older than the tolerance is refused as stale anyway, so its replay state
        # can go. True when something was freed.
        horizon = (now - self._config.hello_tolerance) * 1000
        old = [k for k, ms in self._last_hello_ms.items() if ms < horizon]
        for k in old:
            del self._last_hello_ms[k]
        return bool(old)

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[Neighbour]:
        return iter(list(self._by_key.values()))
