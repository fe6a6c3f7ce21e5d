"""Hash-time locks and the hashes that commit to them: locksroot, balance hash, channel id.

Belongs here: the ``Lock`` value, its 96-byte on-chain encoding, ``locksroot`` and
``encode_locks`` (the same bytes the contract's unlock hashes), ``balance_hash``, the cap
on pending locks, and the canonical ordering and id of a channel's two participants. Each
function mirrors one computation of the token network contract byte for byte.

Also here: what a tuple of pending locks sums up to (``locked_total``, ``locksroot``,
``find_lock``), remembered per tuple *object*, and ``with_lock`` / ``without_lock``, which
make the next tuple and derive its summary from the previous one. Every proof commits to
all pending locks; with a hundred payments in flight, summing, hashing and scanning them
afresh for each proof was the largest cost of a mediator. An append extends a copy of the
previous Keccak state (no rehash); a removal hashes the packed bytes once, in C. The
results are exactly what the plain computation gives, so this changes no outcome.

Does not belong here: when a lock may be added, removed or expire (channel state
machine), or the settlement arithmetic (``settlement``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import sha3  # the same C Keccak as crypto.keccak256; here for its copyable state

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
    if isinstance(locks, tuple):
        return _summary(locks).root()
    return Locksroot(keccak256(encode_locks(locks)))


class _Summary:
    """What one tuple of pending locks sums up to (see the module docstring)."""

    __slots__ = ("_root", "by_hash", "hasher", "locked", "locks", "packed")

    def __init__(
        self,
        locks: tuple[Lock, ...],
        locked: int,
        packed: bytes,
        hasher: Any,
        by_hash: dict[bytes, Lock],
    ) -> None:
        self.locks = locks  # kept: the cache key is its id, which must not be reused
        self.locked = locked
        self.packed = packed
        self.hasher = hasher  # Keccak state after absorbing ``packed``
        self.by_hash = by_hash  # secrethash -> the first lock with it
        self._root: Locksroot | None = None

    def root(self) -> Locksroot:
        if self._root is None:
            self._root = Locksroot(self.hasher.digest()) if self.locks else EMPTY_LOCKSROOT
        return self._root


_SUMMARIES: dict[int, _Summary] = {}
_SUMMARIES_MAX: Final = 128  # a few per channel end are in use at a time


def _remember(summary: _Summary) -> _Summary:
    if len(_SUMMARIES) >= _SUMMARIES_MAX:
        # Insertion order: drop the oldest quarter (a channel's current tuple is usually
        # recent; one that is dropped is summed afresh once when it is used again).
        for key in list(_SUMMARIES)[: _SUMMARIES_MAX // 4]:
            del _SUMMARIES[key]
    _SUMMARIES[id(summary.locks)] = summary
    return summary


def _summary(locks: tuple[Lock, ...]) -> _Summary:
    known = _SUMMARIES.get(id(locks))
    if known is not None and known.locks is locks:
        return known
    packed = encode_locks(locks)
    by_hash: dict[bytes, Lock] = {}
    for lock in locks:
        by_hash.setdefault(lock.secrethash, lock)
    total = sum(lock.amount for lock in locks)
    return _remember(_Summary(locks, total, packed, sha3.keccak_256(packed), by_hash))


def locked_total(locks: tuple[Lock, ...]) -> TokenAmount:
    """The sum of the locks' amounts (L of a balance proof)."""
    return TokenAmount(_summary(locks).locked)


def find_lock(locks: tuple[Lock, ...], secrethash: SecretHash) -> Lock | None:
    """The first lock of ``secrethash`` in ``locks``, if any."""
    return _summary(locks).by_hash.get(secrethash)


def with_lock(locks: tuple[Lock, ...], lock: Lock) -> tuple[Lock, ...]:
    """``locks`` and then ``lock`` (a new pending lock goes last)."""
    result = (*locks, lock)
    previous = _summary(locks)
    encoded = lock.encode()
    hasher = previous.hasher.copy()
    hasher.update(encoded)
    by_hash = dict(previous.by_hash)
    by_hash.setdefault(lock.secrethash, lock)
    _remember(
        _Summary(result, previous.locked + lock.amount, previous.packed + encoded, hasher, by_hash)
    )
    return result


def without_lock(locks: tuple[Lock, ...], secrethash: SecretHash) -> tuple[Lock, ...]:
    """``locks`` without those of ``secrethash``, the others in their order."""
    previous = _summary(locks)
    lock = previous.by_hash.get(secrethash)
    if lock is None:
        return locks
    if len(previous.by_hash) != len(locks):  # two locks share a secrethash: not ours
        return tuple(item for item in locks if item.secrethash != secrethash)
    index = locks.index(lock)
    result = locks[:index] + locks[index + 1 :]
    start = index * LOCK_ENCODED_LENGTH
    packed = previous.packed[:start] + previous.packed[start + LOCK_ENCODED_LENGTH :]
    by_hash = dict(previous.by_hash)
    del by_hash[secrethash]
    _remember(
        _Summary(result, previous.locked - lock.amount, packed, sha3.keccak_256(packed), by_hash)
    )
    return result


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
