"""The wire codec: round trips, canonical form, sizes, and refusal of every malformed input."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from offchain.protocol import codec, signing
from offchain.protocol.codec import MESH_FRAME_BYTES, DecodeError, EncodeError, decode, encode
from offchain.protocol.messages import (
    ENUM_FIELDS,
    MAX_BATCH_PAYMENTS,
    MAX_MESSAGE_AMOUNT,
    MESSAGE_CLASSES,
    BatchEntry,
    CoopSettleRefusal,
    CoopSettleRefused,
    DirectTransfer,
    Field,
    LockedTransfer,
    Message,
    MessageType,
    SecretReveal,
    TransferBatch,
    WithdrawRequest,
)
from offchain.protocol.wire_doc import message_tables

PER_HOP_PAYMENT_MESSAGES = (
    MessageType.DIRECT_TRANSFER,
    MessageType.LOCKED_TRANSFER,
    MessageType.LOCK_RETURN,
    MessageType.UNLOCK,
    MessageType.LOCK_EXPIRED,
    MessageType.SECRET_REQUEST,
    MessageType.SECRET_REVEAL,
    MessageType.PAYMENT_SECRET,
    MessageType.PROCESSED,
)

_FIELD_STRATEGIES: dict[Field, st.SearchStrategy[Any]] = {
    Field.ADDRESS: st.binary(min_size=20, max_size=20),
    Field.BYTES32: st.binary(min_size=32, max_size=32),
    Field.U8: st.integers(0, 255),
    Field.U32: st.integers(0, 2**32 - 1),
    Field.U64: st.integers(0, 2**64 - 1),
    Field.VARINT64: st.one_of(st.integers(0, 300), st.integers(0, 2**64 - 1)),
    Field.AMOUNT: st.one_of(st.integers(0, 10**6), st.integers(0, MAX_MESSAGE_AMOUNT)),
}
# Zero amounts and repeated ids are well-formed on the wire (the channel rules refuse them).
_FIELD_STRATEGIES[Field.PAYMENTS] = st.lists(
    st.builds(
        BatchEntry, _FIELD_STRATEGIES[BatchEntry.FIELDS[0][1]], _FIELD_STRATEGIES[Field.AMOUNT]
    ),
    min_size=1,
    max_size=MAX_BATCH_PAYMENTS,
).map(tuple)


def message_strategy(message_type: MessageType) -> st.SearchStrategy[Message]:
    cls = MESSAGE_CLASSES[message_type]
    kwargs: dict[str, st.SearchStrategy[Any]] = {
        name: _FIELD_STRATEGIES[kind] for name, kind in cls.FIELDS
    }
    if cls in ENUM_FIELDS:
        name, kind = ENUM_FIELDS[cls]
        kwargs[name] = st.sampled_from(kind)
    kwargs["signature"] = st.binary(min_size=65, max_size=65)
    return st.builds(cls, **kwargs)


any_message = st.sampled_from(list(MessageType)).flatmap(message_strategy)


def fresh_encoding(message: Message) -> bytes:
    """`encode` of an equal copy: the codec remembers the bytes a message object was decoded
    from (`codec.remember_body`), and a canonicality check must encode it anew."""
    return encode(dataclasses.replace(message))


@given(any_message)
def test_round_trip__any_message__decode_encode_identity(message: Message) -> None:
    data = encode(message)
    assert decode(data) == message
    assert fresh_encoding(decode(data)) == data
    assert len(data) <= codec.max_size(message.TYPE)


@pytest.mark.parametrize("message_type", PER_HOP_PAYMENT_MESSAGES, ids=lambda t: t.name)
def test_max_size__per_hop_payment_message__fits_one_mesh_frame(message_type: MessageType) -> None:
    assert codec.max_size(message_type) <= MESH_FRAME_BYTES


def _largest(message_type: MessageType) -> Message:
    cls = MESSAGE_CLASSES[message_type]
    top = {
        Field.ADDRESS: b"\xff" * 20,
        Field.BYTES32: b"\xff" * 32,
        Field.U8: 1,
        Field.U32: 2**32 - 1,
        Field.U64: 2**64 - 1,
        Field.VARINT64: 2**64 - 1,
        Field.AMOUNT: MAX_MESSAGE_AMOUNT,
    }
    top[Field.PAYMENTS] = (BatchEntry(2**64 - 1, MAX_MESSAGE_AMOUNT),) * MAX_BATCH_PAYMENTS
    kwargs: dict[str, Any] = {name: top[kind] for name, kind in cls.FIELDS}
    if cls in ENUM_FIELDS:
        name, kind = ENUM_FIELDS[cls]
        kwargs[name] = max(kind)
    return cls(**kwargs, signature=b"\x01" * 65)


@pytest.mark.parametrize("message_type", list(MessageType), ids=lambda t: t.name)
def test_max_size__largest_values__equals_encoded_length(message_type: MessageType) -> None:
    assert len(encode(_largest(message_type))) == codec.max_size(message_type)


@pytest.mark.parametrize(
    "message_type",
    [t for t in MessageType if t is not MessageType.TRANSFER_BATCH],
    ids=lambda t: t.name,
)
def test_max_size__every_message_but_a_batch__fits_one_mesh_frame(
    message_type: MessageType,
) -> None:
    # Withdraw and cooperative-settle messages (the refusal included) cross the same mesh.
    assert codec.max_size(message_type) <= MESH_FRAME_BYTES


def test_coop_settle_refused__every_reason__round_trip_and_unknown_reason_refused() -> None:
    for reason in CoopSettleRefusal:
        message = CoopSettleRefused(
            b"\x01" * 20,  # type: ignore[arg-type]
            1,  # type: ignore[arg-type]
            2**90,  # type: ignore[arg-type]
            5,  # type: ignore[arg-type]
            1_700_000_600,  # type: ignore[arg-type]
            reason,
            b"\x02" * 65,  # type: ignore[arg-type]
        )
        decoded = decode(encode(message))
        assert decoded == message and decoded.reason is reason  # type: ignore[union-attr]
    data = encode(message)
    reason_at = len(data) - 65 - 1
    assert data[reason_at] == max(CoopSettleRefusal)
    with pytest.raises(DecodeError, match="unknown reason 0"):
        decode(data[:reason_at] + b"\x00" + data[reason_at + 1 :])


@given(st.binary(max_size=300))
def test_decode__random_bytes__only_decode_error(data: bytes) -> None:
    try:
        message = decode(data)
    except DecodeError:
        return
    assert fresh_encoding(message) == data


@given(st.binary(max_size=400))
def test_decode__random_batch_body__only_decode_error(data: bytes) -> None:
    # Random bytes rarely start with a valid header: give them one, so that the list decoder
    # itself meets random counts, ids and varints.
    raw = bytes((1, MessageType.TRANSFER_BATCH)) + data
    try:
        message = decode(raw)
    except DecodeError:
        return
    assert fresh_encoding(message) == raw


@given(any_message, st.data())
def test_decode__mutated_valid_message__only_decode_error_or_canonical(
    message: Message, data: st.DataObject
) -> None:
    _check_mutated(message, data)


@given(message_strategy(MessageType.TRANSFER_BATCH), st.data())
def test_decode__mutated_transfer_batch__only_decode_error_or_canonical(
    message: Message, data: st.DataObject
) -> None:
    # The one message with a list: mutations of its count and entries get their own search.
    _check_mutated(message, data)


def _check_mutated(message: Message, data: st.DataObject) -> None:
    raw = bytearray(encode(message))
    mutation = data.draw(st.sampled_from(["flip", "truncate", "extend", "insert"]))
    if mutation == "flip":
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] ^= data.draw(st.integers(1, 255))
    elif mutation == "truncate":
        del raw[data.draw(st.integers(0, len(raw) - 1)) :]
    elif mutation == "extend":
        raw += data.draw(st.binary(min_size=1, max_size=8))
    else:
        position = data.draw(st.integers(0, len(raw)))
        raw[position:position] = data.draw(st.binary(min_size=1, max_size=4))
    try:
        decoded = decode(bytes(raw))
    except DecodeError:
        return
    assert fresh_encoding(decoded) == bytes(raw)  # whatever is accepted is canonical


def test_decode__non_minimal_varint__refused() -> None:
    message = DirectTransfer(b"\x01" * 20, 1, 5, 7, 9, b"\x02" * 65)
    data = encode(message)
    # The nonce 5 sits after version, type, network (20) and generation (4): offset 26.
    assert data[26] == 5
    longer = data[:26] + bytes((0x85, 0x00)) + data[27:]
    with pytest.raises(DecodeError, match="non-minimal"):
        decode(longer)


def test_decode__unknown_version_type_or_reason__refused() -> None:
    data = encode(_largest(MessageType.LOCK_RETURN))
    with pytest.raises(DecodeError, match="version"):
        decode(b"\x02" + data[1:])
    with pytest.raises(DecodeError, match="type"):
        decode(data[:1] + b"\xee" + data[2:])
    reason_at = len(data) - 65 - 20 - 1
    with pytest.raises(DecodeError, match="reason"):
        decode(data[:reason_at] + b"\x63" + data[reason_at + 1 :])


def test_decode__amount_above_cap__refused() -> None:
    body = bytearray(encode(DirectTransfer(b"\x01" * 20, 1, 1, 1, 0, b"\x02" * 65)))
    amount_at = 2 + 20 + 4 + 1 + 8
    too_big = bytearray()
    codec._put_varint(too_big, MAX_MESSAGE_AMOUNT + 1)
    body[amount_at : amount_at + 1] = too_big
    with pytest.raises(DecodeError):
        decode(bytes(body))


def test_decode__not_bytes__refused() -> None:
    with pytest.raises(DecodeError):
        decode("text")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "message",
    [
        DirectTransfer(b"\x01" * 19, 1, 1, 1, 1, b"\x02" * 65),
        DirectTransfer(b"\x01" * 20, 2**32, 1, 1, 1, b"\x02" * 65),
        DirectTransfer(b"\x01" * 20, 1, -1, 1, 1, b"\x02" * 65),
        DirectTransfer(b"\x01" * 20, 1, 1, 1, MAX_MESSAGE_AMOUNT + 1, b"\x02" * 65),
        DirectTransfer(b"\x01" * 20, 1, 1, 1, 1, b"\x02" * 64),
        LockedTransfer(b"\x01" * 20, 1, 1, 1, 1, 1, b"\x03" * 31, b"\x04" * 20, 1, b"\x02" * 65),
    ],
)
def test_encode__field_out_of_range__encode_error(message: Message) -> None:
    with pytest.raises(EncodeError):
        encode(message)


def test_spec__wire_tables__match_the_code() -> None:
    spec = (Path(__file__).resolve().parents[2] / "docs" / "spec.md").read_text()
    start = spec.index("<!-- wire tables: generated, do not edit by hand -->") + len(
        "<!-- wire tables: generated, do not edit by hand -->\n"
    )
    end = spec.index("<!-- end of wire tables -->")
    assert spec[start:end].strip() == message_tables().strip(), (
        "docs/spec.md wire tables are stale: regenerate with python -m offchain.protocol.wire_doc"
    )


def _batch(*amounts: int, nonce: int = 1) -> TransferBatch:
    entries = tuple(BatchEntry(100 + i, amount) for i, amount in enumerate(amounts))
    return TransferBatch(b"\x01" * 20, 1, nonce, entries, b"\x02" * 65)  # type: ignore[arg-type]


# Offsets in a batch with a one-byte nonce: version, type, network (20), generation (4),
# nonce (1), then the count, then the entries.
_COUNT_AT = 2 + 20 + 4 + 1


def test_transfer_batch__full_batch__round_trip_and_largest_size() -> None:
    message = _batch(*range(1, MAX_BATCH_PAYMENTS + 1))
    data = encode(message)
    assert decode(data) == message
    assert data[_COUNT_AT] == MAX_BATCH_PAYMENTS
    assert codec.max_size(MessageType.TRANSFER_BATCH) == 2 + 20 + 4 + 10 + 1 + 255 * 22 + 65


def test_transfer_batch__zero_amount_and_repeated_id__decoded_for_the_channel_to_refuse() -> None:
    message = TransferBatch(
        b"\x01" * 20,  # type: ignore[arg-type]
        1,  # type: ignore[arg-type]
        1,  # type: ignore[arg-type]
        (BatchEntry(7, 0), BatchEntry(7, 0)),  # type: ignore[arg-type]
        b"\x02" * 65,  # type: ignore[arg-type]
    )
    assert decode(encode(message)) == message


def test_decode__batch_count_zero__refused() -> None:
    data = encode(_batch(5))
    empty = data[:_COUNT_AT] + b"\x00" + data[-65:]
    with pytest.raises(DecodeError, match="batch of 0 payments"):
        decode(empty)


def test_decode__batch_count_above_cap__refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # With the cap at 255 no larger count fits the count byte; a lower cap shows the check.
    data = encode(_batch(1, 2, 3, 4))
    monkeypatch.setattr(codec, "MAX_BATCH_PAYMENTS", 3)
    with pytest.raises(DecodeError, match=r"batch of 4 payments, expected 1\.\.3"):
        decode(data)


def test_decode__batch_entry_missing_or_truncated__refused() -> None:
    data = encode(_batch(5, 6, 700))
    entries_end = len(data) - 65
    # The count says 3, the body holds 2 entries (or 2 and part of the third): the decoder
    # must not take the signature for entries and then accept the rest.
    for cut in range(_COUNT_AT + 1, entries_end):
        with pytest.raises(DecodeError):
            decode(data[:cut] + data[entries_end:])
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            decode(data[:cut])


def test_decode__batch_non_minimal_amount__refused() -> None:
    data = encode(_batch(5))
    amount_at = _COUNT_AT + 1 + 8
    assert data[amount_at] == 5
    with pytest.raises(DecodeError, match="non-minimal"):
        decode(data[:amount_at] + bytes((0x85, 0x00)) + data[amount_at + 1 :])


def test_decode__batch_amount_above_cap_or_too_long__refused() -> None:
    data = encode(_batch(5))
    amount_at = _COUNT_AT + 1 + 8
    too_big = bytearray()
    codec._put_varint(too_big, MAX_MESSAGE_AMOUNT + 1)
    with pytest.raises(DecodeError, match="out of range"):
        decode(data[:amount_at] + bytes(too_big) + data[amount_at + 1 :])
    with pytest.raises(DecodeError, match="too long"):
        decode(data[:amount_at] + b"\x80" * 14 + b"\x01" + data[amount_at + 1 :])


def test_decode__batch_trailing_bytes__refused() -> None:
    with pytest.raises(DecodeError, match="trailing"):
        decode(encode(_batch(5, 6)) + b"\x00")


@pytest.mark.parametrize(
    "payments",
    [
        (),
        (BatchEntry(1, 1),) * (MAX_BATCH_PAYMENTS + 1),
        [BatchEntry(1, 1)],
        (BatchEntry(1, -1),),
        (BatchEntry(2**64, 1),),
        (BatchEntry(1, MAX_MESSAGE_AMOUNT + 1),),
        (BatchEntry(1, True),),
        ((1, 1),),
    ],
    ids=["empty", "above-cap", "list", "negative", "id-too-big", "amount-too-big", "bool", "tuple"],
)
def test_encode__bad_batch_payments__encode_error(payments: Any) -> None:
    with pytest.raises(EncodeError):
        encode(TransferBatch(b"\x01" * 20, 1, 1, payments, b"\x02" * 65))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("frame", "nonce", "amount", "fits"),
    [
        # Worst case: a 10-byte nonce and 14-byte amounts (22-byte entries).
        (MESH_FRAME_BYTES, 2**64 - 1, MAX_MESSAGE_AMOUNT, 4),
        (1200, 2**64 - 1, MAX_MESSAGE_AMOUNT, 49),
        # Typical: a nonce and amounts below 2**21 (3-byte varints, 11-byte entries).
        (MESH_FRAME_BYTES, 2**21 - 1, 2**21 - 1, 10),
        (1200, 2**21 - 1, 2**21 - 1, 100),
    ],
)
def test_transfer_batch__entries_per_frame__as_the_spec_states(
    frame: int, nonce: int, amount: int, fits: int
) -> None:
    # docs/spec.md §9 quotes these figures.
    assert len(encode(_batch(*[amount] * fits, nonce=nonce))) <= frame
    assert len(encode(_batch(*[amount] * (fits + 1), nonce=nonce))) > frame


# --- bodies remembered by identity ----------------------------------------------------------


def test_known_body__decoded_message__its_own_bytes_and_only_for_that_object() -> None:
    data = encode(DirectTransfer(b"\x01" * 20, 1, 5, 7, 9, b"\x02" * 65))
    message = decode(data)
    assert codec.encode_body(message) == data[:-65] == fresh_encoding(message)[:-65]
    # An equal object is not the same object: it is encoded (and refused) on its own.
    twin = dataclasses.replace(message, generation=True)
    assert twin == message
    with pytest.raises(EncodeError):
        encode(twin)


def test_known_body__signed_message__the_body_of_its_unsigned_twin() -> None:
    unsigned = SecretReveal(b"\x01" * 20, b"\x03" * 32, b"\x00" * 65)
    signed = signing.sign(b"\x07" * 32, unsigned, 1, b"\x04" * 20, b"\x05" * 20)
    assert signed.signature != unsigned.signature
    assert encode(signed) == fresh_encoding(signed)
    assert codec.encode_body(signed) == codec.encode_body(dataclasses.replace(unsigned))


def test_known_body__struct_signatures__the_body_is_not_encoded_to_sign() -> None:
    # A withdraw signs its EIP-712 struct (uint256 amounts), not its body: signing one the
    # wire cannot carry works as ever, and only its encoding is refused.
    request = WithdrawRequest(b"\x01" * 20, 1, b"\x04" * 20, 2**100, 5, b"\x00" * 65)
    signed = signing.sign(b"\x07" * 32, request, 1, b"\x04" * 20, b"\x05" * 20)
    with pytest.raises(EncodeError):
        encode(signed)


def test_known_bodies__bounded() -> None:
    data = encode(DirectTransfer(b"\x01" * 20, 1, 5, 7, 9, b"\x02" * 65))
    for _ in range(codec.KNOWN_BODIES + 10):
        decode(data)
    assert len(codec._KNOWN_BODIES) == codec.KNOWN_BODIES
