"""Protocol messages over the mesh: per-partner windows, retries, acks after the commit.

Belongs here: ``MeshTransport``, between the node runtime and one ``MeshRuntime`` (run with
``MeshConfig.app_acks``). Outgoing, it sends each message the store holds as unfinished
work until the destination acknowledges it end to end, then reports it done; a message
that expires unacknowledged is sent again (a balance proof must arrive some day, or the
partner's nonce chain stalls). The window per partner is a span of the send order, as in
TCP: a message goes out only while it is fewer than ``window`` places after the oldest
one not yet acknowledged. The core buffers at most 64 proofs that arrive ahead of the one
they follow (``state.MAX_EARLY_MESSAGES``) and drops the rest once it has committed (and
so acknowledged) them; a proof held up by a lossy hop must therefore never be overtaken
by more than that many. Counting only the messages in flight would not bound it: each
proof the partner buffers is acknowledged and frees its place, so a long hold-up let
the partner's buffer overflow and the channel stalled for good (seen with 10 % frame
loss and 128 payments in flight: bench/offline.py). The span is 64 by default: at most
63 messages overtake any one, fewer than the partner buffers; a longer span is refused.
(It was 32; 64 lets more messages share each commit and each ack, which cut the CPU per
mediated payment by about a quarter on loopback, lossy links or not.) A partner whose
message expired unacknowledged is reported
unreachable (routes avoid it) until one of its messages is acknowledged. Incoming, it
hands each payload to the runtime, which acknowledges it (``acknowledge``) only once the
input it made is committed: a crash in between makes the origin resend it.

The mesh knows nothing of payments (DESIGN.md §1): this module gives it opaque bytes and
node addresses, nothing else.

Does not belong here: decoding or judging messages (the runtime and the core), the
database (the runtime marks work done).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from mesh_relay.effects import Deliver, EventDelivered, EventExpired
from mesh_relay.errors import QueueFull
from mesh_relay.runtime import AppEvent, MeshRuntime
from offchain.protocol.state import MAX_EARLY_MESSAGES

log = logging.getLogger("smartmesh.transport")

WorkKey = tuple[int, int]
"""(input seq, effect index) of the effect that asked for the message."""

DEFAULT_WINDOW: Final = MAX_EARLY_MESSAGES
"""Of the span: a message is overtaken by at most 63 others, which the partner buffers."""
DEFAULT_LIFETIME: Final = 3_600.0
_RETRY_FULL_QUEUE: Final = 0.2


@dataclass(slots=True)
class _Outgoing:
    key: WorkKey
    recipient: bytes
    payload: bytes
    sent: bool = False
    """Sent at least once: it holds its place in the recipient's span."""
    delivered: bool = False


class MeshTransport:
    """Reliable delivery of the node's messages over one mesh runtime."""

    def __init__(
        self,
        mesh: MeshRuntime,
        on_message: Callable[[bytes, bytes, bytes], None],
        on_delivered: Callable[[WorkKey], None],
        *,
        window: int = DEFAULT_WINDOW,
        lifetime: float = DEFAULT_LIFETIME,
        on_reachability: Callable[[bytes, bool], None] | None = None,
    ) -> None:
        if not mesh.node.config.app_acks:
            raise ValueError("the node's mesh must run with app_acks: acks follow commits")
        if not 1 <= window <= MAX_EARLY_MESSAGES + 1:
            raise ValueError(
                f"window must be 1..{MAX_EARLY_MESSAGES + 1}: the partner buffers at most "
                f"{MAX_EARLY_MESSAGES} messages that overtook an earlier one"
            )
        self.mesh = mesh
        self._on_message = on_message
        self._on_delivered = on_delivered
        self._on_reachability = on_reachability
        self.unreachable: set[bytes] = set()
        """Partners whose last message expired unacknowledged (until one is delivered)."""
        self.window = window
        self.lifetime = lifetime
        self._queues: dict[bytes, deque[_Outgoing]] = {}
        """Per recipient: what waits to be sent (new ones, and expired ones to send again
        at the front)."""
        self._spans: dict[bytes, deque[_Outgoing]] = {}
        """Per recipient: the messages sent, in order, from the oldest not acknowledged."""
        self._in_flight: dict[bytes, _Outgoing] = {}  # mesh message id -> message
        self._flying: dict[bytes, int] = {}  # recipient -> sent and not acknowledged
        self._known: set[WorkKey] = set()
        self._stop_listening: Callable[[], None] | None = None
        self._retry: asyncio.TimerHandle | None = None
        self.stats = {"sent": 0, "delivered": 0, "resent": 0, "received": 0}

    def start(self) -> None:
        self._stop_listening = self.mesh.listen(self._on_mesh)

    def stop(self) -> None:
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

    # -- outgoing ---------------------------------------------------------------------------

    def send(self, key: WorkKey, recipient: bytes, payload: bytes) -> None:
        """Deliver ``payload`` to ``recipient``, retrying until acknowledged; a key given
        twice (work re-run after a restart) is sent once."""
        if key in self._known:
            return
        self._known.add(key)
        self._queues.setdefault(recipient, deque()).append(_Outgoing(key, recipient, payload))
        self._pump(recipient)

    def backlog(self, recipient: bytes | None = None) -> int:
        """Messages not yet acknowledged (to ``recipient``, or to anyone)."""
        recipients = list(self._queues.keys() | self._flying.keys())
        if recipient is not None:
            recipients = [recipient]
        return sum(
            sum(1 for item in self._queues.get(who, ()) if not item.sent) + self._flying.get(who, 0)
            for who in recipients
        )

    def _pump(self, recipient: bytes) -> None:
        queue = self._queues.get(recipient)
        if not queue:
            return
        span = self._spans.setdefault(recipient, deque())
        while queue:
            item = queue[0]
            if not item.sent and len(span) >= self.window:
                break  # it would overtake the oldest unacknowledged one by too much
            try:
                message_id = self.mesh.send(recipient, item.payload, self.lifetime)
            except QueueFull:
                self._retry_later()
                break
            queue.popleft()
            self._in_flight[message_id] = item
            if not item.sent:  # a message sent again keeps its place
                item.sent = True
                span.append(item)
                self._flying[recipient] = self._flying.get(recipient, 0) + 1
                self.stats["sent"] += 1
        if not queue:
            del self._queues[recipient]
        if not span:
            del self._spans[recipient]

    def _retry_later(self) -> None:
        if self._retry is None:
            loop = asyncio.get_running_loop()
            self._retry = loop.call_later(_RETRY_FULL_QUEUE, self._retry_all)

    def _retry_all(self) -> None:
        self._retry = None
        for recipient in list(self._queues):
            self._pump(recipient)

    # -- mesh events ------------------------------------------------------------------------

    def _on_mesh(self, event: AppEvent) -> None:
        if isinstance(event, Deliver):
            self.stats["received"] += 1
            self._on_message(event.origin, event.payload, event.message_id)
            return
        item = self._in_flight.pop(event.message_id, None)
        if item is None:
            return  # sent before a restart, or not ours
        if isinstance(event, EventDelivered):
            self.stats["delivered"] += 1
            self._acknowledged(item)
            self._known.discard(item.key)
            self._on_delivered(item.key)
            if item.recipient in self.unreachable:
                self.unreachable.discard(item.recipient)
                if self._on_reachability is not None:
                    self._on_reachability(item.recipient, True)
        else:
            assert isinstance(event, EventExpired)
            self.stats["resent"] += 1
            log.info("message to 0x%s expired unacknowledged; sending again", item.recipient.hex())
            self._queues.setdefault(item.recipient, deque()).appendleft(item)
            if item.recipient not in self.unreachable:
                self.unreachable.add(item.recipient)
                if self._on_reachability is not None:
                    self._on_reachability(item.recipient, False)
        self._pump(item.recipient)

    def _acknowledged(self, item: _Outgoing) -> None:
        """``item`` is delivered: the span moves past it and what was delivered after it."""
        item.delivered = True
        recipient = item.recipient
        self._flying[recipient] -= 1
        if not self._flying[recipient]:
            del self._flying[recipient]
        span = self._spans.get(recipient)
        while span and span[0].delivered:
            span.popleft()
        if span is not None and not span:
            del self._spans[recipient]

    def acknowledge(self, origin: bytes, message_id: bytes) -> None:
        """The input made of this delivery is committed: let the origin know."""
        self.mesh.acknowledge(origin, message_id)
