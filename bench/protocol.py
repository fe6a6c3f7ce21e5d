"""Figures of the pure protocol core (`offchain.protocol`), measured with no I/O.

Belongs here: measurements of the core alone that `make bench` merges into
bench/results.json under `protocol.*` names: rates of direct transfers and of batched
payments (`TransferBatch`), and sizes computed from the codec's own layout tables (the
largest possible encoding of each per-hop payment message), which change only when the
wire format does.
"""

from __future__ import annotations

import time

from offchain.protocol import channel as ch
from offchain.protocol import codec
from offchain.protocol.channel import ChannelState, EndState, Rejected
from offchain.protocol.crypto import address_from_private_key, keccak256
from offchain.protocol.messages import BatchEntry, MessageType
from offchain.protocol.types import Address, Generation, PrivateKey, Timestamp, TokenAmount

# The messages that travel hop by hop for a payment; each must fit one 210-byte frame.
# `protocol.max_message_bytes` is the largest of these only: TransferBatch is left out on
# purpose, since a batch grows with its entries and the mesh fragments it end to end.
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


def direct_transfers_per_s(count: int = 5_000) -> float:
    """Direct payments A -> B through the core: A signs, the bytes are encoded and decoded,
    B checks everything (nonce, capacity, signature recovery) and applies it."""
    key_a = PrivateKey(keccak256(b"bench a"))
    key_b = PrivateKey(keccak256(b"bench b"))
    a_end = EndState(address_from_private_key(key_a), deposit=TokenAmount(10**18))
    b_end = EndState(address_from_private_key(key_b))
    network, now = Address(b"\x42" * 20), Timestamp(1_700_000_000)
    view_a = ChannelState(1, network, Generation(1), 3600, 60, a_end, b_end)
    view_b = ChannelState(1, network, Generation(1), 3600, 60, b_end, a_end)
    start = time.perf_counter()
    for payment_id in range(count):
        made = ch.make_direct_transfer(view_a, key_a, TokenAmount(1), payment_id)
        assert not isinstance(made, Rejected)
        view_a, message = made
        received = ch.receive(view_b, codec.decode(codec.encode(message)), now)  # type: ignore[arg-type]
        assert isinstance(received, ChannelState)
        view_b = received
    return count / (time.perf_counter() - start)


BATCH_SIZE = 100
"""Payments per batch in `batched_payments_per_s`: with amounts below 2**21 (entries of at
most 11 bytes) such a batch fits one 1,200-byte mesh frame (docs/spec.md §9)."""


def batched_payments_per_s(batches: int = 200, size: int = BATCH_SIZE) -> float:
    """Payments A -> B folded `size` to a `TransferBatch`, counted one per payment.

    Per batch: A builds the entries and signs one balance proof over them, the bytes are
    encoded and decoded, and B checks everything (nonce, each entry, capacity, signature
    recovery) and applies it. Amounts vary from 1 to 10**6, so their varints take 1 to 3
    bytes as small real payments would.
    """
    key_a = PrivateKey(keccak256(b"bench a"))
    key_b = PrivateKey(keccak256(b"bench b"))
    a_end = EndState(address_from_private_key(key_a), deposit=TokenAmount(10**18))
    b_end = EndState(address_from_private_key(key_b))
    network, now = Address(b"\x42" * 20), Timestamp(1_700_000_000)
    view_a = ChannelState(1, network, Generation(1), 3600, 60, a_end, b_end)
    view_b = ChannelState(1, network, Generation(1), 3600, 60, b_end, a_end)
    start = time.perf_counter()
    for first in range(0, batches * size, size):
        entries = [
            BatchEntry(payment_id, TokenAmount(1 + payment_id * 7919 % 10**6))
            for payment_id in range(first, first + size)
        ]
        made = ch.make_transfer_batch(view_a, key_a, entries)
        assert not isinstance(made, Rejected)
        view_a, message = made
        received = ch.receive(view_b, codec.decode(codec.encode(message)), now)  # type: ignore[arg-type]
        assert isinstance(received, ChannelState)
        view_b = received
    return batches * size / (time.perf_counter() - start)


def measure() -> dict[str, int | float]:
    """The protocol figures (median of three runs for rates)."""
    rates = sorted(direct_transfers_per_s() for _ in range(3))
    batched = sorted(batched_payments_per_s() for _ in range(3))
    return {
        "protocol.max_message_bytes": max(codec.max_size(t) for t in PER_HOP_PAYMENT_MESSAGES),
        "protocol.direct_transfers_per_s": round(rates[1]),
        "protocol.batched_payments_per_s": round(batched[1]),
    }


if __name__ == "__main__":  # python -m bench.protocol
    for name, value in measure().items():
        print(f"{name:40s} {value:>10,}")
