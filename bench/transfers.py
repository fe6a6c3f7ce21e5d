"""`protocol.mediated_3hop_transfers_per_s`: whole mediated payments through the pure core.

Belongs here: four nodes A - B - C - D in one process, channels opened by chain inputs,
and payments A -> D run to completion one after another through `node.transition`: every
message is signed by its sender, encoded, decoded, and checked by its receiver (signature
recovery included), exactly as between real nodes; only the transport is a list. A payment
is three locks, the end-to-end secret, three reveals and three unlocks (ten signed
messages). Counted: completed payments per second on one core.
"""

from __future__ import annotations

import time
from collections import deque

from offchain.protocol import codec
from offchain.protocol.crypto import address_from_private_key, keccak256, sha256
from offchain.protocol.node import transition
from offchain.protocol.routes import ChannelEdge, ChannelGraph
from offchain.protocol.state import NodeState, Settings
from offchain.protocol.transitions import (
    ActionPay,
    ActionUpdateGraph,
    ChainChannelOpened,
    ChainDeposit,
    EventPaymentSucceeded,
    Input,
    ReceiveMessage,
    SendMessage,
)
from offchain.protocol.types import (
    Address,
    Generation,
    PrivateKey,
    Secret,
    SecretHash,
    Timestamp,
    TokenAmount,
)

NETWORK = Address(b"\x5a" * 20)
NOW = Timestamp(1_700_000_000)


class _Line:
    def __init__(self, size: int) -> None:
        self.keys = [PrivateKey(keccak256(b"bench node %d" % i)) for i in range(size)]
        self.addresses = [address_from_private_key(key) for key in self.keys]
        self.states = {a: NodeState(a, 1, Settings()) for a in self.addresses}
        self.key_of = dict(zip(self.addresses, self.keys, strict=True))
        self.queue: deque[tuple[Address, Address, bytes]] = deque()
        self.succeeded = 0
        deposit = TokenAmount(10**24)
        for a, b in zip(self.addresses, self.addresses[1:], strict=False):
            for me, partner in ((a, b), (b, a)):
                self.apply(me, ChainChannelOpened(NOW, NETWORK, partner, Generation(1), 3600))
                for who in (a, b):
                    self.apply(me, ChainDeposit(NOW, NETWORK, partner, who, deposit))
        graph = ChannelGraph.from_edges(
            ChannelEdge(a, b, deposit, deposit)
            for a, b in zip(self.addresses, self.addresses[1:], strict=False)
        )
        for address in self.addresses:
            self.apply(address, ActionUpdateGraph(NOW, NETWORK, graph))

    def apply(self, address: Address, event: Input) -> None:
        state, effects = transition(self.states[address], event, self.key_of[address])
        self.states[address] = state
        for effect in effects:
            if isinstance(effect, SendMessage):
                self.queue.append((address, effect.recipient, codec.encode(effect.message)))
            elif isinstance(effect, EventPaymentSucceeded):
                self.succeeded += 1

    def run(self) -> None:
        while self.queue:
            sender, recipient, data = self.queue.popleft()
            self.apply(recipient, ReceiveMessage(NOW, sender, codec.decode(data)))


def mediated_3hop_transfers_per_s(count: int = 300) -> float:
    """Complete payments A -> D across B and C per second."""
    line = _Line(4)
    payer, target = line.addresses[0], line.addresses[-1]
    start = time.perf_counter()
    for n in range(count):
        secret = Secret(keccak256(b"bench secret %d" % n))
        action = ActionPay(
            NOW, n + 1, NETWORK, target, TokenAmount(1_000), SecretHash(sha256(secret)), secret
        )
        line.apply(payer, action)
        line.run()
    elapsed = time.perf_counter() - start
    if line.succeeded != count:
        raise RuntimeError(f"only {line.succeeded} of {count} payments succeeded")
    return count / elapsed


def measure() -> dict[str, int | float]:
    rates = sorted(mediated_3hop_transfers_per_s() for _ in range(3))
    return {"protocol.mediated_3hop_transfers_per_s": round(rates[1])}


if __name__ == "__main__":
    print(measure())
