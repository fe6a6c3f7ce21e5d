"""What the node knows of the public channel graph: chain facts plus signed announcements.

Belongs here: ``Announcement`` (a node's signed statement of what it can send over one
channel and what it charges), its compact wire form and check, and ``GraphView``, which
merges three sources into the ``ChannelGraph`` the core routes on:
1. chain facts of every channel (the follower's ``ChannelRecord``s: participants,
   deposits, withdrawals, open or not), the only source a stranger cannot forge;
2. announcements, each signed by the side it describes, accepted only for a channel the
   chain says is open between the signer and the partner named, only when newer than the
   last one from that signer for that channel, and at most ``min_interval_ms`` apart per
   (signer, channel) (the rate limit that stops a flood of valid updates). One about a
   channel our follower has not seen yet is kept aside (the newest per signer and channel,
   at most ``EARLY_LIMIT`` in all) and taken when the chain shows the channel open: nodes
   see a new channel at slightly different times, and its announcement, which travels
   faster than the follower polls, would otherwise be lost for good at every node that
   had not seen the open yet (and not passed on);
3. our own channels, which we know exactly (our side and what our partner sent us).
Without an announcement a side's capacity is its deposit minus its withdrawals: an upper
bound; a route that fails on it is retried elsewhere (the initiator tries several).

Announcements travel over the mesh to channel partners, who pass on what is new to theirs
(gossip along channels, as Lightning does); ``GraphView.accept`` says whether to pass one
on. The wire form starts with ``ANNOUNCEMENT_TAG``, a byte that is not a protocol codec
version, so the runtime tells the two apart by the first byte.

Does not belong here: route search (``protocol.routes``), sockets (the transport).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from offchain.chain.inputs import ChannelRecord, ChannelStage
from offchain.protocol.crypto import keccak256, recover, sign_digest
from offchain.protocol.errors import ValidationError
from offchain.protocol.fees import FeeSchedule
from offchain.protocol.routes import ChannelEdge, ChannelGraph
from offchain.protocol.types import Address, TokenAmount

ANNOUNCEMENT_TAG: Final = 0xA1
_BODY: Final = struct.Struct(">BQ20s20s20s32s32sIIQ")
"""tag, chain id, token network, signer, partner, capacity (uint256), flat fee (uint256),
proportional ppm, imbalance ppm, timestamp (Unix milliseconds); then a 65-byte signature."""
_DOMAIN: Final = b"SmartMesh capacity announcement v1"
SIGNED_SIZE: Final = _BODY.size + 65
EARLY_LIMIT: Final = 1024
"""Announcements of channels the chain does not show (yet) kept aside; the oldest goes
first when full (a flood of made-up channels only pushes out others' early ones)."""


class AnnouncementError(ValidationError):
    """An announcement that is malformed, forged, stale or about an unknown channel."""


@dataclass(frozen=True, slots=True)
class Announcement:
    """``signer`` can send ``capacity`` to ``partner`` in ``token_network`` and charges
    ``fees`` for payments it forwards out over that channel; ``timestamp`` (Unix
    milliseconds) orders them."""

    chain_id: int
    token_network: Address
    signer: Address
    partner: Address
    capacity: int
    fees: FeeSchedule
    timestamp: int
    signature: bytes = b""

    def body(self) -> bytes:
        return _BODY.pack(
            ANNOUNCEMENT_TAG,
            self.chain_id,
            self.token_network,
            self.signer,
            self.partner,
            self.capacity.to_bytes(32, "big"),
            self.fees.flat.to_bytes(32, "big"),
            self.fees.proportional_ppm,
            self.fees.imbalance_ppm,
            self.timestamp,
        )

    def digest(self) -> bytes:
        return keccak256(_DOMAIN + self.body())

    def signed(self, private_key: bytes) -> Announcement:
        return Announcement(
            self.chain_id, self.token_network, self.signer, self.partner, self.capacity,
            self.fees, self.timestamp, sign_digest(private_key, self.digest()),
        )  # fmt: skip

    def encode(self) -> bytes:
        if len(self.signature) != 65:
            raise AnnouncementError("unsigned announcement")
        return self.body() + self.signature


def decode_announcement(data: bytes) -> Announcement:
    """Parse and check the signature; ``AnnouncementError`` for anything wrong."""
    if len(data) != SIGNED_SIZE or data[0] != ANNOUNCEMENT_TAG:
        raise AnnouncementError(
            f"an announcement is {SIGNED_SIZE} bytes starting 0x{ANNOUNCEMENT_TAG:x}"
        )
    (_, chain_id, network, signer, partner, capacity, flat, proportional, imbalance, ts) = (
        _BODY.unpack(data[: _BODY.size])
    )
    try:
        fees = FeeSchedule(int.from_bytes(flat, "big"), proportional, imbalance)
    except ValidationError as exc:
        raise AnnouncementError(f"bad fees: {exc}") from exc
    announcement = Announcement(
        chain_id, Address(network), Address(signer), Address(partner),
        int.from_bytes(capacity, "big"), fees, ts, data[_BODY.size :],
    )  # fmt: skip
    try:
        recovered = recover(announcement.digest(), announcement.signature)
    except ValidationError as exc:
        raise AnnouncementError(f"bad signature: {exc}") from exc
    if recovered != announcement.signer:
        raise AnnouncementError("not signed by the side it describes")
    return announcement


@dataclass(frozen=True, slots=True)
class OwnChannel:
    """One of our channels, exactly: what each side can send now."""

    token_network: Address
    partner: Address
    ours: int
    theirs: int


class GraphView:
    """The graph of each token network from chain facts, announcements and our channels."""

    def __init__(self, chain_id: int, own_address: Address, min_interval_ms: int = 250) -> None:
        self.chain_id = chain_id
        self.address = own_address
        self.min_interval_ms = min_interval_ms
        self._channels: dict[tuple[Address, frozenset[Address]], ChannelRecord] = {}
        self._announced: dict[tuple[Address, Address, Address], Announcement] = {}
        self._own: dict[tuple[Address, Address], OwnChannel] = {}
        self._own_fees = FeeSchedule()
        self._dirty: set[Address] = set()
        self._early: dict[tuple[Address, frozenset[Address], Address], Announcement] = {}
        self._released: list[Announcement] = []
        self.stats = {"accepted": 0, "stale": 0, "unknown_channel": 0, "rate_limited": 0}

    def set_channel(self, channel: ChannelRecord) -> None:
        pair = frozenset((channel.participant1, channel.participant2))
        key = (channel.token_network, pair)
        self._channels[key] = channel
        self._dirty.add(channel.token_network)
        if channel.stage is ChannelStage.OPENED:
            for signer in pair:
                early = self._early.pop((channel.token_network, pair, signer), None)
                # Checked against the clock when it came; new now: pass it on.
                if early is not None and self.accept(early, early.timestamp):
                    self._released.append(early)

    def released(self) -> list[Announcement]:
        """Announcements kept aside that the chain now confirms (taken once): to pass on."""
        taken, self._released = self._released, []
        return taken

    def channel_count(self) -> int:
        """Public channels known (any state): a rise means new nodes to tell about ours."""
        return len(self._channels)

    def set_own(self, channels: Iterable[OwnChannel], fees: FeeSchedule) -> None:
        own = {(c.token_network, c.partner): c for c in channels}
        if own != self._own or fees != self._own_fees:
            self._dirty.update(c.token_network for c in own.values())
            self._dirty.update(c.token_network for c in self._own.values())
            self._own, self._own_fees = own, fees

    def accept(self, announcement: Announcement, now_ms: int) -> bool:
        """Record a checked announcement; True when it is new (pass it on), False when it
        is stale, rate-limited, foreign or about a channel the chain does not show open."""
        if announcement.chain_id != self.chain_id:
            self.stats["unknown_channel"] += 1
            return False
        pair = frozenset((announcement.signer, announcement.partner))
        if announcement.timestamp > now_ms + 60_000:  # a clock far ahead would pin it
            self.stats["stale"] += 1
            return False
        channel = self._channels.get((announcement.token_network, pair))
        if channel is None and len(pair) == 2:
            self._keep_early(announcement, pair)
        if channel is None or channel.stage is not ChannelStage.OPENED or len(pair) != 2:
            self.stats["unknown_channel"] += 1
            return False
        key = (announcement.token_network, announcement.signer, announcement.partner)
        last = self._announced.get(key)
        if last is not None:
            if announcement.timestamp <= last.timestamp:
                self.stats["stale"] += 1
                return False
            if announcement.timestamp - last.timestamp < self.min_interval_ms:
                self.stats["rate_limited"] += 1
                return False
        self._announced[key] = announcement
        self._dirty.add(announcement.token_network)
        self.stats["accepted"] += 1
        return True

    def _keep_early(self, announcement: Announcement, pair: frozenset[Address]) -> None:
        key = (announcement.token_network, pair, announcement.signer)
        kept = self._early.pop(key, None)
        if kept is not None and kept.timestamp >= announcement.timestamp:
            announcement = kept
        elif len(self._early) >= EARLY_LIMIT:
            del self._early[next(iter(self._early))]
        self._early[key] = announcement

    def changed(self) -> set[Address]:
        """Token networks whose graph changed since the last call."""
        dirty, self._dirty = self._dirty, set()
        return dirty

    def graph(self, token_network: Address) -> ChannelGraph:
        edges = []
        for (network, _), channel in self._channels.items():
            if network != token_network or channel.stage is not ChannelStage.OPENED:
                continue
            a, b = channel.participant1, channel.participant2
            cap_ab, fees_ab = self._side(channel, a, b)
            cap_ba, fees_ba = self._side(channel, b, a)
            edges.append(
                ChannelEdge(a, b, TokenAmount(cap_ab), TokenAmount(cap_ba), fees_ab, fees_ba)
            )
        return ChannelGraph.from_edges(edges)

    def _side(self, channel: ChannelRecord, me: Address, other: Address) -> tuple[int, FeeSchedule]:
        network = channel.token_network
        if me == self.address:
            own = self._own.get((network, other))
            if own is not None:
                return own.ours, self._own_fees
        if other == self.address:
            own = self._own.get((network, me))
            if own is not None:
                announced = self._announced.get((network, me, other))
                return own.theirs, announced.fees if announced else FeeSchedule()
        announced = self._announced.get((network, me, other))
        if announced is not None:
            return announced.capacity, announced.fees
        return channel.public_capacity(me), FeeSchedule()

    def announcements(self) -> Mapping[tuple[Address, Address, Address], Announcement]:
        return self._announced
