"""mesh_relay.identity: keccak, addresses, strict signatures, the recovery cache, Drbg."""

from __future__ import annotations

import pytest

from mesh_relay.errors import EnvelopeError, MeshValidationError
from mesh_relay.identity import (
    SECP256K1_HALF_N,
    SECP256K1_N,
    Drbg,
    Identity,
    address_of_key,
    as_address,
    ecdh_secret,
    keccak256,
    recover,
    recover_address,
)

KEY_ONE = (1).to_bytes(32, "big")
DIGEST = keccak256(b"digest")


def test_keccak256__empty__known_vector() -> None:
    assert keccak256(b"").hex() == (
        "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )


def test_identity__key_one__ethereum_address() -> None:
    identity = Identity(KEY_ONE)
    assert identity.address.hex() == "7e5f4552091a69125d5dfcb7b8c2659029395bdf"
    assert len(identity.public_key) == 33
    assert "7e5f" in repr(identity) and KEY_ONE.hex() not in repr(identity)


@pytest.mark.parametrize(
    "key", [b"", bytes(32), SECP256K1_N.to_bytes(32, "big"), b"\x01" * 31, "00" * 32]
)
def test_identity__bad_key__rejected(key: object) -> None:
    with pytest.raises(MeshValidationError):
        Identity(key)  # type: ignore[arg-type]


def test_sign_recover__round_trip__low_s_and_v_27_28() -> None:
    identity = Identity(KEY_ONE)
    signature = identity.sign(DIGEST)
    assert len(signature) == 65 and signature[64] in (27, 28)
    assert int.from_bytes(signature[32:64], "big") <= SECP256K1_HALF_N
    address, public_key = recover(DIGEST, signature)
    assert address == identity.address and public_key == identity.public_key
    assert recover_address(DIGEST, signature) == identity.address


def test_sign__deterministic() -> None:
    identity = Identity(KEY_ONE)
    assert identity.sign(DIGEST) == identity.sign(DIGEST)


def _high_s(signature: bytes) -> bytes:
    s = int.from_bytes(signature[32:64], "big")
    v = 27 if signature[64] == 28 else 28
    return signature[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes((v,))


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda s: s[:64], id="short"),
        pytest.param(lambda s: s + b"\x00", id="long"),
        pytest.param(lambda s: s[:64] + b"\x00", id="v=0"),
        pytest.param(lambda s: s[:64] + b"\x1d", id="v=29"),
        pytest.param(lambda s: bytes(32) + s[32:], id="r=0"),
        pytest.param(lambda s: SECP256K1_N.to_bytes(32, "big") + s[32:], id="r=n"),
        pytest.param(lambda s: s[:32] + bytes(32) + s[64:], id="s=0"),
        pytest.param(_high_s, id="high-s"),
    ],
)
def test_recover__malformed_signature__envelope_error(mutate: object) -> None:
    signature = Identity(KEY_ONE).sign(DIGEST)
    with pytest.raises(EnvelopeError):
        recover(DIGEST, mutate(signature))  # type: ignore[operator]


def test_recover__wrong_digest_length__envelope_error() -> None:
    with pytest.raises(EnvelopeError):
        recover(b"\x00" * 31, Identity(KEY_ONE).sign(DIGEST))


def test_recover__other_digest__other_address() -> None:
    signature = Identity(KEY_ONE).sign(DIGEST)
    assert recover_address(keccak256(b"other"), signature) != Identity(KEY_ONE).address


def test_recover__cache__failures_not_cached_and_results_stable() -> None:
    signature = Identity(KEY_ONE).sign(DIGEST)
    for _ in range(3):
        with pytest.raises(EnvelopeError):
            recover(DIGEST, signature[:64] + b"\x05")
        assert recover_address(DIGEST, signature) == Identity(KEY_ONE).address


def test_as_address__checks_length_and_zero() -> None:
    assert as_address(b"\x01" * 20) == b"\x01" * 20
    for bad in (bytes(20), b"\x01" * 19, "ab" * 20, None):
        with pytest.raises(MeshValidationError):
            as_address(bad)


def test_drbg__deterministic_per_seed_and_never_repeats() -> None:
    a, b, c = Drbg(b"s" * 16), Drbg(b"s" * 16), Drbg(b"t" * 16)
    outputs = [a.take(16) for _ in range(100)]
    assert outputs == [b.take(16) for _ in range(100)]
    assert len(set(outputs)) == 100
    assert c.take(16) not in outputs
    with pytest.raises(MeshValidationError):
        Drbg(b"short")


def test_ecdh__symmetric_and_rejects_garbage() -> None:
    one, two = Identity(KEY_ONE), Identity((2).to_bytes(32, "big"))
    assert one.ecdh(two.public_key) == two.ecdh(one.public_key)
    with pytest.raises(EnvelopeError):
        one.ecdh(b"\x02" + b"\xff" * 32)


def test_ecdh__libsecp256k1_secret__matches_py_ecc() -> None:
    # sha256 of the compressed shared point, computed independently.
    import hashlib  # noqa: PLC0415

    from py_ecc.secp256k1 import secp256k1 as ref  # noqa: PLC0415

    two = Identity((2).to_bytes(32, "big"))
    x, y = ref.multiply(ref.privtopub((2).to_bytes(32, "big")), 0x1234567)
    point = bytes((2 + (y & 1),)) + x.to_bytes(32, "big")
    expected = hashlib.sha256(point).digest()
    assert two.ecdh(Identity((0x1234567).to_bytes(32, "big")).public_key) == expected
    assert (
        ecdh_secret((2).to_bytes(32, "big"), Identity((0x1234567).to_bytes(32, "big")).public_key)
        == expected
    )


def test_ecdh__memoised_per_identity_and_bounded() -> None:
    one = Identity(KEY_ONE)
    peers = [Identity((i).to_bytes(32, "big")).public_key for i in range(2, 6)]
    first = [one.ecdh(peer) for peer in peers]
    assert [one.ecdh(peer) for peer in peers] == first
    assert list(one._secrets) == peers  # the memo itself
    with pytest.raises(EnvelopeError):
        one.ecdh(b"\x03" + b"\xff" * 32)
    assert len(one._secrets) == 4  # a bad key is not remembered
    assert Identity((2).to_bytes(32, "big"))._secrets == {}  # per identity


def test_address_of_key__the_identity_address__bad_keys_rejected() -> None:
    identity = Identity(KEY_ONE)
    assert address_of_key(identity.public_key) == identity.address
    assert address_of_key(identity.public_key).hex() == "7e5f4552091a69125d5dfcb7b8c2659029395bdf"
    uncompressed = b"\x04" + bytes(64)
    for bad in (
        b"",
        identity.public_key[:-1],
        b"\x02" + b"\xff" * 32,
        b"\x04" + bytes(32),
        uncompressed[:33],
        "02" * 33,
        bytes(33),
    ):
        with pytest.raises(EnvelopeError):
            address_of_key(bad)  # type: ignore[arg-type]
