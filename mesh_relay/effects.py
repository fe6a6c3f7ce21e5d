"""What the core asks its driver to do: the effects returned by every ``MeshNode`` input.

Belongs here: the frozen effect values and the ``BROADCAST`` marker. Names say direction
(DESIGN.md §3): ``Send*`` puts bytes on a link, ``Deliver`` hands a payload to the local
application, ``Event*`` notifies it. The driver (an adapter or the simulator) carries out
effects in order; it also reads ``MeshNode.next_timer`` after each input and calls
``tick`` at that time.

Does not belong here: any behaviour.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mesh_relay.config import LinkAddr
from mesh_relay.identity import Address


class Broadcast(enum.Enum):
    """The type of ``BROADCAST``: every neighbour on the link."""

    BROADCAST = "broadcast"


BROADCAST = Broadcast.BROADCAST


@dataclass(frozen=True, slots=True)
class SendFrame:
    """Put ``data`` (at most the link's MTU) on link ``link_id`` to ``link_addr``."""

    link_id: str
    link_addr: LinkAddr | Broadcast
    data: bytes


@dataclass(frozen=True, slots=True)
class Deliver:
    """A payload for this node, verified and decrypted; delivered once per message id."""

    origin: Address
    payload: bytes
    message_id: bytes


@dataclass(frozen=True, slots=True)
class EventDelivered:
    """The destination acknowledged (signed) a message this node sent."""

    message_id: bytes


@dataclass(frozen=True, slots=True)
class EventExpired:
    """No acknowledgement came for a message this node sent before expiry + ack grace."""

    message_id: bytes


@dataclass(frozen=True, slots=True)
class EventInvalidFrame:
    """A frame from a peer was dropped: malformed, forged, stale or replayed."""

    reason: str


Effect = SendFrame | Deliver | EventDelivered | EventExpired | EventInvalidFrame
