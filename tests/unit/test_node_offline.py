"""The node's offline monitor (offchain/node/offline.py) with a real runtime and store.

The chain follower's status is given by the test (``ChainStatus`` values, as the follower
would report them): seen, stale, silent, from the future. The protocol messages come from
a real partner core (tests/lib/network.py). Docs: docs/offline.md §1, §3, §5-§7.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from offchain.chain.manifest import Deployment
from offchain.chain.rpc import Endpoint, connect
from offchain.chain.sync import ChainFollower, ChainStatus, assess
from offchain.chain.transactions import TxSender
from offchain.node.chain_bridge import ChainBridge
from offchain.node.gossip import GraphView
from offchain.node.offline import META_LAST_SEEN, OfflineMonitor
from offchain.node.runtime import NodeRuntime
from offchain.node.service import Coverage
from offchain.node.store import Store
from offchain.protocol import codec
from offchain.protocol.messages import BatchEntry
from offchain.protocol.offline import DeadlineKind
from offchain.protocol.transitions import (
    ActionPayDirect,
    ChainChannelOpened,
    ChainDeposit,
    ReceiveMessage,
)
from offchain.protocol.types import Address, Generation, Timestamp, TokenAmount
from tests.lib.network import CHAIN_ID, SETTLE_WINDOW, START, TOKEN_NETWORK, Network, make_key

DEPLOYMENT = Deployment(CHAIN_ID, b"\x01" * 20, b"\x02" * 20, {}, 0)  # type: ignore[arg-type]
MAX_AGE = 120
DELEGATE = Address(b"\xde" * 20)


@dataclass
class Clock:
    now: float = float(START)

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    runtime: NodeRuntime
    monitor: OfflineMonitor
    clock: Clock
    partner_net: Network
    status: ChainStatus

    @property
    def a(self) -> Address:
        return self.partner_net.addresses[0]

    def seen(self, age: float = 2.0, view: int | None = None) -> None:
        """The endpoint answers; its newest block is ``age`` seconds old."""
        block_time = Timestamp(int(self.clock.now - age))
        self.status = ChainStatus(
            latest_block=10, latest_timestamp=block_time, confirmed_block=10,
            last_answer=self.clock.now, reachable=True, synced=True, error=None,
            latest_seen_at=self.clock.now,
            view_time=Timestamp(view if view is not None else block_time),
        )  # fmt: skip

    def silent(self) -> None:
        """The endpoint stopped answering; what was seen last stays."""
        self.status = dataclasses.replace(self.status, reachable=False, error="refused")

    async def check(self) -> None:
        self.monitor.check()
        await asyncio.sleep(0.05)  # let the runtime commit what the check submitted

    async def receive_direct(self, amount: int, payment_id: int) -> None:
        """The partner pays us directly (its real core signs the proof)."""
        net = self.partner_net
        net.now = Timestamp(int(self.clock.now))
        entries = (BatchEntry(payment_id, TokenAmount(amount)),)
        net.apply(self.a, ActionPayDirect(net.now, TOKEN_NETWORK, net.addresses[1], entries))
        flight = net.flights.pop()
        message = codec.decode(flight.data)
        await self.runtime.submit(ReceiveMessage(net.now, self.a, message))


@asynccontextmanager
async def world(path: Path, warn_lead: float = 300) -> AsyncIterator[World]:
    clock = Clock()
    store = Store.open(path / "node.sqlite3", synchronous="NORMAL")
    runtime = NodeRuntime(make_key(1), CHAIN_ID, store, clock=clock, tick_interval=3600)
    endpoint = Endpoint(connect("http://127.0.0.1:9"), clock)  # never dialled here
    follower = ChainFollower(endpoint, DEPLOYMENT, runtime.address, store.conn)
    sender = TxSender(endpoint, make_key(1), store.conn, CHAIN_ID)
    bridge = ChainBridge(
        runtime, DEPLOYMENT, follower, sender, GraphView(CHAIN_ID, runtime.address),
        on_graph_change=lambda: None, clock=clock,
    )  # fmt: skip
    net = Network.create(2)
    net.line(1000)
    holder: list[World] = []
    monitor = OfflineMonitor(
        runtime, follower, bridge, max_block_age=MAX_AGE, warn_lead=warn_lead, clock=clock,
        status=lambda: holder[0].status,
    )  # fmt: skip
    first = ChainStatus(None, None, None, None, False, False, None)
    result = World(runtime, monitor, clock, net, first)
    holder.append(result)
    await runtime.start()
    a = net.addresses[0]
    now = Timestamp(int(clock.now))
    await runtime.submit(ChainChannelOpened(now, TOKEN_NETWORK, a, Generation(1), SETTLE_WINDOW))
    for who in (a, runtime.address):
        await runtime.submit(ChainDeposit(now, TOKEN_NETWORK, a, who, TokenAmount(1000)))
    try:
        yield result
    finally:
        await runtime.stop()
        await endpoint.w3.provider.disconnect()
        store.close()


def in_loop(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop (pytest takes its fixtures through wraps)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def events(w: World, kind: str) -> list[dict[str, object]]:
    return [data for _, _, k, data in w.runtime.store.events(0, 1000) if k == kind]


# --- liveness --------------------------------------------------------------------------------


def _status(block_age: float, answering: bool = True) -> ChainStatus:
    return ChainStatus(
        latest_block=5, latest_timestamp=Timestamp(int(1000 - block_age)), confirmed_block=5,
        last_answer=1000.0, reachable=answering, synced=True, error=None,
        latest_seen_at=999.0, view_time=Timestamp(900),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("age", "answering", "reachable"),
    [(MAX_AGE, True, True), (MAX_AGE + 1, True, False), (-50, True, True), (0, False, False)],
    ids=["age at the limit", "age past it", "block from the future", "no answer"],
)
def test_assess__answers_and_a_recent_block(age: float, answering: bool, reachable: bool) -> None:
    liveness = assess(_status(age, answering), 1000.0, MAX_AGE)
    assert liveness.reachable is reachable and liveness.answering is answering
    assert liveness.block_age == age and liveness.view_time == 900
    assert liveness.clock_offset == (1000 - age) - 999.0


def test_assess__never_reached__not_reachable() -> None:
    liveness = assess(ChainStatus(None, None, None, None, False, False, "refused"), 1.0, MAX_AGE)
    assert not liveness.reachable and liveness.block_age is None and liveness.view_time is None


# --- the core's view ---------------------------------------------------------------------------


@in_loop
async def test_monitor__before_the_first_poll__judges_nothing(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.check()
        assert not w.monitor.reachable and w.monitor.blind_since() is None
        assert w.runtime.state.view_time is None
        assert not events(w, "chain_unreachable")


@in_loop
async def test_monitor__seen_stale_silent_back__the_core_view_follows(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        w.seen()
        await w.check()
        assert w.monitor.reachable and w.runtime.state.view_time is None
        seen_at = w.clock.now
        view = w.status.view_time
        # The endpoint answers, but its newest block gets older than the limit: stale.
        w.clock.now += MAX_AGE - 2
        await w.check()
        assert w.monitor.reachable
        w.clock.now += 1
        await w.check()
        assert not w.monitor.reachable
        assert w.monitor.blind_since() == seen_at + MAX_AGE - 2
        assert w.runtime.state.view_time == view
        assert events(w, "chain_unreachable")
        assert w.runtime.store.meta(META_LAST_SEEN) == repr(seen_at + MAX_AGE - 2)
        # Silent too: the same view, no new input.
        w.silent()
        inputs = w.runtime.stats["inputs"]
        await w.check()
        assert w.runtime.stats["inputs"] == inputs
        # Back, with a fresh block: no window.
        w.clock.now += 30
        w.seen()
        await w.check()
        assert w.monitor.reachable and w.monitor.blind_since() is None
        assert w.runtime.state.view_time is None
        assert events(w, "chain_reachable")


@in_loop
async def test_monitor__block_from_the_future__reachable_and_a_skew_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with world(tmp_path) as w:
        w.seen(age=-60)
        with caplog.at_level(logging.WARNING, "smartmesh.offline"):
            await w.check()
        assert w.monitor.reachable
        assert "clock skew" in caplog.text


@in_loop
async def test_monitor__restart_while_blind__keeps_the_view_it_had(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        w.seen()
        await w.check()
        w.silent()
        await w.check()
        view = w.runtime.state.view_time
        assert view is not None
    async with world(tmp_path) as again:
        # Nothing seen since the restart, the endpoint silent: the persisted view holds.
        again.status = ChainStatus(None, None, None, None, False, False, "refused")
        await again.check()
        assert again.runtime.state.view_time == view
        assert again.monitor.view_time() == view
        assert again.monitor.blind_since() is not None


# --- delegates ---------------------------------------------------------------------------------


@in_loop
async def test_monitor__delegate_view__counts_while_it_holds_our_latest_proof(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as w:
        w.seen()
        await w.check()
        await w.receive_direct(5, 1)
        w.silent()
        await w.check()
        fresh = Timestamp(int(w.clock.now))
        w.monitor.on_delegate_view(TOKEN_NETWORK, w.a, fresh, DELEGATE)
        await asyncio.sleep(0.05)
        assert w.runtime.state.delegated == {(TOKEN_NETWORK, w.a): fresh}
        (item,) = w.monitor.deadlines()
        assert item.kind is DeadlineKind.UPDATE_HORIZON and item.delegated
        assert item.chain_deadline == fresh + SETTLE_WINDOW
        assert w.monitor.coverage(item) == (Coverage.DELEGATE, DELEGATE)
        # The partner signs a newer proof: the delegate holds an older one until it says so.
        await w.receive_direct(6, 2)
        await w.check()
        assert w.runtime.state.delegated == {}
        (item,) = w.monitor.deadlines()
        assert not item.delegated and w.monitor.coverage(item) == (Coverage.SELF, None)
        w.monitor.on_delegate_view(TOKEN_NETWORK, w.a, fresh, DELEGATE, nonce=2)
        await asyncio.sleep(0.05)
        assert w.runtime.state.delegated == {(TOKEN_NETWORK, w.a): fresh}
        w.monitor.on_delegate_view(TOKEN_NETWORK, w.a, None)
        await asyncio.sleep(0.05)
        assert w.runtime.state.delegated == {}


@in_loop
async def test_monitor__delegate_view_while_the_chain_is_seen__no_input(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        w.seen()
        await w.check()
        await w.receive_direct(5, 1)
        inputs = w.runtime.stats["inputs"]
        w.monitor.on_delegate_view(TOKEN_NETWORK, w.a, Timestamp(int(w.clock.now)), DELEGATE)
        await asyncio.sleep(0.05)
        assert w.runtime.stats["inputs"] == inputs and w.runtime.state.delegated == {}


# --- warnings ----------------------------------------------------------------------------------


@in_loop
async def test_monitor__warns_once_ahead_of_the_horizon_only_while_blind(tmp_path: Path) -> None:
    lead = 600
    async with world(tmp_path, warn_lead=lead) as w:
        w.seen(age=0)
        await w.check()
        await w.receive_direct(5, 1)
        horizon = w.status.latest_timestamp + SETTLE_WINDOW - 35  # type: ignore[operator]
        w.clock.now = horizon - lead - 1
        w.seen(age=0, view=int(horizon) + 35 - SETTLE_WINDOW)
        await w.check()
        assert not events(w, "deadline_warning")  # the chain is seen: nothing to warn of
        w.silent()
        await w.check()
        assert not events(w, "deadline_warning")  # blind, but not yet within the lead
        w.clock.now += 2
        await w.check()
        await w.check()
        (warning,) = events(w, "deadline_warning")
        assert warning["what"] == "update_horizon" and warning["deadline"] == horizon
        assert warning["covered_by"] == "self" and warning["amount"] == "5"
        text = str(warning["text"])
        assert text.startswith("reach the chain before ")
        assert text.endswith(" or hand the proofs to a delegate")
        assert w.monitor.next_deadline() is not None


# --- the merchant view -------------------------------------------------------------------------


@in_loop
async def test_monitor__risk_of_a_payment_received_blind__until_the_chain_is_seen(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as w:
        w.seen()
        await w.check()
        await w.receive_direct(5, 1)
        assert w.monitor.risk(TOKEN_NETWORK, w.a, w.clock.now, True) is None
        w.silent()
        await w.check()
        w.clock.now += 10
        await w.receive_direct(6, 2)
        received_at = w.clock.now
        risk = w.monitor.risk(TOKEN_NETWORK, w.a, received_at, True)
        assert risk is not None and risk.nonce == 2 and risk.covered_by is Coverage.SELF
        assert risk.chain_deadline == w.status.view_time + SETTLE_WINDOW  # type: ignore[operator]
        assert risk.deadline == risk.chain_deadline - 35
        outside = w.monitor.risk(TOKEN_NETWORK, w.a, received_at, False)
        assert outside is not None and not outside.within_window
        w.clock.now += 5
        w.seen()
        await w.check()
        assert w.monitor.risk(TOKEN_NETWORK, w.a, received_at, True) is None
