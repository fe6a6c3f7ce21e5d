"""Stateful property test: random call sequences against the real token network and a model.

Belongs here: one hypothesis `RuleBasedStateMachine` that drives the Vyper contracts
(titanoboa, one deployment per test session, every run isolated in `boa.env.anchor()`)
through random sequences of opens, deposits, withdraws, off-chain transfers, locks and
unlocks (signed balance proofs), closes with the latest or a stale proof (sometimes by a
third party), updates by the non-closer or its delegate, secret registrations, time
travel, settles, unlocks and cooperative settles; and a Python model of the same rules
that predicts every balance with the oracle `offchain.protocol.settlement`. A byzantine
side may also sign an arbitrary proof (any T and L up to 2**256 - 1, locks that need not
add up, the last nonce). Invalid calls are fired too, and each must revert with its reason
and change nothing.

Invariants (numbers of docs/spec.md section 7), checked after every step:
- I-C1 conservation: the network holds exactly the total available deposit of every open
  or closed channel plus the tokens retained for locks not yet unlocked.
- I-C2 nobody is paid more than the proofs on chain entitle it to: every token balance is
  what the oracle computes from the proofs on chain (settle 4.1, reward 4.2, unlock 4.3);
  and, honest proofs only, a participant whose own latest proof is on chain ends up with
  no more than the latest proofs entitle it to.
- I-C3 a newer proof beats an older one: the proof that stands on chain is the newest
  submitted, an update with an older or equal nonce reverts; and, honest proofs only, a
  participant that put its partner's latest proof on chain (close or update) ends up with
  at least what the latest proofs entitle it to; with both latest proofs on chain, exactly.
- I-C4 settle never reverts for a reachable state: every closed channel can be settled
  once its window is over (tried in a rolled-back sandbox after every step), with the
  payouts the oracle predicts; the settle rule itself must never revert.
- I-C5 a delegate never takes more than the reward it was authorized, nor more than the
  delegator's share (measured on chain at every settle).
- Also I-C6 (a proof of an earlier generation does not verify), I-C7 (W1 + W2 <= D1 + D2;
  totals only rise) and I-C8 (a lock pays only if its secret was registered by its
  expiration; each retained set unlocks once).
A further invariant keeps the model honest: every channel's on-chain view (state,
generation, window or deadline, closer, deposits, withdraws, nonces, balance hashes,
delegations) equals the model's.

Does not belong here: single-behaviour contract tests (tests/contracts), the oracle's own
unit tests (tests/unit). Failures found here are replayed in test_regressions_contracts.py.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import boa
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from offchain.protocol.crypto import keccak256, sha256
from offchain.protocol.locks import Lock, encode_locks
from offchain.protocol.settlement import (
    ParticipantTotals,
    SettlementPayout,
    apply_reward,
    cooperative_payouts,
    settlement_payout,
    unlock_split,
)
from tests.lib import harness
from tests.lib.harness import ZERO32, ZERO_ADDRESS, Account, Deployment, Proof

pytestmark = pytest.mark.usefixtures("token_network_world")

NONE, OPENED, CLOSED = 0, 1, 2
FUNDING = 10**12
MAX_REWARD = 2**96 - 1
PAIRS = ((0, 1), (0, 2), (2, 3))
"""Channels among four participants (account indices); account 4 is the delegate."""

PICK = st.integers(0, 2**16)
"""Chooses among the candidates of a rule, reduced modulo their number (replayable)."""
FRACTION = st.integers(1, 100)
"""Percent of what the off-chain balance allows (at least one token)."""
AMOUNT = st.integers(1, 10**6)
WINDOW = st.one_of(
    st.just(harness.SETTLE_MIN),
    st.integers(harness.SETTLE_MIN, 4 * 3600),
    st.just(harness.SETTLE_MAX),
)
REWARD = st.one_of(st.just(0), st.integers(0, 3 * 10**6), st.just(MAX_REWARD))
UINT256_MAX = 2**256 - 1
UINT64_MAX = 2**64 - 1
WILD = st.one_of(
    st.just(0), st.integers(1, 3 * 10**6), st.just(UINT256_MAX), st.integers(0, UINT256_MAX)
)
"""Amounts a byzantine signer may put in a proof: anything a uint256 holds."""


@dataclass(frozen=True)
class World:
    """The session's deployment and accounts, funded once outside every anchor."""

    d: Deployment
    participants: tuple[Account, ...]
    delegate: Account


@functools.cache
def world() -> World:
    """Deploy once per process and fund the four participants.

    Under pytest the first call comes from the session fixture `token_network_world`
    (tests/property/conftest.py), outside the rollback titanoboa's plugin puts around every
    test and hypothesis example.
    """
    d = harness.deploy()
    participants = tuple(harness.make_account(i) for i in range(4))
    for account in participants:
        d.fund(account, FUNDING)
    return World(d, participants, harness.make_account(4))


# ---------------------------------------------------------------------------
# The model


@dataclass
class Side:
    """One participant of one channel opening: its totals, its signed proofs and its
    proof and delegation as they stand on chain."""

    account: Account
    deposit: int = 0
    withdrawn: int = 0
    transferred: int = 0
    locks: list[Lock] = field(default_factory=list)
    proofs: list[Proof] = field(default_factory=list)  # signed proofs, nonces rising
    onchain: Proof | None = None  # this side's proof, submitted by its partner
    delegation: tuple[str, int] | None = None  # (delegate, reward) for this side's update

    @property
    def locked(self) -> int:
        return sum(lock.amount for lock in self.locks)

    @property
    def nonce(self) -> int:
        return self.proofs[-1].nonce if self.proofs else 0

    @property
    def onchain_nonce(self) -> int:
        return self.onchain.nonce if self.onchain else 0


@dataclass
class Channel:
    """A pair's channel; `sides[0]` is participant1 (the lower address)."""

    sides: tuple[Side, Side]
    state: int = NONE
    generation: int = 0
    window: int = 0
    deadline: int = 0
    closer: int | None = None
    byzantine: bool = False  # a side signed an arbitrary proof: no more honest off-chain steps
    retired: list[Proof] = field(default_factory=list)  # proofs of earlier generations

    def available(self, i: int) -> int:
        """What side i can still send or withdraw: D - W - T_sent + T_received - locked."""
        me, other = self.sides[i], self.sides[1 - i]
        return me.deposit - me.withdrawn - me.transferred + other.transferred - me.locked

    def reset(self) -> None:
        """The channel is settled: keep its generation and its proofs, as retired."""
        self.retired += [proof for side in self.sides for proof in side.proofs]
        self.sides = (Side(self.sides[0].account), Side(self.sides[1].account))
        self.state, self.window, self.deadline, self.closer = NONE, 0, 0, None
        self.byzantine = False


def totals(side: Side, proof: Proof | None) -> ParticipantTotals:
    transferred, locked = (proof.transferred, proof.locked) if proof else (0, 0)
    return ParticipantTotals(side.deposit, side.withdrawn, transferred, locked)


@dataclass
class SettleRecord:
    """One settle, kept until both sides' retained locks are unlocked (I-C2, I-C3)."""

    latest: tuple[tuple[ParticipantTotals, list[Lock]], ...]  # per side: totals, locks
    own_latest_onchain: tuple[bool, bool]
    received: list[int]  # per side: settle share (reward included) + unlocks so far
    snapshots: list[dict[bytes, int] | None]  # per sending side: reveal times at unlock
    open_directions: set[int]
    byzantine: bool  # an arbitrary proof was signed: the latest proofs entitle nothing
    checked: bool = False


@dataclass
class Pending:
    """Tokens a settle retained for one sender's locks, waiting for `unlock`."""

    record: SettleRecord
    receiver: Account
    sender: Account
    sender_index: int
    generation: int
    locks: list[Lock]
    retained: int


def _pick(items: list[Any], pick: int) -> Any:
    return items[pick % len(items)]


# ---------------------------------------------------------------------------
# The state machine


class TokenNetworkMachine(RuleBasedStateMachine):
    """Drives the contracts and the model side by side; see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.w = world()
        self.d = self.w.d
        accounts = self.w.participants
        self.channels: list[Channel] = []
        for a, b in PAIRS:
            first, second = sorted((accounts[a], accounts[b]), key=lambda acc: acc.raw)
            self.channels.append(Channel((Side(first), Side(second))))
        self.everyone: tuple[Account, ...] = (*accounts, self.w.delegate)
        self.balances = {acc.address: self.d.token.balanceOf(acc.address) for acc in self.everyone}
        self.network_balance = self.d.token.balanceOf(self.d.network.address)
        self.secrets: list[tuple[bytes, Lock]] = []
        self.reveal: dict[bytes, int] = {}
        self.pending: list[Pending] = []
        self.unlocked: list[Pending] = []
        self.records: list[SettleRecord] = []
        self.rewards_authorized = 0
        self.rewards_paid = 0
        self.invalid_budget = 0  # one invalid call allowed per close, update, settle...
        # Entered last: if __init__ failed earlier, no anchor would be left open.
        self._anchor = boa.env.anchor()
        self._anchor.__enter__()

    def teardown(self) -> None:
        self._anchor.__exit__(None, None, None)

    # --- helpers -----------------------------------------------------------------

    def _in_state(self, state: int) -> list[int]:
        return [i for i, ch in enumerate(self.channels) if ch.state == state]

    def _honest(self) -> list[int]:
        """Open channels where both sides still follow the off-chain rules."""
        return [c for c in self._in_state(OPENED) if not self.channels[c].byzantine]

    def _senders(self) -> list[tuple[int, int]]:
        """(channel, side) pairs of open channels where the side has tokens to spend."""
        return [(c, i) for c in self._honest() for i in (0, 1) if self.channels[c].available(i) > 0]

    def _open_locks(self, expired: bool) -> list[tuple[int, int, int]]:
        now = harness.now()
        out = []
        for c in self._honest():
            for i in (0, 1):
                for k, lock in enumerate(self.channels[c].sides[i].locks):
                    if expired:
                        usable = now > lock.expiration and not self._claimable(lock)
                    else:
                        usable = now <= lock.expiration
                    if usable:
                        out.append((c, i, k))
        return out

    def _claimable(self, lock: Lock) -> bool:
        return 0 < self.reveal.get(lock.secrethash, 0) <= lock.expiration

    def _updatable(self) -> list[int]:
        now = harness.now()
        return [
            c
            for c in self._in_state(CLOSED)
            if now <= self.channels[c].deadline
            and self._closer(c).nonce > self._closer(c).onchain_nonce
        ]

    def _settleable(self) -> list[int]:
        return [c for c in self._in_state(CLOSED) if harness.now() > self.channels[c].deadline]

    def _closer(self, c: int) -> Side:
        ch = self.channels[c]
        assert ch.closer is not None
        return ch.sides[ch.closer]

    def _sign(self, c: int, i: int) -> None:
        """Side i signs its next balance proof from its current totals."""
        ch = self.channels[c]
        me, other = ch.sides[i], ch.sides[1 - i]
        nonce = me.nonce + 1
        me.proofs.append(
            self.d.proof(
                me.account,
                other.account,
                nonce,
                me.transferred,
                list(me.locks),
                additional_hash=keccak256(b"message" + nonce.to_bytes(8, "big")),
                generation=ch.generation,
            )
        )

    def _pay(self, address: str, amount: int) -> None:
        self.balances[address] += amount
        self.network_balance -= amount

    def _take(self, address: str, amount: int) -> None:
        self.balances[address] -= amount
        self.network_balance += amount

    def _token_balances(self) -> dict[str, int]:
        return {acc.address: self.d.token.balanceOf(acc.address) for acc in self.everyone}

    def _chain_view(self) -> tuple[Any, ...]:
        """Everything a reverted call must leave unchanged."""
        network = self.d.network
        view: list[Any] = [self.d.token.balanceOf(network.address), self._token_balances()]
        for ch in self.channels:
            a, b = (side.account.address for side in ch.sides)
            view += [
                network.get_channel(a, b),
                network.get_participant(a, b),
                network.get_participant(b, a),
            ]
        for p in self.pending:
            view.append(self._chain_retained(p))
        return tuple(view)

    def _chain_retained(self, p: Pending) -> int:
        lr = keccak256(encode_locks(p.locks))
        return self.d.network.get_unlock_amount(
            p.receiver.address, p.sender.address, p.generation, lr
        )

    def _reverts(self, reason: str, call: Any) -> None:
        """`call` must revert with `reason` and leave every balance and channel unchanged."""
        before = self._chain_view()
        try:
            call()
        except boa.BoaError as error:
            assert reason in str(error), f"reverted, but not with {reason!r}: {error}"
        else:
            raise AssertionError(f"expected a revert with {reason!r}")
        assert self._chain_view() == before, "a reverted call changed state"

    def _settle_call(self, c: int, first: int, caller: Account) -> None:
        ch = self.channels[c]
        a, b = ch.sides[first], ch.sides[1 - first]
        self.d.settle(a.account, a.onchain, b.account, b.onchain, sender=caller)

    def _expected_settle(self, c: int) -> tuple[SettlementPayout, list[tuple[int, int]]]:
        """Oracle payouts from the proofs on chain, and each side's (kept, reward)."""
        ch = self.channels[c]
        s0, s1 = ch.sides
        payout = settlement_payout(totals(s0, s0.onchain), totals(s1, s1.onchain))
        split = []
        for side, share in zip(ch.sides, (payout.payout1, payout.payout2), strict=True):
            reward = side.delegation[1] if side.delegation else 0
            split.append(apply_reward(share, reward))
        return payout, split

    def _record_check(self, record: SettleRecord) -> None:
        """I-C2 and I-C3 for a settle whose retained locks are all unlocked."""
        record.checked = True
        if record.byzantine:
            return
        (t0, locks0), (t1, locks1) = record.latest
        fair = settlement_payout(t0, t1)
        retained = (fair.locked_retained1, fair.locked_retained2)
        entitled = [fair.payout1, fair.payout2]
        for i, locks in ((0, locks0), (1, locks1)):
            reveal = record.snapshots[i]
            reveal = dict(self.reveal) if reveal is None else reveal
            to_receiver, to_sender = unlock_split(locks, reveal, retained[i])
            entitled[1 - i] += to_receiver
            entitled[i] += to_sender
        for i in (0, 1):
            got, fair_share = record.received[i], entitled[i]
            if record.own_latest_onchain[i]:
                assert got <= fair_share, f"I-C2: side {i} got {got} > entitled {fair_share}"
            if record.own_latest_onchain[1 - i]:
                assert got >= fair_share, f"I-C3: side {i} got {got} < entitled {fair_share}"
        record.checked = True

    # --- channel lifecycle ---------------------------------------------------------

    @precondition(lambda self: self._in_state(NONE))
    @rule(pick=PICK, second=st.booleans(), window=WINDOW, deposit=st.one_of(st.just(0), AMOUNT))
    def open_channel(self, pick: int, second: bool, window: int, deposit: int) -> None:
        """Open a channel with a window within the bounds, with or without a deposit."""
        c = _pick(self._in_state(NONE), pick)
        ch = self.channels[c]
        opener, partner = ch.sides[int(second)].account, ch.sides[1 - int(second)].account
        with boa.env.prank(opener.address):
            if deposit:
                self.d.network.open_channel_with_deposit(partner.address, window, deposit)
            else:
                self.d.network.open_channel(partner.address, window)
        ch.state, ch.generation, ch.window = OPENED, ch.generation + 1, window
        ch.sides[int(second)].deposit = deposit
        self._take(opener.address, deposit)

    @precondition(lambda self: self._in_state(OPENED))
    @rule(
        pick=PICK,
        side=st.integers(0, 1),
        withdraw=st.booleans(),
        by_partner=st.booleans(),
        amount=AMOUNT,
        fraction=FRACTION,
    )
    def deposit_or_withdraw(
        self, pick: int, side: int, withdraw: bool, by_partner: bool, amount: int, fraction: int
    ) -> None:
        """Raise a deposit by `amount`, paid by the side itself or (set_total_deposit allows
        it) its partner; or (withdraw) both sign a withdraw of `fraction` percent of what
        the withdrawer's off-chain balance allows."""
        if withdraw and self._senders():
            c, i = _pick(self._senders(), pick)
            ch = self.channels[c]
            me, other = ch.sides[i], ch.sides[1 - i]
            amount = max(1, ch.available(i) * fraction // 100)
            self.d.withdraw(me.account, other.account, me.withdrawn + amount)
            me.withdrawn += amount
            self._pay(me.account.address, amount)
            return
        ch = self.channels[_pick(self._in_state(OPENED), pick)]
        me, other = ch.sides[side], ch.sides[1 - side]
        payer = other.account if by_partner else me.account
        with boa.env.prank(payer.address):
            self.d.network.set_total_deposit(
                me.account.address, other.account.address, me.deposit + amount
            )
        me.deposit += amount
        self._take(payer.address, amount)

    def _coop_candidates(self) -> list[int]:
        """Open channels that saw a transfer and have no lock pending."""
        return [
            c
            for c in self._active()
            if not self.channels[c].byzantine and not any(s.locks for s in self.channels[c].sides)
        ]

    @precondition(lambda self: self._coop_candidates())
    @rule(pick=PICK, side=st.integers(0, 1), caller=st.integers(0, 4))
    def cooperative_settle(self, pick: int, side: int, caller: int) -> None:
        """Both sign final total withdraws W + available (no lock pending); each is paid
        its available balance."""
        self.invalid_budget += 1
        c = _pick(self._coop_candidates(), pick)
        ch = self.channels[c]
        me, other = ch.sides[side], ch.sides[1 - side]
        total_me = me.withdrawn + ch.available(side)
        total_other = other.withdrawn + ch.available(1 - side)
        payouts = cooperative_payouts(
            me.deposit, other.deposit, me.withdrawn, other.withdrawn, total_me, total_other
        )
        assert payouts == (ch.available(side), ch.available(1 - side))
        expiration = harness.now() + 600
        sign = self.d.sign_coop
        sig_me = sign(me.account, me.account, other.account, total_me, total_other, expiration)
        sig_other = sign(
            other.account, me.account, other.account, total_me, total_other, expiration
        )
        with boa.env.prank(self.everyone[caller].address):
            self.d.network.cooperative_settle(
                me.account.address,
                other.account.address,
                total_me,
                total_other,
                expiration,
                sig_me,
                sig_other,
            )
        self._pay(me.account.address, payouts[0])
        self._pay(other.account.address, payouts[1])
        ch.reset()

    # --- off chain -------------------------------------------------------------------

    def _resolvable_locks(self) -> list[tuple[int, int, int]]:
        return self._open_locks(expired=False) + self._open_locks(expired=True)

    @precondition(lambda self: self._senders() or self._resolvable_locks())
    @rule(
        pick=PICK,
        kind=st.sampled_from(["transfer", "lock", "resolve"]),
        fraction=FRACTION,
        lifetime=st.integers(1, 3 * 3600),
    )
    def offchain(self, pick: int, kind: str, fraction: int, lifetime: int) -> None:
        """One off-chain step and the sender's new proof (nonce + 1): a completed transfer
        (T rises by `fraction` percent of the sender's available balance), a pending lock
        with a fresh secret and expiry, or the resolution of a lock: unlocked if not yet
        expired (the secret is known; it moves into T), dropped if expired and its secret
        can no longer count on chain (L falls)."""
        if (kind == "resolve" and self._resolvable_locks()) or not self._senders():
            c, i, k = _pick(self._resolvable_locks(), pick)
            side = self.channels[c].sides[i]
            lock = side.locks.pop(k)
            if harness.now() <= lock.expiration:
                side.transferred += lock.amount
            self._sign(c, i)
            return
        c, i = _pick(self._senders(), pick)
        ch = self.channels[c]
        side = ch.sides[i]
        amount = max(1, ch.available(i) * fraction // 100)
        if kind == "lock":
            secret = keccak256(b"secret" + len(self.secrets).to_bytes(4, "big"))
            lock = Lock(harness.now() + lifetime, amount, sha256(secret))
            self.secrets.append((secret, lock))
            side.locks.append(lock)
        else:
            side.transferred += amount
        self._sign(c, i)

    @precondition(lambda self: self._in_state(OPENED))
    @rule(
        pick=PICK,
        side=st.integers(0, 1),
        transferred=WILD,
        locked=st.one_of(st.none(), WILD),
        locks=st.sampled_from(["none", "current", "fresh"]),
        amounts=st.lists(WILD, min_size=1, max_size=3),
        lifetime=st.integers(1, 3 * 3600),
        last_nonce=st.booleans(),
    )
    def sign_arbitrary(
        self,
        pick: int,
        side: int,
        transferred: int,
        locked: int | None,
        locks: str,
        amounts: list[int],
        lifetime: int,
        last_nonce: bool,
    ) -> None:
        """A byzantine side signs a proof with any T and L (up to 2**256 - 1), locks that need
        not add up to L (none at all, its current ones, or fresh ones of any amount), and
        the next nonce or the last one (2**64 - 1). Its partner may then close or update
        with it; every invariant but the entitlement bounds of I-C2/I-C3 must still hold
        (I-C4: settle saturates instead of reverting). The channel takes no more honest
        off-chain steps."""
        c = _pick(self._in_state(OPENED), pick)
        ch = self.channels[c]
        me, other = ch.sides[side], ch.sides[1 - side]
        if me.nonce == UINT64_MAX:
            return  # no nonce left to sign with
        chosen: list[Lock] = []
        if locks == "current":
            chosen = list(me.locks)
        elif locks == "fresh":
            for amount in amounts:
                secret = keccak256(b"secret" + len(self.secrets).to_bytes(4, "big"))
                lock = Lock(harness.now() + lifetime, amount, sha256(secret))
                self.secrets.append((secret, lock))
                chosen.append(lock)
        if locked is None:  # consistent with its locks, as far as a uint256 goes
            locked = min(sum(lock.amount for lock in chosen), UINT256_MAX)
        nonce = UINT64_MAX if last_nonce else me.nonce + 1
        me.proofs.append(
            self.d.proof(
                me.account,
                other.account,
                nonce,
                transferred,
                chosen,
                locked=locked,
                additional_hash=keccak256(b"byzantine" + nonce.to_bytes(8, "big")),
                generation=ch.generation,
            )
        )
        ch.byzantine = True

    # --- close, update, settle, unlock ----------------------------------------------

    def _active(self) -> list[int]:
        """Open channels in which a proof was signed: closing is interesting only there
        (a stale close may still submit no proof at all)."""
        return [c for c in self._in_state(OPENED) if any(s.proofs for s in self.channels[c].sides)]

    @precondition(lambda self: self._active())
    @rule(
        pick=PICK, side=st.integers(0, 1), stale=st.booleans(), age=PICK, third_party=st.booleans()
    )
    def close(self, pick: int, side: int, stale: bool, age: int, third_party: bool) -> None:
        """Close with the partner's latest proof or (stale) an older one, or none."""
        self.invalid_budget += 1
        c = _pick(self._active(), pick)
        ch = self.channels[c]
        closer, partner = ch.sides[side], ch.sides[1 - side]
        count = len(partner.proofs)
        index = age % (count + 1) if stale else count  # 0: no proof
        proof = partner.proofs[index - 1] if index else None
        sender = self.w.delegate if third_party else closer.account
        self.d.close(closer.account, partner.account, proof, sender=sender)
        ch.state, ch.closer = CLOSED, side
        ch.deadline = harness.now() + ch.window
        partner.onchain = proof

    @precondition(lambda self: self._updatable())
    @rule(pick=PICK, age=PICK, how=st.sampled_from(["self", "delegate", "anyone"]), reward=REWARD)
    def update(self, pick: int, age: int, how: str, reward: int) -> None:
        """Submit the closer's latest proof, or an older one still newer than on chain."""
        self.invalid_budget += 1
        c = _pick(self._updatable(), pick)
        ch = self.channels[c]
        assert ch.closer is not None
        closer, me = ch.sides[ch.closer], ch.sides[1 - ch.closer]
        newer = [p for p in closer.proofs if p.nonce > closer.onchain_nonce]
        proof = newer[-1 - age % len(newer)]
        if how == "self":
            self.d.update(me.account, closer.account, proof)
            me.delegation = None
        else:
            named = ZERO_ADDRESS if how == "anyone" else self.w.delegate.address
            self.d.update(
                me.account,
                closer.account,
                proof,
                sender=self.w.delegate,
                delegate=named,
                reward=reward,
            )
            me.delegation = (self.w.delegate.address, reward)
        closer.onchain = proof

    @precondition(lambda self: self._in_state(CLOSED))
    @rule(pick=PICK, first=st.integers(0, 1), caller=st.integers(0, 4))
    def settle(self, pick: int, first: int, caller: int) -> None:
        """Settle with the proofs on chain, first waiting for the window's end if needed;
        must succeed (I-C4) and pay as predicted."""
        self.invalid_budget += 1
        c = _pick(self._in_state(CLOSED), pick)
        ch = self.channels[c]
        if harness.now() <= ch.deadline:
            boa.env.time_travel(seconds=ch.deadline + 1 - harness.now())
        payout, split = self._expected_settle(c)
        before = self._token_balances()
        try:
            self._settle_call(c, first, self.everyone[caller])
        except boa.BoaError as error:
            raise AssertionError(f"I-C4: settle reverted for a reachable state: {error}") from error
        after = self._token_balances()
        delegate = self.w.delegate.address
        # I-C5, measured on chain: the delegate got at most each authorized reward and
        # share, and exactly what apply_reward predicts.
        paid_to_delegate = after[delegate] - before[delegate]
        authorized = sum(side.delegation[1] for side in ch.sides if side.delegation)
        shares = (payout.payout1, payout.payout2)
        assert paid_to_delegate == sum(d for _, d in split)
        assert paid_to_delegate <= authorized
        for side, share, (kept, reward) in zip(ch.sides, shares, split, strict=True):
            assert reward <= share
            assert reward <= (side.delegation[1] if side.delegation else 0)
            assert after[side.account.address] - before[side.account.address] == kept
            self._pay(side.account.address, kept)
            self._pay(delegate, reward)
        self.rewards_paid += paid_to_delegate
        self.rewards_authorized += authorized

        retained = (payout.locked_retained1, payout.locked_retained2)
        record = SettleRecord(
            latest=tuple(
                (ParticipantTotals(s.deposit, s.withdrawn, s.transferred, s.locked), list(s.locks))
                for s in ch.sides
            ),
            own_latest_onchain=tuple(s.onchain_nonce == s.nonce for s in ch.sides),
            received=list(shares),
            snapshots=[None, None],
            open_directions={i for i in (0, 1) if retained[i] > 0},
            byzantine=ch.byzantine,
        )
        self.records.append(record)
        for i in record.open_directions:
            sender, receiver = ch.sides[i], ch.sides[1 - i]
            assert sender.onchain is not None
            self.pending.append(
                Pending(
                    record,
                    receiver.account,
                    sender.account,
                    i,
                    ch.generation,
                    list(sender.onchain.locks),
                    retained[i],
                )
            )
        ch.reset()

    @precondition(lambda self: self.pending)
    @rule(pick=PICK, caller=st.integers(0, 4))
    def unlock(self, pick: int, caller: int) -> None:
        """Unlock one sender's retained locks: claimed ones to the receiver, the rest back."""
        self.invalid_budget += 1
        p = _pick(self.pending, pick)
        to_receiver, to_sender = unlock_split(p.locks, self.reveal, p.retained)
        self.d.unlock(p.receiver, p.sender, p.generation, p.locks, caller=self.everyone[caller])
        self._pay(p.receiver.address, to_receiver)
        self._pay(p.sender.address, to_sender)
        record = p.record
        record.received[1 - p.sender_index] += to_receiver
        record.received[p.sender_index] += to_sender
        record.snapshots[p.sender_index] = dict(self.reveal)
        record.open_directions.discard(p.sender_index)
        self.pending.remove(p)
        self.unlocked.append(p)

    # --- secrets and time ----------------------------------------------------------------

    def _unregistered(self) -> list[tuple[bytes, Lock]]:
        return [(s, lock) for s, lock in self.secrets if lock.secrethash not in self.reveal]

    @precondition(lambda self: self._unregistered())
    @rule(pick=PICK)
    def register_secret(self, pick: int) -> None:
        """Register a secret, before or after its lock's expiry as time has gone."""
        secret, lock = _pick(self._unregistered(), pick)
        self.d.register_secret(secret)
        self.reveal[lock.secrethash] = harness.now()

    @precondition(lambda self: self._in_state(CLOSED) or self.secrets)
    @rule(
        seconds=st.integers(1, 3 * 3600),
        to_edge=st.booleans(),
        pick=PICK,
        offset=st.integers(-1, 2),
    )
    def time_travel(self, seconds: int, to_edge: bool, pick: int, offset: int) -> None:
        """Let time pass: some seconds, or (to_edge) to just before, at or after a settle
        deadline or a lock expiration. Time matters only to closed channels and locks."""
        if to_edge:
            edges = [self.channels[c].deadline for c in self._in_state(CLOSED)]
            edges += [lock.expiration for _, lock in self.secrets]
            seconds = _pick(edges, pick) + offset - harness.now()
        if seconds > 0:
            boa.env.time_travel(seconds=seconds)

    # --- invalid calls: each reverts with its reason and changes nothing ------------------

    def _invalid_groups(self) -> list[Any]:
        groups = []
        if self._in_state(OPENED):
            groups.append(self._invalid_on_open_channel)
        if self._in_state(CLOSED):
            groups.append(self._invalid_on_closed_channel)
        if self.pending or self.unlocked:
            groups.append(self._invalid_unlock)
        return groups

    @precondition(lambda self: self.invalid_budget > 0 and self._invalid_groups())
    @rule(group=PICK, pick=PICK, side=st.integers(0, 1), kind=st.integers(0, 10))
    def invalid_call(self, group: int, pick: int, side: int, kind: int) -> None:
        """A call that must revert with its reason and change nothing: on an open channel,
        on a closed one, or an unlock."""
        self.invalid_budget -= 1
        _pick(self._invalid_groups(), group)(pick, side, kind)

    def _invalid_on_open_channel(self, pick: int, side: int, kind: int) -> None:
        c = _pick(self._in_state(OPENED), pick)
        ch = self.channels[c]
        me, other = ch.sides[side], ch.sides[1 - side]
        d, net = self.d, self.d.network
        a, b = me.account, other.account
        now = harness.now()

        def as_(account: Account, fn: Any, *args: Any) -> Any:
            def call() -> None:
                with boa.env.prank(account.address):
                    fn(*args)

            return call

        if kind == 0:
            self._reverts(
                "total deposit must rise",
                as_(a, net.set_total_deposit, a.address, b.address, me.deposit),
            )
        elif kind == 1:
            too_much = me.deposit + other.deposit - other.withdrawn + 1
            self._reverts("withdraw exceeds deposits", lambda: d.withdraw(a, b, too_much))
        elif kind == 2:
            self._reverts(
                "withdraw expired", lambda: d.withdraw(a, b, me.withdrawn + 1, expiration=now - 1)
            )
        elif kind == 3:
            self._reverts("total withdraw must rise", lambda: d.withdraw(a, b, me.withdrawn))
        elif kind == 4:
            # Final totals one token above both deposits, or one below what was withdrawn.
            deposits = me.deposit + other.deposit
            total_a = me.withdrawn - 1 if me.withdrawn else me.withdrawn + ch.available(side)
            total_b = deposits - total_a if me.withdrawn else deposits + 1 - total_a
            reason = "total withdraw below withdrawn" if me.withdrawn else "payouts must add up"
            exp = now + 600
            sig_a = d.sign_coop(a, a, b, total_a, total_b, exp)
            sig_b = d.sign_coop(b, a, b, total_a, total_b, exp)
            self._reverts(
                reason,
                as_(
                    a,
                    net.cooperative_settle,
                    a.address,
                    b.address,
                    total_a,
                    total_b,
                    exp,
                    sig_a,
                    sig_b,
                ),
            )
        elif kind == 5:
            self._reverts("channel exists", as_(a, net.open_channel, b.address, ch.window))
        elif kind == 6:
            window = harness.SETTLE_MAX + 1 if side else harness.SETTLE_MIN - 1
            reason = "settle window too long" if side else "settle window too short"
            self._reverts(reason, as_(a, net.open_channel, b.address, window))
        elif kind == 7:
            # A third party closes with a Close signed by the wrong participant.
            proof = other.proofs[-1] if other.proofs else None
            args = (
                (proof.nonce, proof.balance_hash, proof.additional_hash, proof.signature)
                if proof
                else (0, ZERO32, ZERO32, b"")
            )
            bad = d.sign_close(b, a, proof)
            self._reverts(
                "invalid closing signature",
                as_(self.w.delegate, net.close_channel, a.address, b.address, *args, bad),
            )
        elif kind == 8:
            # The closer's own proof is not its partner's.
            own = d.proof(a, b, 1, me.transferred, generation=ch.generation)
            self._reverts("invalid balance proof signature", lambda: d.close(a, b, own))
        elif kind == 9 or not [p for p in ch.retired if p.signer == b]:
            self._reverts(
                "channel not closed", lambda: d.settle(a, None, b, None, sender=self.w.delegate)
            )
        else:
            # I-C6: a proof of an earlier generation of the same pair does not verify.
            old = [p for p in ch.retired if p.signer == b][-1]
            self._reverts("invalid balance proof signature", lambda: d.close(a, b, old))

    def _invalid_on_closed_channel(self, pick: int, _side: int, kind: int) -> None:
        c = _pick(self._in_state(CLOSED), pick)
        ch = self.channels[c]
        assert ch.closer is not None
        closer, me = ch.sides[ch.closer], ch.sides[1 - ch.closer]
        d, net = self.d, self.d.network
        x, y = closer.account, me.account
        over = harness.now() > ch.deadline
        if kind == 0:
            self._reverts("channel not open", lambda: d.close(y, x, None))
        elif kind == 1:

            def call() -> None:
                with boa.env.prank(y.address):
                    net.set_total_deposit(y.address, x.address, me.deposit + 1)

            self._reverts("channel not open", call)
        elif kind == 2:
            # An update no newer than what is on chain (or after the window).
            stale = closer.onchain or d.proof(x, y, 0, generation=ch.generation)
            reason = "settle window over" if over else "proof not newer"
            self._reverts(reason, lambda: d.update(y, x, stale))
        elif kind == 3:
            # A delegate not named in the delegation.
            # (If the last nonce is on chain, no proof can be newer.)
            spent = closer.onchain_nonce == UINT64_MAX
            nonce = closer.onchain_nonce if spent else closer.onchain_nonce + 1
            proof = d.proof(x, y, nonce, generation=ch.generation)
            reason = "proof not newer" if spent else "not the named delegate"
            reason = "settle window over" if over else reason
            self._reverts(
                reason,
                lambda: d.update(y, x, proof, sender=self.w.delegate, delegate=y.address, reward=1),
            )
        elif kind == 4:
            # The closer cannot update its own close.
            proof = me.proofs[-1] if me.proofs else d.proof(y, x, 1, generation=ch.generation)
            reason = "settle window over" if over else "not the closing participant"
            self._reverts(reason, lambda: d.update(x, y, proof))
        elif kind == 5:
            # Settle with balance data other than the proofs on chain.
            transferred = (me.onchain.transferred + 1) % 2**256 if me.onchain else 1
            wrong = d.proof(y, x, 99, transferred, generation=ch.generation)
            reason = "balance data" if over else "settle window not over"
            self._reverts(reason, lambda: d.settle(x, closer.onchain, y, wrong))
        elif kind == 6:
            reason = "settle window over" if over else "settle window not over"
            if over:
                proof = (
                    closer.proofs[-1]
                    if closer.proofs
                    else d.proof(x, y, 1, generation=ch.generation)
                )
                self._reverts(reason, lambda: d.update(y, x, proof))
            else:
                self._reverts(reason, lambda: self._settle_call(c, 0, x))
        elif kind == 7:
            exp = harness.now() + 600
            tad = closer.deposit + me.deposit - closer.withdrawn - me.withdrawn
            sig_x = d.sign_coop(x, x, y, tad, 0, exp)
            sig_y = d.sign_coop(y, x, y, tad, 0, exp)

            def coop() -> None:
                with boa.env.prank(x.address):
                    net.cooperative_settle(x.address, y.address, tad, 0, exp, sig_x, sig_y)

            self._reverts("channel not open", coop)
        else:
            self._reverts("channel not open", lambda: d.withdraw(x, y, closer.withdrawn + 1))

    def _invalid_unlock(self, pick: int, _side: int, kind: int) -> None:
        p = _pick(self.pending + self.unlocked, pick)
        d = self.d
        kind %= 3
        if kind == 0 and p in self.unlocked:
            self._reverts(
                "nothing to unlock", lambda: d.unlock(p.receiver, p.sender, p.generation, p.locks)
            )
        elif kind == 1 and (p.locks or p in self.unlocked):
            # The empty list names the empty locksroot, not this sender's locks.
            self._reverts(
                "nothing to unlock", lambda: d.unlock(p.receiver, p.sender, p.generation, [])
            )
        else:
            # Not the locks of the proof on chain (one more lock): a different locksroot.
            extra = [*p.locks, Lock(1, 1, bytes(32))]
            self._reverts(
                "nothing to unlock", lambda: d.unlock(p.receiver, p.sender, p.generation, extra)
            )

    # --- invariants ----------------------------------------------------------------------

    @invariant()
    def model_matches_chain(self) -> None:
        """Every channel's on-chain view is the model's."""
        net = self.d.network
        for ch in self.channels:
            a, b = (side.account for side in ch.sides)
            info = net.get_channel(a.address, b.address)
            assert (info.state, info.generation) == (ch.state, ch.generation)
            expected_settle = ch.deadline if ch.state == CLOSED else ch.window
            assert info.settle_window_or_deadline == expected_settle
            closer = ch.sides[ch.closer].account.address if ch.closer is not None else ZERO_ADDRESS
            assert str(info.closer) == closer
            for side, partner in ((ch.sides[0], b), (ch.sides[1], a)):
                p = net.get_participant(side.account.address, partner.address)
                assert (p.deposit, p.withdrawn) == (side.deposit, side.withdrawn)
                bh = side.onchain.balance_hash if side.onchain else ZERO32
                assert (p.nonce, bytes(p.balance_hash)) == (side.onchain_nonce, bh)
                if side.delegation:
                    assert (str(p.delegate), p.reward) == side.delegation
                else:
                    assert (int(p.delegate, 16), p.reward) == (0, 0)

    @invariant()
    def conservation(self) -> None:
        """I-C1: the network holds TAD of every open or closed channel plus retained locks.
        I-C7: W1 + W2 <= D1 + D2 in every channel."""
        net = self.d.network
        owed = 0
        for ch in self.channels:
            a, b = (side.account.address for side in ch.sides)
            p, q = net.get_participant(a, b), net.get_participant(b, a)
            assert p.withdrawn + q.withdrawn <= p.deposit + q.deposit
            if net.get_channel(a, b).state != NONE:
                owed += p.deposit + q.deposit - p.withdrawn - q.withdrawn
            else:
                assert (p.deposit, q.deposit, p.withdrawn, q.withdrawn) == (0, 0, 0, 0)
        for pending in self.pending:
            retained = self._chain_retained(pending)
            assert retained == pending.retained
            owed += retained
        for done in self.unlocked:
            assert self._chain_retained(done) == 0
        held = self.d.token.balanceOf(net.address)
        assert held == owed == self.network_balance

    @invariant()
    def balances_as_entitled(self) -> None:
        """I-C2: every account holds what the model computes from the proofs on chain."""
        assert self._token_balances() == self.balances

    @invariant()
    def newer_proof_wins(self) -> None:
        """I-C2 and I-C3 for every settle whose locks are all unlocked."""
        for record in self.records:
            if not record.checked and not record.open_directions:
                self._record_check(record)

    @invariant()
    def settle_always_possible(self) -> None:
        """I-C4: every closed channel settles once its window is over, as the oracle says."""
        for c in self._in_state(CLOSED):
            payout, split = self._expected_settle(c)
            ch = self.channels[c]
            with boa.env.anchor():
                if harness.now() <= ch.deadline:
                    boa.env.time_travel(seconds=ch.deadline + 1 - harness.now())
                before = self._token_balances()
                try:
                    self._settle_call(c, 0, self.w.delegate)
                except boa.BoaError as error:
                    raise AssertionError(f"I-C4: settle would revert: {error}") from error
                after = self._token_balances()
                for side, (kept, _) in zip(ch.sides, split, strict=True):
                    address = side.account.address
                    assert after[address] - before[address] == kept
                held = self.d.token.balanceOf(self.d.network.address)
                assert held == self.network_balance - payout.payout1 - payout.payout2

    @invariant()
    def delegate_within_reward(self) -> None:
        """I-C5: the delegate holds exactly the rewards paid, never above those authorized."""
        assert self.d.token.balanceOf(self.w.delegate.address) == self.rewards_paid
        assert self.rewards_paid <= self.rewards_authorized

    def check_all(self) -> None:
        """Every invariant at once, for the plain regression replays."""
        self.model_matches_chain()
        self.conservation()
        self.balances_as_entitled()
        self.newer_proof_wins()
        self.settle_always_possible()
        self.delegate_within_reward()


EXAMPLES_PER_PROFILE_EXAMPLE = 4
"""A run of 30 steps costs about as much as a unit example; the loaded profile's count is
scaled so that "ci" (40) takes about two minutes and "fuzz" (2000) a couple of hours."""

TestTokenNetwork = TokenNetworkMachine.TestCase
TestTokenNetwork.settings = settings(
    parent=settings.default,
    max_examples=settings.default.max_examples * EXAMPLES_PER_PROFILE_EXAMPLE,
    stateful_step_count=30,
)
