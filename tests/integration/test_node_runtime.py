"""Node runtimes over a real mesh on loopback TCP, each with its SQLite store: direct and
mediated payments, batching, restart from the store with work re-run
(offchain/node/runtime.py, transport.py, store.py).

Channels are opened by feeding each runtime the chain inputs the chain layer would give
(`ChainChannelOpened`, `ChainDeposit`): these tests are about the runtime, transport and
persistence; the chain layer has its own tests on anvil.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path

from mesh_relay.config import MeshConfig
from mesh_relay.runtime import MeshRuntime
from mesh_relay.tcp import TcpLinks
from offchain.node.runtime import NodeRuntime
from offchain.node.store import Store
from offchain.node.transport import MeshTransport
from offchain.protocol.channel import balance as end_balance
from offchain.protocol.crypto import address_from_private_key
from offchain.protocol.routes import ChannelEdge, ChannelGraph
from offchain.protocol.transitions import (
    ActionPay,
    ActionUpdateGraph,
    ChainChannelOpened,
    ChainDeposit,
    Effect,
    EventPaymentReceived,
    EventPaymentSucceeded,
)
from offchain.protocol.types import Generation, Secret, SecretHash, Timestamp, TokenAmount
from tests.lib.network import TOKEN_NETWORK, make_key

WAIT = 20.0
CHAIN_ID = 31337
SETTLE_WINDOW = 3_600


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mesh_config() -> MeshConfig:
    return MeshConfig(app_acks=True, hop_rto=0.05, hop_rto_max=0.4, triggered_delay=0.01,
                      e2e_retry=2.0, ack_grace=0.5)  # fmt: skip


@dataclass
class Peer:
    """One node: runtime, mesh, transport and what it heard."""

    index: int
    data_dir: Path
    port: int
    dial: list[int]
    runtime: NodeRuntime | None = None
    mesh: MeshRuntime | None = None
    heard: list[Effect] = field(default_factory=list)
    lifetime: float = 3_600.0
    synchronous: str = "NORMAL"
    reachability: list[tuple[bytes, bool]] = field(default_factory=list)

    @property
    def key(self) -> bytes:
        return make_key(self.index)

    async def start(self) -> NodeRuntime:
        store = Store.open(self.data_dir / "node.sqlite3", synchronous=self.synchronous)
        runtime = NodeRuntime(self.key, CHAIN_ID, store, tick_interval=0.5)
        links = TcpLinks(("127.0.0.1", self.port), [("127.0.0.1", p) for p in self.dial], 1200)
        mesh = MeshRuntime(mesh_config(), self.key, [links])
        await mesh.start()
        transport = MeshTransport(
            mesh,
            runtime.receive_payload,
            runtime.work_done,
            lifetime=self.lifetime,
            on_reachability=lambda who, up: self.reachability.append((who, up)),
        )
        transport.start()
        runtime.listen(self.heard.append)
        await runtime.start(transport)
        self.runtime, self.mesh = runtime, mesh
        return runtime

    async def crash(self) -> None:
        """Stop as a killed process would: no final snapshot, nothing flushed."""
        runtime, mesh = self.runtime, self.mesh
        assert runtime is not None and mesh is not None
        for task in runtime._tasks:
            task.cancel()
        await asyncio.gather(*runtime._tasks, return_exceptions=True)
        runtime.store.close()
        await mesh.stop()
        self.runtime = self.mesh = None

    async def stop(self) -> None:
        if self.runtime is not None:
            await self.runtime.stop()
            self.runtime.store.close()
        if self.mesh is not None:
            await self.mesh.stop()
        self.runtime = self.mesh = None


async def until(check: Callable[[], bool], timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


def with_line(test: Callable[[list[Peer]], Awaitable[None]]) -> Callable[[Path], None]:
    """Run ``test`` on a fresh line A-B-C (1,000 deposited on each side of each channel)."""

    def run(tmp_path: Path) -> None:
        async def main() -> None:
            ports = [free_port() for _ in range(3)]
            peers = [
                Peer(i, tmp_path / f"n{i}", ports[i], [ports[i - 1]] if i else []) for i in range(3)
            ]
            try:
                for peer in peers:
                    await peer.start()
                await open_line(peers, deposit=1_000)
                await test(peers)
            finally:
                for peer in peers:
                    await peer.stop()

        asyncio.run(main())

    run.__name__ = test.__name__
    run.__doc__ = test.__doc__
    return run


async def open_line(peers: list[Peer], deposit: int) -> None:
    now = Timestamp(_now())
    runtimes = [p.runtime for p in peers]
    assert all(runtimes)
    addresses = [r.address for r in runtimes if r is not None]
    edges = []
    for i in range(len(peers) - 1):
        a, b = runtimes[i], runtimes[i + 1]
        assert a is not None and b is not None
        for me, partner in ((a, b), (b, a)):
            me.submit(ChainChannelOpened(now, TOKEN_NETWORK, partner.address, Generation(1),
                                         SETTLE_WINDOW))  # fmt: skip
            for who in (a, b):
                await me.submit(ChainDeposit(now, TOKEN_NETWORK, partner.address, who.address,
                                             TokenAmount(deposit)))  # fmt: skip
        edges.append(
            ChannelEdge(addresses[i], addresses[i + 1], TokenAmount(deposit), TokenAmount(deposit))
        )
    graph = ChannelGraph.from_edges(edges)
    for runtime in runtimes:
        assert runtime is not None
        await runtime.submit(ActionUpdateGraph(now, TOKEN_NETWORK, graph))


def _now() -> int:
    return int(time.time())


def new_secret() -> tuple[Secret, SecretHash]:
    secret = Secret(secrets.token_bytes(32))
    return secret, SecretHash(sha256(secret).digest())


def status_of(runtime: NodeRuntime, payment_id: int) -> str:
    return str(runtime.store.payments("payment_id = ?", (payment_id,))[0]["status"])


def balance(peer: Peer, partner: Peer) -> int:
    assert peer.runtime is not None and partner.runtime is not None
    channel = peer.runtime.state.channels[(TOKEN_NETWORK, partner.runtime.address)]
    return int(end_balance(channel.our, channel.partner))


@with_line
async def test_direct_payments__batched_and_received(line: list[Peer]) -> None:
    a, b, _ = line
    assert a.runtime is not None and b.runtime is not None
    futures = [a.runtime.pay_direct(TOKEN_NETWORK, b.runtime.address, i, 2) for i in range(1, 41)]
    await asyncio.gather(*futures)
    received = lambda: [e for e in b.heard if isinstance(e, EventPaymentReceived)]  # noqa: E731
    await until(lambda: len(received()) == 40)
    assert sorted(e.payment_id for e in received()) == list(range(1, 41))
    assert balance(a, b) == 1_000 - 80 and balance(b, a) == 1_000 + 80
    # Folded: far fewer proofs than payments.
    assert a.runtime.stats["inputs"] < 40
    await until(lambda: a.runtime is not None and a.runtime.store.pending_work("send") == [])


@with_line
async def test_mediated_payment__reaches_the_target_and_settles_off_chain(line: list[Peer]) -> None:
    a, b, c = line
    assert a.runtime is not None and c.runtime is not None
    secret, secrethash = new_secret()
    pay = ActionPay(Timestamp(_now()), 7, TOKEN_NETWORK, c.runtime.address, TokenAmount(100),
                    secrethash, secret)  # fmt: skip
    waiter = asyncio.create_task(a.runtime.wait_payment(7))
    await a.runtime.submit(pay)
    async with asyncio.timeout(WAIT):
        done = await waiter
    assert isinstance(done, EventPaymentSucceeded) and done.amount == 100
    await until(lambda: any(isinstance(e, EventPaymentReceived) for e in c.heard))
    await until(lambda: balance(b, c) == 900 and balance(c, b) == 1_100)
    rows = a.runtime.store.payments("direction = 'sent'")
    assert [(r["payment_id"], r["status"]) for r in rows] == [(7, "succeeded")]


@with_line
async def test_restart__the_state_and_unfinished_messages_survive(line: list[Peer]) -> None:
    a, b, c = line
    assert a.runtime is not None and b.runtime is not None
    await c.stop()  # the target is away: the payment cannot finish
    secret, secrethash = new_secret()
    c_address = address_from_private_key(make_key(2))
    await a.runtime.submit(ActionPay(Timestamp(_now()), 9, TOKEN_NETWORK, c_address,
                                     TokenAmount(50), secrethash, secret))  # fmt: skip
    # B got the lock and forwarded it: its message to C waits as unfinished work.
    await until(lambda: b.runtime is not None and len(b.runtime.store.pending_work("send")) > 0)
    before = b.runtime.state
    await b.stop()
    await b.start()  # restored from snapshot + replay; the lock to C is sent again
    assert b.runtime is not None
    assert b.runtime.state.channels == before.channels
    await c.start()
    await until(lambda: a.runtime is not None and status_of(a.runtime, 9) == "succeeded")


@with_line
async def test_partner_away__unreachable_after_expiry__reachable_when_delivered(
    line: list[Peer],
) -> None:
    a, _, c = line
    assert a.runtime is not None and c.runtime is not None
    c_address = c.runtime.address
    await a.stop()
    a.lifetime = 1.0  # messages expire quickly: the partner is away
    await a.start()
    await c.stop()
    assert a.runtime is not None and a.runtime.transport is not None
    secret, secrethash = new_secret()
    await a.runtime.submit(ActionPay(Timestamp(_now()), 11, TOKEN_NETWORK, c_address,
                                     TokenAmount(5), secrethash, secret))  # fmt: skip
    # B forwards to C, which is away; A's PaymentSecret to C expires: C unreachable for A.
    await until(lambda: (c_address, False) in a.reachability)
    assert c_address in a.runtime.state.unreachable or c_address in a.runtime.transport.unreachable
    await c.start()
    await until(lambda: (c_address, True) in a.reachability)
    await until(lambda: a.runtime is not None and status_of(a.runtime, 11) == "succeeded")


async def _pay_many(payer: NodeRuntime, target: bytes, ids: range, amount: int) -> list[Effect]:
    waiters = [asyncio.ensure_future(payer.wait_payment(i)) for i in ids]
    for i in ids:
        secret, secrethash = new_secret()
        payer.submit(ActionPay(Timestamp(_now()), i, TOKEN_NETWORK, target, TokenAmount(amount),
                               secrethash, secret))  # fmt: skip
    async with asyncio.timeout(WAIT):
        return list(await asyncio.gather(*waiters))


@with_line
async def test_synchronous_full__busy_commits_synced_in_the_writer__replay_agrees(
    line: list[Peer],
) -> None:
    # With FULL, a busy runtime commits without the fsync and asks its helper process for
    # it, going on meanwhile; every payment still completes, and a restart rebuilds exactly
    # the state the effects were run from.
    for peer in line:
        await peer.stop()
        peer.synchronous = "FULL"
        await peer.start()
    a, b, c = line
    assert a.runtime is not None and b.runtime is not None and c.runtime is not None
    done = await _pay_many(a.runtime, c.runtime.address, range(100, 160), 3)
    assert all(isinstance(e, EventPaymentSucceeded) for e in done)
    await until(lambda: balance(b, c) == 1_000 - 180 and balance(c, b) == 1_000 + 180)
    assert sum(p.runtime.stats["synced_by_helper"] for p in line if p.runtime) > 0

    def quiet() -> bool:  # nothing in flight, queued or being written anywhere
        runtimes = [p.runtime for p in line]
        return all(
            r is not None and r.transport is not None and not r.transport.backlog()
            and r._writing is None and not r._has_input()
            for r in runtimes
        )  # fmt: skip

    await until(quiet)
    before = {p.index: p.runtime.state for p in line if p.runtime}
    for peer in line:
        await peer.crash()  # no final snapshot: the restart replays the logged inputs
    for peer in line:
        runtime = await peer.start()
        assert runtime.state.channels == before[peer.index].channels


@with_line
async def test_the_fsync_helper_dies__the_runtime_stops__nothing_more_written(
    line: list[Peer],
) -> None:
    # Nothing committed without its fsync may be acted upon: when the helper is gone (as
    # after an fsync that failed), the runtime takes nothing more in and writes nothing.
    for peer in line:
        await peer.stop()
        peer.synchronous = "FULL"
        await peer.start()
    a, b, c = line
    assert a.runtime is not None and b.runtime is not None and c.runtime is not None
    assert b.runtime._syncer is not None
    b.runtime._syncer.process.kill()
    c_address = c.runtime.address
    for i in range(200, 230):
        secret, secrethash = new_secret()
        a.runtime.submit(ActionPay(Timestamp(_now()), i, TOKEN_NETWORK, c_address,
                                   TokenAmount(1), secrethash, secret))  # fmt: skip
    await until(lambda: b.runtime is not None and b.runtime._broken is not None)
    logged = b.runtime.store.last_seq
    assert b.runtime.transport is not None
    sent = b.runtime.transport.stats["sent"]
    await asyncio.sleep(0.5)  # A resends; B takes nothing more in
    assert b.runtime.store.last_seq == logged and b.runtime.transport.stats["sent"] == sent
    await b.stop()  # writes no snapshot of a state that was never logged
