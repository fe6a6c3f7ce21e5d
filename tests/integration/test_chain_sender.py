"""The transaction sender on a real anvil: exactly once, through the outbox, with receipts.

Each test drives ``TxSender`` (local signing with an anvil dev-style key, the outbox in a
real SQLite file) against a private chain of this module. Proofs and signatures come
from the protocol core (offchain.protocol.channel, as in tests/contracts/
test_core_proofs.py); the core's own ``ContractSend*`` effects become calls through
``calls.for_effect``. Crashes are simulated by dropping a sender and making a new one on
the same database; a stuck transaction by switching anvil's automine off and raising
the next block's base fee above what the transaction offers.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from offchain.chain import calls
from offchain.chain.calls import BalanceData, ContractCall
from offchain.chain.errors import TransactionFailed
from offchain.chain.outbox import IntentStatus
from offchain.chain.sync import Batch, ChainFollower, FollowerConfig
from offchain.chain.transactions import SenderConfig, TxSender
from offchain.protocol import channel as ch
from offchain.protocol.channel import ChannelPhase, ChannelState, EndState, Rejected
from offchain.protocol.crypto import sha256
from offchain.protocol.locks import EMPTY_LOCKSROOT, Lock
from offchain.protocol.node import transition
from offchain.protocol.settlement import ParticipantTotals, settlement_payout
from offchain.protocol.state import NodeState
from offchain.protocol.transitions import (
    ChainChannelSettled,
    ChainDeposit,
    ContractSendClose,
    ContractSendSecretRegister,
    ContractSendUnlock,
    ContractSendUpdate,
    PartnerProof,
)
from offchain.protocol.types import PrivateKey, Secret, SecretHash, Timestamp, TokenAmount
from scripts.anvil import Anvil, anvil_path, free_port, rpc
from scripts.deployer import Web3Sender
from tests.lib.chain_env import ONE, ChainEnv, Party, chain_env, endpoint, make_party, open_db

pytestmark = pytest.mark.anvil


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChainEnv]:
    with chain_env(tmp_path_factory.mktemp("sender")) as chain:
        yield chain


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    open_db(tmp_path / "node.db").close()
    return tmp_path / "node.db"


class Clock:
    """A clock the test moves by hand (the sender's notion of 'stuck for a while')."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def sender(
    env: ChainEnv,
    who: Party,
    db: sqlite3.Connection | Path,
    clock: Clock | None = None,
    **config: Any,
) -> AsyncIterator[TxSender]:
    conn = db if isinstance(db, sqlite3.Connection) else open_db(db)
    settings = SenderConfig(**{"poll_interval": 0.02, **config})
    async with endpoint(env.url) as ep:
        yield TxSender(ep, who.key, conn, env.deployment.chain_id, settings, clock or Clock())


def nonce(env: ChainEnv, who: Party, block: str = "latest") -> int:
    return int(env.w3.eth.get_transaction_count(who.address, block))  # type: ignore[arg-type]


class Automine:
    """anvil's automine off for the duration (mine with ``env.mine``)."""

    def __init__(self, env: ChainEnv) -> None:
        self.env = env

    def __enter__(self) -> None:
        self.env.rpc("evm_setAutomine", False)

    def __exit__(self, *exc: object) -> None:
        self.env.rpc("evm_setAutomine", True)


def window(env: ChainEnv) -> int:
    return int(env.contract("token_network", env.network).functions.settle_window_min().call())


# --- opening and depositing ---


def test_approve_then_open_with_deposit__dependency_waits_follower_sees_it(
    env: ChainEnv, db_path: Path
) -> None:
    a = make_party("open-a")
    (b,) = env.parties("open-b")
    env.give_ether(a)
    token = env.contract("test_token", env.token)
    env.send(a, token.functions.mint(a.address, 100 * ONE))  # minted, not approved yet
    net = env.network

    async def main() -> list[object]:
        async with sender(env, a, db_path) as tx_a, sender(env, b, db_path) as tx_b:
            await tx_a.submit("approve", calls.approve(env.token, net))
            opening = await tx_a.submit(
                "open",
                calls.open_channel_with_deposit(net, b.raw, window(env), TokenAmount(60 * ONE)),
                depends_on="approve",
            )
            # Not signed before the approval is confirmed: its estimate would revert.
            assert opening.status is IntentStatus.QUEUED
            opened = await tx_a.wait("open", timeout=30)
            await tx_b.submit(
                "deposit", calls.set_total_deposit(net, b.raw, a.raw, TokenAmount(25 * ONE))
            )
            await tx_b.wait("deposit", timeout=30)
            assert opened.gas_used > 0
            seen: list[object] = []

            async def handler(batch: Batch) -> None:
                seen.extend(batch.inputs)

            follower = ChainFollower(
                tx_a.endpoint,
                env.deployment,
                a.raw,
                tx_a.outbox.conn,
                FollowerConfig(confirmations=1),
            )
            await follower.poll(handler)
            return seen

    seen = asyncio.run(main())
    deposits = [(i.participant, i.total) for i in seen if isinstance(i, ChainDeposit)]
    assert deposits == [(a.raw, 60 * ONE), (b.raw, 25 * ONE)]
    assert env.balance(a) == 40 * ONE


# --- a whole channel with the core's proofs ---


@pytest.mark.parametrize(
    "revealed",
    [
        pytest.param((True,), id="one lock, revealed"),
        # Found by this test: the core used to send only the registered locks, which the
        # contract cannot match to the locksroot (now it sends them all).
        pytest.param((True, False), id="two locks, one revealed"),
    ],
)
def test_close_update_register_settle_unlock__core_proofs_accepted_paid_as_predicted(
    env: ChainEnv, db_path: Path, revealed: tuple[bool, ...]
) -> None:
    tag = "-".join(map(str, revealed))
    a, b = env.parties(f"life-a-{tag}", f"life-b-{tag}")
    net = env.network
    registry = env.deployment.secret_registry
    deposit_a, deposit_b = 100 * ONE, 50 * ONE
    secrets = [Secret(bytes([0x50 + n, len(revealed)]) * 16) for n in range(len(revealed))]
    expiration = Timestamp(env.now() + 1800)
    locks = tuple(
        Lock(expiration, TokenAmount((7 - n) * ONE), SecretHash(sha256(secret)))
        for n, secret in enumerate(secrets)
    )
    locked = sum(lock.amount for lock in locks)
    claimed = sum(lock.amount for lock, shown in zip(locks, revealed, strict=True) if shown)
    key_a, key_b = PrivateKey(a.key), PrivateKey(b.key)
    start = env.balance(a), env.balance(b)

    def proof(end: EndState) -> PartnerProof:
        assert end.signature is not None
        return PartnerProof(
            end.nonce, end.transferred, end.locked, end.locks, end.additional_hash, end.signature
        )

    async def main() -> None:
        async with sender(env, a, db_path) as tx_a, sender(env, b, db_path) as tx_b:
            opening = calls.open_channel_with_deposit(
                net, b.raw, window(env), TokenAmount(deposit_a)
            )
            await tx_a.submit("open", opening)
            deposit = calls.set_total_deposit(net, b.raw, a.raw, TokenAmount(deposit_b))
            await tx_b.submit("deposit", deposit)
            await tx_a.wait("open", timeout=30)
            await tx_b.wait("deposit", timeout=30)
            network = env.contract("token_network", net).functions
            generation = network.get_channel(a.address, b.address).call().generation

            # Off chain, through the core: A pays B 30 directly, B locks towards A.
            end_a = EndState(a.raw, deposit=TokenAmount(deposit_a))
            end_b = EndState(b.raw, deposit=TokenAmount(deposit_b))
            view_a = ChannelState(31337, net, generation, window(env), 60, end_a, end_b)
            view_b = ChannelState(31337, net, generation, window(env), 60, end_b, end_a)
            now = Timestamp(env.now())
            made = ch.make_direct_transfer(view_a, key_a, TokenAmount(30 * ONE), 1)
            assert not isinstance(made, Rejected)
            view_a, message = made
            received = ch.receive(view_b, message, now)
            assert isinstance(received, ChannelState)
            view_b = received
            for n, lock in enumerate(locks):
                sent = ch.make_locked_transfer(view_b, key_b, lock, 2 + n, a.raw, lock.amount, now)
                assert not isinstance(sent, Rejected)
                view_b, message = sent
                received = ch.receive(view_a, message, now)
                assert isinstance(received, ChannelState)
                view_a = received

            # The core's effects, as the node would carry them out: A closes with B's
            # proof, B updates with A's, A registers the secrets it learned.
            directory = ChainFollower(
                tx_a.endpoint, env.deployment, a.raw, tx_a.outbox.conn
            ).directory
            close = ContractSendClose(net, b.raw, proof(view_a.partner))
            await tx_a.submit("close", calls.for_effect(close, a.raw, registry, directory))
            await tx_a.wait("close", timeout=30)
            update = ContractSendUpdate(net, a.raw, proof(view_b.partner))
            await tx_b.submit("update", calls.for_effect(update, b.raw, registry, directory))
            await tx_b.wait("update", timeout=30)
            registered = {}
            for n, (secret, shown) in enumerate(zip(secrets, revealed, strict=True)):
                if not shown:
                    continue
                effect = ContractSendSecretRegister(secret, expiration)
                await tx_a.submit(
                    f"register-{n}", calls.for_effect(effect, a.raw, registry, directory)
                )
                await tx_a.wait(f"register-{n}", timeout=30)
                registered[locks[n].secrethash] = Timestamp(env.now())
            assert all(t <= expiration for t in registered.values())

            env.rpc("evm_increaseTime", window(env) + 1)
            env.mine()
            ours = BalanceData(TokenAmount(30 * ONE), TokenAmount(0), EMPTY_LOCKSROOT)
            settle = calls.settle_channel(net, a.raw, ours, b.raw, BalanceData.of(0, locks))
            await tx_a.submit("settle", settle)
            await tx_a.wait("settle", timeout=30)

            # The follower tells the core of the settle; the core asks for the unlock; the
            # chain layer finds the settled generation in its directory.
            inputs: list[object] = []

            async def handler(batch: Batch) -> None:
                inputs.extend(batch.inputs)

            config = FollowerConfig(confirmations=1)
            follower = ChainFollower(tx_a.endpoint, env.deployment, a.raw, tx_a.outbox.conn, config)
            await follower.poll(handler)
            settled = [i for i in inputs if isinstance(i, ChainChannelSettled)]
            assert len(settled) == 1
            closed = replace(view_a, phase=ChannelPhase.CLOSED)
            state = NodeState(a.raw, 31337, channels={(net, b.raw): closed}, registered=registered)
            _, effects = transition(state, settled[0], key_a)
            unlocks = [e for e in effects if isinstance(e, ContractSendUnlock)]
            assert len(unlocks) == 1
            call = calls.for_effect(unlocks[0], a.raw, registry, follower.directory)
            await tx_a.submit("unlock", call)
            await tx_a.wait("unlock", timeout=30)

    asyncio.run(main())
    expected = settlement_payout(
        ParticipantTotals(
            TokenAmount(deposit_a), TokenAmount(0), TokenAmount(30 * ONE), TokenAmount(0)
        ),
        ParticipantTotals(
            TokenAmount(deposit_b), TokenAmount(0), TokenAmount(0), TokenAmount(locked)
        ),
    )
    assert expected.locked_retained2 == locked
    assert env.balance(a) - start[0] == -deposit_a + expected.payout1 + claimed
    assert env.balance(b) - start[1] == -deposit_b + expected.payout2 + locked - claimed
    assert env.balance(a) - start[0] == -30 * ONE + claimed  # paid B 30, claimed B's locks


# --- failures ---


def test_revert_at_estimation__reason_surfaced_nothing_sent_never_retried(
    env: ChainEnv, db_path: Path
) -> None:
    (a,) = env.parties("estimate-a")
    stranger = make_party("estimate-stranger")
    before = nonce(env, a, "pending")

    async def main() -> None:
        async with sender(env, a, db_path) as tx:
            call = calls.set_total_deposit(env.network, a.raw, stranger.raw, TokenAmount(ONE))
            with pytest.raises(TransactionFailed) as caught:
                await tx.submit("deposit", call)
            assert caught.value.reason == "token_network: channel not open"
            assert caught.value.tx_hash is None
            intent = tx.intent("deposit")
            assert (
                intent is not None and intent.status is IntentStatus.FAILED and not intent.attempts
            )
            with pytest.raises(TransactionFailed, match="channel not open"):
                await tx.submit("deposit", call)
            with pytest.raises(TransactionFailed, match="channel not open"):
                await tx.wait("deposit")
            # What waits on it fails too, unsent.
            with pytest.raises(TransactionFailed, match="dependency 'deposit' failed"):
                await tx.submit(
                    "after", calls.approve(env.token, env.network), depends_on="deposit"
                )

    asyncio.run(main())
    assert nonce(env, a, "pending") == before


def test_revert_on_chain__reason_and_hash_surfaced(env: ChainEnv, db_path: Path) -> None:
    a, b = env.parties("onchain-a", "onchain-b")
    network = env.contract("token_network", env.network).functions
    env.send(a, network.open_channel(b.address, window(env)))
    deposit = calls.set_total_deposit(env.network, a.raw, b.raw, TokenAmount(ONE))
    again = ContractCall(deposit.to, deposit.data, 0, "the same total, under another key")

    async def main() -> None:
        async with sender(env, a, db_path) as tx:
            with Automine(env):
                # Both estimate fine against a chain where neither is mined yet.
                await tx.submit("first", deposit)
                await tx.submit("second", again)
                env.mine()
            assert (await tx.wait("first", timeout=30)).block > 0
            with pytest.raises(TransactionFailed) as caught:
                await tx.wait("second", timeout=30)
            assert caught.value.reason == "token_network: total deposit must rise"
            assert caught.value.tx_hash is not None
            receipt = env.w3.eth.get_transaction_receipt(caught.value.tx_hash)
            assert receipt["status"] == 0

    asyncio.run(main())


# --- crashes ---


def test_crash_before_broadcast__new_sender_broadcasts_the_recorded_tx_once(
    env: ChainEnv, db_path: Path
) -> None:
    a, b = env.parties("crash1-a", "crash1-b")
    network = env.contract("token_network", env.network).functions
    env.send(a, network.open_channel(b.address, window(env)))
    before = nonce(env, a)
    deposit = calls.set_total_deposit(env.network, a.raw, b.raw, TokenAmount(3 * ONE))

    async def crashed() -> bytes:
        async with sender(env, a, db_path) as tx:
            intent = await tx.submit("deposit", deposit, broadcast=False)
            assert intent.status is IntentStatus.SENT and intent.nonce == before
            assert intent.attempts[0].broadcast_at is None
            return intent.attempts[0].tx_hash
        # ... and the process dies before the broadcast.

    recorded = asyncio.run(crashed())
    assert nonce(env, a, "pending") == before  # nothing reached the chain

    async def restarted() -> None:
        async with sender(env, a, db_path) as tx:
            outcome = await tx.wait("deposit", timeout=30)
            assert outcome.tx_hash == recorded  # the very transaction recorded, not a new one
            again = await tx.submit("deposit", deposit)
            assert again.status is IntentStatus.CONFIRMED
            await tx.step()

    asyncio.run(restarted())
    assert nonce(env, a) == before + 1
    assert nonce(env, a, "pending") == before + 1


def test_crash_after_broadcast__new_sender_finds_the_receipt_never_sends_again(
    env: ChainEnv, db_path: Path
) -> None:
    a, b = env.parties("crash2-a", "crash2-b")
    network = env.contract("token_network", env.network).functions
    env.send(a, network.open_channel(b.address, window(env)))
    before = nonce(env, a)
    deposit = calls.set_total_deposit(env.network, a.raw, b.raw, TokenAmount(3 * ONE))

    async def crashed() -> None:
        async with sender(env, a, db_path) as tx:
            await tx.submit("deposit", deposit)  # broadcast and mined, receipt never read

    asyncio.run(crashed())

    async def restarted() -> None:
        async with sender(env, a, db_path) as tx:
            await tx.wait("deposit", timeout=30)
            # The next intent gets the next nonce, not the used one.
            more = calls.set_total_deposit(env.network, a.raw, b.raw, TokenAmount(4 * ONE))
            second = await tx.submit("deposit-more", more)
            assert second.nonce == before + 1
            await tx.wait("deposit-more", timeout=30)

    asyncio.run(restarted())
    assert nonce(env, a) == before + 2
    assert (
        env.contract("token_network", env.network)
        .functions.get_participant(a.address, b.address)
        .call()[0]
        == 4 * ONE
    )


def test_nonce_used_elsewhere__intent_dropped_not_sent_twice(env: ChainEnv, db_path: Path) -> None:
    a, b = env.parties("dropped-a", "dropped-b")
    network = env.contract("token_network", env.network).functions
    env.send(a, network.open_channel(b.address, window(env)))
    deposit = calls.set_total_deposit(env.network, a.raw, b.raw, TokenAmount(ONE))

    async def main() -> None:
        async with sender(env, a, db_path) as tx:
            intent = await tx.submit("deposit", deposit, broadcast=False)
            # Someone else uses the same key meanwhile: that nonce is gone.
            Web3Sender(env.w3, a.hex_key).send_transaction({"to": b.address, "value": 1})
            with pytest.raises(TransactionFailed) as caught:
                await tx.wait("deposit", timeout=30)
            assert caught.value.dropped and "nonce" in caught.value.reason
            assert intent.nonce is not None and nonce(env, a) == intent.nonce + 1
            # The sender carries on with the next nonce.
            await tx.submit("deposit-2", deposit)
            await tx.wait("deposit-2", timeout=30)

    asyncio.run(main())


def test_endpoint_dead_at_submit__intent_kept_queued__sent_later(
    env: ChainEnv, db_path: Path
) -> None:
    a, b = env.parties("dead-a", "dead-b")
    network = env.contract("token_network", env.network).functions
    env.send(a, network.open_channel(b.address, window(env)))
    deposit = calls.set_total_deposit(env.network, a.raw, b.raw, TokenAmount(ONE))

    async def offline() -> None:
        async with endpoint("http://127.0.0.1:9", timeout=1) as ep:
            tx = TxSender(ep, a.key, open_db(db_path), 31337, SenderConfig(poll_interval=0.02))
            intent = await tx.submit("deposit", deposit)
            assert intent.status is IntentStatus.QUEUED and intent.last_error is not None

    async def online() -> None:
        async with sender(env, a, db_path) as tx:
            await tx.wait("deposit", timeout=30)

    asyncio.run(offline())
    asyncio.run(online())
    assert (
        env.contract("token_network", env.network)
        .functions.get_participant(a.address, b.address)
        .call()[0]
        == ONE
    )


# --- fees, replacement, confirmations ---


def test_stuck_transaction__replaced_with_same_nonce_and_higher_fees__mined_once(
    env: ChainEnv, db_path: Path
) -> None:
    a, b = env.parties("stuck-a", "stuck-b")
    network = env.contract("token_network", env.network).functions
    env.send(a, network.open_channel(b.address, window(env)))
    before = nonce(env, a)
    clock = Clock()

    async def main() -> None:
        async with sender(env, a, db_path, clock, replace_after=60.0) as tx:
            with Automine(env):
                deposit = calls.set_total_deposit(env.network, a.raw, b.raw, TokenAmount(ONE))
                first = await tx.submit("deposit", deposit)
                old = first.attempts[0]
                assert old.max_fee is not None and old.priority_fee is not None
                # Fees jump: the next blocks' base fee is above what the transaction offers.
                env.rpc("anvil_setNextBlockBaseFeePerGas", hex(old.max_fee * 4))
                env.mine()
                await tx.step()
                waiting = tx.intent("deposit")
                assert waiting is not None and len(waiting.attempts) == 1  # not yet: too soon
                assert env.w3.eth.get_transaction_count(a.address) == before
                clock.now += 61
                await tx.step()
                replaced = tx.intent("deposit")
                assert replaced is not None and len(replaced.attempts) == 2
                new = replaced.attempts[1]
                assert new.max_fee is not None and new.priority_fee is not None
                assert (
                    new.max_fee * 8 >= old.max_fee * 9
                    and new.priority_fee * 8 >= old.priority_fee * 9
                )
                assert replaced.nonce == before
                env.mine()
            outcome = await tx.wait("deposit", timeout=30)
            assert outcome.tx_hash == new.tx_hash

    asyncio.run(main())
    assert nonce(env, a) == before + 1


def test_confirmations__outcome_only_once_deep_enough(env: ChainEnv, db_path: Path) -> None:
    a, b = env.parties("deep-a", "deep-b")
    network = env.contract("token_network", env.network).functions
    env.send(a, network.open_channel(b.address, window(env)))

    async def main() -> None:
        async with sender(env, a, db_path, confirmations=3) as tx:
            deposit = calls.set_total_deposit(env.network, a.raw, b.raw, TokenAmount(ONE))
            await tx.submit("deposit", deposit)  # mined at once: one confirmation
            with pytest.raises(TimeoutError):
                await tx.wait("deposit", timeout=0.2)
            env.mine()
            await tx.step()
            pending = tx.intent("deposit")
            assert pending is not None and pending.status is IntentStatus.SENT
            env.mine()
            outcome = await tx.wait("deposit", timeout=30)
            assert env.head() - outcome.block + 1 == 3

    asyncio.run(main())


def test_chain_without_base_fee__legacy_gas_price(tmp_path: Path) -> None:
    port = free_port()
    args = [anvil_path(), "--host", "127.0.0.1", "--port", str(port), "--hardfork", "berlin"]
    process = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
    )
    with Anvil(port=port, process=process, chain_id=31337) as node:
        deadline = time.monotonic() + 20
        while True:
            try:
                rpc(node.url, "eth_chainId", timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline, "anvil did not start"
                time.sleep(0.05)
        a, b = make_party("legacy-a"), make_party("legacy-b")
        rpc(node.url, "anvil_setBalance", [a.address, hex(10**20)])

        async def main() -> bytes:
            async with endpoint(node.url) as ep:
                conn = open_db(tmp_path / "node.db")
                tx = TxSender(ep, a.key, conn, 31337, SenderConfig(poll_interval=0.02))
                await tx.submit("pay", ContractCall(b.raw, b"", 12345, "a plain payment"))
                return (await tx.wait("pay", timeout=30)).tx_hash

        tx_hash = asyncio.run(main())
        sent: Any = rpc(node.url, "eth_getTransactionByHash", ["0x" + tx_hash.hex()])
        assert sent["type"] == "0x0" and int(sent["gasPrice"], 16) > 0
        assert rpc(node.url, "eth_getBalance", [b.address, "latest"]) == hex(12345)
