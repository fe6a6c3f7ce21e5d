"""TCP to known peers: length-prefixed frames, one core link per connection.

Belongs here: ``TcpLinks``, the adapter that listens for relays dialling in and dials
configured peers (reconnecting with backoff), for when an internet or LAN path exists
but broadcast does not reach the peer. Each connection is one core ``Link`` with
``broadcast=True``: its only neighbour is the far end, so ``BROADCAST`` means "to the
far end" and the core needs no list of peers.

The stream: each side first writes the 4-byte preamble ``SMT1``, then records of
``length u16 (big-endian) | frame``. A wrong preamble, a zero length or a length above
the link's MTU means the stream is not ours or is broken: there is no way to find the
next frame boundary, so the connection is counted and closed (a dialled peer is dialled
again later). Frames the node emits in one event-loop turn go out in one write, so
a busy link costs a system call per turn, not per frame; a connection whose kernel and
transport buffers hold more than ``_HIGH_WATER`` bytes drops new frames (counted) rather
than buffer without bound — the core retransmits what needs it.

Does not belong here: frame contents (the core); UDP and discovery (``udp``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import Counter

from mesh_relay.config import Link, LinkAddr
from mesh_relay.effects import Broadcast
from mesh_relay.errors import ConfigError
from mesh_relay.links import LinkEvents

Endpoint = tuple[str, int]

PREAMBLE = b"SMT1"
_LENGTH = 2
_HIGH_WATER = 1 << 20
_RECONNECT_MIN = 0.2
_RECONNECT_MAX = 10.0


class TcpLinks:
    """Listen on ``listen`` (if given) and keep a connection to each of ``peers``."""

    def __init__(
        self,
        listen: Endpoint | None,
        peers: list[Endpoint],
        mtu: int,
        cost: int = 1,
        name: str = "tcp",
    ) -> None:
        if mtu > 0xFFFF:
            raise ConfigError("TCP link MTU must fit the 16-bit length prefix")
        self.name = name
        self.stats: Counter[str] = Counter()
        self._listen = listen
        self._peers = list(peers)
        self._mtu = mtu
        self._cost = cost
        self._events: LinkEvents | None = None
        self._server: asyncio.Server | None = None
        self._dialers: list[asyncio.Task[None]] = []
        self._connections: set[_Connection] = set()
        self._closing = False
        self._local: Endpoint | None = None

    @property
    def local_address(self) -> Endpoint | None:
        """Where the listener is bound (the port is known once started), if listening."""
        return self._local

    async def start(self, events: LinkEvents) -> None:
        self._events = events
        loop = asyncio.get_running_loop()
        if self._listen is not None:
            try:
                self._server = await loop.create_server(
                    lambda: _Connection(self, None), self._listen[0], self._listen[1]
                )
            except OSError as exc:
                raise ConfigError(f"tcp: cannot listen on {self._listen}: {exc}") from exc
            sockname = self._server.sockets[0].getsockname()
            self._local = (sockname[0], sockname[1])
        for peer in self._peers:
            self._dialers.append(asyncio.create_task(self._dial(peer), name=f"tcp dial {peer}"))

    async def close(self) -> None:
        self._closing = True
        for task in self._dialers:
            task.cancel()
        for task in self._dialers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._dialers.clear()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for connection in list(self._connections):
            connection.abort()

    def describe(self) -> dict[str, object]:
        return {
            "kind": "tcp",
            "listen": f"{self._local[0]}:{self._local[1]}" if self._local else None,
            "peers": [f"{h}:{p}" for h, p in self._peers],
            "connections": sorted(c.link.link_id for c in self._connections if c.link),
            "mtu": self._mtu,
        }

    # -- internals ------------------------------------------------------------------------

    async def _dial(self, peer: Endpoint) -> None:
        """Keep one connection to ``peer``: dial, wait for it to close, dial again."""
        loop = asyncio.get_running_loop()
        wait = _RECONNECT_MIN
        while not self._closing:
            closed: asyncio.Future[None] = loop.create_future()
            try:
                await loop.create_connection(
                    functools.partial(_Connection, self, peer, closed), *peer
                )
            except OSError:
                self.stats["dial_failures"] += 1
                closed.cancel()
                await asyncio.sleep(wait)
                wait = min(wait * 2, _RECONNECT_MAX)
                continue
            self.stats["dials"] += 1
            started = loop.time()
            await closed
            # A connection that held is a healthy peer that restarted or moved: dial again
            # soon. One that failed at once backs off like a refused dial.
            wait = _RECONNECT_MIN if loop.time() - started >= 1.0 else min(wait * 2, _RECONNECT_MAX)
            await asyncio.sleep(wait)

    def _up(self, connection: _Connection) -> None:
        self._connections.add(connection)
        if self._events is not None and connection.link is not None:
            self._events.link_up(connection.link, connection.send)

    def _down(self, connection: _Connection) -> None:
        if connection in self._connections:
            self._connections.discard(connection)
            if self._events is not None and connection.link is not None:
                self._events.link_down(connection.link.link_id)


class _Connection(asyncio.Protocol):
    """One TCP connection: the preamble, the length-prefixed records, batched writes."""

    def __init__(
        self,
        owner: TcpLinks,
        dialled: Endpoint | None,
        closed: asyncio.Future[None] | None = None,
    ) -> None:
        self._owner = owner
        self._dialled = dialled
        self._closed = closed
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._preamble_ok = False
        self._pending: list[bytes] = []
        self.link: Link | None = None
        self._peer: Endpoint = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peername = transport.get_extra_info("peername")
        self._peer = (str(peername[0]), int(peername[1]))
        if self._dialled is not None:
            # A dialled peer keeps its link id across reconnections (one neighbour entry).
            link_id = f"tcp:{self._dialled[0]}:{self._dialled[1]}"
        else:
            link_id = f"tcp<{self._peer[0]}:{self._peer[1]}"
        self.link = Link(link_id, self._owner._mtu, broadcast=True, cost=self._owner._cost)
        transport.set_write_buffer_limits(high=_HIGH_WATER)
        transport.write(PREAMBLE)
        self._owner.stats["connections"] += 1
        self._owner._up(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._down(self)
        self._transport = None
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def send(self, addr: LinkAddr | Broadcast, data: bytes) -> None:
        # Every address on this link is the far end: nothing else can be reached over it.
        del addr
        if self._transport is None:
            self._owner.stats["send_closed"] += 1
            return
        pending = self._pending
        if not pending:
            asyncio.get_running_loop().call_soon(self._flush)
        pending.append(len(data).to_bytes(_LENGTH, "big") + data)

    def _flush(self) -> None:
        """Write what this event-loop turn produced in one call (counted per write, not
        per frame: this runs for every frame a relay forwards)."""
        pending, self._pending = self._pending, []
        transport = self._transport
        stats = self._owner.stats
        if transport is None or transport.is_closing():
            stats["send_closed"] += len(pending)
            return
        if transport.get_write_buffer_size() > _HIGH_WATER:
            stats["send_dropped_busy"] += len(pending)
            return
        record = b"".join(pending)
        transport.write(record)
        stats["frames_out"] += len(pending)
        stats["bytes_out"] += len(record) - _LENGTH * len(pending)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        stats = self._owner.stats
        if not self._preamble_ok:
            if len(buffer) < len(PREAMBLE):
                if not PREAMBLE.startswith(bytes(buffer)):
                    self._fail("bad_preamble")
                return
            if buffer[: len(PREAMBLE)] != PREAMBLE:
                self._fail("bad_preamble")
                return
            del buffer[: len(PREAMBLE)]
            self._preamble_ok = True
        mtu = self._owner._mtu
        frames: list[tuple[LinkAddr, bytes]] = []
        offset = 0
        end = len(buffer)
        peer = self._peer
        while end - offset >= _LENGTH:
            length = (buffer[offset] << 8) | buffer[offset + 1]
            if length == 0 or length > mtu:
                self._fail("bad_length")
                return
            if end - offset - _LENGTH < length:
                break
            start = offset + _LENGTH
            frames.append((peer, bytes(buffer[start : start + length])))
            offset = start + length
        if offset:
            del buffer[:offset]
        if frames:
            stats["frames_in"] += len(frames)
            link = self.link
            events = self._owner._events
            if events is not None and link is not None:
                events.frames_received(link.link_id, frames)

    def _fail(self, reason: str) -> None:
        self._owner.stats[f"dropped_{reason}"] += 1
        self._buffer.clear()
        if self._transport is not None:
            self._transport.abort()
