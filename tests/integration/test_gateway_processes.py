"""A blind node's gateway path, with real node processes on a real anvil (docs/offline.md §4).

The attacks of the offline issue, where the victim cannot see the chain and reaches it
only through a gateway of its mesh (a watcher, ``watch = true``):
- a partner closes with an old proof while the victim is blind and has no delegate: the
  victim's ``DelegateUpdate`` to the gateway (sent when it went blind and after every
  payment since) lets the gateway correct the close; the chain pays by the newest proof;
- a mediator whose payer never unlocks while it is blind: its secret registration goes
  through the gateway before the lock expires, and its own close of that channel as a
  transaction it signed without the chain; after the settle it is paid on chain;
- a gateway that drops submissions (``watch_drop_submissions``, testing only: it accepts
  and acknowledges everything and never acts): the node hands the registration and the
  close to another gateway in time; and, with no other gateway, broadcasts the very
  transaction it handed itself once it sees the chain again;
- a delegate that does nothing: covered by
  ``tests/integration/test_watch_processes.py::test_close_by_partner__delegate_not_running__node_updates_itself_when_chain_returns``.

Chain access of the blind node is cut with an ``RpcProxy`` it alone uses (stopped: the
endpoint refuses connections). A payer that never unlocks: the payee's (or the next
hop's) outgoing mesh frames are delayed a few seconds (``mesh_impair_delay``, testing
only), so the test can kill the payer (``kill -9``) once the lock has arrived and before
the secret goes back to it. Settle windows are the network's minimum (3600 s); anvil's
clock jumps over them. Lock expiries are the default 600 s: everything here happens well
within them, by the device clock and the chain's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from offchain.api.client import ApiClient
from scripts.nodes import NodeProcess
from tests.integration.test_node_processes import (
    SETTLE_WINDOW,
    WAIT,
    ThreadedProxy,
    _field,
    all_events,
    drive,
    events_of,
    eventually,
    move_chain_time,
    open_pair,
    pay_until_routed,
    running,
    view,
)
from tests.integration.test_watch_processes import participant, synced, unreachable
from tests.lib.chain_env import ONE, ChainEnv, Party, chain_env
from tests.lib.node_net import NodeNet

pytestmark = pytest.mark.anvil

STATE_CLOSED = 2
STALL = 3.0
"""Seconds the stalling node's mesh frames are held back (testing only)."""
PATIENCE = 5.0
"""``gateway_patience`` of the blind nodes: a gateway that said nothing for this long is
given up."""
DROPPING = {"node": {"watch": True, "watch_drop_submissions": True}}
"""A gateway that accepts every request and never acts (testing only)."""
SLOW = 60.0
"""Waits that include a gateway's grace, patience and a transaction."""


def channel_on_chain(env: ChainEnv, a: Party, b: Party) -> Any:
    """(channel id, participant1, participant2, state, generation, settle, closer)."""
    return (
        env.contract("token_network", env.network)
        .functions.get_channel(a.address, b.address)
        .call()
    )


def registered_at(env: ChainEnv, secrethash: bytes) -> int:
    registry = env.contract("secret_registry", env.deployment.secret_registry).functions
    return int(registry.secrethash_to_timestamp(secrethash).call())


async def has_event(client: ApiClient, kind: str, **match: object) -> bool:
    return bool(await _matching(client, kind, **match))


async def _matching(client: ApiClient, kind: str, **match: object) -> list[dict[str, Any]]:
    found = []
    for event in await events_of(client, kind):
        data = event["data"]
        if all(str(data.get(k)).lower() == str(v).lower() for k, v in match.items()):
            found.append(data)
    return found


async def until(check: Callable[[], Awaitable[bool]], timeout: float = WAIT) -> None:
    await eventually(check, timeout)


async def lock_pair(client: ApiClient, payer: str, payee: str | None) -> dict[str, Any] | None:
    """The incoming lock from ``payer`` (and, for a mediator, its outgoing twin to ``payee``)."""
    pending = await client.pending()
    for lock in pending:
        if lock["direction"] != "received" or lock["partner"].lower() != payer.lower():
            continue
        if payee is None:
            return dict(lock)
        for out in pending:
            if (
                out["direction"] == "sent"
                and out["partner"].lower() == payee.lower()
                and out["secrethash"] == lock["secrethash"]
            ):
                return dict(lock)
    return None


async def close_in_background(client: ApiClient, token: str, partner: str) -> asyncio.Task[Any]:
    """Ask for a close; the API answers only once the chain shows it, which a blind node
    does not see: the request is left running (its input is committed at once)."""
    task = asyncio.ensure_future(client.close_channel(token, partner))
    await asyncio.sleep(0.5)
    return task


async def cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


# -- a: a partner closes with an old proof; only a gateway can correct it --------------------------


def test_close_by_partner__victim_blind_with_only_a_gateway__gateway_corrects_it_chain_pays_newest(
    tmp_path: Path,
) -> None:
    with chain_env(tmp_path) as env, ThreadedProxy(env.url) as proxy:
        a_party, b_party, g_party = env.parties("gwa-A", "gwa-B", "gwa-G")
        # A has no delegate: the gateway it hears of is all it has while blind.
        a = NodeProcess("A", a_party.key, tmp_path / "A", proxy.url, env.manifest)
        b = NodeProcess("B", b_party.key, tmp_path / "B", env.url, env.manifest, peers=[a.tcp_port])
        g = NodeProcess("G", g_party.key, tmp_path / "G", env.url, env.manifest,
                        peers=[a.tcp_port, b.tcp_port],
                        settings={"node": {"watch": True}})  # fmt: skip
        net = NodeNet(env, [a_party, b_party, g_party], [a, b, g], tmp_path)
        gateway = "0x" + g_party.raw.hex()
        with running(a, b, g):
            chain_a, chain_b = env.balance(a_party), env.balance(b_party)

            async def online() -> None:
                await open_pair(net, 20 * ONE, 10 * ONE)
                b_api = await net.client(1)
                paid = await b_api.pay(net.token, net.address(0), 3 * ONE, direct=True, wait=WAIT)
                assert paid["status"] == "succeeded", paid
                await asyncio.sleep(1.0)
                # Seeing the chain, A hands nothing to gateways.
                assert not await events_of(await net.client(0), "delegate_ack")

            drive(net, online)
            proxy.stop()

            async def blind() -> None:
                a_api, b_api = await net.client(0), await net.client(1)
                await until(lambda: unreachable(a_api))
                # Going blind, A hands its newest proof from B to the gateway...
                await until(lambda: has_event(a_api, "delegate_ack", delegate=gateway, nonce=1))
                for amount in (2 * ONE, 4 * ONE):
                    paid = await b_api.pay(
                        net.token, net.address(0), amount, direct=True, wait=WAIT
                    )
                    assert paid["status"] == "succeeded", paid
                # ... and after every payment since.
                await until(lambda: has_event(a_api, "delegate_ack", delegate=gateway, nonce=3))
                (horizon,) = [d for d in await a_api.deadlines() if d["what"] == "update_horizon"]
                assert horizon["covered_by"] == "gateway"
                assert horizon["delegate"].lower() == gateway
                # A gateway A did not choose does not stretch its window: its own view sets it.
                status = await a_api.status()
                assert horizon["chain_deadline"] == status["view_time"] + SETTLE_WINDOW
                # B closes while A is blind: the chain would hold no proof of B's payments.
                closed = await b_api.close_channel(net.token, net.address(0))
                assert closed["status"] == "closed", closed

                async def corrected() -> bool:
                    return bool(participant(env, b_party, a_party)[2] == 3)

                await until(corrected)
                assert participant(env, a_party, b_party)[4] == g_party.address  # the delegate
                assert await unreachable(a_api)

            drive(net, blind)
            move_chain_time(env, SETTLE_WINDOW + 10)

            async def settled() -> None:
                await until(lambda: _field(view(net, 1, 0), "status", lambda v: v == "settled"))

            drive(net, settled)
            # The newest proof (nonce 3: B paid A 9) stands.
            assert env.balance(a_party) == chain_a - 20 * ONE + 29 * ONE
            assert env.balance(b_party) == chain_b - 10 * ONE + 1 * ONE


# -- b: a blind mediator whose payer never unlocks -------------------------------------------------


def test_payer_never_unlocks__mediator_blind__secret_registered_through_gateway_paid_after_settle(
    tmp_path: Path,
) -> None:
    with chain_env(tmp_path) as env, ThreadedProxy(env.url) as proxy_b:
        parties = env.parties("gwb-A", "gwb-B", "gwb-C", "gwb-G")
        a_party, b_party, c_party, g_party = parties
        a = NodeProcess("A", a_party.key, tmp_path / "A", env.url, env.manifest)
        b = NodeProcess("B", b_party.key, tmp_path / "B", proxy_b.url, env.manifest,
                        peers=[a.tcp_port],
                        settings={"node": {"gateway_patience": PATIENCE}})  # fmt: skip
        # C holds its frames back: its reveal reaches B only after A was killed.
        c = NodeProcess("C", c_party.key, tmp_path / "C", env.url, env.manifest,
                        peers=[b.tcp_port], settings={"mesh": {"impair_delay": STALL}})  # fmt: skip
        g = NodeProcess("G", g_party.key, tmp_path / "G", env.url, env.manifest,
                        peers=[b.tcp_port], settings={"node": {"watch": True}})  # fmt: skip
        net = NodeNet(env, parties, [a, b, c, g], tmp_path)
        gateway = "0x" + g_party.raw.hex()
        with running(a, b, c, g):

            async def online() -> None:
                await net.client(0)
                for left, right in ((0, 1), (1, 2)):
                    api = await net.client(left)
                    await api.open_channel(net.token, net.address(right), 50 * ONE)
                b_api = await net.client(1)
                await b_api.deposit(net.token, net.address(0), 5 * ONE)
                await pay_until_routed(await net.client(0), net.token, net.address(2), ONE, 0)

            drive(net, online)
            proxy_b.stop()

            async def blind() -> dict[str, Any]:
                a_api, b_api = await net.client(0), await net.client(1)
                await until(lambda: unreachable(b_api))
                # B heard of the gateway: its newest proof from A is there already.
                await until(lambda: has_event(b_api, "delegate_ack", delegate=gateway))
                paid = await a_api.pay(net.token, net.address(2), 7 * ONE)
                assert paid["status"] == "pending", paid
                await until(lambda: _found(lock_pair(b_api, net.address(0), net.address(2))))
                a.kill()  # the payer dies with the lock out: it will never unlock
                lock = await lock_pair(b_api, net.address(0), net.address(2))
                assert lock is not None
                secrethash = bytes.fromhex(lock["secrethash"][2:])

                async def knows_secret() -> bool:
                    return any(
                        d["what"] == "register_secret" and d["secrethash"] == lock["secrethash"]
                        for d in await b_api.deadlines()
                    )

                await until(knows_secret)

                async def registered() -> bool:
                    return registered_at(env, secrethash) > 0

                await until(registered, SLOW)
                assert registered_at(env, secrethash) <= int(lock["expiration"])
                assert await has_event(b_api, "gateway_handed", gateway=gateway,
                                       what="register_secret")  # fmt: skip
                await until(lambda: has_event(b_api, "gateway_done", what="register_secret"))
                deadline = [
                    d for d in await b_api.deadlines() if d["secrethash"] == lock["secrethash"]
                ]
                assert deadline and deadline[0]["covered_by"] == "gateway", deadline
                # The user of B closes the channel with the dead payer, still blind: the
                # close goes out as a transaction B signed and the gateway broadcast.
                before = await view(net, 1, 0)
                closing = await close_in_background(b_api, net.token, net.address(0))
                try:

                    async def closed_by_b() -> bool:
                        found = channel_on_chain(env, b_party, a_party)
                        return bool(found[3] == STATE_CLOSED and found[6] == b_party.address)

                    await until(closed_by_b, SLOW)
                    await until(lambda: has_event(b_api, "gateway_done", what="close"))
                    assert await unreachable(b_api)
                finally:
                    await cancel(closing)
                return before

            before = drive(net, blind)
            chain_b = env.balance(b_party)
            move_chain_time(env, SETTLE_WINDOW + 10)
            proxy_b.start()

            async def back() -> None:
                b_api = await net.client(1)
                await until(lambda: synced(b_api))
                gain = int(before["our_balance"]) + int(before["partner_locked"])
                assert int(before["partner_locked"]) == 7 * ONE

                async def paid() -> bool:
                    return env.balance(b_party) == chain_b + gain

                await until(paid, SLOW)
                kinds = {e["kind"] for e in await all_events(b_api)}
                assert "transaction_failed" not in kinds

            drive(net, back)


async def _found(source: Awaitable[object]) -> bool:
    return await source is not None


# -- c: a gateway that drops submissions -----------------------------------------------------------


def test_secret_and_close__first_gateway_drops_them__next_gateway_lands_both_in_time(
    tmp_path: Path,
) -> None:
    with chain_env(tmp_path) as env, ThreadedProxy(env.url) as proxy_v:
        parties = env.parties("gwc-P", "gwc-V", "gwc-G1", "gwc-G2")
        p_party, v_party, g1_party, g2_party = parties
        p = NodeProcess("P", p_party.key, tmp_path / "P", env.url, env.manifest)
        # V (the payee) holds its frames back: its reveal reaches P only after P was killed.
        v = NodeProcess("V", v_party.key, tmp_path / "V", proxy_v.url, env.manifest,
                        peers=[p.tcp_port],
                        settings={"node": {"gateway_patience": PATIENCE},
                                  "mesh": {"impair_delay": STALL}})  # fmt: skip
        g1 = NodeProcess("G1", g1_party.key, tmp_path / "G1", env.url, env.manifest,
                         peers=[v.tcp_port],
                         settings=DROPPING)  # fmt: skip
        g2 = NodeProcess("G2", g2_party.key, tmp_path / "G2", env.url, env.manifest,
                         peers=[v.tcp_port], settings={"node": {"watch": True}})  # fmt: skip
        net = NodeNet(env, parties, [p, v, g1, g2], tmp_path)
        dropper, honest = "0x" + g1_party.raw.hex(), "0x" + g2_party.raw.hex()
        with running(p, v, g1):

            async def online() -> None:
                await open_pair(net, 30 * ONE, 0)
                p_api = await net.client(0)
                paid = await p_api.pay(net.token, net.address(1), 2 * ONE, wait=WAIT)
                assert paid["status"] == "succeeded", paid

            drive(net, online)
            proxy_v.stop()

            async def blind() -> tuple[dict[str, Any], dict[str, Any]]:
                p_api, v_api = await net.client(0), await net.client(1)
                await until(lambda: unreachable(v_api))
                await until(lambda: has_event(v_api, "delegate_ack", delegate=dropper))
                paid = await p_api.pay(net.token, net.address(1), 5 * ONE)
                assert paid["status"] == "pending", paid
                await until(lambda: _found(lock_pair(v_api, net.address(0), None)))
                p.kill()  # the payer never unlocks
                lock = await lock_pair(v_api, net.address(0), None)
                assert lock is not None
                secrethash = bytes.fromhex(lock["secrethash"][2:])
                # The only gateway V knows takes the registration, and drops it.
                await until(
                    lambda: has_event(v_api, "gateway_handed", gateway=dropper,
                                      what="register_secret"),
                    SLOW,
                )  # fmt: skip
                g2.start()  # another gateway appears in V's mesh
                await until(
                    lambda: has_event(v_api, "gateway_handed", gateway=honest,
                                      what="register_secret"),
                    SLOW,
                )  # fmt: skip

                async def registered() -> bool:
                    return registered_at(env, secrethash) > 0

                await until(registered, SLOW)
                assert registered_at(env, secrethash) <= int(lock["expiration"])
                await until(
                    lambda: has_event(v_api, "gateway_done", gateway=honest,
                                      what="register_secret")
                )  # fmt: skip
                # V's close: whichever gateway gets it first, it lands.
                before = await view(net, 1, 0)
                closing = await close_in_background(v_api, net.token, net.address(0))
                try:

                    async def closed_by_v() -> bool:
                        found = channel_on_chain(env, v_party, p_party)
                        return bool(found[3] == STATE_CLOSED and found[6] == v_party.address)

                    await until(closed_by_v, SLOW)
                finally:
                    await cancel(closing)
                await until(lambda: has_event(v_api, "gateway_done", what="close"))
                done = await _matching(v_api, "gateway_done", what="close")
                assert [d["gateway"].lower() for d in done] == [honest]
                return before, lock

            before, lock = drive(net, blind)
            chain_v = env.balance(v_party)
            move_chain_time(env, SETTLE_WINDOW + 10)
            proxy_v.start()

            async def back() -> None:
                v_api = await net.client(1)
                await until(lambda: synced(v_api))
                assert int(before["partner_locked"]) == 5 * ONE == int(lock["amount"])
                gain = int(before["our_balance"]) + int(before["partner_locked"])

                async def paid() -> bool:
                    return env.balance(v_party) == chain_v + gain

                await until(paid, SLOW)

            try:
                drive(net, back)
            finally:
                g2.stop()


def test_close__only_gateway_drops_it__node_broadcasts_the_same_transaction_when_back(
    tmp_path: Path,
) -> None:
    with chain_env(tmp_path) as env, ThreadedProxy(env.url) as proxy_v:
        parties = env.parties("gwd-P", "gwd-V", "gwd-G")
        p_party, v_party, g_party = parties
        p = NodeProcess("P", p_party.key, tmp_path / "P", env.url, env.manifest)
        v = NodeProcess("V", v_party.key, tmp_path / "V", proxy_v.url, env.manifest,
                        peers=[p.tcp_port],
                        settings={"node": {"gateway_patience": PATIENCE}})  # fmt: skip
        g = NodeProcess("G", g_party.key, tmp_path / "G", env.url, env.manifest,
                        peers=[v.tcp_port],
                        settings=DROPPING)  # fmt: skip
        net = NodeNet(env, parties, [p, v, g], tmp_path)
        dropper = "0x" + g_party.raw.hex()
        with running(p, v, g):

            async def online() -> None:
                await open_pair(net, 30 * ONE, 0)
                p_api = await net.client(0)
                paid = await p_api.pay(net.token, net.address(1), 4 * ONE, direct=True, wait=WAIT)
                assert paid["status"] == "succeeded", paid

            drive(net, online)
            proxy_v.stop()

            async def blind() -> tuple[dict[str, Any], str, int]:
                v_api = await net.client(1)
                await until(lambda: unreachable(v_api))
                await until(lambda: has_event(v_api, "delegate_ack", delegate=dropper))
                before = await view(net, 1, 0)
                sent_before = env.w3.eth.get_transaction_count(v_party.address)
                closing = await close_in_background(v_api, net.token, net.address(0))
                try:
                    await until(lambda: has_event(v_api, "gateway_handed", what="close"))
                    (handed,) = await _matching(v_api, "gateway_handed", what="close")
                    assert handed["gateway"].lower() == dropper
                    # Patience runs out, the dropper is asked again; nothing reaches the chain.
                    await asyncio.sleep(2 * PATIENCE)
                    assert channel_on_chain(env, v_party, p_party)[3] != STATE_CLOSED
                    assert env.w3.eth.get_transaction_count(v_party.address) == sent_before
                finally:
                    await cancel(closing)
                return before, str(handed["subject"]), sent_before

            before, subject, sent_before = drive(net, blind)
            tx_hash = subject.removeprefix("raw:")
            proxy_v.start()

            async def back() -> None:
                v_api = await net.client(1)
                await until(lambda: synced(v_api))

                async def closed_by_v() -> bool:
                    found = channel_on_chain(env, v_party, p_party)
                    return bool(found[3] == STATE_CLOSED and found[6] == v_party.address)

                await until(closed_by_v)
                # The very transaction V signed blind and handed on: one nonce, one transaction.
                receipt = env.w3.eth.get_transaction_receipt(bytes.fromhex(tx_hash))
                assert receipt["status"] == 1
                assert env.w3.eth.get_transaction_count(v_party.address) == sent_before + 1

            drive(net, back)
            chain_v = env.balance(v_party)
            move_chain_time(env, SETTLE_WINDOW + 10)

            async def settled() -> None:
                await until(lambda: _field(view(net, 1, 0), "status", lambda v: v == "settled"))

            drive(net, settled)
            assert int(before["our_balance"]) == 4 * ONE
            assert env.balance(v_party) == chain_v + 4 * ONE
