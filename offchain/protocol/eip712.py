"""EIP-712 typed data of the token network: the domain, the five signed structs, digests.

Belongs here: the domain separator, the type strings and type hashes of docs/spec.md
section 2 (copied byte for byte), one frozen dataclass per signed struct with its
``struct_hash``, and ``digest`` / ``sign`` / ``recover_signer`` over them. Encoding is by
hand: every field is one 32-byte word (unsigned integers big-endian and left-padded,
addresses left-padded, bytes32 as is), which is what ``abi.encode`` gives for these static
types and several times faster than a generic typed-data library.

Does not belong here: when a struct is valid for a channel (nonce order, generation,
expiry), which is channel logic, nor any wire encoding of messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Final

from offchain.protocol.crypto import keccak256, recover, sign_digest
from offchain.protocol.types import (
    ADDRESS_LENGTH,
    BYTES32_LENGTH,
    UINT32_MAX,
    UINT64_MAX,
    UINT256_MAX,
    AdditionalHash,
    Address,
    BalanceHash,
    ChannelId,
    Generation,
    Nonce,
    Signature,
    Timestamp,
    TokenAmount,
    check_bytes,
    check_uint,
)

DOMAIN_NAME: Final = "SmartMesh TokenNetwork"
DOMAIN_VERSION: Final = "1"

EIP712_DOMAIN_TYPE: Final = (
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
BALANCE_PROOF_TYPE: Final = (
    b"BalanceProof(bytes32 channelId,uint32 generation,uint64 nonce,bytes32 balanceHash,"
    b"bytes32 additionalHash)"
)
CLOSE_TYPE: Final = (
    b"Close(bytes32 channelId,uint32 generation,uint64 nonce,bytes32 balanceHash,"
    b"bytes32 additionalHash)"
)
DELEGATION_TYPE: Final = (
    b"Delegation(bytes32 channelId,uint32 generation,uint64 nonce,bytes32 balanceHash,"
    b"address delegate,uint256 reward)"
)
WITHDRAW_TYPE: Final = (
    b"Withdraw(bytes32 channelId,uint32 generation,address participant,uint256 totalWithdraw,"
    b"uint64 expiration)"
)
COOPERATIVE_SETTLE_TYPE: Final = (
    b"CooperativeSettle(bytes32 channelId,uint32 generation,uint256 totalWithdraw1,"
    b"uint256 totalWithdraw2,uint64 expiration)"
)

EIP712_DOMAIN_TYPEHASH: Final = keccak256(EIP712_DOMAIN_TYPE)
BALANCE_PROOF_TYPEHASH: Final = keccak256(BALANCE_PROOF_TYPE)
CLOSE_TYPEHASH: Final = keccak256(CLOSE_TYPE)
DELEGATION_TYPEHASH: Final = keccak256(DELEGATION_TYPE)
WITHDRAW_TYPEHASH: Final = keccak256(WITHDRAW_TYPE)
COOPERATIVE_SETTLE_TYPEHASH: Final = keccak256(COOPERATIVE_SETTLE_TYPE)

_NAME_HASH: Final = keccak256(DOMAIN_NAME.encode())
_VERSION_HASH: Final = keccak256(DOMAIN_VERSION.encode())
_ADDRESS_PAD: Final = bytes(BYTES32_LENGTH - ADDRESS_LENGTH)
_EIP191_PREFIX: Final = b"\x19\x01"


def _uint(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _address(value: bytes) -> bytes:
    return _ADDRESS_PAD + value


@dataclass(frozen=True, slots=True)
class Domain:
    """The EIP-712 domain of one token network on one chain.

    ``verifying_contract`` is the token network clone, not its implementation: a signature
    made for one network or chain never verifies on another.
    """

    chain_id: int
    verifying_contract: Address
    separator: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_uint(self.chain_id, UINT256_MAX, "chain id")
        check_bytes(self.verifying_contract, ADDRESS_LENGTH, "verifying contract")
        # Computed once: the separator is part of every digest.
        separator = keccak256(
            EIP712_DOMAIN_TYPEHASH
            + _NAME_HASH
            + _VERSION_HASH
            + _uint(self.chain_id)
            + _address(self.verifying_contract)
        )
        object.__setattr__(self, "separator", separator)


@dataclass(frozen=True, slots=True)
class BalanceProof:
    """The sender's statement "my transfers to my partner are (T, L, LR)"."""

    TYPE: ClassVar[bytes] = BALANCE_PROOF_TYPE

    channel_id: ChannelId
    generation: Generation
    nonce: Nonce
    balance_hash: BalanceHash
    additional_hash: AdditionalHash

    def __post_init__(self) -> None:
        check_bytes(self.channel_id, BYTES32_LENGTH, "channel id")
        check_uint(self.generation, UINT32_MAX, "generation")
        check_uint(self.nonce, UINT64_MAX, "nonce")
        check_bytes(self.balance_hash, BYTES32_LENGTH, "balance hash")
        check_bytes(self.additional_hash, BYTES32_LENGTH, "additional hash")

    def struct_hash(self) -> bytes:
        """Return ``hashStruct`` of this balance proof."""
        return keccak256(
            BALANCE_PROOF_TYPEHASH
            + self.channel_id
            + _uint(self.generation)
            + _uint(self.nonce)
            + self.balance_hash
            + self.additional_hash
        )


@dataclass(frozen=True, slots=True)
class Close:
    """The closer's consent that a third party closes with exactly the named partner proof."""

    TYPE: ClassVar[bytes] = CLOSE_TYPE

    channel_id: ChannelId
    generation: Generation
    nonce: Nonce
    balance_hash: BalanceHash
    additional_hash: AdditionalHash

    def __post_init__(self) -> None:
        check_bytes(self.channel_id, BYTES32_LENGTH, "channel id")
        check_uint(self.generation, UINT32_MAX, "generation")
        check_uint(self.nonce, UINT64_MAX, "nonce")
        check_bytes(self.balance_hash, BYTES32_LENGTH, "balance hash")
        check_bytes(self.additional_hash, BYTES32_LENGTH, "additional hash")

    def struct_hash(self) -> bytes:
        """Return ``hashStruct`` of this close authorisation."""
        return keccak256(
            CLOSE_TYPEHASH
            + self.channel_id
            + _uint(self.generation)
            + _uint(self.nonce)
            + self.balance_hash
            + self.additional_hash
        )


@dataclass(frozen=True, slots=True)
class Delegation:
    """The non-closer's permission for ``delegate`` (anyone if zero) to submit its update."""

    TYPE: ClassVar[bytes] = DELEGATION_TYPE

    channel_id: ChannelId
    generation: Generation
    nonce: Nonce
    balance_hash: BalanceHash
    delegate: Address
    reward: TokenAmount

    def __post_init__(self) -> None:
        check_bytes(self.channel_id, BYTES32_LENGTH, "channel id")
        check_uint(self.generation, UINT32_MAX, "generation")
        check_uint(self.nonce, UINT64_MAX, "nonce")
        check_bytes(self.balance_hash, BYTES32_LENGTH, "balance hash")
        check_bytes(self.delegate, ADDRESS_LENGTH, "delegate")
        check_uint(self.reward, UINT256_MAX, "reward")

    def struct_hash(self) -> bytes:
        """Return ``hashStruct`` of this delegation."""
        return keccak256(
            DELEGATION_TYPEHASH
            + self.channel_id
            + _uint(self.generation)
            + _uint(self.nonce)
            + self.balance_hash
            + _address(self.delegate)
            + _uint(self.reward)
        )


@dataclass(frozen=True, slots=True)
class Withdraw:
    """Raises ``participant``'s total withdraw; signed by both ends, valid until expiration."""

    TYPE: ClassVar[bytes] = WITHDRAW_TYPE

    channel_id: ChannelId
    generation: Generation
    participant: Address
    total_withdraw: TokenAmount
    expiration: Timestamp

    def __post_init__(self) -> None:
        check_bytes(self.channel_id, BYTES32_LENGTH, "channel id")
        check_uint(self.generation, UINT32_MAX, "generation")
        check_bytes(self.participant, ADDRESS_LENGTH, "participant")
        check_uint(self.total_withdraw, UINT256_MAX, "total withdraw")
        check_uint(self.expiration, UINT64_MAX, "expiration")

    def struct_hash(self) -> bytes:
        """Return ``hashStruct`` of this withdraw."""
        return keccak256(
            WITHDRAW_TYPEHASH
            + self.channel_id
            + _uint(self.generation)
            + _address(self.participant)
            + _uint(self.total_withdraw)
            + _uint(self.expiration)
        )


@dataclass(frozen=True, slots=True)
class CooperativeSettle:
    """Close and settle at once; signed by both ends.

    The amounts are each participant's final total withdraw (participant N is paid
    ``total_withdrawN - W_N``); they must add up to ``D1 + D2``.
    """

    TYPE: ClassVar[bytes] = COOPERATIVE_SETTLE_TYPE

    channel_id: ChannelId
    generation: Generation
    total_withdraw1: TokenAmount
    total_withdraw2: TokenAmount
    expiration: Timestamp

    def __post_init__(self) -> None:
        check_bytes(self.channel_id, BYTES32_LENGTH, "channel id")
        check_uint(self.generation, UINT32_MAX, "generation")
        check_uint(self.total_withdraw1, UINT256_MAX, "total withdraw 1")
        check_uint(self.total_withdraw2, UINT256_MAX, "total withdraw 2")
        check_uint(self.expiration, UINT64_MAX, "expiration")

    def struct_hash(self) -> bytes:
        """Return ``hashStruct`` of this cooperative settle."""
        return keccak256(
            COOPERATIVE_SETTLE_TYPEHASH
            + self.channel_id
            + _uint(self.generation)
            + _uint(self.total_withdraw1)
            + _uint(self.total_withdraw2)
            + _uint(self.expiration)
        )


SignedStruct = BalanceProof | Close | Delegation | Withdraw | CooperativeSettle
"""Every struct a participant signs for the token network."""


def digest(domain: Domain, struct: SignedStruct) -> bytes:
    """Return ``keccak256(0x19 ‖ 0x01 ‖ domainSeparator ‖ hashStruct(struct))``."""
    return keccak256(_EIP191_PREFIX + domain.separator + struct.struct_hash())


def sign(priv: bytes, domain: Domain, struct: SignedStruct) -> Signature:
    """Sign ``struct`` in ``domain`` with the 32-byte private key ``priv``."""
    return sign_digest(priv, digest(domain, struct))


def recover_signer(domain: Domain, struct: SignedStruct, sig: bytes) -> Address:
    """Return who signed ``struct`` in ``domain``; raise ``InvalidSignature`` if malformed.

    The caller still compares the result with the expected signer: a valid signature by
    someone else, or over another domain, recovers some other address.
    """
    return recover(digest(domain, struct), sig)
