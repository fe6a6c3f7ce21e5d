"""NewTypes for the quantities and byte strings of the protocol, with checked constructors.

Belongs here: a ``NewType`` per domain quantity, the range constants they obey, and one
small ``as_*`` constructor per type that checks the Python type, the length or the range
and raises ``ValidationError``. Byte strings are raw binary (an address is 20 bytes, not
hex); hex conversion happens only at the edges of the program, never here.

Does not belong here: hashing, signing, encoding of structs, or any logic beyond a range
check. The constructors are for edges (decoders, user input, tests); inside the core a
value that already has its NewType is trusted.
"""

from __future__ import annotations

from typing import NewType

from offchain.protocol.errors import ValidationError

UINT256_MAX = 2**256 - 1
UINT64_MAX = 2**64 - 1
UINT32_MAX = 2**32 - 1

Address = NewType("Address", bytes)
"""20 raw bytes, the last 20 bytes of keccak256 of the uncompressed public key."""
ChannelId = NewType("ChannelId", bytes)
"""32 bytes, ``keccak256(abi.encode(participant1, participant2))``."""
Secret = NewType("Secret", bytes)
"""32 bytes whose sha256 is the secrethash of a lock."""
SecretHash = NewType("SecretHash", bytes)
"""32 bytes, ``sha256(secret)``."""
Locksroot = NewType("Locksroot", bytes)
"""32 bytes, keccak256 of the packed pending locks (see ``locks.locksroot``)."""
BalanceHash = NewType("BalanceHash", bytes)
"""32 bytes, ``keccak256(abi.encode(T, L, locksroot))``; all zeros means "no proof"."""
AdditionalHash = NewType("AdditionalHash", bytes)
"""32 bytes binding a balance proof to the off-chain message that carried it."""
Signature = NewType("Signature", bytes)
"""65 bytes ``r ‖ s ‖ v`` with v in {27, 28} and low s."""
PrivateKey = NewType("PrivateKey", bytes)
"""32 bytes, a secp256k1 scalar in [1, n-1]. Never log or repr it."""

TokenAmount = NewType("TokenAmount", int)
"""Token base units, 0 ..= 2**256-1 (a uint256 on chain)."""
Nonce = NewType("Nonce", int)
"""Balance-proof counter, 0 ..= 2**64-1; 0 means "no proof"."""
Generation = NewType("Generation", int)
"""Opening counter of a channel, 0 ..= 2**32-1; the first opening is 1."""
Timestamp = NewType("Timestamp", int)
"""Seconds since the Unix epoch as ``block.timestamp`` counts them, 0 ..= 2**64-1."""

ZERO_ADDRESS = Address(bytes(20))

ADDRESS_LENGTH = 20
BYTES32_LENGTH = 32
SIGNATURE_LENGTH = 65

_BytesLike = bytes | bytearray | memoryview


def _fixed_bytes(value: object, length: int, name: str) -> bytes:
    # Refuse str explicitly: a hex string of the right length is a classic edge bug.
    if not isinstance(value, bytes | bytearray | memoryview):
        raise ValidationError(f"{name} must be bytes, not {type(value).__name__}")
    raw = bytes(value)
    if len(raw) != length:
        raise ValidationError(f"{name} must be {length} bytes, got {len(raw)}")
    return raw


def _bounded_int(value: object, maximum: int, name: str) -> int:
    # bool is an int subclass; True as an amount is always a bug at the caller.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValidationError(f"{name} must be an int, not {type(value).__name__}")
    if not 0 <= value <= maximum:
        raise ValidationError(f"{name} out of range 0..{maximum}: {value}")
    return int(value)


def as_address(value: _BytesLike) -> Address:
    """Check that ``value`` is 20 raw bytes and return it as an ``Address``."""
    return Address(_fixed_bytes(value, ADDRESS_LENGTH, "address"))


def as_channel_id(value: _BytesLike) -> ChannelId:
    """Check that ``value`` is 32 bytes and return it as a ``ChannelId``."""
    return ChannelId(_fixed_bytes(value, BYTES32_LENGTH, "channel id"))


def as_secret(value: _BytesLike) -> Secret:
    """Check that ``value`` is 32 bytes and return it as a ``Secret``."""
    return Secret(_fixed_bytes(value, BYTES32_LENGTH, "secret"))


def as_secrethash(value: _BytesLike) -> SecretHash:
    """Check that ``value`` is 32 bytes and return it as a ``SecretHash``."""
    return SecretHash(_fixed_bytes(value, BYTES32_LENGTH, "secrethash"))


def as_locksroot(value: _BytesLike) -> Locksroot:
    """Check that ``value`` is 32 bytes and return it as a ``Locksroot``."""
    return Locksroot(_fixed_bytes(value, BYTES32_LENGTH, "locksroot"))


def as_balance_hash(value: _BytesLike) -> BalanceHash:
    """Check that ``value`` is 32 bytes and return it as a ``BalanceHash``."""
    return BalanceHash(_fixed_bytes(value, BYTES32_LENGTH, "balance hash"))


def as_additional_hash(value: _BytesLike) -> AdditionalHash:
    """Check that ``value`` is 32 bytes and return it as an ``AdditionalHash``."""
    return AdditionalHash(_fixed_bytes(value, BYTES32_LENGTH, "additional hash"))


def as_signature(value: _BytesLike) -> Signature:
    """Check only the length (65 bytes); ``crypto.recover`` checks r, s and v."""
    return Signature(_fixed_bytes(value, SIGNATURE_LENGTH, "signature"))


def as_token_amount(value: int) -> TokenAmount:
    """Check that ``value`` fits a uint256 and return it as a ``TokenAmount``."""
    return TokenAmount(_bounded_int(value, UINT256_MAX, "token amount"))


def as_nonce(value: int) -> Nonce:
    """Check that ``value`` fits a uint64 and return it as a ``Nonce``."""
    return Nonce(_bounded_int(value, UINT64_MAX, "nonce"))


def as_generation(value: int) -> Generation:
    """Check that ``value`` fits a uint32 and return it as a ``Generation``."""
    return Generation(_bounded_int(value, UINT32_MAX, "generation"))


def as_timestamp(value: int) -> Timestamp:
    """Check that ``value`` fits a uint64 and return it as a ``Timestamp``."""
    return Timestamp(_bounded_int(value, UINT64_MAX, "timestamp"))


def check_uint(value: object, maximum: int, name: str) -> int:
    """Check that ``value`` is a non-bool int in ``0..maximum``; for dataclass validation."""
    # The common case in one test, without a call: the frozen structs of the hot path
    # check their fields with this dozens of times per payment (a plain int is no bool).
    if type(value) is int and 0 <= value <= maximum:
        return value
    return _bounded_int(value, maximum, name)


def check_bytes(value: object, length: int, name: str) -> bytes:
    """Check that ``value`` is exactly ``length`` immutable bytes; for dataclass validation.

    Stricter than the ``as_*`` constructors: a frozen dataclass cannot convert its field, and a
    ``bytearray`` field would make the instance unhashable and mutable behind our back.
    """
    if not isinstance(value, bytes):
        raise ValidationError(f"{name} must be bytes, not {type(value).__name__}")
    if len(value) != length:
        raise ValidationError(f"{name} must be {length} bytes, got {len(value)}")
    return value
