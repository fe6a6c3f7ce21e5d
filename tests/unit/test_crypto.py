"""Unit tests of offchain.protocol.crypto: hashes, keys, signing and strict recovery.

Differential checks against independent implementations: eth_account (key to address)
and py_ecc (pure-Python secp256k1 recovery and signing).
"""

from __future__ import annotations

import hashlib

import coincurve
import pytest
from eth_account import Account
from hypothesis import given
from hypothesis import strategies as st
from py_ecc.secp256k1 import secp256k1 as py_ecc_secp256k1

from offchain.protocol.crypto import (
    SECP256K1_HALF_N,
    SECP256K1_N,
    address_from_private_key,
    as_private_key,
    keccak256,
    recover,
    sha256,
    sign_digest,
)
from offchain.protocol.errors import InvalidSignature, ProtocolError, ValidationError

SECP256K1_P = 2**256 - 2**32 - 977

private_keys = st.integers(min_value=1, max_value=SECP256K1_N - 1).map(
    lambda k: k.to_bytes(32, "big")
)
digests = st.binary(min_size=32, max_size=32)

PRIV = (0xC0FFEE).to_bytes(32, "big")
DIGEST = keccak256(b"a message")


def _split(sig: bytes) -> tuple[int, int, int]:
    return int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]


def _join(r: int, s: int, v: int) -> bytes:
    return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes((v,))


def _py_ecc_address(digest: bytes, sig: bytes) -> bytes:
    r, s, v = _split(sig)
    x, y = py_ecc_secp256k1.ecdsa_raw_recover(digest, (v, r, s))
    return keccak256(x.to_bytes(32, "big") + y.to_bytes(32, "big"))[12:]


def test_keccak256_known_answers() -> None:
    assert keccak256(b"").hex() == (
        "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )
    # keccak256, not NIST SHA3-256 (which hashes b"" to a7ffc6f8...).
    assert keccak256(b"") != hashlib.sha3_256(b"").digest()


def test_sha256_is_hashlib_sha256() -> None:
    assert sha256(b"secret") == hashlib.sha256(b"secret").digest()


def test_exception_taxonomy() -> None:
    assert issubclass(InvalidSignature, ValidationError)
    assert issubclass(ValidationError, ProtocolError)
    assert issubclass(ValidationError, ValueError)


@given(private_keys)
def test_address_matches_eth_account(priv: bytes) -> None:
    expected = bytes.fromhex(Account.from_key(priv).address[2:])
    assert address_from_private_key(priv) == expected


@pytest.mark.parametrize(
    "priv",
    [bytes(32), SECP256K1_N.to_bytes(32, "big"), b"\xff" * 32, b"\x01" * 31, b"\x01" * 33],
)
def test_private_key_out_of_range_rejected(priv: bytes) -> None:
    with pytest.raises(ValidationError):
        as_private_key(priv)
    with pytest.raises(ValidationError):
        address_from_private_key(priv)


@given(private_keys, digests)
def test_sign_then_recover_round_trip(priv: bytes, digest: bytes) -> None:
    sig = sign_digest(priv, digest)
    r, s, v = _split(sig)
    assert len(sig) == 65
    assert v in (27, 28)
    assert 0 < s <= SECP256K1_HALF_N
    assert 0 < r < SECP256K1_N
    assert recover(digest, sig) == address_from_private_key(priv)


@given(private_keys, digests)
def test_sign_and_recover_match_coincurve_public_api(priv: bytes, digest: bytes) -> None:
    # crypto calls libsecp256k1 through coincurve's binding directly: the same results as
    # coincurve's own key classes, byte for byte.
    raw = coincurve.PrivateKey(priv).sign_recoverable(digest, hasher=None)
    sig = sign_digest(priv, digest)
    assert sig == raw[:64] + bytes((raw[64] + 27,))
    public_key = coincurve.PublicKey.from_signature_and_message(raw, digest, hasher=None)
    assert recover(digest, sig) == keccak256(public_key.format(compressed=False)[1:])[12:]


def test_signing_is_deterministic() -> None:
    assert sign_digest(PRIV, DIGEST) == sign_digest(PRIV, DIGEST)


@pytest.mark.parametrize("seed", range(4))
def test_recover_matches_py_ecc(seed: int) -> None:
    priv = keccak256(b"key %d" % seed)
    digest = keccak256(b"digest %d" % seed)
    sig = sign_digest(priv, digest)
    assert _py_ecc_address(digest, sig) == recover(digest, sig)
    assert recover(digest, sig) == address_from_private_key(priv)


@pytest.mark.parametrize("seed", range(4))
def test_recover_accepts_py_ecc_signature_normalised_to_low_s(seed: int) -> None:
    priv = keccak256(b"py_ecc key %d" % seed)
    digest = keccak256(b"py_ecc digest %d" % seed)
    v, r, s = py_ecc_secp256k1.ecdsa_raw_sign(digest, priv)
    if s > SECP256K1_HALF_N:
        s, v = SECP256K1_N - s, 55 - v  # 27 <-> 28
    assert recover(digest, _join(r, s, v)) == address_from_private_key(priv)


def test_high_s_twin_rejected() -> None:
    sig = sign_digest(PRIV, DIGEST)
    r, s, v = _split(sig)
    twin = _join(r, SECP256K1_N - s, 55 - v)
    # The twin is a mathematically valid signature by the same key ...
    assert _py_ecc_address(DIGEST, twin) == address_from_private_key(PRIV)
    # ... which strict recovery refuses (malleability).
    with pytest.raises(InvalidSignature):
        recover(DIGEST, twin)


@pytest.mark.parametrize("v", [0, 1, 2, 26, 29, 35, 255])
def test_bad_v_rejected(v: int) -> None:
    r, s, _ = _split(sign_digest(PRIV, DIGEST))
    with pytest.raises(InvalidSignature):
        recover(DIGEST, _join(r, s, v))


@pytest.mark.parametrize("r", [0, SECP256K1_N, 2**256 - 1])
def test_r_out_of_range_rejected(r: int) -> None:
    _, s, v = _split(sign_digest(PRIV, DIGEST))
    with pytest.raises(InvalidSignature):
        recover(DIGEST, _join(r, s, v))


@pytest.mark.parametrize("s", [0, SECP256K1_HALF_N + 1, SECP256K1_N - 1, SECP256K1_N])
def test_s_out_of_range_rejected(s: int) -> None:
    r, _, v = _split(sign_digest(PRIV, DIGEST))
    with pytest.raises(InvalidSignature):
        recover(DIGEST, _join(r, s, v))


def test_r_not_on_curve_rejected() -> None:
    # Smallest x for which x^3 + 7 is not a square mod p: no point has it as x-coordinate.
    r = next(
        x
        for x in range(1, 100)
        if pow((x**3 + 7) % SECP256K1_P, (SECP256K1_P - 1) // 2, SECP256K1_P) != 1
    )
    with pytest.raises(InvalidSignature):
        recover(DIGEST, _join(r, 1, 27))


@pytest.mark.parametrize("length", [0, 64, 66])
def test_wrong_length_rejected(length: int) -> None:
    sig = sign_digest(PRIV, DIGEST)
    bad = (sig + b"\x00")[:length] if length <= 65 else sig + b"\x00"
    with pytest.raises(InvalidSignature):
        recover(DIGEST, bad)


def test_digest_must_be_32_bytes() -> None:
    with pytest.raises(ValidationError):
        sign_digest(PRIV, b"short")
    with pytest.raises(ValidationError):
        recover(b"short", sign_digest(PRIV, DIGEST))


def test_other_digest_recovers_other_address() -> None:
    sig = sign_digest(PRIV, DIGEST)
    assert recover(keccak256(b"another message"), sig) != address_from_private_key(PRIV)
