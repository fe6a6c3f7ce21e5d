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

# coincurve's own CFFI binding of libsecp256k1, which its key classes call through four
# layers of Python (argument checks, cdata allocation, wrapping, formatting). Signing and
# recovery call it directly: that saves about 1 us of 18 per signature and 1.5 us of 31
# per recovery, twenty of each per mediated payment. The same library calls with the same
# arguments as coincurve's `sign_recoverable` / `from_signature_and_message` / `format`;
# tests/unit/test_crypto.py holds both to coincurve's public API and to py-ecc.
from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT

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
    return _address_of_point(uncompressed[1:])


@functools.lru_cache(maxsize=1024)
def _address_of_point(xy: bytes) -> Address:
    # Cached: a node checks signatures of a few partners over and over, and looking the
    # 64 bytes up is cheaper than hashing them again.
    return Address(keccak256(xy)[12:])


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
    secret: bytes = _coincurve_key(priv).secret  # checked and cached once per key
    ctx = GLOBAL_CONTEXT.ctx
    recoverable = ffi.new("secp256k1_ecdsa_recoverable_signature *")
    # NULL nonce function and data: libsecp256k1's default, RFC 6979 (as coincurve's).
    if not lib.secp256k1_ecdsa_sign_recoverable(
        ctx, recoverable, digest, secret, ffi.NULL, ffi.NULL
    ):
        # Unreachable: the key was checked when cached, and RFC 6979 nonces never fail.
        raise ValidationError("libsecp256k1 refused to sign")
    compact = ffi.new("unsigned char[64]")
    recovery_id = ffi.new("int *")
    lib.secp256k1_ecdsa_recoverable_signature_serialize_compact(
        ctx, compact, recovery_id, recoverable
    )
    rs: bytes = ffi.buffer(compact)[:]
    assert int.from_bytes(rs[32:], "big") <= SECP256K1_HALF_N, "libsecp256k1 gave high s"
    return Signature(rs + bytes((recovery_id[0] + _V_OFFSET,)))


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
    ctx = GLOBAL_CONTEXT.ctx
    recoverable = ffi.new("secp256k1_ecdsa_recoverable_signature *")
    public_key = ffi.new("secp256k1_pubkey *")
    if not (
        lib.secp256k1_ecdsa_recoverable_signature_parse_compact(
            ctx, recoverable, sig[:64], v - _V_OFFSET
        )
        and lib.secp256k1_ecdsa_recover(ctx, public_key, recoverable, digest)
    ):
        raise InvalidSignature("signature does not recover a public key")
    uncompressed = ffi.new("unsigned char[65]")
    length = ffi.new("size_t *", 65)
    lib.secp256k1_ec_pubkey_serialize(
        ctx, uncompressed, length, public_key, lib.SECP256K1_EC_UNCOMPRESSED
    )
    address = _address_of_point(ffi.buffer(uncompressed)[1:])  # 0x04 ‖ X ‖ Y: X ‖ Y
    if address == ZERO_ADDRESS:
        raise InvalidSignature("signature recovers the zero address")
    return address
