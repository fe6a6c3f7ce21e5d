"""Several protocol cores in one process, wired by an in-memory transport and chain.

Used by the unit tests of the transfer state machines, the multi-node hypothesis test and
the protocol bench. Every message goes through the real codec (encode, decode) and every
signature is made and checked by the cores; only the transport and the chain are
simulated: a queue of messages the test delivers (in order, or dropped, duplicated,
reordered), and a list of transactions it mines.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from offchain.protocol import codec
from offchain.protocol.channel import balance, spendable
from offchain.protocol.crypto import address_from_private_key, sha256
from offchain.protocol.fees import FeeSchedule
from offchain.protocol.node import transition
from offchain.protocol.routes import ChannelEdge, ChannelGraph
from offchain.protocol.state import NodeState, Settings
from offchain.protocol.transitions import (
    ActionUpdateGraph,
    ChainChannelOpened,
    ChainDeposit,
    ChainSecretRegistered,
    ChainWithdraw,
    ContractSendSecretRegister,
    ContractSendWithdraw,
    Effect,
    Input,
    ReceiveMessage,
    SendMessage,
    Tick,
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

TOKEN_NETWORK = Address(bytes.fromhex("5a" * 20))
CHAIN_ID = 1337
SETTLE_WINDOW = 3600
START = Timestamp(1_700_000_000)


def make_key(index: int) -> PrivateKey:
    return PrivateKey((index + 1).to_bytes(32, "big"))


@dataclass
class Flight:
    """A message on its way: the transport will deliver its bytes to `recipient`."""

    sender: Address
    recipient: Address
    data: bytes


@dataclass
class Network:
    """Nodes, their channels, the messages in flight and the chain's pending work."""

    keys: dict[Address, PrivateKey]
    states: dict[Address, NodeState]
    now: Timestamp = START
    flights: list[Flight] = field(default_factory=list)
    registrations: list[ContractSendSecretRegister] = field(default_factory=list)
    withdraws: list[tuple[Address, ContractSendWithdraw]] = field(default_factory=list)
    effects: dict[Address, list[Effect]] = field(default_factory=dict)
    edges: list[tuple[Address, Address]] = field(default_factory=list)

    @classmethod
    def create(cls, size: int, settings: Settings | None = None) -> Network:
        keys = {address_from_private_key(make_key(i)): make_key(i) for i in range(size)}
        states = {address: NodeState(address, CHAIN_ID, settings or Settings()) for address in keys}
        return cls(keys=keys, states=states, effects={address: [] for address in keys})

    @property
    def addresses(self) -> list[Address]:
        return list(self.keys)

    # --- driving -----------------------------------------------------------------------

    def apply(self, address: Address, event: Input) -> list[Effect]:
        """Run one input on one node and carry out its effects."""
        state, effects = transition(self.states[address], event, self.keys[address])
        self.states[address] = state
        self.effects[address] += effects
        for effect in effects:
            if isinstance(effect, SendMessage):
                self.flights.append(Flight(address, effect.recipient, codec.encode(effect.message)))
            elif isinstance(effect, ContractSendSecretRegister):
                self.registrations.append(effect)
            elif isinstance(effect, ContractSendWithdraw):
                self.withdraws.append((address, effect))
        return effects

    def deliver(self, index: int = 0) -> list[Effect]:
        flight = self.flights.pop(index)
        message = codec.decode(flight.data)
        return self.apply(flight.recipient, ReceiveMessage(self.now, flight.sender, message))

    def run(self, limit: int = 100_000) -> None:
        """Deliver in order until nothing is in flight."""
        for _ in range(limit):
            if not self.flights:
                return
            self.deliver(0)
        raise AssertionError("the network did not go quiet")

    def advance(self, seconds: int, tick_every: int | None = None, mine: bool = False) -> None:
        """Let time pass and tick every node (every `tick_every` seconds, like a runtime's
        ticker); with `mine`, the chain includes each tick's registrations at once."""
        target = self.now + seconds
        while self.now < target:
            self.now = Timestamp(min(target, self.now + (tick_every or seconds)))
            for address in self.addresses:
                self.apply(address, Tick(self.now))
            if mine:
                self.mine()

    def mine(self) -> None:
        """Include every pending secret registration and withdraw now; tell the nodes."""
        withdraws, self.withdraws = self.withdraws, []
        for address, request in withdraws:
            if self.now > request.withdraw.expiration:
                continue  # the contract refuses an expired withdraw
            partner = request.partner
            total = request.withdraw.total_withdraw
            for me, other in ((address, partner), (partner, address)):
                self.apply(me, ChainWithdraw(self.now, TOKEN_NETWORK, other, address, total))
        pending, self.registrations = self.registrations, []
        seen: set[SecretHash] = set()
        for registration in pending:
            secrethash = SecretHash(sha256(registration.secret))
            if secrethash in seen:
                continue
            seen.add(secrethash)
            for address in self.addresses:
                self.apply(
                    address,
                    ChainSecretRegistered(self.now, registration.secret, secrethash, self.now),
                )

    # --- set-up ------------------------------------------------------------------------

    def open(self, a: Address, b: Address, deposit_a: int, deposit_b: int) -> None:
        for me, partner in ((a, b), (b, a)):
            self.apply(
                me,
                ChainChannelOpened(self.now, TOKEN_NETWORK, partner, Generation(1), SETTLE_WINDOW),
            )
            for who, amount in ((a, deposit_a), (b, deposit_b)):
                if amount:
                    self.apply(
                        me, ChainDeposit(self.now, TOKEN_NETWORK, partner, who, TokenAmount(amount))
                    )
        self.edges.append((a, b))

    def line(self, deposit: int) -> list[Address]:
        nodes = self.addresses
        for a, b in itertools.pairwise(nodes):
            self.open(a, b, deposit, deposit)
        self.publish_graph()
        return nodes

    def publish_graph(self, fees: FeeSchedule | None = None) -> None:
        """Give every node the graph of all channels, capacities as their ends see them."""
        edges = []
        for a, b in self.edges:
            channel_a = self.states[a].channels[(TOKEN_NETWORK, b)]
            channel_b = self.states[b].channels[(TOKEN_NETWORK, a)]
            edges.append(
                ChannelEdge(
                    a,
                    b,
                    spendable(channel_a.our, channel_a.partner),
                    spendable(channel_b.our, channel_b.partner),
                    self.states[a].settings.fees if fees is None else fees,
                    self.states[b].settings.fees if fees is None else fees,
                )
            )
        graph = ChannelGraph.from_edges(edges)
        for address in self.addresses:
            self.apply(address, ActionUpdateGraph(self.now, TOKEN_NETWORK, graph))

    # --- views -------------------------------------------------------------------------

    def balance(self, a: Address, b: Address) -> int:
        """What `a` holds in its channel with `b`, by `a`'s own view."""
        channel = self.states[a].channels[(TOKEN_NETWORK, b)]
        return balance(channel.our, channel.partner)

    def events(self, address: Address, kind: type) -> list[Effect]:
        return [effect for effect in self.effects[address] if isinstance(effect, kind)]


def secret_for(index: int) -> tuple[Secret, SecretHash]:
    secret = Secret(index.to_bytes(32, "big"))
    return secret, SecretHash(sha256(secret))
