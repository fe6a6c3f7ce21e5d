"""Unit tests of offchain.protocol.locks: lock encoding, locksroot, balance hash, channel id.

References: eth_abi.encode and eth_utils.keccak, independent of our hand encoding.
"""

from __future__ import annotations

import hashlib

import pytest
from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak as ref_keccak
from hypothesis import given
from hypothesis import strategies as st

from offchain.protocol.errors import ValidationError
from offchain.protocol.locks import (
    LOCK_ENCODED_LENGTH,
    MAX_PENDING_LOCKS,
    NO_PROOF_BALANCE_HASH,
    Lock,
    balance_hash,
    channel_id,
    encode_locks,
    find_lock,
    locked_total,
    locksroot,
    ordered,
    secrethash_of,
    with_lock,
    without_lock,
)
from offchain.protocol.types import (
    Address,
    Locksroot,
    Secret,
    SecretHash,
    Timestamp,
    TokenAmount,
)

uint256 = st.integers(0, 2**256 - 1)
locks = st.builds(
    Lock,
    expiration=st.integers(0, 2**64 - 1).map(Timestamp),
    amount=uint256.map(TokenAmount),
    secrethash=st.binary(min_size=32, max_size=32).map(SecretHash),
)
addresses = st.binary(min_size=20, max_size=20).map(Address)

LOCK_A = Lock(Timestamp(1_700_000_000), TokenAmount(5), SecretHash(b"\xaa" * 32))
LOCK_B = Lock(Timestamp(1_700_000_600), TokenAmount(7), SecretHash(b"\xbb" * 32))


def _ref_lock(lock: Lock) -> bytes:
    return abi_encode(
        ["uint256", "uint256", "bytes32"], [lock.expiration, lock.amount, lock.secrethash]
    )


def test_locksroot_of_no_locks_is_keccak_of_empty() -> None:
    assert locksroot([]) == ref_keccak(b"")
    assert encode_locks([]) == b""


def test_locksroot_depends_on_order() -> None:
    assert locksroot([LOCK_A, LOCK_B]) != locksroot([LOCK_B, LOCK_A])
    assert locksroot([LOCK_A, LOCK_B]) == ref_keccak(_ref_lock(LOCK_A) + _ref_lock(LOCK_B))


@given(st.lists(locks, max_size=8))
def test_encode_locks_matches_abi_encode(pending: list[Lock]) -> None:
    packed = encode_locks(pending)
    assert len(packed) == LOCK_ENCODED_LENGTH * len(pending)
    assert packed == b"".join(_ref_lock(lock) for lock in pending)
    assert locksroot(pending) == ref_keccak(packed)


def test_balance_hash_known_answer() -> None:
    root = locksroot([LOCK_A])
    expected = ref_keccak(abi_encode(["uint256", "uint256", "bytes32"], [10, 5, root]))
    assert balance_hash(TokenAmount(10), TokenAmount(5), root) == expected
    # Pinned so that a change of both reference libraries would still be noticed.
    assert root.hex() == "95533d688759815ee945314659d1418dfb06afc76b385c1dcd9f31292e18b13c"
    assert expected.hex() == "c492753d8b98550cb607b67f303ed165deb40e93107eadc28520092b05306ab2"


@given(uint256, uint256, st.binary(min_size=32, max_size=32))
def test_balance_hash_matches_reference(transferred: int, locked: int, root: bytes) -> None:
    expected = ref_keccak(
        abi_encode(["uint256", "uint256", "bytes32"], [transferred, locked, root])
    )
    assert balance_hash(TokenAmount(transferred), TokenAmount(locked), Locksroot(root)) == expected


def test_no_proof_balance_hash_is_zero_and_never_a_real_hash() -> None:
    assert bytes(32) == NO_PROOF_BALANCE_HASH
    assert balance_hash(TokenAmount(0), TokenAmount(0), locksroot([])) != NO_PROOF_BALANCE_HASH


def test_balance_hash_rejects_out_of_range() -> None:
    with pytest.raises(ValidationError):
        balance_hash(TokenAmount(2**256), TokenAmount(0), locksroot([]))
    with pytest.raises(ValidationError):
        balance_hash(TokenAmount(0), TokenAmount(-1), locksroot([]))
    with pytest.raises(ValidationError):
        balance_hash(TokenAmount(0), TokenAmount(0), Locksroot(b"\x00" * 31))


@pytest.mark.parametrize(
    "args",
    [
        (Timestamp(2**64), TokenAmount(1), SecretHash(bytes(32))),
        (Timestamp(1), TokenAmount(2**256), SecretHash(bytes(32))),
        (Timestamp(1), TokenAmount(1), SecretHash(bytes(31))),
    ],
)
def test_lock_rejects_bad_fields(args: tuple[Timestamp, TokenAmount, SecretHash]) -> None:
    with pytest.raises(ValidationError):
        Lock(*args)


def test_max_pending_locks_is_documented_cap() -> None:
    assert MAX_PENDING_LOCKS == 256
    assert len(encode_locks([LOCK_A] * MAX_PENDING_LOCKS)) == 256 * 96


@given(addresses, addresses)
def test_channel_id_matches_abi_encode_of_ordered_pair(a: Address, b: Address) -> None:
    if a == b:
        with pytest.raises(ValidationError):
            channel_id(a, b)
        return
    low, high = sorted((a, b), key=lambda x: int.from_bytes(x, "big"))
    assert ordered(a, b) == (low, high)
    assert ordered(b, a) == (low, high)
    expected = ref_keccak(
        abi_encode(["address", "address"], [to_checksum_address(low), to_checksum_address(high)])
    )
    assert channel_id(a, b) == expected
    assert channel_id(b, a) == expected


def test_ordered_compares_as_numbers() -> None:
    small = Address(bytes.fromhex("00" * 19 + "ff"))
    large = Address(bytes.fromhex("01" + "00" * 19))
    assert ordered(large, small) == (small, large)


def test_channel_with_oneself_rejected() -> None:
    me = Address(b"\x05" * 20)
    with pytest.raises(ValidationError):
        ordered(me, me)
    with pytest.raises(ValidationError):
        channel_id(Address(b"\x05" * 19), me)


@given(st.binary(min_size=32, max_size=32))
def test_secrethash_of__is_sha256__cached_or_not(secret: bytes) -> None:
    expected = hashlib.sha256(secret).digest()
    assert secrethash_of(Secret(secret)) == expected
    assert secrethash_of(Secret(secret)) == expected  # from the cache
    assert secrethash_of(bytearray(secret)) == expected  # type: ignore[arg-type]  # unhashable


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 11)), max_size=60))
def test_with_and_without_lock__summaries_match_plain_computation(
    steps: list[tuple[bool, int]],
) -> None:
    # The remembered summaries (L, locksroot, lookup) of tuples made by with_lock and
    # without_lock equal the plain sum, hash of the packed bytes and scan, after any
    # sequence of appends and removals (including removing what is not there).
    pool = [
        Lock(Timestamp(1_000 + n), TokenAmount(n * 7 + 1), SecretHash(bytes([n]) * 32))
        for n in range(12)
    ]
    current: tuple[Lock, ...] = ()
    for add, n in steps:
        lock = pool[n]
        if add and lock not in current:
            current = with_lock(current, lock)
        else:
            current = without_lock(current, lock.secrethash)
        assert current == tuple(item for item in current)  # a plain tuple
        assert locked_total(current) == sum(item.amount for item in current)
        assert locksroot(current) == Locksroot(ref_keccak(encode_locks(current)))
        for candidate in pool:
            expected = next((x for x in current if x.secrethash == candidate.secrethash), None)
            assert find_lock(current, candidate.secrethash) == expected
        # A tuple the summaries never saw (e.g. decoded from a snapshot) is summed afresh.
        fresh = tuple(list(current))
        assert locksroot(fresh) == locksroot(current)
        assert locked_total(fresh) == locked_total(current)


def test_summaries__correct_after_many_tuples_were_forgotten() -> None:
    # More tuples than the summaries remember: the oldest are dropped and summed afresh
    # when used again, never confused with a newer tuple.
    kept = []
    current: tuple[Lock, ...] = ()
    for n in range(600):
        lock = Lock(Timestamp(10_000 + n), TokenAmount(n + 1), SecretHash(n.to_bytes(32, "big")))
        current = with_lock(current, lock)
        if n % 7 == 0:
            current = without_lock(current, current[0].secrethash)
        if n % 50 == 0:
            kept.append(current)
    for locks in (*kept, current):
        assert locksroot(locks) == Locksroot(ref_keccak(encode_locks(locks)))
        assert locked_total(locks) == sum(lock.amount for lock in locks)
        assert all(find_lock(locks, lock.secrethash) is lock for lock in locks)
