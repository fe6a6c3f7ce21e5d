"""mesh_relay.frames: every frame type round-trips; every malformed input raises exactly
``FrameDecodeError``."""

from __future__ import annotations

import pytest

from mesh_relay.errors import FrameDecodeError
from mesh_relay.frames import (
    ACK_TAG_LENGTH,
    E2E_ACK_LENGTH,
    HELLO_LENGTH,
    METRIC_INFINITY,
    ROUTE_ENTRY_LENGTH,
    ROUTED_HEADER_LENGTH,
    SEQNO_REQUEST_LENGTH,
    VERSION,
    FrameType,
    Hello,
    HopAck,
    RouteAdvert,
    Routed,
    Routes,
    SeqnoRequest,
    decode_frame,
    decode_route_entry,
    encode_hello,
    encode_hop_ack,
    encode_routed,
    encode_routes,
    encode_seqno_request,
    routed_prefix,
    routes_per_frame,
)
from mesh_relay.identity import Address

A = Address(b"\xaa" * 20)
B = Address(b"\xbb" * 20)
SIG = b"\x11" * 65
HELLO = Hello(seqno=7, time_ms=1_700_000_000_123, nonce=b"n" * 8, signature=SIG)
ADVERT = RouteAdvert(A, 5, 3, SIG)
REQUEST = SeqnoRequest(A, 9, 16)
DATA = Routed(FrameType.DATA, 513, 64, b"m" * 16, A, B, 1_700_000_060_000, 1, 3, b"chunk")
TAG = b"\x22" * 16
ACK = Routed(FrameType.E2E_ACK, 2, 64, b"m" * 16, B, A, 1_700_000_120_000, 0, 1, TAG)


def test_sizes__as_documented() -> None:
    assert HELLO_LENGTH == 85
    assert ROUTE_ENTRY_LENGTH == 91
    assert SEQNO_REQUEST_LENGTH == 27
    assert ROUTED_HEADER_LENGTH == 69
    assert E2E_ACK_LENGTH == 85 and ACK_TAG_LENGTH == 16
    assert VERSION == 2
    assert routes_per_frame(210) == 2
    assert routes_per_frame(1200) == 13


def test_hello__round_trip() -> None:
    data = encode_hello(HELLO)
    assert len(data) == HELLO_LENGTH and data[:2] == b"\x02\x01"
    assert decode_frame(data) == HELLO


def test_routes__round_trip_including_retraction() -> None:
    entries = [ADVERT, RouteAdvert(B, 1, METRIC_INFINITY, bytes(65))]
    decoded = decode_frame(encode_routes(entries))
    assert isinstance(decoded, Routes)
    assert decoded.entries == tuple(tuple(e) for e in entries)


def test_route_entry__round_trip() -> None:
    assert decode_route_entry(encode_routes([ADVERT])[3:]) == ADVERT


def test_seqno_request__round_trip() -> None:
    assert decode_frame(encode_seqno_request(REQUEST)) == REQUEST


@pytest.mark.parametrize("frame", [DATA, ACK], ids=["data", "e2e-ack"])
def test_routed__round_trip(frame: Routed) -> None:
    data = encode_routed(frame)
    assert len(data) == ROUTED_HEADER_LENGTH + len(frame.chunk)
    assert decode_frame(data) == frame


def test_routed__prefix_is_the_per_hop_part() -> None:
    data = encode_routed(DATA)
    relayed = routed_prefix(FrameType.DATA, 9, 63) + data[5:]
    decoded = decode_frame(relayed)
    assert isinstance(decoded, Routed)
    assert (decoded.hop_seq, decoded.hops_left) == (9, 63)
    assert decoded.message_id == DATA.message_id and decoded.chunk == DATA.chunk


def test_hop_ack__round_trip() -> None:
    assert decode_frame(encode_hop_ack([1, 65535, 7])) == HopAck((1, 65535, 7))


def _with(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


REJECTED = {
    "not bytes": bytearray(encode_hello(HELLO)),
    "empty": b"",
    "one byte": b"\x02",
    "version 0": _with(encode_hello(HELLO), 0, b"\x00"),
    "version 1 (before the v2 envelope)": _with(encode_hello(HELLO), 0, b"\x01"),
    "version 1 e2e ack": _with(encode_routed(ACK)[:ROUTED_HEADER_LENGTH] + SIG, 0, b"\x01"),
    "version 3": _with(encode_hello(HELLO), 0, b"\x03"),
    "type 0": b"\x02\x00" + bytes(83),
    "type 7": b"\x02\x07" + bytes(83),
    "type 255": b"\x02\xff",
    "hello short": encode_hello(HELLO)[:-1],
    "hello long": encode_hello(HELLO) + b"\x00",
    "routes no count": b"\x02\x02",
    "routes count 0": b"\x02\x02\x00",
    "routes short": encode_routes([ADVERT])[:-1],
    "routes long": encode_routes([ADVERT]) + b"\x00",
    "routes count too high": _with(encode_routes([ADVERT]), 2, b"\x02"),
    "routes zero address": encode_routes([RouteAdvert(Address(bytes(20)), 1, 1, SIG)]),
    "request short": encode_seqno_request(REQUEST)[:-1],
    "request long": encode_seqno_request(REQUEST) + b"\x00",
    "request zero address": encode_seqno_request(SeqnoRequest(Address(bytes(20)), 1, 1)),
    "request hop limit 0": encode_seqno_request(SeqnoRequest(A, 1, 0)),
    "routed header only": encode_routed(DATA)[:ROUTED_HEADER_LENGTH],
    "routed truncated": encode_routed(DATA)[:30],
    "routed zero destination": _with(encode_routed(DATA), 21, bytes(20)),
    "routed zero origin": _with(encode_routed(DATA), 41, bytes(20)),
    "routed to itself": _with(encode_routed(DATA), 41, A),
    "fragment count 0": _with(encode_routed(DATA), 68, b"\x00"),
    "fragment index = count": _with(encode_routed(DATA), 67, b"\x03"),
    "ack short tag": encode_routed(ACK)[:-1],
    "ack long tag": encode_routed(ACK) + b"\x00",
    "ack with a v1 signature": encode_routed(ACK)[:ROUTED_HEADER_LENGTH] + SIG,
    "ack fragmented": _with(encode_routed(ACK), 68, b"\x02"),
    "hop ack no count": b"\x02\x06",
    "hop ack count 0": b"\x02\x06\x00",
    "hop ack short": encode_hop_ack([1, 2])[:-1],
    "hop ack long": encode_hop_ack([1]) + b"\x00",
}


@pytest.mark.parametrize("data", list(REJECTED.values()), ids=list(REJECTED))
def test_decode__malformed__frame_decode_error_only(data: bytes) -> None:
    with pytest.raises(FrameDecodeError):
        decode_frame(data)


@pytest.mark.parametrize(
    "data", [b"", encode_routes([ADVERT])[3:-1], encode_routes([ADVERT])[3:] + b"\x00", bytes(91)]
)
def test_decode_route_entry__malformed__frame_decode_error(data: bytes) -> None:
    with pytest.raises(FrameDecodeError):
        decode_route_entry(data)
