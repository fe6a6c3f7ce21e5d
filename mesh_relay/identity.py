"""Node identity: keccak256, addresses, secp256k1 signatures, recovery and ECDH, seeded randomness.

Belongs here: what a node needs to be an Ethereum address and to prove it. A node's
address is the last 20 bytes of keccak256 of its uncompressed public key; it proves it by
signing a 32-byte digest (65 bytes ``r ‖ s ‖ v``, v in {27, 28}, low s). Anyone learns a
node's public key by recovering it from something the node signed (a hello or a route
advertisement), or from an envelope it sent (whose key must hash to its address):
that is why the end-to-end encryption needs no key exchange. ``Drbg`` turns the seed the
adapter passes in (from ``os.urandom``) into nonces, because the core never reads a
source of randomness itself.

Three pure functions are memoised, because the same inputs reach a node again and again:
recovery (a route advertisement from every neighbour, a hello per interval) in a bounded
LRU cache shared by the process, so the simulator's thousand nodes make a 1,000-node run
affordable without changing what any node checks; the address of a public key
(``address_of_key``, checked on every envelope a node opens); and each node's static ECDH
secret with a peer (``Identity.ecdh``, per identity, the same for every message between
the two nodes).

Does not belong here: what is signed or derived (``frames``, ``envelope`` build the
digests and keys), key storage, hex formatting. This module imports nothing from
``offchain``: the mesh knows nothing of payments and keeps its own small copy of these
primitives.
"""

from __future__ import annotations

import functools
import hashlib
from collections import OrderedDict
from typing import NewType

import coincurve
import sha3  # safe-pysha3: C keccak, 4-8x faster per call than pycryptodome's

from mesh_relay.errors import EnvelopeError, MeshValidationError

Address = NewType("Address", bytes)
"""20 raw bytes: the node's Ethereum address."""

ADDRESS_LENGTH = 20
SIGNATURE_LENGTH = 65
COMPRESSED_KEY_LENGTH = 33
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SECP256K1_HALF_N = SECP256K1_N // 2
ZERO_ADDRESS = Address(bytes(ADDRESS_LENGTH))
_V_OFFSET = 27
_RECOVER_CACHE_SIZE = 1 << 15
"""Entries of the recovery cache (about 250 bytes each, so at most ~8 MB)."""
_KEY_ADDRESS_CACHE_SIZE = 1 << 13
"""Entries of the key-to-address cache (about 200 bytes each, so at most ~1.6 MB)."""
_ECDH_CACHE_SIZE = 1 << 12
"""Peers whose ECDH secret one identity keeps (about 250 bytes each, at most ~1 MB)."""


def keccak256(data: bytes) -> bytes:
    """Return the 32-byte Keccak-256 (Ethereum's, not NIST SHA3-256) of ``data``."""
    digest: bytes = sha3.keccak_256(data).digest()
    return digest


def address_of(public_key: coincurve.PublicKey) -> Address:
    """Return the Ethereum address of a public key (keccak of X ‖ Y, last 20 bytes)."""
    uncompressed: bytes = public_key.format(compressed=False)
    return Address(keccak256(uncompressed[1:])[12:])


def as_address(value: object) -> Address:
    """Check that ``value`` is 20 bytes and not the zero address; raise otherwise."""
    if not isinstance(value, bytes) or len(value) != ADDRESS_LENGTH:
        raise MeshValidationError("address must be 20 bytes")
    if value == ZERO_ADDRESS:
        raise MeshValidationError("the zero address is never a node")
    return Address(value)


class Identity:
    """A node's private key, its public key and its address; signs digests.

    The private key never appears in ``repr`` or in any error message.
    """

    __slots__ = ("_key", "_secrets", "address", "public_key")

    def __init__(self, private_key: bytes) -> None:
        if not isinstance(private_key, bytes) or len(private_key) != 32:
            raise MeshValidationError("private key must be 32 bytes")
        if not 0 < int.from_bytes(private_key, "big") < SECP256K1_N:
            raise MeshValidationError("private key out of range 1..n-1")
        self._key = coincurve.PrivateKey(private_key)
        self.public_key: bytes = self._key.public_key.format(compressed=True)
        """33-byte compressed SEC1 public key."""
        self.address: Address = address_of(self._key.public_key)
        self._secrets: OrderedDict[bytes, bytes] = OrderedDict()

    def __repr__(self) -> str:
        return f"Identity(address=0x{self.address.hex()})"

    def sign(self, digest: bytes) -> bytes:
        """Sign a 32-byte digest: ``r ‖ s ‖ v``, v in {27, 28}, deterministic (RFC 6979).

        libsecp256k1 always returns low-s signatures; the assertion guards that assumption.
        """
        assert len(digest) == 32, "digest must be 32 bytes"
        raw: bytes = self._key.sign_recoverable(digest, hasher=None)
        assert int.from_bytes(raw[32:64], "big") <= SECP256K1_HALF_N, "libsecp256k1 gave high s"
        return raw[:64] + bytes((raw[64] + _V_OFFSET,))

    def ecdh(self, public_key: bytes) -> bytes:
        """The static ECDH secret with the node of ``public_key`` (33 bytes): libsecp256k1's
        (sha256 of the compressed shared point), so both nodes get the same 32 bytes.

        Memoised per identity in a bounded LRU: the envelope between two nodes derives every
        message's key from it, so it is computed once per peer, not once per message. An
        invalid key raises ``EnvelopeError`` and is not remembered.
        """
        secrets = self._secrets
        shared = secrets.get(public_key)
        if shared is not None:
            secrets.move_to_end(public_key)
            return shared
        shared = ecdh_secret(self._key.secret, public_key)
        if len(secrets) >= _ECDH_CACHE_SIZE:
            secrets.popitem(last=False)
        secrets[public_key] = shared
        return shared


def ecdh_secret(secret: bytes, public_key: bytes) -> bytes:
    """sha256 of the compressed point ``secret`` × ``public_key``: the same bytes as
    libsecp256k1's ECDH with its default hash, computed by ``PublicKey.multiply``
    (constant time, like the ECDH module) because that is 20-35 % faster through
    coincurve. ``EnvelopeError`` for an invalid key."""
    try:
        point = coincurve.PublicKey(public_key)
        shared: bytes = point.multiply(secret).format(compressed=True)
    except (ValueError, TypeError) as exc:
        raise EnvelopeError("not a valid secp256k1 public key") from exc
    return hashlib.sha256(shared).digest()


@functools.lru_cache(maxsize=_KEY_ADDRESS_CACHE_SIZE)
def address_of_key(public_key: bytes) -> Address:
    """The address of a 33-byte compressed public key; ``EnvelopeError`` if it is not one.

    Memoised (a pure function): a destination checks the origin key of every envelope it
    opens against the origin's address, and the same few keys come again and again. A
    raised exception is not cached, so a bad key costs a parse each time (a few µs).
    """
    if not isinstance(public_key, bytes) or len(public_key) != COMPRESSED_KEY_LENGTH:
        raise EnvelopeError("public key must be 33 bytes (compressed)")
    if public_key[0] not in (2, 3):
        raise EnvelopeError("public key must be compressed")
    try:
        point = coincurve.PublicKey(public_key)
    except (ValueError, TypeError) as exc:
        raise EnvelopeError("not a valid secp256k1 public key") from exc
    return address_of(point)


@functools.lru_cache(maxsize=_RECOVER_CACHE_SIZE)
def recover(digest: bytes, signature: bytes) -> tuple[Address, bytes]:
    """Return (address, 33-byte compressed public key) that signed ``digest``.

    Strict like the contracts: 65 bytes, v in {27, 28}, 0 < r < n, 0 < s <= n/2 (low s,
    so a signature has exactly one encoding and replay checks keyed on it hold), a point
    that recovers, and never the zero address. Raises ``EnvelopeError`` otherwise. A raised
    exception is not cached by ``lru_cache``, so failures cost a recovery each time.
    """
    if len(digest) != 32:
        raise EnvelopeError("digest must be 32 bytes")
    if len(signature) != SIGNATURE_LENGTH:
        raise EnvelopeError("signature must be 65 bytes")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if v not in (27, 28):
        raise EnvelopeError("signature v must be 27 or 28")
    if not 0 < r < SECP256K1_N:
        raise EnvelopeError("signature r out of range")
    if not 0 < s <= SECP256K1_HALF_N:
        raise EnvelopeError("signature s out of range (zero or high s)")
    try:
        public_key = coincurve.PublicKey.from_signature_and_message(
            signature[:64] + bytes((v - _V_OFFSET,)), digest, hasher=None
        )
    except Exception as exc:  # coincurve raises a plain Exception when no point recovers
        raise EnvelopeError("signature does not recover a public key") from exc
    address = address_of(public_key)
    if address == ZERO_ADDRESS:  # pragma: no cover -- needs a keccak preimage
        raise EnvelopeError("signature recovers the zero address")
    return address, public_key.format(compressed=True)


def recover_address(digest: bytes, signature: bytes) -> Address:
    """Return only the signer's address of ``recover``."""
    return recover(digest, signature)[0]


class Drbg:
    """A deterministic random bit generator: keccak256(seed ‖ counter), 32 bytes a block.

    The adapter seeds it from ``os.urandom``; the simulator from its seeded RNG, which
    makes whole simulations reproducible. Output is used for hello nonces and message
    nonces: what matters is that a seed is never used twice with one key (the adapter
    draws a fresh one at every start), since message ids must not repeat.
    """

    __slots__ = ("_counter", "_seed")

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, bytes) or len(seed) < 16:
            raise MeshValidationError("seed must be at least 16 bytes")
        self._seed = keccak256(b"smartmesh/mesh/drbg" + seed)
        self._counter = 0

    def take(self, length: int) -> bytes:
        """Return the next ``length`` (at most 32) bytes."""
        assert 0 < length <= 32
        self._counter += 1
        return keccak256(self._seed + self._counter.to_bytes(8, "big"))[:length]
