"""The off-chain messages two nodes exchange, as frozen dataclasses with their wire layout.

Belongs here: one class per message, its fields in wire order (`FIELDS`), its type byte,
and what its signature covers. Every message is signed; the signature is always the last
65 bytes on the wire and is not part of the signed body.

What a signature covers:
- balance-proof messages (`DirectTransfer`, `LockedTransfer`, `LockReturn`, `Unlock`,
  `LockExpired`, `TransferBatch`): an EIP-712 `BalanceProof` over the channel,
  generation, nonce, the balance hash of the sender's new (T, L, locksroot) and
  `additionalHash = keccak256(body)`. T, L and the locksroot are not on the wire: the
  receiver derives them from its copy of the channel plus the message, and a signature
  that does not verify against that derivation is rejected. This keeps every per-hop
  message under one 210-byte mesh frame and makes the one signature serve as message
  authentication and as the balance proof the contract accepts. `TransferBatch` is the
  one balance-proof message not bound to one frame: it folds up to `MAX_BATCH_PAYMENTS`
  payments into one signature, and the mesh fragments it end to end (docs/spec.md §9
  says how many entries fit one frame).
- withdraw and cooperative-settle messages: the EIP-712 `Withdraw` / `CooperativeSettle`
  struct itself, so the signature can go to the chain as it is.
- everything else: EIP-712 `Message(bytes32 bodyHash)` with `bodyHash = keccak256(body)`.
All in the domain of the token network the message names, so nothing signed for one
chain, network or channel generation verifies for another.

Does not belong here: byte encoding (`codec`), validation against channel state
(`channel`), or any I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar, Final

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

WIRE_VERSION: Final = 1
"""First byte of every message. A node refuses versions it does not know."""

MAX_MESSAGE_AMOUNT: Final = 2**96 - 1
"""Largest amount a message carries (a lock, a direct transfer, a target amount).

Deposits are capped below 2**91 per participant on chain, so no single transfer can
exceed 2**92; the cap keeps every amount within a 14-byte varint.
"""

PaymentId = int
"""A 64-bit payment identifier chosen by the initiator (fixed 8 bytes on the wire)."""

MAX_BATCH_PAYMENTS: Final = 255
"""Most payments one `TransferBatch` carries: its count is one byte on the wire.

The cap bounds what a receiver must parse and check before the single signature
verification (at most 5,712 bytes). At 255 entries the signature is about a sixth of a
batch's cost, the rest being per entry, so a larger cap would buy little throughput.
"""


class MessageType(enum.IntEnum):
    """The second byte of every message."""

    DIRECT_TRANSFER = 1
    LOCKED_TRANSFER = 2
    LOCK_RETURN = 3
    UNLOCK = 4
    LOCK_EXPIRED = 5
    SECRET_REQUEST = 6
    SECRET_REVEAL = 7
    PAYMENT_SECRET = 8
    WITHDRAW_REQUEST = 9
    WITHDRAW_CONFIRMATION = 10
    WITHDRAW_EXPIRED = 11
    COOP_SETTLE_REQUEST = 12
    COOP_SETTLE_RESPONSE = 13
    PROCESSED = 14
    TRANSFER_BATCH = 15
    COOP_SETTLE_REFUSED = 16


class Field(enum.Enum):
    """Wire encodings of a field."""

    ADDRESS = "address"  # 20 bytes
    BYTES32 = "bytes32"  # 32 bytes
    U8 = "u8"  # 1 byte
    U32 = "u32"  # 4 bytes big-endian
    U64 = "u64"  # 8 bytes big-endian
    VARINT64 = "varint64"  # minimal unsigned LEB128, at most 2**64 - 1 (10 bytes)
    AMOUNT = "amount"  # minimal unsigned LEB128, at most 2**96 - 1 (14 bytes)
    # A list: a u8 count in 1..MAX_BATCH_PAYMENTS, then that many `BatchEntry`s, each in
    # the order and encodings of `BatchEntry.FIELDS`.
    PAYMENTS = "payments"


class Signing(enum.Enum):
    """What the trailing signature of a message covers (see the module docstring)."""

    BALANCE_PROOF = "balance_proof"
    WITHDRAW = "withdraw"
    COOPERATIVE_SETTLE = "cooperative_settle"
    MESSAGE = "message"


class ReturnReason(enum.IntEnum):
    """Why a lock is given back (`LockReturn.reason`); the payer learns it at once."""

    NO_ROUTE = 1
    CAPACITY = 2
    FEE_TOO_HIGH = 3
    TARGET_OFFLINE = 4
    EXPIRY_TOO_SOON = 5
    REJECTED = 6
    OFFLINE_WINDOW = 7
    """The hop does not see the chain and would receive value too close to the deadline
    by which it (or a delegate) must reach the chain (docs/offline.md)."""


class CoopSettleRefusal(enum.IntEnum):
    """Why a partner will not co-sign a cooperative settle (`CoopSettleRefused.reason`).

    Each names what differs between the two views, so the requester can say why its close
    failed and when trying again may help.
    """

    PENDING_LOCKS = 1  # a lock is pending in the refuser's view (it must resolve first)
    BALANCES_DIFFER = 2  # the totals are not the refuser's balances: a payment in flight
    CHANNEL_NOT_OPEN = 3  # not open (or another generation) in the refuser's view
    OFFER_EXPIRED = 4  # the expiration is already past by the refuser's clock
    WITHDRAW_ABOVE_TOTAL = 5  # a pending withdraw exceeds its side's final total


@dataclass(frozen=True, slots=True)
class DirectTransfer:
    """Pays `amount` to the partner with no lock: T rises by `amount`."""

    TYPE: ClassVar[MessageType] = MessageType.DIRECT_TRANSFER
    SIGNING: ClassVar[Signing] = Signing.BALANCE_PROOF
    FIELDS: ClassVar[tuple[tuple[str, Field], ...]] = (
        ("token_network", Field.ADDRESS),
        ("generation", Field.U32),
        ("nonce", Field.VARINT64),
        ("payment_id", Field.U64),
        ("amount", Field.AMOUNT),
    )

    token_network: Address
    generation: Generation
    nonce: Nonce
    payment_id: PaymentId
    amount: TokenAmount
    signature: Signature


@dataclass(frozen=True, slots=True)
class LockedTransfer:
    """Adds a lock (expiration, amount, secrethash) towards the partner: L rises.

    `target` and `target_amount` tell a mediator where the payment goes and how much must
    arrive there, so it can choose the next hop and refuse when its fee would not fit.
    """

    TYPE: ClassVar[MessageType] = MessageType.LOCKED_TRANSFER
    SIGNING: ClassVar[Signing] = Signing.BALANCE_PROOF
    FIELDS: ClassVar[tuple[tuple[str, Field], ...]] = (
        ("token_network", Field.ADDRESS),
        ("generation", Field.U32),
        ("nonce", Field.VARINT64),
        ("payment_id", Field.U64),
        ("expiration", Field.VARINT64),
        ("amount", Field.AMOUNT),
        ("secrethash", Field.BYTES32),
        ("target", Field.ADDRESS),
        ("target_amount", Field.AMOUNT),
    )

    token_network: Address
    generation: Generation
    nonce: Nonce
    payment_id: PaymentId
    expiration: Timestamp
    amount: TokenAmount
    secrethash: SecretHash
    target: Address
    target_amount: TokenAmount
    signature: Signature


@dataclass(frozen=True, slots=True)
class LockReturn:
    """Gives a received lock back early: a lock towards the payer mirroring it exactly.

    The payee of a lock it cannot forward (or accept) locks the same amount, expiration and
    secrethash back towards its payer. The two locks pay each other in every outcome
    (either the secret is registered in time and both pay, or neither does), so the payer
    may count the amount as spendable again at once and retry elsewhere, and no contract
    support is needed. `failed_hop` and `reason` say who failed and why.
    """

    TYPE: ClassVar[MessageType] = MessageType.LOCK_RETURN
    SIGNING: ClassVar[Signing] = Signing.BALANCE_PROOF
    FIELDS: ClassVar[tuple[tuple[str, Field], ...]] = (
        ("token_network", Field.ADDRESS),
        ("generation", Field.U32),
        ("nonce", Field.VARINT64),
        ("payment_id", Field.U64),
        ("expiration", Field.VARINT64),
        ("amount", Field.AMOUNT),
        ("secrethash", Field.BYTES32),
        ("reason", Field.U8),
        ("failed_hop", Field.ADDRESS),
    )

    token_network: Address
    generation: Generation
    nonce: Nonce
    payment_id: PaymentId
    expiration: Timestamp
    amount: TokenAmount
    secrethash: SecretHash
    reason: ReturnReason
    failed_hop: Address
    signature: Signature


@dataclass(frozen=True, slots=True)
class Unlock:
    """Settles the lock of `sha256(secret)` off chain: T rises by its amount, L falls."""

    TYPE: ClassVar[MessageType] = MessageType.UNLOCK
    SIGNING: ClassVar[Signing] = Signing.BALANCE_PROOF
    FIELDS: ClassVar[tuple[tuple[str, Field], ...]] = (
        ("token_network", Field.ADDRESS),
        ("generation", Field.U32),
        ("nonce", Field.VARINT64),
        ("payment_id", Field.U64),
        ("secret", Field.BYTES32),
    )

    token_network: Address
    generation: Generation
    nonce: Nonce
    payment_id: PaymentId
    secret: Secret
    signature: Signature


@dataclass(frozen=True, slots=True)
class LockExpired:
    """Removes the expired lock of `secrethash`: L falls, T is unchanged."""

    TYPE: ClassVar[MessageType] = MessageType.LOCK_EXPIRED
    SIGNING: ClassVar[Signing] = Signing.BALANCE_PROOF
    FIELDS: ClassVar[tuple[tuple[str, Field], ...]] = (
        ("token_network", Field.ADDRESS),
        ("generation", Field.U32),
        ("nonce", Field.VARINT64),
        ("secrethash", Field.BYTES32),
    )

    token_network: Address
    generation: Generation
    nonce: Nonce
    secrethash: SecretHash
    signature: Signature


@dataclass(frozen=True, slots=True)
class SecretRequest:
    """The target asks the initiator for the secret of a payment it has a lock for."""

    TYPE: ClassVar[MessageType] = MessageType.SECRET_REQUEST
    SIGNING: ClassVar[Signing] = Signing.MESSAGE
    FIELDS: ClassVar[tuple[tuple[str, Field], ...]] = (
        ("token_network", Field.ADDRESS),
        ("payment_id", Field.U64),
        ("secrethash", Field.BYTES32),
        ("amount", Field.AMOUNT),
        ("expiration", Field.VARINT64),
    )

    token_network: Address
    payment_id: PaymentId
    secrethash: SecretHash
    amount: TokenAmount
    expiration: Timestamp
    signature: Signature


@dataclass(frozen=True, slots=True)
class SecretReveal:
    """Tells a payer (or the target) the secret, so it can unlock (or claim)."""

    TYPE: ClassVar[MessageType] = MessageType.SECRET_REVEAL
    SIGNING: ClassVar[Signing] = Signing.MESSAGE
    FIELDS: ClassVar[tuple[tuple[str, Field], ...]] = (
        ("token_network", Field.ADDRESS),
        ("secret", Field.BYTES32),
    )

    token_network: Address
    secret: Secret
    signature: Signature


NO_SECRET: Final = Secret(bytes(32))
"""`PaymentSecret.secret` of an announcement: the target asks with `SecretRequest`."""


@dataclass(frozen=True, slots=True)
class PaymentSecret:
    """The initiator's secret for the target, sent end to end beside the first lock.

    It travels encrypted to the target (the mesh's end-to-end envelope), so the target
    can claim as soon as the lock arrives, saving the SecretRequest round trip. It also
    names the amount the target must receive, so a mediator cannot shortchange it.
    """

    TYPE: ClassVar[MessageType] = MessageType.PAYMENT_SECRET
    SIGNING: ClassVar[Signing] = Signing.MESSAGE
    FIELDS: ClassVar[tuple[tuple[str, Field], ...]] = (
        ("token_network", Field.ADDRESS),
        ("payment_id", Field.U64),
        ("secret", Field.BYTES32),
        ("amount", Field.AMOUNT),
    )

    token_network: Address
    payment_id: PaymentId
    secret: Secret
    amount: TokenAmount
    signature: Signature


@dataclass(frozen=True, slots=True)
class WithdrawRequest:
    """The sender asks its partner to co-sign raising its total withdraw."""

    TYPE: ClassVar[MessageType] = MessageType.WITHDRAW_REQUEST
    SIGNING: ClassVar[Signing] = Signing.WITHDRAW
    FIELDS: ClassVar[tuple[tuple[str, Field], ...]] = (
        ("token_network", Field.ADDRESS),
        ("generation", Field.U32),
        ("participant", Field.ADDRESS),
        ("total_withdraw", Field.AMOUNT),
        ("expiration", Field.VARINT64),
    )

    token_network: Address
    generation: Generation
    participant: Address
    total_withdraw: TokenAmount
    expiration: Timestamp
    signature: Signature


@dataclass(frozen=True, slots=True)
class WithdrawConfirmation:
    """The partner's signature of the same `Withdraw` struct."""

    TYPE: ClassVar[MessageType] = MessageType.WITHDRAW_CONFIRMATION
    SIGNING: ClassVar[Signing] = Signing.WITHDRAW
    FIELDS: ClassVar[tuple[tuple[str, Field], ...]] = WithdrawRequest.FIELDS

    token_network: Address
    generation: Generation
    participant: Address
    total_withdraw: TokenAmount
    expiration: Timestamp
    signature: Signature


@dataclass(frozen=True, slots=True)
class WithdrawExpired:
    """The requester tells its partner that a withdraw request expired unused."""

    TYPE: ClassVar[MessageType] = MessageType.WITHDRAW_EXPIRED
    SIGNING: ClassVar[Signing] = Signing.MESSAGE
    FIELDS: ClassVar[tuple[tuple[str, Field], ...]] = WithdrawRequest.FIELDS

    token_network: Address
    generation: Generation
    participant: Address
    total_withdraw: TokenAmount
    expiration: Timestamp
    signature: Signature


@dataclass(frozen=True, slots=True)
class CoopSettleRequest:
    """Proposes to close and settle with these final total withdraws (ordered pair)."""

    TYPE: ClassVar[MessageType] = MessageType.COOP_SETTLE_REQUEST
    SIGNING: ClassVar[Signing] = Signing.COOPERATIVE_SETTLE
    FIELDS: ClassVar[tuple[tuple[str, Field], ...]] = (
        ("token_network", Field.ADDRESS),
        ("generation", Field.U32),
        ("total_withdraw1", Field.AMOUNT),
        ("total_withdraw2", Field.AMOUNT),
        ("expiration", Field.VARINT64),
    )

    token_network: Address
    generation: Generation
    total_withdraw1: TokenAmount
    total_withdraw2: TokenAmount
    expiration: Timestamp
    signature: Signature


@dataclass(frozen=True, slots=True)
class CoopSettleResponse:
    """The partner's signature of the same `CooperativeSettle` struct."""

    TYPE: ClassVar[MessageType] = MessageType.COOP_SETTLE_RESPONSE
    SIGNING: ClassVar[Signing] = Signing.COOPERATIVE_SETTLE
    FIELDS: ClassVar[tuple[tuple[str, Field], ...]] = CoopSettleRequest.FIELDS

    token_network: Address
    generation: Generation
    total_withdraw1: TokenAmount
    total_withdraw2: TokenAmount
    expiration: Timestamp
    signature: Signature


@dataclass(frozen=True, slots=True)
class Processed:
    """Acknowledges that the message with `message_hash` was received and applied."""

    TYPE: ClassVar[MessageType] = MessageType.PROCESSED
    SIGNING: ClassVar[Signing] = Signing.MESSAGE
    FIELDS: ClassVar[tuple[tuple[str, Field], ...]] = (
        ("token_network", Field.ADDRESS),
        ("message_hash", Field.BYTES32),
    )

    token_network: Address
    message_hash: bytes
    signature: Signature


@dataclass(frozen=True, slots=True)
class BatchEntry:
    """One payment of a `TransferBatch`: its id and the amount it pays."""

    FIELDS: ClassVar[tuple[tuple[str, Field], ...]] = (
        ("payment_id", Field.U64),
        ("amount", Field.AMOUNT),
    )

    payment_id: PaymentId
    amount: TokenAmount


@dataclass(frozen=True, slots=True)
class TransferBatch:
    """Pays several payments to the partner with no lock: T rises by the sum of `payments`.

    One signature (one balance proof) covers the whole batch, so a sender with payments
    queued for the same partner is not limited to one signature per payment. The entries
    are in the signed body (`additionalHash`), so the receiver can attribute and prove each
    payment. The channel rules want 1..`MAX_BATCH_PAYMENTS` entries, each amount positive
    and the payment ids distinct; the codec checks only the count.
    """

    TYPE: ClassVar[MessageType] = MessageType.TRANSFER_BATCH
    SIGNING: ClassVar[Signing] = Signing.BALANCE_PROOF
    FIELDS: ClassVar[tuple[tuple[str, Field], ...]] = (
        ("token_network", Field.ADDRESS),
        ("generation", Field.U32),
        ("nonce", Field.VARINT64),
        ("payments", Field.PAYMENTS),
    )

    token_network: Address
    generation: Generation
    nonce: Nonce
    payments: tuple[BatchEntry, ...]
    signature: Signature


@dataclass(frozen=True, slots=True)
class CoopSettleRefused:
    """The partner will not co-sign the `CooperativeSettle` these fields name, and why.

    It repeats the offer's fields, so the requester matches it to its own offer and ignores
    a refusal of an older one. It is a plain signed message, not a promise: the refuser
    still holds the requester's signature of the offer until it expires.
    """

    TYPE: ClassVar[MessageType] = MessageType.COOP_SETTLE_REFUSED
    SIGNING: ClassVar[Signing] = Signing.MESSAGE
    FIELDS: ClassVar[tuple[tuple[str, Field], ...]] = (
        *CoopSettleRequest.FIELDS,
        ("reason", Field.U8),
    )

    token_network: Address
    generation: Generation
    total_withdraw1: TokenAmount
    total_withdraw2: TokenAmount
    expiration: Timestamp
    reason: CoopSettleRefusal
    signature: Signature


Message = (
    DirectTransfer
    | LockedTransfer
    | LockReturn
    | Unlock
    | LockExpired
    | SecretRequest
    | SecretReveal
    | PaymentSecret
    | WithdrawRequest
    | WithdrawConfirmation
    | WithdrawExpired
    | CoopSettleRequest
    | CoopSettleResponse
    | Processed
    | TransferBatch
    | CoopSettleRefused
)
"""Every message of the protocol."""

MESSAGE_CLASSES: Final[dict[MessageType, type[Message]]] = {
    cls.TYPE: cls
    for cls in (
        DirectTransfer,
        LockedTransfer,
        LockReturn,
        Unlock,
        LockExpired,
        SecretRequest,
        SecretReveal,
        PaymentSecret,
        WithdrawRequest,
        WithdrawConfirmation,
        WithdrawExpired,
        CoopSettleRequest,
        CoopSettleResponse,
        Processed,
        TransferBatch,
        CoopSettleRefused,
    )
}

ENUM_FIELDS: Final[dict[type[Message], tuple[str, type[enum.IntEnum]]]] = {
    LockReturn: ("reason", ReturnReason),
    CoopSettleRefused: ("reason", CoopSettleRefusal),
}
"""The `Field.U8` fields that carry an enum: the codec refuses a value the enum lacks."""
