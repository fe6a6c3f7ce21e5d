"""Fuzz: random and mutated bytes into every decoder of the mesh and into a live node.

The decoders must raise ``FrameDecodeError`` (frames, route entries) or ``SnapshotError``
(snapshots) and nothing else; ``MeshNode.receive_frame`` must never raise at all.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh_relay.config import Link
from mesh_relay.effects import EventInvalidFrame, SendFrame
from mesh_relay.envelope import message_id, open_envelope, seal
from mesh_relay.errors import EnvelopeError, FrameDecodeError, SnapshotError
from mesh_relay.frames import (
    ACK_TAG_LENGTH,
    VERSION,
    FrameType,
    Hello,
    RouteAdvert,
    Routed,
    SeqnoRequest,
    decode_frame,
    decode_route_entry,
    encode_hello,
    encode_hop_ack,
    encode_routed,
    encode_routes,
    encode_seqno_request,
    hello_digest,
    route_digest,
)
from mesh_relay.identity import Address, Identity
from mesh_relay.node import MeshNode
from mesh_relay.sim import fast_config, private_key_for
from mesh_relay.store import PendingMessage, decode_snapshot, encode_snapshot

NOW = 1_700_000_000.0
PEER = Identity((41).to_bytes(32, "big"))
NODE_KEY = private_key_for(41, 0)
NODE_ADDRESS = Identity(NODE_KEY).address
addresses = st.binary(min_size=20, max_size=20).filter(lambda a: a not in (bytes(20), PEER.address))


def _hello(seqno: int, time_ms: int, nonce: bytes) -> bytes:
    signature = PEER.sign(hello_digest(seqno, time_ms, nonce))
    return encode_hello(Hello(seqno, time_ms, nonce, signature))


def _advert(seqno: int, metric: int) -> RouteAdvert:
    return RouteAdvert(PEER.address, seqno, metric, PEER.sign(route_digest(PEER.address, seqno)))


valid_frames = st.one_of(
    st.builds(
        _hello,
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**48 - 1),
        st.binary(min_size=8, max_size=8),
    ),
    st.builds(
        lambda e: encode_routes(e),
        st.lists(
            st.builds(_advert, st.integers(0, 2**32 - 1), st.integers(0, 2**16 - 1)),
            min_size=1,
            max_size=13,
        ),
    ),
    st.builds(
        lambda a, s, h: encode_seqno_request(SeqnoRequest(a, s, h)),
        addresses,
        st.integers(0, 2**32 - 1),
        st.integers(1, 255),
    ),
    st.builds(
        lambda kind, seq, hops, mid, dst, org, exp, count, chunk: encode_routed(
            Routed(
                kind,
                seq,
                hops,
                mid,
                dst,
                org,
                exp,
                count - 1,
                count,
                chunk if kind is FrameType.DATA else (chunk * ACK_TAG_LENGTH)[:ACK_TAG_LENGTH],
            )
        ),
        st.sampled_from([FrameType.DATA, FrameType.E2E_ACK]),
        st.integers(0, 65535),
        st.integers(0, 255),
        st.binary(min_size=16, max_size=16),
        st.just(NODE_ADDRESS) | addresses,
        st.just(PEER.address),
        st.integers(0, 2**48 - 1),
        st.just(1),
        st.binary(min_size=1, max_size=141),
    ),
    st.builds(encode_hop_ack, st.lists(st.integers(0, 65535), min_size=1, max_size=60)),
)


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "set", "truncate", "extend", "splice"]))
        if action == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif action == "set" and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif action == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        elif action == "extend":
            data += draw(st.binary(min_size=1, max_size=100))
        elif action == "splice" and data:
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(max_size=20))
    return bytes(data)


any_bytes = st.one_of(
    st.binary(max_size=1300),
    st.builds(
        lambda v, t, b: bytes([v, t]) + b,
        st.sampled_from([VERSION, VERSION, VERSION, 1]),
        st.integers(0, 255),
        st.binary(max_size=400),
    ),
    mutated(valid_frames),
)


_EXAMPLES = max(500, settings.default.max_examples)
"""Decoding is cheap: many more examples than the ci profile's 40."""


def _decode_or_typed_error(data: bytes) -> None:
    with contextlib.suppress(FrameDecodeError):
        decode_frame(data)


@settings(max_examples=_EXAMPLES)
@given(valid_frames)
def test_valid_frames__decode(data: bytes) -> None:
    decode_frame(data)


@settings(max_examples=_EXAMPLES)
@given(any_bytes)
def test_decode_frame__random_and_mutated__only_frame_decode_error(data: bytes) -> None:
    _decode_or_typed_error(data)


@given(
    st.one_of(
        st.binary(max_size=200),
        mutated(
            st.builds(
                lambda a: encode_routes([a])[3:],
                st.builds(_advert, st.integers(0, 2**32 - 1), st.integers(0, 65535)),
            )
        ),
    )
)
def test_decode_route_entry__random_and_mutated__only_frame_decode_error(data: bytes) -> None:
    with contextlib.suppress(FrameDecodeError):
        decode_route_entry(data)


def _node() -> MeshNode:
    node = MeshNode(fast_config(), NODE_KEY, b"fuzzing seed 0123")
    node.link_up(Link("radio", 1200), NOW)
    node.receive_frame("radio", "peer", _hello(1, int(NOW * 1000), b"n" * 8), NOW)
    return node


@settings(max_examples=max(200, settings.default.max_examples))
@given(st.lists(any_bytes, min_size=1, max_size=30))
def test_node__random_and_mutated_frames__never_raise(frames: list[bytes]) -> None:
    node = _node()
    for offset, data in enumerate(frames):
        effects = node.receive_frame("radio", "peer", data, NOW + offset * 0.01)
        for effect in effects:
            if isinstance(effect, SendFrame):
                assert len(effect.data) <= 1200
            else:
                assert isinstance(effect, EventInvalidFrame) or effect is not None
        node.tick(NOW + offset * 0.01)
    assert node.next_timer is not None
    node.tick(NOW + 100)


def _snapshot() -> bytes:
    frame = Routed(FrameType.DATA, 0, 64, b"m" * 16, b"\xbb" * 20, b"\xaa" * 20, 2**40, 0, 1, b"c")
    from mesh_relay.store import CustodyItem  # noqa: PLC0415

    item = CustodyItem(frame, encode_routed(frame)[5:], 63, own=False)
    return encode_snapshot(
        7,
        [PendingMessage(b"p" * 16, b"\xbb" * 20, b"payload", 1.5)],
        [item],  # type: ignore[arg-type]
        [(b"\xaa" * 20, b"s" * 16, 2.5)],  # type: ignore[list-item]
    )


@settings(max_examples=_EXAMPLES)
@given(st.one_of(st.binary(max_size=300), mutated(st.just(_snapshot()))))
def test_decode_snapshot__random_and_mutated__only_snapshot_error(data: bytes) -> None:
    with contextlib.suppress(SnapshotError):
        decode_snapshot(data)


@given(mutated(st.just(_snapshot())))
def test_restore__mutated_snapshot__loads_or_snapshot_error(data: bytes) -> None:
    node = MeshNode(fast_config(), NODE_KEY, b"fuzzing seed 0123")
    try:
        node.restore(data, NOW)
    except SnapshotError:
        return
    node.tick(NOW + 1)


_ALICE = Identity((51).to_bytes(32, "big"))
_BOB = Identity((52).to_bytes(32, "big"))


@settings(max_examples=_EXAMPLES)
@given(
    payload=st.binary(max_size=300),
    nonce=st.binary(min_size=16, max_size=16),
    expiry_ms=st.integers(1, 2**48 - 1),
    flip=st.integers(0, 10_000),
    bit=st.integers(0, 7),
    field=st.sampled_from(["body", "message_id", "origin", "expiry"]),
)
def test_envelope__any_flipped_bit_of_body_or_header__rejected(
    payload: bytes, nonce: bytes, expiry_ms: int, flip: int, bit: int, field: str
) -> None:
    # The round trip holds, and one flipped bit anywhere the destination authenticates
    # (the body, or a routed-header field) makes the envelope fail, never open to
    # something else.
    mid = message_id(_ALICE.address, _BOB.address, expiry_ms, nonce, payload)
    body = seal(_ALICE, _BOB.public_key, mid, _BOB.address, expiry_ms, payload)
    assert open_envelope(_BOB, body, mid, _ALICE.address, expiry_ms).payload == payload

    def flipped(value: bytes) -> bytes:
        changed = bytearray(value)
        changed[flip % len(changed)] ^= 1 << bit
        return bytes(changed)

    origin, expiry = _ALICE.address, expiry_ms
    if field == "body":
        body = flipped(body)
    elif field == "message_id":
        mid = flipped(mid)
    elif field == "origin":
        origin = Address(flipped(origin))
    else:
        expiry = expiry_ms ^ (1 << (flip % 48))
    with pytest.raises(EnvelopeError):
        open_envelope(_BOB, body, mid, origin, expiry)
