"""The small service interface the HTTP API (and through it the CLI) uses to drive a node.

Belongs here: ``NodeService``, a ``typing.Protocol`` of what a running node offers its
local user, and the plain frozen values it returns (``NodeStatus``, ``ChannelInfo``,
``PaymentInfo``, ...) and the one error type it raises (``ServiceError``, with a stable
code). Values are binary inside (20-byte addresses, int amounts); hex and decimal strings
are the API's business, at its edge.

Does not belong here: HTTP (``offchain.api``), how the node does any of it
(``offchain.node.runtime``), protocol rules (``offchain.protocol``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Protocol

Address = bytes
"""20 raw bytes."""


class ErrorCode(enum.Enum):
    """Stable error codes: the API returns them as ``{"error": {"code": ..., ...}}``."""

    INVALID_ARGUMENT = "invalid_argument"  # 400: a value out of range or malformed
    NOT_FOUND = "not_found"  # 404: no such channel, payment, token
    CONFLICT = "conflict"  # 409: the channel's state does not allow it (closed, pending)
    AMBIGUOUS = "ambiguous"  # 409: a payment id that names several payments (sent, received)
    INSUFFICIENT_FUNDS = "insufficient_funds"  # 409: on chain (deposit) or in a channel
    NO_ROUTE = "no_route"  # 409: no route with the capacity and fee budget asked
    CHAIN_UNAVAILABLE = "chain_unavailable"  # 503: the RPC endpoint does not answer
    TRANSACTION_FAILED = "transaction_failed"  # 502: a transaction reverted or was dropped
    TIMEOUT = "timeout"  # 504: a wait ran out (the operation goes on)
    UNAUTHORIZED = "unauthorized"  # 401: missing or wrong bearer token (API only)
    METHOD_NOT_ALLOWED = "method_not_allowed"  # 405: no such method on that path (API only)
    PAYLOAD_TOO_LARGE = "payload_too_large"  # 413: request body over the API's limit (API only)
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"  # 415: a body that is not JSON (API only)
    INTERNAL = "internal"  # 500: our bug; the message says where to look


class ServiceError(Exception):
    """An operation the node refused or could not do; ``code`` is stable, ``message`` human."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class NodeStatus:
    address: Address
    chain_id: int
    synced: bool  # the chain follower has caught up to the confirmed head
    chain_reachable: bool
    latest_block: int  # newest block seen on the endpoint (0: never reached)
    confirmed_block: int  # newest block whose logs the node has applied
    blind_since: float | None  # Unix time the chain was last seen, when it is not seen now
    peers: int  # mesh neighbours with a link up
    version: str
    blind_for_s: float | None = None  # seconds since ``blind_since`` (None: sees the chain)
    view_time: int | None = None  # chain time up to which every log of ours is applied
    next_deadline: float | None = None  # Unix time (device) of the earliest deadline to act by
    next_deadline_what: str | None = None  # what it is for (``DeadlineInfo.what``)


@dataclass(frozen=True, slots=True)
class TokenInfo:
    token: Address
    token_network: Address
    symbol: str
    decimals: int


class ChannelStatus(enum.Enum):
    OPENING = "opening"  # our open transaction is not confirmed yet
    OPEN = "open"
    CLOSING = "closing"  # our close transaction is not confirmed yet
    CLOSED = "closed"  # closed on chain, settle window running
    SETTLEABLE = "settleable"  # settle window over, settle not confirmed yet
    SETTLED = "settled"


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    token: Address
    token_network: Address
    partner: Address
    channel_id: bytes
    generation: int
    status: ChannelStatus
    settle_window: int  # seconds
    settle_deadline: int | None  # Unix time, once closed
    our_deposit: int
    partner_deposit: int
    our_withdrawn: int
    partner_withdrawn: int
    our_balance: int  # what we would get at settle now, locks excluded
    partner_balance: int
    our_locked: int  # in our pending outgoing locks
    partner_locked: int
    spendable: int  # what we can send now


class PaymentDirection(enum.Enum):
    SENT = "sent"
    RECEIVED = "received"


class PaymentStatus(enum.Enum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


NO_HASHLOCK: Final = bytes(32)
"""``PaymentInfo.secrethash`` of a payment without a hashlock (a direct transfer, or one
received whose lock the node did not record): 32 bytes like every secrethash, and one no
secret hashes to, so it never matches a real lock."""


class Coverage(enum.Enum):
    """Who will put a proof (or a secret) on chain in time if it must be."""

    SELF = "self"  # this node, which must reach the chain (or a delegate) before the deadline
    DELEGATE = "delegate"  # a delegate that holds our latest proof and sees the chain
    GATEWAY = "gateway"  # handed to a gateway of the mesh while blind (docs/offline.md §4)


@dataclass(frozen=True, slots=True)
class PaymentRisk:
    """The merchant view of a payment received while the node did not see the chain (or
    one not safe yet): what it holds and by when that must reach the chain.

    ``nonce``: the payer's balance proof we hold (it includes the payment). ``deadline``:
    Unix time (device clock) by which it must be sent to the chain, or handed to a
    delegate; ``chain_deadline``: the chain's own limit (block time). ``covered_by``: who
    does it; ``delegate``: its address. ``within_window``: received while the safety window
    was open (False: a direct payment that came too late to be protected by the rules;
    do not hand over goods for it until the proof is on chain).
    """

    nonce: int
    deadline: float | None
    chain_deadline: int | None
    covered_by: Coverage
    delegate: Address | None
    within_window: bool


@dataclass(frozen=True, slots=True)
class PaymentInfo:
    payment_id: int  # uint64, unique per initiator only (see ``pick_payment``)
    direction: PaymentDirection
    token: Address
    partner: Address  # target when sent; the partner that paid us (last hop) when received
    amount: int
    fee: int  # fees paid (sent) — 0 for received
    status: PaymentStatus
    reason: str | None  # failure reason (``FailureReason`` value), None otherwise
    failed_hop: Address | None
    secrethash: bytes  # the hashlock's; NO_HASHLOCK when there is none (a direct transfer)
    created_at: float  # Unix time
    finished_at: float | None
    payer: Address | None = None
    """Received: the initiator, when the node knows it (a direct transfer's sender; a
    mediated payment whose initiator sent the secret ahead). None when sent or unknown."""
    risk: PaymentRisk | None = None  # received while blind and not safe yet (merchant view)


def pick_payment(
    payment_id: int,
    found: Iterable[PaymentInfo],
    *,
    direction: PaymentDirection | None = None,
    payer: Address | None = None,
    partner: Address | None = None,
) -> PaymentInfo:
    """The one payment among ``found`` (those with ``payment_id``) that the caller names.

    Payment ids are chosen by each initiator, so one id may name a payment we sent and
    others we received (from different payers). Without ``direction``, ``payer`` or
    ``partner`` an id that names one payment still finds it; one that names several is
    ``AMBIGUOUS`` (a 409 that says which to add), never a guess. ``payer`` names a
    received payment's initiator, so it implies ``direction`` received.
    """
    if payer is not None:
        if direction is PaymentDirection.SENT:
            raise ServiceError(
                ErrorCode.INVALID_ARGUMENT,
                "payer names who started a received payment: not with direction=sent",
            )
        direction = PaymentDirection.RECEIVED
    matching = [
        p
        for p in found
        if p.payment_id == payment_id
        and (direction is None or p.direction is direction)
        and (payer is None or p.payer == payer)
        and (partner is None or p.partner == partner)
    ]
    if not matching:
        named = [
            f"{name}={value}"
            for name, value in (
                ("direction", None if direction is None else direction.value),
                ("payer", None if payer is None else "0x" + payer.hex()),
                ("partner", None if partner is None else "0x" + partner.hex()),
            )
            if value is not None
        ]
        with_filters = f" with {', '.join(named)}" if named else ""
        raise ServiceError(ErrorCode.NOT_FOUND, f"no payment {payment_id}{with_filters}")
    if len(matching) > 1:
        names = ", ".join(_describe(p) for p in matching[:3])
        if len(matching) > 3:
            names += ", ..."
        hint = (
            "add direction=sent or direction=received"
            if direction is None and len({p.direction for p in matching}) > 1
            else "add payer= (who started it) or partner= (who paid us)"
        )
        raise ServiceError(
            ErrorCode.AMBIGUOUS,
            f"payment id {payment_id} names {len(matching)} payments ({names}): {hint}",
        )
    return matching[0]


def _describe(payment: PaymentInfo) -> str:
    if payment.direction is PaymentDirection.SENT:
        return f"sent to 0x{payment.partner.hex()}"
    payer = "" if payment.payer is None else f" started by 0x{payment.payer.hex()}"
    return f"received from 0x{payment.partner.hex()}{payer}"


@dataclass(frozen=True, slots=True)
class PendingTransfer:
    """A lock still pending in one of our channels."""

    token: Address
    partner: Address
    direction: PaymentDirection  # SENT: our lock to partner; RECEIVED: partner's to us
    payment_id: int
    amount: int
    secrethash: bytes
    expiration: int  # Unix time
    role: str  # "initiator", "mediator" or "target"


@dataclass(frozen=True, slots=True)
class DeadlineInfo:
    """Something the node must get on chain, and by when (``GET /deadlines``).

    ``what``: ``update_horizon`` (if the partner closes with an older proof, its latest must
    reach the chain: be back, or have a delegate, by then), ``register_secret``, ``update``
    (the partner closed), ``unlock``, ``close``, ``withdraw``, ``cooperative_settle``.
    ``deadline``: Unix time (device clock) to act by; ``chain_deadline``: the chain's limit
    (block time); both None when there is none. ``pending``: a transaction is scheduled.
    """

    what: str
    token: Address
    partner: Address | None
    deadline: float | None
    chain_deadline: int | None
    covered_by: Coverage
    delegate: Address | None
    nonce: int  # the partner's proof at stake (0: none)
    amount: int  # the value at stake
    secrethash: bytes | None
    pending: bool
    text: str


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """One entry of the node's event log (payments, channel changes, refusals)."""

    seq: int  # increasing, for ``events(since=...)``
    time: float
    kind: str  # e.g. "payment_succeeded", "channel_closed", "invalid_received"
    data: dict[str, object]  # JSON-able, addresses as 0x hex, amounts as decimal strings


class NodeService(Protocol):
    """What a running node offers its local user. Every method may raise ``ServiceError``.

    Methods that touch the chain (``open_channel``, ``deposit``, ``close``, ``settle``)
    return once the transaction is confirmed; ``progress``, when given, is called with
    short human texts while waiting (the CLI prints them).
    """

    def status(self) -> NodeStatus: ...

    def tokens(self) -> list[TokenInfo]: ...

    def channels(self, token: Address | None = None) -> list[ChannelInfo]: ...

    def channel(self, token: Address, partner: Address) -> ChannelInfo: ...

    async def open_channel(
        self, token: Address, partner: Address, deposit: int, settle_window: int | None
    ) -> ChannelInfo: ...

    async def deposit(
        self, token: Address, partner: Address, total_deposit: int
    ) -> ChannelInfo: ...

    async def withdraw(
        self, token: Address, partner: Address, total_withdraw: int
    ) -> ChannelInfo: ...

    async def close(self, token: Address, partner: Address, cooperative: bool) -> ChannelInfo: ...

    async def settle(self, token: Address, partner: Address) -> ChannelInfo: ...

    async def pay(
        self,
        token: Address,
        target: Address,
        amount: int,
        *,
        max_fee: int | None = None,
        payment_id: int | None = None,
        secret: bytes | None = None,
        secrethash: bytes | None = None,
        direct: bool = False,
    ) -> PaymentInfo:
        """Start a payment; return once it is recorded (committed: a crash after the
        answer cannot lose it), with its id and status (PENDING unless already over).

        ``direct``: a direct transfer to a channel partner (no lock, final at once).
        ``secret``/``secrethash``: supplied by the payer (pay on delivery, swaps); by
        default the node draws a random secret.
        """
        ...

    def payment(
        self,
        payment_id: int,
        *,
        direction: PaymentDirection | None = None,
        payer: Address | None = None,
        partner: Address | None = None,
    ) -> PaymentInfo:
        """The payment ``payment_id`` names, narrowed as ``pick_payment`` says
        (``NOT_FOUND``, ``AMBIGUOUS``)."""
        ...

    def payments(
        self,
        *,
        direction: PaymentDirection | None = None,
        status: PaymentStatus | None = None,
        token: Address | None = None,
        partner: Address | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[PaymentInfo]: ...

    async def wait_payment(
        self,
        payment_id: int,
        timeout: float,
        *,
        direction: PaymentDirection | None = None,
        payer: Address | None = None,
        partner: Address | None = None,
    ) -> PaymentInfo:
        """The payment (named as for ``payment``) once it is terminal (a received one is at
        once); ``ServiceError(TIMEOUT)`` otherwise."""
        ...

    def pending_transfers(self, token: Address | None = None) -> list[PendingTransfer]: ...

    def events(self, since: int = 0, limit: int = 100) -> list[NodeEvent]: ...

    def deadlines(self) -> list[DeadlineInfo]:
        """Everything the node must get on chain, earliest first (docs/offline.md)."""
        ...
