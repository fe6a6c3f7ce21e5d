"""Raw logs of the SmartMesh contracts decoded into frozen typed values.

Belongs here: one frozen value per event the registry, the token networks and the secret
registry emit (addresses as 20 raw bytes, hashes as 32 bytes, amounts as ints, each with
where it was found: block, block hash, log index, transaction hash and the block's
timestamp), the table that recognises them by topic0 (built from the shipped ABIs, so it
cannot drift from the contracts), and ``LogDecoder``, which decodes a raw log as the
JSON-RPC endpoint returns it (web3's attribute dicts, or plain JSON with hex strings).

A log that is unknown (another topic0 for that kind of contract) or malformed (wrong
topic count, wrong data length, non-zero padding, values out of range, a channel id or
secrethash that does not match what it commits to) raises nothing: the decoder counts
and logs it and returns None. The follower only asks for logs of our contracts, so
either means a node that lies or a contract we do not know; both must not stop the node.

Does not belong here: what a log means for our channels (``inputs``), fetching logs
(``sync``).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError

from offchain.chain.artifacts import load_artifact
from offchain.chain.rpc import as_bytes, as_int
from offchain.protocol.crypto import keccak256, sha256
from offchain.protocol.errors import ValidationError
from offchain.protocol.locks import channel_id as make_channel_id
from offchain.protocol.types import (
    UINT32_MAX,
    Address,
    BalanceHash,
    ChannelId,
    Generation,
    Locksroot,
    Nonce,
    Secret,
    SecretHash,
    Timestamp,
    TokenAmount,
    as_address,
    as_balance_hash,
    as_channel_id,
    as_generation,
    as_locksroot,
    as_nonce,
    as_secret,
    as_secrethash,
    as_timestamp,
    as_token_amount,
)

logger = logging.getLogger(__name__)


class ContractKind(enum.Enum):
    """Which of our contracts emitted a log (the follower knows it by address)."""

    REGISTRY = "token_network_registry"
    TOKEN_NETWORK = "token_network"
    SECRET_REGISTRY = "secret_registry"


# --- values -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LogPosition:
    """Where a log was found. ``timestamp``: its block's timestamp (the core's `now`)."""

    block: int
    block_hash: bytes
    log_index: int
    tx_hash: bytes
    timestamp: Timestamp


@dataclass(frozen=True, slots=True)
class TokenNetworkCreatedLog(LogPosition):
    registry: Address
    token: Address
    token_network: Address
    settle_window_min: int
    settle_window_max: int
    participant_deposit_limit: TokenAmount
    network_deposit_limit: TokenAmount


@dataclass(frozen=True, slots=True)
class ChannelOpenedLog(LogPosition):
    token_network: Address
    channel_id: ChannelId
    participant1: Address
    participant2: Address
    generation: Generation
    settle_window: int


@dataclass(frozen=True, slots=True)
class DepositLog(LogPosition):
    token_network: Address
    channel_id: ChannelId
    participant: Address
    total_deposit: TokenAmount


@dataclass(frozen=True, slots=True)
class WithdrawLog(LogPosition):
    token_network: Address
    channel_id: ChannelId
    participant: Address
    total_withdraw: TokenAmount


@dataclass(frozen=True, slots=True)
class ChannelClosedLog(LogPosition):
    token_network: Address
    channel_id: ChannelId
    closing_participant: Address
    nonce: Nonce
    balance_hash: BalanceHash


@dataclass(frozen=True, slots=True)
class NonClosingUpdatedLog(LogPosition):
    token_network: Address
    channel_id: ChannelId
    closing_participant: Address
    nonce: Nonce
    balance_hash: BalanceHash
    submitter: Address


@dataclass(frozen=True, slots=True)
class ChannelSettledLog(LogPosition):
    token_network: Address
    channel_id: ChannelId
    generation: Generation
    participant1_amount: TokenAmount
    participant2_amount: TokenAmount
    participant1_locked: TokenAmount
    participant2_locked: TokenAmount


@dataclass(frozen=True, slots=True)
class CoopSettledLog(LogPosition):
    token_network: Address
    channel_id: ChannelId
    generation: Generation
    participant1_amount: TokenAmount
    participant2_amount: TokenAmount


@dataclass(frozen=True, slots=True)
class DelegateRewardedLog(LogPosition):
    token_network: Address
    channel_id: ChannelId
    participant: Address
    delegate: Address
    reward: TokenAmount


@dataclass(frozen=True, slots=True)
class ChannelUnlockedLog(LogPosition):
    token_network: Address
    channel_id: ChannelId
    receiver: Address
    sender: Address
    locksroot: Locksroot
    unlocked_amount: TokenAmount
    returned_amount: TokenAmount


@dataclass(frozen=True, slots=True)
class SecretRegisteredLog(LogPosition):
    secret_registry: Address
    secrethash: SecretHash
    secret: Secret


ChainLog = (
    TokenNetworkCreatedLog
    | ChannelOpenedLog
    | DepositLog
    | WithdrawLog
    | ChannelClosedLog
    | NonClosingUpdatedLog
    | ChannelSettledLog
    | CoopSettledLog
    | DelegateRewardedLog
    | ChannelUnlockedLog
    | SecretRegisteredLog
)

# --- the event table ----------------------------------------------------------------------

_Values = Mapping[str, Any]
_Builder = Callable[[Address, _Values, LogPosition], ChainLog]


def _pos(at: LogPosition) -> dict[str, Any]:
    return {
        "block": at.block,
        "block_hash": at.block_hash,
        "log_index": at.log_index,
        "tx_hash": at.tx_hash,
        "timestamp": at.timestamp,
    }


def _addr(value: object) -> Address:
    # eth_abi returns checksummed hex strings; we keep raw bytes.
    return as_address(bytes.fromhex(str(value)[2:]))


def _uint(value: object, maximum: int, name: str) -> int:
    if not isinstance(value, int) or not 0 <= value <= maximum:
        raise ValidationError(f"{name} out of range: {value!r}")
    return value


def _token_network_created(address: Address, v: _Values, at: LogPosition) -> ChainLog:
    return TokenNetworkCreatedLog(
        registry=address,
        token=_addr(v["token"]),
        token_network=_addr(v["token_network"]),
        settle_window_min=_uint(v["settle_window_min"], UINT32_MAX, "settle_window_min"),
        settle_window_max=_uint(v["settle_window_max"], UINT32_MAX, "settle_window_max"),
        participant_deposit_limit=as_token_amount(v["participant_deposit_limit"]),
        network_deposit_limit=as_token_amount(v["network_deposit_limit"]),
        **_pos(at),
    )


def _channel_opened(address: Address, v: _Values, at: LogPosition) -> ChainLog:
    p1, p2 = _addr(v["participant1"]), _addr(v["participant2"])
    cid = as_channel_id(v["channel_id"])
    # The contract orders the pair and derives the id from it; anything else is forged.
    if not p1 < p2 or make_channel_id(p1, p2) != cid:
        raise ValidationError("channel id does not match the participants")
    return ChannelOpenedLog(
        token_network=address,
        channel_id=cid,
        participant1=p1,
        participant2=p2,
        generation=as_generation(v["generation"]),
        settle_window=_uint(v["settle_window"], UINT32_MAX, "settle_window"),
        **_pos(at),
    )


def _deposit(address: Address, v: _Values, at: LogPosition) -> ChainLog:
    return DepositLog(
        token_network=address,
        channel_id=as_channel_id(v["channel_id"]),
        participant=_addr(v["participant"]),
        total_deposit=as_token_amount(v["total_deposit"]),
        **_pos(at),
    )


def _withdraw(address: Address, v: _Values, at: LogPosition) -> ChainLog:
    return WithdrawLog(
        token_network=address,
        channel_id=as_channel_id(v["channel_id"]),
        participant=_addr(v["participant"]),
        total_withdraw=as_token_amount(v["total_withdraw"]),
        **_pos(at),
    )


def _closed(address: Address, v: _Values, at: LogPosition) -> ChainLog:
    return ChannelClosedLog(
        token_network=address,
        channel_id=as_channel_id(v["channel_id"]),
        closing_participant=_addr(v["closing_participant"]),
        nonce=as_nonce(v["nonce"]),
        balance_hash=as_balance_hash(v["balance_hash"]),
        **_pos(at),
    )


def _updated(address: Address, v: _Values, at: LogPosition) -> ChainLog:
    return NonClosingUpdatedLog(
        token_network=address,
        channel_id=as_channel_id(v["channel_id"]),
        closing_participant=_addr(v["closing_participant"]),
        nonce=as_nonce(v["nonce"]),
        balance_hash=as_balance_hash(v["balance_hash"]),
        submitter=_addr(v["submitter"]),
        **_pos(at),
    )


def _settled(address: Address, v: _Values, at: LogPosition) -> ChainLog:
    return ChannelSettledLog(
        token_network=address,
        channel_id=as_channel_id(v["channel_id"]),
        generation=as_generation(v["generation"]),
        participant1_amount=as_token_amount(v["participant1_amount"]),
        participant2_amount=as_token_amount(v["participant2_amount"]),
        participant1_locked=as_token_amount(v["participant1_locked"]),
        participant2_locked=as_token_amount(v["participant2_locked"]),
        **_pos(at),
    )


def _coop_settled(address: Address, v: _Values, at: LogPosition) -> ChainLog:
    return CoopSettledLog(
        token_network=address,
        channel_id=as_channel_id(v["channel_id"]),
        generation=as_generation(v["generation"]),
        participant1_amount=as_token_amount(v["participant1_amount"]),
        participant2_amount=as_token_amount(v["participant2_amount"]),
        **_pos(at),
    )


def _rewarded(address: Address, v: _Values, at: LogPosition) -> ChainLog:
    return DelegateRewardedLog(
        token_network=address,
        channel_id=as_channel_id(v["channel_id"]),
        participant=_addr(v["participant"]),
        delegate=_addr(v["delegate"]),
        reward=as_token_amount(v["reward"]),
        **_pos(at),
    )


def _unlocked(address: Address, v: _Values, at: LogPosition) -> ChainLog:
    return ChannelUnlockedLog(
        token_network=address,
        channel_id=as_channel_id(v["channel_id"]),
        receiver=_addr(v["receiver"]),
        sender=_addr(v["sender"]),
        locksroot=as_locksroot(v["locksroot"]),
        unlocked_amount=as_token_amount(v["unlocked_amount"]),
        returned_amount=as_token_amount(v["returned_amount"]),
        **_pos(at),
    )


def _secret_revealed(address: Address, v: _Values, at: LogPosition) -> ChainLog:
    secret = as_secret(v["secret"])
    secrethash = as_secrethash(v["secrethash"])
    # The core treats a mismatch as its own bug: it must never get one from a forged log.
    if sha256(secret) != secrethash:
        raise ValidationError("secrethash is not sha256(secret)")
    return SecretRegisteredLog(
        secret_registry=address, secrethash=secrethash, secret=secret, **_pos(at)
    )


_BUILDERS: Final[Mapping[ContractKind, Mapping[str, _Builder]]] = {
    ContractKind.REGISTRY: {"TokenNetworkCreated": _token_network_created},
    ContractKind.TOKEN_NETWORK: {
        "ChannelOpened": _channel_opened,
        "ChannelNewDeposit": _deposit,
        "ChannelWithdraw": _withdraw,
        "ChannelClosed": _closed,
        "NonClosingBalanceProofUpdated": _updated,
        "ChannelSettled": _settled,
        "ChannelCooperativeSettled": _coop_settled,
        "DelegateRewarded": _rewarded,
        "ChannelUnlocked": _unlocked,
    },
    ContractKind.SECRET_REGISTRY: {"SecretRevealed": _secret_revealed},
}


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One event of a contract's ABI: how its topics and data decode."""

    name: str
    signature: str
    topic0: bytes
    indexed: tuple[tuple[str, str], ...]
    """(name, type) of the indexed inputs, topics 1.., in order."""
    data: tuple[tuple[str, str], ...]
    """(name, type) of the other inputs, ABI-encoded in the data, in order."""
    build: _Builder


def _specs(kind: ContractKind) -> dict[bytes, EventSpec]:
    specs: dict[bytes, EventSpec] = {}
    builders = _BUILDERS[kind]
    for entry in load_artifact(kind.value).abi:
        if entry.get("type") != "event" or entry["name"] not in builders:
            continue
        inputs = entry["inputs"]
        signature = f"{entry['name']}({','.join(str(i['type']) for i in inputs)})"
        topic0 = keccak256(signature.encode())
        specs[topic0] = EventSpec(
            name=entry["name"],
            signature=signature,
            topic0=topic0,
            indexed=tuple((i["name"], i["type"]) for i in inputs if i["indexed"]),
            data=tuple((i["name"], i["type"]) for i in inputs if not i["indexed"]),
            build=builders[entry["name"]],
        )
    missing = set(builders) - {spec.name for spec in specs.values()}
    # The table is built from the shipped ABI: an event we decode that the ABI lacks means
    # the contracts changed under us.
    assert not missing, f"{kind.value} ABI lacks events {sorted(missing)}"
    return specs


EVENTS: Final[Mapping[ContractKind, Mapping[bytes, EventSpec]]] = {
    kind: _specs(kind) for kind in ContractKind
}
"""topic0 -> event, per kind of contract."""


def topic0_of(kind: ContractKind, name: str) -> bytes:
    """The topic0 of event ``name`` of ``kind`` (for filters and hand-made logs)."""
    for spec in EVENTS[kind].values():
        if spec.name == name:
            return spec.topic0
    raise KeyError(name)


# --- decoding -----------------------------------------------------------------------------


class LogFormatError(Exception):
    """Internal: a log of a known event that does not decode; the decoder counts it."""


def log_timestamp(raw: Mapping[str, Any]) -> int | None:
    """The ``blockTimestamp`` some endpoints (anvil, recent geth) add to a log, if any."""
    value = raw.get("blockTimestamp")
    if value is None:
        return None
    try:
        return as_int(value)
    except ValueError:
        return None


def decode_log(raw: Mapping[str, Any], kind: ContractKind, timestamp: int) -> ChainLog | None:
    """Decode ``raw`` emitted by a contract of ``kind``; None if its topic0 is unknown.

    Raises ``LogFormatError`` for a known event that does not decode or fails a check.
    """
    try:
        topics = [as_bytes(topic) for topic in raw["topics"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise LogFormatError(f"bad topics: {exc}") from exc
    if not topics:
        return None
    spec = EVENTS[kind].get(topics[0])
    if spec is None:
        return None
    try:
        address = as_address(as_bytes(raw["address"]))
        at = LogPosition(
            block=as_int(raw["blockNumber"]),
            block_hash=as_bytes(raw["blockHash"]),
            log_index=as_int(raw["logIndex"]),
            tx_hash=as_bytes(raw["transactionHash"]),
            timestamp=as_timestamp(timestamp),
        )
        data = as_bytes(raw["data"])
    except (KeyError, TypeError, ValueError) as exc:
        raise LogFormatError(f"{spec.name}: bad log fields: {exc}") from exc
    if len(topics) != 1 + len(spec.indexed):
        raise LogFormatError(f"{spec.name}: {len(topics)} topics, expected {1 + len(spec.indexed)}")
    if any(len(topic) != 32 for topic in topics):
        raise LogFormatError(f"{spec.name}: a topic is not 32 bytes")
    # Every data field of our events is a static 32-byte word.
    if len(data) != 32 * len(spec.data):
        raise LogFormatError(f"{spec.name}: {len(data)} data bytes, expected {32 * len(spec.data)}")
    try:
        values: dict[str, Any] = {}
        for (name, kind_of), topic in zip(spec.indexed, topics[1:], strict=True):
            (values[name],) = abi_decode([kind_of], topic)
        decoded = abi_decode([t for _, t in spec.data], data)
        values.update(zip((n for n, _ in spec.data), decoded, strict=True))
        return spec.build(address, values, at)
    except (DecodingError, ValidationError, ValueError) as exc:
        raise LogFormatError(f"{spec.name}: {exc}") from exc


class LogDecoder:
    """Decodes raw logs and counts what it could not: ``unknown``, ``malformed``, ``removed``."""

    def __init__(self) -> None:
        self.decoded = 0
        self.unknown = 0
        self.malformed = 0
        self.removed = 0

    def decode(self, raw: Mapping[str, Any], kind: ContractKind, timestamp: int) -> ChainLog | None:
        """The typed value of ``raw``, or None (counted and logged) if it cannot be one."""
        if raw.get("removed"):
            # Only a reorg removes logs; confirmed ranges never return them.
            self.removed += 1
            logger.warning("skipped a removed log: %s", _where(raw))
            return None
        try:
            value = decode_log(raw, kind, timestamp)
        except LogFormatError as exc:
            self.malformed += 1
            logger.warning("skipped a malformed %s log at %s: %s", kind.value, _where(raw), exc)
            return None
        if value is None:
            self.unknown += 1
            logger.info("skipped an unknown %s log at %s", kind.value, _where(raw))
            return None
        self.decoded += 1
        return value


def _where(raw: Mapping[str, Any]) -> str:
    return f"block {raw.get('blockNumber')!r} index {raw.get('logIndex')!r}"
