"""The wire format: every frame a node sends to a neighbour, its encoder and its decoder.

Belongs here: the byte layout of the six frame types, their constants, one immutable
value per type, ``encode_*`` functions and ``decode_frame``, which raises exactly one
error, ``FrameDecodeError``, on any input that is not a well-formed frame of this version
(truncated, too long, unknown version or type, a count or index out of range, a zero
address). It checks structure only; whether a signature verifies, a hello is fresh or a
route is feasible is decided by the modules that own those rules.

Layout (big-endian; docs/mesh.md has the tables and the reasons)::

    every frame     version u8 (=2) | type u8 | body
    HELLO        1  seqno u32 | time_ms u48 | nonce 8 | signature 65          = 85 bytes
    ROUTES       2  count u8 | count x (address 20 | seqno u32 | metric u16 | sig 65)
    SEQNO_REQ    3  address 20 | seqno u32 | hop_limit u8                      = 27 bytes
    DATA         4  routed header (69 bytes) | chunk (1.. bytes)
    E2E_ACK      5  routed header (69 bytes) | ack tag 16 (count 1, index 0)
    HOP_ACK      6  count u8 | count x hop_seq u16

    routed header: version | type | hop_seq u16 | hops_left u8 | message_id 16 |
                   destination 20 | origin 20 | expiry_ms u48 | frag_index u8 | frag_count u8

Version 2 (the v2 envelope, docs/mesh.md §7) changed the E2E_ACK body from a 65-byte
signature to a 16-byte tag and every domain string from v1 to v2. Every frame carries the
version and ``decode_frame`` refuses any other, so a v1 and a v2 node never become
neighbours: their frames are counted as malformed on both sides, nothing is relayed
between the versions, and no envelope of one version ever reaches a node of the other.

Does not belong here: fragmentation policy, what a signature covers beyond the hello and
route digests, any state. Nothing here reads a clock.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import NamedTuple

from mesh_relay.errors import FrameDecodeError
from mesh_relay.identity import ADDRESS_LENGTH, ZERO_ADDRESS, Address, keccak256

VERSION = 2
MESSAGE_ID_LENGTH = 16
NONCE_LENGTH = 8
METRIC_INFINITY = 0xFFFF
"""A route metric that means "unreachable" (a retraction)."""
UINT32_MAX = 2**32 - 1
UINT48_MAX = 2**48 - 1

_HELLO_DOMAIN = b"smartmesh/mesh/v2/hello"
_ROUTE_DOMAIN = b"smartmesh/mesh/v2/route"
ACK_TAG_LENGTH = 16
"""Bytes of an end-to-end ack's tag (``envelope.ack_tag``)."""


class FrameType(enum.IntEnum):
    """The type byte of a frame."""

    HELLO = 1
    ROUTES = 2
    SEQNO_REQUEST = 3
    DATA = 4
    E2E_ACK = 5
    HOP_ACK = 6


_HELLO = struct.Struct(">BBI6s8s65s")
HELLO_LENGTH = _HELLO.size
_ROUTES_HEAD = struct.Struct(">BBB")
_ROUTE_ENTRY = struct.Struct(">20sIH65s")
ROUTE_ENTRY_LENGTH = _ROUTE_ENTRY.size
ROUTES_HEADER_LENGTH = _ROUTES_HEAD.size
_SEQNO_REQUEST = struct.Struct(">BB20sIB")
SEQNO_REQUEST_LENGTH = _SEQNO_REQUEST.size
_ROUTED = struct.Struct(">BBHB16s20s20s6sBB")
ROUTED_HEADER_LENGTH = _ROUTED.size
ROUTED_PREFIX_LENGTH = 5
"""version, type, hop_seq, hops_left: the part of a routed frame that changes per hop."""
_ROUTED_PREFIX = struct.Struct(">BBHB")
_HOP_ACK_HEAD = struct.Struct(">BBB")
_U16 = struct.Struct(">H")
MAX_ROUTE_ENTRIES = 255
MAX_HOP_ACKS = 255
E2E_ACK_LENGTH = ROUTED_HEADER_LENGTH + ACK_TAG_LENGTH


@dataclass(frozen=True, slots=True)
class Hello:
    """A neighbour's signed, timestamped announcement of itself and its route seqno."""

    seqno: int
    time_ms: int
    nonce: bytes
    signature: bytes

    def digest(self) -> bytes:
        """The 32-byte digest the sender signed."""
        return hello_digest(self.seqno, self.time_ms, self.nonce)


def hello_digest(seqno: int, time_ms: int, nonce: bytes) -> bytes:
    """keccak256(domain ‖ version ‖ type ‖ seqno ‖ time_ms ‖ nonce)."""
    body = struct.pack(
        ">BBI6s8s", VERSION, FrameType.HELLO, seqno, time_ms.to_bytes(6, "big"), nonce
    )
    return keccak256(_HELLO_DOMAIN + body)


RouteEntry = tuple[Address, int, int, bytes]
"""(destination, seqno, metric, signature) as decoded: a plain tuple, because a node
receives millions of them in a large mesh and a tuple costs the least."""


class RouteAdvert(NamedTuple):
    """One route of a ROUTES frame: the originator's signed (address, seqno), a metric.

    The signature covers ``route_digest(destination, seqno)`` only: the metric changes at
    every hop and cannot be signed by the originator.
    """

    destination: Address
    seqno: int
    metric: int
    signature: bytes


def route_digest(destination: bytes, seqno: int) -> bytes:
    """keccak256(domain ‖ destination ‖ seqno u32): what an originator signs for a seqno."""
    return keccak256(_ROUTE_DOMAIN + destination + seqno.to_bytes(4, "big"))


@dataclass(frozen=True, slots=True)
class Routes:
    """A batch of route advertisements (a triggered update, a dump or a reply)."""

    entries: tuple[RouteEntry, ...]


@dataclass(frozen=True, slots=True)
class SeqnoRequest:
    """Asks the originator of ``destination`` for a route with seqno >= ``seqno``."""

    destination: Address
    seqno: int
    hop_limit: int


@dataclass(frozen=True, slots=True)
class Routed:
    """A DATA fragment or an E2E_ACK: travels hop by hop from origin to destination."""

    kind: FrameType
    hop_seq: int
    hops_left: int
    message_id: bytes
    destination: Address
    origin: Address
    expiry_ms: int
    frag_index: int
    frag_count: int
    chunk: bytes


@dataclass(frozen=True, slots=True)
class HopAck:
    """Acknowledges DATA/E2E_ACK frames received from this neighbour, by hop_seq."""

    hop_seqs: tuple[int, ...]


Frame = Hello | Routes | SeqnoRequest | Routed | HopAck


# -- encoders ---------------------------------------------------------------------------


def encode_hello(hello: Hello) -> bytes:
    """Encode a HELLO frame (85 bytes)."""
    return _HELLO.pack(
        VERSION,
        FrameType.HELLO,
        hello.seqno,
        hello.time_ms.to_bytes(6, "big"),
        hello.nonce,
        hello.signature,
    )


def encode_routes(entries: tuple[RouteEntry, ...] | list[RouteAdvert]) -> bytes:
    """Encode a ROUTES frame with 1..255 entries."""
    assert 0 < len(entries) <= MAX_ROUTE_ENTRIES
    parts = [_ROUTES_HEAD.pack(VERSION, FrameType.ROUTES, len(entries))]
    parts.extend(_ROUTE_ENTRY.pack(*entry) for entry in entries)
    return b"".join(parts)


def routes_per_frame(mtu: int) -> int:
    """How many route entries fit one frame of ``mtu`` bytes."""
    return min(MAX_ROUTE_ENTRIES, (mtu - ROUTES_HEADER_LENGTH) // ROUTE_ENTRY_LENGTH)


def encode_seqno_request(request: SeqnoRequest) -> bytes:
    """Encode a SEQNO_REQUEST frame (27 bytes)."""
    return _SEQNO_REQUEST.pack(
        VERSION, FrameType.SEQNO_REQUEST, request.destination, request.seqno, request.hop_limit
    )


def encode_routed(frame: Routed) -> bytes:
    """Encode a DATA or E2E_ACK frame."""
    return (
        _ROUTED.pack(
            VERSION,
            frame.kind,
            frame.hop_seq,
            frame.hops_left,
            frame.message_id,
            frame.destination,
            frame.origin,
            frame.expiry_ms.to_bytes(6, "big"),
            frame.frag_index,
            frame.frag_count,
        )
        + frame.chunk
    )


def routed_prefix(kind: FrameType, hop_seq: int, hops_left: int) -> bytes:
    """The per-hop first five bytes of a routed frame; the rest is relayed unchanged."""
    return _ROUTED_PREFIX.pack(VERSION, kind, hop_seq, hops_left)


def encode_hop_ack(hop_seqs: tuple[int, ...] | list[int]) -> bytes:
    """Encode a HOP_ACK frame for 1..255 hop sequence numbers."""
    assert 0 < len(hop_seqs) <= MAX_HOP_ACKS
    return _HOP_ACK_HEAD.pack(VERSION, FrameType.HOP_ACK, len(hop_seqs)) + b"".join(
        _U16.pack(seq) for seq in hop_seqs
    )


# -- decoder ----------------------------------------------------------------------------


def decode_frame(data: bytes) -> Frame:
    """Decode one frame; raise ``FrameDecodeError`` (and nothing else) if it is malformed."""
    if not isinstance(data, bytes):
        raise FrameDecodeError("frame must be bytes")
    if len(data) < 2:
        raise FrameDecodeError("frame shorter than its version and type")
    if data[0] != VERSION:
        raise FrameDecodeError(f"unknown frame version {data[0]}")
    kind = data[1]
    if kind in (FrameType.DATA, FrameType.E2E_ACK):
        return _decode_routed(data)
    if kind == FrameType.ROUTES:
        return _decode_routes(data)
    if kind == FrameType.HOP_ACK:
        return _decode_hop_ack(data)
    if kind == FrameType.HELLO:
        return _decode_hello(data)
    if kind == FrameType.SEQNO_REQUEST:
        return _decode_seqno_request(data)
    raise FrameDecodeError(f"unknown frame type {kind}")


def _decode_hello(data: bytes) -> Hello:
    if len(data) != HELLO_LENGTH:
        raise FrameDecodeError("hello has the wrong length")
    _, _, seqno, time_raw, nonce, signature = _HELLO.unpack(data)
    return Hello(seqno, int.from_bytes(time_raw, "big"), nonce, signature)


def _decode_routes(data: bytes) -> Routes:
    if len(data) < ROUTES_HEADER_LENGTH:
        raise FrameDecodeError("routes frame truncated")
    count = data[2]
    if count == 0:
        raise FrameDecodeError("routes frame with no entry")
    if len(data) != ROUTES_HEADER_LENGTH + count * ROUTE_ENTRY_LENGTH:
        raise FrameDecodeError("routes frame length does not match its count")
    entries: tuple[RouteEntry, ...] = tuple(
        _ROUTE_ENTRY.iter_unpack(memoryview(data)[ROUTES_HEADER_LENGTH:])
    )
    for entry in entries:
        if entry[0] == ZERO_ADDRESS:
            raise FrameDecodeError("route to the zero address")
    return Routes(entries)


def decode_route_entry(data: bytes) -> RouteAdvert:
    """Decode one 91-byte route entry (for tests and tools); ``FrameDecodeError`` if bad."""
    if not isinstance(data, bytes) or len(data) != ROUTE_ENTRY_LENGTH:
        raise FrameDecodeError("route entry has the wrong length")
    entry = RouteAdvert._make(_ROUTE_ENTRY.unpack(data))
    if entry.destination == ZERO_ADDRESS:
        raise FrameDecodeError("route to the zero address")
    return entry


def _decode_seqno_request(data: bytes) -> SeqnoRequest:
    if len(data) != SEQNO_REQUEST_LENGTH:
        raise FrameDecodeError("seqno request has the wrong length")
    _, _, destination, seqno, hop_limit = _SEQNO_REQUEST.unpack(data)
    if destination == ZERO_ADDRESS:
        raise FrameDecodeError("seqno request for the zero address")
    if hop_limit == 0:
        raise FrameDecodeError("seqno request with no hop left")
    return SeqnoRequest(Address(destination), seqno, hop_limit)


def _decode_routed(data: bytes) -> Routed:
    if len(data) <= ROUTED_HEADER_LENGTH:
        raise FrameDecodeError("routed frame truncated")
    (
        _,
        kind,
        hop_seq,
        hops_left,
        message_id,
        destination,
        origin,
        expiry_raw,
        frag_index,
        frag_count,
    ) = _ROUTED.unpack_from(data)
    chunk = data[ROUTED_HEADER_LENGTH:]
    if ZERO_ADDRESS in (destination, origin):
        raise FrameDecodeError("routed frame names the zero address")
    if destination == origin:
        raise FrameDecodeError("routed frame from a node to itself")
    if frag_count == 0 or frag_index >= frag_count:
        raise FrameDecodeError("fragment index out of range")
    if kind == FrameType.E2E_ACK and (frag_count != 1 or len(chunk) != ACK_TAG_LENGTH):
        raise FrameDecodeError("end-to-end ack must be one 16-byte tag")
    return Routed(
        FrameType(kind),
        hop_seq,
        hops_left,
        message_id,
        Address(destination),
        Address(origin),
        int.from_bytes(expiry_raw, "big"),
        frag_index,
        frag_count,
        chunk,
    )


def _decode_hop_ack(data: bytes) -> HopAck:
    if len(data) < 3:
        raise FrameDecodeError("hop ack truncated")
    count = data[2]
    if count == 0 or len(data) != 3 + 2 * count:
        raise FrameDecodeError("hop ack length does not match its count")
    return HopAck(tuple(seq for (seq,) in _U16.iter_unpack(memoryview(data)[3:])))


assert ADDRESS_LENGTH == 20 and _ROUTE_ENTRY.size == 91 and ROUTED_HEADER_LENGTH == 69
