"""The one narrow interface between link adapters and the runtime, and a lossy-link wrapper.

Belongs here: ``LinkAdapter`` (what a medium must offer: start with a ``LinkEvents`` sink,
close, count what it dropped), ``LinkEvents`` (what an adapter reports: a link came up
with a function that puts frames on it, a link went down, frames arrived) and
``Impaired``, a wrapper that loses, delays and reorders outgoing frames of any adapter
(tests and benches use it where the kernel has no ``tc netem``). UDP (``udp``), TCP
(``tcp``) and later Bluetooth or Wi-Fi Direct adapters implement ``LinkAdapter``; the core
never sees them, only ``Link`` values and frames.

An adapter may own several core links (TCP: one per connection, so the far end is the
link's only neighbour and ``BROADCAST`` means "to the far end"). It reports each with
``link_up`` and ``link_down``; frames carry the link id and an opaque link address.

Does not belong here: sockets (the adapters), the node and its effects (``runtime``).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Protocol

from mesh_relay.config import Link, LinkAddr
from mesh_relay.effects import Broadcast
from mesh_relay.errors import ConfigError

FrameSender = Callable[[LinkAddr | Broadcast, bytes], None]
"""Put one frame on a link, to one link address or to ``BROADCAST``. Never blocks and
never raises: a frame the medium cannot take now is dropped and counted (the core
retransmits what matters)."""

Received = Sequence[tuple[LinkAddr, bytes]]
"""Frames that arrived on one link in one read: (sender's link address, frame bytes)."""


class LinkEvents(Protocol):
    """What an adapter reports to its runtime. Called on the event loop's thread."""

    def link_up(self, link: Link, send: FrameSender) -> None:
        """``link`` is usable; ``send`` puts frames on it until ``link_down``."""

    def link_down(self, link_id: str) -> None:
        """The link is gone (a closed connection, a socket error)."""

    def frames_received(self, link_id: str, frames: Received) -> None:
        """Frames arrived on ``link_id`` (one batch per read, in arrival order)."""


class LinkAdapter(Protocol):
    """A medium (UDP on a LAN, TCP to peers, a radio) as the runtime sees it."""

    name: str
    stats: Counter[str]
    """What the adapter itself counted: datagrams, bytes, oversize or malformed input
    dropped, sends dropped because the medium was busy."""

    async def start(self, events: LinkEvents) -> None:
        """Open sockets, report links as they come up; return once listening."""

    async def close(self) -> None:
        """Close everything; report ``link_down`` for every link still up."""

    def describe(self) -> dict[str, object]:
        """Where it listens and what it dials (for logs and the control socket)."""


class Impaired:
    """Wraps an adapter: each outgoing frame is lost with probability ``loss``, otherwise
    sent after ``delay`` plus up to ``jitter`` seconds (so frames reorder when ``jitter``
    exceeds their spacing). Seeded, so a test's losses are reproducible in count and
    pattern (not in timing, which belongs to the event loop)."""

    def __init__(
        self,
        inner: LinkAdapter,
        loss: float = 0.0,
        delay: float = 0.0,
        jitter: float = 0.0,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= loss < 1.0:
            raise ConfigError("loss must be within [0, 1)")
        if delay < 0 or jitter < 0:
            raise ConfigError("delay and jitter must not be negative")
        self.inner = inner
        self.name = f"impaired({inner.name})"
        self.stats = inner.stats
        self._loss = loss
        self._delay = delay
        self._jitter = jitter
        self._rng = random.Random(seed)
        self._handles: set[asyncio.TimerHandle] = set()

    async def start(self, events: LinkEvents) -> None:
        await self.inner.start(_ImpairedEvents(self, events))

    async def close(self) -> None:
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()
        await self.inner.close()

    def describe(self) -> dict[str, object]:
        described = self.inner.describe()
        described["impaired"] = {"loss": self._loss, "delay": self._delay, "jitter": self._jitter}
        return described

    def wrap(self, send: FrameSender) -> FrameSender:
        """The impaired version of one link's sender."""
        loop = asyncio.get_running_loop()

        def impaired_send(addr: LinkAddr | Broadcast, data: bytes) -> None:
            if self._loss and self._rng.random() < self._loss:
                self.stats["impaired_lost"] += 1
                return
            wait = self._delay + (self._rng.random() * self._jitter if self._jitter else 0.0)
            if wait <= 0:
                send(addr, data)
                return

            def fire() -> None:
                self._handles.discard(handle)
                send(addr, data)

            handle = loop.call_later(wait, fire)
            self._handles.add(handle)

        return impaired_send


class _ImpairedEvents:
    """The events sink the wrapped adapter sees: it swaps in impaired senders."""

    def __init__(self, owner: Impaired, outer: LinkEvents) -> None:
        self._owner = owner
        self._outer = outer

    def link_up(self, link: Link, send: FrameSender) -> None:
        self._outer.link_up(link, self._owner.wrap(send))

    def link_down(self, link_id: str) -> None:
        self._outer.link_down(link_id)

    def frames_received(self, link_id: str, frames: Received) -> None:
        self._outer.frames_received(link_id, frames)
