"""The wire codec: round trips, canonical form, sizes, and refusal of every malformed input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from offchain.protocol import codec
from offchain.protocol.codec import MESH_FRAME_BYTES, DecodeError, EncodeError, decode, encode
from offchain.protocol.messages import (
    MAX_MESSAGE_AMOUNT,
    MESSAGE_CLASSES,
    DirectTransfer,
    Field,
    LockedTransfer,
    LockReturn,
    Message,
    MessageType,
    ReturnReason,
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


def message_strategy(message_type: MessageType) -> st.SearchStrategy[Message]:
    cls = MESSAGE_CLASSES[message_type]
    kwargs: dict[str, st.SearchStrategy[Any]] = {
        name: _FIELD_STRATEGIES[kind] for name, kind in cls.FIELDS
    }
    if cls is LockReturn:
        kwargs["reason"] = st.sampled_from(ReturnReason)
    kwargs["signature"] = st.binary(min_size=65, max_size=65)
    return st.builds(cls, **kwargs)


any_message = st.sampled_from(list(MessageType)).flatmap(message_strategy)


@given(any_message)
def test_round_trip__any_message__decode_encode_identity(message: Message) -> None:
    data = encode(message)
    assert decode(data) == message
    assert encode(decode(data)) == data
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
    kwargs: dict[str, Any] = {name: top[kind] for name, kind in cls.FIELDS}
    if cls is LockReturn:
        kwargs["reason"] = ReturnReason.NO_ROUTE
    return cls(**kwargs, signature=b"\x01" * 65)


@pytest.mark.parametrize("message_type", list(MessageType), ids=lambda t: t.name)
def test_max_size__largest_values__equals_encoded_length(message_type: MessageType) -> None:
    assert len(encode(_largest(message_type))) == codec.max_size(message_type)


@given(st.binary(max_size=300))
def test_decode__random_bytes__only_decode_error(data: bytes) -> None:
    try:
        message = decode(data)
    except DecodeError:
        return
    assert encode(message) == data


@given(any_message, st.data())
def test_decode__mutated_valid_message__only_decode_error_or_canonical(
    message: Message, data: st.DataObject
) -> None:
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
    assert encode(decoded) == bytes(raw)  # whatever is accepted is canonical


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
