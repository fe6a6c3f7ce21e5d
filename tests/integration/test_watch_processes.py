"""The watch service with real node processes on a real anvil (docs/spec.md §15).

Covered: a delegate that corrects a partner's close while its client cannot see the
chain, and is paid its reward at settle (checked on chain, and by the ``DelegateRewarded``
log the watcher records); requests a watcher refuses, each with its reason (a stale
nonce, a forged proof or delegation, an unknown channel), sent by a bare mesh peer; a
gateway's work for a bare peer (a secret registered, raw transactions broadcast, each
outcome told back); and a delegate that does nothing (not running), where the node
updates by itself once its chain access is back within the window.

Chain access of a node is cut with an ``RpcProxy`` between it and anvil (stopped: the
endpoint refuses connections).
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from mesh_relay.config import MeshConfig
from mesh_relay.effects import Deliver
from mesh_relay.runtime import MeshRuntime
from mesh_relay.tcp import TcpLinks
from offchain.api.client import ApiClient
from offchain.protocol import eip712
from offchain.protocol.crypto import keccak256, sha256
from offchain.protocol.locks import EMPTY_LOCKSROOT
from offchain.protocol.types import (
    AdditionalHash,
    Address,
    Generation,
    Nonce,
    PrivateKey,
    Secret,
    Signature,
    Timestamp,
    TokenAmount,
)
from offchain.watch.wire import (
    Action,
    BalancePreimage,
    DelegateUpdate,
    OutcomeStatus,
    RawTransaction,
    Reason,
    RegisterSecret,
    Request,
    WatchAck,
    WatchOutcome,
    decode,
    encode,
)
from scripts.nodes import NodeProcess
from tests.integration.test_node_processes import (
    SETTLE_WINDOW,
    WAIT,
    ThreadedProxy,
    _field,
    drive,
    events_of,
    eventually,
    move_chain_time,
    open_pair,
    running,
    view,
)
from tests.lib.chain_env import ONE, ChainEnv, Party, chain_env
from tests.lib.node_net import NodeNet

pytestmark = pytest.mark.anvil

REWARD = ONE // 10


def participant(env: ChainEnv, who: Party, partner: Party) -> Any:
    network = env.contract("token_network", env.network).functions
    return network.get_participant(who.address, partner.address).call()


async def acked_nonce(client: ApiClient, nonce: int) -> bool:
    return any(int(e["data"]["nonce"]) >= nonce for e in await events_of(client, "delegate_ack"))


async def synced(client: ApiClient) -> bool:
    status = await client.status()
    return bool(status["chain_reachable"] and status["synced"])


async def unreachable(client: ApiClient) -> bool:
    return not (await client.status())["chain_reachable"]


# -- a: the delegate corrects a close --------------------------------------------------------


def test_close_by_partner__client_blind_delegate_holds_newest__delegate_updates_and_is_paid(
    tmp_path: Path,
) -> None:
    with chain_env(tmp_path) as env, ThreadedProxy(env.url) as proxy:
        a_party, b_party, w_party = env.parties("watch-A", "watch-B", "watch-W")
        a = NodeProcess("A", a_party.key, tmp_path / "A", proxy.url, env.manifest,
                        settings={"node": {"delegates": [w_party.address],
                                           "delegate_reward": REWARD}})  # fmt: skip
        b = NodeProcess("B", b_party.key, tmp_path / "B", env.url, env.manifest, peers=[a.tcp_port])
        w = NodeProcess("W", w_party.key, tmp_path / "W", env.url, env.manifest,
                        peers=[a.tcp_port, b.tcp_port],
                        settings={"node": {"watch": True}})  # fmt: skip
        net = NodeNet(env, [a_party, b_party, w_party], [a, b, w], tmp_path)
        with running(a, b, w):
            chain_a, chain_b, chain_w = (env.balance(p) for p in (a_party, b_party, w_party))

            async def online() -> None:
                await open_pair(net, 20 * ONE, 10 * ONE)
                b_api, a_api = await net.client(1), await net.client(0)
                paid = await b_api.pay(net.token, net.address(0), 3 * ONE, direct=True, wait=WAIT)
                assert paid["status"] == "succeeded", paid
                await eventually(lambda: acked_nonce(a_api, 1))

            drive(net, online)
            proxy.stop()

            async def blind() -> None:
                a_api, b_api, w_api = [await net.client(i) for i in range(3)]
                await eventually(lambda: unreachable(a_api))
                for amount in (2 * ONE, 4 * ONE):
                    paid = await b_api.pay(
                        net.token, net.address(0), amount, direct=True, wait=WAIT
                    )
                    assert paid["status"] == "succeeded", paid
                await eventually(lambda: acked_nonce(a_api, 3))
                # B closes while A is blind: the chain would hold no proof of B's payments.
                closed = await b_api.close_channel(net.token, net.address(0))
                assert closed["status"] == "closed", closed

                async def updated_by_w() -> bool:
                    return bool(participant(env, b_party, a_party)[2] == 3)

                await eventually(updated_by_w)
                side = participant(env, a_party, b_party)
                assert side[4] == w_party.address and side[5] == REWARD  # delegate, reward
                await eventually(lambda: _has_outcome(w_api, "update", "confirmed"))
                # A hears of it over the mesh, although it still cannot see the chain.
                await eventually(lambda: _has_outcome(a_api, "update", "confirmed"))
                assert await unreachable(a_api)

            drive(net, blind)
            move_chain_time(env, SETTLE_WINDOW + 10)

            async def settled() -> None:
                w_api = await net.client(2)
                await eventually(
                    lambda: _field(view(net, 1, 0), "status", lambda v: v == "settled")
                )
                await eventually(lambda: _has_reward(w_api))
                reward = (await events_of(w_api, "watch_reward"))[0]["data"]
                assert int(reward["reward"]) == REWARD
                assert reward["participant"] == "0x" + a_party.raw.hex()
                await eventually(lambda: _has_outcome(w_api, "settle", "confirmed"))

            drive(net, settled)
            assert env.balance(a_party) == chain_a - 20 * ONE + 29 * ONE - REWARD
            assert env.balance(b_party) == chain_b - 10 * ONE + 1 * ONE
            assert env.balance(w_party) == chain_w + REWARD


async def _has_outcome(client: ApiClient, action: str, status: str) -> bool:
    return any(
        (o["data"]["action"], o["data"]["status"]) == (action, status)
        for o in await events_of(client, "watch_outcome")
    )


async def _has_reward(client: ApiClient) -> bool:
    return bool(await events_of(client, "watch_reward"))


# -- b: refusals ------------------------------------------------------------------------------


async def ask(mesh: MeshRuntime, watcher: bytes, request: DelegateUpdate) -> WatchAck:
    """Send ``request`` from a bare mesh peer; the watcher's answer."""
    queue = mesh.subscribe()
    try:
        mesh.send(watcher, encode(request), 60.0)
        while True:
            event = await asyncio.wait_for(queue.get(), WAIT)
            if isinstance(event, Deliver):
                answer = decode(event.payload)
                if isinstance(answer, WatchAck) and answer.request_id == request.request_id:
                    return answer
    finally:
        mesh.unsubscribe(queue)


def _signed_update(
    env: ChainEnv,
    closer: Party,
    non_closer: Party,
    watcher: Address,
    nonce: int,
    transferred: int,
    *,
    proof_key: bytes | None = None,
    delegation_key: bytes | None = None,
    generation: int = 1,
) -> DelegateUpdate:
    preimage = BalancePreimage(TokenAmount(transferred), TokenAmount(0), EMPTY_LOCKSROOT)
    domain = eip712.Domain(31337, env.network)
    request = DelegateUpdate(
        request_id=secrets.token_bytes(8),
        chain_id=31337,
        token_network=env.network,
        generation=Generation(generation),
        closer=closer.raw,
        non_closer=non_closer.raw,
        nonce=Nonce(nonce),
        closer_balance=preimage,
        additional_hash=AdditionalHash(b"\x01" * 32),
        closing_signature=Signature(bytes(65)),
        reward=TokenAmount(REWARD),
        delegation_signature=Signature(bytes(65)),
        own_nonce=Nonce(0),
        own_balance=BalancePreimage(TokenAmount(0), TokenAmount(0), EMPTY_LOCKSROOT),
    )
    proof = eip712.sign(PrivateKey(proof_key or closer.key), domain, request.balance_proof())
    delegation = eip712.sign(
        PrivateKey(delegation_key or non_closer.key), domain, request.delegation(watcher)
    )
    return DelegateUpdate(
        **{
            **{f: getattr(request, f) for f in request.__dataclass_fields__},
            "closing_signature": proof,
            "delegation_signature": delegation,
        }
    )


def test_delegate_update__stale_forged_or_unknown__refused_with_the_reason(tmp_path: Path) -> None:
    with chain_env(tmp_path) as env:
        c_party, d_party, w_party, stranger = env.parties("ref-C", "ref-D", "ref-W", "ref-X")
        network = env.contract("token_network", env.network).functions
        env.send(c_party, network.open_channel(d_party.address, SETTLE_WINDOW))
        w = NodeProcess("W", w_party.key, tmp_path / "W", env.url, env.manifest,
                        settings={"node": {"watch": True}})  # fmt: skip
        with running(w):
            watcher = w_party.raw

            async def body() -> list[tuple[str, Reason]]:
                async with ApiClient(w.api) as api:
                    await eventually(lambda: synced(api))
                links = TcpLinks(None, [("127.0.0.1", w.tcp_port)], 1200)
                mesh = MeshRuntime(MeshConfig(app_acks=False), secrets.token_bytes(32), [links])
                await mesh.start()
                try:
                    cases = [
                        ("fresh", _signed_update(env, d_party, c_party, watcher, 5, 7)),
                        ("same again", _signed_update(env, d_party, c_party, watcher, 5, 7)),
                        ("stale", _signed_update(env, d_party, c_party, watcher, 4, 6)),
                        ("forged proof", _signed_update(env, d_party, c_party, watcher, 9, 9,
                                                        proof_key=stranger.key)),
                        ("forged delegation", _signed_update(env, d_party, c_party, watcher, 9, 9,
                                                             delegation_key=stranger.key)),
                        ("other delegate", _signed_update(env, d_party, c_party, stranger.raw,
                                                          9, 9)),
                        ("unknown channel", _signed_update(env, d_party, stranger, watcher, 1, 1)),
                        ("future generation", _signed_update(env, d_party, c_party, watcher,
                                                             9, 9, generation=2)),
                    ]  # fmt: skip
                    return [(name, (await ask(mesh, watcher, r)).reason) for name, r in cases]
                finally:
                    await mesh.stop()

            answers = asyncio.run(body())
            assert answers == [
                ("fresh", Reason.ACCEPTED),
                ("same again", Reason.ACCEPTED),
                ("stale", Reason.STALE),
                ("forged proof", Reason.BAD_PROOF_SIGNATURE),
                ("forged delegation", Reason.BAD_DELEGATION_SIGNATURE),
                ("other delegate", Reason.BAD_DELEGATION_SIGNATURE),
                ("unknown channel", Reason.UNKNOWN_CHANNEL),
                ("future generation", Reason.GENERATION_MISMATCH),
            ]

            async def recorded() -> None:
                async with ApiClient(w.api) as api:
                    refused = [e["data"]["reason"] for e in await events_of(api, "watch_refused")]
                    accepted = await events_of(api, "watch_accepted")
                assert refused == [
                    "stale",
                    "bad_proof_signature",
                    "bad_delegation_signature",
                    "bad_delegation_signature",
                    "unknown_channel",
                    "generation_mismatch",
                ]
                assert len(accepted) == 2

            asyncio.run(recorded())


# -- gateway requests ---------------------------------------------------------------------------


async def exchange(
    mesh: MeshRuntime, watcher: bytes, requests: list[Request]
) -> dict[bytes, list[WatchAck | WatchOutcome]]:
    """Send ``requests`` from a bare mesh peer; collect answers until each has its ack and
    (if accepted) an outcome."""
    answers: dict[bytes, list[WatchAck | WatchOutcome]] = {r.request_id: [] for r in requests}

    def complete() -> bool:
        for found in answers.values():
            acks = [a for a in found if isinstance(a, WatchAck)]
            if not acks or (acks[0].accepted and len(found) < 2):
                return False
        return True

    queue = mesh.subscribe()
    try:
        for request in requests:
            mesh.send(watcher, encode(request), 60.0)
        while not complete():
            event = await asyncio.wait_for(queue.get(), WAIT)
            if isinstance(event, Deliver):
                answer = decode(event.payload)
                if isinstance(answer, WatchAck | WatchOutcome) and answer.request_id in answers:
                    answers[answer.request_id].append(answer)
    finally:
        mesh.unsubscribe(queue)
    return answers


def test_gateway_requests__secret_and_raw_transactions__registered_broadcast_outcomes_told(
    tmp_path: Path,
) -> None:
    with chain_env(tmp_path) as env:
        w_party, payer, payee = env.parties("gw-W", "gw-payer", "gw-payee")
        w = NodeProcess("W", w_party.key, tmp_path / "W", env.url, env.manifest,
                        settings={"node": {"watch": True}})  # fmt: skip
        secret = Secret(secrets.token_bytes(32))
        deadline = Timestamp(env.now() + 600)
        token = env.contract("test_token", env.token)
        transfer = token.functions.transfer(payee.address, 5 * ONE).build_transaction(
            {"from": payer.address, "nonce": env.w3.eth.get_transaction_count(payer.address),
             "gas": 100_000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
             "chainId": 31337}
        )  # fmt: skip
        raw = bytes(Account.sign_transaction(transfer, payer.hex_key).raw_transaction)
        requests: list[Request] = [
            RegisterSecret(secrets.token_bytes(8), secret, deadline),
            RawTransaction(secrets.token_bytes(8), deadline, raw),
            RawTransaction(secrets.token_bytes(8), deadline, b"\x02not a transaction"),
        ]
        paid_before = env.balance(payee)
        registry = env.contract("secret_registry", env.deployment.secret_registry).functions
        known = Secret(secrets.token_bytes(32))
        with running(w):

            async def body() -> dict[bytes, list[WatchAck | WatchOutcome]]:
                async with ApiClient(w.api) as api:
                    await eventually(lambda: synced(api))
                links = TcpLinks(None, [("127.0.0.1", w.tcp_port)], 1200)
                mesh = MeshRuntime(MeshConfig(app_acks=False), secrets.token_bytes(32), [links])
                await mesh.start()
                try:
                    first = await exchange(mesh, w_party.raw, requests)
                    # The same secret again (this watcher registered it: its work), and
                    # one that someone else registered already (nothing to do).
                    again = RegisterSecret(secrets.token_bytes(8), secret, deadline)
                    env.send(payer, registry.register_secret(known))
                    done = RegisterSecret(secrets.token_bytes(8), known, deadline)
                    first.update(await exchange(mesh, w_party.raw, [again, done]))
                    return first
                finally:
                    await mesh.stop()

            answers = list(asyncio.run(body()).values())
        outcomes = [
            [(a.action, a.status) for a in found if isinstance(a, WatchOutcome)]
            for found in answers
        ]
        assert all(isinstance(found[0], WatchAck) and found[0].accepted for found in answers)
        assert outcomes == [
            [(Action.REGISTER_SECRET, OutcomeStatus.CONFIRMED)],
            [(Action.BROADCAST, OutcomeStatus.CONFIRMED)],
            [(Action.BROADCAST, OutcomeStatus.FAILED)],
            [(Action.REGISTER_SECRET, OutcomeStatus.CONFIRMED)],
            [(Action.REGISTER_SECRET, OutcomeStatus.UNNECESSARY)],
        ]
        broadcast = answers[1][1]
        assert isinstance(broadcast, WatchOutcome) and broadcast.tx_hash == keccak256(raw)
        assert broadcast.block_timestamp > 0
        assert registry.secrethash_to_timestamp(sha256(secret)).call() <= deadline
        assert env.balance(payee) == paid_before + 5 * ONE


# -- c: a delegate that does nothing ------------------------------------------------------------


def test_close_by_partner__delegate_not_running__node_updates_itself_when_chain_returns(
    tmp_path: Path,
) -> None:
    with chain_env(tmp_path) as env, ThreadedProxy(env.url) as proxy:
        a_party, b_party, w_party = env.parties("idle-A", "idle-B", "idle-W")
        a = NodeProcess("A", a_party.key, tmp_path / "A", proxy.url, env.manifest,
                        settings={"node": {"delegates": [w_party.address],
                                           "delegate_reward": REWARD}})  # fmt: skip
        b = NodeProcess("B", b_party.key, tmp_path / "B", env.url, env.manifest, peers=[a.tcp_port])
        net = NodeNet(env, [a_party, b_party], [a, b], tmp_path)
        with running(a, b):
            chain_a = env.balance(a_party)

            async def online() -> None:
                await open_pair(net, 20 * ONE, 10 * ONE)

            drive(net, online)
            proxy.stop()

            async def blind() -> None:
                a_api, b_api = await net.client(0), await net.client(1)
                await eventually(lambda: unreachable(a_api))
                for amount in (2 * ONE, 4 * ONE):
                    paid = await b_api.pay(
                        net.token, net.address(0), amount, direct=True, wait=WAIT
                    )
                    assert paid["status"] == "succeeded", paid
                closed = await b_api.close_channel(net.token, net.address(0))
                assert closed["status"] == "closed", closed
                await asyncio.sleep(1.0)
                assert participant(env, b_party, a_party)[2] == 0  # nobody updated
                assert not await events_of(a_api, "delegate_ack")

            drive(net, blind)
            proxy.start()

            async def back() -> None:
                async def updated_by_a() -> bool:
                    return bool(participant(env, b_party, a_party)[2] == 2)

                await eventually(updated_by_a)
                assert int(participant(env, a_party, b_party)[5]) == 0  # no delegate to pay

            drive(net, back)
            move_chain_time(env, SETTLE_WINDOW + 10)

            async def settled() -> None:
                await eventually(
                    lambda: _field(view(net, 0, 1), "status", lambda v: v == "settled")
                )

            drive(net, settled)
            assert env.balance(a_party) == chain_a - 20 * ONE + 26 * ONE
