"""Hash functions and secp256k1 keys: keccak256, sha256, sign and strict recovery.

Belongs here: the primitives every signed struct and hashlock is built on, over raw bytes,
backed by native code (libsecp256k1 through coincurve, keccak from safe-pysha3) because
they sit on every hot path. Recovery is strict on purpose and matches what the contracts
accept: 65 bytes ``r ‖ s ‖ v``, v in {27, 28}, 0 < r < n, 0 < s <= n/2 (low-s, so a
signature has exactly one valid encoding), and a non-zero recovered address.

Does not belong here: what is signed (see ``eip712``), hex or checksum formatting, key
storage, or any source of randomness. Keys come in as bytes from the caller.
"""

from __future__ import annotations

import functools
import hashlib

import coincurve
import sha3  # safe-pysha3: C Keccak, about 3.5x faster than pycryptodome's here

from offchain.protocol.errors import InvalidSignature, ValidationError
from offchain.protocol.types import (
    ZERO_ADDRESS,
    Address,
    PrivateKey,
    Signature,
)

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
"""Order of the secp256k1 group."""
SECP256K1_HALF_N = SECP256K1_N // 2
"""Largest s accepted (EIP-2, OpenZeppelin ECDSA): s <= n/2."""

_DIGEST_LENGTH = 32
_V_OFFSET = 27


def keccak256(data: bytes) -> bytes:
    """Return the 32-byte Keccak-256 (Ethereum's, not NIST SHA3-256) of ``data``."""
    digest: bytes = sha3.keccak_256(data).digest()
    return digest


def sha256(data: bytes) -> bytes:
    """Return the 32-byte SHA-256 of ``data``; the hashlock function (secrethash)."""
    return hashlib.sha256(data).digest()


def as_private_key(value: bytes) -> PrivateKey:
    """Check that ``value`` is 32 bytes encoding a scalar in [1, n-1]."""
    if not isinstance(value, bytes) or len(value) != 32:
        raise ValidationError("private key must be 32 bytes")
    if not 0 < int.from_bytes(value, "big") < SECP256K1_N:
        # The message never contains the key itself.
        raise ValidationError("private key out of range 1..n-1")
    return PrivateKey(value)


@functools.lru_cache(maxsize=64)
def _coincurve_key(priv: bytes) -> coincurve.PrivateKey:
    # Cached: building the key object derives the public key (a point multiplication),
    # which would otherwise double the cost of every signature. A node holds one key.
    return coincurve.PrivateKey(as_private_key(priv))


def _address_from_public_key(public_key: coincurve.PublicKey) -> Address:
    # Uncompressed SEC1 encoding is 0x04 ‖ X ‖ Y; Ethereum hashes X ‖ Y.
    uncompressed: bytes = public_key.format(compressed=False)
    return Address(keccak256(uncompressed[1:])[12:])


def address_from_private_key(priv: bytes) -> Address:
    """Return the Ethereum address of the private key ``priv`` (32 bytes)."""
    return _address_from_public_key(_coincurve_key(priv).public_key)


def sign_digest(priv: bytes, digest: bytes) -> Signature:
    """Sign a 32-byte ``digest`` (already hashed) and return ``r ‖ s ‖ v``, v in {27, 28}.

    libsecp256k1 always produces low-s signatures with RFC 6979 nonces, so the result is
    deterministic and canonical; the assertion guards that assumption.
    """
    if not isinstance(digest, bytes) or len(digest) != _DIGEST_LENGTH:
        raise ValidationError("digest must be 32 bytes")
    raw: bytes = _coincurve_key(priv).sign_recoverable(digest, hasher=None)
    assert int.from_bytes(raw[32:64], "big") <= SECP256K1_HALF_N, "libsecp256k1 gave high s"
    return Signature(raw[:64] + bytes((raw[64] + _V_OFFSET,)))


def recover(digest: bytes, sig: bytes) -> Address:
    """Return the address that signed ``digest``, or raise ``InvalidSignature``.

    Rejects everything the contracts reject: a length other than 65, v outside {27, 28},
    r outside [1, n-1], s outside [1, n/2], a point that does not recover, and the zero
    address. Without the low-s rule anyone could turn a valid signature into a second
    valid one (s' = n - s, v flipped) and defeat any replay check keyed on signatures.
    """
    if not isinstance(digest, bytes) or len(digest) != _DIGEST_LENGTH:
        raise ValidationError("digest must be 32 bytes")
    if not isinstance(sig, bytes) or len(sig) != 65:
        raise InvalidSignature("signature must be 65 bytes")
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:64], "big")
    v = sig[64]
    if v not in (27, 28):
        raise InvalidSignature(f"signature v must be 27 or 28, got {v}")
    if not 0 < r < SECP256K1_N:
        raise InvalidSignature("signature r out of range")
    if not 0 < s <= SECP256K1_HALF_N:
        raise InvalidSignature("signature s out of range (zero or high-s)")
    try:
        public_key = coincurve.PublicKey.from_signature_and_message(
            sig[:64] + bytes((v - _V_OFFSET,)), digest, hasher=None
        )
    except Exception as exc:  # coincurve raises plain Exception when no point recovers
        raise InvalidSignature("signature does not recover a public key") from exc
    address = _address_from_public_key(public_key)
    if address == ZERO_ADDRESS:
        raise InvalidSignature("signature recovers the zero address")
    return address
