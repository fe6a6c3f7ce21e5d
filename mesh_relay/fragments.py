"""End-to-end fragmentation: split a sealed body into chunks, reassemble at the destination.

Belongs here: ``split`` and ``Reassembler``. Relays never reassemble or re-fragment (they
forward each DATA frame on its own), so one chunk size holds for the whole path: the
mesh-wide ``routed_mtu`` minus the routed header. The reassembler is bounded on every
axis a peer controls: buffers at once, bytes held, fragments per message, and time (a
buffer lives until the message's expiry or ``reassembly_timeout``, whichever is sooner).
When full it refuses a new message rather than evicting one in progress, so a flood of
first fragments cannot starve messages that are nearly complete; the refused sender's
hop retry brings the fragment back later.

Does not belong here: verification or decryption of the body (``envelope``), framing.
"""

from __future__ import annotations

import enum
import heapq
from dataclasses import dataclass, field

from mesh_relay.identity import Address


def split(body: bytes, chunk_size: int) -> list[bytes]:
    """Cut ``body`` into chunks of ``chunk_size`` bytes (the last may be shorter)."""
    assert chunk_size > 0 and body
    return [body[i : i + chunk_size] for i in range(0, len(body), chunk_size)]


class Outcome(enum.Enum):
    """What ``Reassembler.add`` did with a fragment."""

    COMPLETE = "complete"
    PARTIAL = "partial"
    DUPLICATE = "duplicate"
    REFUSED = "refused"
    """No room now: do not acknowledge, the sender will retry."""
    INCONSISTENT = "inconsistent"
    """Contradicts fragments already held (another count, a different chunk): dropped."""


@dataclass(slots=True)
class _Buffer:
    count: int
    expires: float
    chunks: list[bytes | None]
    received: int = 0
    size: int = 0


@dataclass(slots=True)
class AddResult:
    """The outcome and, when complete, the reassembled body."""

    outcome: Outcome
    body: bytes = b""


Key = tuple[Address, bytes]


@dataclass(slots=True)
class Reassembler:
    """Bounded buffers of fragments keyed by (origin, message id)."""

    max_buffers: int
    max_bytes: int
    max_fragments: int
    timeout: float
    _buffers: dict[Key, _Buffer] = field(default_factory=dict)
    _expiry_heap: list[tuple[float, Key]] = field(default_factory=list)
    _bytes: int = 0

    def add(
        self, key: Key, index: int, count: int, chunk: bytes, expiry: float, now: float
    ) -> AddResult:
        """Add fragment ``index`` of ``count``; return what happened."""
        if count > self.max_fragments:
            return AddResult(Outcome.INCONSISTENT)
        if count == 1:
            return AddResult(Outcome.COMPLETE, chunk)
        buffer = self._buffers.get(key)
        if buffer is None:
            if len(self._buffers) >= self.max_buffers or self._bytes + len(chunk) > self.max_bytes:
                return AddResult(Outcome.REFUSED)
            expires = min(expiry, now + self.timeout)
            buffer = _Buffer(count, expires, [None] * count)
            self._buffers[key] = buffer
            heapq.heappush(self._expiry_heap, (expires, key))
        elif buffer.count != count:
            self.discard(key)
            return AddResult(Outcome.INCONSISTENT)
        held = buffer.chunks[index]
        if held is not None:
            if held != chunk:
                self.discard(key)
                return AddResult(Outcome.INCONSISTENT)
            return AddResult(Outcome.DUPLICATE)
        if self._bytes + len(chunk) > self.max_bytes:
            return AddResult(Outcome.REFUSED)
        buffer.chunks[index] = chunk
        buffer.received += 1
        buffer.size += len(chunk)
        self._bytes += len(chunk)
        if buffer.received < count:
            return AddResult(Outcome.PARTIAL)
        body = b"".join(c for c in buffer.chunks if c is not None)
        self.discard(key)
        return AddResult(Outcome.COMPLETE, body)

    def discard(self, key: Key) -> None:
        """Forget a buffer (complete, inconsistent or expired)."""
        buffer = self._buffers.pop(key, None)
        if buffer is not None:
            self._bytes -= buffer.size

    def expire(self, now: float) -> int:
        """Drop buffers whose time is up; return how many."""
        dropped = 0
        heap = self._expiry_heap
        while heap and heap[0][0] <= now:
            expires, key = heapq.heappop(heap)
            buffer = self._buffers.get(key)
            if buffer is not None and buffer.expires == expires:
                self.discard(key)
                dropped += 1
        return dropped

    def __len__(self) -> int:
        return len(self._buffers)

    @property
    def bytes_held(self) -> int:
        """Bytes of chunks held in all buffers."""
        return self._bytes
