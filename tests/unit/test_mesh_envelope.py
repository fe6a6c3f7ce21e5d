"""mesh_relay.envelope (v2): only the destination reads; nobody else seals or alters; acks
only the two ends can compute."""

from __future__ import annotations

import pytest
from Crypto.Cipher import ChaCha20_Poly1305

from mesh_relay.envelope import (
    ENVELOPE_OVERHEAD,
    Opened,
    ack_tag,
    aead_decrypt,
    aead_encrypt,
    associated_data,
    message_id,
    open_envelope,
    seal,
    verify_ack,
)
from mesh_relay.errors import EnvelopeError
from mesh_relay.identity import Identity, ecdh_secret, keccak256

ALICE = Identity((11).to_bytes(32, "big"))
BOB = Identity((12).to_bytes(32, "big"))
MALLORY = Identity((13).to_bytes(32, "big"))
EXPIRY_MS = 1_700_000_060_000
PAYLOAD = b"pay 5 tokens to carol, secret hash 0123456789abcdef"
MID = message_id(ALICE.address, BOB.address, EXPIRY_MS, b"n" * 16, PAYLOAD)


def _sealed(payload: bytes = PAYLOAD, mid: bytes = MID) -> bytes:
    return seal(ALICE, BOB.public_key, mid, BOB.address, EXPIRY_MS, payload)


def test_seal_open__round_trip_and_size() -> None:
    body = _sealed()
    assert len(body) == len(PAYLOAD) + ENVELOPE_OVERHEAD == len(PAYLOAD) + 49
    assert body[:33] == ALICE.public_key
    opened = open_envelope(BOB, body, MID, ALICE.address, EXPIRY_MS)
    assert opened == Opened(PAYLOAD, ALICE.public_key)


def test_seal__empty_payload() -> None:
    assert open_envelope(BOB, _sealed(b""), MID, ALICE.address, EXPIRY_MS).payload == b""


def test_seal__plaintext_absent_from_body() -> None:
    body = _sealed()
    assert PAYLOAD not in body
    assert all(PAYLOAD[i : i + 8] not in body for i in range(len(PAYLOAD) - 8))


def test_seal__deterministic_for_the_same_message_distinct_across_messages() -> None:
    # A restart reseals a pending message from its plaintext: the same bytes, so
    # fragments of the old and the new sealing can meet at the destination.
    assert _sealed() == seal(
        Identity((11).to_bytes(32, "big")), BOB.public_key, MID, BOB.address, EXPIRY_MS, PAYLOAD
    )
    other = message_id(ALICE.address, BOB.address, EXPIRY_MS, b"o" * 16, PAYLOAD)
    one, two = _sealed(), _sealed(mid=other)
    assert one[33:] != two[33:]
    # The same plaintext under two ids shares no keystream.
    assert bytes(a ^ b for a, b in zip(one[33:-16], two[33:-16], strict=True)) != bytes(
        len(PAYLOAD)
    )


def test_message_id__covers_the_payload__a_repeated_nonce_never_reuses_a_key() -> None:
    # A nonce that repeats (a node restarted with an old seed) with another payload
    # gives another id, so another key: the all-zero AEAD nonce stays safe.
    again = message_id(ALICE.address, BOB.address, EXPIRY_MS, b"n" * 16, PAYLOAD + b"!")
    assert again != MID
    assert message_id(ALICE.address, BOB.address, EXPIRY_MS, b"n" * 16, PAYLOAD) == MID


def test_seal__both_directions_of_a_pair_use_different_keys() -> None:
    # ECDH(a, B) == ECDH(b, A): only the header's order of the two ends separates
    # Alice -> Bob from Bob -> Alice under the same id and expiry.
    from mesh_relay.envelope import _message_key  # noqa: PLC0415

    shared = ALICE.ecdh(BOB.public_key)
    assert shared == BOB.ecdh(ALICE.public_key)
    forward = _message_key(shared, associated_data(MID, BOB.address, ALICE.address, EXPIRY_MS))
    backward = _message_key(shared, associated_data(MID, ALICE.address, BOB.address, EXPIRY_MS))
    assert forward != backward


def test_open__by_anyone_else__fails() -> None:
    with pytest.raises(EnvelopeError):
        open_envelope(MALLORY, _sealed(), MID, ALICE.address, EXPIRY_MS)


@pytest.mark.parametrize("position", [0, 1, 20, 32, 33, 40, 60, 82, -17, -16, -1])
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
    with pytest.raises(EnvelopeError):  # sealed for Bob, claimed to be for Mallory
        open_envelope(MALLORY, body, MID, ALICE.address, EXPIRY_MS)


def test_open__origin_key_of_another_node__fails() -> None:
    # Mallory puts her own key in Alice's envelope: it does not hash to Alice's address.
    forged = MALLORY.public_key + _sealed()[33:]
    with pytest.raises(EnvelopeError, match="not its origin's"):
        open_envelope(BOB, forged, MID, ALICE.address, EXPIRY_MS)
    # Not a key at all.
    with pytest.raises(EnvelopeError):
        open_envelope(BOB, b"\x02" + b"\xff" * 32 + _sealed()[33:], MID, ALICE.address, EXPIRY_MS)


def test_open__relay_passes_the_ciphertext_off_as_its_own__fails() -> None:
    # Mallory takes Alice's ciphertext and claims it: her key, her address as origin.
    forged = MALLORY.public_key + _sealed()[33:]
    with pytest.raises(EnvelopeError, match="does not authenticate"):
        open_envelope(BOB, forged, MID, MALLORY.address, EXPIRY_MS)


def test_open__forged_by_a_third_party__fails() -> None:
    # Mallory seals her own payload in Alice's name with every secret but the pair's:
    # the key she can compute (ECDH with her own key) is not Alice and Bob's.
    from mesh_relay.envelope import _message_key  # noqa: PLC0415

    header = associated_data(MID, BOB.address, ALICE.address, EXPIRY_MS)
    guess = _message_key(MALLORY.ecdh(BOB.public_key), header)
    forged = ALICE.public_key + aead_encrypt(guess, header, b"pay mallory")
    with pytest.raises(EnvelopeError, match="does not authenticate"):
        open_envelope(BOB, forged, MID, ALICE.address, EXPIRY_MS)


def test_open__truncated__fails() -> None:
    with pytest.raises(EnvelopeError):
        open_envelope(BOB, _sealed()[:48], MID, ALICE.address, EXPIRY_MS)
    with pytest.raises(EnvelopeError):
        open_envelope(BOB, _sealed()[:-1], MID, ALICE.address, EXPIRY_MS)


def test_seal__invalid_or_foreign_destination_key__fails() -> None:
    with pytest.raises(EnvelopeError):
        seal(ALICE, b"\x02" + b"\xff" * 32, MID, BOB.address, EXPIRY_MS, PAYLOAD)
    with pytest.raises(EnvelopeError, match="not the destination's"):
        seal(ALICE, MALLORY.public_key, MID, BOB.address, EXPIRY_MS, PAYLOAD)


def test_ack__both_ends_compute_it__nobody_else_can() -> None:
    at_destination = ack_tag(BOB, ALICE.public_key, MID, ALICE.address, BOB.address)
    expected = ack_tag(ALICE, BOB.public_key, MID, ALICE.address, BOB.address)
    assert len(at_destination) == 16 and at_destination == expected
    assert verify_ack(at_destination, expected)
    # Another message, other ends, the other direction, a third party's key: all differ.
    assert ack_tag(BOB, ALICE.public_key, b"y" * 16, ALICE.address, BOB.address) != expected
    assert ack_tag(BOB, ALICE.public_key, MID, BOB.address, ALICE.address) != expected
    assert ack_tag(MALLORY, ALICE.public_key, MID, ALICE.address, BOB.address) != expected
    assert ack_tag(MALLORY, BOB.public_key, MID, ALICE.address, BOB.address) != expected
    assert not verify_ack(bytes(16), expected)
    assert not verify_ack(expected[:15], expected)
    assert not verify_ack(expected + b"\x00", expected)


def test_ack__is_a_keyed_hash_of_the_pair_secret() -> None:
    # Pinned construction: keccak256(domain ‖ ECDH secret ‖ id ‖ origin ‖ destination)[:16].
    shared = ecdh_secret((12).to_bytes(32, "big"), ALICE.public_key)
    assert (
        ack_tag(BOB, ALICE.public_key, MID, ALICE.address, BOB.address)
        == keccak256(b"smartmesh/mesh/v2/ack" + shared + MID + ALICE.address + BOB.address)[:16]
    )


def test_message_id__16_bytes_and_depends_on_every_field() -> None:
    ids = {
        MID,
        message_id(BOB.address, BOB.address, EXPIRY_MS, b"n" * 16, PAYLOAD),
        message_id(ALICE.address, ALICE.address, EXPIRY_MS, b"n" * 16, PAYLOAD),
        message_id(ALICE.address, BOB.address, EXPIRY_MS + 1, b"n" * 16, PAYLOAD),
        message_id(ALICE.address, BOB.address, EXPIRY_MS, b"m" * 16, PAYLOAD),
        message_id(ALICE.address, BOB.address, EXPIRY_MS, b"n" * 16, b""),
    }
    assert len(ids) == 6 and all(len(i) == 16 for i in ids)


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
