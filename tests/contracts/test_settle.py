"""Unit tests of `settle_channel` of the token network.

What belongs here: the payouts of a closed channel after its window, checked against the
Python oracle `offchain.protocol.settlement.settlement_payout` over several scenarios
(no proofs, one-way and two-way transfers, pending locks, claims beyond the deposits,
withdraws before close), argument order, who may call, the delegate's reward and its cap,
the event, the channel cleared afterwards, and every revert: window not over, not
closed, settled twice, balance data not matching the proof or given without one.
What must not: how retained lock amounts are later paid (test_unlock.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boa
import pytest

from offchain.protocol.crypto import sha256
from offchain.protocol.locks import Lock, locksroot
from offchain.protocol.settlement import ParticipantTotals, apply_reward, settlement_payout
from tests.lib.harness import SETTLE_WINDOW, ZERO32, ZERO_ADDRESS, Account, Deployment, now

UINT256_MAX = 2**256 - 1


def _events(contract: Any, name: str) -> list[Any]:
    # Logs of the contract's LAST call: read them before any other call, a view included.
    return [e for e in contract.get_logs() if type(e).__name__ == name]


def _locks(*amounts: int) -> list[Lock]:
    expiration = now() + 10 * SETTLE_WINDOW
    return [
        Lock(expiration + i, amount, sha256(b"settle-secret-%d-%d" % (i, amount)))
        for i, amount in enumerate(amounts)
    ]


@dataclass(frozen=True)
class Scenario:
    """What happens before settle: a closes with b's proof (if any), b updates with a's."""

    deposit_a: int
    deposit_b: int
    withdraw_a: int = 0
    withdraw_b: int = 0
    transferred_a: int | None = None  # None: a's proof never reaches the chain
    locks_a: tuple[int, ...] = ()
    transferred_b: int | None = None
    locks_b: tuple[int, ...] = ()


SCENARIOS = {
    "no_proofs": Scenario(100, 50),
    "one_way_b_to_a": Scenario(100, 50, transferred_b=30),
    "one_way_a_to_b": Scenario(100, 50, transferred_a=70),
    "both_ways": Scenario(100, 50, transferred_a=20, transferred_b=45),
    "pending_locks_both_ways": Scenario(
        100, 50, transferred_a=10, locks_a=(15, 5), transferred_b=5, locks_b=(8,)
    ),
    "transferred_beyond_deposits": Scenario(100, 50, transferred_a=10**6, transferred_b=3),
    "locks_beyond_the_share": Scenario(40, 0, transferred_a=0, locks_a=(60, 40)),
    "saturating_claims": Scenario(
        100, 50, transferred_a=UINT256_MAX, locks_a=(7,), transferred_b=UINT256_MAX - 1
    ),
    "withdraw_before_close": Scenario(
        100, 50, withdraw_a=30, withdraw_b=10, transferred_a=20, transferred_b=50
    ),
}


@dataclass
class Closed:
    a: Account
    b: Account
    cid: bytes
    proof_a: Any
    proof_b: Any
    payout_a: int
    payout_b: int
    retained_a: int
    retained_b: int


def _prepare(d: Deployment, a: Account, b: Account, sc: Scenario) -> Closed:
    """Open, withdraw, close and update as `sc` says, let the window pass, and return the
    payouts the oracle predicts for a and b."""
    cid = d.open(a, b, deposit_a=sc.deposit_a, deposit_b=sc.deposit_b)
    if sc.withdraw_a:
        d.withdraw(a, b, sc.withdraw_a)
    if sc.withdraw_b:
        d.withdraw(b, a, sc.withdraw_b)
    proof_a = proof_b = None
    if sc.transferred_a is not None:
        proof_a = d.proof(a, b, nonce=1, transferred=sc.transferred_a, locks=_locks(*sc.locks_a))
    if sc.transferred_b is not None:
        proof_b = d.proof(b, a, nonce=1, transferred=sc.transferred_b, locks=_locks(*sc.locks_b))
    d.close(a, b, proof_b)
    if proof_a is not None:
        d.update(b, a, proof_a)
    boa.env.time_travel(seconds=SETTLE_WINDOW + 1)

    totals_a = ParticipantTotals(
        sc.deposit_a, sc.withdraw_a, sc.transferred_a or 0, proof_a.locked if proof_a else 0
    )
    totals_b = ParticipantTotals(
        sc.deposit_b, sc.withdraw_b, sc.transferred_b or 0, proof_b.locked if proof_b else 0
    )
    if a.raw < b.raw:
        p = settlement_payout(totals_a, totals_b)
        payout_a, payout_b, retained_a, retained_b = (
            p.payout1,
            p.payout2,
            p.locked_retained1,
            p.locked_retained2,
        )
    else:
        p = settlement_payout(totals_b, totals_a)
        payout_a, payout_b, retained_a, retained_b = (
            p.payout2,
            p.payout1,
            p.locked_retained2,
            p.locked_retained1,
        )
    return Closed(a, b, cid, proof_a, proof_b, payout_a, payout_b, retained_a, retained_b)


def _balances(d, *accounts):
    return [d.token.balanceOf(x.address) for x in accounts]


def _settle_raw(d, sender, a, a_args, b, b_args):
    with boa.env.prank(sender.address):
        d.network.settle_channel(a.address, *a_args, b.address, *b_args)


# --- payouts against the oracle ----------------------------------------------------------------


@pytest.mark.parametrize("order", ["a_first", "b_first"])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_settle_channel__scenario__pays_what_the_oracle_predicts(d, funded, name, order):
    a, b = funded[0], funded[1]
    c = _prepare(d, a, b, SCENARIOS[name])
    before_a, before_b = _balances(d, a, b)
    held = d.token.balanceOf(d.network.address)

    if order == "a_first":
        d.settle(a, c.proof_a, b, c.proof_b)
    else:
        d.settle(b, c.proof_b, a, c.proof_a)

    assert _balances(d, a, b) == [before_a + c.payout_a, before_b + c.payout_b]
    assert d.token.balanceOf(d.network.address) == held - c.payout_a - c.payout_b
    assert c.payout_a + c.payout_b + c.retained_a + c.retained_b == held  # conservation
    if c.proof_a is not None:
        assert d.network.get_unlock_amount(b.address, a.address, 1, c.proof_a.locksroot) == (
            c.retained_a
        )
    if c.proof_b is not None:
        assert d.network.get_unlock_amount(a.address, b.address, 1, c.proof_b.locksroot) == (
            c.retained_b
        )


def test_settle_channel__pending_locks__event_reports_payouts_and_locked(d, funded):
    a, b = funded[0], funded[1]
    c = _prepare(d, a, b, SCENARIOS["pending_locks_both_ways"])

    d.settle(a, c.proof_a, b, c.proof_b)
    (event,) = _events(d.network, "ChannelSettled")

    first = a.raw < b.raw
    amounts = (c.payout_a, c.payout_b) if first else (c.payout_b, c.payout_a)
    locked = (c.retained_a, c.retained_b) if first else (c.retained_b, c.retained_a)
    assert (event.channel_id, event.generation) == (c.cid, 1)
    assert (event.participant1_amount, event.participant2_amount) == amounts
    assert (event.participant1_locked, event.participant2_locked) == locked
    assert c.retained_a == 20 and c.retained_b == 8
    assert _events(d.network, "DelegateRewarded") == []


def test_settle_channel__by_a_third_party__pays_the_participants_only(d, funded):
    a, b, anyone = funded[0], funded[1], funded[2]
    c = _prepare(d, a, b, SCENARIOS["both_ways"])
    before = _balances(d, a, b, anyone)

    d.settle(a, c.proof_a, b, c.proof_b, sender=anyone)

    assert _balances(d, a, b, anyone) == [before[0] + c.payout_a, before[1] + c.payout_b, before[2]]


def test_settle_channel__after_settle__channel_cleared_generation_kept(d, funded):
    a, b = funded[0], funded[1]
    c = _prepare(d, a, b, SCENARIOS["withdraw_before_close"])
    d.settle(a, c.proof_a, b, c.proof_b)

    channel = d.network.get_channel(a.address, b.address)
    assert (channel.state, channel.generation, channel.settle_window_or_deadline) == (0, 1, 0)
    assert channel.closer == ZERO_ADDRESS
    for x, y in ((a, b), (b, a)):
        info = d.network.get_participant(x.address, y.address)
        assert (info.deposit, info.withdrawn, info.nonce, info.reward) == (0, 0, 0, 0)
        assert (info.balance_hash, info.delegate) == (ZERO32, ZERO_ADDRESS)


# --- delegate reward ---------------------------------------------------------------------------


@pytest.fixture(params=["participant1", "participant2"])
def roles(request, funded):
    """(closer a, non-closer b, b's delegate); b is the lower or the higher address, so that
    both halves of the packed delegation and reward state are exercised."""
    low, high = sorted(funded[:2], key=lambda x: x.raw)
    b = low if request.param == "participant1" else high
    a = high if b is low else low
    return a, b, funded[2]


def _prepare_delegated(d, a, b, delegate, reward):
    """a closes with b's proof; b's delegate submits a's proof (a sent 30 to b)."""
    d.open(a, b, deposit_a=100, deposit_b=50)
    proof_b = d.proof(b, a, nonce=1, transferred=10)
    proof_a = d.proof(a, b, nonce=1, transferred=30)
    d.close(a, b, proof_b)
    d.update(b, a, proof_a, sender=delegate, reward=reward)
    boa.env.time_travel(seconds=SETTLE_WINDOW + 1)
    share_b = 50 + 30 - 10
    return proof_a, proof_b, share_b


def test_settle_channel__delegated_update__reward_paid_from_the_share(d, roles):
    a, b, delegate = roles
    proof_a, proof_b, share_b = _prepare_delegated(d, a, b, delegate, 12)
    before = _balances(d, a, b, delegate)
    b_gets, delegate_gets = apply_reward(share_b, 12)

    d.settle(a, proof_a, b, proof_b)
    (rewarded,) = _events(d.network, "DelegateRewarded")
    (settled,) = _events(d.network, "ChannelSettled")

    assert (b_gets, delegate_gets) == (share_b - 12, 12)
    assert _balances(d, a, b, delegate) == [
        before[0] + 150 - share_b,
        before[1] + b_gets,
        before[2] + delegate_gets,
    ]
    assert (rewarded.participant, rewarded.delegate, rewarded.reward) == (
        b.address,
        delegate.address,
        12,
    )
    b_amount = settled.participant2_amount if a.raw < b.raw else settled.participant1_amount
    assert b_amount == b_gets
    assert d.network.get_participant(b.address, a.address).delegate == ZERO_ADDRESS


def test_settle_channel__reward_larger_than_the_share__delegate_gets_the_share(d, roles):
    a, b, delegate = roles
    proof_a, proof_b, share_b = _prepare_delegated(d, a, b, delegate, 10**6)
    before = _balances(d, a, b, delegate)
    assert apply_reward(share_b, 10**6) == (0, share_b)

    d.settle(b, proof_b, a, proof_a)
    (rewarded,) = _events(d.network, "DelegateRewarded")

    assert rewarded.reward == share_b
    assert _balances(d, a, b, delegate) == [
        before[0] + 150 - share_b,
        before[1],
        before[2] + share_b,
    ]
    assert d.token.balanceOf(d.network.address) == 0


def test_settle_channel__delegation_cleared_by_the_non_closer__no_reward(d, roles):
    a, b, delegate = roles
    d.open(a, b, deposit_a=100, deposit_b=50)
    d.close(a, b, None)
    d.update(b, a, d.proof(a, b, nonce=1, transferred=5), sender=delegate, reward=9)
    proof_a = d.proof(a, b, nonce=2, transferred=30)
    d.update(b, a, proof_a)
    boa.env.time_travel(seconds=SETTLE_WINDOW + 1)
    before = _balances(d, a, b, delegate)

    d.settle(a, proof_a, b, None)

    assert _events(d.network, "DelegateRewarded") == []
    assert _balances(d, a, b, delegate) == [before[0] + 70, before[1] + 80, before[2]]


# --- reverts -----------------------------------------------------------------------------------


def test_settle_channel__at_exactly_the_deadline__reverts_window_not_over(d, funded):
    a, b = funded[0], funded[1]
    d.open(a, b, deposit_a=100)
    d.close(a, b, None)
    boa.env.time_travel(seconds=SETTLE_WINDOW)
    assert now() == d.network.get_channel(a.address, b.address).settle_window_or_deadline
    with boa.reverts("token_network: settle window not over"):
        d.settle(a, None, b, None)
    boa.env.time_travel(seconds=1)
    d.settle(a, None, b, None)
    assert d.network.get_channel(a.address, b.address).state == 0


def test_settle_channel__right_after_close__reverts_window_not_over(d, funded):
    a, b = funded[0], funded[1]
    d.open(a, b, deposit_a=100)
    d.close(a, b, None)
    with boa.reverts("token_network: settle window not over"):
        d.settle(a, None, b, None)


def test_settle_channel__channel_open__reverts_not_closed(d, funded):
    a, b = funded[0], funded[1]
    d.open(a, b, deposit_a=100)
    with boa.reverts("token_network: channel not closed"):
        d.settle(a, None, b, None)


def test_settle_channel__never_opened__reverts_not_closed(d, funded):
    a, b = funded[0], funded[1]
    with boa.reverts("token_network: channel not closed"):
        d.settle(a, None, b, None)


def test_settle_channel__twice__reverts_not_closed(d, funded):
    a, b = funded[0], funded[1]
    c = _prepare(d, a, b, SCENARIOS["both_ways"])
    d.settle(a, c.proof_a, b, c.proof_b)
    held = d.token.balanceOf(d.network.address)
    with boa.reverts("token_network: channel not closed"):
        d.settle(a, c.proof_a, b, c.proof_b)
    assert d.token.balanceOf(d.network.address) == held


@pytest.mark.parametrize("field", ["transferred", "locked", "locksroot"])
def test_settle_channel__balance_data_not_matching_the_proof__reverts(d, funded, field):
    a, b = funded[0], funded[1]
    c = _prepare(d, a, b, SCENARIOS["pending_locks_both_ways"])
    t, lk, root = c.proof_a.settle_args()
    wrong = {
        "transferred": (t + 1, lk, root),
        "locked": (t, lk - 1, root),
        "locksroot": (t, lk, locksroot(c.proof_a.locks[:1])),
    }[field]
    with boa.reverts("token_network: balance data does not match the proof"):
        _settle_raw(d, a, a, wrong, b, c.proof_b.settle_args())


def test_settle_channel__balance_data_of_the_other_participant__reverts(d, funded):
    a, b = funded[0], funded[1]
    c = _prepare(d, a, b, SCENARIOS["both_ways"])
    with boa.reverts("token_network: balance data does not match the proof"):
        _settle_raw(d, a, a, c.proof_b.settle_args(), b, c.proof_a.settle_args())


def test_settle_channel__balance_data_without_a_proof__reverts(d, funded):
    a, b = funded[0], funded[1]
    c = _prepare(d, a, b, SCENARIOS["one_way_b_to_a"])  # a's proof never submitted
    for claimed in ((1, 0, ZERO32), (0, 1, ZERO32)):
        with boa.reverts("token_network: balance data without a proof"):
            _settle_raw(d, a, a, claimed, b, c.proof_b.settle_args())
