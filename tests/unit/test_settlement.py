"""Unit tests of offchain.protocol.settlement: settle payouts, rewards, unlock, cooperative.

Properties cite the conservation invariant (payouts plus retained locks equal TAD); the
reference model is a line-by-line transcription of Raiden's
``TokenNetwork.getSettleTransferAmounts`` (Solidity, failsafe arithmetic).
"""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from offchain.protocol.errors import ValidationError
from offchain.protocol.locks import Lock
from offchain.protocol.settlement import (
    ParticipantTotals,
    SettlementPayout,
    apply_reward,
    cooperative_payouts,
    sat_add,
    sat_sub,
    settlement_payout,
    total_available_deposit,
    unlock_split,
)
from offchain.protocol.types import UINT256_MAX, SecretHash, Timestamp, TokenAmount

MAX = UINT256_MAX


def totals(d: int, w: int = 0, t: int = 0, lk: int = 0) -> ParticipantTotals:
    return ParticipantTotals(TokenAmount(d), TokenAmount(w), TokenAmount(t), TokenAmount(lk))


def raiden_reference(p1: ParticipantTotals, p2: ParticipantTotals) -> tuple[int, int, int, int]:
    """Raiden's Solidity, transcribed: returns (S1, S2, SL1, SL2) in the given order."""

    def failsafe_add(a: int, b: int) -> int:
        return a + b if a + b <= MAX else MAX

    def failsafe_sub(a: int, b: int) -> int:
        return a - b if a > b else 0

    swap = failsafe_add(p1.transferred, p1.locked) > failsafe_add(p2.transferred, p2.locked)
    x, y = (p2, p1) if swap else (p1, p2)
    tad = x.deposit + y.deposit - x.withdrawn - y.withdrawn
    x_max = failsafe_add(x.transferred, x.locked)
    y_max = failsafe_add(y.transferred, y.locked)
    assert y_max >= x_max
    x_receivable = failsafe_add(y_max - x_max, x.deposit)
    x_receivable = failsafe_sub(x_receivable, x.withdrawn)
    x_receivable = min(x_receivable, tad)
    y_receivable = tad - x_receivable
    y_locked = min(y.locked, x_receivable)
    x_amount = x_receivable - y_locked
    x_locked = min(x.locked, y_receivable)
    y_amount = y_receivable - x_locked
    if swap:
        return y_amount, x_amount, y_locked, x_locked
    return x_amount, y_amount, x_locked, y_locked


# -- strategies -------------------------------------------------------------------------

amounts_128 = st.integers(0, 2**128)
any_uint = st.one_of(st.integers(0, 1000), st.integers(0, 2**128), st.integers(0, MAX))


@st.composite
def channels(draw: st.DrawFn) -> tuple[ParticipantTotals, ParticipantTotals]:
    d1, d2 = draw(amounts_128), draw(amounts_128)
    w1 = draw(st.integers(0, min(d1 + d2, 2**128)))
    w2 = draw(st.integers(0, min(d1 + d2 - w1, 2**128)))
    p1 = totals(d1, w1, draw(any_uint), draw(any_uint))
    p2 = totals(d2, w2, draw(any_uint), draw(any_uint))
    return p1, p2


def _parts(out: SettlementPayout) -> tuple[int, int, int, int]:
    return out.payout1, out.payout2, out.locked_retained1, out.locked_retained2


# -- saturating arithmetic ----------------------------------------------------------------


def test_saturating_arithmetic() -> None:
    assert sat_add(MAX, 1) == MAX
    assert sat_add(MAX - 1, 1) == MAX
    assert sat_add(2, 3) == 5
    assert sat_sub(3, 5) == 0
    assert sat_sub(5, 3) == 2


# -- properties -----------------------------------------------------------------------------


@given(channels())
def test_conservation_payouts_and_retained_sum_to_tad(
    channel: tuple[ParticipantTotals, ParticipantTotals],
) -> None:
    p1, p2 = channel
    out = settlement_payout(p1, p2)
    tad = p1.deposit + p2.deposit - p1.withdrawn - p2.withdrawn
    assert total_available_deposit(p1, p2) == tad
    assert out.total == tad
    assert all(0 <= part <= tad for part in _parts(out))
    assert out.payout1 + out.locked_retained2 <= tad
    assert out.payout2 + out.locked_retained1 <= tad
    # Each side's retained locks never exceed what that side claimed to have locked.
    assert out.locked_retained1 <= p1.locked
    assert out.locked_retained2 <= p2.locked


@given(channels())
def test_matches_raiden_reference(channel: tuple[ParticipantTotals, ParticipantTotals]) -> None:
    assert _parts(settlement_payout(*channel)) == raiden_reference(*channel)


@given(channels())
def test_argument_order_does_not_matter(
    channel: tuple[ParticipantTotals, ParticipantTotals],
) -> None:
    p1, p2 = channel
    s1, s2, sl1, sl2 = _parts(settlement_payout(p1, p2))
    assert _parts(settlement_payout(p2, p1)) == (s2, s1, sl2, sl1)


@given(
    balance1=amounts_128,
    balance2=amounts_128,
    transferred1=amounts_128,
    transferred2=amounts_128,
    locked1=amounts_128,
    locked2=amounts_128,
    withdrawn1=amounts_128,
    withdrawn2=amounts_128,
)
def test_honest_channel_pays_each_its_balance(
    balance1: int,
    balance2: int,
    transferred1: int,
    transferred2: int,
    locked1: int,
    locked2: int,
    withdrawn1: int,
    withdrawn2: int,
) -> None:
    # Build deposits from the final balances, so the proofs are consistent with them.
    deposit1 = balance1 + withdrawn1 + transferred1 + locked1 - transferred2
    deposit2 = balance2 + withdrawn2 + transferred2 + locked2 - transferred1
    assume(deposit1 >= 0 and deposit2 >= 0)
    out = settlement_payout(
        totals(deposit1, withdrawn1, transferred1, locked1),
        totals(deposit2, withdrawn2, transferred2, locked2),
    )
    assert _parts(out) == (balance1, balance2, locked1, locked2)


# -- scenarios by hand ------------------------------------------------------------------------


def test_no_transfers_each_gets_deposit_minus_withdraw() -> None:
    out = settlement_payout(totals(10, 4), totals(5, 1))
    assert _parts(out) == (6, 4, 0, 0)


def test_p1_sent_three_to_p2() -> None:
    out = settlement_payout(totals(10, t=3), totals(5))
    assert _parts(out) == (7, 8, 0, 0)


def test_p2_sent_and_swap_restores_original_order() -> None:
    out = settlement_payout(totals(10), totals(5, t=2))
    assert _parts(out) == (12, 3, 0, 0)


def test_locks_pending_both_ways() -> None:
    # P1: sent 3, 2 locked to P2. P2: sent 1, 4 locked to P1. T+L is 5 on both sides.
    out = settlement_payout(totals(10, t=3, lk=2), totals(10, t=1, lk=4))
    assert _parts(out) == (6, 8, 2, 4)


def test_locks_pending_one_way_with_withdraw() -> None:
    out = settlement_payout(totals(10, w=2, t=1, lk=3), totals(4, w=1))
    # P1: 10 - 2 - 1 - 3 = 4 paid, 3 held for its lock; P2: 4 - 1 + 1 = 4.
    assert _parts(out) == (4, 4, 3, 0)


def test_overdrawn_proof_cannot_take_more_than_tad() -> None:
    # P2 holds a proof claiming P1 sent 1000 of its 10 tokens: P2 gets all of TAD, no more.
    out = settlement_payout(totals(10), totals(5, t=0))
    assert out.total == 15
    out = settlement_payout(totals(10, t=1000), totals(5))
    assert _parts(out) == (0, 15, 0, 0)


def test_saturated_claims_never_fail() -> None:
    out = settlement_payout(totals(7, t=MAX, lk=MAX), totals(3, t=MAX, lk=MAX))
    assert out.total == 10
    out = settlement_payout(totals(0, t=MAX), totals(2**128, lk=MAX))
    assert out.total == 2**128


def test_totals_reject_out_of_range() -> None:
    with pytest.raises(ValidationError):
        totals(-1)
    with pytest.raises(ValidationError):
        totals(0, t=MAX + 1)


# -- delegate reward ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("share", "reward", "expected"),
    [(10, 3, (7, 3)), (10, 10, (0, 10)), (2, 5, (0, 2)), (0, 5, (0, 0)), (9, 0, (9, 0))],
)
def test_apply_reward(share: int, reward: int, expected: tuple[int, int]) -> None:
    assert apply_reward(TokenAmount(share), TokenAmount(reward)) == expected


# -- unlock ---------------------------------------------------------------------------------------

SH = [SecretHash(bytes([i]) * 32) for i in range(1, 6)]
EXPIRY = Timestamp(1_000)
LOCKS = [
    Lock(EXPIRY, TokenAmount(amount), sh) for amount, sh in zip([1, 2, 4, 8, 16], SH, strict=True)
]


def test_unlock_claimable_only_if_revealed_in_time() -> None:
    reveal = {
        SH[0]: 500,  # in time
        SH[1]: 1_000,  # exactly at expiration: inclusive
        SH[2]: 1_001,  # too late
        SH[3]: 0,  # zero means never registered
        # SH[4] never revealed
    }
    assert unlock_split(LOCKS, reveal, TokenAmount(31)) == (3, 28)


def test_unlock_receiver_capped_at_retained() -> None:
    reveal = {sh: 1 for sh in SH}
    assert unlock_split(LOCKS, reveal, TokenAmount(10)) == (10, 0)
    assert unlock_split([], reveal, TokenAmount(10)) == (0, 10)


def test_unlock_saturates_huge_lock_amounts() -> None:
    big = [Lock(EXPIRY, TokenAmount(MAX), SH[0]), Lock(EXPIRY, TokenAmount(MAX), SH[1])]
    assert unlock_split(big, {SH[0]: 1, SH[1]: 1}, TokenAmount(5)) == (5, 0)


@given(
    st.lists(st.tuples(st.integers(0, 2**64 - 1), any_uint, st.integers(0, 4)), max_size=10),
    st.dictionaries(st.integers(0, 4), st.integers(0, 2**64 - 1)),
    any_uint,
)
def test_unlock_split_conserves_retained(
    raw_locks: list[tuple[int, int, int]], raw_reveal: dict[int, int], retained: int
) -> None:
    pending = [Lock(Timestamp(e), TokenAmount(a), SH[i]) for e, a, i in raw_locks]
    reveal = {SH[i]: t for i, t in raw_reveal.items()}
    to_receiver, to_sender = unlock_split(pending, reveal, TokenAmount(retained))
    assert to_receiver + to_sender == retained
    assert to_receiver >= 0 and to_sender >= 0


# -- cooperative settle ---------------------------------------------------------------------------


def test_cooperative_payouts() -> None:
    def pay(*values: int) -> tuple[int, int] | None:
        d1, d2, w1, w2, t1, t2 = (TokenAmount(v) for v in values)
        return cooperative_payouts(d1, d2, w1, w2, t1, t2)

    assert pay(10, 5, 2, 1, 9, 6) == (7, 5)
    assert pay(10, 5, 2, 1, 2, 13) == (0, 12)
    assert pay(10, 5, 2, 1, 9, 5) is None  # one token would stay stuck
    assert pay(10, 5, 2, 1, 9, 7) is None  # more than the channel holds
    assert pay(10, 5, 2, 1, 1, 14) is None  # below what participant 1 already withdrew
    assert pay(MAX, 0, 0, 0, MAX, 0) == (MAX, 0)
    with pytest.raises(ValidationError):
        pay(MAX + 1, 0, 0, 0, 0, 0)
