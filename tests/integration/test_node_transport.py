"""The node's mesh transport (offchain/node/transport.py) between two real mesh runtimes on
loopback TCP: its window is a span of the send order, so no message is overtaken by more
than ``window - 1`` others while it waits for its acknowledgement.

The receiving side is a bare ``MeshRuntime`` with application acks, acknowledged by the
test message by message: that is how a receiver that has committed (and so acknowledged)
later messages while an earlier one is held up on a lossy hop looks to the sender.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest

from mesh_relay.config import MeshConfig
from mesh_relay.effects import Deliver
from mesh_relay.runtime import AppEvent, MeshRuntime
from mesh_relay.tcp import TcpLinks
from offchain.node.transport import MeshTransport, WorkKey
from offchain.protocol.state import MAX_EARLY_MESSAGES
from tests.lib.network import make_key

WAIT = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mesh_config() -> MeshConfig:
    return MeshConfig(app_acks=True, hop_rto=0.05, hop_rto_max=0.4, triggered_delay=0.01)


async def until(check: Callable[[], bool], timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


def test_window__a_message_held_up_is_overtaken_by_at_most_window_minus_one() -> None:
    async def main() -> None:
        port = free_port()
        sender_mesh = MeshRuntime(
            mesh_config(), make_key(1), [TcpLinks(None, [("127.0.0.1", port)], 1200)]
        )
        receiver_mesh = MeshRuntime(
            mesh_config(), make_key(2), [TcpLinks(("127.0.0.1", port), [], 1200)]
        )
        delivered: list[WorkKey] = []
        transport = MeshTransport(sender_mesh, lambda *_: None, delivered.append, window=4)
        received: list[tuple[bytes, bytes, bytes]] = []  # (payload, origin, message id)

        def on_receiver(event: AppEvent) -> None:
            if isinstance(event, Deliver):
                received.append((event.payload, event.origin, event.message_id))

        receiver_mesh.listen(on_receiver)
        await receiver_mesh.start()
        await sender_mesh.start()
        transport.start()
        try:

            def ack(index: int) -> None:
                (_, origin, message_id) = next(r for r in received if r[0] == bytes([index]))
                receiver_mesh.acknowledge(origin, message_id)

            for index in range(10):
                transport.send((1, index), receiver_mesh.address, bytes([index]))
            await until(lambda: len(received) == 4)
            assert sorted(r[0] for r in received) == [bytes([i]) for i in range(4)]
            # The first is held up; the three after it are committed and acknowledged.
            for index in (1, 2, 3):
                ack(index)
            await until(lambda: len(delivered) == 3)
            # Counting messages in flight, three more would go now, and a receiver whose
            # buffer of early proofs is full would drop them: the span forbids it.
            assert transport.stats["sent"] == 4 and transport.backlog() == 7
            ack(0)
            await until(lambda: len(received) == 8)  # the span moved past 0..3
            assert transport.stats["sent"] == 8
            for index in range(4, 10):
                await until(lambda index=index: any(r[0] == bytes([index]) for r in received))
                ack(index)
            await until(lambda: len(delivered) == 10)
            assert sorted(delivered) == [(1, i) for i in range(10)]
            assert transport.backlog() == 0 and transport.stats["resent"] == 0
        finally:
            transport.stop()
            await sender_mesh.stop()
            await receiver_mesh.stop()

    asyncio.run(main())


def test_window__longer_than_the_partner_buffers__refused() -> None:
    mesh = MeshRuntime(mesh_config(), make_key(1), [])
    assert MeshTransport(mesh, lambda *_: None, lambda _: None).window == MAX_EARLY_MESSAGES
    with pytest.raises(ValueError, match=r"window must be 1\.\.65"):
        MeshTransport(mesh, lambda *_: None, lambda _: None, window=MAX_EARLY_MESSAGES + 2)
