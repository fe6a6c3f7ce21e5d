"""The whole protocol state of one node, and of each payment it takes part in.

Belongs here: `NodeState` (channels, payments by role, known secrets, settings) and the
per-role records `InitiatorState`, `MediatorState`, `TargetState` with their status
enums. All frozen; `node.transition` returns new ones. The state holds no private key:
the key is an argument of every transition, so a persisted state never contains it.

Does not belong here: behaviour (`node`, `initiator`, `mediator`, `target`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from offchain.protocol.channel import NO_TIME, BalanceProofMessage, ChannelState
from offchain.protocol.fees import FeeSchedule
from offchain.protocol.messages import (
    CoopSettleRequest,
    PaymentId,
    ReturnReason,
    WithdrawRequest,
)
from offchain.protocol.routes import ChannelGraph
from offchain.protocol.transitions import FailureReason
from offchain.protocol.types import Address, Nonce, Secret, SecretHash, Timestamp, TokenAmount

ChannelKey = tuple[Address, Address]
"""(token network, partner)."""
LockKey = tuple[Address, Address, SecretHash]
"""(token network, payer, secrethash): one incoming lock, as mediator or target."""

EMPTY: Final[Mapping[object, object]] = MappingProxyType({})

ZERO: Final = TokenAmount(0)

MAX_EARLY_MESSAGES: Final = 64
"""Balance proofs kept per partner that arrived before the one they follow (reordering)."""


@dataclass(frozen=True, slots=True)
class Settings:
    """What a node chooses; every duration in seconds.

    `reveal_timeout`: set on every channel (see `ChannelState`). `lock_timeout`: how far
    ahead the initiator sets a payment's one expiration; it must leave each hop
    `reveal_timeout + hop_margin` and stay within the settle window. `hop_margin`: the
    time a mediator keeps for the hops after it (delivery over the mesh) beyond its own
    reveal timeout. `clock_tolerance`: how far the partner's clock may be ahead of ours
    (and the chain's clock from ours); a lock is removed only that long after its
    expiration. `max_attempts`: routes an initiator tries before it gives up.

    While the node does not see the chain (docs/offline.md): `submit_margin` is the time
    a transaction needs to be included once sent, so every deadline is stated that much
    (and `clock_tolerance`) ahead of the chain's limit; `offline_min_lead` is the least
    time that must be left before the earliest such deadline for the node to receive more
    value from a partner.
    """

    reveal_timeout: int = 60
    lock_timeout: int = 600
    hop_margin: int = 20
    clock_tolerance: int = 5
    max_attempts: int = 3
    fees: FeeSchedule = field(default_factory=FeeSchedule)
    submit_margin: int = 30
    offline_min_lead: int = 120


class InitiatorStatus(enum.Enum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class InitiatorState:
    """A payment we make. `hops` are the first hops tried, in order; the last is current."""

    payment_id: PaymentId
    token_network: Address
    target: Address
    amount: TokenAmount
    secrethash: SecretHash
    secret: Secret | None
    expiration: Timestamp
    max_fee: TokenAmount | None
    reveal_early: bool
    hops: tuple[Address, ...] = ()
    sent: TokenAmount = ZERO
    failed_nodes: frozenset[Address] = frozenset()
    status: InitiatorStatus = InitiatorStatus.PENDING
    reason: FailureReason | None = None
    failed_hop: Address | None = None


class MediatorStatus(enum.Enum):
    FORWARDED = "forwarded"
    """A lock towards `payee` is pending."""
    RETURNED = "returned"
    """We gave the payer's lock back; the pair expires."""
    STUCK = "stuck"
    """We could neither forward nor give it back: it waits for its expiry."""


@dataclass(frozen=True, slots=True)
class MediatorState:
    """A payment we forward: the payer's lock and the one we sent for it."""

    token_network: Address
    payer: Address
    secrethash: SecretHash
    payment_id: PaymentId
    target: Address
    target_amount: TokenAmount
    incoming: TokenAmount
    expiration: Timestamp
    status: MediatorStatus
    payee: Address | None = None
    outgoing: TokenAmount = ZERO
    tried: frozenset[Address] = frozenset()
    paid_in: bool = False
    """The payer unlocked its lock to us."""
    paid_out: bool = False
    """We unlocked our lock to the payee."""
    revealed: bool = False
    """We told the payer the secret."""
    repaid: bool = False
    """We had given the payer's lock back and paid the mirror when it was unlocked."""


class TargetStatus(enum.Enum):
    WAITING_SECRET = "waiting_secret"
    REQUESTED = "requested"
    """We asked the initiator for the secret (`SecretRequest`)."""
    REVEALED = "revealed"
    PAID = "paid"
    RETURNED = "returned"


@dataclass(frozen=True, slots=True)
class TargetState:
    """A lock for us as target."""

    token_network: Address
    payer: Address
    secrethash: SecretHash
    payment_id: PaymentId
    amount: TokenAmount
    expiration: Timestamp
    status: TargetStatus


@dataclass(frozen=True, slots=True)
class Announcement:
    """A `PaymentSecret` received as target: who pays, how much must arrive, the secret.

    `secret` is None for an announcement without the secret (ask with `SecretRequest`).
    `received_at`: when it came; one no lock ever followed is forgotten once any such
    lock would have expired (`lock_timeout + clock_tolerance` later).
    """

    initiator: Address
    token_network: Address
    amount: TokenAmount
    secret: Secret | None
    received_at: Timestamp = NO_TIME


@dataclass(frozen=True, slots=True)
class NodeState:
    """Everything the protocol core of one node knows; persisted after every transition."""

    address: Address
    chain_id: int
    settings: Settings = field(default_factory=Settings)
    channels: Mapping[ChannelKey, ChannelState] = field(default_factory=dict)
    graphs: Mapping[Address, ChannelGraph] = field(default_factory=dict)
    unreachable: frozenset[Address] = frozenset()
    initiators: Mapping[PaymentId, InitiatorState] = field(default_factory=dict)
    mediators: Mapping[LockKey, MediatorState] = field(default_factory=dict)
    targets: Mapping[LockKey, TargetState] = field(default_factory=dict)
    announcements: Mapping[PaymentId, Announcement] = field(default_factory=dict)
    invoices: Mapping[SecretHash, tuple[Secret, TokenAmount]] = field(default_factory=dict)
    secrets: Mapping[SecretHash, Secret] = field(default_factory=dict)
    """Secrets we know and may use to claim (revealed to us by a payee or registered)."""
    registered: Mapping[SecretHash, Timestamp] = field(default_factory=dict)
    """Secrets registered on chain, with their registration time."""
    registering: frozenset[SecretHash] = frozenset()
    """Secrets we asked the chain to register (once each)."""
    early: Mapping[ChannelKey, Mapping[Nonce, BalanceProofMessage]] = field(default_factory=dict)
    """Balance proofs from a partner that arrived before their predecessor."""
    withdraws: Mapping[ChannelKey, WithdrawRequest] = field(default_factory=dict)
    """Our withdraw requests, until they land on chain or expire."""
    withdraws_signed: frozenset[ChannelKey] = frozenset()
    """Those of `withdraws` the partner co-signed (sent to the chain once)."""
    coop_offers: Mapping[ChannelKey, CoopSettleRequest] = field(default_factory=dict)
    """Our cooperative-settle offers waiting for the partner's signature or refusal, until
    they expire: no new payments of ours there meanwhile."""
    settling: Mapping[ChannelKey, Timestamp] = field(default_factory=dict)
    """Channels with a cooperative settle signed by both, until its (latest) expiration:
    no new payments there, or the signed totals would no longer be the balances."""
    view_time: Timestamp | None = None
    """None while the node sees the chain; otherwise the chain time up to which it has
    seen every log of its channels (`ActionSetChainView`, docs/offline.md)."""
    delegated: Mapping[ChannelKey, Timestamp] = field(default_factory=dict)
    """Per channel, the view time of a delegate that holds our latest proof from the
    partner (it will correct a close with an older one)."""


def return_to_failure(reason: ReturnReason) -> FailureReason:
    """The payment failure a `LockReturn` reason maps to."""
    return {
        ReturnReason.NO_ROUTE: FailureReason.NO_ROUTE,
        ReturnReason.CAPACITY: FailureReason.CAPACITY,
        ReturnReason.FEE_TOO_HIGH: FailureReason.FEE_TOO_HIGH,
        ReturnReason.TARGET_OFFLINE: FailureReason.TARGET_OFFLINE,
        ReturnReason.EXPIRY_TOO_SOON: FailureReason.LOCK_EXPIRED,
        ReturnReason.REJECTED: FailureReason.REJECTED,
        ReturnReason.OFFLINE_WINDOW: FailureReason.OFFLINE_WINDOW,
    }[reason]
