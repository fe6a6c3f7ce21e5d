"""A world where nodes lose the chain and regain it: cores, a modelled chain, watch services.

Belongs here (test support for `tests/property/test_offline_property.py`; no I/O):
- `Chain`: the token network's and the secret registry's rules as docs/spec.md §3-§5 state
  them (close with the partner's proof, update by the non-closer or by a delegate with the
  non-closer's `Delegation`, settle after the window with `settlement_payout` and the
  delegate's reward, unlock by the registration times), every signature checked for real;
  transactions are included `inclusion` seconds after they are sent (at most
  `submit_margin`: docs/offline.md §2 assumes no more), and each included one is judged
  at its block's time;
- `OfflineNetwork`: `tests/lib/network.py`'s cores with what a node's runtime adds around
  them: whether it sees the chain (`Host.sees_chain`; while it does, every log reaches
  its core at once and every transaction it asks for is sent at once), the schedule of
  transactions it could not send yet (`Host.outbox`, like `chain_bridge`), the view it
  gives its core (`ActionSetChainView`: the chain time it last saw, and the views of
  delegates holding its latest partner proofs, like `OfflineMonitor`), the delegation
  client (`client.delegate_update` with real `Delegation` signatures, sent after every
  change while a mesh path to its delegate exists) and the hand-off of due transactions to
  a gateway;
- `Watcher`: a watch service deciding with `offchain/watch/rules.py` (what it accepts)
  and `plan.py` (what it does next), that can be blind, lazy (accepts, never acts) or, as
  a gateway, drop what it was handed;
- the bookkeeping the property test checks: every deadline a blind node's core announced
  (`offline.deadlines`) that passed before the node (or a gateway for it) reached the
  chain (`Host.misses`), and what the chain paid each participant.

Each node's clock is the chain's plus a fixed offset in [-clock_tolerance, 0]: behind the
chain by at most the tolerance, the worst case the deadlines are stated for.

Does not belong here: the rules of the test and its invariants (the test module).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from offchain.protocol import eip712
from offchain.protocol.channel import ChannelState
from offchain.protocol.crypto import address_from_private_key
from offchain.protocol.errors import InvalidSignature
from offchain.protocol.locks import EMPTY_LOCKSROOT, Lock, balance_hash, locksroot, secrethash_of
from offchain.protocol.locks import channel_id as make_channel_id
from offchain.protocol.offline import ContractWork, Deadline, DeadlineKind, deadlines, send_deadline
from offchain.protocol.settlement import (
    ParticipantTotals,
    apply_reward,
    settlement_payout,
    unlock_split,
)
from offchain.protocol.state import ChannelKey, Settings
from offchain.protocol.transitions import (
    ActionSetChainView,
    ChainChannelClosed,
    ChainChannelSettled,
    ChainSecretRegistered,
    ChainWithdraw,
    ContractSendClose,
    ContractSendCoopSettle,
    ContractSendSecretRegister,
    ContractSendUnlock,
    ContractSendUpdate,
    ContractSendWithdraw,
    Effect,
    Input,
    PartnerProof,
    Tick,
)
from offchain.protocol.types import (
    ZERO_ADDRESS,
    AdditionalHash,
    Address,
    BalanceHash,
    Generation,
    Locksroot,
    Nonce,
    PrivateKey,
    Secret,
    SecretHash,
    Signature,
    Timestamp,
    TokenAmount,
)
from offchain.watch import client, plan, rules, wire
from offchain.watch.beacons import BeaconBook
from offchain.watch.facts import ChannelFacts, SideOnChain, Stage
from offchain.watch.wire import (
    UNSIGNED,
    Action,
    BalancePreimage,
    ChainBeacon,
    DelegateUpdate,
    OutcomeStatus,
    RawTransaction,
    Reason,
    RegisterSecret,
    Service,
)
from tests.lib.network import CHAIN_ID, TOKEN_NETWORK, Network, make_key

GENERATION = Generation(1)
DOMAIN = eip712.Domain(CHAIN_ID, TOKEN_NETWORK)
REWARD = 1
"""What every delegation pays its delegate (out of the client's share, at settle)."""
TICK = 10
"""Seconds between two ticks of every core (the runtime ticks more often; 10 s is what the
reveal timeout's margin assumes in the transfers test too)."""
BEACON_EVERY = 60
"""Seconds between two beacons of a watcher that sees the chain (docs/spec.md §15.4)."""
NO_DEADLINE = Timestamp(2**63)
NO_SIGNATURE = Signature(bytes(65))

# --- the chain ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProofOnChain:
    """A participant's balance proof as the contract holds it (after a close or update)."""

    nonce: int
    transferred: int
    locked: int
    locksroot: bytes

    @property
    def balance_hash(self) -> BalanceHash:
        if self.nonce == 0:
            return BalanceHash(bytes(32))
        return balance_hash(
            TokenAmount(self.transferred), TokenAmount(self.locked), Locksroot(self.locksroot)
        )


NO_PROOF = ProofOnChain(0, 0, 0, bytes(32))


@dataclass
class ChainChannel:
    a: Address
    b: Address
    settle_window: int
    deposit: dict[Address, int]
    withdrawn: dict[Address, int]
    stage: Stage = Stage.OPENED
    closer: Address | None = None
    closed_at: int | None = None
    proofs: dict[Address, ProofOnChain] = field(default_factory=dict)
    """By signer: the proof of it that stands."""
    delegations: dict[Address, tuple[Address, int]] = field(default_factory=dict)
    """By non-closer: the delegate whose update stands for it, and the reward."""
    settled_at: int | None = None
    paid: dict[Address, int] = field(default_factory=dict)
    """What each participant was paid at settle (and by the unlocks, `Chain.finish`)."""
    rewards: dict[Address, int] = field(default_factory=dict)
    """By participant: the reward its delegate took out of its share."""
    retained: dict[Address, int] = field(default_factory=dict)
    """By sender: what settle kept back for its pending locks."""

    def other(self, address: Address) -> Address:
        return self.b if address == self.a else self.a

    @property
    def deadline(self) -> int | None:
        return None if self.closed_at is None else self.closed_at + self.settle_window

    def proof(self, signer: Address) -> ProofOnChain:
        return self.proofs.get(signer, NO_PROOF)


@dataclass(frozen=True, slots=True)
class TxClose:
    closer: Address
    partner: Address
    proof: PartnerProof | None


@dataclass(frozen=True, slots=True)
class TxUpdate:
    sender: Address
    closer: Address
    non_closer: Address
    nonce: int
    preimage: BalancePreimage
    additional_hash: bytes
    signature: Signature
    delegate: Address = ZERO_ADDRESS
    reward: int = 0
    delegation_signature: Signature = NO_SIGNATURE


@dataclass(frozen=True, slots=True)
class TxSettle:
    a: Address
    b: Address


@dataclass(frozen=True, slots=True)
class TxRegister:
    secret: Secret


@dataclass(frozen=True, slots=True)
class TxWithdraw:
    participant: Address
    partner: Address
    total: int
    expiration: int


@dataclass(frozen=True, slots=True)
class TxNothing:
    """A transaction the model does not need to carry out (an unlock: `Chain.finish` pays
    every retained amount by the registry, as someone calling `unlock` later would)."""


Tx = TxClose | TxUpdate | TxSettle | TxRegister | TxWithdraw | TxNothing
Outcome = Callable[[bool, str], None]


@dataclass(frozen=True, slots=True)
class LogWithdraw:
    time: int
    a: Address
    b: Address
    participant: Address
    total: int


@dataclass(frozen=True, slots=True)
class LogClosed:
    time: int
    a: Address
    b: Address
    closer: Address
    deadline: int


@dataclass(frozen=True, slots=True)
class LogSettled:
    time: int
    a: Address
    b: Address


@dataclass(frozen=True, slots=True)
class LogRegistered:
    time: int
    secret: Secret


Log = LogWithdraw | LogClosed | LogSettled | LogRegistered


def log_inputs(log: Log, address: Address, now: Timestamp) -> list[Input]:
    """What a node's chain follower turns one log into, for that node."""
    if isinstance(log, LogRegistered):
        secret = log.secret
        return [ChainSecretRegistered(now, secret, secrethash_of(secret), Timestamp(log.time))]
    if address not in (log.a, log.b):
        return []
    partner = log.b if address == log.a else log.a
    match log:
        case LogWithdraw():
            total = TokenAmount(log.total)
            return [ChainWithdraw(now, TOKEN_NETWORK, partner, log.participant, total)]
        case LogClosed():
            return [ChainChannelClosed(now, TOKEN_NETWORK, partner, log.closer)]
        case LogSettled():
            return [ChainChannelSettled(now, TOKEN_NETWORK, partner)]


def _recovers(struct: eip712.SignedStruct, signature: bytes, signer: Address) -> bool:
    try:
        return eip712.recover_signer(DOMAIN, struct, signature) == signer
    except InvalidSignature:
        return False


@dataclass
class Chain:
    """The contracts of one token network and the secret registry, and a mempool."""

    inclusion: int
    now: int
    locks_of: Callable[[bytes], tuple[Lock, ...]]
    """The locks a locksroot commits to (what a caller of `unlock` would name)."""
    channels: dict[frozenset[Address], ChainChannel] = field(default_factory=dict)
    registry: dict[SecretHash, int] = field(default_factory=dict)
    log: list[Log] = field(default_factory=list)
    pending: list[tuple[int, int, Tx, Outcome | None]] = field(default_factory=list)
    counter: itertools.count[int] = field(default_factory=itertools.count)
    reverts: list[tuple[int, Tx, str]] = field(default_factory=list)

    def channel(self, a: Address, b: Address) -> ChainChannel | None:
        return self.channels.get(frozenset((a, b)))

    def open(self, a: Address, b: Address, deposit_a: int, deposit_b: int, window: int) -> None:
        self.channels[frozenset((a, b))] = ChainChannel(
            a, b, window, {a: deposit_a, b: deposit_b}, {a: 0, b: 0}
        )

    def submit(self, tx: Tx, outcome: Outcome | None = None) -> None:
        self.pending.append((self.now + self.inclusion, next(self.counter), tx, outcome))

    def next_inclusion(self) -> int | None:
        return min((at for at, _, _, _ in self.pending), default=None)

    def settle_pending(self, channel: ChainChannel) -> bool:
        pair = {channel.a, channel.b}
        return any(
            isinstance(tx, TxSettle) and {tx.a, tx.b} == pair for _, _, tx, _ in self.pending
        )

    def mine(self) -> None:
        """Include, in order, every transaction due by now (each judged at its own time)."""
        due = sorted(item for item in self.pending if item[0] <= self.now)
        self.pending = [item for item in self.pending if item[0] > self.now]
        for at, _, tx, outcome in due:
            problem = self._execute(tx, at)
            if problem is not None:
                self.reverts.append((at, tx, problem))
            if outcome is not None:
                outcome(problem is None, problem or "")

    def facts(self, a: Address, b: Address) -> ChannelFacts | None:
        """What a watcher reads of the channel between `a` and `b`."""
        channel = self.channel(a, b)
        if channel is None:
            return None
        if channel.stage is Stage.OPENED:
            return ChannelFacts(GENERATION, channel.settle_window, Stage.OPENED)
        closer = channel.closer
        assert closer is not None
        non_closer = channel.other(closer)
        delegate, reward = channel.delegations.get(non_closer, (ZERO_ADDRESS, 0))
        closer_proof, non_closer_proof = channel.proof(closer), channel.proof(non_closer)
        return ChannelFacts(
            GENERATION,
            channel.settle_window,
            channel.stage,
            closer=closer,
            closed_at=Timestamp(channel.closed_at or 0),
            settled_generation=GENERATION if channel.stage is Stage.SETTLED else None,
            closer_side=SideOnChain(Nonce(closer_proof.nonce), closer_proof.balance_hash),
            non_closer_side=SideOnChain(
                Nonce(non_closer_proof.nonce),
                non_closer_proof.balance_hash,
                delegate,
                TokenAmount(reward),
            ),
        )

    def registered_at(self, secret: Secret) -> int | None:
        return self.registry.get(secrethash_of(secret))

    # --- the contracts' rules --------------------------------------------------------------

    def _execute(self, tx: Tx, at: int) -> str | None:
        match tx:
            case TxRegister():
                secrethash = secrethash_of(tx.secret)
                if secrethash not in self.registry:
                    self.registry[secrethash] = at
                    self.log.append(LogRegistered(at, tx.secret))
                return None
            case TxClose():
                return self._close(tx, at)
            case TxUpdate():
                return self._update(tx, at)
            case TxSettle():
                return self._settle(tx, at)
            case TxWithdraw():
                return self._withdraw(tx, at)
            case TxNothing():
                return None

    def _close(self, tx: TxClose, at: int) -> str | None:
        channel = self.channel(tx.closer, tx.partner)
        if channel is None or channel.stage is not Stage.OPENED:
            return "channel not open"
        proof = tx.proof
        if proof is not None:
            root = locksroot(proof.locks)
            struct = eip712.BalanceProof(
                channel_id=make_channel_id(tx.closer, tx.partner),
                generation=GENERATION,
                nonce=proof.nonce,
                balance_hash=balance_hash(proof.transferred, proof.locked, root),
                additional_hash=AdditionalHash(proof.additional_hash),
            )
            if not _recovers(struct, proof.signature, tx.partner):
                return "invalid balance proof signature"
            channel.proofs[tx.partner] = ProofOnChain(
                proof.nonce, proof.transferred, proof.locked, root
            )
        channel.stage = Stage.CLOSED
        channel.closer = tx.closer
        channel.closed_at = at
        self.log.append(LogClosed(at, channel.a, channel.b, tx.closer, at + channel.settle_window))
        return None

    def _update(self, tx: TxUpdate, at: int) -> str | None:
        channel = self.channel(tx.closer, tx.non_closer)
        if channel is None or channel.stage is not Stage.CLOSED:
            return "channel not closed"
        deadline = channel.deadline
        assert deadline is not None
        if at > deadline:
            return "settle window over"
        if channel.closer != tx.closer:
            return "not the closing participant"
        if tx.nonce <= channel.proof(tx.closer).nonce:
            return "proof not newer"
        bh = tx.preimage.balance_hash
        struct = eip712.BalanceProof(
            channel_id=make_channel_id(tx.closer, tx.non_closer),
            generation=GENERATION,
            nonce=Nonce(tx.nonce),
            balance_hash=bh,
            additional_hash=AdditionalHash(tx.additional_hash),
        )
        if not _recovers(struct, tx.signature, tx.closer):
            return "invalid balance proof signature"
        if tx.sender == tx.non_closer:
            channel.delegations.pop(tx.non_closer, None)
        else:
            if tx.delegate not in (tx.sender, ZERO_ADDRESS):
                return "not the named delegate"
            delegation = eip712.Delegation(
                channel_id=make_channel_id(tx.closer, tx.non_closer),
                generation=GENERATION,
                nonce=Nonce(tx.nonce),
                balance_hash=bh,
                delegate=tx.delegate,
                reward=TokenAmount(tx.reward),
            )
            if not _recovers(delegation, tx.delegation_signature, tx.non_closer):
                return "invalid delegation signature"
            channel.delegations[tx.non_closer] = (tx.sender, tx.reward)
        preimage = tx.preimage
        channel.proofs[tx.closer] = ProofOnChain(
            tx.nonce, preimage.transferred, preimage.locked, preimage.locksroot
        )
        return None

    def _settle(self, tx: TxSettle, at: int) -> str | None:
        channel = self.channel(tx.a, tx.b)
        if channel is None or channel.stage is not Stage.CLOSED:
            return "channel not closed"
        deadline = channel.deadline
        assert deadline is not None
        if at <= deadline:
            return "settle window not over"
        a, b = channel.a, channel.b
        totals = [
            ParticipantTotals(
                TokenAmount(channel.deposit[x]),
                TokenAmount(channel.withdrawn[x]),
                TokenAmount(channel.proof(x).transferred),
                TokenAmount(channel.proof(x).locked),
            )
            for x in (a, b)
        ]
        payout = settlement_payout(totals[0], totals[1])
        for x, share in ((a, payout.payout1), (b, payout.payout2)):
            _, reward = channel.delegations.get(x, (ZERO_ADDRESS, 0))
            keeps, taken = apply_reward(share, TokenAmount(reward))
            channel.paid[x] = keeps
            channel.rewards[x] = taken
        channel.retained = {a: payout.locked_retained1, b: payout.locked_retained2}
        channel.stage = Stage.SETTLED
        channel.settled_at = at
        self.log.append(LogSettled(at, a, b))
        return None

    def _withdraw(self, tx: TxWithdraw, at: int) -> str | None:
        channel = self.channel(tx.participant, tx.partner)
        if channel is None or channel.stage is not Stage.OPENED:
            return "channel not open"
        if at > tx.expiration:
            return "withdraw expired"
        if tx.total <= channel.withdrawn[tx.participant]:
            return "total withdraw must rise"
        available = sum(channel.deposit.values()) - channel.withdrawn[tx.partner]
        if tx.total > available:
            return "withdraw above the deposits"
        channel.withdrawn[tx.participant] = tx.total
        self.log.append(LogWithdraw(at, channel.a, channel.b, tx.participant, tx.total))
        return None

    def finish(self) -> None:
        """Unlock every retained amount by the registry (anyone may, after settle)."""
        for channel in self.channels.values():
            for sender, retained in list(channel.retained.items()):
                receiver = channel.other(sender)
                locks = self.locks_of(channel.proof(sender).locksroot)
                to_receiver, to_sender = unlock_split(locks, self.registry, TokenAmount(retained))
                channel.paid[receiver] += to_receiver
                channel.paid[sender] += to_sender
            channel.retained = {}


# --- watchers ---------------------------------------------------------------------------------


@dataclass
class Held:
    request: DelegateUpdate
    updated: bool = False
    done: bool = False
    outcome: str = ""


@dataclass
class Watcher:
    """A watch service: a delegate for its clients, a gateway for anyone."""

    key: PrivateKey
    address: Address
    sees_chain: bool = True
    lazy: bool = False
    """Accepts delegations (and acknowledges them with its view), never acts on them."""
    drops: bool = False
    """As a gateway, acknowledges what it is handed and never sends it."""
    held: dict[tuple[Address, Address], Held] = field(default_factory=dict)
    """By (closer, client): the newest delegation held."""
    used_keys: set[str] = field(default_factory=set)
    blind: list[list[int | None]] = field(default_factory=list)
    """Chain-time intervals [start, end) it did not see the chain (end None: still)."""
    lazy_since: int | None = None
    refusals: list[Reason] = field(default_factory=list)

    def view_time(self, now: int) -> Timestamp | None:
        return Timestamp(now) if self.sees_chain else None

    def blind_during(self, start: int, end: int) -> bool:
        return any(
            begin is not None and begin <= end and (stop is None or stop > start)
            for begin, stop in self.blind
        )

    def lazy_by(self, time: int) -> bool:
        return self.lazy_since is not None and self.lazy_since <= time


# --- nodes ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DelegateView:
    view_time: int
    nonce: int
    own_nonce: int
    delegate: Address


@dataclass
class Entry:
    """One transaction of a node's schedule (the runtime's `work`, `chain_bridge`)."""

    effect: ContractWork
    sent_at: int | None = None
    """The node's clock when it reached the chain: sent by the node, or broadcast by a
    gateway it handed it to (None: not yet, or only handed to a gateway that dropped it)."""
    relayed_to: list[Address] = field(default_factory=list)
    landed: bool | None = None
    done: bool = False
    """The node knows the outcome (it sees the chain, or a gateway's answer came back)."""


@dataclass(frozen=True, slots=True)
class Miss:
    """A deadline the node's core announced that passed while the node was blind and
    nobody had sent what it asked for: `delegated` ones were the delegate's to keep."""

    kind: DeadlineKind
    partner: Address | None
    nonce: int
    amount: int
    secrethash: SecretHash | None
    deadline: int
    delegated: bool
    delegate: Address | None
    noticed_at: int
    announced_late: bool
    """The item was already past due when first seen (e.g. value accepted on a delegate's
    view of an older proof, the window then computed from the node's own view)."""


@dataclass
class Host:
    """What the runtime around one core knows and does."""

    address: Address
    honest: bool
    delegate: Address | None
    sees_chain: bool = True
    view_time: int | None = None
    cursor: int = 0
    mesh: bool = True
    """A mesh path to the watchers (and back) exists."""
    views: dict[ChannelKey, DelegateView] = field(default_factory=dict)
    outbox: list[Entry] = field(default_factory=list)
    closes: dict[ChannelKey, Timestamp] = field(default_factory=dict)
    misses: list[Miss] = field(default_factory=list)
    miss_keys: set[tuple[object, ...]] = field(default_factory=set)
    first_seen: dict[tuple[object, ...], int] = field(default_factory=dict)
    """When an announced item (kind, partner, nonce, secrethash) was first computed."""
    signatures: dict[tuple[ChannelKey, int], Signature] = field(default_factory=dict)
    book: BeaconBook | None = None
    """The watchers it heard beacons of (`beacons.BeaconBook`)."""

    def work(self) -> list[ContractWork]:
        return [entry.effect for entry in self.outbox if not entry.done]


def _matches(entry: Entry, item: Deadline) -> bool:
    effect = entry.effect
    match item.kind:
        case DeadlineKind.REGISTER_SECRET:
            return (
                isinstance(effect, ContractSendSecretRegister)
                and secrethash_of(effect.secret) == item.secrethash
            )
        case DeadlineKind.UPDATE:
            return (
                isinstance(effect, ContractSendUpdate)
                and effect.partner == item.partner
                and effect.proof.nonce == item.nonce
            )
        case DeadlineKind.WITHDRAW:
            return (
                isinstance(effect, ContractSendWithdraw)
                and effect.partner == item.partner
                and effect.withdraw.total_withdraw == item.amount
            )
        case _:
            return False


@dataclass
class OfflineNetwork(Network):
    """Cores, their runtimes' chain-facing parts, watchers and the chain (see the module)."""

    hosts: dict[Address, Host] = field(default_factory=dict)
    watchers: dict[Address, Watcher] = field(default_factory=dict)
    chain: Chain | None = None
    roots: dict[bytes, tuple[Lock, ...]] = field(default_factory=dict)
    history: dict[tuple[Address, Address], list[PartnerProof]] = field(default_factory=dict)
    """Dishonest node and partner: every proof of the partner it held (to close with)."""
    broken: set[frozenset[Address]] = field(default_factory=set)
    """Pairs whose channel was closed on chain, or where a dishonest node withheld."""
    tainted: set[SecretHash] = field(default_factory=set)
    """Secrethashes of locks that were pending in a broken pair."""
    requests: itertools.count[int] = field(default_factory=itertools.count)
    syncing: bool = False
    auto_relay: bool = True
    """Blind nodes hand what they could not send to a gateway they heard of, at once (the
    delegation client); otherwise only when the test says so (`relay`)."""
    learned: dict[Address, set[SecretHash]] = field(default_factory=dict)
    """By node: the secrets it learned off chain (from a peer or its own payment)."""

    @classmethod
    def build(
        cls,
        size: int,
        settings: Settings,
        *,
        honest: list[bool],
        delegates: list[int | None],
        offsets: list[int],
        watchers: int,
        inclusion: int,
        auto_relay: bool = True,
    ) -> OfflineNetwork:
        net = cls.create(size, settings)
        net.auto_relay = auto_relay
        keys = [make_key(100 + i) for i in range(watchers)]
        for key in keys:
            address = address_from_private_key(key)
            net.watchers[address] = Watcher(key, address)
        watcher_addresses = list(net.watchers)
        for index, address in enumerate(net.addresses):
            choice = delegates[index]
            delegate = None if choice is None or not honest[index] else watcher_addresses[choice]
            host = Host(address, honest[index], delegate)
            host.book = BeaconBook(CHAIN_ID, address)
            net.hosts[address] = host
            net.offsets[address] = offsets[index]
        net.chain = Chain(inclusion, net.now, net.locks_of)
        return net

    # --- plumbing ----------------------------------------------------------------------------

    @property
    def ledger(self) -> Chain:
        assert self.chain is not None
        return self.chain

    def locks_of(self, root: bytes) -> tuple[Lock, ...]:
        if root in (bytes(32), EMPTY_LOCKSROOT):
            return ()
        return self.roots[root]

    def open_channel(self, a: Address, b: Address, deposit: int, window: int) -> None:
        self.open(a, b, deposit, deposit, settle_window=window)
        self.ledger.open(a, b, deposit, deposit, window)

    def route(self, address: Address, effect: Effect) -> None:
        if isinstance(effect, ContractWork):
            self.hosts[address].outbox.append(Entry(effect))
        else:
            super().route(address, effect)

    def apply(self, address: Address, event: Input) -> list[Effect]:
        before = self.states[address].secrets
        effects = super().apply(address, event)
        after = self.states[address].secrets
        if after is not before and not isinstance(event, ChainSecretRegistered):
            learned = self.learned.setdefault(address, set())
            learned.update(secrethash for secrethash in after if secrethash not in before)
        self._after(address)
        return effects

    def _after(self, address: Address) -> None:
        host = self.hosts[address]
        state = self.states[address]
        for (_, partner), channel in state.channels.items():
            for end in (channel.our, channel.partner):
                if end.locks:
                    self.roots.setdefault(end.locksroot, end.locks)
            if frozenset((address, partner)) in self.broken:
                self.tainted.update(lock.secrethash for lock in channel.our.locks)
                self.tainted.update(lock.secrethash for lock in channel.partner.locks)
            if not host.honest:
                self._remember_proof(address, partner, channel)
        if host.sees_chain:
            self.flush(address)
        if host.honest:
            self.announce(address)
        if not self.syncing:
            self.syncing = True
            try:
                self.sync_delegate(address)
                self.feed_view(address)
            finally:
                self.syncing = False

    def _remember_proof(self, address: Address, partner: Address, channel: ChannelState) -> None:
        end = channel.partner
        if end.signature is None:
            return
        proofs = self.history.setdefault((address, partner), [])
        if proofs and proofs[-1].nonce == end.nonce:
            return
        proofs.append(
            PartnerProof(
                end.nonce,
                end.transferred,
                end.locked,
                end.locks,
                end.additional_hash,
                end.signature,
            )
        )

    # --- the runtime's view of the chain (OfflineMonitor) ------------------------------------

    def feed_view(self, address: Address) -> None:
        """Tell the core what the node sees, when that changed (`_update_core`)."""
        host = self.hosts[address]
        state = self.states[address]
        view: Timestamp | None = None
        delegated: dict[ChannelKey, Timestamp] = {}
        if not host.sees_chain:
            assert host.view_time is not None
            view = Timestamp(host.view_time)
            for key, seen in host.views.items():
                channel = state.channels.get(key)
                if channel is None or channel.partner.nonce > seen.nonce:
                    continue  # the delegate holds an older proof than ours: no cover
                delegated[key] = Timestamp(seen.view_time)
        if state.view_time == view and dict(state.delegated) == delegated:
            return
        self.apply(address, ActionSetChainView(self.clock(address), view, delegated))

    # --- the delegation client -----------------------------------------------------------------

    def sync_delegate(self, address: Address) -> None:
        """Send the delegate every channel's newest proofs it has not acknowledged (the
        client does so after every commit, over the mesh)."""
        host = self.hosts[address]
        if host.delegate is None or not host.mesh:
            return
        watcher = self.watchers[host.delegate]
        for key, channel in self.states[address].channels.items():
            if not client.delegable(channel):
                continue
            seen = host.views.get(key)
            rank = (channel.partner.nonce, channel.our.nonce)
            if seen is not None and (seen.nonce, seen.own_nonce) >= rank:
                continue
            signature = host.signatures.get((key, channel.partner.nonce))
            if signature is None:
                signature = client.delegation_signature(
                    self.keys[address], address, channel, watcher.address, REWARD
                )
                host.signatures[(key, channel.partner.nonce)] = signature
            request = client.delegate_update(
                channel,
                own=address,
                request_id=next(self.requests).to_bytes(8, "big"),
                reward=REWARD,
                signature=signature,
            )
            self.roots.setdefault(request.closer_balance.locksroot, channel.partner.locks)
            verdict = self.judge(watcher, request)
            if verdict.accepted:
                host.views[key] = DelegateView(
                    self.now, request.nonce, request.own_nonce, watcher.address
                )
            else:
                watcher.refusals.append(verdict.reason)

    def judge(self, watcher: Watcher, request: DelegateUpdate) -> rules.Verdict:
        side = (request.closer, request.non_closer)
        held = watcher.held.get(side)
        verdict = rules.judge_delegate_update(
            request,
            chain_id=CHAIN_ID,
            watcher=watcher.address,
            min_reward=REWARD,
            view_time=watcher.view_time(self.now),
            now=Timestamp(self.now),
            facts=self.ledger.facts(request.closer, request.non_closer),
            held=None if held is None else held.request.rank,
        )
        if verdict.accepted and (held is None or held.request.rank != request.rank):
            watcher.held[side] = Held(request)
        return verdict

    def beacon(self, address: Address) -> None:
        """A watcher that sees the chain sends its signed beacon (through the real wire
        bytes) to every node with a mesh path; each keeps it if its `BeaconBook` does, and
        a client counts its delegate's view for the proofs it acknowledged (W-10)."""
        watcher = self.watchers[address]
        if not watcher.sees_chain:
            return
        unsigned = ChainBeacon(
            CHAIN_ID,
            address,
            Timestamp(self.now),
            TokenAmount(REWARD),
            Service.DELEGATE | Service.GATEWAY,
            self.now * 1000,
            UNSIGNED,
            3,
        )
        data = wire.encode(unsigned.signed(watcher.key))
        for host in self.hosts.values():
            if not host.mesh or host.book is None:
                continue
            beacon = wire.decode(data)
            assert isinstance(beacon, ChainBeacon)
            if not host.book.accept(beacon, self.clock(host.address) * 1000).accepted:
                continue
            if host.delegate != address:
                continue
            for key, seen in list(host.views.items()):
                held = watcher.held.get((key[1], host.address))
                if held is not None and held.request.nonce == seen.nonce:
                    host.views[key] = DelegateView(
                        beacon.view_time, seen.nonce, seen.own_nonce, seen.delegate
                    )
            self.feed_view(host.address)

    def gateways(self, address: Address) -> list[Address]:
        """Whom a blind node may hand its transactions to: the watchers it heard beacons
        of (the one seeing furthest first), then its delegate."""
        host = self.hosts[address]
        found = [] if host.book is None else host.book.fresh(self.clock(address) * 1000)
        picks = [beacon.watcher for beacon in found]
        if host.delegate is not None and host.delegate not in picks:
            picks.append(host.delegate)
        return picks

    # --- the watchers' work (watcher.py, with plan.py deciding) ------------------------------

    def watch(self) -> None:
        chain = self.ledger
        for watcher in self.watchers.values():
            if not watcher.sees_chain or watcher.lazy:
                continue
            for (closer, client_address), held in list(watcher.held.items()):
                if held.done:
                    continue
                request = held.request
                facts = chain.facts(closer, client_address)
                step = plan.plan_update(
                    request,
                    facts,
                    Timestamp(self.now),
                    watcher=watcher.address,
                    updated=held.updated,
                )
                match step:
                    case plan.Wait():
                        pass
                    case plan.Finish():
                        held.done = True
                        held.outcome = f"{step.action.name} {step.status.name}: {step.text}"
                    case plan.Submit(action=Action.UPDATE):
                        key = f"update:{closer.hex()}:{client_address.hex()}:{request.nonce}"
                        if key in watcher.used_keys:
                            continue
                        watcher.used_keys.add(key)
                        tx = TxUpdate(
                            watcher.address,
                            closer,
                            client_address,
                            request.nonce,
                            request.closer_balance,
                            request.additional_hash,
                            request.closing_signature,
                            watcher.address,
                            request.reward,
                            request.delegation_signature,
                        )
                        chain.submit(tx, self._updated(held))
                    case plan.Submit(action=Action.SETTLE):
                        key = f"settle:{closer.hex()}:{client_address.hex()}"
                        if key not in watcher.used_keys:
                            watcher.used_keys.add(key)
                            chain.submit(TxSettle(closer, client_address))
                    case plan.Submit():
                        raise AssertionError(f"unexpected plan for a delegation: {step}")

    @staticmethod
    def _updated(held: Held) -> Outcome:
        def outcome(ok: bool, _: str) -> None:
            if ok:
                held.updated = True

        return outcome

    # --- seeing the chain ----------------------------------------------------------------------

    def lose_chain(self, address: Address) -> None:
        host = self.hosts[address]
        if not host.sees_chain:
            return
        host.sees_chain = False
        host.view_time = self.now  # every log up to now was applied
        self.feed_view(address)

    def regain_chain(self, address: Address) -> None:
        host = self.hosts[address]
        if host.sees_chain:
            return
        self.check_overdue(address)
        host.sees_chain = True
        host.view_time = None
        for entry in host.outbox:
            if entry.landed is not None:
                entry.done = True
        self.feed_view(address)
        self.follow(address)
        self.flush(address)

    def follow(self, address: Address) -> None:
        """A node that sees the chain applies every log it has not seen yet."""
        host = self.hosts[address]
        log = self.ledger.log
        while host.sees_chain and host.cursor < len(log):
            entry = log[host.cursor]
            host.cursor += 1
            if isinstance(entry, LogClosed) and address in (entry.a, entry.b):
                partner = entry.b if address == entry.a else entry.a
                host.closes[(TOKEN_NETWORK, partner)] = Timestamp(entry.deadline)
            for event in log_inputs(entry, address, self.clock(address)):
                self.apply(address, event)

    def flush(self, address: Address) -> None:
        """Send every transaction the node has not sent yet, earliest limit first, unless
        the chain shows it is no longer needed (chain_bridge, O-5)."""
        host = self.hosts[address]
        waiting = [e for e in host.outbox if not e.done and e.sent_at is None]
        if not waiting:
            return

        def limit(entry: Entry) -> int:
            closes = host.closes.get((TOKEN_NETWORK, _partner(entry.effect, address)))
            found = send_deadline(entry.effect, closes)
            return NO_DEADLINE if found is None else found

        for entry in sorted(waiting, key=limit):
            effect = entry.effect
            if (
                isinstance(effect, ContractSendSecretRegister)
                and self.ledger.registered_at(effect.secret) is not None
            ):
                entry.done = True  # registered already: provably unnecessary
                continue
            entry.sent_at = self.clock(address)
            self.ledger.submit(self.transaction(address, effect), self._landed(address, entry))

    def _landed(self, address: Address, entry: Entry) -> Outcome:
        def outcome(ok: bool, _: str) -> None:
            entry.landed = ok
            host = self.hosts[address]
            if host.sees_chain or host.mesh:
                entry.done = True

        return outcome

    def transaction(self, address: Address, effect: ContractWork) -> Tx:
        match effect:
            case ContractSendSecretRegister():
                return TxRegister(effect.secret)
            case ContractSendClose():
                if effect.proof is not None:
                    self.roots.setdefault(locksroot(effect.proof.locks), effect.proof.locks)
                return TxClose(address, effect.partner, effect.proof)
            case ContractSendUpdate():
                proof = effect.proof
                preimage = BalancePreimage.of(proof.transferred, proof.locks)
                self.roots.setdefault(preimage.locksroot, proof.locks)
                return TxUpdate(
                    address,
                    effect.partner,
                    address,
                    proof.nonce,
                    preimage,
                    proof.additional_hash,
                    proof.signature,
                )
            case ContractSendWithdraw():
                withdraw = effect.withdraw
                return TxWithdraw(
                    address, effect.partner, withdraw.total_withdraw, withdraw.expiration
                )
            case ContractSendUnlock():
                return TxNothing()
            case ContractSendCoopSettle():
                raise AssertionError("the model makes no cooperative settle")

    # --- gateways ------------------------------------------------------------------------------

    def relay(self, address: Address, gateway: Address) -> None:
        """A blind node hands what it could not send to a gateway over the mesh."""
        host = self.hosts[address]
        watcher = self.watchers[gateway]
        if host.sees_chain or not host.mesh:
            return
        now = Timestamp(self.now)
        for entry in host.outbox:
            if entry.done or entry.sent_at is not None:
                continue
            effect = entry.effect
            request_id = next(self.requests).to_bytes(8, "big")
            step: plan.Step
            if isinstance(effect, ContractSendSecretRegister):
                registration = RegisterSecret(request_id, effect.secret, effect.deadline)
                verdict = rules.judge_register_secret(
                    registration, view_time=watcher.view_time(self.now), now=now
                )
                registered = self.ledger.registered_at(effect.secret)
                step = plan.plan_register_secret(
                    registration,
                    None if registered is None else Timestamp(registered),
                    now,
                    submitted=False,
                )
            else:
                closes = host.closes.get((TOKEN_NETWORK, _partner(effect, address)))
                found = send_deadline(effect, closes)
                raw = RawTransaction(request_id, found or NO_DEADLINE, repr(effect).encode()[:64])
                verdict = rules.judge_raw_transaction(
                    raw, view_time=watcher.view_time(self.now), now=now
                )
                step = plan.plan_raw_transaction(raw, None, now)
            if not verdict.accepted:
                continue
            entry.relayed_to.append(gateway)
            if watcher.drops:
                continue
            if isinstance(step, plan.Finish):
                # Registered already (in time: nothing to send; too late: nothing to do).
                if step.status is not OutcomeStatus.FAILED:
                    entry.sent_at = self.clock(address)
                entry.landed = step.status is not OutcomeStatus.FAILED
                entry.done = True
            elif isinstance(step, plan.Submit):
                entry.sent_at = self.clock(address)
                self.ledger.submit(self.transaction(address, effect), self._landed(address, entry))

    # --- time ----------------------------------------------------------------------------------

    def advance(self, seconds: int, tick_every: int | None = None, mine: bool = False) -> None:
        """Let `seconds` of chain time pass: every core ticks every `TICK` seconds, the
        chain includes what is due at its own time, watchers and followers act."""
        del tick_every, mine  # the chain mines on its own here
        target = self.now + seconds
        while self.now < target:
            upcoming = min(target, self.now + TICK)
            due = self.ledger.next_inclusion()
            if due is not None and self.now < due < upcoming:
                upcoming = due
            self.step(Timestamp(upcoming))

    def step(self, when: Timestamp) -> None:
        beacons = when // BEACON_EVERY > self.now // BEACON_EVERY
        self.now = when
        chain = self.ledger
        chain.now = when
        for address in self.addresses:
            self.check_overdue(address)
        chain.mine()
        for address in self.addresses:
            self.follow(address)
        self.watch()
        for channel in chain.channels.values():
            deadline = channel.deadline
            if (
                channel.stage is Stage.CLOSED
                and deadline is not None
                and when > deadline
                and not chain.settle_pending(channel)
            ):
                chain.submit(TxSettle(channel.a, channel.b))  # anyone's bridge settles
        for address in self.addresses:
            self.apply(address, Tick(self.clock(address)))
        if beacons:
            for watcher in self.watchers:
                self.beacon(watcher)
        if self.auto_relay:
            for address, host in self.hosts.items():
                if host.honest and not host.sees_chain and host.mesh:
                    for gateway in self.gateways(address):
                        self.relay(address, gateway)

    # --- deadlines the node announced ----------------------------------------------------------

    def announced(self, address: Address) -> list[Deadline]:
        host = self.hosts[address]
        return deadlines(self.states[address], self.clock(address), host.work(), host.closes)

    def announce(self, address: Address) -> None:
        """Note when each deadline the core announces first appeared (after every input)."""
        host = self.hosts[address]
        now = self.clock(address)
        for item in self.announced(address):
            ident = (item.kind, item.partner, item.nonce, item.secrethash, item.deadline)
            host.first_seen.setdefault(ident, now)

    def check_overdue(self, address: Address) -> None:
        """Record every announced deadline that has passed before what it asked for
        reached the chain. While the node sees the chain it acts on every deadline at
        once, so only one announced too late counts, a secret learned after its
        registration deadline: any other would be the core's failure, not a missed one
        (and a close it learns of too late, the missed horizon's)."""
        host = self.hosts[address]
        if not host.honest:
            return
        now = self.clock(address)
        for item in self.announced(address):
            ident = (item.kind, item.partner, item.nonce, item.secrethash, item.deadline)
            first = host.first_seen.setdefault(ident, now)
            if item.deadline is None or item.deadline >= now:
                continue
            if host.sees_chain and (
                first <= item.deadline or item.kind is not DeadlineKind.REGISTER_SECRET
            ):
                # An update learned of too late was the horizon's to cover, not its own.
                continue
            if any(
                entry.sent_at is not None and entry.sent_at <= item.deadline
                for entry in host.outbox
                if _matches(entry, item)
            ):
                continue  # it reached the chain in time (sent by the node or a gateway)
            key = (*ident, item.delegated)
            if key in host.miss_keys:
                continue
            host.miss_keys.add(key)
            delegate = None
            if item.delegated and item.partner is not None:
                delegate = host.views[(item.token_network, item.partner)].delegate
            host.misses.append(
                Miss(
                    item.kind,
                    item.partner,
                    item.nonce,
                    item.amount,
                    item.secrethash,
                    item.deadline,
                    item.delegated,
                    delegate,
                    now,
                    first > item.deadline,
                )
            )

    def next_deadline(self, address: Address) -> Deadline | None:
        """The earliest announced deadline not yet passed (by the node's clock)."""
        now = self.clock(address)
        for item in self.announced(address):
            if item.deadline is not None and item.deadline >= now:
                return item
        return None


def _partner(effect: ContractWork, address: Address) -> Address:
    if isinstance(effect, ContractSendSecretRegister):
        return address
    return effect.partner
