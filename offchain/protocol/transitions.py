"""The inputs a node's protocol core takes and the effects it returns (DESIGN.md §3).

Belongs here: the frozen input and effect values of `node.transition`, named by direction:
`Action*` (the local user or runtime), `Receive*` (a peer's message), `Chain*` (a
confirmed log), `Tick` (time passes); `Send*` (a message to a peer), `ContractSend*` (a
transaction), `Event*` (a notification for the user or the runtime).

Every input carries `now` (seconds, the device clock): the core has no clock of its own.

Does not belong here: any behaviour (`node`, the role modules), the state (`state`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from offchain.protocol.cooperative import SignedCoopSettle, SignedWithdraw
from offchain.protocol.locks import Lock
from offchain.protocol.messages import BatchEntry, Message, MessageType, PaymentId
from offchain.protocol.routes import ChannelGraph
from offchain.protocol.types import (
    Address,
    Generation,
    Nonce,
    Secret,
    SecretHash,
    Signature,
    Timestamp,
    TokenAmount,
)

# --- inputs -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActionPay:
    """Pay `amount` to `target` in `token_network`.

    `secret`: the payment's secret (random, chosen by the runtime), or None when the
    target holds it (pay on delivery, swaps): then `secrethash` alone is used and the
    target reveals the secret when the lock reaches it. `reveal_early`: send the secret
    end to end with the first lock (saves a round trip); otherwise announce the payment
    and reveal the secret only when the target asks for it with a `SecretRequest`, after
    its lock arrived. `max_fee`: the most the initiator pays in fees (None: no budget).
    """

    now: Timestamp
    payment_id: PaymentId
    token_network: Address
    target: Address
    amount: TokenAmount
    secrethash: SecretHash
    secret: Secret | None = None
    max_fee: TokenAmount | None = None
    reveal_early: bool = True


@dataclass(frozen=True, slots=True)
class ActionPayDirect:
    """Pay the partner directly, no lock: one payment (`DirectTransfer`) or several queued
    ones folded into one balance-proof update (`TransferBatch`, one signature)."""

    now: Timestamp
    token_network: Address
    partner: Address
    payments: tuple[BatchEntry, ...]


@dataclass(frozen=True, slots=True)
class ActionExpectPayment:
    """An invoice: accept locks of `secrethash` worth at least `amount` and claim them."""

    now: Timestamp
    token_network: Address
    secret: Secret
    amount: TokenAmount


@dataclass(frozen=True, slots=True)
class ActionUpdateGraph:
    """The channel graph of `token_network` that route queries use (learned elsewhere)."""

    now: Timestamp
    token_network: Address
    graph: ChannelGraph


@dataclass(frozen=True, slots=True)
class ActionSetUnreachable:
    """The peers the transport cannot reach now (replaces the previous set)."""

    now: Timestamp
    addresses: frozenset[Address]


@dataclass(frozen=True, slots=True)
class ActionSetChainView:
    """What the node sees of the chain now (replaces the previous view; docs/offline.md).

    `view_time`: None while the node sees the chain (its endpoint answers and its newest
    block is recent): no safety window applies. Otherwise the chain time (a block's
    timestamp) up to which the node has seen every log of its channels: any close it does
    not know of happened at or after it. `delegated`: per channel (token network,
    partner), the view time a delegate reported when it acknowledged our latest proof
    from that partner.
    """

    now: Timestamp
    view_time: Timestamp | None
    delegated: Mapping[tuple[Address, Address], Timestamp] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ActionCloseChannel:
    """Close the channel with `partner` unilaterally, with the partner's latest proof."""

    now: Timestamp
    token_network: Address
    partner: Address


@dataclass(frozen=True, slots=True)
class ActionWithdraw:
    """Raise our total withdraw in the channel with `partner`; the offer lapses at `expiration`."""

    now: Timestamp
    token_network: Address
    partner: Address
    total_withdraw: TokenAmount
    expiration: Timestamp


@dataclass(frozen=True, slots=True)
class ActionCoopSettle:
    """Offer the partner to close and settle now, each taking its balance."""

    now: Timestamp
    token_network: Address
    partner: Address
    expiration: Timestamp


@dataclass(frozen=True, slots=True)
class ReceiveMessage:
    """A decoded message from `sender` (the origin the transport authenticated)."""

    now: Timestamp
    sender: Address
    message: Message


@dataclass(frozen=True, slots=True)
class ChainChannelOpened:
    """A channel with `partner` was opened (its `generation`) with this settle window."""

    now: Timestamp
    token_network: Address
    partner: Address
    generation: Generation
    settle_window: int


@dataclass(frozen=True, slots=True)
class ChainDeposit:
    """`participant`'s total deposit in the channel with `partner` is now `total`."""

    now: Timestamp
    token_network: Address
    partner: Address
    participant: Address
    total: TokenAmount


@dataclass(frozen=True, slots=True)
class ChainWithdraw:
    """`participant`'s total withdraw in the channel with `partner` is now `total`."""

    now: Timestamp
    token_network: Address
    partner: Address
    participant: Address
    total: TokenAmount


@dataclass(frozen=True, slots=True)
class ChainChannelClosed:
    """The channel with `partner` was closed by `closer`."""

    now: Timestamp
    token_network: Address
    partner: Address
    closer: Address


@dataclass(frozen=True, slots=True)
class ChainChannelSettled:
    """The channel with `partner` was settled: its deposits were paid out."""

    now: Timestamp
    token_network: Address
    partner: Address


@dataclass(frozen=True, slots=True)
class ChainSecretRegistered:
    """`secret` was registered in the secret registry at block time `registered_at`."""

    now: Timestamp
    secret: Secret
    secrethash: SecretHash
    registered_at: Timestamp


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed; expiries and deadlines are checked."""

    now: Timestamp


Input = (
    ActionPay
    | ActionPayDirect
    | ActionExpectPayment
    | ActionUpdateGraph
    | ActionSetUnreachable
    | ActionSetChainView
    | ActionCloseChannel
    | ActionWithdraw
    | ActionCoopSettle
    | ReceiveMessage
    | ChainChannelOpened
    | ChainDeposit
    | ChainWithdraw
    | ChainChannelClosed
    | ChainChannelSettled
    | ChainSecretRegistered
    | Tick
)

# --- effects ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendMessage:
    """Send a signed message to `recipient` (the transport retries until it is acknowledged).

    `end_to_end`: the recipient is not a channel partner (a `PaymentSecret` to the target,
    a `SecretRequest` to the initiator); the transport must encrypt it to the recipient.
    """

    recipient: Address
    message: Message
    end_to_end: bool = False


@dataclass(frozen=True, slots=True)
class ContractSendSecretRegister:
    """Register `secret` on chain; useless after `deadline` (the lock's expiration)."""

    secret: Secret
    deadline: Timestamp


@dataclass(frozen=True, slots=True)
class ContractSendClose:
    """Close the channel with `partner`, submitting its latest balance proof (if any)."""

    token_network: Address
    partner: Address
    proof: PartnerProof | None


@dataclass(frozen=True, slots=True)
class ContractSendUpdate:
    """The partner closed: submit its latest balance proof before the settle deadline."""

    token_network: Address
    partner: Address
    proof: PartnerProof


@dataclass(frozen=True, slots=True)
class ContractSendUnlock:
    """After settle: pay out the tokens the contract retained for one side's pending locks.

    `locks` are ALL that side's pending locks, in order (the contract needs every one to
    rebuild the locksroot); it pays the registered ones to the receiver and returns the
    others to the sender. `ours` False: the partner's locks (we claim those registered
    in time); True: our own locks, when none of them can be claimed by the partner (so
    the partner has no reason to call it, and our tokens would stay in the contract)."""

    token_network: Address
    partner: Address
    locks: tuple[Lock, ...]
    ours: bool = False


@dataclass(frozen=True, slots=True)
class ContractSendWithdraw:
    """Both signatures of our withdraw: submit `set_total_withdraw` before it expires."""

    token_network: Address
    partner: Address
    withdraw: SignedWithdraw


@dataclass(frozen=True, slots=True)
class ContractSendCoopSettle:
    """Both signatures of a cooperative settle: submit it before it expires."""

    token_network: Address
    partner: Address
    settle: SignedCoopSettle


@dataclass(frozen=True, slots=True)
class PartnerProof:
    """What the contract needs of a partner's balance proof."""

    nonce: Nonce
    transferred: TokenAmount
    locked: TokenAmount
    locks: tuple[Lock, ...]
    additional_hash: bytes
    signature: Signature


class FailureReason(enum.Enum):
    """Why a payment failed (terminal)."""

    NO_ROUTE = "no_route"
    CAPACITY = "capacity"
    FEE_TOO_HIGH = "fee_too_high"
    TARGET_OFFLINE = "target_offline"
    LOCK_EXPIRED = "lock_expired"
    REJECTED = "rejected"
    """Rejected by the hop named in `failed_hop` (amount, expiry or a refused lock)."""
    OFFLINE_WINDOW = "offline_window"
    """The hop in `failed_hop` does not see the chain and its safety window for receiving
    more value is closed (docs/offline.md); other routes were tried first."""


@dataclass(frozen=True, slots=True)
class EventPaymentSucceeded:
    """The initiator's payment reached its target: the first hop was unlocked."""

    payment_id: PaymentId
    target: Address
    amount: TokenAmount
    fee: TokenAmount
    secret: Secret


@dataclass(frozen=True, slots=True)
class EventPaymentFailed:
    """The initiator's payment ended without paying: `reason`, and who failed if known."""

    payment_id: PaymentId
    reason: FailureReason
    failed_hop: Address | None


@dataclass(frozen=True, slots=True)
class EventDirectPaymentSent:
    """A direct payment left in a signed balance proof: the partner is paid."""

    token_network: Address
    payment_id: PaymentId
    partner: Address
    amount: TokenAmount


@dataclass(frozen=True, slots=True)
class EventPaymentReceived:
    """As target: the payer unlocked `amount` for `payment_id` (it is ours off chain).

    `payer` is the partner that paid us (the last hop); `initiator` the node that started
    the payment when we know it: the sender of a direct transfer, or the sender of a
    `PaymentSecret` whose secret is the lock's (only the initiator knew it). Payment ids
    are unique per initiator only, so (initiator, payment_id) names a received payment.

    `outside_window`: a direct payment that came while we do not see the chain and our
    safety window for this partner is closed (docs/offline.md): its proof is kept (a
    refused proof would stall the partner's next ones), but it counts only if it reaches
    the chain before the horizon; the merchant must not treat it as paid until then.
    """

    token_network: Address
    payment_id: PaymentId
    payer: Address
    amount: TokenAmount
    initiator: Address | None = None
    outside_window: bool = False


@dataclass(frozen=True, slots=True)
class EventMediated:
    """As mediator: both locks of a payment resolved; `fee` is what we kept (may be 0)."""

    payment_id: PaymentId
    payer: Address
    payee: Address | None
    fee: int


@dataclass(frozen=True, slots=True)
class EventInvalidReceived:
    """A peer's message was refused; nothing changed."""

    sender: Address
    message_type: MessageType
    reason: str


@dataclass(frozen=True, slots=True)
class EventActionRefused:
    """A local action could not be carried out (`reason`); nothing changed."""

    reason: str


@dataclass(frozen=True, slots=True)
class EventCoopSettleRefused:
    """The partner refused our standing cooperative-settle offer (`CoopSettleRefused`).

    The offer is dropped and we may pay over the channel again; `reason` says why the
    partner would not sign, from its side (`cooperative.REFUSAL_TEXT`).
    """

    token_network: Address
    partner: Address
    reason: str


Effect = (
    SendMessage
    | ContractSendSecretRegister
    | ContractSendClose
    | ContractSendUpdate
    | ContractSendUnlock
    | ContractSendWithdraw
    | ContractSendCoopSettle
    | EventPaymentSucceeded
    | EventPaymentFailed
    | EventPaymentReceived
    | EventDirectPaymentSent
    | EventMediated
    | EventInvalidReceived
    | EventActionRefused
    | EventCoopSettleRefused
)
