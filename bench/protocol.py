"""Figures of the pure protocol core (`offchain.protocol`), measured with no I/O.

Belongs here: measurements of the core alone that `make bench` merges into
bench/results.json under `protocol.*` names. Sizes are computed from the codec's own
layout tables (the largest possible encoding of each per-hop payment message), so they
change only when the wire format does.
"""

from __future__ import annotations

from offchain.protocol import codec
from offchain.protocol.messages import MessageType

# The messages that travel hop by hop for a payment; each must fit one 210-byte frame.
PER_HOP_PAYMENT_MESSAGES = (
    MessageType.DIRECT_TRANSFER,
    MessageType.LOCKED_TRANSFER,
    MessageType.LOCK_RETURN,
    MessageType.UNLOCK,
    MessageType.LOCK_EXPIRED,
    MessageType.SECRET_REQUEST,
    MessageType.SECRET_REVEAL,
    MessageType.PAYMENT_SECRET,
    MessageType.PROCESSED,
)


def measure() -> dict[str, int | float]:
    """The protocol figures: for now the largest per-hop payment message."""
    return {
        "protocol.max_message_bytes": max(codec.max_size(t) for t in PER_HOP_PAYMENT_MESSAGES),
    }
