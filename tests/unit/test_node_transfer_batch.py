"""A node receiving a `TransferBatch`: one balance proof applied, one event per payment.

The batch is made with the channel rules from the sender's view (the node does not fold
its own payments into batches yet) and delivered through the codec to the receiving node.
"""

from __future__ import annotations

import dataclasses

from offchain.protocol import channel as ch
from offchain.protocol import codec
from offchain.protocol.messages import BatchEntry
from offchain.protocol.transitions import (
    EventInvalidReceived,
    EventPaymentReceived,
    ReceiveMessage,
)
from offchain.protocol.types import TokenAmount
from tests.lib.network import TOKEN_NETWORK, Network


def test_receive_transfer_batch__valid__one_event_per_payment_and_balance_moves() -> None:
    net = Network.create(2)
    a, b = net.addresses
    net.open(a, b, 100, 0)
    entries = [BatchEntry(10 + i, TokenAmount(amount)) for i, amount in enumerate((5, 7, 11))]
    made = ch.make_transfer_batch(net.states[a].channels[(TOKEN_NETWORK, b)], net.keys[a], entries)
    assert not isinstance(made, ch.Rejected)
    _, message = made
    received = codec.decode(codec.encode(message))
    effects = net.apply(b, ReceiveMessage(net.now, a, received))
    assert [e for e in effects if isinstance(e, EventPaymentReceived)] == [
        EventPaymentReceived(TOKEN_NETWORK, 10, a, TokenAmount(5), a),
        EventPaymentReceived(TOKEN_NETWORK, 11, a, TokenAmount(7), a),
        EventPaymentReceived(TOKEN_NETWORK, 12, a, TokenAmount(11), a),
    ]
    assert net.balance(b, a) == 23
    # The same bytes again are a duplicate (its nonce is applied): ignored, nothing paid.
    assert net.apply(b, ReceiveMessage(net.now, a, received)) == []
    assert net.balance(b, a) == 23


def test_receive_transfer_batch__forged_entry__invalid_and_nothing_paid() -> None:
    net = Network.create(2)
    a, b = net.addresses
    net.open(a, b, 100, 0)
    made = ch.make_transfer_batch(
        net.states[a].channels[(TOKEN_NETWORK, b)], net.keys[a], [BatchEntry(1, TokenAmount(5))]
    )
    assert not isinstance(made, ch.Rejected)
    _, message = made
    forged = dataclasses.replace(message, payments=(BatchEntry(1, TokenAmount(50)),))
    effects = net.apply(b, ReceiveMessage(net.now, a, forged))
    assert [type(e) for e in effects] == [EventInvalidReceived]
    assert net.balance(b, a) == 0
