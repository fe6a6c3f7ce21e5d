"""Hash-time locks and the hashes that commit to them: locksroot, balance hash, channel id.

Belongs here: the ``Lock`` value, its 96-byte on-chain encoding, ``locksroot`` and
``encode_locks`` (the same bytes the contract's unlock hashes), ``balance_hash``, the cap
on pending locks, and the canonical ordering and id of a channel's two participants. Each
function mirrors one computation of the token network contract byte for byte.

Does not belong here: when a lock may be added, removed or expire (channel state
machine), or the settlement arithmetic (``settlement``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from offchain.protocol.crypto import keccak256, sha256
from offchain.protocol.errors import ValidationError
from offchain.protocol.types import (
    ADDRESS_LENGTH,
    BYTES32_LENGTH,
    UINT64_MAX,
    UINT256_MAX,
    Address,
    BalanceHash,
    ChannelId,
    Locksroot,
    Secret,
    SecretHash,
    Timestamp,
    TokenAmount,
    check_bytes,
    check_uint,
)

LOCK_ENCODED_LENGTH: Final = 96
"""Bytes per lock in ``encode_locks``: uint256 expiration ‖ uint256 amount ‖ bytes32."""

MAX_PENDING_LOCKS: Final = 256
"""Cap on pending locks per direction of a channel.

The contract's unlock receives the packed locks (96 bytes each), hashes them and walks
them once, looking each secrethash up in the secret registry. Estimate for 256 locks:
24 KiB of calldata (at most about 0.4 M gas at 16 gas a byte, or 1 M under the EIP-7623
floor price), one cold storage read and a static call per lock (about 0.8 M gas), and a
keccak over 24 KiB (a few thousand gas): under 2 M gas in all, a small fraction of a
block's gas limit, so an unlock can never be priced out of a block. A node refuses to
add a lock beyond the cap; a partner that does is sending invalid input.
"""

NO_PROOF_BALANCE_HASH: Final = BalanceHash(bytes(BYTES32_LENGTH))
"""The zero balance hash: "no balance proof" (T = 0, L = 0), used with nonce 0."""

_ADDRESS_PAD: Final = bytes(BYTES32_LENGTH - ADDRESS_LENGTH)


@dataclass(frozen=True, slots=True)
class Lock:
    """A pending hash-time lock: ``amount`` goes to the receiver if the preimage of
    ``secrethash`` is registered on chain at a time ``<= expiration`` (seconds)."""

    expiration: Timestamp
    amount: TokenAmount
    secrethash: SecretHash

    def __post_init__(self) -> None:
        # Timestamps are uint64 off chain even though the lock encodes them as uint256.
        check_uint(self.expiration, UINT64_MAX, "lock expiration")
        check_uint(self.amount, UINT256_MAX, "lock amount")
        check_bytes(self.secrethash, BYTES32_LENGTH, "lock secrethash")

    def encode(self) -> bytes:
        """Return the 96-byte packed form ``expiration ‖ amount ‖ secrethash``."""
        return _packed(self.expiration, self.amount, self.secrethash)


@functools.lru_cache(maxsize=16_384)
def _packed(expiration: int, amount: int, secrethash: bytes) -> bytes:
    # Every proof hashes ALL pending locks (the locksroot): with many payments in flight a
    # mediator re-encodes the same locks for each new proof, so remember their bytes.
    return expiration.to_bytes(32, "big") + amount.to_bytes(32, "big") + secrethash


def encode_locks(locks: Sequence[Lock]) -> bytes:
    """Concatenate the locks in creation order: the ``locks`` argument of the unlock call."""
    return b"".join(lock.encode() for lock in locks)


def locksroot(locks: Sequence[Lock]) -> Locksroot:
    """Return keccak256 of the packed locks in creation order; ``keccak256(b"")`` if none.

    The cap ``MAX_PENDING_LOCKS`` is a channel rule and is not enforced here, so that a
    proof received from a misbehaving partner can still be hashed and judged.
    """
    if not locks:
        return EMPTY_LOCKSROOT
    return Locksroot(keccak256(encode_locks(locks)))


EMPTY_LOCKSROOT: Final = Locksroot(keccak256(b""))
"""The locksroot of no pending locks."""


def balance_hash(
    transferred: TokenAmount, locked: TokenAmount, locksroot: Locksroot
) -> BalanceHash:
    """Return ``keccak256(abi.encode(uint256 T, uint256 L, bytes32 LR))``."""
    check_uint(transferred, UINT256_MAX, "transferred amount")
    check_uint(locked, UINT256_MAX, "locked amount")
    check_bytes(locksroot, BYTES32_LENGTH, "locksroot")
    return BalanceHash(
        keccak256(transferred.to_bytes(32, "big") + locked.to_bytes(32, "big") + locksroot)
    )


def ordered(a: Address, b: Address) -> tuple[Address, Address]:
    """Return ``(participant1, participant2)``: the two addresses, smaller first.

    Equal-length big-endian byte strings compare like the 160-bit numbers they encode,
    which is how the contract orders them. A channel with oneself does not exist.
    """
    check_bytes(a, ADDRESS_LENGTH, "participant")
    check_bytes(b, ADDRESS_LENGTH, "participant")
    if a == b:
        raise ValidationError("a channel needs two different participants")
    return (a, b) if a < b else (b, a)


def secrethash_of(secret: Secret) -> SecretHash:
    """Return ``sha256(secret)``, the hashlock a secret opens."""
    try:
        return _cached_secrethash(secret)
    except TypeError:  # unhashable (a bytearray): hashed as ever, just not cached
        return SecretHash(sha256(secret))


@functools.lru_cache(maxsize=4096)
def _cached_secrethash(secret: Secret) -> SecretHash:
    # Cached: one payment's secret is hashed by every hop, several times each (the reveal,
    # the unlock made, the unlock checked, the mirror test), and a look-up is cheaper.
    return SecretHash(sha256(secret))


@functools.lru_cache(maxsize=4096)
def channel_id(a: Address, b: Address) -> ChannelId:
    """Return ``keccak256(abi.encode(participant1, participant2))`` for the pair, any order."""
    # Cached: every balance proof signed or checked names its channel (a node has few).
    p1, p2 = ordered(a, b)
    return ChannelId(keccak256(_ADDRESS_PAD + p1 + _ADDRESS_PAD + p2))
