"""End-to-end envelopes (version 2): message ids, encryption between the two ends, e2e acks.

Belongs here: what only the origin and the destination of a message can do. Both derive
the same static secret from their own private key and the other's public key
(libsecp256k1's ECDH, memoised per peer by ``Identity.ecdh``); each message gets its own
key, keccak256 of a domain, that secret and the routed-header fields; the payload is
sealed with ChaCha20-Poly1305 under that key, with the same header fields as associated
data. Only the two ends know the secret, so a tag that verifies proves to the destination
that the origin sealed exactly this payload for exactly this header: it is what the v1
envelope's signature proved, without the signature. The destination learns the origin's
public key from the body itself (it must hash to the origin address of the header), so
opening never depends on a route advert of the origin. A relay sees the header (it must,
to route and to count) and ciphertext it can neither read nor alter: a changed byte of
either breaks the tag. The destination acknowledges with a 16-byte tag under the same
secret over (message id, origin, destination), which the origin computes when it seals
and compares when the ack comes back.

Body of a DATA message (what is fragmented)::

    origin public key 33 | ciphertext (len(payload)) | tag 16

The all-zero AEAD nonce is safe because no key is ever used for two different payloads:
the key covers the message id, and the id covers a fresh DRBG nonce and keccak256 of the
payload, so even a repeated nonce (a node restarted with an old seed) gives another key
for another payload. The same message sealed again (after a restart) gives the same bytes,
so fragments of two sealings never meet at the destination. docs/mesh.md §7 and §11 give
the reasoning and what changed from v1.

ChaCha20 and Poly1305 are pycryptodome's C code, called here through ctypes directly
(``_Raw``): its Python objects cost twice the cryptography itself for a message of a
couple of hundred bytes (a unit test holds the bytes to its ``ChaCha20_Poly1305``).

Does not belong here: fragmentation, framing, replay bookkeeping (``store``), routing.
"""

from __future__ import annotations

import ctypes
import hmac
import importlib.util
import struct
from typing import Final, NamedTuple

from mesh_relay.errors import EnvelopeError
from mesh_relay.frames import ACK_TAG_LENGTH, MESSAGE_ID_LENGTH
from mesh_relay.identity import (
    COMPRESSED_KEY_LENGTH,
    Address,
    Identity,
    address_of_key,
    keccak256,
)

_ID_DOMAIN = b"smartmesh/mesh/v2/message-id"
_KEY_DOMAIN = b"smartmesh/mesh/v2/message-key"
_ACK_DOMAIN = b"smartmesh/mesh/v2/ack"
_TAG_LENGTH = 16
_NONCE = bytes(12)
ENVELOPE_OVERHEAD = COMPRESSED_KEY_LENGTH + _TAG_LENGTH
"""Bytes a sealed body adds to the payload: 33 + 16 = 49 (v1: 114)."""


class Opened(NamedTuple):
    """What ``open_envelope`` gives the destination."""

    payload: bytes
    origin_key: bytes
    """The origin's 33-byte public key, checked against its address: what the
    destination needs to acknowledge this message (and any duplicate of it) later."""


class _Raw:
    """pycryptodome's ChaCha20 and Poly1305 libraries, loaded once with their C types."""

    def __init__(self) -> None:
        chacha = ctypes.CDLL(_library_path("Crypto.Cipher._chacha20"))
        poly = ctypes.CDLL(_library_path("Crypto.Hash._poly1305"))
        state_out = ctypes.POINTER(ctypes.c_void_p)
        c_void, c_bytes, c_size = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t
        self.chacha20_init = chacha.chacha20_init
        self.chacha20_init.argtypes = [state_out, c_bytes, c_size, c_bytes, c_size]
        self.chacha20_encrypt = chacha.chacha20_encrypt
        self.chacha20_encrypt.argtypes = [c_void, c_bytes, c_void, c_size]
        self.chacha20_destroy = chacha.chacha20_destroy
        self.chacha20_destroy.argtypes = [c_void]
        self.poly1305_init = poly.poly1305_init
        self.poly1305_init.argtypes = [state_out, c_bytes, c_size, c_bytes, c_size]
        self.poly1305_update = poly.poly1305_update
        self.poly1305_update.argtypes = [c_void, c_bytes, c_size]
        self.poly1305_digest = poly.poly1305_digest
        self.poly1305_digest.argtypes = [c_void, c_void, c_size]
        self.poly1305_destroy = poly.poly1305_destroy
        self.poly1305_destroy.argtypes = [c_void]
        for function in (
            self.chacha20_init, self.chacha20_encrypt, self.chacha20_destroy,
            self.poly1305_init, self.poly1305_update, self.poly1305_digest,
            self.poly1305_destroy,
        ):  # fmt: skip
            function.restype = ctypes.c_int


def _library_path(module: str) -> str:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ImportError(f"pycryptodome's {module} library is missing")
    return spec.origin


_RAW: Final = _Raw()
_BLOCK: Final = bytes(64)


def _chacha20(key: bytes, text: bytes) -> tuple[bytes, bytes]:
    """(ChaCha20 block 0 of ``key`` and the zero nonce, ``text`` XORed with the stream
    from block 1 on): the Poly1305 key material and the cipher text (RFC 8439 §2.8)."""
    raw = _RAW
    state = ctypes.c_void_p()
    if raw.chacha20_init(ctypes.byref(state), key, len(key), _NONCE, len(_NONCE)):
        raise ValueError("ChaCha20 refused its key")
    try:
        block0 = ctypes.create_string_buffer(64)
        raw.chacha20_encrypt(state, _BLOCK, block0, 64)
        if not text:
            return block0.raw, b""
        out = ctypes.create_string_buffer(len(text))
        raw.chacha20_encrypt(state, text, out, len(text))
        return block0.raw, out.raw
    finally:
        raw.chacha20_destroy(state)


def _poly1305_tag(block0: bytes, aad: bytes, ciphertext: bytes) -> bytes:
    """RFC 8439 §2.8: Poly1305, keyed by ChaCha20 block 0, over the padded AD and text."""
    raw = _RAW
    state = ctypes.c_void_p()
    if raw.poly1305_init(ctypes.byref(state), block0[:16], 16, block0[16:32], 16):
        raise ValueError("Poly1305 refused its key")
    try:
        data = (
            aad
            + bytes(-len(aad) % 16)
            + ciphertext
            + bytes(-len(ciphertext) % 16)
            + struct.pack("<QQ", len(aad), len(ciphertext))
        )
        raw.poly1305_update(state, data, len(data))
        tag = ctypes.create_string_buffer(_TAG_LENGTH)
        raw.poly1305_digest(state, tag, _TAG_LENGTH)
        return tag.raw
    finally:
        raw.poly1305_destroy(state)


def aead_encrypt(key: bytes, aad: bytes, plaintext: bytes) -> bytes:
    """ChaCha20-Poly1305 (RFC 8439) with the all-zero nonce: ciphertext ‖ 16-byte tag.

    The same bytes as pycryptodome's ``ChaCha20_Poly1305`` (a unit test holds them to
    it), built from its ChaCha20 and Poly1305 C functions directly.
    """
    if len(key) != 32:
        raise ValueError("a ChaCha20-Poly1305 key is 32 bytes")
    block0, ciphertext = _chacha20(key, plaintext)
    return ciphertext + _poly1305_tag(block0, aad, ciphertext)


def aead_decrypt(key: bytes, aad: bytes, sealed: bytes) -> bytes:
    """The plaintext of ``aead_encrypt``'s output; ``EnvelopeError`` if it does not
    authenticate (the tag is compared in constant time before the plaintext is used)."""
    if len(key) != 32:
        raise ValueError("a ChaCha20-Poly1305 key is 32 bytes")
    if len(sealed) < _TAG_LENGTH:
        raise EnvelopeError("ciphertext shorter than its tag")
    ciphertext, tag = sealed[:-_TAG_LENGTH], sealed[-_TAG_LENGTH:]
    # Decrypting is the same XOR as encrypting; the plaintext is returned only if the
    # tag over the ciphertext verifies.
    block0, plaintext = _chacha20(key, ciphertext)
    if not hmac.compare_digest(_poly1305_tag(block0, aad, ciphertext), tag):
        raise EnvelopeError("ciphertext does not authenticate")
    return plaintext


def message_id(
    origin: Address, destination: Address, expiry_ms: int, nonce: bytes, payload: bytes
) -> bytes:
    """The 16-byte id of a message: keccak256(domain ‖ origin ‖ destination ‖ expiry ‖
    nonce ‖ keccak256(payload))[:16].

    128 bits: a collision needs about 2**64 messages from one origin, and only that origin
    could profit from one (its own messages would be taken as duplicates). The payload's
    hash makes the id, and so the message key, differ for different payloads even if a
    nonce ever repeated: the envelope's all-zero AEAD nonce relies on it.
    """
    return keccak256(
        _ID_DOMAIN
        + origin
        + destination
        + expiry_ms.to_bytes(6, "big")
        + nonce
        + keccak256(payload)
    )[:MESSAGE_ID_LENGTH]


def associated_data(
    message_id_: bytes, destination: Address, origin: Address, expiry_ms: int
) -> bytes:
    """The routed-header fields every fragment carries and both ends authenticate."""
    return message_id_ + destination + origin + expiry_ms.to_bytes(6, "big")


def _message_key(shared: bytes, header: bytes) -> bytes:
    # The header names origin and destination in order: the two directions between a
    # pair share ``shared`` and must not share keys.
    return keccak256(_KEY_DOMAIN + shared + header)


def seal(
    identity: Identity,
    destination_key: bytes,
    message_id_: bytes,
    destination: Address,
    expiry_ms: int,
    payload: bytes,
) -> bytes:
    """Encrypt ``payload`` for the node of ``destination_key`` (33 bytes, which must be
    ``destination``'s) and return the body; ``EnvelopeError`` for a bad key."""
    if address_of_key(destination_key) != destination:
        raise EnvelopeError("destination key is not the destination's")
    header = associated_data(message_id_, destination, identity.address, expiry_ms)
    shared = identity.ecdh(destination_key)
    return identity.public_key + aead_encrypt(_message_key(shared, header), header, payload)


def open_envelope(
    identity: Identity,
    body: bytes,
    message_id_: bytes,
    origin: Address,
    expiry_ms: int,
) -> Opened:
    """Check and decrypt a body sealed by ``origin`` for ``identity`` (the destination);
    ``EnvelopeError`` if it is not exactly that.

    The key in the body must be the origin's (it hashes to ``origin``), so a relay cannot
    pass someone else's ciphertext off as its own: with its own key and address in their
    place, the secret, the message key and the associated data all change, and the tag
    fails.
    """
    if len(body) < ENVELOPE_OVERHEAD:
        raise EnvelopeError("envelope shorter than its fixed part")
    origin_key = body[:COMPRESSED_KEY_LENGTH]
    if address_of_key(origin_key) != origin:
        raise EnvelopeError("envelope key is not its origin's")
    header = associated_data(message_id_, identity.address, origin, expiry_ms)
    shared = identity.ecdh(origin_key)
    payload = aead_decrypt(_message_key(shared, header), header, body[COMPRESSED_KEY_LENGTH:])
    return Opened(payload, origin_key)


def ack_tag(
    identity: Identity, peer_key: bytes, message_id_: bytes, origin: Address, destination: Address
) -> bytes:
    """The 16-byte end-to-end ack of ``origin``'s message ``message_id_`` to ``destination``.

    Either end computes it (``identity`` is one end, ``peer_key`` the other's public key):
    the destination to acknowledge, the origin to know what to expect. keccak256 with the
    secret as prefix is a MAC (a sponge has no length extension). 16 bytes: a forger
    guesses with probability 2**-128 per try, the bound the AEAD tag already sets.
    """
    shared = identity.ecdh(peer_key)
    return keccak256(_ACK_DOMAIN + shared + message_id_ + origin + destination)[:ACK_TAG_LENGTH]


def verify_ack(tag: bytes, expected: bytes) -> bool:
    """True when ``tag`` (from an E2E_ACK) is ``expected`` (``ack_tag`` at the origin);
    compared in constant time."""
    return len(tag) == ACK_TAG_LENGTH and hmac.compare_digest(tag, expected)
