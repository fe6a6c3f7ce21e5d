"""mesh_relay.store: custody queues and windows, seen-sets, snapshots."""

from __future__ import annotations

import pytest

from mesh_relay.errors import SnapshotError
from mesh_relay.frames import FrameType, Routed, encode_routed
from mesh_relay.identity import Address
from mesh_relay.store import (
    CustodyItem,
    CustodyState,
    CustodyStore,
    PendingMessage,
    SeenSet,
    decode_snapshot,
    encode_snapshot,
)

A = Address(b"\xaa" * 20)
B = Address(b"\xbb" * 20)
HOP = ("radio", 7)


def item(index: int = 0, own: bool = False, expiry_ms: int = 2_000_000) -> CustodyItem:
    frame = Routed(FrameType.DATA, 0, 64, b"m" * 16, B, A, expiry_ms, index, 4, b"chunk")
    return CustodyItem(frame, encode_routed(frame)[5:], 63, own)


def test_custody__queue_fly_ack() -> None:
    store = CustodyStore(max_frames=10, max_bytes=10_000)
    first, second = item(0), item(1)
    store.add(first)
    store.add(second)
    assert store.relayed_frames == 2 and store.relayed_bytes == first.size + second.size
    popped = store.next_waiting(B)
    assert popped is first
    hop_seq = store.fly(first, HOP, retry_at=5.0)
    assert first.state is CustodyState.IN_FLIGHT and store.window_used(HOP) == 1
    assert first.frame(hop_seq)[2:4] == hop_seq.to_bytes(2, "big")
    assert store.fly(first, HOP, retry_at=9.0) == hop_seq  # a retry keeps its hop_seq
    assert store.acknowledged(HOP, hop_seq) is first
    assert store.acknowledged(HOP, hop_seq) is None
    assert store.window_used(HOP) == 0 and store.relayed_frames == 1 and len(store) == 1


def test_custody__bounds_count_only_relayed_frames() -> None:
    store = CustodyStore(max_frames=1, max_bytes=10_000)
    store.add(item(0))
    assert not store.has_room(10)
    store.add(item(1, own=True))  # own fragments have their own bound (pending messages)
    assert store.relayed_frames == 1 and len(store) == 2
    assert not CustodyStore(max_frames=10, max_bytes=10).has_room(11)


def test_custody__requeue_when_the_neighbour_is_lost() -> None:
    store = CustodyStore(max_frames=10, max_bytes=10_000)
    store.add(item(0))
    flying = store.next_waiting(B)
    assert flying is not None
    store.fly(flying, HOP, 1.0)
    assert store.in_flight_to(HOP) == [flying]
    store.enqueue(flying)
    assert store.window_used(HOP) == 0 and store.next_waiting(B) is flying


def test_custody__expire_releases_and_forgets_queues() -> None:
    store = CustodyStore(max_frames=10, max_bytes=10_000)
    store.add(item(0, expiry_ms=1_000))
    store.add(item(1, expiry_ms=5_000))
    assert [i.frag_index for i in store.expire(2.0)] == [0]
    assert len(store) == 1 and store.relayed_frames == 1
    store.expire(6.0)
    assert len(store) == 0 and store.waiting == {} and store.next_waiting(B) is None


def test_seen_set__bounded_and_expiring_never_evicts_live_keys() -> None:
    seen = SeenSet(capacity=2)
    assert seen.add("a", 10.0, 0.0) and seen.add("b", 20.0, 0.0)
    assert not seen.add("c", 30.0, 0.0)  # full of live keys: refused, nothing evicted
    assert "a" in seen and "b" in seen and "c" not in seen
    assert seen.add("c", 30.0, 10.0)  # "a" expired and made room
    assert "a" not in seen and len(seen) == 2
    assert seen.add("b", 40.0, 10.0)  # extends
    seen.expire(25.0)
    assert "b" in seen and "c" in seen


def snapshot() -> bytes:
    pending = [PendingMessage(b"p" * 16, B, b"payload", 123.456)]
    return encode_snapshot(42, pending, [item(2)], [(A, b"s" * 16, 99.5)])


def test_snapshot__round_trip() -> None:
    decoded = decode_snapshot(snapshot())
    assert decoded.seqno == 42
    assert decoded.pending == ((b"p" * 16, B, 123.456, b"payload"),)
    [(frame, tail, hops)] = decoded.custody
    assert frame.frag_index == 2 and hops == 63 and tail == item(2).tail
    assert decoded.seen == ((A, b"s" * 16, 99.5),)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"XXXX" + snapshot()[4:],
        snapshot()[:4] + b"\x03" + snapshot()[5:],
        snapshot()[:-1],
        snapshot() + b"\x00",
        "text",
    ],
    ids=["empty", "magic", "unknown version", "truncated", "trailing", "not bytes"],
)
def test_snapshot__corrupt__snapshot_error(data: bytes) -> None:
    with pytest.raises(SnapshotError):
        decode_snapshot(data)


def test_snapshot__corrupt_custody_frame__snapshot_error() -> None:
    data = snapshot()
    start = data.index(item(2).tail)
    corrupt = data[: start + 16] + bytes(20) + data[start + 36 :]  # zero destination
    with pytest.raises(SnapshotError):
        decode_snapshot(corrupt)


def test_snapshot__version_1__kept_but_its_custody_dropped() -> None:
    # A relay upgraded to the v2 envelope restarts on its v1 snapshot: its own messages
    # (resealed as v2), its delivered ids (exactly-once) and its seqno survive; frames in
    # custody hold v1 envelopes and acks no v2 node can use (a v1 ack's 65-byte signature
    # does not even decode as a v2 frame), and are dropped.
    v1_ack_tail = b"m" * 16 + A + B + (2_000_000).to_bytes(6, "big") + b"\x00\x01" + b"\x11" * 65
    v1 = b"".join(
        [
            b"SMMS\x01",
            (42).to_bytes(4, "big"),
            (1).to_bytes(4, "big"),
            b"p" * 16 + B + (123_456).to_bytes(6, "big") + (7).to_bytes(4, "big") + b"payload",
            (2).to_bytes(4, "big"),
            b"\x3f" + len(item(2).tail).to_bytes(2, "big") + b"\x04" + item(2).tail,
            b"\x3f" + len(v1_ack_tail).to_bytes(2, "big") + b"\x05" + v1_ack_tail,
            (1).to_bytes(4, "big"),
            A + b"s" * 16 + (99_500).to_bytes(6, "big"),
        ]
    )
    decoded = decode_snapshot(v1)
    assert decoded.seqno == 42
    assert decoded.pending == ((b"p" * 16, B, 123.456, b"payload"),)
    assert decoded.custody == ()
    assert decoded.seen == ((A, b"s" * 16, 99.5),)
    with pytest.raises(SnapshotError):  # still parsed in full
        decode_snapshot(v1[:-1])
    with pytest.raises(SnapshotError):  # the same bytes as version 2: the ack is refused
        decode_snapshot(v1[:4] + b"\x02" + v1[5:])
