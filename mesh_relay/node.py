"""``MeshNode``: the sans-I/O core of one mesh node, composing every other module.

Belongs here: the inputs (``link_up``, ``link_down``, ``receive_frame``, ``send``,
``tick``, ``restore``), the effects they return, the node's timers (``next_timer``), and
the glue between neighbours, routing, custody, reassembly and envelopes. Like h11's
``Connection`` or aioquic's ``QuicConnection`` it is a mutable object driven by method
calls: its route table holds one entry per reachable node and changes on almost every
frame, so replacing frozen state per input (DESIGN.md §3.1) would cost more than the
work itself. What leaves it is immutable: frozen effects and read-only views.

The driver's contract: call an input with the current time (``receive_frames`` for
several frames read at once, which coalesces their hop acks); carry out the returned
effects in order; then read ``next_timer`` and call ``tick`` no later than that time.
``send`` returns only the message id: its frames come out of the ``tick`` that
``next_timer`` asks for at once. The core never reads a clock or a source of randomness
(time comes as ``now``; randomness as the ``seed``), never raises on a peer's input
(``EventInvalidFrame`` and a counter instead), and every queue in it is bounded.

Does not belong here: sockets, threads, asyncio, files (adapters and the CLI phase);
payments (``mesh_relay`` imports nothing from ``offchain``).
"""

from __future__ import annotations

import heapq
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from mesh_relay.accounting import RelayAccounting, RelayCount
from mesh_relay.config import Link, LinkAddr, MeshConfig
from mesh_relay.effects import (
    BROADCAST,
    Deliver,
    Effect,
    EventDelivered,
    EventExpired,
    EventInvalidFrame,
    SendFrame,
)
from mesh_relay.envelope import ack_tag, open_envelope, seal, verify_ack
from mesh_relay.envelope import message_id as make_message_id
from mesh_relay.errors import (
    ConfigError,
    EnvelopeError,
    FrameDecodeError,
    MeshValidationError,
    QueueFull,
)
from mesh_relay.fragments import Outcome, Reassembler, split
from mesh_relay.frames import (
    MAX_HOP_ACKS,
    ROUTED_PREFIX_LENGTH,
    UINT48_MAX,
    FrameType,
    Hello,
    HopAck,
    RouteAdvert,
    Routed,
    Routes,
    SeqnoRequest,
    decode_frame,
    encode_hello,
    encode_hop_ack,
    encode_routed,
    encode_routes,
    encode_seqno_request,
    hello_digest,
    routes_per_frame,
)
from mesh_relay.identity import (
    COMPRESSED_KEY_LENGTH,
    Address,
    Drbg,
    Identity,
    address_of_key,
    as_address,
)
from mesh_relay.neighbours import HelloVerdict, NeighbourTable
from mesh_relay.reliability import RateLimiter, TokenBucket, backoff
from mesh_relay.routing import NeighbourKey, RoutingTable
from mesh_relay.store import (
    CustodyItem,
    CustodyState,
    CustodyStore,
    PendingMessage,
    SeenSet,
    decode_snapshot,
    encode_snapshot,
    pack_seen,
)

_T_HELLO = 0
_T_DUMP = 1
_T_TRIGGERED = 2
_T_HOUSEKEEPING = 3
_T_SEAL = 4
_T_RETRY = 5
_T_E2E = 6
_T_OUTCOME = 7

_Timer = tuple[float, int, int, object]
_DUMPS_PER_SECOND = 1.0
_DUMP_BURST = 16.0
"""Whole-table dumps to new neighbours: 16 at once, then one a second."""
_FAST_RETRANSMIT_GAP = 3
"""A frame in flight is taken for lost, and sent again at once, when a frame sent to the
same neighbour at least this many sends later is acknowledged: links keep their frames
in order (TCP, one radio hop), and 3 lets a little reordering through (TCP's DupThresh)."""
_MAX_PEER_KEYS = 4096
"""Origins' public keys remembered from their envelopes (about 200 bytes each)."""


class MeshNode:
    """One node of the mesh: give it inputs, carry out the effects it returns."""

    def __init__(self, config: MeshConfig, private_key: bytes, seed: bytes) -> None:
        self.config = config
        self._identity = Identity(private_key)
        self.address: Address = self._identity.address
        self._drbg = Drbg(seed)
        self._links: dict[str, Link] = {}
        self._neighbours = NeighbourTable(self.address, config)
        self._routing = RoutingTable(self._identity, config)
        self._custody = CustodyStore(config.max_custody_frames, config.max_custody_bytes)
        self._reassembler = Reassembler(
            config.max_reassemblies,
            config.max_reassembly_bytes,
            config.max_fragments,
            config.reassembly_timeout,
        )
        self._delivered = SeenSet(config.max_seen)
        self._seen_packed: dict[tuple[Address, bytes], bytes] = {}
        """The ids of ``_delivered`` packed for the snapshot as they are added (and kept
        for a while after they expire: a snapshot may hold some, its reader skips them)."""
        self._awaiting_app_ack: OrderedDict[tuple[Address, bytes], float] = OrderedDict()
        """With ``config.app_acks``: payloads delivered and not yet acknowledged, with the
        expiry their entry in ``_delivered`` will get. In memory only, on purpose: after a
        crash the origin's retransmission must be delivered again."""
        self._relayed = SeenSet(config.max_relay_dedup)
        self._last_ack_sent: dict[tuple[Address, bytes], float] = {}
        self._pending: dict[bytes, PendingMessage] = {}
        self._peer_keys: OrderedDict[Address, bytes] = OrderedDict()
        """Public keys learnt from envelopes (checked against their address), most recent
        last: what the ack of a duplicate and a reply before any route advert need."""
        self._unsealed: dict[Address, list[bytes]] = {}
        self._dump_budget = TokenBucket(_DUMPS_PER_SECOND, _DUMP_BURST, 0.0)
        self._limiter = RateLimiter(
            config.rate_bytes_per_s, config.rate_burst_bytes, config.max_rate_buckets
        )
        self._accounting = RelayAccounting(config.max_accounting_pairs)
        self._stats: Counter[str] = Counter()
        self._timers: list[_Timer] = []
        self._timer_seq = 0
        self._armed: dict[int, float] = {}
        self._blocked: dict[NeighbourKey, dict[Address, None]] = {}
        self._rtt: dict[NeighbourKey, tuple[float, float]] = {}
        """Per neighbour: smoothed hop round trip and its mean deviation (RFC 6298)."""
        self._sends: dict[NeighbourKey, int] = {}
        """Per neighbour: frames sent to it so far (numbers each send: ``CustodyItem.tx``)."""
        self._last_hello_ms = 0
        self._started = False
        self._now = 0.0
        self._next_route_expiry = 0.0
        self._out: list[Effect] = []
        self._ack_batch: dict[NeighbourKey, list[int]] | None = None
        """Hop acks owed during ``receive_frames``, sent together at its end."""

    # -- read-only views ------------------------------------------------------------------

    @property
    def next_timer(self) -> float | None:
        """When the driver must call ``tick`` next (None: only on new input)."""
        timers = self._timers
        while timers and not self._timer_live(timers[0]):
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    @property
    def stats(self) -> Mapping[str, int]:
        """Counters (frames in and out, drops by reason, deliveries...), read-only."""
        return MappingProxyType(self._stats)

    @property
    def accounting(self) -> Mapping[tuple[Address, Address], RelayCount]:
        """What this node relayed per (origin, destination), read-only."""
        return self._accounting.view()

    @property
    def routing(self) -> RoutingTable:
        """The route table, for inspection (tests, operators); do not mutate."""
        return self._routing

    @property
    def public_key(self) -> bytes:
        """This node's 33-byte compressed public key."""
        return self._identity.public_key

    def neighbour_addresses(self) -> list[Address]:
        """Addresses of the current neighbours."""
        return [n.address for n in self._neighbours]

    def hop_timeout(self, neighbour: NeighbourKey) -> float:
        """The retransmission timeout of a frame's first send to ``neighbour`` now: the
        measured one, or ``hop_rto`` before any measure."""
        return self._rto(neighbour)

    def pending_count(self) -> int:
        """Messages sent and not yet resolved (delivered or expired)."""
        return len(self._pending)

    def custody_count(self) -> int:
        """Frames in custody (own, acks owed, relayed)."""
        return len(self._custody)

    # -- inputs ---------------------------------------------------------------------------

    def link_up(self, link: Link, now: float) -> list[Effect]:
        """A link became usable: greet its neighbours."""
        if link.mtu < self.config.routed_mtu:
            raise ConfigError("link MTU below the mesh's routed_mtu: relays cannot re-fragment")
        self._start(now)
        self._links[link.link_id] = link
        self._fanout(self._hello(now), only=link.link_id)
        self._arm(_T_HELLO, now + self._jitter(self.config.hello_interval))
        self._arm(_T_DUMP, now + self._jitter(self.config.update_interval))
        return self._finish(now)

    def link_down(self, link_id: str, now: float) -> list[Effect]:
        """A link is gone: its neighbours are lost, their frames wait for other routes."""
        self._start(now)
        if self._links.pop(link_id, None) is not None:
            for key in self._neighbours.drop_link(link_id):
                self._neighbour_lost(key, now)
        return self._finish(now)

    def receive_frame(
        self, link_id: str, peer_link_addr: LinkAddr, data: bytes, now: float
    ) -> list[Effect]:
        """A frame arrived on ``link_id`` from ``peer_link_addr``."""
        self._start(now)
        self._receive(link_id, peer_link_addr, data, now)
        return self._finish(now)

    def receive_frames(
        self, link_id: str, frames: Iterable[tuple[LinkAddr, bytes]], now: float
    ) -> list[Effect]:
        """Frames that arrived together on ``link_id`` (one read of a socket), in order.

        The same as ``receive_frame`` for each, except that the hop acks they owe go out
        last, one HOP_ACK frame per neighbour for the whole batch (up to what its link's
        MTU holds) instead of one per frame: on a busy link that halves the frames.
        """
        self._start(now)
        self._ack_batch = {}
        try:
            for peer_link_addr, data in frames:
                self._receive(link_id, peer_link_addr, data, now)
                self._settle(now)
        finally:
            batch, self._ack_batch = self._ack_batch, None
        for key, hop_seqs in batch.items():
            link = self._links.get(key[0])
            per_frame = MAX_HOP_ACKS if link is None else min(MAX_HOP_ACKS, (link.mtu - 3) // 2)
            for start in range(0, len(hop_seqs), per_frame):
                frame = encode_hop_ack(hop_seqs[start : start + per_frame])
                self._out.append(SendFrame(key[0], key[1], frame))
        return self._finish(now)

    def _receive(self, link_id: str, peer_link_addr: LinkAddr, data: bytes, now: float) -> None:
        stats = self._stats
        stats["frames_in"] += 1
        link = self._links.get(link_id)
        if link is None:
            stats["dropped_link_down"] += 1
            return
        key: NeighbourKey = (link_id, peer_link_addr)
        size = len(data) if isinstance(data, bytes) else 0
        if not self._limiter.admit(key, size, now):
            stats["dropped_rate_limited"] += 1
            return
        try:
            frame = decode_frame(data)
        except FrameDecodeError as exc:
            self._invalid(f"malformed frame: {exc}")
            return
        neighbour = self._neighbours.get(key)
        if neighbour is not None:
            # Any frame is a sign of life: with 10-30% loss, hellos alone would time
            # neighbours out that are still there and carrying traffic.
            neighbour.last_heard = now
        if isinstance(frame, Routes):
            if neighbour is None:
                stats["dropped_unknown_neighbour"] += 1
            else:
                self._routing.receive_routes(key, neighbour.cost, frame.entries, now)
        elif isinstance(frame, Routed):
            self._on_routed(key, frame, data, now)
        elif isinstance(frame, HopAck):
            self._on_hop_ack(key, frame)
        elif isinstance(frame, Hello):
            self._on_hello(link, key, frame, now)
        elif isinstance(frame, SeqnoRequest):
            if neighbour is None:
                stats["dropped_unknown_neighbour"] += 1
            else:
                self._routing.receive_request(key, frame, now)

    def send(self, destination: bytes, payload: bytes, expiry: float, now: float) -> bytes:
        """Queue ``payload`` for ``destination`` until ``expiry`` (absolute seconds).

        Returns the 16-byte message id. Exactly one of ``EventDelivered`` or
        ``EventExpired`` will follow for it. Raises ``MeshValidationError`` for bad
        arguments and ``QueueFull`` when too many messages are unresolved.
        """
        target = as_address(destination)
        if target == self.address:
            raise MeshValidationError("a node does not send to itself")
        if not isinstance(payload, bytes) or len(payload) > self.config.max_payload:
            raise MeshValidationError(f"payload must be bytes of at most {self.config.max_payload}")
        if not now < expiry <= now + self.config.max_lifetime:
            raise MeshValidationError("expiry must be in the future, within max_lifetime")
        if len(self._pending) >= self.config.max_pending_messages:
            raise QueueFull("too many unresolved messages")
        self._start(now)
        expiry_ms = min(UINT48_MAX, int(expiry * 1000))
        message_id = make_message_id(self.address, target, expiry_ms, self._drbg.take(16), payload)
        assert message_id not in self._pending
        self._pending[message_id] = PendingMessage(message_id, target, payload, expiry_ms / 1000)
        self._unsealed.setdefault(target, []).append(message_id)
        self._push(expiry_ms / 1000 + self.config.ack_grace, _T_OUTCOME, message_id)
        self._push(now, _T_SEAL, target)
        self._stats["sent"] += 1
        return message_id

    def acknowledge(self, origin: bytes, message_id: bytes, now: float) -> list[Effect]:
        """With ``config.app_acks``: the application has persisted what ``Deliver`` of
        (``origin``, ``message_id``) gave it; send the end-to-end ack. Unknown or repeated
        calls do nothing."""
        self._start(now)
        message_key = (as_address(origin), message_id)
        expiry = self._awaiting_app_ack.pop(message_key, None)
        if expiry is not None:
            if self._remember_delivered(message_key, expiry + self.config.hello_tolerance, now):
                self._acknowledge(message_key[0], message_id, expiry, now)
            else:
                self._stats["refused_seen_full"] += 1
        return self._finish(now)

    def tick(self, now: float) -> list[Effect]:
        """Time passed: fire every timer due at ``now``."""
        self._start(now)
        timers = self._timers
        while timers and timers[0][0] <= now:
            timer = heapq.heappop(timers)
            if self._timer_live(timer):
                self._fire(timer, now)
        return self._finish(now)

    def snapshot(self) -> bytes:
        """The pending store as bytes: unresolved own messages, frames in custody (except
        our own fragments, which are rebuilt from the messages) and delivered ids."""
        custody = [i for i in self._custody if not i.own]
        packed = self._seen_packed
        if len(packed) > len(self._delivered) * 5 // 4 + 64:  # forget the expired, now and then
            delivered = self._delivered
            packed = self._seen_packed = {k: v for k, v in packed.items() if k in delivered}
        return encode_snapshot(
            self._routing.seqno,
            list(self._pending.values()),
            custody,
            [],
            (len(packed), b"".join(packed.values())),
        )

    def _remember_delivered(
        self, message_key: tuple[Address, bytes], expires: float, now: float
    ) -> bool:
        if not self._delivered.add(message_key, expires, now):
            return False
        expiry = self._delivered.expiry(message_key)
        assert expiry is not None
        self._seen_packed[message_key] = pack_seen(message_key[0], message_key[1], expiry)
        return True

    def restore(self, data: bytes, now: float) -> list[Effect]:
        """Load a snapshot (``SnapshotError`` if corrupt) into this node, normally at start."""
        snapshot = decode_snapshot(data)
        self._start(now)
        self._routing.restore_seqno(snapshot.seqno)
        for origin, message_id, expiry in snapshot.seen:
            if expiry > now:
                self._remember_delivered((origin, message_id), expiry, now)
        for message_id, destination, expiry, payload in snapshot.pending:
            if message_id in self._pending or expiry + self.config.ack_grace <= now:
                continue
            self._pending[message_id] = PendingMessage(message_id, destination, payload, expiry)
            self._unsealed.setdefault(destination, []).append(message_id)
            self._push(expiry + self.config.ack_grace, _T_OUTCOME, message_id)
            self._push(now, _T_SEAL, destination)
        for frame, tail, hops_left in snapshot.custody:
            item = CustodyItem(frame, tail, hops_left, own=False)
            if item.expiry <= now or item.key in self._custody.items:
                continue
            if self._custody.has_room(item.size):
                self._custody.add(item)
                self._push(now, _T_SEAL, item.destination)
        return self._finish(now)

    # -- frames from peers ----------------------------------------------------------------

    def _on_hello(self, link: Link, key: NeighbourKey, hello: Hello, now: float) -> None:
        result = self._neighbours.receive_hello(link.link_id, key[1], hello, link.cost, now)
        verdict = result.verdict
        if result.replaced is not None:
            self._neighbour_lost(result.replaced, now)
        if verdict is HelloVerdict.NEW:
            self._stats["neighbours_new"] += 1
            # Answer a new neighbour at once (it may not have heard our last hello) and
            # give it our whole table, so it need not wait for the periodic dump.
            self._unicast(key, self._hello(now))
            if self._dump_budget.take(1, now):
                self._send_routes(self._routing.dump(), key)
            else:
                # Hellos from fresh keys are free to forge: without this budget each would
                # buy a whole table dump (85 bytes in, a route per destination out). A
                # neighbour refused one learns routes from triggered updates, the next
                # dump, or by asking for the destinations it needs.
                self._stats["dumps_deferred"] += 1
        elif verdict is HelloVerdict.REFRESHED:
            assert result.neighbour is not None
            address = result.neighbour.address
            if not self._routing.has_route_from(address, key, hello.seqno):
                # Its hello says it advertises a seqno we lack: ask for its own route.
                self._unicast(key, encode_seqno_request(SeqnoRequest(address, hello.seqno, 1)))
        elif verdict is HelloVerdict.FULL:
            self._stats["dropped_neighbours_full"] += 1
        elif verdict is not HelloVerdict.OWN:
            self._invalid(verdict.value)

    def _on_hop_ack(self, key: NeighbourKey, ack: HopAck) -> None:
        newest = 0
        for hop_seq in ack.hop_seqs:
            item = self._custody.acknowledged(key, hop_seq)
            if item is None:
                self._stats["hop_acks_unmatched"] += 1
                continue
            self._stats["hop_acked"] += 1
            newest = max(newest, item.tx)
            if item.attempts == 1:  # Karn: the ack of a resent frame may be the first's
                self._measured(key, self._now - item.sent_at)
            if not item.own and item.origin != self.address:
                self._accounting.record(
                    item.origin,
                    item.destination,
                    item.size,
                    item.frag_index == 0,
                )
        if newest:
            self._resend_overtaken(key, newest)
        for destination in self._blocked.pop(key, ()):
            self._pump(destination, self._now)

    def _resend_overtaken(self, key: NeighbourKey, newest: int) -> None:
        """Fast retransmit: the frames in flight to ``key`` sent ``_FAST_RETRANSMIT_GAP``
        or more sends before an acknowledged one are lost (or their ack is): send them
        again now rather than at their timeout. A loss then costs about a round trip, not
        ``hop_rto_min`` or more; a frame whose ack alone was lost comes again as a
        duplicate, which the neighbour acknowledges and drops."""
        for item in self._custody.in_flight_to(key):  # oldest send first
            if item.tx + _FAST_RETRANSMIT_GAP > newest:
                return
            if item.state is not CustodyState.IN_FLIGHT or item.neighbour != key:
                continue  # moved by a retry before it in this loop (a route changed)
            self._stats["hop_fast_retries"] += 1
            self._retry(item, self._now)

    def _on_routed(self, key: NeighbourKey, frame: Routed, data: bytes, now: float) -> None:
        expiry = frame.expiry_ms / 1000
        stats = self._stats
        if expiry <= now:
            stats["dropped_expired"] += 1
            self._hop_ack(key, frame.hop_seq)
            return
        if (
            expiry
            > now + self.config.max_lifetime + self.config.ack_grace + self.config.hello_tolerance
        ):
            self._invalid("routed frame expires too far in the future")
            self._hop_ack(key, frame.hop_seq)
            return
        if frame.destination == self.address:
            if frame.kind is FrameType.DATA:
                self._on_data_for_me(key, frame, expiry, now)
            else:
                self._on_ack_for_me(key, frame)
            return
        custody_key = (int(frame.kind), frame.origin, frame.message_id, frame.frag_index)
        # A retransmission reuses its hop_seq; a new copy (another path, an end-to-end
        # retry, a frame handed back while routes change) comes with a new one.
        copy_key = (custody_key, key, frame.hop_seq)
        if copy_key in self._relayed:
            # A hop-level retransmission (our ack was lost): acknowledge, do not forward.
            stats["duplicates_relay"] += 1
            self._hop_ack(key, frame.hop_seq)
            return
        window_end = min(expiry, now + self.config.relay_dedup_window)
        held = self._custody.items.get(custody_key)
        if held is not None:
            # We hold this frame already: take the neighbour's copy off its hands.
            stats["duplicates_relay"] += 1
            self._relayed.add(copy_key, window_end, now)
            self._hop_ack(key, frame.hop_seq)
            if held.state is CustodyState.IN_FLIGHT and held.neighbour == key:
                # Handed back by the very neighbour we were sending it to (its route
                # changed): it will acknowledge our retransmissions as duplicates, so ours
                # must go again, on our current route, with a new hop_seq.
                held.hops_left = min(held.hops_left, max(frame.hops_left - 1, 1))
                self._custody.enqueue(held)
                self._pump(held.destination, now)
            return
        if frame.hops_left <= 1:
            stats["dropped_hop_limit"] += 1
            self._hop_ack(key, frame.hop_seq)
            return
        tail = data[ROUTED_PREFIX_LENGTH:]
        item = CustodyItem(frame, tail, frame.hops_left - 1, own=False)
        if not self._custody.has_room(item.size):
            # No ack: the sender keeps custody and retries later (back-pressure).
            stats["refused_custody_full"] += 1
            return
        self._custody.add(item)
        self._relayed.add(copy_key, window_end, now)
        stats["relay_accepted"] += 1
        self._hop_ack(key, frame.hop_seq)
        self._pump(frame.destination, now)

    def _on_data_for_me(self, key: NeighbourKey, frame: Routed, expiry: float, now: float) -> None:
        message_key = (frame.origin, frame.message_id)
        if message_key in self._delivered:
            self._stats["duplicates_destination"] += 1
            self._hop_ack(key, frame.hop_seq)
            if frame.frag_index == 0 and frame.origin not in self._peer_keys:
                # The ack needs the origin's key. Unknown here (after a restart, with no
                # route advert of the origin), it comes with the envelope: the first
                # fragment of a resent message starts with it.
                self._learn_key(frame.origin, frame.chunk[:COMPRESSED_KEY_LENGTH])
            self._acknowledge(frame.origin, frame.message_id, expiry, now)
            return
        result = self._reassembler.add(
            message_key, frame.frag_index, frame.frag_count, frame.chunk, expiry, now
        )
        outcome = result.outcome
        if outcome is Outcome.REFUSED:
            self._stats["refused_reassembly_full"] += 1
            return
        self._hop_ack(key, frame.hop_seq)
        if outcome is Outcome.INCONSISTENT:
            self._invalid("fragments of one message disagree")
            return
        if outcome is not Outcome.COMPLETE:
            return
        try:
            payload, origin_key = open_envelope(
                self._identity, result.body, frame.message_id, frame.origin, frame.expiry_ms
            )
        except EnvelopeError as exc:
            self._invalid(f"envelope rejected: {exc}")
            return
        self._remember_key(frame.origin, origin_key)
        if self.config.app_acks:
            if message_key in self._awaiting_app_ack:
                self._stats["duplicates_awaiting_app_ack"] += 1
                return
            if len(self._awaiting_app_ack) >= self.config.max_seen:
                # The application forgot some: the oldest are redelivered if retransmitted.
                self._awaiting_app_ack.popitem(last=False)
            self._awaiting_app_ack[message_key] = expiry
            self._stats["delivered"] += 1
            self._out.append(Deliver(frame.origin, payload, frame.message_id))
            return
        if not self._remember_delivered(message_key, expiry + self.config.hello_tolerance, now):
            self._stats["refused_seen_full"] += 1
            return
        self._stats["delivered"] += 1
        self._out.append(Deliver(frame.origin, payload, frame.message_id))
        self._acknowledge(frame.origin, frame.message_id, expiry, now)

    def _on_ack_for_me(self, key: NeighbourKey, frame: Routed) -> None:
        self._hop_ack(key, frame.hop_seq)
        pending = self._pending.get(frame.message_id)
        if pending is None or pending.destination != frame.origin:
            self._stats["acks_late_or_unknown"] += 1
            return
        expected = pending.ack
        if expected is None:
            # Restored and not yet resealed: the destination's key, if we know it.
            expected = self._expected_ack(pending)
            if expected is None:
                self._stats["acks_unverifiable"] += 1
                return
        if not verify_ack(frame.chunk, expected):
            self._invalid("end-to-end ack does not authenticate")
            return
        self._resolve(pending, delivered=True)

    def _expected_ack(self, pending: PendingMessage) -> bytes | None:
        key = self._key_of(pending.destination)
        if key is None:
            return None
        return ack_tag(self._identity, key, pending.message_id, self.address, pending.destination)

    def _key_of(self, address: Address) -> bytes | None:
        """A peer's public key: from an envelope it sent us, or from its route advert
        (either was checked against its address, so both give the same key)."""
        key = self._peer_keys.get(address)
        return key if key is not None else self._routing.public_key(address)

    def _remember_key(self, address: Address, key: bytes) -> None:
        """Keep a key already checked against ``address`` (bounded, least recent out)."""
        keys = self._peer_keys
        if address in keys:
            keys.move_to_end(address)
            return
        if len(keys) >= _MAX_PEER_KEYS:
            keys.popitem(last=False)
        keys[address] = key

    def _learn_key(self, address: Address, key: bytes) -> None:
        """Keep ``key`` if it is ``address``'s (any bytes may come from a peer)."""
        try:
            if address_of_key(key) != address:
                return
        except EnvelopeError:
            return
        self._remember_key(address, key)

    # -- own messages ---------------------------------------------------------------------

    def _acknowledge(self, origin: Address, message_id: bytes, expiry: float, now: float) -> None:
        ack_key = (origin, message_id)
        custody_key = (int(FrameType.E2E_ACK), self.address, message_id, 0)
        last = self._last_ack_sent.get(ack_key)
        if custody_key in self._custody.items or (
            last is not None and now - last < self.config.reack_interval
        ):
            return
        origin_key = self._key_of(origin)
        if origin_key is None:
            # A duplicate after a restart, before we saw its first fragment and with no
            # route advert of the origin: its end-to-end retry brings that fragment.
            self._stats["acks_no_key"] += 1
            return
        if len(self._last_ack_sent) >= self.config.max_seen:
            self._last_ack_sent.clear()
        self._last_ack_sent[ack_key] = now
        frame = Routed(
            FrameType.E2E_ACK,
            0,
            self.config.hop_limit,
            message_id,
            origin,
            self.address,
            min(UINT48_MAX, int((expiry + self.config.ack_grace) * 1000)),
            0,
            1,
            ack_tag(self._identity, origin_key, message_id, origin, self.address),
        )
        item = CustodyItem(
            frame, encode_routed(frame)[ROUTED_PREFIX_LENGTH:], frame.hops_left, own=False
        )
        if not self._custody.has_room(item.size):
            self._stats["refused_custody_full"] += 1
            return
        self._custody.add(item)
        self._stats["acks_sent"] += 1
        self._pump(origin, now)

    def _seal_waiting(self, destination: Address, now: float) -> None:
        waiting = self._unsealed.get(destination)
        if not waiting:
            return
        key = self._key_of(destination)
        if key is None:
            self._routing.request_route(destination, now)
            return
        del self._unsealed[destination]
        for message_id in waiting:
            pending = self._pending.get(message_id)
            if pending is None or pending.body is not None:
                continue
            try:
                pending.body = seal(
                    self._identity,
                    key,
                    message_id,
                    destination,
                    int(pending.expiry * 1000),
                    pending.payload,
                )
            except EnvelopeError:  # pragma: no cover -- keys are checked when learnt
                continue
            pending.ack = ack_tag(self._identity, key, message_id, self.address, destination)
            self._enqueue_own(pending, now)
            # Short-lived messages get their end-to-end retry within their lifetime.
            pending.retry_interval = max(
                min(self.config.e2e_retry, (pending.expiry - now) / 2), 4 * self.config.hop_rto
            )
            pending.next_retry = now + pending.retry_interval
            if pending.next_retry < pending.expiry:
                self._push(pending.next_retry, _T_E2E, message_id)

    def _enqueue_own(self, pending: PendingMessage, now: float) -> None:
        assert pending.body is not None
        chunks = split(pending.body, self.config.chunk_size)
        expiry_ms = int(pending.expiry * 1000)
        for index, chunk in enumerate(chunks):
            frame = Routed(
                FrameType.DATA,
                0,
                self.config.hop_limit,
                pending.message_id,
                pending.destination,
                self.address,
                expiry_ms,
                index,
                len(chunks),
                chunk,
            )
            item = CustodyItem(
                frame, encode_routed(frame)[ROUTED_PREFIX_LENGTH:], self.config.hop_limit, own=True
            )
            if item.key not in self._custody.items:
                self._custody.add(item)
        self._pump(pending.destination, now)

    def _resolve(self, pending: PendingMessage, delivered: bool) -> None:
        del self._pending[pending.message_id]
        if pending.body is not None:
            count = -(-len(pending.body) // self.config.chunk_size)
            for index in range(count):
                item = self._custody.items.get(
                    (int(FrameType.DATA), self.address, pending.message_id, index)
                )
                if item is not None:
                    self._custody.remove(item)
        else:
            waiting = self._unsealed.get(pending.destination)
            if waiting and pending.message_id in waiting:
                waiting.remove(pending.message_id)
        if delivered:
            self._stats["e2e_delivered"] += 1
            self._out.append(EventDelivered(pending.message_id))
        else:
            self._stats["e2e_expired"] += 1
            self._out.append(EventExpired(pending.message_id))

    # -- forwarding -----------------------------------------------------------------------

    def _pump(self, destination: Address, now: float) -> None:
        hop = self._routing.next_hop(destination)
        custody = self._custody
        if hop is None:
            if destination in custody.waiting:
                self._routing.request_route(destination, now)
            return
        window = self.config.hop_window
        while custody.window_used(hop) < window:
            item = custody.next_waiting(destination)
            if item is None:
                return
            if item.expiry <= now:
                custody.remove(item)
                self._stats["dropped_expired"] += 1
                continue
            self._transmit(item, hop, now)
        if destination in custody.waiting:
            self._blocked.setdefault(hop, {})[destination] = None

    def _transmit(self, item: CustodyItem, hop: NeighbourKey, now: float) -> None:
        retry_at = now + backoff(self._rto(hop), item.attempts, self.config.hop_rto_max)
        hop_seq = self._custody.fly(item, hop, retry_at)
        item.attempts += 1
        item.sent_at = now
        item.tx = self._sends[hop] = self._sends.get(hop, 0) + 1
        self._out.append(SendFrame(hop[0], hop[1], item.frame(hop_seq)))
        self._stats["frames_out"] += 1
        self._push(retry_at, _T_RETRY, item)

    def _rto(self, hop: NeighbourKey) -> float:
        """The retransmission timeout towards ``hop``: measured once it can be (config)."""
        measured = self._rtt.get(hop)
        if measured is None:
            return self.config.hop_rto
        srtt, rttvar = measured
        return min(self.config.hop_rto_max, max(self.config.hop_rto_min, srtt + 4 * rttvar))

    def _measured(self, hop: NeighbourKey, sample: float) -> None:
        """A hop round trip of a frame sent once (RFC 6298's estimator, alpha 1/8, beta 1/4)."""
        sample = max(sample, 0.0)
        known = self._rtt.get(hop)
        if known is None:
            self._rtt[hop] = (sample, sample / 2)
            return
        srtt, rttvar = known
        rttvar += (abs(srtt - sample) - rttvar) / 4
        srtt += (sample - srtt) / 8
        self._rtt[hop] = (srtt, rttvar)

    def _retry(self, item: CustodyItem, now: float) -> None:
        if item.expiry <= now:
            self._custody.remove(item)
            self._stats["dropped_expired"] += 1
            return
        self._stats["hop_retries"] += 1
        hop = self._routing.next_hop(item.destination)
        if hop is None or hop != item.neighbour:
            self._custody.enqueue(item)
            self._pump(item.destination, now)
        else:
            self._transmit(item, hop, now)

    def _neighbour_lost(self, key: NeighbourKey, now: float) -> None:
        self._stats["neighbours_lost"] += 1
        self._routing.neighbour_lost(key, now)
        self._blocked.pop(key, None)
        self._rtt.pop(key, None)
        self._sends.pop(key, None)
        destinations: dict[Address, None] = {}
        for item in self._custody.in_flight_to(key):
            self._custody.enqueue(item)
            destinations[item.destination] = None
        for destination in destinations:
            self._pump(destination, now)

    # -- timers ---------------------------------------------------------------------------

    def _fire(self, timer: _Timer, now: float) -> None:
        _, _, kind, subject = timer
        config = self.config
        if kind == _T_RETRY:
            assert isinstance(subject, CustodyItem)
            self._retry(subject, now)
        elif kind == _T_SEAL:
            assert isinstance(subject, bytes)
            self._seal_waiting(Address(subject), now)
            self._pump(Address(subject), now)
        elif kind == _T_TRIGGERED:
            del self._armed[_T_TRIGGERED]
            adverts = self._routing.take_changed()
            if adverts:
                self._stats["triggered_updates"] += 1
                self._send_routes(adverts, None)
        elif kind == _T_HELLO:
            del self._armed[_T_HELLO]
            self._fanout(self._hello(now), only=None)
            self._arm(_T_HELLO, now + self._jitter(config.hello_interval))
        elif kind == _T_DUMP:
            del self._armed[_T_DUMP]
            self._send_routes(self._routing.dump(), None)
            self._arm(_T_DUMP, now + self._jitter(config.update_interval))
        elif kind == _T_HOUSEKEEPING:
            del self._armed[_T_HOUSEKEEPING]
            self._housekeeping(now)
            self._arm(_T_HOUSEKEEPING, now + config.hello_interval)
        elif kind == _T_E2E:
            assert isinstance(subject, bytes)
            pending = self._pending.get(subject)
            if pending is not None and pending.body is not None and now < pending.expiry:
                self._stats["e2e_retries"] += 1
                self._enqueue_own(pending, now)
                pending.retry_interval *= 2
                pending.next_retry = now + pending.retry_interval
                if pending.next_retry < pending.expiry:
                    self._push(pending.next_retry, _T_E2E, subject)
        elif kind == _T_OUTCOME:
            assert isinstance(subject, bytes)
            pending = self._pending.get(subject)
            if pending is not None:
                self._resolve(pending, delivered=False)

    def _housekeeping(self, now: float) -> None:
        for key in self._neighbours.expire(now):
            self._neighbour_lost(key, now)
        if now >= self._next_route_expiry:
            # Routes live for 3.5 update intervals; scanning the table twice an interval
            # is soon enough and costs little on a 1,000-destination table.
            self._routing.expire(now)
            self._next_route_expiry = now + self.config.update_interval / 2
        for item in self._custody.expire(now):
            self._stats["dropped_expired"] += 1
            del item
        self._reassembler.expire(now)
        self._delivered.expire(now)
        self._relayed.expire(now)
        for destination in list(self._custody.waiting):
            self._pump(destination, now)
        for destination in list(self._unsealed):
            self._seal_waiting(destination, now)

    def _timer_live(self, timer: _Timer) -> bool:
        when, _, kind, subject = timer
        if kind == _T_RETRY:
            assert isinstance(subject, CustodyItem)
            return subject.state is CustodyState.IN_FLIGHT and subject.retry_at == when
        if kind == _T_E2E:
            pending = self._pending.get(subject)  # type: ignore[call-overload]
            return pending is not None and pending.next_retry == when
        if kind == _T_OUTCOME:
            return subject in self._pending
        if kind == _T_SEAL:
            return True
        return self._armed.get(kind) == when

    def _push(self, when: float, kind: int, subject: object) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (when, self._timer_seq, kind, subject))

    def _arm(self, kind: int, when: float) -> None:
        current = self._armed.get(kind)
        if current is not None and current <= when:
            return
        self._armed[kind] = when
        self._push(when, kind, None)

    def _jitter(self, interval: float) -> float:
        # 0.75..1.25 of the interval, so neighbours' timers drift apart and do not collide.
        fraction = int.from_bytes(self._drbg.take(2), "big") / 65536
        return interval * (0.75 + 0.5 * fraction)

    # -- output helpers -------------------------------------------------------------------

    def _start(self, now: float) -> None:
        self._now = now
        if not self._started:
            self._started = True
            self._dump_budget.last = now
            self._routing.start(now)
            self._arm(_T_HOUSEKEEPING, now + self.config.hello_interval)

    def _finish(self, now: float) -> list[Effect]:
        self._settle(now)
        out, self._out = self._out, []
        return out

    def _settle(self, now: float) -> None:
        """Act on what routing changes asked for: invalid adverts, requests, reroutes."""
        routing = self._routing
        if routing.invalid:
            for reason in routing.invalid:
                self._invalid(reason)
            routing.invalid.clear()
        if routing.requests:
            requests, routing.requests = routing.requests, []
            for request, target in requests:
                frame = encode_seqno_request(request)
                self._stats["seqno_requests_sent"] += 1
                if target is None:
                    self._fanout(frame, only=None)
                else:
                    self._unicast(target, frame)
        if routing.rerouted:
            rerouted, routing.rerouted = routing.rerouted, {}
            for destination in rerouted:
                if destination in self._unsealed:
                    self._seal_waiting(destination, now)
                if destination in self._custody.waiting:
                    self._pump(destination, now)
        if routing.changed and _T_TRIGGERED not in self._armed:
            self._arm(_T_TRIGGERED, now + self.config.triggered_delay)

    def _invalid(self, reason: str) -> None:
        self._stats["invalid_frames"] += 1
        self._out.append(EventInvalidFrame(reason))

    def _hop_ack(self, key: NeighbourKey, hop_seq: int) -> None:
        batch = self._ack_batch
        if batch is None:
            self._out.append(SendFrame(key[0], key[1], encode_hop_ack((hop_seq,))))
        else:
            batch.setdefault(key, []).append(hop_seq)

    def _hello(self, now: float) -> bytes:
        time_ms = max(int(now * 1000), self._last_hello_ms + 1)
        self._last_hello_ms = time_ms
        nonce = self._drbg.take(8)
        seqno = self._routing.seqno
        signature = self._identity.sign(hello_digest(seqno, time_ms, nonce))
        return encode_hello(Hello(seqno, time_ms, nonce, signature))

    def _unicast(self, key: NeighbourKey, frame: bytes) -> None:
        self._out.append(SendFrame(key[0], key[1], frame))
        self._stats["frames_out"] += 1

    def _fanout(self, frame: bytes, only: str | None) -> None:
        """Send one frame to every neighbour of every link (or of link ``only``)."""
        for link in self._links.values():
            if only is not None and link.link_id != only:
                continue
            if link.broadcast:
                self._out.append(SendFrame(link.link_id, BROADCAST, frame))
                self._stats["frames_out"] += 1
                continue
            targets: dict[LinkAddr, None] = dict.fromkeys(link.peers)
            for neighbour in self._neighbours.on_link(link.link_id):
                targets[neighbour.key[1]] = None
            for addr in targets:
                self._out.append(SendFrame(link.link_id, addr, frame))
                self._stats["frames_out"] += 1

    def _send_routes(self, adverts: list[RouteAdvert], target: NeighbourKey | None) -> None:
        if not adverts:
            return
        by_mtu: dict[int, list[bytes]] = {}

        def frames(mtu: int) -> list[bytes]:
            encoded = by_mtu.get(mtu)
            if encoded is None:
                per = routes_per_frame(mtu)
                encoded = [encode_routes(adverts[i : i + per]) for i in range(0, len(adverts), per)]
                by_mtu[mtu] = encoded
            return encoded

        if target is not None:
            link = self._links.get(target[0])
            if link is not None:
                for frame in frames(link.mtu):
                    self._unicast(target, frame)
            return
        for link in self._links.values():
            for frame in frames(link.mtu):
                self._fanout(frame, only=link.link_id)
