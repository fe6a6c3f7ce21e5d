"""The blind node's gateway client (offchain/node/gateway_client.py) in one process.

A real runtime, store, schedule (``ChainBridge``), offline monitor (blind: the follower's
status is given by the test, as in test_node_offline.py), watch service and mesh runtime
(started with no links: what it is asked to send waits in its queue); gateways are heard
of through real signed beacons, and answer through ``on_answer``. The chain endpoint is a
port nobody listens on. docs/offline.md §4, docs/spec.md §15.6, W-11..W-13.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from mesh_relay.config import MeshConfig
from mesh_relay.runtime import MeshRuntime
from offchain.node.gateway_client import META_NONCE, GatewayClient
from offchain.node.service import Coverage
from offchain.node.watch_service import WatchService
from offchain.node.watch_store import WatchStore
from offchain.protocol.crypto import address_from_private_key, keccak256, sha256
from offchain.protocol.offline import DeadlineKind
from offchain.protocol.transitions import ContractSendClose, ContractSendSecretRegister
from offchain.protocol.types import PrivateKey, Secret, Timestamp, TokenAmount
from offchain.watch.wire import (
    UNSIGNED,
    Action,
    ChainBeacon,
    OutcomeStatus,
    Reason,
    Service,
    WatchAck,
    WatchOutcome,
)
from tests.lib.network import CHAIN_ID, TOKEN_NETWORK, make_key
from tests.unit.test_node_offline import DEPLOYMENT, World, events, in_loop, world

PATIENCE = 60.0
G1_KEY, G2_KEY = make_key(11), make_key(12)
G1, G2 = address_from_private_key(G1_KEY), address_from_private_key(G2_KEY)


def beacon(key: PrivateKey, view: int, now: float) -> ChainBeacon:
    return ChainBeacon(
        chain_id=CHAIN_ID, watcher=address_from_private_key(key), view_time=Timestamp(view),
        min_reward=TokenAmount(0), services=Service.DELEGATE | Service.GATEWAY,
        issued_at=int(now * 1000), signature=UNSIGNED, ttl=3,
    ).signed(key)  # fmt: skip


async def blind_world(w: World) -> None:
    w.seen()
    await w.check()
    w.silent()
    w.clock.now += 5
    await w.check()
    assert w.monitor.blind


def service(w: World, mesh: MeshRuntime) -> WatchService:
    bridge = w.monitor.bridge
    return WatchService(
        runtime=w.runtime, mesh=mesh, deployment=DEPLOYMENT, endpoint=bridge.sender.endpoint,
        follower=w.monitor.follower, sender=bridge.sender, watch=False, clock=w.clock,
    )  # fmt: skip


def client(w: World, watch: WatchService) -> GatewayClient:
    bridge = w.monitor.bridge
    made = GatewayClient(
        watch=watch, bridge=bridge, offline=w.monitor, sender=bridge.sender,
        follower=w.monitor.follower, deployment=DEPLOYMENT, patience=PATIENCE, clock=w.clock,
    )  # fmt: skip
    w.monitor.gateway_cover = made.covering
    return made


def handed(w: World) -> list[tuple[str, str]]:
    return [(str(d["subject"]), str(d["gateway"])) for d in events(w, "gateway_handed")]


@in_loop
async def test_registration__blind_two_gateways__handed_once_survives_restart_fails_over_done(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as w:
        mesh = MeshRuntime(MeshConfig(app_acks=False), secrets.token_bytes(32), [])
        await mesh.start()
        try:
            await blind_world(w)
            watch = service(w, mesh)
            now = w.clock.now
            # G2 sees the chain further: it is tried first.
            assert watch.beacons.accept(beacon(G1_KEY, int(now) - 30, now), int(now * 1000))
            assert watch.beacons.accept(beacon(G2_KEY, int(now) - 10, now), int(now * 1000))
            secret = Secret(b"\x05" * 32)
            subject = "secret:" + sha256(secret).hex()
            expiration = Timestamp(int(now) + 600)
            w.monitor.bridge.submit_effect((7, 0), ContractSendSecretRegister(secret, expiration))
            first = client(w, watch)
            assert first.gateways(now) == [G2, G1]
            await first.tick()
            await first.tick()
            assert handed(w) == [(subject, "0x" + G2.hex())]
            assert first.delegator.gateways == (G2, G1)  # kept up to date with our proofs
            # A restart: the same hand-off, not a second one, and G2 is still waited for.
            second = client(w, watch)
            await second.tick()
            assert handed(w) == [(subject, "0x" + G2.hex())]
            (row,) = WatchStore(w.runtime.store.conn).handoffs()
            assert (row.subject, row.kind, row.state, row.chain_deadline) == (
                subject, "register_secret", "open", expiration,
            )  # fmt: skip
            # G2 stays silent for the patience: G1 gets it (the same request).
            w.clock.now += PATIENCE
            await second.tick()
            assert handed(w)[-1] == (subject, "0x" + G1.hex())
            item = next(d for d in w.monitor.deadlines() if d.kind is DeadlineKind.REGISTER_SECRET)
            assert w.monitor.coverage(item) == (Coverage.GATEWAY, G1)
            second.on_answer(G1, WatchAck(row.request_id, Reason.ACCEPTED, Timestamp(int(now))))
            tx = keccak256(b"registration")
            second.on_answer(
                G1, WatchOutcome(row.request_id, Action.REGISTER_SECRET, OutcomeStatus.CONFIRMED,
                                 tx, Timestamp(int(now) + 70), "registered"),
            )  # fmt: skip
            (done,) = events(w, "gateway_done")
            assert (done["gateway"], done["status"]) == ("0x" + G1.hex(), "confirmed")
            assert w.monitor.coverage(item) == (Coverage.GATEWAY, G1)
            w.clock.now += 10 * PATIENCE
            await second.tick()
            assert len(handed(w)) == 2  # done: nobody else is asked
            # The gateway's word does not take it off the node's own schedule (W-13).
            assert [k for k, _ in w.monitor.bridge.scheduled()] == [(7, 0)]
            # The chain is seen again: the node takes its work back, gateways are dropped.
            w.seen()
            await w.check()
            await second.tick()
            assert second.delegator.gateways == ()
            assert w.monitor.coverage(item) == (Coverage.SELF, None)
        finally:
            await mesh.stop()


@in_loop
async def test_close__blind__signed_offline_with_the_known_nonce_handed_as_raw_transaction(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as w:
        mesh = MeshRuntime(MeshConfig(app_acks=False), secrets.token_bytes(32), [])
        await mesh.start()
        try:
            store = w.runtime.store
            with store.transaction():
                store.set_meta(META_NONCE, "5")
            await blind_world(w)
            watch = service(w, mesh)
            gateway = client(w, watch)
            partner = w.a
            w.monitor.bridge.submit_effect((8, 0), ContractSendClose(TOKEN_NETWORK, partner, None))
            await gateway.tick()  # no gateway known: nothing signed, nothing handed
            assert w.monitor.bridge.sender.intent("fx:8:0") is None and handed(w) == []
            now = w.clock.now
            assert watch.beacons.accept(beacon(G1_KEY, int(now) - 5, now), int(now * 1000))
            await gateway.tick()
            await gateway.tick()
            intent = w.monitor.bridge.sender.intent("fx:8:0")
            assert intent is not None and intent.nonce == 5
            (attempt,) = intent.attempts
            assert handed(w) == [("raw:" + attempt.tx_hash.hex(), "0x" + G1.hex())]
            (row,) = WatchStore(store.conn).handoffs()
            assert (row.what, row.partner, row.token_network) == ("close", partner, TOKEN_NETWORK)
            item = next(d for d in w.monitor.deadlines() if d.kind is DeadlineKind.CLOSE)
            assert w.monitor.coverage(item) == (Coverage.GATEWAY, G1)
            # The gateway's endpoint refuses it (not mined): the same bytes again later.
            gateway.on_answer(
                G1, WatchOutcome(row.request_id, Action.BROADCAST, OutcomeStatus.FAILED,
                                 bytes(32), Timestamp(0), "fee too low"),
            )  # fmt: skip
            assert WatchStore(store.conn).handoffs()[0].state == "open"
            w.clock.now += PATIENCE
            await gateway.tick()
            assert handed(w)[-1] == ("raw:" + attempt.tx_hash.hex(), "0x" + G1.hex())
            again = w.monitor.bridge.sender.intent("fx:8:0")
            assert again is not None and again.attempts == intent.attempts  # never re-signed
        finally:
            await mesh.stop()
