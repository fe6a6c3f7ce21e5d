"""The node's database encoding of core values: exact round trips, stable bytes, and
clear errors for rows that are not ours (offchain/node/encoding.py)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from offchain.node.encoding import REGISTRY, EncodingError, decode, encode
from offchain.protocol import codec
from offchain.protocol.node import transition
from offchain.protocol.state import NodeState
from offchain.protocol.transitions import ActionPay, ActionUpdateGraph, ReceiveMessage
from offchain.protocol.types import TokenAmount
from tests.lib.network import TOKEN_NETWORK, Network, secret_for


class RecordingNetwork(Network):
    """A Network that keeps every input it applied, per node."""

    inputs: list[object]

    def apply(self, address, event):  # type: ignore[no-untyped-def]
        self.__dict__.setdefault("inputs", []).append(event)
        return super().apply(address, event)


def comparable(state: NodeState) -> object:
    """`state` with each graph as its edges: graphs compare by identity (eq=False)."""
    graphs = {network: graph.edges for network, graph in state.graphs.items()}
    return (dataclasses.replace(state, graphs={}), graphs)


def mid_payment_network() -> RecordingNetwork:
    net = RecordingNetwork.create(4)
    a, _, _, d = net.line(1_000)
    net.publish_graph()
    secret, secrethash = secret_for(1)
    net.apply(a, ActionPay(net.now, 1, TOKEN_NETWORK, d, TokenAmount(10), secrethash, secret))
    for _ in range(4):  # part of the way: locks pending, roles in flight
        net.deliver(0)
    return net


def test_states_and_inputs_of_a_payment_in_flight__round_trip_exactly() -> None:
    net = mid_payment_network()
    for state in net.states.values():
        again = decode(encode(state))
        assert comparable(again) == comparable(state)
        assert encode(again) == encode(state)  # canonical: same value, same bytes
    for event in net.inputs:
        if isinstance(event, ActionUpdateGraph):
            assert decode(encode(event)).graph.edges == event.graph.edges
        else:
            assert decode(encode(event)) == event
    for effects in net.effects.values():
        for effect in effects:
            assert decode(encode(effect)) == effect


def test_a_restored_state_behaves_like_the_original() -> None:
    net = mid_payment_network()
    flight = net.flights[0]
    message = codec.decode(flight.data)
    event = ReceiveMessage(net.now, flight.sender, message)
    state = net.states[flight.recipient]
    key = net.keys[flight.recipient]
    restored, effects = transition(decode(encode(state)), event, key)
    original, original_effects = transition(state, event, key)
    assert effects == original_effects and comparable(restored) == comparable(original)


def test_strings_that_look_like_tags_or_hex_survive() -> None:
    for text in ("0xdead", "$fs", "plain", ""):
        assert decode(encode(text)) == text
    assert decode(encode(b"")) == b""


def test_a_field_added_later_takes_its_default() -> None:
    state = NodeState(b"\x01" * 20, 31337)  # type: ignore[arg-type]
    tree = json.loads(encode(state))
    del tree["registering"]  # as if written before the field existed
    assert decode(json.dumps(tree).encode()) == state


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b'{"$": "Popen", "args": "ls"}',
        b'{"$": "NodeState", "nonsense": 1}',
        b'{"$e": "InitiatorStatus", "v": "exploded"}',
        b'{"no": "tag"}',
        b'"0xzz"',
        b'{"$m": [[1]]}',
        b"\xff\xfe",
    ],
)
def test_rows_that_are_not_ours__one_clear_error(data: bytes) -> None:
    with pytest.raises(EncodingError):
        decode(data)


def test_registry_holds_the_core_values_only() -> None:
    assert {"NodeState", "ReceiveMessage", "SendMessage", "LockedTransfer"} <= set(REGISTRY)
    assert all(cls.__module__.startswith("offchain.protocol.") for cls in REGISTRY.values())
