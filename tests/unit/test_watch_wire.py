"""The 0xA2 wire format (offchain/watch/wire.py; docs/spec.md §15.1, W-1).

Round trips of every message (hypothesis), the byte layout of each, and malformed input:
garbage, truncations, trailing bytes, flipped bytes, bad codes and out-of-range fields
raise ``WireError`` and nothing else.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from offchain.protocol.locks import Lock
from offchain.protocol.types import (
    AdditionalHash,
    Address,
    Generation,
    Locksroot,
    Nonce,
    PrivateKey,
    Secret,
    SecretHash,
    Signature,
    Timestamp,
    TokenAmount,
)
from offchain.watch import wire
from offchain.watch.errors import WireError
from offchain.watch.wire import (
    MAX_REWARD,
    MAX_TEXT,
    MAX_UNLOCK_LOCKS,
    Action,
    BalancePreimage,
    ChainBeacon,
    DelegateUpdate,
    OutcomeStatus,
    RawTransaction,
    Reason,
    RegisterSecret,
    Service,
    Unlock,
    WatchAck,
    WatchOutcome,
    decode,
    encode,
)

U64 = 2**64 - 1
U256 = 2**256 - 1

request_ids = st.binary(min_size=8, max_size=8)
addresses = st.binary(min_size=20, max_size=20).filter(lambda b: any(b)).map(Address)
words = st.binary(min_size=32, max_size=32)
signatures = st.binary(min_size=65, max_size=65).map(Signature)
amounts = st.integers(0, U256).map(TokenAmount)
texts = st.text(max_size=40)
preimages = st.builds(BalancePreimage, amounts, amounts, words.map(Locksroot))
locks = st.builds(
    Lock,
    st.integers(0, U64).map(Timestamp),
    amounts,
    words.map(SecretHash),
)


@st.composite
def delegate_updates(draw: st.DrawFn) -> DelegateUpdate:
    closer = draw(addresses)
    non_closer = draw(addresses.filter(lambda a: a != closer))
    return DelegateUpdate(
        request_id=draw(request_ids),
        chain_id=draw(st.integers(0, U64)),
        token_network=draw(addresses),
        generation=Generation(draw(st.integers(1, 2**32 - 1))),
        closer=closer,
        non_closer=non_closer,
        nonce=Nonce(draw(st.integers(1, U64))),
        closer_balance=draw(preimages),
        additional_hash=AdditionalHash(draw(words)),
        closing_signature=draw(signatures),
        reward=TokenAmount(draw(st.integers(0, MAX_REWARD))),
        delegation_signature=draw(signatures),
        own_nonce=Nonce(draw(st.integers(0, U64))),
        own_balance=draw(preimages),
    )


@st.composite
def unlocks(draw: st.DrawFn) -> Unlock:
    receiver = draw(addresses)
    sender = draw(addresses.filter(lambda a: a != receiver))
    return Unlock(
        draw(request_ids),
        draw(st.integers(0, U64)),
        draw(addresses),
        receiver,
        sender,
        Generation(draw(st.integers(1, 2**32 - 1))),
        tuple(draw(st.lists(locks, max_size=6))),
    )


messages = st.one_of(
    delegate_updates(),
    st.builds(RegisterSecret, request_ids, words.map(Secret), st.integers(0, U64).map(Timestamp)),
    unlocks(),
    st.builds(
        RawTransaction,
        request_ids,
        st.integers(0, U64).map(Timestamp),
        st.binary(min_size=1, max_size=300),
    ),
    st.builds(WatchAck, request_ids, st.sampled_from(Reason), st.integers(0, U64), texts),
    st.builds(
        WatchOutcome,
        request_ids,
        st.sampled_from(Action),
        st.sampled_from(OutcomeStatus),
        words,
        st.integers(0, U64),
        texts,
    ),
    st.builds(
        ChainBeacon,
        st.integers(0, U64),
        addresses,
        st.integers(0, U64),
        st.integers(0, MAX_REWARD),
        st.sampled_from([Service(0), Service.DELEGATE, Service.GATEWAY, Service(3)]),
        st.integers(0, U64),
        signatures,
        st.integers(0, 255),
    ),
)


@given(messages)
def test_decode__encoded_message__gives_it_back_and_encodes_the_same(message: object) -> None:
    data = encode(message)  # type: ignore[arg-type]
    assert data[:2] == bytes((0xA2, 1))
    assert decode(data) == message
    assert encode(decode(data)) == data


@given(st.binary(max_size=600))
def test_decode__garbage__wire_error_or_a_canonical_message(data: bytes) -> None:
    try:
        message = decode(data)
    except WireError:
        return
    assert encode(message) == data


@given(st.binary(max_size=600))
def test_decode__garbage_after_a_valid_header__only_wire_error(body: bytes) -> None:
    for kind in wire.Kind:
        data = bytes((0xA2, 1, kind)) + body
        try:
            message = decode(data)
        except WireError:
            continue
        assert encode(message) == data


@given(messages, st.data())
def test_decode__one_byte_changed__wire_error_or_another_canonical_message(
    message: object, data: st.DataObject
) -> None:
    raw = bytearray(encode(message))  # type: ignore[arg-type]
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= data.draw(st.integers(1, 255))
    try:
        decoded = decode(bytes(raw))
    except WireError:
        return
    assert encode(decoded) == bytes(raw)


@given(messages, st.data())
def test_decode__truncated_or_extended__wire_error(message: object, data: st.DataObject) -> None:
    raw = encode(message)  # type: ignore[arg-type]
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(WireError):
        decode(raw[:cut])
    with pytest.raises(WireError):
        decode(raw + data.draw(st.binary(min_size=1, max_size=4)))


def _update(**changes: object) -> DelegateUpdate:
    fields: dict[str, object] = {
        "request_id": b"\x01" * 8,
        "chain_id": 31337,
        "token_network": Address(b"\x0a" * 20),
        "generation": Generation(1),
        "closer": Address(b"\x0b" * 20),
        "non_closer": Address(b"\x0c" * 20),
        "nonce": Nonce(7),
        "closer_balance": BalancePreimage(TokenAmount(5), TokenAmount(0), Locksroot(b"\x0d" * 32)),
        "additional_hash": AdditionalHash(b"\x0e" * 32),
        "closing_signature": Signature(b"\x11" * 65),
        "reward": TokenAmount(3),
        "delegation_signature": Signature(b"\x22" * 65),
        "own_nonce": Nonce(2),
        "own_balance": BalancePreimage(TokenAmount(1), TokenAmount(0), Locksroot(b"\x0f" * 32)),
    }
    fields.update(changes)
    return DelegateUpdate(**fields)  # type: ignore[arg-type]


def test_encode__delegate_update__the_documented_layout() -> None:
    data = encode(_update())
    assert len(data) == 465
    assert data[:3] == bytes((0xA2, 1, 1))
    assert data[3:11] == b"\x01" * 8
    assert int.from_bytes(data[11:19], "big") == 31337
    assert data[19:39] == b"\x0a" * 20
    assert int.from_bytes(data[39:43], "big") == 1
    assert data[43:63] == b"\x0b" * 20  # closer
    assert data[63:83] == b"\x0c" * 20  # non-closer
    assert int.from_bytes(data[83:91], "big") == 7
    assert int.from_bytes(data[91:123], "big") == 5  # closer's transferred
    assert data[187:219] == b"\x0e" * 32  # additional hash
    assert data[219:284] == b"\x11" * 65
    assert int.from_bytes(data[284:296], "big") == 3  # reward, 96 bits
    assert data[296:361] == b"\x22" * 65
    assert int.from_bytes(data[361:369], "big") == 2  # own nonce


def test_encode__other_messages__documented_sizes() -> None:
    rid = b"\x00" * 8
    assert len(encode(RegisterSecret(rid, Secret(b"\x01" * 32), Timestamp(5)))) == 51
    lock = Lock(Timestamp(1), TokenAmount(2), SecretHash(b"\x03" * 32))
    one = Unlock(rid, 1, Address(b"\x01" * 20), Address(b"\x02" * 20), Address(b"\x03" * 20),
                 Generation(1), (lock,))  # fmt: skip
    assert len(encode(one)) == 85 + 96
    assert len(encode(RawTransaction(rid, Timestamp(1), b"\x01" * 10))) == 3 + 8 + 8 + 2 + 10
    assert len(encode(WatchAck(rid, Reason.STALE, Timestamp(1), "ab"))) == 3 + 8 + 1 + 8 + 1 + 2
    outcome = WatchOutcome(rid, Action.UPDATE, OutcomeStatus.CONFIRMED, bytes(32), Timestamp(1))
    assert len(encode(outcome)) == 3 + 8 + 2 + 32 + 8 + 1
    beacon = ChainBeacon(1, Address(b"\x01" * 20), Timestamp(1), TokenAmount(0),
                         Service.DELEGATE, 1, wire.UNSIGNED, 3)  # fmt: skip
    assert len(encode(beacon)) == 126


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "header"),
        (b"\xa2\x01", "header"),
        (b"\xa1\x01\x01", "not a watch payload"),
        (b"\xa2\x02\x01", "version"),
        (b"\xa2\x01\x00", "kind"),
        (b"\xa2\x01\x08", "kind"),
        (b"\xa2\x01\x05" + bytes(8) + b"\x0e" + bytes(8) + b"\x00", "reason"),
        (b"\xa2\x01\x05" + bytes(8) + b"\x00" + bytes(8) + b"\x01\xff", "UTF-8"),
        (b"\xa2\x01\x05" + bytes(8) + b"\x00" + bytes(8) + bytes((MAX_TEXT + 1,)), "text of"),
        (b"\xa2\x01\x06" + bytes(8) + b"\x09\x01" + bytes(41), "action"),
        (b"\xa2\x01\x06" + bytes(8) + b"\x01\x04" + bytes(41), "outcome status"),
        (b"\xa2\x01\x04" + bytes(8) + bytes(8) + b"\x00\x00", "raw transaction of 0"),
        (
            b"\xa2\x01\x03" + bytes(8 + 8 + 60 + 4) + (MAX_UNLOCK_LOCKS + 1).to_bytes(2, "big"),
            "locks, at most",
        ),
    ],
)
def test_decode__malformed__wire_error_naming_the_fault(data: bytes, why: str) -> None:
    with pytest.raises(WireError, match=why):
        decode(data)


def test_decode__delegate_update_with_nonce_zero_or_same_parties__refused() -> None:
    data = bytearray(encode(_update()))
    data[83:91] = bytes(8)
    with pytest.raises(WireError, match="nonce 0"):
        decode(bytes(data))
    data = bytearray(encode(_update()))
    data[63:83] = data[43:63]
    with pytest.raises(WireError, match="same"):
        decode(bytes(data))
    data = bytearray(encode(_update()))
    data[43:63] = bytes(20)
    with pytest.raises(WireError, match="zero address"):
        decode(bytes(data))


def test_decode__unlock_with_an_expiration_beyond_64_bits__refused() -> None:
    lock = Lock(Timestamp(1), TokenAmount(2), SecretHash(b"\x03" * 32))
    data = bytearray(encode(Unlock(b"\x00" * 8, 1, Address(b"\x01" * 20), Address(b"\x02" * 20),
                                   Address(b"\x03" * 20), Generation(1), (lock,))))  # fmt: skip
    data[85] = 1  # the high byte of the lock's 32-byte expiration
    with pytest.raises(WireError, match="expiration"):
        decode(bytes(data))


def test_decode__beacon_with_unknown_service_flags__refused() -> None:
    beacon = ChainBeacon(1, Address(b"\x01" * 20), Timestamp(1), TokenAmount(0),
                         Service.DELEGATE, 1, wire.UNSIGNED, 3)  # fmt: skip
    data = bytearray(encode(beacon))
    data[3 + 8 + 20 + 8 + 12] = 0x04
    with pytest.raises(WireError, match="service"):
        decode(bytes(data))


def test_beacon__signed__signature_covers_everything_but_the_ttl() -> None:
    key = PrivateKey(b"\x01" * 32)
    beacon = ChainBeacon(1, Address(b"\x01" * 20), Timestamp(9), TokenAmount(4),
                         Service.GATEWAY, 123, wire.UNSIGNED, 3).signed(key)  # fmt: skip
    hop = beacon.hop()
    assert hop.ttl == 2 and hop.digest() == beacon.digest() and hop.signature == beacon.signature


def test_constructors__out_of_range__validation_error_not_encoded() -> None:
    with pytest.raises(ValueError, match="reward"):
        _update(reward=TokenAmount(MAX_REWARD + 1))
    with pytest.raises(ValueError, match="text"):
        WatchAck(b"\x00" * 8, Reason.ACCEPTED, Timestamp(0), "é" * MAX_TEXT)
    with pytest.raises(ValueError, match="request id"):
        RegisterSecret(b"\x00" * 7, Secret(b"\x01" * 32), Timestamp(1))
