"""UDP on a LAN: one core link, neighbours found by broadcast or multicast beacons.

Belongs here: ``UdpLink``, the adapter of one UDP socket and its LAN segments. It needs
no server: the core's hellos go to ``BROADCAST``, which this adapter sends to each beacon
address (a broadcast address such as ``192.168.1.255`` or ``255.255.255.255``, or a
multicast group such as ``239.255.77.77``, with a port); every relay of the segment
listens there, answers the sender's own address by unicast, and the core does the rest
(signed hellos, routes). Several beacons serve a host on several segments (one subnet
broadcast address per interface) with one link.

The unicast socket is bound to ``listen`` and sends everything, so a neighbour's link
address is its unicast address. A beacon whose port equals the listening port is heard on
that socket (the usual deployment: one relay per host, ``0.0.0.0:7777`` and
``255.255.255.255:7777``). A beacon on another port gets its own receiving socket, bound
to the beacon address itself and shared with ``SO_REUSEADDR``/``SO_REUSEPORT``, so
several relays of one host (tests, a gateway with many radios) hear the same beacons.

Reading drains the socket (up to ``_BATCH`` datagrams per wake-up) and hands the batch
to the runtime at once, instead of one datagram per event-loop turn as asyncio's datagram
transports do; sending is a direct non-blocking ``sendto``. A datagram larger than the
link's MTU, or empty, is counted and dropped here; anything else that is not a frame is
the core's to count.

Does not belong here: frame contents, neighbours, routes (the core); TCP (``tcp``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections import Counter

from mesh_relay.config import Link, LinkAddr
from mesh_relay.effects import Broadcast
from mesh_relay.errors import ConfigError
from mesh_relay.links import LinkEvents

Endpoint = tuple[str, int]

_BATCH = 64
"""Datagrams read per wake-up: enough to amortise a loop turn, small enough that one
busy socket cannot starve the other sockets and timers."""
_RCVBUF = 1 << 20
"""Receive buffer: a burst of a few thousand small frames must not overflow the kernel's
queue while the node is busy with a batch."""


class UdpLink:
    """One UDP socket as one broadcast core link (``Link.broadcast`` is true)."""

    def __init__(
        self,
        link_id: str,
        listen: Endpoint,
        beacons: list[Endpoint],
        mtu: int,
        cost: int = 1,
    ) -> None:
        self.name = f"udp {link_id}"
        self.link = Link(link_id, mtu, broadcast=True, cost=cost)
        self.stats: Counter[str] = Counter()
        self._listen = listen
        self._beacons = list(dict.fromkeys(beacons))
        self._sockets: list[socket.socket] = []
        self._unicast: socket.socket | None = None
        self._events: LinkEvents | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._local: Endpoint | None = None

    @property
    def local_address(self) -> Endpoint:
        """The unicast socket's address (the port is known once started)."""
        if self._local is None:
            raise RuntimeError("UdpLink not started")
        return self._local

    async def start(self, events: LinkEvents) -> None:
        self._events = events
        self._loop = asyncio.get_running_loop()
        try:
            self._open()
        except OSError as exc:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()
            self._unicast = None
            raise ConfigError(f"{self.name}: cannot open {_fmt(self._listen)}: {exc}") from exc
        for sock in self._sockets:
            self._loop.add_reader(sock.fileno(), self._read, sock)
        events.link_up(self.link, self.send)

    async def close(self) -> None:
        if self._loop is not None:
            for sock in self._sockets:
                self._loop.remove_reader(sock.fileno())
        for sock in self._sockets:
            sock.close()
        if self._sockets and self._events is not None:
            self._events.link_down(self.link.link_id)
        self._sockets.clear()
        self._unicast = None

    def describe(self) -> dict[str, object]:
        return {
            "kind": "udp",
            "link": self.link.link_id,
            "listen": _fmt(self._local or self._listen),
            "beacons": [_fmt(b) for b in self._beacons],
            "mtu": self.link.mtu,
        }

    def send(self, addr: LinkAddr | Broadcast, data: bytes) -> None:
        sock = self._unicast
        stats = self.stats
        if sock is None:
            stats["send_closed"] += 1
            return
        if isinstance(addr, Broadcast):
            if not self._beacons:
                # No beacon configured: this link has no way to reach "everyone".
                stats["send_no_beacon"] += 1
                return
            targets: list[tuple[object, ...]] = list(self._beacons)
        elif isinstance(addr, tuple):
            targets = [addr]
        else:
            stats["send_errors"] += 1
            return
        for target in targets:
            try:
                sock.sendto(data, target)
            except BlockingIOError:
                # The kernel's send queue is full: drop, as a radio would; the core retries.
                stats["send_dropped_busy"] += 1
                continue
            except (OSError, TypeError, ValueError):
                # Unreachable peer, a link address that is not (host, port): drop, count.
                stats["send_errors"] += 1
                continue
            stats["datagrams_out"] += 1
            stats["bytes_out"] += len(data)

    # -- internals ------------------------------------------------------------------------

    def _open(self) -> None:
        port = self._listen[1]
        shared = port != 0 and any(b[1] == port for b in self._beacons)
        unicast = _socket()
        self._sockets.append(unicast)
        if shared:
            # Beacons arrive on this socket; other relays of this host may share the port.
            _reuse(unicast)
        unicast.bind(self._listen)
        self._unicast = unicast
        host, bound_port = unicast.getsockname()[:2]
        self._local = (host, bound_port)
        if any(_is_multicast(b[0]) for b in self._beacons):
            if self._listen[0] not in ("", "0.0.0.0"):
                unicast.setsockopt(
                    socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(self._listen[0])
                )
            # Beacons stay on the segment (TTL 1) and reach relays of this host too.
            unicast.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            unicast.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        for beacon in self._beacons:
            if beacon[1] == port:
                if _is_multicast(beacon[0]):
                    self._join(unicast, beacon[0])
                continue
            sock = _socket()
            self._sockets.append(sock)
            _reuse(sock)
            # Bound to the broadcast address or the group itself: on Linux such a socket
            # gets exactly the beacons, and unicast traffic to the port never lands here.
            sock.bind(beacon)
            if _is_multicast(beacon[0]):
                self._join(sock, beacon[0])

    def _read(self, sock: socket.socket) -> None:
        batch: list[tuple[LinkAddr, bytes]] = []
        mtu = self.link.mtu
        own = self._local
        stats = self.stats
        for _ in range(_BATCH):
            try:
                # One byte more than the MTU, so an oversize datagram is seen, not truncated.
                data, source = sock.recvfrom(mtu + 1)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                # An ICMP error reported on the socket (port unreachable): nothing to read.
                stats["receive_errors"] += 1
                break
            peer = (source[0], source[1])
            if peer == own:
                stats["own_echo"] += 1
                continue
            if not data or len(data) > mtu:
                stats["dropped_bad_size"] += 1
                continue
            stats["datagrams_in"] += 1
            stats["bytes_in"] += len(data)
            batch.append((peer, data))
        if batch and self._events is not None:
            self._events.frames_received(self.link.link_id, batch)

    def _join(self, sock: socket.socket, group: str) -> None:
        interface = self._listen[0] or "0.0.0.0"
        membership = socket.inet_aton(group) + socket.inet_aton(interface)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)


def _reuse(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    # A kernel that refuses the size keeps its own.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
    return sock


def _is_multicast(host: str) -> bool:
    try:
        return ipaddress.IPv4Address(host).is_multicast
    except ValueError:
        return False


def _fmt(endpoint: Endpoint) -> str:
    return f"{endpoint[0]}:{endpoint[1]}"
