"""One payment node, assembled: store, runtime, mesh, chain, graph — and its service.

Belongs here: ``Node``, which builds every part from a ``NodeConfig`` and a key, starts
and stops them in order, routes mesh payloads (protocol messages to the runtime, capacity
announcements to the graph view, 0xA2 watch payloads to the watch service), hands due
submissions to gateways while blind (``gateway_client``), keeps the
core's graph current, gossips our channels' capacities, and implements ``NodeService``
for the API: each method turns a request into core inputs or chain transactions and
reads the answer back from the state and the store.

Does not belong here: HTTP (``offchain.api``), the command line (``main``), protocol
rules, SQL, JSON-RPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable
from hashlib import sha256
from importlib.metadata import PackageNotFoundError, version
from typing import Final, TypeVar

from mesh_relay.links import Impaired, LinkAdapter
from mesh_relay.runtime import MeshRuntime
from mesh_relay.tcp import TcpLinks
from mesh_relay.udp import UdpLink
from offchain.chain.errors import ChainError, ChainUnavailable, TransactionFailed
from offchain.chain.inputs import ChannelStage
from offchain.chain.manifest import Deployment
from offchain.chain.rpc import Endpoint, connect
from offchain.chain.sync import ChainFollower, FollowerConfig
from offchain.chain.transactions import SenderConfig, TxSender
from offchain.node.chain_bridge import ChainBridge
from offchain.node.config import NodeConfig
from offchain.node.gateway_client import GatewayClient
from offchain.node.gossip import (
    ANNOUNCEMENT_TAG,
    Announcement,
    AnnouncementError,
    GraphView,
    OwnChannel,
    decode_announcement,
)
from offchain.node.offline import OfflineMonitor
from offchain.node.runtime import NodeRuntime
from offchain.node.service import (
    NO_HASHLOCK,
    ChannelInfo,
    ChannelStatus,
    DeadlineInfo,
    ErrorCode,
    NodeEvent,
    NodeStatus,
    PaymentDirection,
    PaymentInfo,
    PaymentStatus,
    PendingTransfer,
    ServiceError,
    TokenInfo,
    pick_payment,
)
from offchain.node.store import Store
from offchain.node.transport import MeshTransport
from offchain.node.watch_service import WatchService
from offchain.protocol.channel import ChannelPhase, ChannelState, balance, spendable
from offchain.protocol.locks import channel_id as channel_id_of
from offchain.protocol.messages import PaymentId
from offchain.protocol.transitions import (
    ActionCloseChannel,
    ActionCoopSettle,
    ActionPay,
    ActionSetUnreachable,
    ActionUpdateGraph,
    ActionWithdraw,
    Effect,
    EventActionRefused,
    EventCoopSettleRefused,
    Input,
)
from offchain.protocol.types import (
    UINT256_MAX,
    Address,
    Secret,
    SecretHash,
    Timestamp,
    TokenAmount,
)
from offchain.watch.wire import WATCH_TAG

log = logging.getLogger("smartmesh.node")

T = TypeVar("T")

GRAPH_DEBOUNCE: Final = 0.2
ANNOUNCE_INTERVAL_MS: Final = 250
CHAIN_WAIT: Final = 120.0
COOPERATION_WINDOW: Final = 600  # seconds a withdraw or coop-settle signature stays valid
MAX_SAME_ID: Final = 1000  # rows read for one payment id (one sent, one received per payer)
CHAIN_RETRY_MAX: Final = 10.0
"""Seconds between two polls of an endpoint that does not answer, at most."""
OFFLINE_WINDOW: Final = "offline_window"
"""The ``reason`` of a received payment that came outside the offline safety window."""


def _version() -> str:
    try:
        return version("smartmesh")
    except PackageNotFoundError:
        return "0+unknown"


class Node:
    """A running payment node (implements ``offchain.node.service.NodeService``)."""

    def __init__(
        self,
        config: NodeConfig,
        key: bytes,
        deployment: Deployment,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.deployment = deployment
        self.clock = clock
        self.store = Store.open(config.database_path, synchronous=config.sync)
        self.runtime = NodeRuntime(
            key,
            deployment.chain_id,
            self.store,
            settings=config.protocol_settings(),
            clock=clock,
            snapshot_every=config.snapshot_every,
        )
        self.address = self.runtime.address
        self.graph = GraphView(deployment.chain_id, self.address)
        # A node's mesh acknowledges a message only once its input is committed.
        mesh_config = dataclasses.replace(config.mesh_config(), app_acks=True)
        adapters = _adapters(config)
        self.mesh = MeshRuntime(
            mesh_config,
            key,
            adapters,
            snapshot=config.mesh_snapshot_path,
            snapshot_interval=config.mesh_snapshot_interval,
        )
        self.transport = MeshTransport(
            self.mesh,
            self._on_payload,
            self.runtime.work_done,
            on_reachability=self._reachability,
        )
        self.endpoint = Endpoint(connect(config.rpc_url, config.chain_timeout), clock)
        confirmations = config.confirmations_for(deployment.chain_id)
        self.follower = ChainFollower(
            self.endpoint,
            deployment,
            self.address,
            self.store.conn,
            FollowerConfig(
                confirmations=confirmations,
                max_range=config.log_range,
                poll_interval=config.poll_interval,
                # The chain coming back must be noticed soon: deferred submissions wait.
                retry_max=max(config.poll_interval, CHAIN_RETRY_MAX),
            ),
        )
        self.sender = TxSender(
            self.endpoint,
            key,
            self.store.conn,
            deployment.chain_id,
            SenderConfig(confirmations=confirmations, poll_interval=min(1.0, config.poll_interval)),
        )
        self.bridge = ChainBridge(
            self.runtime,
            deployment,
            self.follower,
            self.sender,
            self.graph,
            on_graph_change=self._graph_changed,
            clock=clock,
        )
        self.offline = OfflineMonitor(
            self.runtime,
            self.follower,
            self.bridge,
            max_block_age=config.chain_max_block_age,
            warn_lead=config.deadline_warn_lead,
            clock=clock,
        )
        self.watch = WatchService(
            runtime=self.runtime,
            mesh=self.mesh,
            deployment=deployment,
            endpoint=self.endpoint,
            follower=self.follower,
            sender=self.sender,
            watch=config.watch,
            min_reward=config.watch_min_reward,
            delegates=config.delegates,
            delegate_reward=config.delegate_reward,
            clock=clock,
            drop_submissions=config.watch_drop_submissions,
        )
        self.bridge.batch_listeners.append(self.watch.on_batch)
        # While blind, due submissions go to gateways of the mesh (docs/offline.md §4).
        self.gateways = GatewayClient(
            watch=self.watch,
            bridge=self.bridge,
            offline=self.offline,
            sender=self.sender,
            follower=self.follower,
            deployment=deployment,
            delegates=config.delegates,
            patience=config.gateway_patience,
            clock=clock,
        )
        # The delegates' view of our latest proofs moves the offline window (docs/offline.md).
        self.watch.on_delegate_view = self._delegate_view
        self._graph_task: asyncio.TimerHandle | None = None
        self._last_announced: dict[tuple[Address, Address], tuple[int, int, int]] = {}
        # Raised whenever a channel we did not know appears: its ends may never have
        # heard our announcements, so every channel of ours is announced again.
        self._epoch = 0
        self._channels_seen = 0
        self._starting: set[int] = set()
        """Ids of payments whose input is not committed yet (two requests naming the same
        id at once must not both start)."""
        self._started = False

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        await self.mesh.start()
        self.transport.start()
        await self.runtime.start(self.transport, self.bridge.submit_effect)
        self.runtime.listen(self._on_effect)
        self.bridge.start()
        self.offline.start()
        self.watch.start()
        self.gateways.start()
        self._graph_changed()
        self._started = True
        log.info("node 0x%s started", self.address.hex())

    async def stop(self) -> None:
        if not self._started:
            self.store.close()
            return
        self._started = False
        await self.gateways.stop()
        await self.offline.stop()
        await self.watch.stop()
        await self.bridge.stop()
        await self.runtime.stop()
        self.transport.stop()
        await self.mesh.stop()
        self.store.close()

    # -- mesh payloads ----------------------------------------------------------------------

    def _on_payload(self, origin: bytes, payload: bytes, message_id: bytes) -> None:
        if payload and payload[0] == WATCH_TAG:
            self.watch.receive(origin, payload, message_id)
            return
        if payload and payload[0] == ANNOUNCEMENT_TAG:
            self.transport.acknowledge(origin, message_id)  # gossip: nothing to persist
            try:
                announcement = decode_announcement(payload)
            except AnnouncementError as exc:
                log.debug("announcement from 0x%s refused: %s", origin.hex(), exc)
                return
            if self.graph.accept(announcement, int(self.clock() * 1000)):
                self._forward(announcement, exclude={origin, announcement.signer})
                self._graph_changed()
            return
        self.runtime.receive_payload(origin, payload, message_id)

    def _forward(self, announcement: Announcement, exclude: set[bytes]) -> None:
        data = announcement.encode()
        for network, partner in list(self.runtime.state.channels):
            if network == announcement.token_network and partner not in exclude:
                with contextlib.suppress(Exception):
                    self.mesh.send(partner, data, 60.0)

    def _reachability(self, partner: bytes, reachable: bool) -> None:
        # What failed recently: routes avoid partners the mesh cannot reach now.
        log.info(
            "partner 0x%s %s", partner.hex(), "reachable again" if reachable else "unreachable"
        )
        addresses = frozenset(Address(a) for a in self.transport.unreachable)
        self.runtime.submit(ActionSetUnreachable(Timestamp(int(self.clock())), addresses))

    # -- the graph --------------------------------------------------------------------------

    def _on_effect(self, effect: Effect) -> None:
        self._graph_changed()

    def _graph_changed(self) -> None:
        if self._graph_task is None:
            loop = asyncio.get_running_loop()
            self._graph_task = loop.call_later(GRAPH_DEBOUNCE, self._refresh_graph)

    def _refresh_graph(self) -> None:
        self._graph_task = None
        for announcement in self.graph.released():  # came before the chain showed the open
            self._forward(announcement, exclude={announcement.signer})
        state = self.runtime.state
        now = int(self.clock())
        if self.graph.channel_count() > self._channels_seen:
            self._channels_seen = self.graph.channel_count()
            self._epoch += 1
        own = []
        for (network, partner), channel in state.channels.items():
            if channel.phase is not ChannelPhase.OPENED:
                continue
            ours = int(spendable(channel.our, channel.partner, Timestamp(now)))
            theirs = int(spendable(channel.partner, channel.our, Timestamp(now)))
            own.append(OwnChannel(network, partner, ours, theirs))
            self._announce(network, partner, ours, int(self.clock() * 1000))
        self.graph.set_own(own, state.settings.fees)
        for network in self.graph.changed():
            graph = self.graph.graph(network)
            self.runtime.submit(ActionUpdateGraph(Timestamp(now), network, graph))

    def _announce(self, network: Address, partner: Address, capacity: int, now_ms: int) -> None:
        last = self._last_announced.get((network, partner))
        if last is not None:
            unchanged = last[0] == capacity and last[2] == self._epoch
            if unchanged or now_ms - last[1] < ANNOUNCE_INTERVAL_MS:
                if not unchanged:
                    self._graph_changed()  # try again once the interval is over
                return
        self._last_announced[(network, partner)] = (capacity, now_ms, self._epoch)
        announcement = Announcement(
            self.deployment.chain_id, network, self.address, partner, capacity,
            self.runtime.state.settings.fees, now_ms,
        ).signed(self.runtime.key)  # fmt: skip
        self.graph.accept(announcement, now_ms)
        self._forward(announcement, exclude=set())

    # -- NodeService: reading -----------------------------------------------------------------

    def status(self) -> NodeStatus:
        chain = self.follower.status
        now = self.clock()
        reachable = self.offline.reachable
        blind_since = None if reachable else self.offline.blind_since()
        upcoming = self.offline.next_deadline(now)
        view = self.offline.view_time()
        return NodeStatus(
            address=self.address,
            chain_id=self.deployment.chain_id,
            synced=chain.synced and self.bridge.halted is None,
            chain_reachable=reachable,
            latest_block=chain.latest_block or 0,
            confirmed_block=chain.confirmed_block or 0,
            blind_since=blind_since,
            peers=len(self.mesh.node.neighbour_addresses()),
            version=_version(),
            blind_for_s=None if blind_since is None else max(now - blind_since, 0.0),
            view_time=None if view is None else int(view),
            next_deadline=None if upcoming is None else float(upcoming.deadline or 0),
            next_deadline_what=None if upcoming is None else upcoming.kind.value,
        )

    def deadlines(self) -> list[DeadlineInfo]:
        found = []
        for item in self.offline.deadlines():
            covered, delegate = self.offline.coverage(item)
            found.append(
                DeadlineInfo(
                    what=item.kind.value,
                    token=self._token_of(item.token_network),
                    partner=item.partner,
                    deadline=None if item.deadline is None else float(item.deadline),
                    chain_deadline=item.chain_deadline,
                    covered_by=covered,
                    delegate=delegate,
                    nonce=int(item.nonce),
                    amount=int(item.amount),
                    secrethash=item.secrethash,
                    pending=item.pending,
                    text=self.offline.text(item),
                )
            )
        return found

    def on_delegate_view(
        self,
        token_network: bytes,
        partner: bytes,
        view_time: int | None,
        delegate: bytes | None = None,
        nonce: int | None = None,
    ) -> None:
        """A delegate holds our latest proof from ``partner`` and sees the chain up to
        ``view_time`` (None: it holds it no more); see ``OfflineMonitor.on_delegate_view``."""
        self.offline.on_delegate_view(token_network, partner, view_time, delegate, nonce)

    def _delegate_view(
        self, network: Address, partner: Address, view_time: int, nonce: int, delegate: Address
    ) -> None:
        self.on_delegate_view(network, partner, view_time, delegate, nonce)

    def tokens(self) -> list[TokenInfo]:
        return [
            TokenInfo(token, network, "", 18)
            for token, network in sorted(self.follower.token_networks.items())
        ]

    def _network(self, token: bytes) -> Address:
        token = Address(token)
        network = self.follower.token_networks.get(token) or self.deployment.network_of(token)
        if network is None:
            raise ServiceError(ErrorCode.NOT_FOUND, f"no token network for token 0x{token.hex()}")
        return network

    def _token_of(self, network: Address) -> Address:
        for token, known in self.follower.token_networks.items():
            if known == network:
                return token
        for token, known in self.deployment.token_networks.items():
            if known == network:
                return token
        return network

    def channels(self, token: bytes | None = None) -> list[ChannelInfo]:
        network = None if token is None else self._network(token)
        return [
            self._channel_info(n, p, c)
            for (n, p), c in sorted(self.runtime.state.channels.items())
            if network is None or n == network
        ]

    def channel(self, token: bytes, partner: bytes) -> ChannelInfo:
        network = self._network(token)
        state = self.runtime.state.channels.get((network, Address(partner)))
        if state is None:
            raise ServiceError(ErrorCode.NOT_FOUND, f"no channel with 0x{partner.hex()}")
        return self._channel_info(network, Address(partner), state)

    def _channel_info(self, network: Address, partner: Address, c: ChannelState) -> ChannelInfo:
        record = self.follower.directory.find(network, self.address, partner)
        now = self.follower.status.latest_timestamp or int(self.clock())
        deadline = None if record is None else record.settle_deadline
        if c.phase is ChannelPhase.SETTLED or (
            record is not None and record.stage is ChannelStage.SETTLED
        ):
            status = ChannelStatus.SETTLED
        elif c.phase is ChannelPhase.CLOSED:
            status = (
                ChannelStatus.SETTLEABLE
                if deadline is not None and now > deadline
                else ChannelStatus.CLOSED
            )
        else:
            status = ChannelStatus.OPEN
        return ChannelInfo(
            token=self._token_of(network),
            token_network=network,
            partner=partner,
            channel_id=channel_id_of(self.address, partner),
            generation=int(c.generation),
            status=status,
            settle_window=c.settle_window,
            settle_deadline=deadline,
            our_deposit=int(c.our.deposit),
            partner_deposit=int(c.partner.deposit),
            our_withdrawn=int(c.our.withdrawn),
            partner_withdrawn=int(c.partner.withdrawn),
            our_balance=int(balance(c.our, c.partner)),
            partner_balance=int(balance(c.partner, c.our)),
            our_locked=int(c.our.locked),
            partner_locked=int(c.partner.locked),
            spendable=int(spendable(c.our, c.partner, Timestamp(int(self.clock())))),
        )

    def payment(
        self,
        payment_id: int,
        *,
        direction: PaymentDirection | None = None,
        payer: bytes | None = None,
        partner: bytes | None = None,
    ) -> PaymentInfo:
        # Every row of the id (ids are unique per initiator only): one sent at most, and
        # one received per payer; `pick_payment` refuses to guess between them.
        rows = self.store.payments("payment_id = ?", (payment_id,), limit=MAX_SAME_ID)
        found = [self._payment_info(row) for row in rows]
        return pick_payment(payment_id, found, direction=direction, payer=payer, partner=partner)

    def payments(
        self,
        *,
        direction: PaymentDirection | None = None,
        status: PaymentStatus | None = None,
        token: bytes | None = None,
        partner: bytes | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[PaymentInfo]:
        where: list[str] = []
        args: list[object] = []
        if direction is not None:
            where.append("direction = ?")
            args.append(direction.value)
        if status is not None:
            where.append("status = ?")
            args.append(status.value)
        if token is not None:
            where.append("token_network = ?")
            args.append(self._network(token))
        if partner is not None:
            where.append("partner = ?")
            args.append(partner)
        rows = self.store.payments(" AND ".join(where), args, limit, offset)
        return [self._payment_info(row) for row in rows]

    def _payment_info(self, row: sqlite3.Row) -> PaymentInfo:
        failed_hop, finished, payer = row["failed_hop"], row["finished_at"], row["payer"]
        risk = None
        if row["direction"] == PaymentDirection.RECEIVED.value:
            risk = self.offline.risk(
                bytes(row["token_network"]),
                bytes(row["partner"]),
                float(row["created_at"]),
                row["reason"] != OFFLINE_WINDOW,
            )
        return PaymentInfo(
            payment_id=int(row["payment_id"]),
            direction=PaymentDirection(row["direction"]),
            token=self._token_of(Address(row["token_network"])),
            partner=bytes(row["partner"]),
            amount=int(row["amount"]),
            fee=int(row["fee"]),
            status=PaymentStatus(row["status"]),
            reason=row["reason"],
            failed_hop=None if failed_hop is None else bytes(failed_hop),
            secrethash=bytes(row["secrethash"] or NO_HASHLOCK),
            created_at=float(row["created_at"]),
            finished_at=None if finished is None else float(finished),
            payer=bytes(payer) or None,  # empty: a sent payment, or a payer we do not know
            risk=risk,
        )

    async def wait_payment(
        self,
        payment_id: int,
        timeout: float,
        *,
        direction: PaymentDirection | None = None,
        payer: bytes | None = None,
        partner: bytes | None = None,
    ) -> PaymentInfo:
        info = self.payment(payment_id, direction=direction, payer=payer, partner=partner)
        if info.status is not PaymentStatus.PENDING or info.direction is PaymentDirection.RECEIVED:
            return info
        future = self.runtime.payment_future(payment_id)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError as exc:
            raise ServiceError(
                ErrorCode.TIMEOUT, f"payment {payment_id} still pending after {timeout} s"
            ) from exc
        await asyncio.sleep(0)
        # Ours, whatever arrived meanwhile under the same id from someone else.
        return self.payment(payment_id, direction=PaymentDirection.SENT)

    def pending_transfers(self, token: bytes | None = None) -> list[PendingTransfer]:
        network = None if token is None else self._network(token)
        state = self.runtime.state
        ids: dict[bytes, tuple[int, str]] = {}
        for initiator in state.initiators.values():
            ids[initiator.secrethash] = (int(initiator.payment_id), "initiator")
        for (_, _, secrethash), mediator in state.mediators.items():
            ids[secrethash] = (int(mediator.payment_id), "mediator")
        for (_, _, secrethash), target in state.targets.items():
            ids[secrethash] = (int(target.payment_id), "target")
        found = []
        for (n, partner), channel in sorted(state.channels.items()):
            if network is not None and n != network:
                continue
            for direction, end in (
                (PaymentDirection.SENT, channel.our),
                (PaymentDirection.RECEIVED, channel.partner),
            ):
                for lock in end.locks:
                    pid, role = ids.get(lock.secrethash, (0, "unknown"))
                    found.append(
                        PendingTransfer(
                            self._token_of(n),
                            partner,
                            direction,
                            pid,
                            int(lock.amount),
                            lock.secrethash,
                            int(lock.expiration),
                            role,
                        )
                    )
        return found

    def events(self, since: int = 0, limit: int = 100) -> list[NodeEvent]:
        return [
            NodeEvent(seq, when, kind, data)
            for seq, when, kind, data in self.store.events(since, limit)
        ]

    # -- NodeService: acting --------------------------------------------------------------------

    async def pay(
        self,
        token: bytes,
        target: bytes,
        amount: int,
        *,
        max_fee: int | None = None,
        payment_id: int | None = None,
        secret: bytes | None = None,
        secrethash: bytes | None = None,
        direct: bool = False,
    ) -> PaymentInfo:
        network = self._network(token)
        target = Address(target)
        if not 0 < amount <= UINT256_MAX:
            raise ServiceError(ErrorCode.INVALID_ARGUMENT, "amount must be positive")
        if target == self.address:
            raise ServiceError(ErrorCode.INVALID_ARGUMENT, "a node does not pay itself")
        if payment_id is None:
            payment_id = secrets.randbits(63) + 1
        elif payment_id in self._starting or self.store.payments(
            "direction = 'sent' AND payment_id = ?", (payment_id,), limit=1
        ):
            raise ServiceError(ErrorCode.CONFLICT, f"payment {payment_id} exists already")
        now = self.clock()
        if direct and (secret is not None or secrethash is not None):
            # A direct transfer pays unconditionally: never drop the condition silently.
            raise ServiceError(
                ErrorCode.INVALID_ARGUMENT, "a direct transfer has no secret or secrethash"
            )
        if direct:
            channel = self.runtime.state.channels.get((network, target))
            if channel is None or channel.phase is not ChannelPhase.OPENED:
                raise ServiceError(ErrorCode.NOT_FOUND, "no open channel with that partner")
            if spendable(channel.our, channel.partner, Timestamp(int(now))) < amount:
                raise ServiceError(ErrorCode.INSUFFICIENT_FUNDS, "not enough in the channel")
            committed = self.runtime.pay_direct(network, target, payment_id, amount)
            hashed = NO_HASHLOCK
        else:
            if secret is not None:
                secret_value: Secret | None = Secret(secret)
                hashed = sha256(secret).digest()
                if secrethash is not None and secrethash != hashed:
                    raise ServiceError(
                        ErrorCode.INVALID_ARGUMENT, "secrethash is not sha256(secret)"
                    )
            elif secrethash is not None:
                secret_value, hashed = None, secrethash
            else:
                raw = secrets.token_bytes(32)
                secret_value, hashed = Secret(raw), sha256(raw).digest()
            action = ActionPay(
                Timestamp(int(now)), PaymentId(payment_id), network, target, TokenAmount(amount),
                SecretHash(hashed), secret_value,
                None if max_fee is None else TokenAmount(max_fee),
            )  # fmt: skip
            committed = self.runtime.submit(action)
        # Answer only once the payment is committed: an answer given before could be
        # followed by a crash that loses the payment the caller was told about.
        self._starting.add(payment_id)
        try:
            await committed
        finally:
            self._starting.discard(payment_id)
        rows = self.store.payments("direction = 'sent' AND payment_id = ?", (payment_id,), 1)
        return self._payment_info(rows[0])

    async def open_channel(
        self, token: bytes, partner: bytes, deposit: int, settle_window: int | None
    ) -> ChannelInfo:
        network = self._network(token)
        partner = Address(partner)
        if partner == self.address:
            raise ServiceError(ErrorCode.INVALID_ARGUMENT, "a channel needs two participants")
        existing = self.runtime.state.channels.get((network, partner))
        if existing is not None and existing.phase is ChannelPhase.OPENED:
            raise ServiceError(ErrorCode.CONFLICT, "a channel with that partner is open already")
        window = settle_window or self.config.settle_window
        if deposit:
            await self._check_deposit(Address(token), network, deposit, deposit)
        await self._chain(
            self.bridge.open_channel(Address(token), network, partner, window, deposit)
        )
        await self._until(
            lambda: (c := self.runtime.state.channels.get((network, partner))) is not None
            and c.phase is ChannelPhase.OPENED
            and c.our.deposit >= deposit,
            "the channel to appear on chain",
        )
        return self.channel(token, partner)

    async def deposit(self, token: bytes, partner: bytes, total_deposit: int) -> ChannelInfo:
        info = self.channel(token, partner)
        if info.status is not ChannelStatus.OPEN:
            raise ServiceError(ErrorCode.CONFLICT, f"the channel is {info.status.value}")
        # Total-amount semantics (API document): the current total again is a no-op, so a
        # retried request is harmless; a lower one conflicts with the channel's state.
        if total_deposit < info.our_deposit:
            raise ServiceError(
                ErrorCode.CONFLICT,
                f"the total deposit is {info.our_deposit} already and cannot go down "
                "(totals, not increments)",
            )
        if total_deposit == info.our_deposit:
            return info
        added = total_deposit - info.our_deposit
        network = Address(info.token_network)
        await self._check_deposit(Address(token), network, total_deposit, added)
        await self._chain(
            self.bridge.deposit(Address(token), network, Address(partner), total_deposit, added)
        )
        await self._until(
            lambda: self.runtime.state.channels[(network, Address(partner))].our.deposit
            >= total_deposit,
            "the deposit to be confirmed",
        )
        return self.channel(token, partner)

    async def withdraw(self, token: bytes, partner: bytes, total_withdraw: int) -> ChannelInfo:
        info = self.channel(token, partner)
        if info.status is not ChannelStatus.OPEN:
            raise ServiceError(ErrorCode.CONFLICT, f"the channel is {info.status.value}")
        if total_withdraw < info.our_withdrawn:  # total-amount semantics, as for deposits
            raise ServiceError(
                ErrorCode.CONFLICT,
                f"the total withdrawn is {info.our_withdrawn} already and cannot go down",
            )
        if total_withdraw == info.our_withdrawn:
            return info
        if total_withdraw - info.our_withdrawn > info.spendable:
            raise ServiceError(ErrorCode.INSUFFICIENT_FUNDS, "more than the channel can spare")
        now = Timestamp(int(self.clock()))
        network = Address(info.token_network)
        await self._act(
            ActionWithdraw(
                now,
                network,
                Address(partner),
                TokenAmount(total_withdraw),
                Timestamp(now + COOPERATION_WINDOW),
            )
        )
        await self._until(
            lambda: self.runtime.state.channels[(network, Address(partner))].our.withdrawn
            >= total_withdraw,
            "the partner's signature and the withdraw transaction",
        )
        return self.channel(token, partner)

    async def close(self, token: bytes, partner: bytes, cooperative: bool) -> ChannelInfo:
        info = self.channel(token, partner)
        if info.status is not ChannelStatus.OPEN:
            raise ServiceError(ErrorCode.CONFLICT, f"the channel is {info.status.value}")
        now = Timestamp(int(self.clock()))
        network = Address(info.token_network)
        key = (network, Address(partner))
        if cooperative:
            # The partner answers a cooperative settle it will not sign with a refusal:
            # listened for from before the offer is made, so it cannot slip past.
            refusals: list[str] = []

            def on_effect(effect: Effect) -> None:
                if not isinstance(effect, EventCoopSettleRefused):
                    return
                if (effect.token_network, effect.partner) == key:
                    refusals.append(effect.reason)

            stop_listening = self.runtime.listen(on_effect)
            try:
                await self._act(
                    ActionCoopSettle(
                        now, network, Address(partner), Timestamp(now + COOPERATION_WINDOW)
                    )
                )
                await self._until(
                    lambda: bool(refusals)
                    or self.runtime.state.channels[key].phase is ChannelPhase.SETTLED
                    or self._settled(network, Address(partner)),
                    "the partner's signature and the cooperative settle",
                )
            finally:
                stop_listening()
            if refusals:
                raise ServiceError(
                    ErrorCode.CONFLICT,
                    f"the partner refused the cooperative settle: {refusals[0]}; the channel "
                    "stays open (try again once it agrees, or close unilaterally)",
                )
        else:
            await self._act(ActionCloseChannel(now, network, Address(partner)))
            await self._until(
                lambda: self.runtime.state.channels[key].phase is not ChannelPhase.OPENED,
                "the close transaction",
            )
        return self.channel(token, partner)

    async def settle(self, token: bytes, partner: bytes) -> ChannelInfo:
        info = self.channel(token, partner)
        if info.status is ChannelStatus.SETTLED:
            return info
        if info.status is ChannelStatus.OPEN:
            raise ServiceError(ErrorCode.CONFLICT, "close the channel first")
        network = Address(info.token_network)
        await self._chain(self.bridge.settle_now(network, Address(partner)))
        await self._until(lambda: self._settled(network, Address(partner)), "the settle")
        return self.channel(token, partner)

    async def _check_deposit(
        self, token: Address, network: Address, total: int, added: int
    ) -> None:
        """Refuse what the chain would revert, before any transaction is sent: a total
        above the network's per-participant limit, or more tokens than we hold."""
        held, limit = await self._chain(self.bridge.deposit_room(token, network))
        if total > limit:
            raise ServiceError(
                ErrorCode.INVALID_ARGUMENT,
                f"a total deposit of {total} is above the token network's limit of {limit} "
                "per participant",
            )
        if added > held:
            raise ServiceError(
                ErrorCode.INSUFFICIENT_FUNDS, f"{added} more is more than our {held} on chain"
            )

    def _settled(self, network: Address, partner: Address) -> bool:
        record = self.follower.directory.find(network, self.address, partner)
        return record is not None and record.stage is ChannelStage.SETTLED

    # -- helpers ------------------------------------------------------------------------------

    async def _act(self, action: Input) -> list[Effect]:
        effects = await self.runtime.submit(action)
        for effect in effects:
            if isinstance(effect, EventActionRefused):
                raise ServiceError(ErrorCode.CONFLICT, effect.reason)
        return effects

    async def _chain(self, operation: Awaitable[T]) -> T:
        try:
            return await operation
        except TransactionFailed as exc:
            raise ServiceError(ErrorCode.TRANSACTION_FAILED, str(exc)) from exc
        except ChainUnavailable as exc:
            raise ServiceError(ErrorCode.CHAIN_UNAVAILABLE, str(exc)) from exc
        except ChainError as exc:
            raise ServiceError(ErrorCode.CONFLICT, str(exc)) from exc
        except TimeoutError as exc:
            raise ServiceError(ErrorCode.TIMEOUT, "the chain did not confirm in time") from exc

    async def _until(
        self, check: Callable[[], bool], what: str, timeout: float = CHAIN_WAIT
    ) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise ServiceError(
                    ErrorCode.TIMEOUT, f"gave up waiting for {what} after {timeout:.0f} s"
                )
            await asyncio.sleep(0.05)


def _adapters(config: NodeConfig) -> list[LinkAdapter]:
    """The node's mesh links, as a relay with the same settings would open them."""
    adapters: list[LinkAdapter] = []
    for index, udp in enumerate(config.udp_settings()):
        link_id = "udp" if index == 0 else f"udp{index}"
        adapters.append(UdpLink(link_id, udp.listen, udp.beacons, udp.mtu or config.mesh_mtu))
    tcp = config.tcp_settings()
    if tcp is not None:
        adapters.append(TcpLinks(tcp.listen, tcp.peers, tcp.mtu or max(config.mesh_mtu, 1200)))
    impair = (config.mesh_impair_loss, config.mesh_impair_delay, config.mesh_impair_jitter)
    if any(impair):  # testing only, as the relay's --impair-* flags
        log.warning("mesh links impaired (testing only): loss %g, delay %g s, jitter %g s", *impair)
        adapters = [Impaired(a, *impair, seed=i) for i, a in enumerate(adapters)]
    return adapters
