"""The chain follower on a real anvil: confirmed logs -> the core's inputs, once, in order.

Each test acts on a private chain (its own anvil and deployment, shared by this module;
the reorg test gets one of its own) with parties of its own, then lets a follower read it
through web3 exactly as the node will. Endpoint failures are played by a JSON-RPC relay
on loopback in front of anvil (tests/lib/rpc_proxy.py): refusing large eth_getLogs
ranges, or going away and coming back.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from offchain.chain.artifacts import load_artifact
from offchain.chain.errors import ChainIdMismatch, ChainUnavailable, CodeMissing, ReorgTooDeep
from offchain.chain.events import (
    ChannelOpenedLog,
    ContractKind,
    DepositLog,
    TokenNetworkCreatedLog,
    topic0_of,
)
from offchain.chain.inputs import ChannelStage
from offchain.chain.manifest import Deployment, verify_deployment
from offchain.chain.rpc import Endpoint
from offchain.chain.sync import Batch, ChainFollower, FollowerConfig
from offchain.protocol.crypto import sha256
from offchain.protocol.transitions import (
    ChainChannelClosed,
    ChainChannelOpened,
    ChainChannelSettled,
    ChainDeposit,
    ChainSecretRegistered,
)
from scripts.deployer import Web3Sender
from tests.lib.chain_env import ONE, ChainEnv, Party, chain_env, endpoint, open_db, party
from tests.lib.rpc_proxy import RpcProxy

pytestmark = pytest.mark.anvil

FAST = {"poll_interval": 0.05, "retry_min": 0.05, "retry_max": 0.2}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChainEnv]:
    with chain_env(tmp_path_factory.mktemp("follower")) as chain:
        yield chain


@pytest.fixture
def db(tmp_path: Path) -> sqlite3.Connection:
    return open_db(tmp_path / "node.db")


class Collector:
    """The node's side of the follower: records every batch it is handed."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []

    async def __call__(self, batch: Batch) -> None:
        self.batches.append(batch)

    @property
    def inputs(self) -> list[object]:
        return [i for batch in self.batches for i in batch.inputs]

    @property
    def channel_inputs(self) -> list[object]:
        """The inputs but registered secrets (public: other tests' secrets show up too)."""
        return [i for i in self.inputs if not isinstance(i, ChainSecretRegistered)]

    @property
    def logs(self) -> list[Any]:
        return [log for batch in self.batches for log in batch.logs]


def follower(
    ep: Endpoint, env: ChainEnv, own: Party, db: sqlite3.Connection, **config: Any
) -> ChainFollower:
    return ChainFollower(ep, env.deployment, own.raw, db, FollowerConfig(**config))


def block_time(env: ChainEnv, block: int) -> int:
    return int(env.w3.eth.get_block(block)["timestamp"])


def test_lifecycle__inputs_for_our_channel_and_every_secret__others_only_in_the_directory(
    env: ChainEnv, db: sqlite3.Connection
) -> None:
    a, b, c = env.parties("lifecycle-a", "lifecycle-b", "lifecycle-c")
    network = env.contract("token_network", env.network).functions
    window = int(network.settle_window_min().call())
    secret = b"\x42" * 32
    opened = env.send(a, network.open_channel_with_deposit(b.address, window, 100 * ONE))
    deposited = env.send(b, network.set_total_deposit(b.address, a.address, 50 * ONE))
    env.send(c, network.open_channel_with_deposit(b.address, window, 30 * ONE))
    closed = env.send(
        a, network.close_channel(a.address, b.address, 0, bytes(32), bytes(32), b"", b"")
    )
    registry = env.contract("secret_registry", env.deployment.secret_registry)
    revealed = env.send(c, registry.functions.register_secret(secret))
    env.rpc("evm_increaseTime", window + 1)
    env.mine()
    zero = (0, 0, bytes(32))
    settled = env.send(c, network.settle_channel(a.address, *zero, b.address, *zero))
    env.mine()  # one confirmation on top of the settle

    async def main() -> tuple[Collector, ChainFollower]:
        seen = Collector()
        async with endpoint(env.url) as ep:
            chain = follower(ep, env, a, db, confirmations=2)
            assert await chain.poll(seen) > 0
            assert chain.status.synced and chain.status.reachable
        return seen, chain

    seen, chain = asyncio.run(main())
    net = env.network
    generation = int(network.get_channel(a.address, c.address).call().generation) or 1
    mine = [
        i for i in seen.inputs if not isinstance(i, ChainSecretRegistered) or i.secret == secret
    ]
    assert mine == [
        ChainChannelOpened(block_time(env, opened.block), net, b.raw, generation, window),
        ChainDeposit(block_time(env, opened.block), net, b.raw, a.raw, 100 * ONE),
        ChainDeposit(block_time(env, deposited.block), net, b.raw, b.raw, 50 * ONE),
        ChainChannelClosed(block_time(env, closed.block), net, b.raw, a.raw),
        ChainSecretRegistered(
            block_time(env, revealed.block), secret, sha256(secret), block_time(env, revealed.block)
        ),
        ChainChannelSettled(block_time(env, settled.block), net, b.raw),
    ]
    # C's channel is public knowledge: in the directory and the graph, not in the inputs.
    theirs = chain.directory.find(net, c.raw, b.raw)
    assert theirs is not None and theirs.stage is ChannelStage.OPENED
    assert {theirs.deposit1, theirs.deposit2} == {30 * ONE, 0}
    ours = chain.directory.find(net, a.raw, b.raw)
    assert ours is not None and ours.stage is ChannelStage.SETTLED
    assert any({e.a, e.b} == {b.raw, c.raw} for e in chain.directory.edges(net))
    assert chain.decoder.malformed == chain.decoder.unknown == 0


def test_catch_up__hundreds_of_blocks__one_get_logs_per_range(
    env: ChainEnv, db: sqlite3.Connection
) -> None:
    a, b = env.parties("catchup-a", "catchup-b")
    network = env.contract("token_network", env.network).functions
    window = int(network.settle_window_min().call())
    env.send(a, network.open_channel_with_deposit(b.address, window, 5 * ONE))
    env.mine(450)
    env.send(b, network.set_total_deposit(b.address, a.address, 7 * ONE))
    env.mine(300)

    async def main() -> tuple[Collector, ChainFollower, RpcProxy, int]:
        seen = Collector()
        async with RpcProxy(env.url) as proxy, endpoint(proxy.url) as ep:
            chain = follower(ep, env, a, db, confirmations=4, max_range=100)
            processed = await chain.poll(seen)
        return seen, chain, proxy, processed

    seen, chain, proxy, processed = asyncio.run(main())
    head = env.head()
    start = env.deployment.start_block
    assert processed == head - 3 - start + 1
    assert chain.status.confirmed_block == head - 3
    assert proxy.calls["eth_getLogs"] == -(-processed // 100)
    assert all(last - first + 1 <= 100 for first, last in proxy.log_ranges)
    deposits = [i for i in seen.inputs if isinstance(i, ChainDeposit)]
    assert [(d.participant, d.total) for d in deposits] == [(a.raw, 5 * ONE), (b.raw, 7 * ONE)]


def test_refused_ranges__halved_until_accepted__nothing_missed(
    env: ChainEnv, db: sqlite3.Connection
) -> None:
    a, b = env.parties("halving-a", "halving-b")
    network = env.contract("token_network", env.network).functions
    window = int(network.settle_window_min().call())
    env.send(a, network.open_channel_with_deposit(b.address, window, 5 * ONE))
    env.mine(120)
    env.send(b, network.set_total_deposit(b.address, a.address, 9 * ONE))

    async def main() -> tuple[Collector, ChainFollower, RpcProxy]:
        seen = Collector()
        async with RpcProxy(env.url) as proxy, endpoint(proxy.url) as ep:
            proxy.max_log_range = 30
            chain = follower(ep, env, a, db, confirmations=1, max_range=200)
            await chain.poll(seen)
        return seen, chain, proxy

    seen, chain, proxy = asyncio.run(main())
    assert chain.range <= 30
    assert chain.status.confirmed_block == env.head()
    deposits = [i for i in seen.inputs if isinstance(i, ChainDeposit)]
    assert [(d.participant, d.total) for d in deposits] == [(a.raw, 5 * ONE), (b.raw, 9 * ONE)]
    # Every block was asked for exactly once among the accepted ranges.
    accepted = sorted(r for r in proxy.log_ranges if r[1] - r[0] + 1 <= 30)
    covered = [n for first, last in accepted for n in range(first, last + 1)]
    assert covered == list(range(env.deployment.start_block, env.head() + 1))


def test_endpoint_refuses_even_one_block__unavailable(
    env: ChainEnv, db: sqlite3.Connection
) -> None:
    async def main() -> None:
        async with RpcProxy(env.url) as proxy, endpoint(proxy.url) as ep:
            proxy.max_log_range = 0
            chain = follower(ep, env, party(1), db, confirmations=1, max_range=4)
            with pytest.raises(ChainUnavailable, match="refuses eth_getLogs"):
                await chain.poll(Collector())
            assert chain.status.error is not None
            assert chain.status.confirmed_block is None

    asyncio.run(main())


def test_restart__resumes_at_the_cursor__no_batch_delivered_twice(
    env: ChainEnv, tmp_path: Path
) -> None:
    a, b = env.parties("restart-a", "restart-b")
    network = env.contract("token_network", env.network).functions
    window = int(network.settle_window_min().call())
    env.send(a, network.open_channel_with_deposit(b.address, window, 5 * ONE))

    async def run_once(path: Path) -> tuple[Collector, list[Any]]:
        seen = Collector()
        conn = open_db(path)
        async with endpoint(env.url) as ep:
            chain = follower(ep, env, a, conn, confirmations=1)
            await chain.poll(seen)
            records = sorted(chain.directory, key=lambda r: (r.token_network, r.channel_id))
        conn.close()
        return seen, records

    path = tmp_path / "node.db"
    first, records = asyncio.run(run_once(path))
    env.send(b, network.set_total_deposit(b.address, a.address, 3 * ONE))
    second, records_after = asyncio.run(run_once(path))
    assert [type(i) for i in first.channel_inputs] == [ChainChannelOpened, ChainDeposit]
    assert second.channel_inputs == [
        ChainDeposit(block_time(env, env.head()), env.network, b.raw, b.raw, 3 * ONE)
    ]
    assert second.batches[0].first_block > first.batches[-1].last_block
    # The directory came back from the database and moved on from there.
    ours = [r for r in records_after if {r.participant1, r.participant2} == {a.raw, b.raw}]
    assert len(ours) == 1 and {ours[0].deposit1, ours[0].deposit2} == {5 * ONE, 3 * ONE}
    assert len(records_after) == len(records)


def test_handler_fails__range_delivered_again_directory_unchanged(
    env: ChainEnv, db: sqlite3.Connection
) -> None:
    a, b = env.parties("handler-a", "handler-b")
    network = env.contract("token_network", env.network).functions
    window = int(network.settle_window_min().call())
    env.send(a, network.open_channel_with_deposit(b.address, window, 5 * ONE))

    class HandlerCrashError(Exception):
        pass

    async def failing(batch: Batch) -> None:
        raise HandlerCrashError

    async def main() -> Collector:
        seen = Collector()
        async with endpoint(env.url) as ep:
            chain = follower(ep, env, a, db, confirmations=1)
            with pytest.raises(HandlerCrashError):
                await chain.poll(failing)
            assert chain.status.confirmed_block is None
            assert chain.directory.find(env.network, a.raw, b.raw) is None
            await chain.poll(seen)
        return seen

    seen = asyncio.run(main())
    assert [type(i) for i in seen.channel_inputs] == [ChainChannelOpened, ChainDeposit]


def test_endpoint_dies_mid_sync__unavailable__resumes_when_back(
    env: ChainEnv, db: sqlite3.Connection
) -> None:
    a, b = env.parties("dies-a", "dies-b")
    network = env.contract("token_network", env.network).functions
    window = int(network.settle_window_min().call())
    env.send(a, network.open_channel_with_deposit(b.address, window, 5 * ONE))
    env.mine(40)
    env.send(b, network.set_total_deposit(b.address, a.address, 2 * ONE))

    async def main() -> Collector:
        seen = Collector()
        async with RpcProxy(env.url) as proxy, endpoint(proxy.url, timeout=2) as ep:
            chain = follower(ep, env, a, db, confirmations=1, max_range=20)

            async def handler(batch: Batch) -> None:
                await seen(batch)
                if len(seen.batches) == 1:
                    await proxy.stop()  # the endpoint dies right after the first range

            with pytest.raises(ChainUnavailable):
                await chain.poll(handler)
            stopped_at = chain.status.confirmed_block
            assert stopped_at is not None and stopped_at < env.head()
            assert not chain.status.reachable and chain.status.last_answer is not None

            # The polling loop keeps going through the outage and catches up afterwards.
            stop = asyncio.Event()
            task = asyncio.create_task(chain.run(handler, stop))
            await asyncio.sleep(0.3)
            assert not task.done()
            await proxy.start()
            async with asyncio.timeout(20):
                while not chain.status.synced:
                    await asyncio.sleep(0.05)
            stop.set()
            await task
            return seen

    seen = asyncio.run(main())
    deposits = [(i.participant, i.total) for i in seen.inputs if isinstance(i, ChainDeposit)]
    assert deposits == [(a.raw, 5 * ONE), (b.raw, 2 * ONE)]
    blocks = [(batch.first_block, batch.last_block) for batch in seen.batches]
    assert blocks == sorted(blocks) and len(set(blocks)) == len(blocks)


def test_closed_port__unavailable(env: ChainEnv, db: sqlite3.Connection) -> None:
    async def main() -> None:
        async with endpoint("http://127.0.0.1:9", timeout=1) as ep:
            chain = follower(ep, env, party(1), db)
            with pytest.raises(ChainUnavailable):
                await chain.poll(Collector())
            assert not chain.status.reachable and chain.status.last_answer is None

    asyncio.run(main())


def test_token_network_created_later__followed_in_the_same_range(
    env: ChainEnv, tmp_path: Path
) -> None:
    a, b = env.parties("newnet-a", "newnet-b")
    deployer = party(0)
    sender = Web3Sender(env.w3, deployer.hex_key)
    made = sender.deploy(load_artifact("test_token"), ["Second Token", "SEC", 18])
    assert made.contract_address is not None
    token = env.w3.eth.contract(
        address=Web3.to_checksum_address(made.contract_address),
        abi=load_artifact("test_token").abi_list(),
    )
    registry = env.contract("token_network_registry", env.deployment.registry)
    floor = int(registry.functions.settle_window_floor().call())
    env.send(
        deployer,
        registry.functions.create_token_network(token.address, floor, floor * 2, 10**27, 10**30),
    )
    new_network = registry.functions.token_to_token_network(token.address).call()
    for who in (a, b):
        env.send(who, token.functions.mint(who.address, 10 * ONE))
        env.send(who, token.functions.approve(new_network, 2**256 - 1))
    tn = env.w3.eth.contract(address=new_network, abi=load_artifact("token_network").abi_list())
    env.send(a, tn.functions.open_channel_with_deposit(b.address, floor, 4 * ONE))
    raw_network = bytes.fromhex(new_network[2:])

    async def main(conn: sqlite3.Connection) -> tuple[Collector, ChainFollower]:
        seen = Collector()
        async with endpoint(env.url) as ep:
            chain = follower(ep, env, a, conn, confirmations=1, max_range=10_000)
            await chain.poll(seen)
        return seen, chain

    path = tmp_path / "node.db"
    seen, chain = asyncio.run(main(open_db(path)))
    created = [log for log in seen.logs if isinstance(log, TokenNetworkCreatedLog)]
    assert [log.token_network for log in created][-1] == raw_network
    assert chain.token_networks[bytes.fromhex(token.address[2:])] == raw_network
    opened = [
        log
        for log in seen.logs
        if isinstance(log, ChannelOpenedLog) and log.token_network == raw_network
    ]
    assert len(opened) == 1
    assert ChainDeposit(opened[0].timestamp, raw_network, b.raw, a.raw, 4 * ONE) in seen.inputs
    # After a restart the learned network is still followed.
    env.send(b, tn.functions.set_total_deposit(b.address, a.address, ONE))
    again, restarted = asyncio.run(main(open_db(path)))
    assert raw_network in restarted.token_networks.values()
    assert [log.total_deposit for log in again.logs if isinstance(log, DepositLog)] == [ONE]


def test_verify_deployment__right_chain__passes_wrong_chain_or_no_code__refused(
    env: ChainEnv,
) -> None:
    deployment = env.deployment

    async def main() -> None:
        async with endpoint(env.url) as ep:
            await verify_deployment(ep, deployment)
            other_chain = Deployment(1, deployment.registry, deployment.secret_registry, {}, 0)
            with pytest.raises(ChainIdMismatch):
                await verify_deployment(ep, other_chain)
            empty = Deployment(31337, b"\x01" * 20, deployment.secret_registry, {}, 0)
            with pytest.raises(CodeMissing, match="no code"):
                await verify_deployment(ep, empty)
            swapped = Deployment(31337, deployment.secret_registry, deployment.registry, {}, 0)
            with pytest.raises(CodeMissing, match="not token_network_registry"):
                await verify_deployment(ep, swapped)
        async with endpoint("http://127.0.0.1:9", timeout=1) as dead:
            with pytest.raises(ChainUnavailable):
                await verify_deployment(dead, deployment)

    asyncio.run(main())


def test_reorg__shallower_than_confirmations_harmless__deeper_raised_never_absorbed(
    tmp_path: Path,
) -> None:
    with chain_env(tmp_path) as env:
        a, b = env.parties("reorg-a", "reorg-b")
        network = env.contract("token_network", env.network).functions
        window = int(network.settle_window_min().call())
        env.send(a, network.open_channel_with_deposit(b.address, window, 5 * ONE))
        env.mine(5)
        conn = open_db(tmp_path / "node.db")

        async def poll(chain: ChainFollower, seen: Collector) -> int:
            return await chain.poll(seen)

        async def main() -> None:
            seen = Collector()
            async with endpoint(env.url) as ep:
                chain = follower(ep, env, a, conn, confirmations=4)
                await poll(chain, seen)
                cursor = chain.status.confirmed_block
                assert cursor == env.head() - 3
                # Shorter than the confirmations: only blocks we never read change.
                env.rpc("anvil_reorg", 2, [])
                await poll(chain, seen)
                # Deeper: the cursor's block is gone.
                env.rpc("anvil_reorg", 6, [])
                with pytest.raises(ReorgTooDeep) as caught:
                    await poll(chain, seen)
                assert caught.value.common_ancestor is not None
                assert caught.value.common_ancestor < caught.value.block
                assert chain.status.error is not None
                # Never absorbed: the next poll says the same.
                env.mine(3)
                with pytest.raises(ReorgTooDeep):
                    await poll(chain, seen)

        asyncio.run(main())


def test_garbage_logs_from_the_endpoint__counted_and_skipped_real_ones_delivered(
    env: ChainEnv, db: sqlite3.Connection
) -> None:
    a, b = env.parties("garbage-a", "garbage-b")
    network = env.contract("token_network", env.network).functions
    window = int(network.settle_window_min().call())
    env.send(a, network.open_channel_with_deposit(b.address, window, 5 * ONE))
    first = env.w3.eth.get_block(env.deployment.start_block)
    where = {
        "blockNumber": hex(first["number"]),
        "blockHash": first["hash"].to_0x_hex(),
        "blockTimestamp": hex(first["timestamp"]),
        "transactionHash": "0x" + "00" * 32,
        "logIndex": "0x63",
        "address": Web3.to_checksum_address(env.network),
        "data": "0x",
        "removed": False,
    }
    opened_topic = "0x" + topic0_of(ContractKind.TOKEN_NETWORK, "ChannelOpened").hex()
    garbage = [
        {**where, "topics": ["0x" + "ab" * 32]},  # unknown event
        {**where, "logIndex": "0x64", "topics": [opened_topic]},  # indexed topics missing
        {**where, "logIndex": "0x65", "blockNumber": None, "topics": [opened_topic]},
    ]

    async def main() -> tuple[Collector, ChainFollower]:
        seen = Collector()
        async with RpcProxy(env.url) as proxy, endpoint(proxy.url) as ep:
            proxy.injected_logs = garbage
            chain = follower(ep, env, a, db, confirmations=1, max_range=10_000)
            await chain.poll(seen)
        return seen, chain

    seen, chain = asyncio.run(main())
    assert (chain.decoder.unknown, chain.decoder.malformed) == (1, 2)
    assert [type(i) for i in seen.channel_inputs] == [ChainChannelOpened, ChainDeposit]
