"""The link adapters and the runtime on real loopback sockets, in one process.

UDP with discovery by broadcast (127.255.255.255) and by multicast beacons, TCP with
length-prefixed frames and reconnection, at routed MTUs of 210 and 1,200; malformed
datagrams and streams are counted and dropped, never a crash; the loss/delay wrapper;
the snapshot file across a runtime restart; the control socket and its client. Only
loopback addresses are used. Waits have deadlines; nothing asserts on elapsed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from mesh_relay.config import MeshConfig
from mesh_relay.control import ControlClient, ControlServer
from mesh_relay.effects import Deliver, EventDelivered
from mesh_relay.errors import ConfigError
from mesh_relay.frames import encode_hop_ack
from mesh_relay.links import Impaired, LinkAdapter
from mesh_relay.runtime import AppEvent, MeshRuntime, Outcome
from mesh_relay.sim import private_key_for
from mesh_relay.tcp import PREAMBLE, TcpLinks
from mesh_relay.udp import UdpLink

BROADCAST = "127.255.255.255"
WAIT = 15.0


def _free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(mtu: int) -> MeshConfig:
    # Short timers so that losses are repaired quickly; the same rules as the defaults.
    return MeshConfig(routed_mtu=mtu, hop_rto=0.05, hop_rto_max=0.4, triggered_delay=0.01)


async def _until(check: Callable[[], bool], timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


class Mesh:
    """Runtimes started in this test, stopped at its end."""

    def __init__(self) -> None:
        self.runtimes: list[MeshRuntime] = []

    async def node(
        self,
        index: int,
        adapters: list[LinkAdapter],
        mtu: int = 1200,
        snapshot: Path | None = None,
        config: MeshConfig | None = None,
    ) -> MeshRuntime:
        runtime = MeshRuntime(
            config or _config(mtu), private_key_for(99, index), adapters, snapshot=snapshot
        )
        await runtime.start()
        self.runtimes.append(runtime)
        return runtime

    async def close(self) -> None:
        for runtime in self.runtimes:
            await runtime.stop()


def with_mesh(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test body on a fresh event loop with a ``Mesh`` as its first argument
    (the project has no asyncio pytest plugin; ``asyncio.run`` is all it takes)."""

    def run(*args: object, **kwargs: object) -> None:
        async def main() -> None:
            mesh = Mesh()
            try:
                await test(mesh, *args, **kwargs)
            finally:
                await mesh.close()

        asyncio.run(main())

    signature = inspect.signature(test)
    run.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=list(signature.parameters.values())[1:]
    )
    run.__name__ = test.__name__
    run.__doc__ = test.__doc__
    return run


def _udp(mtu: int, beacon_port: int, name: str = "udp") -> UdpLink:
    return UdpLink(name, ("127.0.0.1", 0), [(BROADCAST, beacon_port)], mtu)


async def _exchange(a: MeshRuntime, b: MeshRuntime, payload: bytes) -> None:
    """``a`` sends to ``b`` and back; each gets the payload once and learns the outcome."""
    for origin, target in ((a, b), (b, a)):
        inbox = target.subscribe()
        await _until(lambda o=origin, t=target: t.address in o.node.routing.destinations())
        message_id = origin.send(target.address, payload, lifetime=60)
        async with asyncio.timeout(WAIT):
            assert await origin.outcome(message_id) is Outcome.DELIVERED
        event = inbox.get_nowait()
        assert event == Deliver(origin.address, payload, message_id)
        assert inbox.empty()
        target.unsubscribe(inbox)


# -- UDP ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mtu", [210, 1200])
@with_mesh
async def test_udp_neighbours_find_each_other_by_broadcast_and_exchange(
    mesh: Mesh, mtu: int
) -> None:
    beacon = _free_port()
    a = await mesh.node(0, [_udp(mtu, beacon)], mtu)
    b = await mesh.node(1, [_udp(mtu, beacon)], mtu)
    await _exchange(a, b, b"short")
    # 3,000 bytes: 22 fragments at 210, 3 at 1,200, every one a datagram within the MTU.
    await _exchange(a, b, os.urandom(3000))
    for runtime in (a, b):
        adapter = runtime.adapters[0]
        assert adapter.stats["datagrams_in"] > 0
        assert adapter.stats["dropped_bad_size"] == 0
        assert runtime.stats["core_errors"] == 0


@with_mesh
async def test_udp_multicast_beacons(mesh: Mesh) -> None:
    group, port = "239.255.77.77", _free_port()

    def link() -> UdpLink:
        return UdpLink("udp", ("127.0.0.1", 0), [(group, port)], 1200)

    try:
        a = await mesh.node(0, [link()])
    except ConfigError as exc:  # a kernel without multicast on loopback
        pytest.skip(f"no multicast on loopback here: {exc}")
    b = await mesh.node(1, [link()])
    await _exchange(a, b, b"multicast-discovered")


@with_mesh
async def test_udp_shared_port_mode(mesh: Mesh) -> None:
    """The LAN deployment: listen and beacon on one port (here with one relay per
    loopback address, as one relay per host on a LAN)."""
    port = _free_port()
    a = await mesh.node(0, [UdpLink("udp", ("0.0.0.0", port), [(BROADCAST, port)], 1200)])
    b_link = UdpLink("udp", ("127.0.0.2", 0), [(BROADCAST, port)], 1200)
    b = await mesh.node(1, [b_link])
    await _exchange(a, b, b"one port for beacons and unicast")


@with_mesh
async def test_udp_malformed_datagrams_are_counted_and_dropped(mesh: Mesh) -> None:
    beacon = _free_port()
    a = await mesh.node(0, [_udp(210, beacon)], 210)
    b = await mesh.node(1, [_udp(210, beacon)], 210)
    target = a.adapters[0]
    assert isinstance(target, UdpLink)
    junk = (
        [
            b"",  # empty
            os.urandom(211),  # above the MTU
            os.urandom(64_000),  # far above it
            b"\x02",  # a version byte and nothing else
            b"\x01\x01" + os.urandom(50),  # a wrong version (a v1 relay's hello)
            b"\x02\x04" + os.urandom(80),  # a DATA frame cut short
            encode_hop_ack([1, 2, 3])[:-1],  # a hop ack whose count lies
        ]
        + [os.urandom(n) for n in range(1, 200, 7)]
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.bind(("127.0.0.1", 0))
        for data in junk:
            raw.sendto(data, target.local_address)
        # And the same to the beacon address, which every node of the segment hears.
        for data in junk[3:]:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            raw.sendto(data, (BROADCAST, beacon))
    await _until(lambda: target.stats["dropped_bad_size"] >= 3)
    await _until(lambda: a.stats["invalid_frames"] >= 4 and b.stats["invalid_frames"] >= 4)
    assert a.stats["core_errors"] == b.stats["core_errors"] == 0
    await _exchange(a, b, b"still working")


@with_mesh
async def test_udp_port_in_use_is_a_config_error(mesh: Mesh) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        link = UdpLink("udp", taken.getsockname(), [], 1200)
        with pytest.raises(ConfigError, match="cannot open"):
            await mesh.node(0, [link])


# -- TCP ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mtu", [210, 1200])
@with_mesh
async def test_tcp_peers_exchange_length_prefixed_frames(mesh: Mesh, mtu: int) -> None:
    server = TcpLinks(("127.0.0.1", 0), [], mtu)
    a = await mesh.node(0, [server], mtu)
    assert server.local_address is not None
    b = await mesh.node(1, [TcpLinks(None, [server.local_address], mtu)], mtu)
    await _exchange(a, b, b"over tcp")
    await _exchange(a, b, os.urandom(5000))
    assert server.stats["frames_in"] > 0
    assert not [k for k in server.stats if k.startswith("dropped_")]


async def _raw_tcp(port: int, data: bytes) -> bytes:
    """Connect, write ``data``, return what the relay sent before it closed (or 1 s)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    received = b""
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(1.0):
            while chunk := await reader.read(65536):
                received += chunk
    writer.close()
    return received


@with_mesh
async def test_tcp_malformed_streams_are_counted_and_closed(mesh: Mesh) -> None:
    server = TcpLinks(("127.0.0.1", 0), [], 210)
    a = await mesh.node(0, [server], 210)
    assert server.local_address is not None
    port = server.local_address[1]

    await _raw_tcp(port, b"GET / HTTP/1.1\r\n\r\n")
    await _until(lambda: server.stats["dropped_bad_preamble"] == 1)
    await _raw_tcp(port, PREAMBLE + struct.pack(">H", 0))
    await _raw_tcp(port, PREAMBLE + struct.pack(">H", 211) + os.urandom(211))
    await _until(lambda: server.stats["dropped_bad_length"] == 2)
    # Well framed, but not frames: the core counts them, the connection stays up.
    garbage = b"".join(struct.pack(">H", 40) + b"\x5a" + os.urandom(39) for _ in range(5))
    greeting = await _raw_tcp(port, PREAMBLE + garbage)
    assert greeting.startswith(PREAMBLE)  # the relay greeted us (and said hello)
    await _until(lambda: a.stats["invalid_frames"] >= 5)
    assert a.stats["core_errors"] == 0
    await _until(lambda: server.describe()["connections"] == [])  # every raw one is gone

    b = await mesh.node(1, [TcpLinks(None, [server.local_address], 210)], 210)
    await _exchange(a, b, b"unharmed")


@with_mesh
async def test_tcp_dialer_reconnects_when_the_peer_comes_back(mesh: Mesh) -> None:
    port = _free_port(socket.SOCK_STREAM)
    dialer = TcpLinks(None, [("127.0.0.1", port)], 1200)
    b = await mesh.node(1, [dialer])
    first = await mesh.node(0, [TcpLinks(("127.0.0.1", port), [], 1200)])
    await _exchange(first, b, b"before")
    await first.stop()
    await _until(lambda: not b.node.neighbour_addresses())
    second = await mesh.node(0, [TcpLinks(("127.0.0.1", port), [], 1200)])
    await _exchange(second, b, b"after the peer restarted")
    assert dialer.stats["dials"] >= 2


# -- three hops, lossy links, the wrapper -------------------------------------------------


@with_mesh
async def test_line_over_mixed_links_with_loss_and_delay(mesh: Mesh) -> None:
    """a -UDP- b -TCP- c -UDP- d, every link losing 20 % and delaying 2-6 ms: every
    message arrives exactly once, the sender learns it."""
    seg1, seg2 = _free_port(), _free_port()
    tcp_b = TcpLinks(("127.0.0.1", 0), [], 210)

    def lossy(adapter: LinkAdapter, seed: int) -> Impaired:
        return Impaired(adapter, loss=0.2, delay=0.002, jitter=0.004, seed=seed)

    a = await mesh.node(0, [lossy(_udp(210, seg1), 1)], 210)
    b = await mesh.node(1, [lossy(_udp(210, seg1), 2), lossy(tcp_b, 3)], 210)
    assert tcp_b.local_address is not None
    tcp_c = TcpLinks(None, [tcp_b.local_address], 210)
    c = await mesh.node(2, [lossy(tcp_c, 4), lossy(_udp(210, seg2), 5)], 210)
    d = await mesh.node(3, [lossy(_udp(210, seg2), 6)], 210)
    inbox: list[AppEvent] = []
    d.listen(inbox.append)
    await _until(lambda: d.address in a.node.routing.destinations(), 30.0)
    ids = [a.send(d.address, f"message {i}".encode() * 10, lifetime=60) for i in range(20)]
    async with asyncio.timeout(60.0):
        outcomes = [await a.outcome(i) for i in ids]
    assert outcomes == [Outcome.DELIVERED] * 20
    delivered = [e.message_id for e in inbox if isinstance(e, Deliver)]
    assert sorted(delivered) == sorted(ids)  # each exactly once
    assert sum(r.adapters[0].stats["impaired_lost"] for r in (a, b, c, d)) > 0
    assert b.node.stats["relay_accepted"] >= 20 and c.node.stats["relay_accepted"] >= 20


def test_impaired_rejects_bad_settings() -> None:
    inner = _udp(210, 1)
    with pytest.raises(ConfigError):
        Impaired(inner, loss=1.0)
    with pytest.raises(ConfigError):
        Impaired(inner, delay=-1)


# -- persistence and the application API -------------------------------------------------


@with_mesh
async def test_pending_message_survives_a_runtime_restart(mesh: Mesh, tmp_path: Path) -> None:
    beacon = _free_port()
    snapshot = tmp_path / "a.snapshot"
    key_a, key_b = private_key_for(99, 0), private_key_for(99, 1)
    a = await mesh.node(0, [_udp(1200, beacon)], snapshot=snapshot)
    b = await mesh.node(1, [_udp(1200, beacon)])
    await _until(lambda: b.address in a.node.routing.destinations())
    await b.stop()
    # b is gone (a does not know yet): the message waits at a, unacknowledged.
    message_id = a.send(b.address, b"for later", lifetime=120)
    await a.stop()
    assert snapshot.exists()

    a2 = MeshRuntime(_config(1200), key_a, [_udp(1200, beacon)], snapshot=snapshot)
    await a2.start()
    mesh.runtimes.append(a2)
    assert a2.restored == (1, 0)
    with pytest.raises(ConfigError, match="in use"):
        # Two relays on one snapshot would resend each other's messages: refused.
        await MeshRuntime(_config(1200), key_a, [], snapshot=snapshot).start()
    outcomes = a2.subscribe()
    b2 = MeshRuntime(_config(1200), key_b, [_udp(1200, beacon)])
    await b2.start()
    mesh.runtimes.append(b2)
    inbox = b2.subscribe()
    async with asyncio.timeout(WAIT):
        assert await outcomes.get() == EventDelivered(message_id)
    delivered = inbox.get_nowait()
    assert isinstance(delivered, Deliver) and delivered.payload == b"for later"
    await a2.stop()  # its final snapshot has nothing pending any more
    a3 = MeshRuntime(_config(1200), key_a, [], snapshot=snapshot)
    await a3.start()
    assert a3.restored == (0, 0)
    await a3.stop()


@with_mesh
async def test_send_rejects_bad_arguments(mesh: Mesh) -> None:
    a = await mesh.node(0, [])
    with pytest.raises(ValueError):
        a.send(b"\x01" * 19, b"x")
    with pytest.raises(ValueError):
        a.send(a.address, b"to myself")
    with pytest.raises(ValueError):
        a.send(b"\x01" * 20, b"x" * 20_000)


@with_mesh
async def test_control_socket_and_client(mesh: Mesh, tmp_path: Path) -> None:
    port = _free_port()
    a = await mesh.node(0, [_udp(1200, port)])
    b = await mesh.node(1, [_udp(1200, port)])
    servers = [ControlServer(a, tmp_path / "a.sock"), ControlServer(b, ("127.0.0.1", 0))]
    for server in servers:
        await server.start()
    try:
        await _until(lambda: b.address in a.node.routing.destinations())
        await _until(lambda: a.address in b.node.routing.destinations())
        # b delivers before any client is connected: the delivery waits in the backlog.
        early = b.send(a.address, b"early", lifetime=60)
        async with asyncio.timeout(WAIT):
            await b.outcome(early)
        client_a = await ControlClient.connect(str(tmp_path / "a.sock"))
        client_b = await ControlClient.connect(servers[1].bound)
        async with asyncio.timeout(WAIT):
            backlog = await client_a.next_event()
            assert backlog["event"] == "deliver" and backlog["id"] == early.hex()
            status = await client_a.request(op="status", tag=7)
            assert status["ok"] and status["tag"] == 7
            assert status["status"]["address"] == "0x" + a.address.hex()  # type: ignore[index]
            message_id = await client_a.send(b.address, b"via control")
            delivered = await client_b.next_event()
            assert delivered == {
                "event": "deliver",
                "from": "0x" + a.address.hex(),
                "id": message_id.hex(),
                "payload": b"via control".hex(),
            }
            assert await client_a.next_event() == {"event": "delivered", "id": message_id.hex()}
            for bad, error in [
                ({"op": "fly"}, "unknown op"),
                ({"op": "send", "to": "0xzz", "payload": ""}, "'to' is not hex"),
                ({"op": "send", "to": "0x" + "00" * 20, "payload": ""}, "zero address"),
                ({"op": "send", "to": b.address.hex(), "payload": "", "lifetime": "x"}, "lifetime"),
                ({"op": "send"}, "KeyError"),
            ]:
                reply = await client_a.request(**bad)
                assert reply["ok"] is False and error in str(reply["error"]), reply
            assert (await client_a.request(op="snapshot"))["ok"]
        await client_a.close()
        await client_b.close()
    finally:
        for server in servers:
            await server.close()
    assert not (tmp_path / "a.sock").exists()


@with_mesh
async def test_runtime_survives_a_bug_in_a_listener(mesh: Mesh) -> None:
    port = _free_port()
    a = await mesh.node(0, [_udp(1200, port)])
    b = await mesh.node(1, [_udp(1200, port)])

    def broken(_: AppEvent) -> None:
        raise RuntimeError("application bug")

    b.listen(broken)
    await _exchange(a, b, b"listener raises")
    assert b.stats["listener_errors"] >= 1
