"""Protocol cores under a chain that disappears and returns, with delegates, gateways and
dishonest partners (docs/offline.md; docs/spec.md §12, §14, §15).

Hypothesis drives the cores of a diamond of four nodes (`tests/lib/offline_world.py`): it
pays (mediated and direct), delivers, drops, duplicates and reorders messages, crashes
and restores nodes, lets time pass (every node's clock up to `clock_tolerance` behind the
chain's; transactions included up to `submit_margin` after they are sent), and makes
nodes lose the chain and regain it (at any time, or exactly at an announced deadline, or
just after it). Two watchers serve the honest nodes: as delegates they hold each node's
newest partner proofs with a real `Delegation` and correct a close with an older proof
(`rules` + `plan`), unless a rule makes them lazy or blind; as gateways they send what a
blind node hands them over the mesh, unless a rule makes them drop it. Dishonest nodes
run the same core but close their channels with an old proof of their partner while the
partner is blind, and withhold messages (an unlock the partner is owed, say); honest
nodes never close.

Invariants: I-T1..I-T4 in every view at every step, and no invalid message between
honest nodes; after the network is quiet and every window is over: I-T5 (every payment
ended once; its target paid iff it succeeded, for payments no close or withholding
touched), I-T6 (the tokens of an honest node none of whose channels was broken add up to
its events; a mediation fee below zero only with a missed registration deadline), I-T7
for channels between honest nodes; and O-4: an honest node whose channel a dishonest
partner closed ends with at least what its own state says (the partner's newest proof,
its claimable locks) less the reward its delegate took, unless a deadline its core
announced (`offline.deadlines`) passed before it, a delegate or a gateway reached the
chain: then the loss is at most what the missed deadlines covered, and a delegate that
missed one had a reason (lazy, blind during the window, or not holding that proof).
"""

from __future__ import annotations

import pickle
from collections import Counter
from collections.abc import Callable
from typing import Final

import pytest
from hypothesis import event as hypothesis_event
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from offchain.protocol.channel import ChannelPhase, balance, returned_amount
from offchain.protocol.fees import FeeSchedule
from offchain.protocol.locks import Lock
from offchain.protocol.messages import BatchEntry
from offchain.protocol.offline import DeadlineKind
from offchain.protocol.settlement import ParticipantTotals, settlement_payout
from offchain.protocol.state import Settings
from offchain.protocol.transitions import (
    ActionPay,
    ActionPayDirect,
    ActionWithdraw,
    EventDirectPaymentSent,
    EventInvalidReceived,
    EventMediated,
    EventPaymentFailed,
    EventPaymentReceived,
    EventPaymentSucceeded,
)
from offchain.protocol.types import Address, Timestamp, TokenAmount
from offchain.watch.facts import Stage
from tests.lib.network import TOKEN_NETWORK, Flight, secret_for
from tests.lib.offline_world import ChainChannel, Miss, OfflineNetwork, TxClose, Watcher

DEPOSIT = 500
WINDOW = 1200
"""The channels' settle window: long enough for a lock (600 s) and the offline margins
(5 + 30 + 120 s), short enough that hypothesis crosses it often."""
SETTINGS = Settings(fees=FeeSchedule(flat=1, proportional_ppm=10_000))
TOLERANCE = SETTINGS.clock_tolerance
MARGIN = SETTINGS.submit_margin
MAX_SIZE: Final = 5
WATCHERS: Final = 2

nodes_st = st.integers(0, MAX_SIZE - 1)
"""A node by index (modulo the machine's size)."""


def event(text: str) -> None:
    """Count `text` in hypothesis's statistics (nothing when a regression replays steps)."""
    if currently_in_test_context():
        hypothesis_event(text)


watchers_st = st.integers(0, WATCHERS - 1)


class OfflineMachine(RuleBasedStateMachine):
    """Cores, a chain some of them lose, watchers, and dishonest partners: a diamond."""

    SIZE = 4
    EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 3), (2, 3), (1, 2))

    def __init__(self) -> None:
        super().__init__()
        self.world: OfflineNetwork | None = None
        self.later: list[Flight] = []
        self.payments: dict[int, tuple[Address, Address, int]] = {}
        self.next_id = 1
        self.seen: dict[tuple[Address, Address, str], tuple[int, int]] = {}
        self.checked: dict[Address, int] = {}

    # --- set-up ---------------------------------------------------------------------------

    @initialize(
        dishonest=st.sets(nodes_st, min_size=1, max_size=2),
        delegates=st.lists(st.one_of(st.none(), watchers_st), min_size=MAX_SIZE, max_size=MAX_SIZE),
        offsets=st.lists(
            st.one_of(st.just(-TOLERANCE), st.integers(-TOLERANCE, 0)),
            min_size=MAX_SIZE,
            max_size=MAX_SIZE,
        ),
        ahead=st.booleans(),
        inclusion=st.sampled_from([MARGIN, 1]),
        auto_relay=st.booleans(),
    )
    def set_up(
        self,
        dishonest: set[int],
        delegates: list[int | None],
        offsets: list[int],
        inclusion: int,
        ahead: bool = False,
        auto_relay: bool = True,
    ) -> None:
        """Who is dishonest, who delegates to which watcher, every node's clock (behind the
        chain's by up to the tolerance, or with `ahead` ahead of it by up to the tolerance:
        any two within the tolerance, as the protocol assumes), and how long the chain
        takes to include a transaction (at most `submit_margin`); with `auto_relay`,
        blind nodes hand their transactions to a gateway at once (as the delegation client
        does), otherwise only when the `relay` rule says so."""
        size = self.SIZE
        shift = TOLERANCE if ahead else 0
        world = OfflineNetwork.build(
            size,
            SETTINGS,
            honest=[index not in dishonest for index in range(size)],
            delegates=delegates[:size],
            offsets=[offset + shift for offset in offsets[:size]],
            watchers=WATCHERS,
            inclusion=inclusion,
            auto_relay=auto_relay,
        )
        nodes = world.addresses
        for i, j in self.EDGES:
            world.open_channel(nodes[i], nodes[j], DEPOSIT, WINDOW)
        world.publish_graph()
        self.world = world
        event(f"dishonest: {len(dishonest)}, inclusion: {inclusion}")

    @property
    def w(self) -> OfflineNetwork:
        assert self.world is not None
        return self.world

    def honest(self, address: Address) -> bool:
        return self.w.hosts[address].honest

    def node(self, index: int) -> Address:
        return self.w.addresses[index % self.SIZE]

    def watcher_address(self, index: int) -> Address:
        return list(self.w.watchers)[index]

    # --- payments and the transport (as in the transfers test) ---------------------------------

    @rule(data=st.data(), amounts=st.lists(st.integers(1, 400), min_size=1, max_size=3))
    def pay(self, data: st.DataObject, amounts: list[int]) -> None:
        nodes = self.w.addresses
        for amount in amounts:
            payer = data.draw(st.sampled_from(nodes))
            target = data.draw(st.sampled_from([n for n in nodes if n != payer]))
            payment_id = self.next_id
            self.next_id += 1
            secret, secrethash = secret_for(payment_id)
            self.payments[payment_id] = (payer, target, amount)
            self.w.apply(
                payer,
                ActionPay(
                    self.w.clock(payer),
                    payment_id,
                    TOKEN_NETWORK,
                    target,
                    TokenAmount(amount),
                    secrethash,
                    secret,
                ),
            )

    @rule(data=st.data(), amounts=st.lists(st.integers(1, 60), min_size=1, max_size=3))
    def pay_direct(self, data: st.DataObject, amounts: list[int]) -> None:
        a, b = data.draw(st.sampled_from(self.w.edges))
        payer, partner = data.draw(st.sampled_from([(a, b), (b, a)]))
        entries = []
        for amount in amounts:
            entries.append(BatchEntry(self.next_id, TokenAmount(amount)))
            self.next_id += 1
        self.w.apply(
            payer, ActionPayDirect(self.w.clock(payer), TOKEN_NETWORK, partner, tuple(entries))
        )

    @precondition(lambda self: self.world is not None and self.world.flights)
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.w.flights) - 1))  # any order
        self.w.deliver(index)

    @precondition(lambda self: self.world is not None and self.world.flights)
    @rule(steps=st.integers(1, 30))
    def deliver_in_order(self, steps: int) -> None:
        for _ in range(min(steps, len(self.w.flights))):
            self.w.deliver(0)

    @precondition(lambda self: self.world is not None and self.world.flights)
    @rule(data=st.data(), what=st.sampled_from(["duplicate", "drop", "withhold"]))
    def disturb(self, data: st.DataObject, what: str) -> None:
        """The transport repeats a message, or loses it (it retransmits after a while); or a
        dishonest node never delivers one of its messages to an honest partner (the unlock
        it owes, say)."""
        flights = self.w.flights
        if what == "withhold":
            indices = [
                i
                for i, flight in enumerate(flights)
                if not self.honest(flight.sender) and self.honest(flight.recipient)
            ]
            if not indices:
                return
            flight = flights.pop(data.draw(st.sampled_from(indices)))
            self.w.broken.add(frozenset((flight.sender, flight.recipient)))
            return
        index = data.draw(st.integers(0, len(flights) - 1))
        if what == "duplicate":
            flights.append(flights[index])
        else:
            self.later.append(flights.pop(index))

    @rule(index=nodes_st)
    def crash_and_restore(self, index: int) -> None:
        # Every transition is persisted before its effects run: a restart resumes from it.
        node = self.node(index)
        self.w.states[node] = pickle.loads(pickle.dumps(self.w.states[node]))

    @rule(seconds=st.sampled_from([1, 10, 45, 120, 300, 600, 1100]))
    def advance(self, seconds: int) -> None:
        self.w.flights += self.later
        self.later = []
        self.w.advance(seconds)
        self.w.publish_graph()  # capacities as gossip would have spread them

    @rule(data=st.data(), amount=st.integers(1, 200), seconds=st.sampled_from([30, 120]))
    def withdraw(self, data: st.DataObject, amount: int, seconds: int) -> None:
        # Only where nothing is in flight between the two: a request that overtakes the
        # requester's earlier proofs is a known hole of its own (WithdrawRequest carries no
        # nonce; tests/unit/test_node_cosigning.py, strict xfails), not an offline one.
        idle = [
            (a, b)
            for a, b in self.w.edges
            if not any(
                {flight.sender, flight.recipient} == {a, b}
                for flight in self.w.flights + self.later
            )
        ]
        if not idle:
            return
        a, b = data.draw(st.sampled_from(idle))
        me, partner = data.draw(st.sampled_from([(a, b), (b, a)]))
        mine = self.w.states[me].channels[(TOKEN_NETWORK, partner)].our
        total = TokenAmount(mine.withdrawn + amount)
        now = self.w.clock(me)
        expiration = Timestamp(now + seconds)
        self.w.apply(me, ActionWithdraw(now, TOKEN_NETWORK, partner, total, expiration))

    # --- the chain comes and goes ------------------------------------------------------------

    @rule(
        index=nodes_st,
        what=st.sampled_from(["lose", "regain", "regain at deadline", "regain late", "mesh"]),
    )
    def node_chain(self, index: int, what: str) -> None:
        """A node loses the chain or regains it (at any time, exactly at its next announced
        deadline by its own clock, or one second after it), or its mesh path to the
        watchers comes or goes."""
        node = self.node(index)
        host = self.w.hosts[node]
        if what == "lose":
            self.w.lose_chain(node)
        elif what == "regain":
            self.w.regain_chain(node)
        elif what == "mesh":
            host.mesh = not host.mesh
        elif not host.sees_chain:
            item = self.w.next_deadline(node)
            if item is None or item.deadline is None:
                return
            late = what == "regain late"
            wait = item.deadline + int(late) - self.w.clock(node)
            if wait > 3 * WINDOW:
                return
            self.w.flights += self.later
            self.later = []
            self.w.advance(wait)
            event(f"regain at a deadline ({item.kind.value}, late: {late})")
            self.w.regain_chain(node)

    @rule(
        index=watchers_st,
        what=st.sampled_from(["lose", "regain", "lazy", "drops", "delivers", "beacon"]),
    )
    def watcher(self, index: int, what: str) -> None:
        """A watcher loses the chain or regains it, turns lazy (for good), drops or sends
        again what blind nodes hand it, or beacons its view to its clients."""
        address = self.watcher_address(index)
        watcher = self.w.watchers[address]
        if what == "beacon":
            self.w.beacon(address)
        elif what == "lazy":
            if not watcher.lazy:
                watcher.lazy = True
                watcher.lazy_since = self.w.now
        elif what in ("drops", "delivers"):
            watcher.drops = what == "drops"
        else:
            self._watcher_sees(watcher, what == "regain")

    def _watcher_sees(self, watcher: Watcher, sees: bool) -> None:
        if watcher.sees_chain == sees:
            return
        watcher.sees_chain = sees
        if sees:
            watcher.blind[-1][1] = self.w.now
        else:
            watcher.blind.append([self.w.now, None])

    @rule(index=nodes_st, gateway=watchers_st)
    def relay(self, index: int, gateway: int) -> None:
        """A blind node hands what it could not send to a gateway over the mesh."""
        self.w.relay(self.node(index), self.watcher_address(gateway))

    # --- dishonest partners ----------------------------------------------------------------------

    def _closable(self) -> list[tuple[Address, Address]]:
        pairs = []
        for a, b in self.w.edges:
            channel = self.w.ledger.channel(a, b)
            assert channel is not None
            if channel.stage is not Stage.OPENED or self._closing(channel):
                continue
            for cheat, victim in ((a, b), (b, a)):
                if (
                    not self.honest(cheat)
                    and self.honest(victim)
                    and self.w.hosts[cheat].sees_chain
                ):
                    pairs.append((cheat, victim))
        return pairs

    def _closing(self, channel: ChainChannel) -> bool:
        pair = {channel.a, channel.b}
        return any(
            isinstance(tx, TxClose) and {tx.closer, tx.partner} == pair
            for _, _, tx, _ in self.w.ledger.pending
        )

    @rule(data=st.data(), blind_first=st.booleans())
    def stale_close(self, data: st.DataObject, blind_first: bool) -> None:
        """A dishonest node closes with an old proof of its honest partner, at the worst
        moment: while the partner is blind (with `blind_first`, just after it lost the
        chain, so that the close is as early as its view allows)."""
        pairs = self._closable()
        if not pairs:
            return
        blind = [pair for pair in pairs if not self.w.hosts[pair[1]].sees_chain]
        cheat, victim = data.draw(st.sampled_from(blind or pairs))
        if blind_first:
            self.w.lose_chain(victim)
        proofs = self.w.history.get((cheat, victim), [])
        proof = data.draw(st.sampled_from([None, *proofs])) if proofs else None
        self.w.ledger.submit(TxClose(cheat, victim, proof))
        self.w.broken.add(frozenset((cheat, victim)))
        event(f"stale close (victim blind: {not self.w.hosts[victim].sees_chain})")

    @rule(
        data=st.data(),
        amount=st.integers(1, 100),
        then=st.sampled_from(["at horizon", "1 s late", "2 s late", "delegate", "stay blind"]),
    )
    def attack(self, data: st.DataObject, amount: int, then: str) -> None:
        """The whole attack at once: a dishonest node pays its honest partner directly (so
        that its newest proof holds value for the partner) and closes with an older proof
        of the partner (its own newest proof is not on chain); the partner lost the chain
        in the last second before the close was mined (the earliest close its view
        allows). Then the partner reaches the chain again exactly at the channel's
        announced horizon, or 1 or 2 seconds after it; or it stays blind for the whole
        window while its delegate beacons its view; or it stays blind."""
        pairs = self._closable()
        if not pairs:
            return
        cheat, victim = data.draw(st.sampled_from(pairs))
        w = self.w
        payment = BatchEntry(self.next_id, TokenAmount(amount))
        self.next_id += 1
        w.apply(cheat, ActionPayDirect(w.clock(cheat), TOKEN_NETWORK, victim, (payment,)))
        for flight in [f for f in w.flights if (f.sender, f.recipient) == (cheat, victim)]:
            w.flights.remove(flight)
            w.flights.insert(0, flight)
            w.deliver(0)
        proofs = w.history.get((cheat, victim), [])
        proof = data.draw(st.sampled_from([None, *proofs])) if proofs else None
        w.ledger.submit(TxClose(cheat, victim, proof))
        w.broken.add(frozenset((cheat, victim)))
        w.flights += self.later
        self.later = []
        w.advance(w.ledger.inclusion - 1)
        w.lose_chain(victim)
        w.advance(1)  # the close is mined one second after the victim's view
        if then == "stay blind":
            return
        if then == "delegate":
            delegate = w.hosts[victim].delegate
            for _ in range(4):
                if delegate is not None:
                    w.beacon(delegate)
                w.advance(WINDOW // 3)
            event(f"attack: the victim relies on its delegate ({delegate is not None})")
            w.regain_chain(victim)
            return
        horizons = [
            item
            for item in w.announced(victim)
            if item.kind is DeadlineKind.UPDATE_HORIZON and item.partner == cheat
        ]
        if not horizons or horizons[0].deadline is None:
            return
        late = {"at horizon": 0, "1 s late": 1, "2 s late": 2}[then]
        wait = horizons[0].deadline + late - w.clock(victim)
        if wait < 0:
            return
        w.advance(wait)
        event(f"attack: the victim regains {late} s after the horizon "
              f"(delegated: {horizons[0].delegated})")  # fmt: skip
        w.regain_chain(victim)

    # --- invariants --------------------------------------------------------------------------

    @invariant()
    def channel_views_hold(self) -> None:
        if self.world is None:
            return
        for node, state in self.w.states.items():
            for (_, partner), channel in state.channels.items():
                our, theirs = channel.our, channel.partner
                # I-T1: tokens are conserved in every view.
                total = our.deposit + theirs.deposit - our.withdrawn - theirs.withdrawn
                assert balance(our, theirs) + balance(theirs, our) == total
                # I-T3 (I-P3): live locks, less returned pairs, never exceed the balance...
                for end, other in ((our, theirs), (theirs, our)):
                    now = self.w.clock(node)
                    live = sum(lock.amount for lock in end.locks if lock.expiration >= now)
                    # ...counting as ours a mirror whose original we paid (its secret was
                    # registered in time) until its repayment arrives: the known open I-T3
                    # hole of tests/property/test_transfers_regressions.py (strict xfail).
                    registry = self.w.ledger.registry
                    owed = sum(
                        lock.amount
                        for lock in other.locks
                        if lock.secrethash in other.mirrors
                        and end.lock_for(lock.secrethash) is None
                        and registry.get(lock.secrethash, lock.expiration + 1) <= lock.expiration
                    )
                    assert live - returned_amount(end, other) <= balance(end, other) + owed
                # I-T2: nonces and transferred amounts only rise.
                for label, end in (("our", our), ("partner", theirs)):
                    key = (node, partner, label)
                    nonce, transferred = self.seen.get(key, (0, 0))
                    assert end.nonce >= nonce and end.transferred >= transferred
                    self.seen[key] = (end.nonce, end.transferred)
                # I-T4: a partner's copy of our end is never ahead of ours.
                mirror = self.w.states[partner].channels[(TOKEN_NETWORK, node)].partner
                assert mirror.nonce <= our.nonce and mirror.transferred <= our.transferred

    @invariant()
    def no_invalid_messages_between_honest_nodes(self) -> None:
        if self.world is None:
            return
        for node, effects in self.w.effects.items():
            start = self.checked.get(node, 0)
            self.checked[node] = len(effects)
            if not self.honest(node):
                continue
            invalid = [
                e
                for e in effects[start:]
                if isinstance(e, EventInvalidReceived) and self.honest(e.sender)
            ]
            assert not invalid, (node.hex(), invalid)

    @invariant()
    def core_sees_what_the_runtime_sees(self) -> None:
        if self.world is None:
            return
        for node, host in self.w.hosts.items():
            state = self.w.states[node]
            assert (state.view_time is None) == host.sees_chain

    # --- the end ---------------------------------------------------------------------------

    def teardown(self) -> None:
        if self.world is None:
            return
        w = self.w
        # Everyone reaches the chain and the mesh again (a lazy watcher stays lazy).
        for watcher in w.watchers.values():
            self._watcher_sees(watcher, True)
        for node in w.addresses:
            w.hosts[node].mesh = True
            w.regain_chain(node)
        w.flights += self.later
        self.later = []
        self._quiet_down()
        # A dishonest node closes what is not quiet with the newest proof it holds.
        for a, b in w.edges:
            if self.honest(a) and self.honest(b):
                continue
            channel = w.ledger.channel(a, b)
            assert channel is not None
            if channel.stage is not Stage.OPENED or self._quiet(a, b):
                continue
            cheat, victim = (a, b) if not self.honest(a) else (b, a)
            proofs = w.history.get((cheat, victim), [])
            w.ledger.submit(TxClose(cheat, victim, proofs[-1] if proofs else None))
            w.broken.add(frozenset((a, b)))
        for _ in range(3):
            w.run()
            w.advance(WINDOW // 2 + 60)
        self._quiet_down()
        assert not w.ledger.pending or all(at > w.now for at, _, _, _ in w.ledger.pending), (
            "the chain still has work"
        )
        for channel in w.ledger.channels.values():
            assert channel.stage is not Stage.CLOSED, "every closed channel is settled"
        w.ledger.finish()
        self.channel_views_hold()
        self.no_invalid_messages_between_honest_nodes()
        self._payments_ended()
        self._honest_channels_quiet()
        self._tokens_add_up()
        self._no_unexplained_loss()

    def _quiet_down(self) -> None:
        w = self.w
        for _ in range(12):  # deliver, let every lock expire or be claimed
            w.run()
            w.advance(SETTINGS.lock_timeout // 4)
        w.run()

    def _quiet(self, a: Address, b: Address) -> bool:
        w = self.w
        for flight in w.flights + self.later:
            if {flight.sender, flight.recipient} == {a, b}:
                return False
        view_a = w.states[a].channels[(TOKEN_NETWORK, b)]
        view_b = w.states[b].channels[(TOKEN_NETWORK, a)]
        return (
            view_a.phase is ChannelPhase.OPENED
            and not view_a.our.locks
            and not view_a.partner.locks
            and view_a.our == view_b.partner
            and view_a.partner == view_b.our
        )

    def _broken(self, a: Address, b: Address) -> bool:
        return frozenset((a, b)) in self.w.broken

    def _payments_ended(self) -> None:
        """I-T5: every payment ended, exactly once; its target was paid iff it succeeded,
        unless a broken channel carried it or a node missed its registration."""
        w = self.w
        missed = {
            m.secrethash
            for host in w.hosts.values()
            for m in host.misses
            if m.kind is DeadlineKind.REGISTER_SECRET
        }
        succeeded = 0
        for payment_id, (payer, target, _) in self.payments.items():
            ended: Counter[str] = Counter()
            for effect in w.effects[payer]:
                if (
                    isinstance(effect, EventPaymentSucceeded | EventPaymentFailed)
                    and effect.payment_id == payment_id
                ):
                    ended[type(effect).__name__] += 1
            assert sum(ended.values()) == 1, (payment_id, ended)
            succeeded += ended["EventPaymentSucceeded"]
            _, secrethash = secret_for(payment_id)
            if secrethash in w.tainted or secrethash in missed:
                continue
            received = [
                e
                for e in w.effects[target]
                if isinstance(e, EventPaymentReceived) and e.payment_id == payment_id
            ]
            assert (ended["EventPaymentSucceeded"] == 1) == bool(received), payment_id
        event(f"payments: {len(self.payments)}, succeeded: {succeeded}")

    def _honest_channels_quiet(self) -> None:
        """I-T7 between honest nodes: nothing pending, the two views agree; no payment
        record is left but those a broken channel holds."""
        w = self.w
        for a, b in w.edges:
            if self.honest(a) and self.honest(b):
                assert self._quiet(a, b), (a.hex(), b.hex())
        for node, state in w.states.items():
            if not self.honest(node):
                continue
            for key in list(state.mediators) + list(state.targets):
                assert key[2] in w.tainted, ("record left", node.hex(), key)

    def _tokens_add_up(self) -> None:
        """I-T6 for honest nodes none of whose channels was broken; every honest node's
        mediation fees are at least zero unless it missed a registration deadline."""
        w = self.w
        for node, state in w.states.items():
            if not self.honest(node):
                continue
            host = w.hosts[node]
            for effect in w.effects[node]:
                if isinstance(effect, EventMediated) and effect.fee < 0:
                    _, secrethash = secret_for(effect.payment_id)
                    assert secrethash in w.tainted or any(
                        m.kind is DeadlineKind.REGISTER_SECRET and m.secrethash == secrethash
                        for m in host.misses
                    ), ("mediation lost without a missed deadline", node.hex(), effect)
                    event("a mediator lost a lock after missing its registration deadline")
            if any(self._broken(node, partner) for _, partner in state.channels):
                continue
            held = sum(
                balance(c.our, c.partner) + c.our.withdrawn - c.our.deposit
                for c in state.channels.values()
            )
            expected = 0
            for effect in w.effects[node]:
                if isinstance(effect, EventPaymentReceived):
                    expected += effect.amount
                elif isinstance(effect, EventPaymentSucceeded):
                    expected -= effect.amount + effect.fee
                elif isinstance(effect, EventDirectPaymentSent):
                    expected -= effect.amount
                elif isinstance(effect, EventMediated):
                    expected += effect.fee
            assert held == expected, (node.hex(), held, expected)

    def _no_unexplained_loss(self) -> None:
        """O-4 for every channel a dishonest partner closed on an honest node."""
        w = self.w
        for a, b in w.edges:
            channel = w.ledger.channel(a, b)
            assert channel is not None
            if channel.stage is not Stage.SETTLED:
                continue
            for node in (a, b):
                if self.honest(node):
                    self._check_settled(node, channel)

    def _check_settled(self, node: Address, channel: ChainChannel) -> None:
        """What the node got from the settled channel (its share, what the unlocks paid it,
        and the reward its delegate took) is at least what its own state says: settle by
        both newest proofs (ours and the partner's), every lock of the partner's whose
        secret we learned counted as ours. Less only when deadlines were missed: the update
        (a horizon or the update itself, for a newer partner proof than the one on chain),
        or a lock's registration; and by no more than those deadlines covered."""
        w = self.w
        partner = channel.other(node)
        view = w.states[node].channels[(TOKEN_NETWORK, partner)]
        registry = w.ledger.registry
        learned = w.learned.get(node, set())
        host = w.hosts[node]

        def in_time(lock: Lock) -> bool:
            at = registry.get(lock.secrethash)
            return at is not None and at <= lock.expiration

        def ours(lock: Lock) -> bool:
            """A lock of the partner's that the node's own state counts as its own: its
            secret is registered in time, or the node knows it (off chain) and did not give
            the lock back (a returned pair pays both ways, in the node's view)."""
            if in_time(lock):
                return True
            paired = view.our.lock_for(lock.secrethash) == lock
            return lock.secrethash in learned and not paired

        on_chain = channel.proof(partner)
        assert on_chain.nonce <= view.partner.nonce, "the chain holds a proof the node never had"
        ideal = _payout(
            channel,
            node,
            (view.our.transferred, view.our.locks),
            (view.partner.transferred, view.partner.locks),
            ours,
            in_time,
        )
        got = channel.paid[node] + channel.rewards.get(node, 0)
        loss = ideal - got
        if loss <= 0:
            return
        label = f"node {node.hex()[:8]} partner {partner.hex()[:8]} lost {loss}"
        covered = 0
        if on_chain.nonce < view.partner.nonce:
            misses = [
                m
                for m in host.misses
                if m.kind in (DeadlineKind.UPDATE_HORIZON, DeadlineKind.UPDATE)
                and m.partner == partner
                and m.nonce > on_chain.nonce
            ]
            if misses:
                self._delegates_had_reasons(node, channel, misses)
                covered += max(m.amount for m in misses)
                event("an update deadline was missed: loss within its amount")
        unclaimed = {
            lock
            for lock in (*view.partner.locks, *w.locks_of(on_chain.locksroot))
            if not in_time(lock) and ours(lock)
        }
        for lock in unclaimed:
            if any(
                m.kind is DeadlineKind.REGISTER_SECRET and m.secrethash == lock.secrethash
                for m in host.misses
            ):
                covered += lock.amount
                event("a registration deadline was missed: loss within the lock")
        assert covered, (f"{label} (partner proof {on_chain.nonce} on chain, "
                         f"{view.partner.nonce} held) with no missed deadline")  # fmt: skip
        assert loss <= covered, f"{label}, more than the missed deadlines covered ({covered})"

    def _delegates_had_reasons(
        self, node: Address, channel: ChainChannel, misses: list[Miss]
    ) -> None:
        """A loss that only delegated deadlines explain needs a delegate that was lazy,
        blind during the settle window, or did not hold that proof."""
        if any(not m.delegated for m in misses):
            return
        closed_at, deadline = channel.closed_at, channel.deadline
        assert closed_at is not None and deadline is not None
        partner = channel.other(node)
        for m in misses:
            assert m.delegate is not None
            watcher = self.w.watchers[m.delegate]
            held = watcher.held.get((partner, node))
            if (
                watcher.lazy_by(deadline)
                or watcher.blind_during(closed_at, deadline)
                or held is None
                or held.request.nonce < m.nonce
            ):
                event("a delegate missed a deadline (lazy, blind or behind)")
                return
        raise AssertionError(f"a delegate with the proof, awake, did not act: {misses}")


def _payout(
    channel: ChainChannel,
    node: Address,
    own: tuple[int, tuple[Lock, ...]],
    theirs: tuple[int, tuple[Lock, ...]],
    claims_theirs: Callable[[Lock], bool],
    claims_ours: Callable[[Lock], bool],
) -> int:
    """What `node` ends with from the channel if these proofs stand at settle and the locks
    `claims_*` says are claimable are unlocked (docs/spec.md §4)."""
    partner = channel.other(node)
    own_transferred, own_locks = own
    their_transferred, their_locks = theirs
    mine = ParticipantTotals(
        TokenAmount(channel.deposit[node]),
        TokenAmount(channel.withdrawn[node]),
        TokenAmount(own_transferred),
        TokenAmount(sum(lock.amount for lock in own_locks)),
    )
    other = ParticipantTotals(
        TokenAmount(channel.deposit[partner]),
        TokenAmount(channel.withdrawn[partner]),
        TokenAmount(their_transferred),
        TokenAmount(sum(lock.amount for lock in their_locks)),
    )
    payout = settlement_payout(mine, other)
    to_them = min(
        payout.locked_retained1, sum(lock.amount for lock in own_locks if claims_ours(lock))
    )
    to_me = min(
        payout.locked_retained2, sum(lock.amount for lock in their_locks if claims_theirs(lock))
    )
    return payout.payout1 + payout.locked_retained1 - to_them + to_me


class OfflineLine(OfflineMachine):
    """A line of five: payments of three hops, one route only."""

    SIZE = 5
    EDGES = ((0, 1), (1, 2), (2, 3), (3, 4))


# `make test` (the ci profile) runs about 200 examples of the diamond in well under a
# minute; `make fuzz` runs 5,000 and the line of five as well.
_SETTINGS = settings(
    max_examples=min(settings.default.max_examples * 5, 5_000), stateful_step_count=60
)
TestOffline = OfflineMachine.TestCase
TestOffline.settings = _SETTINGS
TestOfflineLine = pytest.mark.fuzz(OfflineLine.TestCase)
TestOfflineLine.settings = _SETTINGS
