"""The canonical binary encoding of messages: `encode(message) -> bytes`, `decode(bytes)`.

Belongs here: the wire format only. Layout: `version (1) ‖ type (1) ‖ fields ‖ signature
(65)`, fields in the order of the class's `FIELDS`, each in its `Field` encoding.
Integers that are usually small (nonces, timestamps, amounts) are minimal unsigned LEB128
varints; everything else is fixed width, big-endian.

Canonical: each message has exactly one encoding. `decode` refuses non-minimal varints,
values out of range, unknown versions, types or reasons, short input and trailing bytes,
so `encode(decode(b)) == b` for every accepted `b` and `decode(encode(m)) == m` for every
message. Any input that is not a valid encoding raises `DecodeError` and nothing else.

Does not belong here: signature checks (the signature is carried, not verified), channel
rules, or I/O.
"""

from __future__ import annotations

from dataclasses import fields as dataclass_fields
from typing import Final

from offchain.protocol.errors import ValidationError
from offchain.protocol.messages import (
    MAX_MESSAGE_AMOUNT,
    MESSAGE_CLASSES,
    WIRE_VERSION,
    Field,
    LockReturn,
    Message,
    MessageType,
    ReturnReason,
)
from offchain.protocol.types import SIGNATURE_LENGTH, UINT32_MAX, UINT64_MAX

MESH_FRAME_BYTES: Final = 210
"""One long-range mesh radio frame; every per-hop payment message must fit in it."""

_FIXED_SIZES: Final = {
    Field.ADDRESS: 20,
    Field.BYTES32: 32,
    Field.U8: 1,
    Field.U32: 4,
    Field.U64: 8,
}
_VARINT_LIMITS: Final = {Field.VARINT64: UINT64_MAX, Field.AMOUNT: MAX_MESSAGE_AMOUNT}
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
    size = 2 + SIGNATURE_LENGTH
    for _, kind in MESSAGE_CLASSES[message_type].FIELDS:
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


def encode(message: Message) -> bytes:
    """The canonical bytes of `message` (body and signature)."""
    return encode_body(message) + _checked_signature(message.signature)


def encode_body(message: Message) -> bytes:
    """The bytes the signature covers: everything but the trailing signature."""
    out = bytearray((WIRE_VERSION, message.TYPE))
    for name, kind in message.FIELDS:
        value = getattr(message, name)
        if kind in _VARINT_LIMITS:
            _check_int(value, _VARINT_LIMITS[kind], name)
            _put_varint(out, value)
        elif kind in _FIXED_INT_LIMITS:
            _check_int(value, _FIXED_INT_LIMITS[kind], name)
            out += int(value).to_bytes(_FIXED_SIZES[kind], "big")
        else:
            if not isinstance(value, bytes) or len(value) != _FIXED_SIZES[kind]:
                raise EncodeError(f"{name}: expected {_FIXED_SIZES[kind]} bytes")
            out += value
    return bytes(out)


def _check_int(value: object, limit: int, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
        raise EncodeError(f"{name}: expected an integer in 0..{limit}")


def _checked_signature(signature: object) -> bytes:
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_LENGTH:
        raise EncodeError(f"signature: expected {SIGNATURE_LENGTH} bytes")
    return signature


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise DecodeError("truncated message")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def varint(self, limit: int) -> int:
        value = 0
        shift = 0
        for _ in range(varint_size(limit)):
            if self.pos >= len(self.data):
                raise DecodeError("truncated varint")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                # A final zero byte after other bytes is a longer spelling of a smaller
                # number: refused, so that every value has one encoding.
                if byte == 0 and shift > 7:
                    raise DecodeError("non-minimal varint")
                if value > limit:
                    raise DecodeError("varint out of range")
                return value
        raise DecodeError("varint too long")


def decode(data: bytes) -> Message:
    """Parse the canonical encoding of one message; raise `DecodeError` on anything else."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("expected bytes")
    reader = _Reader(bytes(data))
    header = reader.take(2)
    if header[0] != WIRE_VERSION:
        raise DecodeError(f"unknown wire version {header[0]}")
    try:
        cls = MESSAGE_CLASSES[MessageType(header[1])]
    except ValueError:
        raise DecodeError(f"unknown message type {header[1]}") from None
    values: dict[str, object] = {}
    for name, kind in cls.FIELDS:
        if kind in _VARINT_LIMITS:
            values[name] = reader.varint(_VARINT_LIMITS[kind])
        elif kind in _FIXED_INT_LIMITS:
            values[name] = int.from_bytes(reader.take(_FIXED_SIZES[kind]), "big")
        else:
            values[name] = reader.take(_FIXED_SIZES[kind])
    values["signature"] = reader.take(SIGNATURE_LENGTH)
    if reader.pos != len(reader.data):
        raise DecodeError("trailing bytes after the signature")
    if cls is LockReturn:
        reason = values["reason"]
        assert isinstance(reason, int)  # a U8 field always decodes to an int
        try:
            values["reason"] = ReturnReason(reason)
        except ValueError:
            raise DecodeError(f"unknown return reason {values['reason']}") from None
    return cls(**values)  # type: ignore[arg-type]


def _check_layouts() -> None:
    # Every class's dataclass fields are its wire FIELDS plus the signature, in order:
    # `decode` relies on it to build messages from keyword arguments.
    for cls in MESSAGE_CLASSES.values():
        names = [f.name for f in dataclass_fields(cls)]
        assert names == [*(name for name, _ in cls.FIELDS), "signature"], cls.__name__


_check_layouts()
