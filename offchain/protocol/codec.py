"""The canonical binary encoding of messages: `encode(message) -> bytes`, `decode(bytes)`.

Belongs here: the wire format only. Layout: `version (1) ‖ type (1) ‖ fields ‖ signature
(65)`, fields in the order of the class's `FIELDS`, each in its `Field` encoding.
Integers that are usually small (nonces, timestamps, amounts) are minimal unsigned LEB128
varints; everything else is fixed width, big-endian. The one list, `Field.PAYMENTS` (the
entries of a `TransferBatch`), is a one-byte count in 1..`MAX_BATCH_PAYMENTS` followed by
that many entries, each laid out by `BatchEntry.FIELDS`.

Canonical: each message has exactly one encoding. `decode` refuses non-minimal varints,
values out of range, unknown versions, types or reasons (the enum fields of
`messages.ENUM_FIELDS`), list counts outside their range, short input and trailing bytes,
so `encode(decode(b)) == b` for every accepted `b` and `decode(encode(m)) == m` for every
message. Any input that is not a valid encoding raises `DecodeError` and nothing else.
Being canonical also lets the codec remember, per message object, the body it was decoded
from or that its signer encoded (`remember_body`), so that the same body is not encoded
again.

Does not belong here: signature checks (the signature is carried, not verified), channel
rules, or I/O.
"""

from __future__ import annotations

from dataclasses import fields as dataclass_fields
from typing import Final

from offchain.protocol.errors import ValidationError
from offchain.protocol.messages import (
    ENUM_FIELDS,
    MAX_BATCH_PAYMENTS,
    MAX_MESSAGE_AMOUNT,
    MESSAGE_CLASSES,
    WIRE_VERSION,
    BatchEntry,
    Field,
    Message,
    MessageType,
)
from offchain.protocol.types import SIGNATURE_LENGTH, UINT32_MAX, UINT64_MAX, TokenAmount

MESH_FRAME_BYTES: Final = 210
"""One long-range mesh radio frame; every per-hop payment message must fit in it.

`TransferBatch` is not one of those: it is a throughput tool whose size grows with its
entries, and the mesh fragments it end to end. docs/spec.md §9 says how many entries fit
one frame, for a sender that wants its batch to travel unfragmented.
"""

_FIXED_SIZES: Final = {
    Field.ADDRESS: 20,
    Field.BYTES32: 32,
    Field.U8: 1,
    Field.U32: 4,
    Field.U64: 8,
}
_VARINT_LIMITS: Final = {Field.VARINT64: UINT64_MAX, Field.AMOUNT: MAX_MESSAGE_AMOUNT}
_AMOUNT_VARINT_BITS: Final = 7 * ((MAX_MESSAGE_AMOUNT.bit_length() + 6) // 7)
_FIXED_INT_LIMITS: Final = {Field.U8: 0xFF, Field.U32: UINT32_MAX, Field.U64: UINT64_MAX}


class DecodeError(ValidationError):
    """Bytes that are not the canonical encoding of a message."""


class EncodeError(ValidationError):
    """A message whose field values cannot be encoded (out of range, wrong length)."""


def varint_size(limit: int) -> int:
    """The longest LEB128 encoding of a value up to `limit`."""
    return max(1, (limit.bit_length() + 6) // 7)


def max_size(message_type: MessageType) -> int:
    """The largest encoding of a message of this type."""
    return 2 + _fields_max_size(MESSAGE_CLASSES[message_type].FIELDS) + SIGNATURE_LENGTH


def _fields_max_size(layout: tuple[tuple[str, Field], ...]) -> int:
    size = 0
    for _, kind in layout:
        if kind is Field.PAYMENTS:
            size += 1 + MAX_BATCH_PAYMENTS * _fields_max_size(BatchEntry.FIELDS)
        else:
            size += _FIXED_SIZES.get(kind) or varint_size(_VARINT_LIMITS[kind])
    return size


def _put_varint(out: bytearray, value: int) -> None:
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


KNOWN_BODIES: Final = 64
"""Message objects whose bodies `encode_body` remembers (`remember_body`), oldest out first."""

# Bodies known for particular message objects, by identity: the bytes a message was decoded
# from, and bodies the signer has encoded (see `remember_body`). A node encodes the body of
# every message it sends twice (to sign it, then on the wire) and of every message it
# receives once more (to check its signature), though it holds those bytes: this saves the
# second encodings. By identity, not equality, so an entry only ever answers for the very
# object it was made for (an equal message with a `True` for a 1 must still be refused);
# an entry holds its message, so no other object can take its id while it lives.
_KNOWN_BODIES: dict[int, tuple[Message, bytes]] = {}


def remember_body(message: Message, body: bytes) -> None:
    """Note that `body` is `encode_body(message)` for this very object.

    For callers that have the canonical body at hand: the signer, whose signed copy has
    the body of the unsigned message it just encoded (the body leaves the signature out).
    """
    _KNOWN_BODIES[id(message)] = (message, body)
    if len(_KNOWN_BODIES) > KNOWN_BODIES:
        _KNOWN_BODIES.pop(next(iter(_KNOWN_BODIES)), None)


def encode(message: Message) -> bytes:
    """The canonical bytes of `message` (body and signature)."""
    return encode_body(message) + _checked_signature(message.signature)


def encode_body(message: Message) -> bytes:
    """The bytes the signature covers: everything but the trailing signature."""
    known = _KNOWN_BODIES.get(id(message))
    if known is not None and known[0] is message:
        return known[1]
    out = bytearray((WIRE_VERSION, message.TYPE))
    # Plans are per class, with plain ints for the field kinds: this runs several times per
    # message (body hash when signing, when checking, the wire), so enum lookups showed.
    for name, code, size, limit in _PLANS[type(message)]:
        value = getattr(message, name)
        if code == _VARINT:
            if type(value) is not int or not 0 <= value <= limit:
                _check_int(value, limit, name)
            while value > 0x7F:  # `_put_varint`, inline
                out.append((value & 0x7F) | 0x80)
                value >>= 7
            out.append(value)
        elif code == _FIXED_INT:
            if type(value) is not int or not 0 <= value <= limit:
                _check_int(value, limit, name)  # refuses; a plain int in range needs no call
            out += int(value).to_bytes(size, "big")
        elif code == _PAYMENTS:
            _put_payments(out, value, name)
        else:
            if type(value) is not bytes or len(value) != size:
                raise EncodeError(f"{name}: expected {size} bytes")
            out += value
    return bytes(out)


_VARINT, _FIXED_INT, _PAYMENTS, _BYTES = range(4)


def _plan(kind: Field) -> tuple[int, int, int]:
    if kind in _VARINT_LIMITS:
        return _VARINT, 0, _VARINT_LIMITS[kind]
    if kind in _FIXED_INT_LIMITS:
        return _FIXED_INT, _FIXED_SIZES[kind], _FIXED_INT_LIMITS[kind]
    if kind is Field.PAYMENTS:
        return _PAYMENTS, 0, 0
    return _BYTES, _FIXED_SIZES[kind], 0


_PLANS: Final[dict[type, tuple[tuple[str, int, int, int], ...]]] = {
    cls: tuple((name, *_plan(kind)) for name, kind in cls.FIELDS)
    for cls in MESSAGE_CLASSES.values()
}
# Per class with an enum field: its position among the decoded values, and the enum.
_ENUM_INDEXES: Final = {
    cls: ([name for name, _ in cls.FIELDS].index(field), kind)
    for cls, (field, kind) in ENUM_FIELDS.items()
}


def _put_payments(out: bytearray, entries: object, name: str) -> None:
    # Written out for the one entry layout (`_check_layouts` holds BatchEntry.FIELDS to it),
    # with the range checks inline: a batch is encoded several times per update (the body
    # hash when signing and when checking, the wire), so its per-entry cost bounds the
    # batching throughput. `type(...) is int` also refuses bools, as `_check_int` does.
    if not isinstance(entries, tuple) or not 1 <= len(entries) <= MAX_BATCH_PAYMENTS:
        raise EncodeError(f"{name}: expected a tuple of 1..{MAX_BATCH_PAYMENTS} entries")
    out.append(len(entries))
    for entry in entries:
        if type(entry) is not BatchEntry:
            raise EncodeError(f"{name}: expected BatchEntry items")
        payment_id: int = entry.payment_id
        amount: int = entry.amount
        if type(payment_id) is not int or not 0 <= payment_id <= UINT64_MAX:
            raise EncodeError(f"{name}.payment_id: expected an integer in 0..{UINT64_MAX}")
        if type(amount) is not int or not 0 <= amount <= MAX_MESSAGE_AMOUNT:
            raise EncodeError(f"{name}.amount: expected an integer in 0..{MAX_MESSAGE_AMOUNT}")
        out += payment_id.to_bytes(8, "big")
        while amount > 0x7F:  # `_put_varint`, inline
            out.append((amount & 0x7F) | 0x80)
            amount >>= 7
        out.append(amount)


def _check_int(value: object, limit: int, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
        raise EncodeError(f"{name}: expected an integer in 0..{limit}")


def _checked_signature(signature: object) -> bytes:
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_LENGTH:
        raise EncodeError(f"signature: expected {SIGNATURE_LENGTH} bytes")
    return signature


_CLASSES_BY_CODE: Final[dict[int, type[Message]]] = {
    int(code): cls for code, cls in MESSAGE_CLASSES.items()
}
# Per class, the decoder's plan: (code, fixed size or longest varint, limit) per field.
_DECODE_PLANS: Final[dict[type, tuple[tuple[int, int, int], ...]]] = {
    cls: tuple(
        (code, varint_size(limit) if code == _VARINT else size, limit)
        for _, code, size, limit in plan
    )
    for cls, plan in _PLANS.items()
}


def decode(data: bytes) -> Message:
    """Parse the canonical encoding of one message; raise `DecodeError` on anything else."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("expected bytes")
    # One pass over local `data` and `pos` with the field plans, no reader object: every
    # message received is decoded once, so the per-field cost is paid ten times a payment.
    data = bytes(data)
    end = len(data)
    if end < 2:
        raise DecodeError("truncated message")
    if data[0] != WIRE_VERSION:
        raise DecodeError(f"unknown wire version {data[0]}")
    cls = _CLASSES_BY_CODE.get(data[1])
    if cls is None:
        raise DecodeError(f"unknown message type {data[1]}")
    pos = 2
    values: list[object] = []
    for code, size, limit in _DECODE_PLANS[cls]:
        if code == _VARINT:
            value = shift = 0
            for _ in range(size):  # `size`: the longest encoding of `limit`
                if pos >= end:
                    raise DecodeError("truncated varint")
                byte = data[pos]
                pos += 1
                value |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            else:
                raise DecodeError("varint too long")
            # A final zero byte after other bytes is a longer spelling of a smaller
            # number: refused, so that every value has one encoding.
            if byte == 0 and shift > 7:
                raise DecodeError("non-minimal varint")
            if value > limit:
                raise DecodeError("varint out of range")
            values.append(value)
        elif code == _PAYMENTS:
            entries, pos = _read_payments(data, pos)
            values.append(entries)
        else:
            if pos + size > end:
                raise DecodeError("truncated message")
            chunk = data[pos : pos + size]
            pos += size
            values.append(int.from_bytes(chunk, "big") if code == _FIXED_INT else chunk)
    body_end = pos
    if pos + SIGNATURE_LENGTH > end:
        raise DecodeError("truncated message")
    values.append(data[pos : pos + SIGNATURE_LENGTH])
    if pos + SIGNATURE_LENGTH != end:
        raise DecodeError("trailing bytes after the signature")
    enum_field = _ENUM_INDEXES.get(cls)
    if enum_field is not None:
        index, kind = enum_field
        reason = values[index]
        assert isinstance(reason, int)  # a U8 field always decodes to an int
        try:
            values[index] = kind(reason)
        except ValueError:
            raise DecodeError(f"unknown reason {reason} ({kind.__name__})") from None
    # Positional: `_check_layouts` holds every class's fields to FIELDS + signature.
    message = cls(*values)  # type: ignore[arg-type]
    # Canonical: its body encodes to exactly the bytes it came from (the receiver hashes
    # them to check the signature).
    remember_body(message, data[:body_end])
    return message


def _read_payments(data: bytes, pos: int) -> tuple[tuple[BatchEntry, ...], int]:
    # The varint reading of `decode` written out for the entry layout, for the reason
    # `_put_payments` gives; the refusals are the same.
    end = len(data)
    if pos >= end:
        raise DecodeError("truncated message")
    count = data[pos]
    pos += 1
    if not 1 <= count <= MAX_BATCH_PAYMENTS:
        raise DecodeError(f"batch of {count} payments, expected 1..{MAX_BATCH_PAYMENTS}")
    entries = []
    for _ in range(count):
        if pos + 8 >= end:  # the id and at least one byte of the amount
            raise DecodeError("truncated message")
        payment_id = int.from_bytes(data[pos : pos + 8], "big")
        pos += 8
        amount = shift = 0
        while True:
            if pos >= end:
                raise DecodeError("truncated varint")
            byte = data[pos]
            pos += 1
            amount |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
            if shift >= _AMOUNT_VARINT_BITS:
                raise DecodeError("varint too long")
        if byte == 0 and shift > 7:
            raise DecodeError("non-minimal varint")
        if amount > MAX_MESSAGE_AMOUNT:
            raise DecodeError("varint out of range")
        entries.append(BatchEntry(payment_id, TokenAmount(amount)))
    return tuple(entries), pos


def _check_layouts() -> None:
    # Every class's dataclass fields are its wire FIELDS plus the signature, in order:
    # `decode` relies on it to build messages from keyword arguments.
    for cls in MESSAGE_CLASSES.values():
        names = [f.name for f in dataclass_fields(cls)]
        assert names == [*(name for name, _ in cls.FIELDS), "signature"], cls.__name__
    # Enum fields are one byte, so every member must fit it.
    for cls, (name, kind) in ENUM_FIELDS.items():
        assert (name, Field.U8) in cls.FIELDS, cls.__name__
        assert all(0 <= member <= 0xFF for member in kind), kind.__name__
    # The batch entry codec is written out for this layout, and its count is one byte.
    assert BatchEntry.FIELDS == (("payment_id", Field.U64), ("amount", Field.AMOUNT))
    assert [f.name for f in dataclass_fields(BatchEntry)] == ["payment_id", "amount"]
    assert 1 <= MAX_BATCH_PAYMENTS <= 0xFF


_check_layouts()
