"""The 0xA2 mesh payloads of the watch service: requests, answers and chain beacons.

Belongs here: one frozen dataclass per message (``DelegateUpdate``, ``RegisterSecret``,
``Unlock``, ``RawTransaction``: client -> watcher; ``WatchAck``, ``WatchOutcome``: watcher
-> client; ``ChainBeacon``: watcher -> mesh), the enums their codes come from, and
``encode`` / ``decode``. The layouts are in docs/spec.md §15.1, byte by byte: a 3-byte
header (tag ``0xA2``, version ``1``, kind), then fixed-size big-endian fields in the
order of the dataclass; variable parts (locks, a raw transaction, a text) carry their
length. The encoding is canonical: every value has one encoding, and ``decode`` refuses
anything else (a wrong length, trailing bytes, a field out of range, an unknown code,
text that is not UTF-8) with ``WireError`` and nothing else.

What travels is what the contracts need, not what can be derived: a ``DelegateUpdate``
carries the closer's proof as its preimage (transferred, locked, locksroot), so its
balance hash and the channel id are computed, never trusted.

Signatures are carried, not judged: whether a proof recovers to the closer or a beacon to
its watcher is for ``rules`` and ``beacons`` (a request with a forged signature is well
formed, and is refused with a reason).

Does not belong here: deciding anything, sockets, the clock.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from offchain.protocol import eip712
from offchain.protocol.crypto import keccak256, sign_digest
from offchain.protocol.errors import ValidationError
from offchain.protocol.locks import (
    LOCK_ENCODED_LENGTH,
    Lock,
    balance_hash,
    encode_locks,
    locksroot,
)
from offchain.protocol.locks import channel_id as make_channel_id
from offchain.protocol.types import (
    ADDRESS_LENGTH,
    BYTES32_LENGTH,
    SIGNATURE_LENGTH,
    UINT32_MAX,
    UINT64_MAX,
    UINT256_MAX,
    ZERO_ADDRESS,
    AdditionalHash,
    Address,
    BalanceHash,
    ChannelId,
    Generation,
    Locksroot,
    Nonce,
    PrivateKey,
    Secret,
    SecretHash,
    Signature,
    Timestamp,
    TokenAmount,
    check_bytes,
    check_uint,
)
from offchain.watch.errors import WireError

WATCH_TAG: Final = 0xA2
"""First byte of every watch payload (0xA1 is the capacity announcement; no protocol
codec version uses either)."""
WIRE_VERSION: Final = 1
REQUEST_ID_LENGTH: Final = 8
MAX_REWARD: Final = 2**96 - 1
"""The contract's ``MAX_REWARD``: a reward is packed in 96 bits beside the delegate."""
MAX_TEXT: Final = 160
"""Bytes of UTF-8 a reason or an outcome may carry."""
MAX_UNLOCK_LOCKS: Final = 128
"""Locks one ``Unlock`` may carry: 128 x 96 bytes keeps it within the mesh's 16 KiB
payload. A channel side with more pending locks cannot be unlocked by a watcher."""
MAX_RAW_TRANSACTION: Final = 12_288
"""Bytes of a signed transaction a gateway accepts (an unlock of 128 locks fits)."""
BEACON_DOMAIN: Final = b"SmartMesh chain beacon v1"

E = TypeVar("E", bound=enum.IntEnum)


class Kind(enum.IntEnum):
    """The third byte: which message follows."""

    DELEGATE_UPDATE = 1
    REGISTER_SECRET = 2
    UNLOCK = 3
    RAW_TRANSACTION = 4
    WATCH_ACK = 5
    WATCH_OUTCOME = 6
    CHAIN_BEACON = 7


class Reason(enum.IntEnum):
    """A watcher's answer to a request: 0 accepted, anything else refused because..."""

    ACCEPTED = 0
    NOT_WATCHING = 1
    """The node does not run the watch role."""
    BLIND = 2
    """The watcher does not see the chain now: it could not act in time."""
    WRONG_CHAIN = 3
    BAD_PROOF_SIGNATURE = 4
    """The partner's balance proof does not recover to the closer."""
    BAD_DELEGATION_SIGNATURE = 5
    """The delegation does not recover to the non-closer (or names another delegate)."""
    UNKNOWN_CHANNEL = 6
    """No such channel on chain (or not between these participants)."""
    GENERATION_MISMATCH = 7
    CHANNEL_NOT_OPEN = 8
    """Settled, or closed in a way that leaves the watcher nothing to do."""
    STALE = 9
    """The watcher or the chain holds a proof at least as new."""
    REWARD_TOO_LOW = 10
    TOO_LATE = 11
    """The deadline (settle window, lock expiry, transaction deadline) has passed."""
    OVERLOADED = 12
    """The watcher holds as many requests of this client as it accepts."""
    INVALID = 13
    """Well formed, but not something the watcher can act on."""


class Action(enum.IntEnum):
    """What a ``WatchOutcome`` reports on."""

    UPDATE = 1
    SETTLE = 2
    REGISTER_SECRET = 3
    UNLOCK = 4
    BROADCAST = 5


class OutcomeStatus(enum.IntEnum):
    CONFIRMED = 1
    FAILED = 2
    UNNECESSARY = 3
    """Provably not needed (the chain already shows what the request asked for)."""


class Service(enum.IntFlag):
    """What a beaconing watcher offers."""

    DELEGATE = 1
    """Accepts delegations (``DelegateUpdate``) and watches channels."""
    GATEWAY = 2
    """Registers secrets, unlocks, broadcasts raw transactions."""


_ALL_SERVICES: Final = int(Service.DELEGATE | Service.GATEWAY)


def _request_id(value: bytes) -> None:
    check_bytes(value, REQUEST_ID_LENGTH, "request id")


def _address(value: bytes, name: str) -> None:
    check_bytes(value, ADDRESS_LENGTH, name)
    if value == ZERO_ADDRESS:
        raise ValidationError(f"{name} is the zero address")


def _text(value: str) -> None:
    if not isinstance(value, str):
        raise ValidationError("text must be a str")
    if len(value.encode("utf-8", "strict")) > MAX_TEXT:
        raise ValidationError(f"text longer than {MAX_TEXT} bytes of UTF-8")


@dataclass(frozen=True, slots=True)
class BalancePreimage:
    """A participant's (transferred, locked, locksroot): what its balance hash commits to."""

    transferred: TokenAmount
    locked: TokenAmount
    locksroot: Locksroot

    def __post_init__(self) -> None:
        check_uint(self.transferred, UINT256_MAX, "transferred")
        check_uint(self.locked, UINT256_MAX, "locked")
        check_bytes(self.locksroot, BYTES32_LENGTH, "locksroot")

    @property
    def balance_hash(self) -> BalanceHash:
        return balance_hash(self.transferred, self.locked, self.locksroot)

    @classmethod
    def of(cls, transferred: int, locks: tuple[Lock, ...]) -> BalancePreimage:
        return cls(
            TokenAmount(transferred),
            TokenAmount(sum(lock.amount for lock in locks)),
            locksroot(locks),
        )


NO_BALANCE: Final = BalancePreimage(TokenAmount(0), TokenAmount(0), Locksroot(bytes(32)))
"""What a side with no proof on chain settles with (its balance hash is all zeros)."""


@dataclass(frozen=True, slots=True)
class DelegateUpdate:
    """Client -> watcher: "if ``closer`` closes our channel, put this proof of its on
    chain for me, for ``reward``".

    ``nonce``, ``closer_balance``, ``additional_hash`` and ``closing_signature`` are the
    closer's balance proof (as ``update_non_closing_balance_proof`` takes it);
    ``delegation_signature`` is the non-closer's ``Delegation`` of exactly that proof to
    the watcher it is sent to. ``own_nonce`` and ``own_balance`` are the non-closer's own
    latest proof (unsigned here: only its hash on chain makes it usable), so that the
    watcher can also settle.
    """

    request_id: bytes
    chain_id: int
    token_network: Address
    generation: Generation
    closer: Address
    non_closer: Address
    nonce: Nonce
    closer_balance: BalancePreimage
    additional_hash: AdditionalHash
    closing_signature: Signature
    reward: TokenAmount
    delegation_signature: Signature
    own_nonce: Nonce
    own_balance: BalancePreimage

    def __post_init__(self) -> None:
        _request_id(self.request_id)
        check_uint(self.chain_id, UINT64_MAX, "chain id")
        _address(self.token_network, "token network")
        check_uint(self.generation, UINT32_MAX, "generation")
        if self.generation == 0:
            raise ValidationError("generation 0 is never opened")
        _address(self.closer, "closer")
        _address(self.non_closer, "non-closer")
        if self.closer == self.non_closer:
            raise ValidationError("closer and non-closer are the same")
        check_uint(self.nonce, UINT64_MAX, "nonce")
        if self.nonce == 0:
            raise ValidationError("nonce 0 is no proof: nothing to update")
        check_bytes(self.additional_hash, BYTES32_LENGTH, "additional hash")
        check_bytes(self.closing_signature, SIGNATURE_LENGTH, "closing signature")
        check_uint(self.reward, MAX_REWARD, "reward")
        check_bytes(self.delegation_signature, SIGNATURE_LENGTH, "delegation signature")
        check_uint(self.own_nonce, UINT64_MAX, "own nonce")

    @property
    def channel_id(self) -> ChannelId:
        return make_channel_id(self.closer, self.non_closer)

    @property
    def balance_hash(self) -> BalanceHash:
        return self.closer_balance.balance_hash

    def balance_proof(self) -> eip712.BalanceProof:
        return eip712.BalanceProof(
            channel_id=self.channel_id,
            generation=self.generation,
            nonce=self.nonce,
            balance_hash=self.balance_hash,
            additional_hash=self.additional_hash,
        )

    def delegation(self, delegate: Address) -> eip712.Delegation:
        return eip712.Delegation(
            channel_id=self.channel_id,
            generation=self.generation,
            nonce=self.nonce,
            balance_hash=self.balance_hash,
            delegate=delegate,
            reward=self.reward,
        )

    @property
    def rank(self) -> tuple[int, int]:
        """Orders two requests for one channel side: the newer closer proof wins, then the
        newer own proof (same closer proof, newer settle data)."""
        return (int(self.nonce), int(self.own_nonce))


@dataclass(frozen=True, slots=True)
class RegisterSecret:
    """Client -> watcher: register ``secret`` on chain so that it counts by ``deadline``
    (chain time: the expiration of the lock it opens)."""

    request_id: bytes
    secret: Secret
    deadline: Timestamp

    def __post_init__(self) -> None:
        _request_id(self.request_id)
        check_bytes(self.secret, BYTES32_LENGTH, "secret")
        check_uint(self.deadline, UINT64_MAX, "deadline")


@dataclass(frozen=True, slots=True)
class Unlock:
    """Client -> watcher: once the channel's ``generation`` is settled, unlock the tokens
    retained for ``sender``'s pending ``locks`` (exactly those its locksroot commits to,
    in creation order)."""

    request_id: bytes
    chain_id: int
    token_network: Address
    receiver: Address
    sender: Address
    generation: Generation
    locks: tuple[Lock, ...]

    def __post_init__(self) -> None:
        _request_id(self.request_id)
        check_uint(self.chain_id, UINT64_MAX, "chain id")
        _address(self.token_network, "token network")
        _address(self.receiver, "receiver")
        _address(self.sender, "sender")
        if self.receiver == self.sender:
            raise ValidationError("receiver and sender are the same")
        check_uint(self.generation, UINT32_MAX, "generation")
        if self.generation == 0:
            raise ValidationError("generation 0 is never opened")
        if not isinstance(self.locks, tuple) or len(self.locks) > MAX_UNLOCK_LOCKS:
            raise ValidationError(f"locks must be a tuple of at most {MAX_UNLOCK_LOCKS}")
        for lock in self.locks:
            if not isinstance(lock, Lock):
                raise ValidationError("locks must be Lock values")

    @property
    def channel_id(self) -> ChannelId:
        return make_channel_id(self.receiver, self.sender)

    @property
    def locksroot(self) -> Locksroot:
        return locksroot(self.locks)


@dataclass(frozen=True, slots=True)
class RawTransaction:
    """Client -> gateway: broadcast this signed transaction; it is useless after
    ``deadline`` (chain time)."""

    request_id: bytes
    deadline: Timestamp
    raw: bytes

    def __post_init__(self) -> None:
        _request_id(self.request_id)
        check_uint(self.deadline, UINT64_MAX, "deadline")
        if not isinstance(self.raw, bytes) or not 0 < len(self.raw) <= MAX_RAW_TRANSACTION:
            raise ValidationError(f"a raw transaction is 1..{MAX_RAW_TRANSACTION} bytes")

    @property
    def tx_hash(self) -> bytes:
        return keccak256(self.raw)


@dataclass(frozen=True, slots=True)
class WatchAck:
    """Watcher -> client: the request is held (``reason`` ACCEPTED: persisted, the
    watcher will act) or refused (why, with a text). ``view_time``: the chain time up to
    which the watcher has seen every log of our contracts (0: none, it is blind)."""

    request_id: bytes
    reason: Reason
    view_time: Timestamp
    text: str = ""

    def __post_init__(self) -> None:
        _request_id(self.request_id)
        if not isinstance(self.reason, Reason):
            raise ValidationError("reason must be a Reason")
        check_uint(self.view_time, UINT64_MAX, "view time")
        _text(self.text)

    @property
    def accepted(self) -> bool:
        return self.reason is Reason.ACCEPTED


@dataclass(frozen=True, slots=True)
class WatchOutcome:
    """Watcher -> client: what became of a held request (one per action taken).
    ``tx_hash`` is all zeros and ``block_timestamp`` 0 when no transaction was involved."""

    request_id: bytes
    action: Action
    status: OutcomeStatus
    tx_hash: bytes
    block_timestamp: Timestamp
    text: str = ""

    def __post_init__(self) -> None:
        _request_id(self.request_id)
        if not isinstance(self.action, Action):
            raise ValidationError("action must be an Action")
        if not isinstance(self.status, OutcomeStatus):
            raise ValidationError("status must be an OutcomeStatus")
        check_bytes(self.tx_hash, BYTES32_LENGTH, "tx hash")
        check_uint(self.block_timestamp, UINT64_MAX, "block timestamp")
        _text(self.text)


@dataclass(frozen=True, slots=True)
class ChainBeacon:
    """Watcher -> mesh, signed: "I see chain ``chain_id`` up to ``view_time`` and offer
    ``services``, delegations for a reward of at least ``min_reward``". ``issued_at``
    (Unix ms) orders a watcher's beacons; ``ttl`` (hops left, not signed) bounds how
    far they are passed on."""

    chain_id: int
    watcher: Address
    view_time: Timestamp
    min_reward: TokenAmount
    services: Service
    issued_at: int
    signature: Signature
    ttl: int

    def __post_init__(self) -> None:
        check_uint(self.chain_id, UINT64_MAX, "chain id")
        _address(self.watcher, "watcher")
        check_uint(self.view_time, UINT64_MAX, "view time")
        check_uint(self.min_reward, MAX_REWARD, "min reward")
        if not isinstance(self.services, Service) or int(self.services) & ~_ALL_SERVICES:
            raise ValidationError("services must be Service flags")
        check_uint(self.issued_at, UINT64_MAX, "issued at")
        check_bytes(self.signature, SIGNATURE_LENGTH, "signature")
        check_uint(self.ttl, 255, "ttl")

    def body(self) -> bytes:
        """What the signature covers: everything before it (the ttl is not signed:
        every hop lowers it)."""
        return _beacon_body(self)

    def digest(self) -> bytes:
        return keccak256(BEACON_DOMAIN + self.body())

    def signed(self, key: PrivateKey) -> ChainBeacon:
        return ChainBeacon(
            self.chain_id, self.watcher, self.view_time, self.min_reward, self.services,
            self.issued_at, sign_digest(key, self.digest()), self.ttl,
        )  # fmt: skip

    def hop(self) -> ChainBeacon:
        """The beacon as the next hop gets it (one hop fewer); ttl must be above 0."""
        return ChainBeacon(
            self.chain_id, self.watcher, self.view_time, self.min_reward, self.services,
            self.issued_at, self.signature, self.ttl - 1,
        )  # fmt: skip


Request = DelegateUpdate | RegisterSecret | Unlock | RawTransaction
Answer = WatchAck | WatchOutcome
WatchMessage = Request | Answer | ChainBeacon

UNSIGNED: Final = Signature(bytes(SIGNATURE_LENGTH))
"""A placeholder signature, replaced by ``ChainBeacon.signed``."""


# --- encoding -------------------------------------------------------------------------------


def _u(value: int, size: int) -> bytes:
    return int(value).to_bytes(size, "big")


def _header(kind: Kind) -> bytes:
    return bytes((WATCH_TAG, WIRE_VERSION, kind))


def _preimage(value: BalancePreimage) -> bytes:
    return _u(value.transferred, 32) + _u(value.locked, 32) + value.locksroot


def _with_text(text: str) -> bytes:
    raw = text.encode("utf-8")
    return bytes((len(raw),)) + raw


def _beacon_body(b: ChainBeacon) -> bytes:
    return (
        _header(Kind.CHAIN_BEACON)
        + _u(b.chain_id, 8)
        + b.watcher
        + _u(b.view_time, 8)
        + _u(b.min_reward, 12)
        + bytes((int(b.services),))
        + _u(b.issued_at, 8)
    )


def encode(message: WatchMessage) -> bytes:
    """The wire bytes of ``message`` (its fields were checked when it was made)."""
    match message:
        case DelegateUpdate():
            return b"".join((
                _header(Kind.DELEGATE_UPDATE), message.request_id, _u(message.chain_id, 8),
                message.token_network, _u(message.generation, 4), message.closer,
                message.non_closer, _u(message.nonce, 8), _preimage(message.closer_balance),
                message.additional_hash, message.closing_signature, _u(message.reward, 12),
                message.delegation_signature, _u(message.own_nonce, 8),
                _preimage(message.own_balance),
            ))  # fmt: skip
        case RegisterSecret():
            return (
                _header(Kind.REGISTER_SECRET)
                + message.request_id
                + message.secret
                + _u(message.deadline, 8)
            )
        case Unlock():
            return b"".join((
                _header(Kind.UNLOCK), message.request_id, _u(message.chain_id, 8),
                message.token_network, message.receiver, message.sender,
                _u(message.generation, 4), _u(len(message.locks), 2),
                encode_locks(message.locks),
            ))  # fmt: skip
        case RawTransaction():
            return (
                _header(Kind.RAW_TRANSACTION)
                + message.request_id
                + _u(message.deadline, 8)
                + _u(len(message.raw), 2)
                + message.raw
            )
        case WatchAck():
            return (
                _header(Kind.WATCH_ACK)
                + message.request_id
                + bytes((message.reason,))
                + _u(message.view_time, 8)
                + _with_text(message.text)
            )
        case WatchOutcome():
            return (
                _header(Kind.WATCH_OUTCOME)
                + message.request_id
                + bytes((message.action, message.status))
                + message.tx_hash
                + _u(message.block_timestamp, 8)
                + _with_text(message.text)
            )
        case ChainBeacon():
            return _beacon_body(message) + message.signature + bytes((message.ttl,))
    raise WireError(f"not a watch message: {type(message).__name__}")


# --- decoding -------------------------------------------------------------------------------


class _Reader:
    """Strict sequential reads; every shortfall is a ``WireError``."""

    __slots__ = ("data", "offset")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, size: int, what: str) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            raise WireError(f"truncated: {what} needs {size} bytes at offset {self.offset}")
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def uint(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "big")

    def address(self, what: str) -> Address:
        return Address(self.take(ADDRESS_LENGTH, what))

    def word(self, what: str) -> bytes:
        return self.take(BYTES32_LENGTH, what)

    def signature(self, what: str) -> Signature:
        return Signature(self.take(SIGNATURE_LENGTH, what))

    def preimage(self, what: str) -> BalancePreimage:
        return BalancePreimage(
            TokenAmount(self.uint(32, what + " transferred")),
            TokenAmount(self.uint(32, what + " locked")),
            Locksroot(self.word(what + " locksroot")),
        )

    def text(self) -> str:
        size = self.uint(1, "text length")
        if size > MAX_TEXT:
            raise WireError(f"text of {size} bytes, at most {MAX_TEXT}")
        try:
            return self.take(size, "text").decode("utf-8", "strict")
        except UnicodeDecodeError as exc:
            raise WireError(f"text is not UTF-8: {exc}") from None

    def end(self) -> None:
        if self.offset != len(self.data):
            raise WireError(f"{len(self.data) - self.offset} trailing bytes")


def _enum(cls: type[E], value: int, what: str) -> E:
    try:
        return cls(value)
    except ValueError:
        raise WireError(f"unknown {what} {value}") from None


def decode(data: bytes) -> WatchMessage:
    """The message ``data`` encodes; ``WireError`` for anything that is not exactly one
    well-formed message of this version."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise WireError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < 3:
        raise WireError("shorter than the 3-byte header")
    if data[0] != WATCH_TAG:
        raise WireError(f"not a watch payload (first byte 0x{data[0]:02x})")
    if data[1] != WIRE_VERSION:
        raise WireError(f"unsupported watch wire version {data[1]}")
    kind = _enum(Kind, data[2], "message kind")
    reader = _Reader(data)
    reader.offset = 3
    try:
        message = _DECODERS[kind](reader)
    except WireError:
        raise
    except ValidationError as exc:  # a field the constructor refuses
        raise WireError(f"{kind.name.lower()}: {exc}") from None
    reader.end()
    return message


def _delegate_update(r: _Reader) -> DelegateUpdate:
    return DelegateUpdate(
        request_id=r.take(REQUEST_ID_LENGTH, "request id"),
        chain_id=r.uint(8, "chain id"),
        token_network=r.address("token network"),
        generation=Generation(r.uint(4, "generation")),
        closer=r.address("closer"),
        non_closer=r.address("non-closer"),
        nonce=Nonce(r.uint(8, "nonce")),
        closer_balance=r.preimage("closer"),
        additional_hash=AdditionalHash(r.word("additional hash")),
        closing_signature=r.signature("closing signature"),
        reward=TokenAmount(r.uint(12, "reward")),
        delegation_signature=r.signature("delegation signature"),
        own_nonce=Nonce(r.uint(8, "own nonce")),
        own_balance=r.preimage("own"),
    )


def _register_secret(r: _Reader) -> RegisterSecret:
    return RegisterSecret(
        request_id=r.take(REQUEST_ID_LENGTH, "request id"),
        secret=Secret(r.word("secret")),
        deadline=Timestamp(r.uint(8, "deadline")),
    )


def _unlock(r: _Reader) -> Unlock:
    request_id = r.take(REQUEST_ID_LENGTH, "request id")
    chain_id = r.uint(8, "chain id")
    network = r.address("token network")
    receiver = r.address("receiver")
    sender = r.address("sender")
    generation = Generation(r.uint(4, "generation"))
    count = r.uint(2, "lock count")
    if count > MAX_UNLOCK_LOCKS:
        raise WireError(f"{count} locks, at most {MAX_UNLOCK_LOCKS}")
    locks = []
    for index in range(count):
        raw = r.take(LOCK_ENCODED_LENGTH, f"lock {index}")
        expiration = int.from_bytes(raw[:32], "big")
        if expiration > UINT64_MAX:
            raise WireError(f"lock {index}: expiration beyond uint64")
        locks.append(
            Lock(Timestamp(expiration), TokenAmount(int.from_bytes(raw[32:64], "big")),
                 SecretHash(raw[64:]))
        )  # fmt: skip
    return Unlock(request_id, chain_id, network, receiver, sender, generation, tuple(locks))


def _raw_transaction(r: _Reader) -> RawTransaction:
    request_id = r.take(REQUEST_ID_LENGTH, "request id")
    deadline = Timestamp(r.uint(8, "deadline"))
    size = r.uint(2, "transaction length")
    if not 0 < size <= MAX_RAW_TRANSACTION:
        raise WireError(f"a raw transaction of {size} bytes (1..{MAX_RAW_TRANSACTION})")
    return RawTransaction(request_id, deadline, r.take(size, "transaction"))


def _watch_ack(r: _Reader) -> WatchAck:
    request_id = r.take(REQUEST_ID_LENGTH, "request id")
    reason = _enum(Reason, r.uint(1, "reason"), "reason")
    view_time = Timestamp(r.uint(8, "view time"))
    return WatchAck(request_id, reason, view_time, r.text())


def _watch_outcome(r: _Reader) -> WatchOutcome:
    request_id = r.take(REQUEST_ID_LENGTH, "request id")
    action = _enum(Action, r.uint(1, "action"), "action")
    status = _enum(OutcomeStatus, r.uint(1, "status"), "outcome status")
    tx_hash = r.word("tx hash")
    block_timestamp = Timestamp(r.uint(8, "block timestamp"))
    return WatchOutcome(request_id, action, status, tx_hash, block_timestamp, r.text())


def _chain_beacon(r: _Reader) -> ChainBeacon:
    chain_id = r.uint(8, "chain id")
    watcher = r.address("watcher")
    view_time = Timestamp(r.uint(8, "view time"))
    min_reward = TokenAmount(r.uint(12, "min reward"))
    flags = r.uint(1, "services")
    if flags & ~_ALL_SERVICES:
        raise WireError(f"unknown service flags 0x{flags:02x}")
    issued_at = r.uint(8, "issued at")
    signature = r.signature("signature")
    ttl = r.uint(1, "ttl")
    return ChainBeacon(
        chain_id, watcher, view_time, min_reward, Service(flags), issued_at, signature, ttl
    )


_DECODERS: Final[dict[Kind, Callable[[_Reader], WatchMessage]]] = {
    Kind.DELEGATE_UPDATE: _delegate_update,
    Kind.REGISTER_SECRET: _register_secret,
    Kind.UNLOCK: _unlock,
    Kind.RAW_TRANSACTION: _raw_transaction,
    Kind.WATCH_ACK: _watch_ack,
    Kind.WATCH_OUTCOME: _watch_outcome,
    Kind.CHAIN_BEACON: _chain_beacon,
}
