"""The offline safety window with real node processes on a real anvil (docs/offline.md).

A line A-B-C of ``smartmesh node`` processes, each reaching anvil through a JSON-RPC proxy
of its own (``tests/lib/rpc_proxy.py``) that the test stops to cut the node off the chain.
The settle window is the token network's minimum (3600 s), so to see the window close in
seconds B and C take value only while ``offline_min_lead`` = 3535 s is left before their
deadlines: their window stays open 30 s after their view of the chain (W - clock_tolerance
- submit_margin - offline_min_lead = 3600 - 5 - 30 - 3535). A sets its locks' expiry at
3590 s so that the lock's own deadline is not what closes the window.

And the schedule on its own, in-process, on anvil: deferred transactions go out in
deadline order once the endpoint answers again, and one made unnecessary meanwhile (its
secret registered by someone else) is not sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from offchain.chain.outbox import IntentStatus
from offchain.chain.rpc import Endpoint, connect
from offchain.chain.sync import ChainFollower, FollowerConfig
from offchain.chain.transactions import SenderConfig, TxSender
from offchain.node.chain_bridge import ChainBridge
from offchain.node.gossip import GraphView
from offchain.node.runtime import NodeRuntime
from offchain.node.store import Store
from offchain.protocol.crypto import sha256
from offchain.protocol.transitions import ContractSendSecretRegister
from offchain.protocol.types import Secret, Timestamp
from scripts.nodes import NodeProcess
from tests.integration.test_node_processes import (
    ThreadedProxy,
    all_events,
    drive,
    pay_until_routed,
    running,
)
from tests.lib.chain_env import ONE, chain_env
from tests.lib.node_net import NodeNet, until_async
from tests.lib.rpc_proxy import RpcProxy

pytestmark = pytest.mark.anvil

DEPOSIT = 50 * ONE
WINDOW = 30
"""Seconds B's and C's window stays open after their view of the chain."""
SETTLE_WINDOW = 3_600
MIN_LEAD = SETTLE_WINDOW - 5 - 30 - WINDOW
WAIT = 30.0


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = WAIT) -> None:
    await until_async(check, timeout)


async def received(client: Any, payment_id: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def arrived() -> bool:
        nonlocal found
        for payment in await client.payments(direction="received", limit=1000):
            if payment["payment_id"] == payment_id:
                found = payment
                return True
        return False

    await eventually(arrived)
    return found


def test_island_line__blind_payments_in_the_window__refused_after__nothing_sent_when_back(
    tmp_path: Path,
) -> None:
    with (
        chain_env(tmp_path) as env,
        ThreadedProxy(env.url) as proxy_a,
        ThreadedProxy(env.url) as proxy_b,
        ThreadedProxy(env.url) as proxy_c,
    ):
        parties = env.parties("island-A", "island-B", "island-C")
        blind_window = {"offline_min_lead": MIN_LEAD}
        a = NodeProcess("A", parties[0].key, tmp_path / "A", proxy_a.url, env.manifest,
                        settings={"protocol": {"lock_timeout": 3_590}})  # fmt: skip
        b = NodeProcess("B", parties[1].key, tmp_path / "B", proxy_b.url, env.manifest,
                        peers=[a.tcp_port], settings={"protocol": blind_window})  # fmt: skip
        # C warns of every deadline within the hour: its horizon at once when blind.
        c = NodeProcess("C", parties[2].key, tmp_path / "C", proxy_c.url, env.manifest,
                        peers=[b.tcp_port],
                        settings={"protocol": blind_window,
                                  "node": {"deadline_warn_lead": SETTLE_WINDOW}})  # fmt: skip
        net = NodeNet(env, parties, [a, b, c], tmp_path)
        proxies = (proxy_a, proxy_b, proxy_c)
        with running(a, b, c):

            async def online() -> int:
                await net.open_line(DEPOSIT)
                api_a = await net.client(0)
                await pay_until_routed(api_a, net.token, net.address(2), ONE, 0)
                # A fresh block just before the cut, seen by every node: the view.
                env.mine()
                mined = env.now()
                for index in range(3):
                    api = await net.client(index)

                    async def viewed(api: Any = api) -> bool:
                        status = await api.status()
                        return bool(status["chain_reachable"] and status["view_time"] >= mined)

                    await eventually(viewed)
                return mined

            view = drive(net, online)
            head = env.head()
            for proxy in proxies:
                proxy.stop()

            async def blind() -> None:
                api_a, api_b, api_c = [await net.client(i) for i in range(3)]
                for api in (api_a, api_b, api_c):

                    async def cut(api: Any = api) -> bool:
                        return not (await api.status())["chain_reachable"]

                    await eventually(cut)
                assert time.time() < view + WINDOW - 5, "the cut took too long for the window"
                # Within the window: mediated and direct payments go through.
                paid = await api_a.pay(net.token, net.address(2), 5 * ONE, wait=WAIT)
                assert paid["status"] == "succeeded", paid
                direct = await api_a.pay(net.token, net.address(1), 2 * ONE, direct=True)
                assert direct["status"] == "succeeded", direct
                onward = await api_b.pay(net.token, net.address(2), ONE, direct=True)
                assert onward["status"] == "succeeded", onward
                status = await api_c.status()
                assert status["blind_since"] is not None and status["blind_for_s"] >= 0
                assert status["view_time"] == view
                # C holds value from B: its horizon, covered by itself.
                deadlines = await api_c.deadlines()
                horizons = [d for d in deadlines if d["what"] == "update_horizon"]
                assert [d["partner"].lower() for d in horizons] == [net.address(1).lower()]
                (horizon,) = horizons
                assert horizon["chain_deadline"] == view + SETTLE_WINDOW
                assert horizon["deadline"] == view + SETTLE_WINDOW - 35
                assert horizon["covered_by"] == "self" and not horizon["pending"]
                assert "or hand the proofs to a delegate" in horizon["text"]
                assert status["next_deadline"] == horizon["deadline"]
                # The merchant view of what C received while blind.
                got = await received(api_c, paid["payment_id"])
                risk = got["risk"]
                assert risk is not None and risk["within_window"] is True
                assert risk["deadline"] == horizon["deadline"] and risk["covered_by"] == "self"
                assert int(risk["nonce"]) >= 1
                warnings = [e for e in await all_events(api_c) if e["kind"] == "deadline_warning"]
                assert any(
                    "reach the chain before" in w["data"]["text"]
                    and w["data"]["what"] == "update_horizon"
                    for w in warnings
                ), warnings
                # The window closes: B refuses to forward, and says why.
                await asyncio.sleep(max(0.0, view + WINDOW + 1 - time.time()))
                refused = await api_a.pay(net.token, net.address(2), ONE, wait=WAIT)
                assert refused["status"] == "failed", refused
                assert refused["reason"] == "offline_window"
                assert refused["failed_hop"].lower() == net.address(1).lower()
                # A direct payment cannot be refused (its proof is applied), but B's
                # merchant view says it came outside the window.
                late = await api_a.pay(net.token, net.address(1), ONE, direct=True)
                assert late["status"] == "succeeded"
                got = await received(api_b, late["payment_id"])
                assert got["reason"] == "offline_window"
                assert got["risk"]["within_window"] is False

            drive(net, blind)
            for proxy in proxies:
                proxy.start()

            async def back() -> None:
                for index in range(3):
                    api = await net.client(index)

                    async def seen(api: Any = api) -> bool:
                        status = await api.status()
                        return bool(status["chain_reachable"] and status["synced"])

                    await eventually(seen)
                    status = await api.status()
                    assert status["blind_since"] is None and status["blind_for_s"] is None
                api_c = await net.client(2)
                payments = await api_c.payments(direction="received", limit=1000)
                assert all(p["risk"] is None for p in payments), payments
                # Nothing was due: the schedule sent nothing, and found nothing to skip.
                await asyncio.sleep(3)
                for index in range(3):
                    kinds = {e["kind"] for e in await all_events(await net.client(index))}
                    assert "submission_unnecessary" not in kinds
                    assert "transaction_failed" not in kinds
                    assert {"chain_unreachable", "chain_reachable"} <= kinds

            drive(net, back)
            assert env.head() == head


def test_schedule__chain_back__sends_in_deadline_order_and_skips_the_unnecessary(
    tmp_path: Path,
) -> None:
    with chain_env(tmp_path) as env:
        (node_party, other) = env.parties("schedule-node", "schedule-other")
        registry = env.contract("secret_registry", env.deployment.secret_registry)
        now = env.now()
        secrets = [Secret(bytes([i]) * 32) for i in range(1, 5)]
        deadlines = [now + 1000, now + 500, now + 800, now + 900]
        # The order they must go in: by deadline; the last is registered by someone else.
        expected = [1, 2, 0]

        async def main() -> None:
            async with RpcProxy(env.url) as proxy:
                store = Store.open(tmp_path / "node.sqlite3", synchronous="NORMAL")
                runtime = NodeRuntime(node_party.key, env.deployment.chain_id, store)
                endpoint = Endpoint(connect(proxy.url, 2.0))
                follower = ChainFollower(
                    endpoint, env.deployment, node_party.raw, store.conn,
                    FollowerConfig(confirmations=1, poll_interval=0.2, retry_max=1.0),
                )  # fmt: skip
                sender = TxSender(endpoint, node_party.key, store.conn, env.deployment.chain_id,
                                  SenderConfig(poll_interval=0.2))  # fmt: skip
                graph = GraphView(env.deployment.chain_id, node_party.raw)
                bridge = ChainBridge(
                    runtime, env.deployment, follower, sender, graph, on_graph_change=lambda: None
                )
                await runtime.start(None, bridge.submit_effect)
                bridge.start()
                try:
                    await proxy.stop()
                    for index, (secret, deadline) in enumerate(
                        zip(secrets, deadlines, strict=True)
                    ):
                        effect = ContractSendSecretRegister(secret, Timestamp(deadline))
                        bridge.submit_effect((1, index), effect)
                    await asyncio.sleep(3)  # the endpoint is away: nothing goes out
                    assert [key for key, _ in bridge.scheduled()] == [
                        (1, 1),
                        (1, 2),
                        (1, 3),
                        (1, 0),
                    ]
                    assert all(sender.intent(f"fx:1:{i}") is None for i in range(4))
                    env.send(other, registry.functions.register_secret(secrets[3]))
                    await proxy.start()

                    async def drained() -> bool:
                        return not bridge.scheduled()

                    await until_async(drained, 30)
                    intents = [sender.intent(f"fx:1:{i}") for i in expected]
                    assert all(
                        i is not None and i.status is IntentStatus.CONFIRMED for i in intents
                    )
                    nonces = [i.nonce for i in intents if i is not None]
                    assert nonces == sorted(nonces) and len(set(nonces)) == 3
                    assert sender.intent("fx:1:3") is None  # provably unnecessary: never sent
                    events = store.events(0, 100)
                    skipped = [
                        data for _, _, kind, data in events if kind == "submission_unnecessary"
                    ]
                    assert len(skipped) == 1 and "registered" in str(skipped[0]["reason"])
                finally:
                    await bridge.stop()
                    await runtime.stop()
                    await endpoint.w3.provider.disconnect()
                    store.close()
            for secret in secrets:
                assert registry.functions.get_secret_reveal_time(sha256(secret)).call() > 0

        asyncio.run(main())
