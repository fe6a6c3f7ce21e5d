"""Two views of one channel driven by random messages: invariants I-P1..I-P4 of docs/spec.md.

Rules make balance-proof messages on either side (direct, batch, lock, unlock, lock
return, lock expired), deliver them in order, deliver duplicates and stale copies (which must be
rejected and change nothing), and advance time. The receiver's view always equals the
sender's once everything in flight has been delivered.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from offchain.protocol import channel as ch
from offchain.protocol.channel import Rejected
from offchain.protocol.crypto import keccak256, sha256
from offchain.protocol.locks import Lock
from offchain.protocol.messages import BatchEntry, ReturnReason
from offchain.protocol.types import Secret, SecretHash, Timestamp, TokenAmount
from tests.lib.channel_views import KEY_A, KEY_B, NOW, views

SIDES = st.sampled_from(["a", "b"])
KEYS = {"a": KEY_A, "b": KEY_B}


class ChannelPair(RuleBasedStateMachine):
    """A's and B's views, with the messages each has sent and not yet delivered."""

    @initialize(deposit_a=st.integers(0, 500), deposit_b=st.integers(0, 500))
    def start(self, deposit_a: int, deposit_b: int) -> None:
        a, b = views(deposit_a, deposit_b)
        self.view = {"a": a, "b": b}
        self.in_flight: dict[str, list[ch.BalanceProofMessage]] = {"a": [], "b": []}
        self.delivered: dict[str, list[ch.BalanceProofMessage]] = {"a": [], "b": []}
        self.secrets: dict[SecretHash, Secret] = {}
        self.now = NOW
        self.counter = 0
        self.total = deposit_a + deposit_b
        self.high_water: dict[tuple[str, str], tuple[int, int]] = {}

    def _other(self, side: str) -> str:
        return "b" if side == "a" else "a"

    def _made(self, side: str, result: object) -> None:
        if isinstance(result, Rejected):
            return
        assert isinstance(result, tuple)
        new_view, message = result
        self.view[side] = new_view
        self.in_flight[side].append(message)

    @rule(side=SIDES, amount=st.integers(1, 200))
    def direct(self, side: str, amount: int) -> None:
        self.counter += 1
        self._made(
            side,
            ch.make_direct_transfer(self.view[side], KEYS[side], TokenAmount(amount), self.counter),
        )

    @rule(side=SIDES, amounts=st.lists(st.integers(1, 80), min_size=1, max_size=6))
    def batch(self, side: str, amounts: list[int]) -> None:
        entries = []
        for amount in amounts:
            self.counter += 1
            entries.append(BatchEntry(self.counter, TokenAmount(amount)))
        self._made(side, ch.make_transfer_batch(self.view[side], KEYS[side], entries))

    @rule(side=SIDES, amount=st.integers(1, 200), lifetime=st.integers(61, 3600))
    def lock(self, side: str, amount: int, lifetime: int) -> None:
        self.counter += 1
        secret = Secret(keccak256(self.counter.to_bytes(4, "big")))
        secrethash = SecretHash(sha256(secret))
        self.secrets[secrethash] = secret
        lock = Lock(Timestamp(self.now + lifetime), TokenAmount(amount), secrethash)
        partner = self.view[self._other(side)].our.address
        self._made(
            side,
            ch.make_locked_transfer(
                self.view[side], KEYS[side], lock, self.counter, partner, lock.amount, self.now
            ),
        )

    @rule(side=SIDES, pick=st.integers(0, 10**6))
    def unlock(self, side: str, pick: int) -> None:
        locks = self.view[side].our.locks
        if locks:
            secret = self.secrets[locks[pick % len(locks)].secrethash]
            self._made(side, ch.make_unlock(self.view[side], KEYS[side], secret, 0))

    @rule(side=SIDES, pick=st.integers(0, 10**6))
    def give_back(self, side: str, pick: int) -> None:
        locks = self.view[side].partner.locks
        if locks:
            secrethash = locks[pick % len(locks)].secrethash
            self._made(
                side,
                ch.make_lock_return(
                    self.view[side],
                    KEYS[side],
                    secrethash,
                    0,
                    ReturnReason.NO_ROUTE,
                    self.view[side].our.address,
                ),
            )

    @rule(side=SIDES, pick=st.integers(0, 10**6))
    def expire(self, side: str, pick: int) -> None:
        locks = self.view[side].our.locks
        if locks:
            secrethash = locks[pick % len(locks)].secrethash
            self._made(
                side, ch.make_lock_expired(self.view[side], KEYS[side], secrethash, self.now)
            )

    @rule(seconds=st.integers(1, 2000))
    def advance_time(self, seconds: int) -> None:
        self.now = Timestamp(self.now + seconds)

    @precondition(lambda self: self.in_flight["a"] or self.in_flight["b"])
    @rule(side=SIDES)
    def deliver(self, side: str) -> None:
        if not self.in_flight[side]:
            side = self._other(side)
        message = self.in_flight[side].pop(0)
        receiver = self._other(side)
        result = ch.receive(self.view[receiver], message, self.now)
        # The sender checked the same rules when it made the message; the receiver's clock
        # only matters for LockExpired, which the sender sends after the expiration, and a
        # late lock is applied all the same (docs/spec.md §10).
        assert not isinstance(result, Rejected), result
        self.view[receiver] = result
        self.delivered[side].append(message)

    @precondition(lambda self: self.delivered["a"] or self.delivered["b"])
    @rule(side=SIDES, pick=st.integers(0, 10**6))
    def deliver_stale_copy(self, side: str, pick: int) -> None:
        if not self.delivered[side]:
            side = self._other(side)
        message = self.delivered[side][pick % len(self.delivered[side])]
        receiver = self._other(side)
        before = self.view[receiver]
        assert isinstance(ch.receive(before, message, self.now), Rejected)
        assert self.view[receiver] is before

    @invariant()
    def conservation(self) -> None:  # I-P1
        for view in self.view.values():
            assert ch.balance(view.our, view.partner) + ch.balance(view.partner, view.our) == (
                self.total
            )

    @invariant()
    def locked_within_balance(self) -> None:  # I-P3
        # Locks past their expiration can no longer pay on chain; a returned pair whose
        # other half was already removed at expiry is such a lock.
        for view in self.view.values():
            for end, other in ((view.our, view.partner), (view.partner, view.our)):
                live = sum(lock.amount for lock in end.locks if lock.expiration >= self.now)
                live_returned = sum(
                    lock.amount
                    for lock in end.locks
                    if lock.expiration >= self.now and other.lock_for(lock.secrethash) == lock
                )
                assert live - live_returned <= ch.balance(end, other)

    @invariant()
    def nonces_and_transferred_only_rise(self) -> None:  # I-P2
        for side, view in self.view.items():
            for name, end in (("our", view.our), ("partner", view.partner)):
                last_nonce, last_transferred = self.high_water.get((side, name), (0, 0))
                assert end.nonce >= last_nonce and end.transferred >= last_transferred
                self.high_water[side, name] = (end.nonce, end.transferred)

    @invariant()
    def views_agree_when_nothing_in_flight(self) -> None:  # I-P4
        for side in ("a", "b"):
            if not self.in_flight[side]:
                assert self.view[self._other(side)].partner == self.view[side].our


TestChannelPair = ChannelPair.TestCase
