"""mesh_relay.envelope: only the destination reads; nobody alters; acks bind both ends."""

from __future__ import annotations

import pytest
from Crypto.Cipher import ChaCha20_Poly1305

from mesh_relay.envelope import (
    ENVELOPE_OVERHEAD,
    aead_decrypt,
    aead_encrypt,
    message_id,
    open_envelope,
    seal,
    sign_ack,
    verify_ack,
)
from mesh_relay.errors import EnvelopeError
from mesh_relay.identity import Identity, keccak256

ALICE = Identity((11).to_bytes(32, "big"))
BOB = Identity((12).to_bytes(32, "big"))
MALLORY = Identity((13).to_bytes(32, "big"))
EXPIRY_MS = 1_700_000_060_000
PAYLOAD = b"pay 5 tokens to carol, secret hash 0123456789abcdef"
MID = message_id(ALICE.address, BOB.address, EXPIRY_MS, b"n" * 16)


def _sealed(payload: bytes = PAYLOAD) -> bytes:
    return seal(ALICE, BOB.public_key, MID, BOB.address, EXPIRY_MS, payload)


def test_seal_open__round_trip_and_size() -> None:
    body = _sealed()
    assert len(body) == len(PAYLOAD) + ENVELOPE_OVERHEAD == len(PAYLOAD) + 114
    assert open_envelope(BOB, body, MID, ALICE.address, EXPIRY_MS) == PAYLOAD


def test_seal__empty_payload() -> None:
    assert open_envelope(BOB, _sealed(b""), MID, ALICE.address, EXPIRY_MS) == b""


def test_seal__plaintext_absent_from_body() -> None:
    body = _sealed()
    assert PAYLOAD not in body
    assert all(PAYLOAD[i : i + 8] not in body for i in range(len(PAYLOAD) - 8))


def test_seal__deterministic_for_the_same_message_distinct_across_messages() -> None:
    assert _sealed() == _sealed()
    other = message_id(ALICE.address, BOB.address, EXPIRY_MS, b"o" * 16)
    assert (
        seal(ALICE, BOB.public_key, other, BOB.address, EXPIRY_MS, PAYLOAD)[:33] != _sealed()[:33]
    )


def test_open__by_anyone_else__fails() -> None:
    with pytest.raises(EnvelopeError):
        open_envelope(MALLORY, _sealed(), MID, ALICE.address, EXPIRY_MS)


@pytest.mark.parametrize("position", [0, 20, 33, 60, 97, 98, 110, -17, -1])
def test_open__any_flipped_byte__fails(position: int) -> None:
    body = bytearray(_sealed())
    body[position] ^= 0x01
    with pytest.raises(EnvelopeError):
        open_envelope(BOB, bytes(body), MID, ALICE.address, EXPIRY_MS)


def test_open__header_fields_are_authenticated() -> None:
    body = _sealed()
    with pytest.raises(EnvelopeError):
        open_envelope(BOB, body, b"x" * 16, ALICE.address, EXPIRY_MS)
    with pytest.raises(EnvelopeError):
        open_envelope(BOB, body, MID, MALLORY.address, EXPIRY_MS)
    with pytest.raises(EnvelopeError):
        open_envelope(BOB, body, MID, ALICE.address, EXPIRY_MS + 1)


def test_open__re_signed_by_a_relay__fails() -> None:
    # Mallory strips Alice's signature and signs the ciphertext as her own message.
    from mesh_relay.envelope import _MESSAGE_DOMAIN, associated_data  # noqa: PLC0415
    from mesh_relay.identity import keccak256  # noqa: PLC0415

    body = _sealed()
    header = associated_data(MID, BOB.address, MALLORY.address, EXPIRY_MS)
    forged_sig = MALLORY.sign(keccak256(_MESSAGE_DOMAIN + header + body[:33] + body[98:]))
    forged = body[:33] + forged_sig + body[98:]
    with pytest.raises(EnvelopeError):
        open_envelope(BOB, forged, MID, MALLORY.address, EXPIRY_MS)


def test_open__truncated__fails() -> None:
    with pytest.raises(EnvelopeError):
        open_envelope(BOB, _sealed()[:113], MID, ALICE.address, EXPIRY_MS)


def test_seal__invalid_destination_key__fails() -> None:
    with pytest.raises(EnvelopeError):
        seal(ALICE, b"\x02" + b"\xff" * 32, MID, BOB.address, EXPIRY_MS, PAYLOAD)


def test_ack__verifies_only_for_its_message_and_ends() -> None:
    signature = sign_ack(BOB, MID, ALICE.address)
    assert verify_ack(signature, MID, ALICE.address, BOB.address)
    assert not verify_ack(signature, b"y" * 16, ALICE.address, BOB.address)
    assert not verify_ack(signature, MID, MALLORY.address, BOB.address)
    assert not verify_ack(sign_ack(MALLORY, MID, ALICE.address), MID, ALICE.address, BOB.address)
    assert not verify_ack(b"\x00" * 65, MID, ALICE.address, BOB.address)


def test_message_id__16_bytes_and_depends_on_every_field() -> None:
    ids = {
        MID,
        message_id(BOB.address, BOB.address, EXPIRY_MS, b"n" * 16),
        message_id(ALICE.address, ALICE.address, EXPIRY_MS, b"n" * 16),
        message_id(ALICE.address, BOB.address, EXPIRY_MS + 1, b"n" * 16),
        message_id(ALICE.address, BOB.address, EXPIRY_MS, b"m" * 16),
    }
    assert len(ids) == 5 and all(len(i) == 16 for i in ids)


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 64, 141, 1131, 5000])
def test_aead_is_chacha20_poly1305_of_rfc_8439(length: int) -> None:
    # The hand-built AEAD must give the library's exact bytes, or sealed messages of
    # older relays would stop opening.
    key = keccak256(b"aead key" + bytes([length % 256]))
    aad, plaintext = bytes(range(62)), bytes(i % 251 for i in range(length))
    reference = ChaCha20_Poly1305.new(key=key, nonce=bytes(12))
    reference.update(aad)
    ciphertext, tag = reference.encrypt_and_digest(plaintext)
    assert aead_encrypt(key, aad, plaintext) == ciphertext + tag
    assert aead_decrypt(key, aad, ciphertext + tag) == plaintext
    for tampered in (
        ciphertext + tag[:-1] + bytes([tag[-1] ^ 1]),
        bytes([ciphertext[0] ^ 1]) + ciphertext[1:] + tag if ciphertext else b"x" + tag,
    ):
        with pytest.raises(EnvelopeError):
            aead_decrypt(key, aad, tampered)
    with pytest.raises(EnvelopeError):
        aead_decrypt(key, aad[:-1], ciphertext + tag)
    with pytest.raises(EnvelopeError):
        aead_decrypt(key, aad, tag[:15])
