"""Several protocol cores in one process under a hostile transport and a live chain.

Hypothesis sends payments between random nodes of a line of five and of a diamond, and
delivers, drops (the transport retransmits later), duplicates and reorders messages,
crashes nodes and restores them from their persisted state, lets time pass, mines secret
registrations, closes and settles quiet channels, and moves nodes' view of the chain (the
offline safety window, docs/spec.md §14). The invariants are those of
docs/spec.md §12 (I-T1..I-T7); after the network goes quiet every payment must be in a
terminal state and every node's tokens must add up to what its events say.
"""

from __future__ import annotations

import pickle
from collections import Counter

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from offchain.protocol.channel import ChannelPhase, balance, returned_amount
from offchain.protocol.fees import FeeSchedule
from offchain.protocol.messages import BatchEntry
from offchain.protocol.settlement import ParticipantTotals, settlement_payout
from offchain.protocol.state import Settings
from offchain.protocol.transitions import (
    ActionPay,
    ActionPayDirect,
    ActionSetChainView,
    ActionWithdraw,
    ChainChannelClosed,
    ChainChannelSettled,
    EventDirectPaymentSent,
    EventInvalidReceived,
    EventMediated,
    EventPaymentFailed,
    EventPaymentReceived,
    EventPaymentSucceeded,
)
from offchain.protocol.types import Address, Timestamp, TokenAmount
from tests.lib.network import TOKEN_NETWORK, Flight, Network, secret_for

DEPOSIT = 500
SETTINGS = Settings(fees=FeeSchedule(flat=1, proportional_ppm=10_000))


class TransferMachine(RuleBasedStateMachine):
    """Base: subclasses say which channels exist."""

    SIZE = 5
    EDGES: tuple[tuple[int, int], ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.net = Network.create(self.SIZE, SETTINGS)
        nodes = self.net.addresses
        for i, j in self.EDGES:
            self.net.open(nodes[i], nodes[j], DEPOSIT, DEPOSIT)
        self.net.publish_graph()
        self.later: list[Flight] = []
        self.payments: dict[int, tuple[Address, Address, int]] = {}
        self.next_id = 1
        self.seen: dict[tuple[Address, Address, str], tuple[int, int]] = {}
        self.closed: set[frozenset[Address]] = set()
        self.direct: set[int] = set()

    # --- rules ---------------------------------------------------------------------------

    @rule(data=st.data(), amount=st.integers(1, 400))
    def pay(self, data: st.DataObject, amount: int) -> None:
        nodes = self.net.addresses
        payer = data.draw(st.sampled_from(nodes))
        target = data.draw(st.sampled_from([n for n in nodes if n != payer]))
        payment_id = self.next_id
        self.next_id += 1
        secret, secrethash = secret_for(payment_id)
        self.payments[payment_id] = (payer, target, amount)
        self.net.apply(
            payer,
            ActionPay(
                self.net.now,
                payment_id,
                TOKEN_NETWORK,
                target,
                TokenAmount(amount),
                secrethash,
                secret,
            ),
        )

    @rule(data=st.data(), amounts=st.lists(st.integers(1, 60), min_size=1, max_size=5))
    def pay_direct(self, data: st.DataObject, amounts: list[int]) -> None:
        a, b = data.draw(st.sampled_from(self.net.edges))
        payer, partner = data.draw(st.sampled_from([(a, b), (b, a)]))
        entries = []
        for amount in amounts:
            entries.append(BatchEntry(self.next_id, TokenAmount(amount)))
            self.direct.add(self.next_id)
            self.next_id += 1
        self.net.apply(payer, ActionPayDirect(self.net.now, TOKEN_NETWORK, partner, tuple(entries)))

    @precondition(lambda self: self.net.flights)
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.net.flights) - 1))  # any order
        self.net.deliver(index)

    @precondition(lambda self: self.net.flights)
    @rule(steps=st.integers(1, 30))
    def deliver_in_order(self, steps: int) -> None:
        for _ in range(min(steps, len(self.net.flights))):
            self.net.deliver(0)

    @precondition(lambda self: self.net.flights)
    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.net.flights) - 1))
        self.net.flights.append(self.net.flights[index])

    @precondition(lambda self: self.net.flights)
    @rule(data=st.data())
    def drop(self, data: st.DataObject) -> None:
        # The transport lost it; it retransmits after a while (at-least-once delivery).
        index = data.draw(st.integers(0, len(self.net.flights) - 1))
        self.later.append(self.net.flights.pop(index))

    @rule(data=st.data())
    def crash_and_restore(self, data: st.DataObject) -> None:
        # Every transition is persisted before its effects run: a restart resumes from it.
        node = data.draw(st.sampled_from(self.net.addresses))
        persisted = pickle.dumps(self.net.states[node])
        self.net.states[node] = pickle.loads(persisted)

    @rule(seconds=st.sampled_from([1, 10, 45, 120, 300]))
    def advance(self, seconds: int) -> None:
        self.net.flights += self.later
        self.later = []
        # Nodes tick every 10 s and the chain includes a registration within one tick: well
        # inside the reveal timeout, which is what the timeouts assume (docs/spec.md §11).
        self.net.advance(seconds, tick_every=10, mine=True)

    @precondition(lambda self: self.net.registrations or self.net.withdraws)
    @rule()
    def mine(self) -> None:
        self.net.mine()

    @rule(data=st.data(), amount=st.integers(1, 200), seconds=st.sampled_from([30, 120]))
    def withdraw(self, data: st.DataObject, amount: int, seconds: int) -> None:
        a, b = data.draw(st.sampled_from(self.net.edges))
        me, partner = data.draw(st.sampled_from([(a, b), (b, a)]))
        mine = self.net.states[me].channels[(TOKEN_NETWORK, partner)].our
        total = TokenAmount(mine.withdrawn + amount)
        expiration = Timestamp(self.net.now + seconds)
        self.net.apply(me, ActionWithdraw(self.net.now, TOKEN_NETWORK, partner, total, expiration))

    @rule(data=st.data(), behind=st.sampled_from([None, 0, 3300, 3445, 3446, 10_000]))
    def chain_view(self, data: st.DataObject, behind: int | None) -> None:
        # A node stops seeing the chain (its view `behind` seconds old) or sees it again:
        # the window refuses value near the deadlines (docs/spec.md §14), and every
        # invariant must still hold. (The chain here still includes registrations.)
        node = data.draw(st.sampled_from(self.net.addresses))
        view = None if behind is None else Timestamp(self.net.now - behind)
        self.net.apply(node, ActionSetChainView(self.net.now, view, {}))

    @rule()
    def republish_graph(self) -> None:
        self.net.publish_graph()

    @rule(data=st.data())
    def close_and_settle_quiet_channel(self, data: st.DataObject) -> None:
        quiet = [
            (a, b)
            for a, b in self.net.edges
            if frozenset((a, b)) not in self.closed and self._quiet(a, b)
        ]
        if not quiet:
            return
        a, b = data.draw(st.sampled_from(quiet))
        self.closed.add(frozenset((a, b)))
        for me, partner in ((a, b), (b, a)):
            self.net.apply(me, ChainChannelClosed(self.net.now, TOKEN_NETWORK, partner, a))
        # The contract pays by the proofs each side holds of the other (I-T6).
        view_a = self.net.states[a].channels[(TOKEN_NETWORK, b)]
        view_b = self.net.states[b].channels[(TOKEN_NETWORK, a)]
        totals_a = ParticipantTotals(
            view_a.our.deposit, view_a.our.withdrawn, view_b.partner.transferred, TokenAmount(0)
        )
        totals_b = ParticipantTotals(
            view_b.our.deposit, view_b.our.withdrawn, view_a.partner.transferred, TokenAmount(0)
        )
        payout = settlement_payout(totals_a, totals_b)
        assert payout.payout1 == balance(view_a.our, view_a.partner)
        assert payout.payout2 == balance(view_b.our, view_b.partner)
        for me, partner in ((a, b), (b, a)):
            self.net.apply(me, ChainChannelSettled(self.net.now, TOKEN_NETWORK, partner))

    def _quiet(self, a: Address, b: Address) -> bool:
        for flight in self.net.flights + self.later:
            if {flight.sender, flight.recipient} == {a, b}:
                return False
        view_a = self.net.states[a].channels[(TOKEN_NETWORK, b)]
        view_b = self.net.states[b].channels[(TOKEN_NETWORK, a)]
        return (
            view_a.phase is ChannelPhase.OPENED
            and not view_a.our.locks
            and not view_a.partner.locks
            and view_a.our == view_b.partner
            and view_a.partner == view_b.our
        )

    # --- invariants ----------------------------------------------------------------------

    @invariant()
    def channel_views_hold(self) -> None:
        for node, state in self.net.states.items():
            for (_, partner), channel in state.channels.items():
                our, theirs = channel.our, channel.partner
                # I-T1: tokens are conserved in every view.
                total = our.deposit + theirs.deposit - our.withdrawn - theirs.withdrawn
                assert balance(our, theirs) + balance(theirs, our) == total
                # I-T3 (I-P3): live locks, less returned pairs, never exceed the balance.
                for end, other in ((our, theirs), (theirs, our)):
                    live = sum(lock.amount for lock in end.locks if lock.expiration >= self.net.now)
                    assert live - returned_amount(end, other) <= balance(end, other)
                # I-T2: nonces and transferred amounts only rise.
                for label, end in (("our", our), ("partner", theirs)):
                    key = (node, partner, label)
                    nonce, transferred = self.seen.get(key, (0, 0))
                    assert end.nonce >= nonce and end.transferred >= transferred
                    self.seen[key] = (end.nonce, end.transferred)
                # I-T4: a partner's copy of our end is never ahead of ours.
                mirror = self.net.states[partner].channels[(TOKEN_NETWORK, node)].partner
                assert mirror.nonce <= our.nonce and mirror.transferred <= our.transferred

    @invariant()
    def no_invalid_messages_between_honest_nodes(self) -> None:
        for effects in self.net.effects.values():
            invalid = [e for e in effects if isinstance(e, EventInvalidReceived)]
            assert not invalid, invalid

    # --- the end -------------------------------------------------------------------------

    def teardown(self) -> None:
        net = self.net
        net.flights += self.later
        self.later = []
        for _ in range(12):  # quiet down: deliver, let every lock expire or be claimed
            net.run()
            net.advance(SETTINGS.lock_timeout // 4, tick_every=10, mine=True)
        net.run()
        self.channel_views_hold()
        # I-T5: every payment ended, exactly once, and the target was paid iff it succeeded.
        ended: Counter[int] = Counter()
        succeeded: dict[int, EventPaymentSucceeded] = {}
        for payment_id, (payer, target, _) in self.payments.items():
            for effect in net.effects[payer]:
                if (
                    isinstance(effect, EventPaymentSucceeded | EventPaymentFailed)
                    and effect.payment_id == payment_id
                ):
                    ended[payment_id] += 1
                    if isinstance(effect, EventPaymentSucceeded):
                        succeeded[payment_id] = effect
            assert ended[payment_id] == 1, (payment_id, ended[payment_id])
            received = [
                e
                for e in net.effects[target]
                if isinstance(e, EventPaymentReceived) and e.payment_id == payment_id
            ]
            assert (payment_id in succeeded) == bool(received)
        event(f"payments: {len(self.payments)}, succeeded: {len(succeeded)}")
        # I-T7: nothing is left that would need the chain; the views agree.
        for node, state in net.states.items():
            assert not state.mediators and not state.targets
            for (_, partner), channel in state.channels.items():
                assert not channel.our.locks and not channel.partner.locks
                mine = net.states[partner].channels[(TOKEN_NETWORK, node)].our
                differ = {
                    name: (getattr(channel.partner, name), getattr(mine, name))
                    for name in type(mine).__dataclass_fields__
                    if getattr(channel.partner, name) != getattr(mine, name)
                }
                assert not differ, differ
        # I-T6: every node's tokens add up to its payments and fees; fees are never negative.
        for node, state in net.states.items():
            held = sum(
                balance(c.our, c.partner) + c.our.withdrawn - c.our.deposit
                for c in state.channels.values()
            )
            expected = 0
            for effect in net.effects[node]:
                if isinstance(effect, EventPaymentReceived):
                    expected += effect.amount
                elif isinstance(effect, EventPaymentSucceeded):
                    expected -= effect.amount + effect.fee
                elif isinstance(effect, EventDirectPaymentSent):
                    expected -= effect.amount
                elif isinstance(effect, EventMediated):
                    assert effect.fee >= 0
                    expected += effect.fee
            assert held == expected, (node.hex(), held, expected)


class LineOfFive(TransferMachine):
    SIZE = 5
    EDGES = ((0, 1), (1, 2), (2, 3), (3, 4))


class Diamond(TransferMachine):
    SIZE = 4
    EDGES = ((0, 1), (0, 2), (1, 3), (2, 3), (1, 2))


_SETTINGS = settings(max_examples=max(60, settings.default.max_examples), stateful_step_count=60)
TestLineOfFive = LineOfFive.TestCase
TestLineOfFive.settings = _SETTINGS
TestDiamond = Diamond.TestCase
TestDiamond.settings = _SETTINGS
