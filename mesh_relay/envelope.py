"""End-to-end envelopes: message ids, encryption to the destination, signatures, e2e acks.

Belongs here: what only the origin and the destination of a message can do. The origin
encrypts the payload to the destination's public key (ECIES: an ephemeral secp256k1 key,
libsecp256k1's ECDH, a keccak256 KDF, ChaCha20-Poly1305 with the routed header as
associated data) and signs the header and ciphertext; the destination checks the
signature against the origin named in the header, then decrypts. A relay sees the header
(it must, to route and to count) and ciphertext it can neither read nor alter: a changed
byte breaks the signature and the AEAD tag. The destination acknowledges with a signature
over (message id, origin, destination) that the origin checks.

Body of a DATA message (what is fragmented)::

    ephemeral public key 33 | signature 65 | ciphertext (len(payload)) | tag 16

The ephemeral key is derived deterministically from the origin's key, the header and the
payload (``Identity.secret_scalar``), so resealing the same message after a restart yields
the same bytes; a fresh key per message (the message id is unique) makes the all-zero AEAD
nonce safe.

Does not belong here: fragmentation, framing, replay bookkeeping (``store``), routing.
"""

from __future__ import annotations

import hmac
import struct

from Crypto.Cipher import ChaCha20
from Crypto.Hash import Poly1305

from mesh_relay.errors import EnvelopeError
from mesh_relay.frames import MESSAGE_ID_LENGTH
from mesh_relay.identity import (
    COMPRESSED_KEY_LENGTH,
    SIGNATURE_LENGTH,
    Address,
    Identity,
    ecdh_secret,
    keccak256,
    public_key_of,
    recover,
)

_ID_DOMAIN = b"smartmesh/mesh/v1/message-id"
_EPHEMERAL_DOMAIN = b"smartmesh/mesh/v1/ephemeral"
_KDF_DOMAIN = b"smartmesh/mesh/v1/ecies-key"
_MESSAGE_DOMAIN = b"smartmesh/mesh/v1/message"
_ACK_DOMAIN = b"smartmesh/mesh/v1/ack"
_TAG_LENGTH = 16
_NONCE = bytes(12)
ENVELOPE_OVERHEAD = COMPRESSED_KEY_LENGTH + SIGNATURE_LENGTH + _TAG_LENGTH
"""Bytes a sealed body adds to the payload: 33 + 65 + 16 = 114."""


def _poly1305_tag(key: bytes, aad: bytes, ciphertext: bytes) -> bytes:
    """RFC 8439 §2.8: Poly1305, keyed by ChaCha20 block 0, over the padded AD and text."""
    mac = Poly1305.new(key=key, cipher=ChaCha20, nonce=_NONCE)
    mac.update(
        aad
        + bytes(-len(aad) % 16)
        + ciphertext
        + bytes(-len(ciphertext) % 16)
        + struct.pack("<QQ", len(aad), len(ciphertext))
    )
    tag: bytes = mac.digest()
    return tag


def aead_encrypt(key: bytes, aad: bytes, plaintext: bytes) -> bytes:
    """ChaCha20-Poly1305 (RFC 8439) with the all-zero nonce: ciphertext ‖ 16-byte tag.

    The same bytes as pycryptodome's ``ChaCha20_Poly1305`` (a unit test holds them to
    it), built from its ChaCha20 and Poly1305 directly: its AEAD object costs twice as
    much per message, mostly in a BLAKE2s-based tag comparison on decryption.
    """
    stream = ChaCha20.new(key=key, nonce=_NONCE)
    stream.seek(64)  # block 0 keyed the MAC; the text starts at block 1
    ciphertext: bytes = stream.encrypt(plaintext)
    return ciphertext + _poly1305_tag(key, aad, ciphertext)


def aead_decrypt(key: bytes, aad: bytes, sealed: bytes) -> bytes:
    """The plaintext of ``aead_encrypt``'s output; ``EnvelopeError`` if it does not
    authenticate (the tag is compared in constant time before anything is decrypted)."""
    if len(sealed) < _TAG_LENGTH:
        raise EnvelopeError("ciphertext shorter than its tag")
    ciphertext, tag = sealed[:-_TAG_LENGTH], sealed[-_TAG_LENGTH:]
    if not hmac.compare_digest(_poly1305_tag(key, aad, ciphertext), tag):
        raise EnvelopeError("ciphertext does not authenticate")
    stream = ChaCha20.new(key=key, nonce=_NONCE)
    stream.seek(64)
    plaintext: bytes = stream.decrypt(ciphertext)
    return plaintext


def message_id(origin: Address, destination: Address, expiry_ms: int, nonce: bytes) -> bytes:
    """The 16-byte id of a message: keccak256(domain ‖ origin ‖ destination ‖ expiry ‖ nonce).

    128 bits: a collision needs about 2**64 messages from one origin, and only that origin
    could profit from one (its own messages would be taken as duplicates).
    """
    return keccak256(_ID_DOMAIN + origin + destination + expiry_ms.to_bytes(6, "big") + nonce)[
        :MESSAGE_ID_LENGTH
    ]


def associated_data(
    message_id_: bytes, destination: Address, origin: Address, expiry_ms: int
) -> bytes:
    """The routed-header fields every fragment carries and both ends authenticate."""
    return message_id_ + destination + origin + expiry_ms.to_bytes(6, "big")


def seal(
    identity: Identity,
    destination_key: bytes,
    message_id_: bytes,
    destination: Address,
    expiry_ms: int,
    payload: bytes,
) -> bytes:
    """Encrypt ``payload`` to ``destination_key`` (33 bytes) and sign; return the body."""
    header = associated_data(message_id_, destination, identity.address, expiry_ms)
    scalar = identity.secret_scalar(_EPHEMERAL_DOMAIN, header + keccak256(payload))
    ephemeral_public = public_key_of(scalar)
    try:
        shared = ecdh_secret(scalar, destination_key)
    except EnvelopeError as exc:
        raise EnvelopeError("destination key is not a valid secp256k1 point") from exc
    key = keccak256(_KDF_DOMAIN + shared + ephemeral_public + destination_key)
    sealed = aead_encrypt(key, header, payload)
    signature = identity.sign(keccak256(_MESSAGE_DOMAIN + header + ephemeral_public + sealed))
    return ephemeral_public + signature + sealed


def open_envelope(
    identity: Identity,
    body: bytes,
    message_id_: bytes,
    origin: Address,
    expiry_ms: int,
) -> bytes:
    """Check the origin's signature, decrypt, and return the payload; ``EnvelopeError`` if not.

    ``identity`` is the destination's. The signature must recover ``origin`` exactly, so
    a relay cannot re-sign someone else's ciphertext as its own: the origin is also in the
    associated data, so a changed origin breaks the tag as well.
    """
    if len(body) < ENVELOPE_OVERHEAD:
        raise EnvelopeError("envelope shorter than its fixed part")
    header = associated_data(message_id_, identity.address, origin, expiry_ms)
    ephemeral_public = body[:COMPRESSED_KEY_LENGTH]
    signature = body[COMPRESSED_KEY_LENGTH : COMPRESSED_KEY_LENGTH + SIGNATURE_LENGTH]
    sealed = body[COMPRESSED_KEY_LENGTH + SIGNATURE_LENGTH :]
    digest = keccak256(_MESSAGE_DOMAIN + header + ephemeral_public + sealed)
    signer, _ = recover(digest, signature)
    if signer != origin:
        raise EnvelopeError("envelope not signed by its origin")
    shared = identity.ecdh(ephemeral_public)
    key = keccak256(_KDF_DOMAIN + shared + ephemeral_public + identity.public_key)
    return aead_decrypt(key, header, sealed)


def ack_digest(message_id_: bytes, origin: Address, destination: Address) -> bytes:
    """What a destination signs to acknowledge a message of ``origin`` to itself."""
    return keccak256(_ACK_DOMAIN + message_id_ + origin + destination)


def sign_ack(identity: Identity, message_id_: bytes, origin: Address) -> bytes:
    """The destination's (``identity``) signed end-to-end ack of ``origin``'s message."""
    return identity.sign(ack_digest(message_id_, origin, identity.address))


def verify_ack(signature: bytes, message_id_: bytes, origin: Address, destination: Address) -> bool:
    """True when ``signature`` is ``destination``'s ack of ``origin``'s message."""
    try:
        signer, _ = recover(ack_digest(message_id_, origin, destination), signature)
    except EnvelopeError:
        return False
    return signer == destination
