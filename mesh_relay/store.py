"""Store and forward: custody of frames until the next hop takes them, the origin's own
pending messages, the destination's seen-set, and the snapshot of all three.

Belongs here:

- ``CustodyStore``: every DATA/E2E_ACK frame this node must hand on (its own fragments,
  acks it owes, frames it relays), waiting for a route or in flight to a neighbour until
  that neighbour's hop ack. Bounded in frames and bytes for relayed traffic: when full,
  a relayed frame is refused (not acknowledged), which pushes back on the sender instead
  of dropping what was already accepted. A frame leaves custody when acknowledged, when
  it expires, or when its message is resolved.
- ``PendingMessage``: a message this node sent and has not yet seen acknowledged; it
  holds the plaintext until the destination's key is known (sealing waits for a route).
- ``SeenSet``: a bounded, expiring set of keys (delivered message ids at a destination;
  recently relayed fragments at a relay, to absorb hop-level retransmissions).
- ``encode_snapshot``/``decode_snapshot``: the pending store as bytes, so an adapter can
  persist it across restarts (``MeshNode.snapshot``/``restore``).

Does not belong here: routing decisions, timers (the node arms them), framing.
"""

from __future__ import annotations

import enum
import heapq
import struct
from collections import deque
from collections.abc import Hashable, Iterator
from dataclasses import dataclass

from mesh_relay.errors import FrameDecodeError, SnapshotError
from mesh_relay.frames import (
    MESSAGE_ID_LENGTH,
    ROUTED_PREFIX_LENGTH,
    FrameType,
    Routed,
    decode_frame,
    routed_prefix,
)
from mesh_relay.identity import ADDRESS_LENGTH, Address
from mesh_relay.routing import NeighbourKey

CustodyKey = tuple[int, Address, bytes, int]
"""(frame type, origin, message id, fragment index): one fragment of one message."""


class CustodyState(enum.Enum):
    """Where a custody item is."""

    WAITING = "waiting"
    IN_FLIGHT = "in flight"
    DONE = "done"


class CustodyItem:
    """One routed frame this node must hand on; ``tail`` is the frame after its prefix."""

    __slots__ = (
        "attempts",
        "destination",
        "expiry",
        "frag_index",
        "hop_seq",
        "hops_left",
        "key",
        "kind",
        "message_id",
        "neighbour",
        "origin",
        "own",
        "retry_at",
        "sent_at",
        "size",
        "state",
        "tail",
        "tx",
    )

    def __init__(self, frame: Routed, tail: bytes, hops_left: int, own: bool) -> None:
        self.kind = frame.kind
        self.origin = frame.origin
        self.destination = frame.destination
        self.message_id = frame.message_id
        self.frag_index = frame.frag_index
        self.key: CustodyKey = (int(frame.kind), frame.origin, frame.message_id, frame.frag_index)
        self.expiry = frame.expiry_ms / 1000
        self.tail = tail
        self.hops_left = hops_left
        self.size = ROUTED_PREFIX_LENGTH + len(tail)
        self.own = own
        self.state = CustodyState.WAITING
        self.neighbour: NeighbourKey | None = None
        self.hop_seq = 0
        self.attempts = 0
        self.retry_at = 0.0
        self.sent_at = 0.0
        """When it was last sent to a neighbour (its round trip, if it was sent once)."""
        self.tx = 0
        """The number of that send among all sends to that neighbour (they count up)."""

    def frame(self, hop_seq: int) -> bytes:
        """The frame to send to the next hop with ``hop_seq``."""
        return routed_prefix(self.kind, hop_seq, self.hops_left) + self.tail


class CustodyStore:
    """Custody items by key, queued per destination or in flight per (neighbour, hop_seq)."""

    def __init__(self, max_frames: int, max_bytes: int) -> None:
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.items: dict[CustodyKey, CustodyItem] = {}
        self.waiting: dict[Address, deque[CustodyItem]] = {}
        self.in_flight: dict[tuple[NeighbourKey, int], CustodyItem] = {}
        self.flying: dict[NeighbourKey, dict[int, CustodyItem]] = {}
        """Per neighbour: hop_seq -> item in flight, in the order of their latest sends."""
        self.relayed_frames = 0
        self.relayed_bytes = 0
        self._hop_seq = 0

    def has_room(self, size: int) -> bool:
        """True when a relayed frame of ``size`` bytes fits the bounds."""
        return self.relayed_frames < self.max_frames and self.relayed_bytes + size <= self.max_bytes

    def add(self, item: CustodyItem) -> None:
        """Take custody (the caller checked ``has_room`` for relayed items); queue it."""
        assert item.key not in self.items
        self.items[item.key] = item
        if not item.own:
            self.relayed_frames += 1
            self.relayed_bytes += item.size
        self.enqueue(item)

    def enqueue(self, item: CustodyItem) -> None:
        """Put an item (back) in its destination's queue."""
        if item.state is CustodyState.IN_FLIGHT:
            self._leave_flight(item)
        item.state = CustodyState.WAITING
        queue = self.waiting.get(item.destination)
        if queue is None:
            queue = self.waiting[item.destination] = deque()
        queue.append(item)

    def next_waiting(self, destination: Address) -> CustodyItem | None:
        """Pop the oldest live waiting item for ``destination``."""
        queue = self.waiting.get(destination)
        while queue:
            item = queue.popleft()
            if item.state is CustodyState.WAITING:
                if not queue:
                    del self.waiting[destination]
                return item
        self.waiting.pop(destination, None)
        return None

    def push_back(self, item: CustodyItem) -> None:
        """Return a popped item to the front of its queue (no window or route now)."""
        queue = self.waiting.get(item.destination)
        if queue is None:
            queue = self.waiting[item.destination] = deque()
        queue.appendleft(item)

    def window_used(self, neighbour: NeighbourKey) -> int:
        """Frames in flight to ``neighbour``."""
        return len(self.flying.get(neighbour, ()))

    def fly(self, item: CustodyItem, neighbour: NeighbourKey, retry_at: float) -> int:
        """Mark ``item`` in flight to ``neighbour``; return the hop_seq to send it with."""
        if item.state is CustodyState.IN_FLIGHT and item.neighbour == neighbour:
            item.retry_at = retry_at
            flying = self.flying[neighbour]
            del flying[item.hop_seq]  # sent again: now the latest
            flying[item.hop_seq] = item
            return item.hop_seq
        if item.state is CustodyState.IN_FLIGHT:
            self._leave_flight(item)
        hop_seq = self._hop_seq
        while (neighbour, hop_seq) in self.in_flight:
            hop_seq = (hop_seq + 1) & 0xFFFF
        self._hop_seq = (hop_seq + 1) & 0xFFFF
        item.state = CustodyState.IN_FLIGHT
        item.neighbour = neighbour
        item.hop_seq = hop_seq
        item.retry_at = retry_at
        self.in_flight[(neighbour, hop_seq)] = item
        self.flying.setdefault(neighbour, {})[hop_seq] = item
        return hop_seq

    def acknowledged(self, neighbour: NeighbourKey, hop_seq: int) -> CustodyItem | None:
        """The item ``neighbour`` just acknowledged, now out of custody; None if unknown."""
        item = self.in_flight.get((neighbour, hop_seq))
        if item is None:
            return None
        self.remove(item)
        return item

    def in_flight_to(self, neighbour: NeighbourKey) -> list[CustodyItem]:
        """Items in flight to one neighbour, in the order of their latest sends."""
        return list(self.flying.get(neighbour, {}).values())

    def remove(self, item: CustodyItem) -> None:
        """Release custody of ``item`` (acknowledged, expired or resolved)."""
        if item.state is CustodyState.DONE:
            return
        if item.state is CustodyState.IN_FLIGHT:
            self._leave_flight(item)
        item.state = CustodyState.DONE
        del self.items[item.key]
        if not item.own:
            self.relayed_frames -= 1
            self.relayed_bytes -= item.size

    def expire(self, now: float) -> list[CustodyItem]:
        """Release every item whose message has expired; return them."""
        gone = [item for item in self.items.values() if item.expiry <= now]
        for item in gone:
            self.remove(item)
        for destination in [
            d
            for d, q in self.waiting.items()
            if not any(i.state is CustodyState.WAITING for i in q)
        ]:
            del self.waiting[destination]
        return gone

    def _leave_flight(self, item: CustodyItem) -> None:
        assert item.neighbour is not None
        if self.in_flight.pop((item.neighbour, item.hop_seq), None) is item:
            flying = self.flying[item.neighbour]
            del flying[item.hop_seq]
            if not flying:
                del self.flying[item.neighbour]
        item.neighbour = None

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[CustodyItem]:
        return iter(list(self.items.values()))


@dataclass(slots=True)
class PendingMessage:
    """A message this node sent, not yet acknowledged by its destination."""

    message_id: bytes
    destination: Address
    payload: bytes
    expiry: float
    body: bytes | None = None
    """The sealed envelope, once the destination's key is known."""
    ack: bytes | None = None
    """The destination's end-to-end ack tag, computed when the message is sealed."""
    next_retry: float = 0.0
    retry_interval: float = 0.0


class SeenSet:
    """A bounded set of keys, each remembered until its own expiry."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._expiry: dict[Hashable, float] = {}
        self._heap: list[tuple[float, int, Hashable]] = []
        self._counter = 0

    def __contains__(self, key: Hashable) -> bool:
        return key in self._expiry

    def add(self, key: Hashable, expires: float, now: float) -> bool:
        """Remember ``key`` until ``expires``; False when full (nothing was evicted)."""
        if key in self._expiry:
            self._expiry[key] = max(self._expiry[key], expires)
            return True
        if len(self._expiry) >= self.capacity:
            self.expire(now)
            if len(self._expiry) >= self.capacity:
                return False
        self._expiry[key] = expires
        self._counter += 1
        heapq.heappush(self._heap, (expires, self._counter, key))
        return True

    def expire(self, now: float) -> None:
        """Forget keys whose time has passed."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, key = heapq.heappop(heap)
            current = self._expiry.get(key)
            if current is not None and current <= now:
                del self._expiry[key]
            elif current is not None:
                self._counter += 1
                heapq.heappush(heap, (current, self._counter, key))

    def items(self) -> list[tuple[Hashable, float]]:
        """(key, expiry) pairs, for snapshots."""
        return list(self._expiry.items())

    def expiry(self, key: Hashable) -> float | None:
        """When ``key`` is forgotten, if it is remembered."""
        return self._expiry.get(key)

    def __len__(self) -> int:
        return len(self._expiry)


# -- snapshot ---------------------------------------------------------------------------

_MAGIC = b"SMMS"
_SNAPSHOT_VERSION = 2
_SNAPSHOT_V1 = 1
"""Written by v1 relays: read with its custody dropped (see ``decode_snapshot``)."""
_U32 = struct.Struct(">I")
_PENDING = struct.Struct(">16s20s6sI")
_CUSTODY = struct.Struct(">BH")
_SEEN = struct.Struct(">20s16s6s")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The decoded content of a pending-store snapshot."""

    seqno: int
    pending: tuple[tuple[bytes, Address, float, bytes], ...]
    """(message id, destination, expiry, payload) of the origin's unacknowledged messages."""
    custody: tuple[tuple[Routed, bytes, int], ...]
    """(frame, tail, hops left) of every frame in custody."""
    seen: tuple[tuple[Address, bytes, float], ...]
    """(origin, message id, expiry) of messages delivered here."""


def _ms(seconds: float) -> bytes:
    return min(2**48 - 1, max(0, int(seconds * 1000))).to_bytes(6, "big")


def pack_seen(origin: Address, message_id: bytes, expiry: float) -> bytes:
    """One delivered id as a snapshot holds it (``encode_snapshot``'s ``packed_seen``)."""
    return _SEEN.pack(origin, message_id, _ms(expiry))


def encode_snapshot(
    seqno: int,
    pending: list[PendingMessage],
    custody: list[CustodyItem],
    seen: list[tuple[Address, bytes, float]],
    packed_seen: tuple[int, bytes] = (0, b""),
) -> bytes:
    """Serialise the pending store (version 2, documented in docs/mesh.md §9).

    ``packed_seen``: more delivered ids, ``(count, the concatenation of pack_seen)``: a
    node keeps them packed as they come, so that a snapshot of tens of thousands of ids
    is one join, not a loop over them every second."""
    parts = [_MAGIC, bytes((_SNAPSHOT_VERSION,)), _U32.pack(seqno), _U32.pack(len(pending))]
    for message in pending:
        parts.append(
            _PENDING.pack(
                message.message_id, message.destination, _ms(message.expiry), len(message.payload)
            )
        )
        parts.append(message.payload)
    parts.append(_U32.pack(len(custody)))
    for item in custody:
        parts.append(_CUSTODY.pack(item.hops_left, len(item.tail)))
        parts.append(bytes((item.kind,)))
        parts.append(item.tail)
    parts.append(_U32.pack(len(seen) + packed_seen[0]))
    for origin, message_id, expiry in seen:
        parts.append(_SEEN.pack(origin, message_id, _ms(expiry)))
    parts.append(packed_seen[1])
    return b"".join(parts)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, size: int) -> bytes:
        end = self.offset + size
        if size < 0 or end > len(self.data):
            raise SnapshotError("snapshot truncated")
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def u32(self) -> int:
        value: int = _U32.unpack(self.take(4))[0]
        return value


def decode_snapshot(data: bytes) -> Snapshot:
    """Parse a snapshot; raise ``SnapshotError`` if it is not one this version wrote.

    A snapshot of version 1 (a relay before the v2 envelope) is read without its custody:
    those frames hold v1 envelopes and v1 acks that no v2 node can open or check, and a
    stale fragment held under a message's id would stand in for the v2 one its origin
    reseals. Its own messages (plaintext, resealed as v2 under the same ids), its
    delivered ids (exactly-once across the upgrade) and its seqno are kept.
    """
    if not isinstance(data, bytes):
        raise SnapshotError("snapshot must be bytes")
    reader = _Reader(data)
    if reader.take(4) != _MAGIC:
        raise SnapshotError("not a mesh snapshot")
    version = reader.take(1)[0]
    if version not in (_SNAPSHOT_VERSION, _SNAPSHOT_V1):
        raise SnapshotError(f"mesh snapshot of unknown version {version}")
    seqno = reader.u32()
    pending = []
    for _ in range(reader.u32()):
        message_id, destination, expiry, length = _PENDING.unpack(reader.take(_PENDING.size))
        if destination == bytes(ADDRESS_LENGTH):
            raise SnapshotError("pending message to the zero address")
        pending.append(
            (
                message_id,
                Address(destination),
                int.from_bytes(expiry, "big") / 1000,
                reader.take(length),
            )
        )
    custody = []
    for _ in range(reader.u32()):
        hops_left, length = _CUSTODY.unpack(reader.take(_CUSTODY.size))
        kind = reader.take(1)[0]
        if kind not in (FrameType.DATA, FrameType.E2E_ACK):
            raise SnapshotError("custody item of an unknown kind")
        tail = reader.take(length)
        if version == _SNAPSHOT_V1:
            continue
        try:
            frame = decode_frame(routed_prefix(FrameType(kind), 0, hops_left) + tail)
        except FrameDecodeError as exc:
            raise SnapshotError(f"custody item does not decode: {exc}") from exc
        assert isinstance(frame, Routed)
        custody.append((frame, tail, hops_left))
    seen = []
    for _ in range(reader.u32()):
        origin, message_id, expiry = _SEEN.unpack(reader.take(_SEEN.size))
        seen.append((Address(origin), message_id, int.from_bytes(expiry, "big") / 1000))
    if reader.offset != len(data):
        raise SnapshotError("trailing bytes after the snapshot")
    assert MESSAGE_ID_LENGTH == 16
    return Snapshot(seqno, tuple(pending), tuple(custody), tuple(seen))
