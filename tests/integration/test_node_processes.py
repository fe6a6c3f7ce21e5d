"""Payment nodes as real `smartmesh node` processes on loopback, over a real anvil.

Each node is started the way an operator starts it (``scripts.nodes.NodeProcess``: a
keystore, a ``node.toml``, ``smartmesh node --config``); the tests see what its users
see: the HTTP API (``offchain.api.client.ApiClient``), the ``smartmesh`` command line, and
the chain (token balances read from anvil). Covered: a channel's life through the API
(open, deposit, direct and mediated payments with a mediator's fee, withdraw, cooperative
close, unilateral close and the automatic settle), the API's conformance to its own
document on a real node, a mesh peer that sends garbage or forged messages, an RPC
endpoint that dies and comes back (or is dead at start, or serves another chain), and the
CLI against a running node.

Tests that keep the network usable share one line A-B-C per module (``line``; they
measure changes, not absolute balances, so their order does not matter); tests that close
channels or move anvil's clock get a fresh network of their own (``pair``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from web3 import Web3

from mesh_relay.config import MeshConfig
from mesh_relay.runtime import MeshRuntime, Outcome
from mesh_relay.tcp import TcpLinks
from offchain.api.client import ApiClient, ApiClientError
from offchain.node.gossip import Announcement
from offchain.protocol import codec, signing
from offchain.protocol.fees import FeeSchedule
from offchain.protocol.locks import EMPTY_LOCKSROOT, balance_hash
from offchain.protocol.messages import DirectTransfer
from offchain.protocol.signing import PLACEHOLDER_SIGNATURE
from offchain.protocol.types import Address, Generation, Nonce, PrivateKey, TokenAmount
from scripts.nodes import ROOT, NodeProcess, free_port
from tests.lib.api_conformance import ConformanceSetup, check_conformance
from tests.lib.chain_env import ONE, ChainEnv, chain_env, make_party
from tests.lib.node_net import NodeNet, node_net, until_async
from tests.lib.rpc_proxy import RpcProxy

pytestmark = pytest.mark.anvil

T = TypeVar("T")

FEE = 10**15
"""B's flat fee per payment it forwards (base units)."""
DEPOSIT = 100 * ONE
WAIT = 30.0
"""Seconds a condition may take: payments take milliseconds, chain steps a second or two."""
SETTLE_WINDOW = 3_600
"""What NodeProcess configures, and the token network's minimum."""


# -- helpers ----------------------------------------------------------------------------------


def drive(net: NodeNet, body: Callable[[], Awaitable[T]]) -> T:
    """Run ``body`` on a fresh event loop; the net's API clients are closed after it."""

    async def main() -> T:
        try:
            return await body()
        finally:
            await net.close_clients()

    return asyncio.run(main())


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = WAIT) -> None:
    await until_async(check, timeout)


async def view(net: NodeNet, index: int, partner: int) -> dict[str, Any]:
    """Node ``index``'s view of its channel with node ``partner``."""
    client = await net.client(index)
    return await client.channel(net.token, net.address(partner))


async def all_events(client: ApiClient, since: int = 0) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        page = await client.events(since=since, limit=1000)
        if not page["events"]:
            return found
        found += page["events"]
        since = page["next_since"]


async def events_of(client: ApiClient, kind: str, since: int = 0) -> list[dict[str, Any]]:
    return [e for e in await all_events(client, since) if e["kind"] == kind]


async def channel_events(client: ApiClient, since: int = 0) -> list[tuple[str, str, str | None]]:
    """The node's channel events since ``since``: (kind, partner, total) in order."""
    events = await all_events(client, since)
    return [
        (e["kind"], e["data"]["partner"], e["data"].get("total"))
        for e in events
        if e["kind"].startswith("channel_")
    ]


async def last_event_seq(client: ApiClient) -> int:
    seq = 0
    while True:
        page = await client.events(since=seq, limit=1000)
        if not page["events"]:
            return seq
        seq = page["next_since"]


async def pay_until_routed(
    client: ApiClient, token: str, target: str, amount: int, fee: int
) -> dict[str, Any]:
    """Pay until a route with the mediator's announced fee is found: after channels open,
    capacities and fees spread by signed announcements (rate-limited to one per 250 ms)."""
    deadline = time.monotonic() + WAIT
    while True:
        payment = await client.pay(token, target, amount, wait=WAIT)
        if payment["status"] == "succeeded" and int(payment["fee"]) == fee:
            return payment
        assert time.monotonic() < deadline, f"no route in time: {payment}"
        await asyncio.sleep(0.3)


async def pending_locks(client: ApiClient) -> set[tuple[str, str, str, str, str]]:
    """The node's pending locks as (role, direction, partner, amount, secrethash). A route
    that fails (a mediator refusing a fee it was not offered yet, before its announcement
    arrived) leaves a lock and its mirror pending until they expire: compare sets."""
    return {
        (p["role"], p["direction"], p["partner"], p["amount"], p["secrethash"])
        for p in await client.pending()
    }


def token_balance(env: ChainEnv, address: str) -> int:
    token = env.contract("test_token", env.token)
    return int(token.functions.balanceOf(Web3.to_checksum_address(address)).call())


def checksum(address: str) -> str:
    return Web3.to_checksum_address(address)


def move_chain_time(env: ChainEnv, seconds: int) -> None:
    """Past a settle window: anvil's clock jumps, a block is mined at the new time."""
    env.rpc("evm_increaseTime", seconds)
    env.mine()


@contextmanager
def running(*nodes: NodeProcess) -> Iterator[None]:
    try:
        for node in nodes:
            node.start()
        yield
    finally:
        for node in nodes:
            node.stop()


class ThreadedProxy:
    """``RpcProxy`` on an event loop in a thread of its own: the node processes use it
    while the test's code blocks (starting a node waits for its ready line, and the node
    checks the chain before it prints it)."""

    def __init__(self, upstream: str, port: int | None = None) -> None:
        self.proxy = RpcProxy(upstream, port)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return self.proxy.url

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    def start(self) -> None:
        self._call(self.proxy.start())

    def stop(self) -> None:
        self._call(self.proxy.stop())

    def __enter__(self) -> ThreadedProxy:
        self.thread.start()
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._call(self.proxy.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


# -- networks ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeNet]:
    """A-B-C, channels funded from both sides, B charging ``FEE`` per payment forwarded;
    payments route both ways when the fixture is ready."""
    directory = tmp_path_factory.mktemp("line")
    with node_net(directory, 3, node_settings={1: {"protocol": {"fee_flat": FEE}}}) as net:

        async def ready() -> None:
            await net.open_line(DEPOSIT)
            a, c = await net.client(0), await net.client(2)
            await pay_until_routed(a, net.token, net.address(2), 1, FEE)
            await pay_until_routed(c, net.token, net.address(0), 1, FEE)

        drive(net, ready)
        yield net


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[NodeNet]:
    """Two nodes linked on the mesh, no channel yet, on an anvil of their own."""
    with node_net(tmp_path, 2) as net:
        yield net


async def open_pair(net: NodeNet, ours: int, theirs: int) -> None:
    a, b = await net.client(0), await net.client(1)
    await a.open_channel(net.token, net.address(1), ours)
    await eventually(lambda: _has(b, net.token, net.address(0)))
    if theirs:
        await b.deposit(net.token, net.address(0), theirs)
        await eventually(
            lambda: _field(view(net, 0, 1), "partner_deposit", lambda v: int(v) == theirs)
        )


async def _has(client: ApiClient, token: str, partner: str) -> bool:
    try:
        await client.channel(token, partner)
    except ApiClientError as exc:
        if exc.code == "not_found":
            return False
        raise
    return True


async def _field(source: Awaitable[dict[str, Any]], name: str, test: Callable[[Any], bool]) -> bool:
    return test((await source)[name])


# -- 1. a channel's life through the API ------------------------------------------------------


def test_open_channel__deposit_then_partner_deposit__both_views_and_chain_agree(
    pair: NodeNet,
) -> None:
    net, env = pair, pair.env
    a_party, b_party = pair.parties
    a_before, b_before = env.balance(a_party), env.balance(b_party)

    async def body() -> tuple[dict[str, Any], dict[str, Any]]:
        a, b = await net.client(0), await net.client(1)
        with pytest.raises(ApiClientError) as missing:
            await a.channel(net.token, net.address(1))
        assert missing.value.code == "not_found"
        opened = await a.open_channel(net.token, net.address(1), 30 * ONE)
        assert opened["status"] == "open"
        assert (int(opened["our_deposit"]), int(opened["partner_deposit"])) == (30 * ONE, 0)
        assert opened["settle_window"] == SETTLE_WINDOW and opened["settle_deadline"] is None
        await eventually(lambda: _has(b, net.token, net.address(0)))
        deposited = await b.deposit(net.token, net.address(0), 20 * ONE)
        assert (int(deposited["our_deposit"]), int(deposited["partner_deposit"])) == (
            20 * ONE,
            30 * ONE,
        )
        await eventually(
            lambda: _field(view(net, 0, 1), "partner_deposit", lambda v: int(v) == 20 * ONE)
        )
        # Totals, not increments: the same total again is a no-op (a retry is harmless); a
        # lower one, one above the network's limit or above what B holds changes nothing.
        assert await b.deposit(net.token, net.address(0), 20 * ONE) == await view(net, 1, 0)
        held = env.balance(b_party)
        for total, code in (
            (10 * ONE, "conflict"),
            (2**256 - 1, "invalid_argument"),
            (20 * ONE + held + 1, "insufficient_funds"),
        ):
            with pytest.raises(ApiClientError) as refused:
                await b.deposit(net.token, net.address(0), total)
            assert refused.value.code == code, refused.value
        assert env.balance(b_party) == held
        ours, theirs = await view(net, 0, 1), await view(net, 1, 0)
        assert await a.channels(net.token) == [ours]
        assert await a.pending() == [] and await b.pending() == []
        for client, partner in ((a, net.address(1)), (b, net.address(0))):
            assert await channel_events(client) == [
                ("channel_opened", partner, None),
                ("channel_deposit", partner, str(30 * ONE)),
                ("channel_deposit", partner, str(20 * ONE)),
            ]
        return ours, theirs

    ours, theirs = drive(net, body)
    assert ours["channel_id"] == theirs["channel_id"] and ours["generation"] == theirs["generation"]
    assert (int(ours["our_balance"]), int(ours["partner_balance"])) == (30 * ONE, 20 * ONE)
    assert (int(theirs["our_balance"]), int(theirs["partner_balance"])) == (20 * ONE, 30 * ONE)
    assert int(ours["spendable"]) == 30 * ONE and int(theirs["spendable"]) == 20 * ONE
    assert env.balance(a_party) == a_before - 30 * ONE
    assert env.balance(b_party) == b_before - 20 * ONE
    assert token_balance(env, "0x" + env.network.hex()) == 50 * ONE


def test_payment_id__sent_and_received_from_two_payers__ambiguous_until_named(
    line: NodeNet,
) -> None:
    # Payment ids are unique per payer only: A pays B with an id; B pays A with the same id
    # directly, and C pays A with it too, through B. A names each by direction and payer.
    net = line
    payment_id = int.from_bytes(os.urandom(7), "big") + 1  # unused on this line so far

    async def body() -> None:
        a, b, c = [await net.client(i) for i in range(3)]
        sent = await a.pay(net.token, net.address(1), ONE, direct=True, payment_id=payment_id)
        assert sent["status"] == "succeeded", sent
        for payer in (b, c):  # the same id, chosen by two other payers
            paid = await payer.pay(
                net.token, net.address(0), 2 * ONE, payment_id=payment_id, wait=WAIT
            )
            assert paid["status"] == "succeeded", paid

        async def both_received() -> bool:
            found = await a.payments(direction="received", limit=1000)
            return len([p for p in found if p["payment_id"] == str(payment_id)]) == 2

        await eventually(both_received)
        with pytest.raises(ApiClientError) as ambiguous:
            await a.payment(payment_id)
        assert (ambiguous.value.code, ambiguous.value.status) == ("ambiguous", 409)
        with pytest.raises(ApiClientError) as received_twice:
            await a.payment(payment_id, direction="received")
        assert received_twice.value.code == "ambiguous"
        assert await a.payment(payment_id, direction="sent") == (
            await a.payment(payment_id, direction="sent", partner=net.address(1))
        )
        from_b = await a.payment(payment_id, payer=net.address(1))
        from_c = await a.payment(payment_id, payer=net.address(2))
        b_address, c_address = net.address(1).lower(), net.address(2).lower()
        assert (from_b["partner"].lower(), from_b["payer"].lower()) == (b_address, b_address)
        # Through B, started by C: C's secret, sent ahead, tells A who started it.
        assert (from_c["partner"].lower(), from_c["payer"].lower()) == (b_address, c_address)
        assert int(from_b["amount"]) == int(from_c["amount"]) == 2 * ONE

    drive(net, body)


def test_pay_direct__open_channel__both_sides_record_it_and_balances_move(line: NodeNet) -> None:
    net = line

    async def body() -> None:
        a, b = await net.client(0), await net.client(1)
        a_before, b_before = await view(net, 0, 1), await view(net, 1, 0)
        since_a, since_b = await last_event_seq(a), await last_event_seq(b)
        paid = await a.pay(net.token, net.address(1), 3 * ONE, direct=True, wait=WAIT)
        assert paid["status"] == "succeeded" and paid["fee"] == "0", paid
        payment_id = paid["payment_id"]
        assert (await a.payment(payment_id))["status"] == "succeeded"
        assert payment_id in [p["payment_id"] for p in await a.payments(direction="sent")]

        async def received() -> bool:
            return payment_id in [p["payment_id"] for p in await b.payments(direction="received")]

        await eventually(received)
        a_after = await view(net, 0, 1)
        assert int(a_after["our_balance"]) == int(a_before["our_balance"]) - 3 * ONE
        assert int(a_after["partner_balance"]) == int(a_before["partner_balance"]) + 3 * ONE
        b_after = await view(net, 1, 0)
        assert int(b_after["our_balance"]) == int(b_before["our_balance"]) + 3 * ONE
        sent = await events_of(a, "direct_payment_sent", since_a)
        assert [e["data"]["payment_id"] for e in sent] == [payment_id]
        got = await events_of(b, "payment_received", since_b)
        assert [e["data"]["payment_id"] for e in got] == [payment_id]
        assert got[0]["data"]["amount"] == str(3 * ONE)

    drive(net, body)


def test_pay_mediated__both_ways_via_a_fee_charging_mediator__payee_gets_all_mediator_the_fee(
    line: NodeNet,
) -> None:
    net = line

    async def balances() -> list[int]:
        return [
            int((await view(net, i, j))["our_balance"]) for i, j in ((0, 1), (1, 0), (1, 2), (2, 1))
        ]

    async def body() -> None:
        clients = [await net.client(i) for i in range(3)]
        pending = [await pending_locks(client) for client in clients]
        since_b = await last_event_seq(clients[1])
        for payer, payee, amount in ((0, 2, 5 * ONE), (2, 0, 2 * ONE)):
            before = await balances()
            client = await net.client(payer)
            paid = await client.pay(net.token, net.address(payee), amount, wait=WAIT)
            assert paid["status"] == "succeeded", paid
            assert int(paid["fee"]) == FEE and int(paid["amount"]) == amount
            assert paid["partner"] == checksum(net.address(payee))
            # The unlocks travel on after the payer learnt the secret: wait for them.
            cost = amount + FEE
            expected = (
                [before[0] - cost, before[1] + cost, before[2] - amount, before[3] + amount]
                if payer == 0
                else [before[0] + amount, before[1] - amount, before[2] + cost, before[3] - cost]
            )

            async def settled(expected: list[int] = expected) -> bool:
                return await balances() == expected

            await eventually(settled)
            payee_client = await net.client(payee)
            received = await payee_client.payments(direction="received", limit=5)
            assert paid["payment_id"] in [p["payment_id"] for p in received]
        mediated = await events_of(clients[1], "mediated", since_b)
        assert [int(e["data"]["fee"]) for e in mediated] == [FEE, FEE]
        assert [await pending_locks(client) for client in clients] == pending

    drive(net, body)


def test_pay_mediated__target_offline__pending_until_the_target_returns(line: NodeNet) -> None:
    net = line
    before = drive(net, lambda: _all_pending(net))
    net.nodes[2].stop()
    net.clients.pop(net.nodes[2].api, None)
    try:

        async def while_offline() -> str:
            a, b = await net.client(0), await net.client(1)
            paid = await a.pay(net.token, net.address(2), 1 * ONE, wait=1)
            assert paid["status"] == "pending", paid
            assert (await a.payment(paid["payment_id"]))["status"] == "pending"
            b_address, c_address = checksum(net.address(1)), checksum(net.address(2))
            lock = (str(ONE + FEE), paid["secrethash"])
            assert await pending_locks(a) - before[0] == {("initiator", "sent", b_address, *lock)}

            async def mediating() -> bool:
                return await pending_locks(b) - before[1] == {
                    ("mediator", "received", checksum(net.address(0)), *lock),
                    ("mediator", "sent", c_address, str(ONE), paid["secrethash"]),
                }

            await eventually(mediating)
            return str(paid["payment_id"])

        payment_id = drive(net, while_offline)
    finally:
        net.nodes[2].start()  # B's mesh holds the transfer until C is back

    async def back() -> None:
        a = await net.client(0)
        done = await a.wait_payment(payment_id, WAIT)
        assert done["status"] == "succeeded", done

        async def unlocked() -> bool:
            return await _all_pending(net) == before

        await eventually(unlocked)

    drive(net, back)


async def _all_pending(net: NodeNet) -> list[set[tuple[str, str, str, str, str]]]:
    return [await pending_locks(await net.client(i)) for i in range(len(net.nodes))]


def test_withdraw__partner_online__cosigned_and_the_tokens_reach_the_chain(line: NodeNet) -> None:
    net, env = line, line.env
    a_party = net.parties[0]
    on_chain = env.balance(a_party)

    async def body() -> dict[str, Any]:
        a, b = await net.client(0), await net.client(1)
        since = (await last_event_seq(a), await last_event_seq(b))
        before = await view(net, 0, 1)
        total = int(before["our_withdrawn"]) + 4 * ONE
        drawn = await a.withdraw(net.token, net.address(1), total)
        assert int(drawn["our_withdrawn"]) == total
        assert int(drawn["our_balance"]) == int(before["our_balance"]) - 4 * ONE
        assert int(drawn["our_deposit"]) == int(before["our_deposit"])
        await eventually(
            lambda: _field(view(net, 1, 0), "partner_withdrawn", lambda v: int(v) == total)
        )
        for client, partner, seq in ((a, net.address(1), since[0]), (b, net.address(0), since[1])):
            assert await channel_events(client, seq) == [("channel_withdraw", partner, str(total))]
        return drawn

    drive(net, body)
    assert env.balance(a_party) == on_chain + 4 * ONE


def test_close_cooperative__both_online__chain_balances_equal_the_off_chain_ones(
    pair: NodeNet,
) -> None:
    net, env = pair, pair.env
    a_party, b_party = pair.parties

    async def body() -> tuple[int, int, int, int]:
        a, b = await net.client(0), await net.client(1)
        await open_pair(net, 40 * ONE, 10 * ONE)
        assert (await a.pay(net.token, net.address(1), 7 * ONE, direct=True, wait=WAIT))[
            "status"
        ] == "succeeded"
        back = await b.pay(net.token, net.address(0), 2 * ONE, wait=WAIT)  # locked + unlocked
        assert back["status"] == "succeeded", back
        await a.withdraw(net.token, net.address(1), 5 * ONE)
        # B's view of the withdraw and payments, for the balances compared below (the
        # settle itself needs neither: see the test after this one).
        await eventually(
            lambda: _field(view(net, 1, 0), "partner_withdrawn", lambda v: int(v) == 5 * ONE)
        )
        await eventually(
            lambda: _field(view(net, 1, 0), "our_balance", lambda v: int(v) == 15 * ONE)
        )
        ours, theirs = await view(net, 0, 1), await view(net, 1, 0)
        # A: 40 deposited - 7 paid + 2 received - 5 withdrawn; B: 10 + 7 - 2.
        assert (int(ours["our_balance"]), int(ours["partner_balance"])) == (30 * ONE, 15 * ONE)
        chain_a, chain_b = env.balance(a_party), env.balance(b_party)
        since = (await last_event_seq(a), await last_event_seq(b))
        closed = await a.close_channel(net.token, net.address(1), cooperative=True)
        assert closed["status"] == "settled", closed
        await eventually(lambda: _field(view(net, 1, 0), "status", lambda v: v == "settled"))
        for client, partner, seq in ((a, net.address(1), since[0]), (b, net.address(0), since[1])):
            assert await channel_events(client, seq) == [("channel_settled", partner, None)]
        return chain_a, chain_b, int(ours["our_balance"]), int(theirs["our_balance"])

    chain_a, chain_b, off_a, off_b = drive(net, body)
    assert env.balance(a_party) == chain_a + off_a
    assert env.balance(b_party) == chain_b + off_b
    assert token_balance(env, "0x" + env.network.hex()) == 0


def test_close_cooperative__partner_has_not_seen_our_withdraw__answers_at_once(
    tmp_path: Path,
) -> None:
    # Regression: B refused the settle silently ("pending withdraw") while it had not seen
    # A's withdraw land; A's close waited 120 s for nothing. The final totals do not depend
    # on the withdraw (docs/spec.md §10), so B signs at once.
    with chain_env(tmp_path) as env, ThreadedProxy(env.url) as proxy:
        a_party, b_party = env.parties("coop-A", "coop-B")
        a = NodeProcess("A", a_party.key, tmp_path / "A", env.url, env.manifest)
        b = NodeProcess(
            "B", b_party.key, tmp_path / "B", proxy.url, env.manifest, peers=[a.tcp_port]
        )
        net = NodeNet(env, [a_party, b_party], [a, b], tmp_path)
        with running(a, b):
            drive(net, lambda: open_pair(net, 40 * ONE, 10 * ONE))
            proxy.stop()  # B co-signs off chain, but cannot see the withdraw land
            chain_a, chain_b = env.balance(a_party), env.balance(b_party)

            async def body() -> dict[str, Any]:
                api = await net.client(0)
                drawn = await api.withdraw(net.token, net.address(1), 5 * ONE)
                assert int(drawn["our_withdrawn"]) == 5 * ONE
                return await api.close_channel(net.token, net.address(1), cooperative=True)

            closed = drive(net, body)
        assert closed["status"] == "settled", closed
        # A: 5 by the withdraw, then its final total 40 less those 5; B: its 10.
        assert env.balance(a_party) == chain_a + 40 * ONE
        assert env.balance(b_party) == chain_b + 10 * ONE
        assert token_balance(env, "0x" + env.network.hex()) == 0


def test_close_cooperative__partner_refuses__fails_at_once_with_its_reason(
    tmp_path: Path,
) -> None:
    # A cannot see the chain, so it has not seen B close the channel: B refuses A's offer
    # ("channel not open") and says so: A's close fails at once with that reason, not
    # after 120 s.
    with chain_env(tmp_path) as env, ThreadedProxy(env.url) as proxy:
        a_party, b_party = env.parties("refuse-A", "refuse-B")
        a = NodeProcess("A", a_party.key, tmp_path / "A", proxy.url, env.manifest)
        b = NodeProcess("B", b_party.key, tmp_path / "B", env.url, env.manifest, peers=[a.tcp_port])
        net = NodeNet(env, [a_party, b_party], [a, b], tmp_path)
        with running(a, b):
            drive(net, lambda: open_pair(net, 40 * ONE, 10 * ONE))
            proxy.stop()

            async def body() -> None:
                api, other = await net.client(0), await net.client(1)
                closed = await other.close_channel(net.token, net.address(0))
                assert closed["status"] == "closed", closed
                with pytest.raises(ApiClientError) as refused:
                    await api.close_channel(net.token, net.address(1), cooperative=True)
                assert refused.value.code == "conflict"
                assert "refused the cooperative settle: channel not open" in str(refused.value)
                assert (await view(net, 0, 1))["status"] == "open"  # A is still blind
                events = await events_of(api, "coop_settle_refused")
                assert [e["data"]["reason"] for e in events] == ["channel not open"]

            drive(net, body)


def test_close_unilateral__settle_window_over__nodes_settle_and_the_chain_matches(
    pair: NodeNet,
) -> None:
    close_unilaterally_then_settle(pair, restart=False)


def test_close_unilateral__both_nodes_restart_in_the_settle_window__they_still_settle(
    pair: NodeNet,
) -> None:
    # Regression: the node remembered the balance hashes on chain from the close logs it
    # saw, in memory only; restarted, it settled with none, the contract refused
    # ("balance data does not match the proof") every 5 s, and the deposits stayed locked.
    close_unilaterally_then_settle(pair, restart=True)


def close_unilaterally_then_settle(net: NodeNet, restart: bool) -> None:
    """A and B pay each other, A closes, B puts A's proof on chain, the window ends: both
    nodes settle by themselves and each gets its off-chain balance on chain."""
    env = net.env
    a_party, b_party = net.parties
    network = env.contract("token_network", env.network).functions

    async def before_close() -> tuple[int, int, int, int]:
        a, b = await net.client(0), await net.client(1)
        await open_pair(net, 40 * ONE, 10 * ONE)
        chain_a, chain_b = env.balance(a_party), env.balance(b_party)
        paid = await a.pay(net.token, net.address(1), 7 * ONE, direct=True, wait=WAIT)
        assert paid["status"] == "succeeded"
        back = await b.pay(net.token, net.address(0), 2 * ONE, wait=WAIT)
        assert back["status"] == "succeeded", back
        await eventually(
            lambda: _field(view(net, 1, 0), "our_balance", lambda v: int(v) == 15 * ONE)
        )
        await eventually(
            lambda: _field(view(net, 0, 1), "our_balance", lambda v: int(v) == 35 * ONE)
        )
        closed = await a.close_channel(net.token, net.address(1))
        assert closed["status"] == "closed", closed
        assert closed["settle_deadline"] is not None
        await eventually(lambda: _field(view(net, 1, 0), "status", lambda v: v == "closed"))

        async def a_proof_on_chain() -> bool:  # B's update of A's side
            side = network.get_participant(a_party.address, b_party.address).call()
            return bool(side[3] != bytes(32))

        await eventually(a_proof_on_chain)
        with pytest.raises(ApiClientError) as early:
            await a.settle(net.token, net.address(1))
        assert early.value.code == "conflict"
        with pytest.raises(ApiClientError) as paying:
            await a.pay(net.token, net.address(1), 1, direct=True)
        assert paying.value.code in ("not_found", "conflict")
        return chain_a, chain_b, int(closed["our_balance"]), int(closed["partner_balance"])

    chain_a, chain_b, off_a, off_b = drive(net, before_close)
    assert (off_a, off_b) == (35 * ONE, 15 * ONE)
    if restart:
        net.restart(0)
        net.restart(1)
    move_chain_time(env, SETTLE_WINDOW + 10)

    async def after_window() -> None:
        for i, j in ((0, 1), (1, 0)):
            await eventually(
                lambda i=i, j=j: _field(view(net, i, j), "status", lambda v: v == "settled")
            )

    drive(net, after_window)

    async def logged() -> None:
        for i in (0, 1):
            kinds = [kind for kind, _, _ in await channel_events(await net.client(i))]
            assert kinds[-2:] == ["channel_closed", "channel_settled"]

    drive(net, logged)
    assert env.balance(a_party) == chain_a + off_a
    assert env.balance(b_party) == chain_b + off_b
    assert token_balance(env, "0x" + env.network.hex()) == 0


# -- 2. the API document, against a real node -------------------------------------------------


def test_check_conformance__real_node_and_partner__every_operation_answers_as_documented(
    pair: NodeNet,
) -> None:
    net, env = pair, pair.env

    async def past_settle_window() -> None:
        await asyncio.to_thread(move_chain_time, env, SETTLE_WINDOW + 10)
        await eventually(
            lambda: _field(view(net, 0, 1), "status", lambda v: v in ("settleable", "settled"))
        )

    async def body() -> None:
        setup = ConformanceSetup(
            token=bytes(env.token),
            partner=bytes.fromhex(net.address(1)[2:]),
            deposit=10,
            before_settle=past_settle_window,
        )
        checker = await check_conformance(net.nodes[0].api, setup)
        assert not checker.missing()

    drive(net, body)


# -- 3. bad input from a mesh peer ------------------------------------------------------------


async def start_attacker(key: bytes, node: NodeProcess) -> MeshRuntime:
    """A mesh peer of ``node`` (TCP on loopback) under its own key; its app acks at once."""
    links = TcpLinks(None, [("127.0.0.1", node.tcp_port)], 1200)
    mesh = MeshRuntime(MeshConfig(app_acks=False), key, [links])
    await mesh.start()
    return mesh


async def deliver(mesh: MeshRuntime, node: NodeProcess, payload: bytes) -> None:
    """Send ``payload`` to ``node`` and wait for its end-to-end ack: the node acknowledges
    a payload only once it has dealt with it (logged it, refused it, or dropped it)."""
    message_id = mesh.send(bytes.fromhex(node.address[2:]), payload, 60.0)
    assert await asyncio.wait_for(mesh.outcome(message_id), WAIT) is Outcome.DELIVERED


async def snapshot_of(client: ApiClient) -> tuple[object, ...]:
    """What a refused message must leave as it was."""
    return (await client.channels(), await client.payments(limit=1000), await client.pending())


async def assert_pays(net: NodeNet) -> None:
    a = await net.client(0)
    paid = await a.pay(net.token, net.address(2), 1 * ONE, wait=WAIT)
    assert paid["status"] == "succeeded" and int(paid["fee"]) == FEE, paid


GARBAGE = (
    b"\x07",  # an unknown wire version
    b"\x01\xff" + bytes(100),  # version 1, unknown message type
    b"\x01\x01" + bytes(3),  # a direct transfer cut short
    b"\x01\x02" + bytes(range(256)) * 2,  # a locked transfer with trailing bytes
)
"""Payloads no codec version decodes (none starts with the announcement tag 0xa1)."""


def test_receive_garbage__from_a_mesh_peer__logged_invalid_state_unchanged_node_serves(
    line: NodeNet,
) -> None:
    net, node = line, line.nodes[0]
    attacker = make_party("garbage sender")

    async def body() -> None:
        a = await net.client(0)
        since = await last_event_seq(a)
        before = await snapshot_of(a)
        mesh = await start_attacker(attacker.key, node)
        try:
            for payload in GARBAGE:
                await deliver(mesh, node, payload)
        finally:
            await mesh.stop()
        refused = await events_of(a, "invalid_received", since)
        assert len(refused) == len(GARBAGE), refused
        for event in refused:
            assert event["data"]["sender"] == "0x" + attacker.raw.hex()
            assert event["data"]["reason"].startswith("undecodable")
        assert await snapshot_of(a) == before
        await assert_pays(net)

    drive(net, body)
    assert node.running()


def test_receive_raw_bytes__on_the_mesh_tcp_port__connection_dropped_node_serves(
    line: NodeNet,
) -> None:
    net, node = line, line.nodes[0]
    for blob in (os.urandom(4096), b"\xff\xff" + os.urandom(70_000), b"\x00\x00" * 1000):
        with (
            socket.create_connection(("127.0.0.1", node.tcp_port), timeout=5) as sock,
            contextlib.suppress(OSError),  # the node may hang up first
        ):
            sock.sendall(blob)
    drive(net, lambda: assert_pays(net))
    assert node.running()


def test_receive_balance_proof__signed_with_the_wrong_key__refused_state_unchanged(
    line: NodeNet,
) -> None:
    net, env, node = line, line.env, line.nodes[0]
    (attacker,) = env.parties("forger")
    network = env.contract("token_network", env.network).functions
    env.send(
        attacker,
        network.open_channel_with_deposit(
            Web3.to_checksum_address(node.address), SETTLE_WINDOW, 5 * ONE
        ),
    )
    wrong_key = make_party("not the forger").key

    async def body() -> None:
        a = await net.client(0)
        await eventually(lambda: _has(a, net.token, attacker.address))
        channel = await a.channel(net.token, attacker.address)
        assert int(channel["partner_deposit"]) == 5 * ONE
        transfer = DirectTransfer(
            env.network, Generation(channel["generation"]), Nonce(1), 42, TokenAmount(ONE),
            PLACEHOLDER_SIGNATURE,
        )  # fmt: skip
        proof = balance_hash(TokenAmount(ONE), TokenAmount(0), EMPTY_LOCKSROOT)
        node_raw = Address(bytes.fromhex(node.address[2:]))

        def signed(key: bytes) -> bytes:
            message = signing.sign(
                PrivateKey(key), transfer, env.deployment.chain_id, attacker.raw, node_raw, proof
            )
            return codec.encode(message)

        since = await last_event_seq(a)
        before = await snapshot_of(a)
        mesh = await start_attacker(attacker.key, node)
        try:
            await deliver(mesh, node, signed(wrong_key))
            refused = await events_of(a, "invalid_received", since)
            assert [(e["data"]["sender"], e["data"]["reason"]) for e in refused] == [
                ("0x" + attacker.raw.hex(), "signature does not match the partner's balance")
            ]
            assert await snapshot_of(a) == before
            # The same message signed by the channel's partner goes through: only the
            # signature was wrong.
            await deliver(mesh, node, signed(attacker.key))
            after = await a.channel(net.token, attacker.address)
            assert int(after["our_balance"]) == int(channel["our_balance"]) + ONE
        finally:
            await mesh.stop()
        received = await a.payments(direction="received", partner=attacker.address)
        assert [(p["payment_id"], p["amount"]) for p in received] == [("42", str(ONE))]
        await assert_pays(net)

    drive(net, body)
    assert node.running()


def test_receive_capacity_announcement__forged_signature__ignored_routes_unchanged(
    line: NodeNet,
) -> None:
    net, env, node = line, line.env, line.nodes[0]
    attacker = make_party("announcement forger")
    b, c = (Address(bytes.fromhex(net.address(i)[2:])) for i in (1, 2))

    async def body() -> None:
        a = await net.client(0)
        since = await last_event_seq(a)
        before = await snapshot_of(a)
        now_ms = int(time.time() * 1000)
        # B "says" it can send nothing to C and charges a fortune: signed by someone else.
        forged = Announcement(
            env.deployment.chain_id, env.network, b, c, 0, FeeSchedule(flat=10**30),
            now_ms + 1_000,
        ).signed(attacker.key)  # fmt: skip
        # Signed by its signer, but about a channel the chain does not know.
        unknown = Announcement(
            env.deployment.chain_id, env.network, attacker.raw, c, 10**30, FeeSchedule(),
            now_ms + 1_000,
        ).signed(attacker.key)  # fmt: skip
        mesh = await start_attacker(attacker.key, node)
        try:
            await deliver(mesh, node, forged.encode())
            await deliver(mesh, node, unknown.encode())
            await deliver(mesh, node, forged.encode()[:-1])  # truncated
        finally:
            await mesh.stop()
        assert await snapshot_of(a) == before
        assert await events_of(a, "invalid_received", since) == []
        await assert_pays(net)  # B's real capacity and fee, not the forged ones

    drive(net, body)
    assert node.running()


# -- 4. the chain endpoint fails ------------------------------------------------------------


def test_rpc_endpoint_dies__node_running__pays_off_chain_blind_then_catches_up(
    tmp_path: Path,
) -> None:
    with chain_env(tmp_path) as env, ThreadedProxy(env.url) as proxy:
        a_party, b_party = env.parties("rpc-A", "rpc-B")
        # A asks for logs 100 blocks at a time: the outage leaves it several ranges behind.
        a = NodeProcess("A", a_party.key, tmp_path / "A", proxy.url, env.manifest,
                        settings={"chain": {"log_range": 100}})  # fmt: skip
        b = NodeProcess("B", b_party.key, tmp_path / "B", env.url, env.manifest, peers=[a.tcp_port])
        net = NodeNet(env, [a_party, b_party], [a, b], tmp_path)
        with running(a, b):

            async def before() -> None:
                await open_pair(net, 20 * ONE, 10 * ONE)
                status = await (await net.client(0)).status()
                assert status["chain_reachable"] and status["blind_since"] is None

            drive(net, before)
            proxy.stop()

            async def blind() -> None:
                a_api, b_api = await net.client(0), await net.client(1)

                async def unreachable() -> bool:
                    return not (await a_api.status())["chain_reachable"]

                await eventually(unreachable)
                status = await a_api.status()
                assert status["blind_since"] is not None
                paid = await a_api.pay(net.token, net.address(1), 3 * ONE, direct=True, wait=WAIT)
                assert paid["status"] == "succeeded", paid
                back = await b_api.pay(net.token, net.address(0), 1 * ONE, wait=WAIT)
                assert back["status"] == "succeeded", back
                # B (whose endpoint works) deposits more while A cannot see the chain.
                raised = await b_api.deposit(net.token, net.address(0), 15 * ONE)
                assert int(raised["our_deposit"]) == 15 * ONE
                env.mine(500)  # a backlog to catch up on
                seen = await view(net, 0, 1)
                assert int(seen["partner_deposit"]) == 10 * ONE
                assert not (await a_api.status())["chain_reachable"]

            drive(net, blind)
            proxy.start()

            async def back() -> None:
                a_api = await net.client(0)
                head = env.head()
                await eventually(
                    lambda: _field(view(net, 0, 1), "partner_deposit", lambda v: int(v) == 15 * ONE)
                )

                async def recovered() -> bool:
                    status = await a_api.status()
                    return bool(status["chain_reachable"] and status["synced"])

                await eventually(recovered)
                status = await a_api.status()
                assert status["blind_since"] is None and status["confirmed_block"] >= head
                seen = await view(net, 0, 1)
                assert (int(seen["our_balance"]), int(seen["partner_balance"])) == (
                    18 * ONE,
                    17 * ONE,
                )

            drive(net, back)


def test_start__endpoint_dead__starts_blind_and_syncs_once_it_answers(tmp_path: Path) -> None:
    with chain_env(tmp_path) as env:
        (who,) = env.parties("blind start")
        port = free_port()
        node = NodeProcess("blind", who.key, tmp_path / "blind", f"http://127.0.0.1:{port}",
                           env.manifest)  # fmt: skip
        net = NodeNet(env, [who], [node], tmp_path)
        with running(node):
            assert node.ready["chain_id"] == env.deployment.chain_id

            async def dead() -> None:
                status = await (await net.client(0)).status()
                assert not status["chain_reachable"] and not status["synced"]
                assert status["latest_block"] == 0

            drive(net, dead)
            with ThreadedProxy(env.url, port):

                async def alive() -> None:
                    api = await net.client(0)

                    async def synced() -> bool:
                        status = await api.status()
                        return bool(status["chain_reachable"] and status["synced"])

                    await eventually(synced)
                    tokens = await api.tokens()
                    assert [t["token"].lower() for t in tokens] == [net.token]

                drive(net, alive)


def test_stop__api_request_waiting_for_the_chain__exits_cleanly_without_waiting_for_it(
    tmp_path: Path,
) -> None:
    with chain_env(tmp_path) as env:
        (who,) = env.parties("stopping")
        dead = f"http://127.0.0.1:{free_port()}"
        node = NodeProcess("stopping", who.key, tmp_path / "stopping", dead, env.manifest)
        net = NodeNet(env, [who], [node], tmp_path)
        with running(node):

            async def body() -> int | None:
                api = await net.client(0)
                partner = make_party("never reached").address
                opening = asyncio.create_task(api.open_channel(net.token, partner, 0))
                with pytest.raises(TimeoutError):  # it waits for a chain that is not there
                    await asyncio.wait_for(asyncio.shield(opening), 1)
                # SIGTERM; NodeProcess.stop sends SIGKILL after 30 s (exit code -9).
                code = await asyncio.to_thread(node.stop)
                with pytest.raises(ApiClientError) as cut:
                    await opening
                assert cut.value.code == "unreachable"
                return code

            assert drive(net, body) == 0
        assert "final snapshot" in node.log_path.read_text()


@pytest.mark.parametrize("fault", ["wrong_chain_id", "missing_contract"])
def test_start__manifest_does_not_match_the_chain__exits_2_with_a_clear_error(
    tmp_path: Path, fault: str
) -> None:
    with chain_env(tmp_path) as env:
        (who,) = env.parties("misconfigured")
        manifest = json.loads(env.manifest.read_text())
        if fault == "wrong_chain_id":
            manifest["chain_id"] = 5
            expected = "the endpoint serves chain 31337, expected chain 5"
        else:
            nowhere = Web3.to_checksum_address("0x" + "5e" * 20)
            manifest["contracts"]["SecretRegistry"]["address"] = nowhere
            expected = f"no code at the SecretRegistry {nowhere}"
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(manifest))
        node = NodeProcess("bad", who.key, tmp_path / "bad", env.url, bad)
        with pytest.raises(RuntimeError, match="did not start"):
            node.start()
        assert node.process is not None and node.process.returncode == 2
        log = node.log_path.read_text()
        assert f"error: {expected}" in log, log


# -- 5. the command line against a real node --------------------------------------------------


def smartmesh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "offchain.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_cli_status__running_node__prints_its_address_and_chain(line: NodeNet) -> None:
    node = line.nodes[0]
    shown = smartmesh("status", "--api", node.api)
    assert shown.returncode == 0, shown.stderr
    fields = dict(line.split(maxsplit=1) for line in shown.stdout.splitlines())
    assert fields["address"] == checksum(node.address)
    assert (fields["chain_id"], fields["chain_reachable"]) == ("31337", "true")
    as_json = smartmesh("status", "--api", node.api, "--json")
    status = json.loads(as_json.stdout)
    assert status["address"] == checksum(node.address) and status["chain_id"] == 31337


def test_cli_channel_list__line__one_open_row_per_partner(line: NodeNet) -> None:
    middle = line.nodes[1]
    shown = smartmesh("channel", "list", "--api", middle.api)
    assert shown.returncode == 0, shown.stderr
    header, *rows = shown.stdout.splitlines()
    assert header.split()[:3] == ["TOKEN", "PARTNER", "STATUS"]
    partners = {row.split()[1]: row.split()[2] for row in rows}
    ends = [checksum(line.address(0)), checksum(line.address(2))]
    assert partners == dict.fromkeys(ends, "open")
    listed = json.loads(smartmesh("channel", "list", "--api", middle.api, "--json").stdout)
    assert sorted(c["partner"] for c in listed) == sorted(ends)


def test_cli_pay_wait__mediated__exits_0_with_the_succeeded_payment(line: NodeNet) -> None:
    node = line.nodes[0]
    paid = smartmesh(
        "pay", line.token, line.address(2), str(ONE), "--wait", "30", "--api", node.api, "--json"
    )
    assert paid.returncode == 0, paid.stderr
    payment = json.loads(paid.stdout)
    assert payment["status"] == "succeeded" and int(payment["fee"]) == FEE


def test_cli_pay_wait__no_route__exits_1_with_the_reason(line: NodeNet) -> None:
    node = line.nodes[0]
    stranger = make_party("nobody's partner")
    paid = smartmesh("pay", line.token, stranger.address, "1", "--wait", "--api", node.api)
    assert paid.returncode == 1
    assert paid.stderr.strip().splitlines()[-1].startswith("error: payment_failed: payment ")
