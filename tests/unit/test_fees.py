"""Unit tests of offchain.protocol.fees: the mediation fee, its rounding, and route amounts.

References: `fractions.Fraction` for the exact rational fee of docs/spec.md ("Fees"), and
brute-force searches over small integers for the fixed point and the inverse.
"""

from __future__ import annotations

from fractions import Fraction
from math import ceil

import pytest
from hypothesis import given
from hypothesis import strategies as st

from offchain.protocol.errors import ValidationError
from offchain.protocol.fees import (
    MAX_IMBALANCE_PPM,
    NO_FEES,
    PPM,
    ChannelBalance,
    FeeSchedule,
    MediatorHop,
    amount_to_forward,
    amount_to_send,
    hop_amounts,
    incoming_part,
    incoming_part_min,
    mediation_fee,
    outgoing_part,
    outgoing_part_min,
    received_amount,
    received_amount_raw,
)
from offchain.protocol.types import TokenAmount


def balance(own: int, partner: int) -> ChannelBalance:
    return ChannelBalance(TokenAmount(own), TokenAmount(partner))


def penalty(imbalance_ppm: int, own: Fraction | int, total: int) -> Fraction:
    """P(x) = imbalance_ppm * (2x - T)^2 / (4 * 10^6 * T): the model, as a rational."""
    return Fraction(imbalance_ppm) * (2 * own - total) ** 2 / (4 * PPM * total)


def exact_out(schedule: FeeSchedule, amount: int, out: ChannelBalance) -> Fraction:
    total = out.own + out.partner
    value = schedule.flat + Fraction(amount * schedule.proportional_ppm, PPM)
    if total:
        value += penalty(schedule.imbalance_ppm, out.own - amount, total)
        value -= penalty(schedule.imbalance_ppm, out.own, total)
    return value


def exact_in(schedule: FeeSchedule, received: int, into: ChannelBalance) -> Fraction:
    total = into.own + into.partner
    if not total:
        return Fraction(0)
    own = into.own
    return penalty(schedule.imbalance_ppm, own + received, total) - penalty(
        schedule.imbalance_ppm, own, total
    )


def reference_received(hop: MediatorHop, amount: int) -> int | None:
    """The smallest r >= amount with r - amount >= max(0, ceil(out) + ceil(in(r)))."""
    if amount > hop.balance_out.own:
        return None
    out = ceil(exact_out(hop.schedule_out, amount, hop.balance_out))
    for received in range(amount, hop.balance_in.partner + 1):
        inside = ceil(exact_in(hop.schedule_in, received, hop.balance_in))
        if received - amount >= max(0, out + inside):
            return received
    return None


schedules = st.builds(
    FeeSchedule,
    flat=st.integers(0, 50),
    proportional_ppm=st.integers(0, PPM),
    imbalance_ppm=st.integers(0, MAX_IMBALANCE_PPM),
)
small_balances = st.builds(balance, st.integers(0, 300), st.integers(0, 300))
big_balances = st.builds(balance, st.integers(0, 10**24), st.integers(0, 10**24))
small_hops = st.builds(MediatorHop, schedules, schedules, small_balances, small_balances)
big_hops = st.builds(MediatorHop, schedules, schedules, big_balances, big_balances)
# No imbalance term: the fee never falls as the amount grows, so the inverse is exact.
plain_schedules = st.builds(
    FeeSchedule, flat=st.integers(0, 10**6), proportional_ppm=st.integers(0, PPM)
)
plain_hops = st.builds(MediatorHop, plain_schedules, plain_schedules, big_balances, big_balances)


# --- schedules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"flat": -1},
        {"proportional_ppm": -1},
        {"proportional_ppm": PPM + 1},
        {"imbalance_ppm": MAX_IMBALANCE_PPM + 1},
        {"imbalance_ppm": -5},
        {"flat": True},
        {"flat": 1.5},
    ],
)
def test_schedule__out_of_range__rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        FeeSchedule(**kwargs)  # type: ignore[arg-type]


def test_balance__negative__rejected() -> None:
    with pytest.raises(ValidationError):
        balance(-1, 0)


# --- one mediator -------------------------------------------------------------------------


def test_no_fees__fee_is_zero() -> None:
    assert mediation_fee(NO_FEES, NO_FEES, 100, balance(50, 500), balance(500, 50)) == 0


def test_flat_and_proportional__rounded_up() -> None:
    schedule = FeeSchedule(flat=5, proportional_ppm=1)
    # 5 + ceil(1 * 1e-6) = 6: the mediator never gets less than its exact fee.
    assert mediation_fee(NO_FEES, schedule, 1, balance(0, 10), balance(10, 0)) == 6
    # 5 + 2_000_000 * 1e-6 = 7 exactly: no rounding needed.
    assert mediation_fee(NO_FEES, schedule, 2 * PPM, balance(0, 10**7), balance(10**7, 0)) == 7
    # Flat and proportional come from the outgoing schedule only.
    assert mediation_fee(schedule, NO_FEES, 1, balance(0, 10), balance(10, 0)) == 0


def test_imbalance__penalty_away_from_balance__rebate_towards_it() -> None:
    steep = FeeSchedule(imbalance_ppm=MAX_IMBALANCE_PPM)
    base = FeeSchedule(flat=100)
    # Out of a balanced channel (500/500) by 100: P(400) - P(500) = 0.5 * 200^2 / 4000 = 5.
    unbalancing = FeeSchedule(100, 0, MAX_IMBALANCE_PPM)
    assert mediation_fee(NO_FEES, unbalancing, 100, balance(0, 1000), balance(500, 500)) == 105
    # Out of a channel where we hold everything, by 100: P(900) - P(1000) = 80 - 125 = -45.
    assert mediation_fee(NO_FEES, unbalancing, 100, balance(0, 1000), balance(1000, 0)) == 55
    # In over a channel where the partner holds everything: a rebate on the way in too;
    # the received amount r solves r - 100 = max(0, 100 + ceil(P(r) - P(0))).
    fee = mediation_fee(steep, base, 100, balance(0, 1000), balance(1000, 1000))
    assert fee is not None and fee < 100
    received = 100 + fee
    assert fee == max(0, 100 + ceil(exact_in(steep, received, balance(0, 1000))))


def test_rebates__never_make_the_fee_negative() -> None:
    steep = FeeSchedule(imbalance_ppm=MAX_IMBALANCE_PPM)
    # Both channels move towards balance, with no flat or proportional fee: zero, not less.
    assert mediation_fee(steep, steep, 200, balance(0, 1000), balance(1000, 0)) == 0


def test_capacity__not_enough__none() -> None:
    assert mediation_fee(NO_FEES, NO_FEES, 11, balance(0, 100), balance(10, 0)) is None
    # Forwarding 10 needs 12 in; the payer holds only 11.
    schedule = FeeSchedule(flat=2)
    assert mediation_fee(NO_FEES, schedule, 10, balance(0, 11), balance(10, 0)) is None
    assert mediation_fee(NO_FEES, schedule, 10, balance(0, 12), balance(10, 0)) == 2


@given(small_hops, st.integers(0, 300))
def test_received__is_the_rounded_fixed_point(hop: MediatorHop, amount: int) -> None:
    assert received_amount(hop, amount) == reference_received(hop, amount)


@given(big_hops, st.integers(0, 10**24))
def test_fee__never_negative_and_covers_the_exact_fee(hop: MediatorHop, amount: int) -> None:
    fee = mediation_fee(hop.schedule_in, hop.schedule_out, amount, hop.balance_in, hop.balance_out)
    if fee is None:
        return
    assert fee >= 0
    received = amount + fee
    exact = exact_out(hop.schedule_out, amount, hop.balance_out) + exact_in(
        hop.schedule_in, received, hop.balance_in
    )
    # In the mediator's favour, and by at most two base units (each term rounds up, and
    # the fixed point may step over by one).
    assert fee >= exact
    assert fee <= max(0, ceil(exact)) + 2
    assert received <= hop.balance_in.partner


@given(small_hops, st.integers(0, 299))
def test_received__never_falls_as_the_amount_rises(hop: MediatorHop, amount: int) -> None:
    first, second = received_amount(hop, amount), received_amount(hop, amount + 1)
    if first is not None and second is not None:
        assert second >= first


# --- routes: target amount to amount sent, and back ---------------------------------------


def test_hop_amounts__no_mediator__target_amount() -> None:
    assert hop_amounts(7, []) == (7,)
    with pytest.raises(ValidationError):
        hop_amounts(0, [])


def test_hop_amounts__two_mediators() -> None:
    first = MediatorHop(NO_FEES, FeeSchedule(flat=3), balance(0, 10**6), balance(10**6, 0))
    second = MediatorHop(
        NO_FEES, FeeSchedule(proportional_ppm=10_000), balance(0, 10**6), balance(10**6, 0)
    )
    # The second forwards 1000 and keeps 1% (10); the first forwards 1010 and keeps 3.
    assert hop_amounts(1000, [first, second]) == (1013, 1010, 1000)
    assert amount_to_send(1000, [first, second]) == 1013


@given(st.lists(big_hops, min_size=1, max_size=6), st.integers(1, 10**21))
def test_hop_by_hop__target_gets_exactly_its_amount(
    hops: list[MediatorHop], target_amount: int
) -> None:
    amounts = hop_amounts(target_amount, hops)
    if amounts is None:
        return
    assert len(amounts) == len(hops) + 1
    assert amount_to_send(target_amount, hops) == amounts[0]
    # Each mediator receives its amount, keeps mediation_fee of what it forwards, and
    # forwards the rest; the target gets exactly target_amount.
    carried = amounts[0]
    for hop, forwarded in zip(hops, amounts[1:], strict=True):
        fee = mediation_fee(
            hop.schedule_in, hop.schedule_out, forwarded, hop.balance_in, hop.balance_out
        )
        assert fee is not None and fee >= 0
        assert carried - fee == forwarded
        carried = forwarded
    assert carried == target_amount


@given(st.lists(plain_hops, min_size=1, max_size=6), st.integers(1, 10**21))
def test_forwarding_what_arrives__exact_without_imbalance(
    hops: list[MediatorHop], target_amount: int
) -> None:
    """A mediator that knows only what it received forwards `amount_to_forward` of it."""
    amounts = hop_amounts(target_amount, hops)
    if amounts is None:
        return
    carried = amounts[0]
    for hop in hops:
        forwarded = amount_to_forward(carried, hop)
        assert forwarded is not None
        carried = forwarded
    assert carried == target_amount


@given(small_hops, st.integers(0, 400))
def test_amount_to_forward__most_that_keeps_the_fee(hop: MediatorHop, received: int) -> None:
    forwarded = amount_to_forward(received, hop)
    if forwarded is None:
        needed = received_amount(hop, 0)
        assert needed is None or needed > received
        return
    needed = received_amount(hop, forwarded)
    assert needed is not None and needed <= received
    more = received_amount(hop, forwarded + 1)
    assert more is None or more > received


def test_amount_to_forward__flat_fee_above_received__none() -> None:
    hop = MediatorHop(NO_FEES, FeeSchedule(flat=10), balance(0, 100), balance(100, 0))
    assert amount_to_forward(9, hop) is None
    assert amount_to_forward(10, hop) == 0
    assert amount_to_forward(25, hop) == 15


# --- the kernel the route search uses -----------------------------------------------------


@given(
    st.integers(0, 20),
    st.integers(0, PPM),
    st.integers(0, MAX_IMBALANCE_PPM),
    st.integers(0, 200),
    st.integers(0, 40),
    st.integers(0, 200),
    st.integers(0, 200),
)
def test_lower_bounds__are_the_least_over_the_range(
    flat: int, proportional: int, imbalance: int, low: int, width: int, own: int, other: int
) -> None:
    total = own + other
    high = low + width
    parts = [
        outgoing_part(flat, proportional, imbalance, a, own, total) for a in range(low, high + 1)
    ]
    assert outgoing_part_min(flat, proportional, imbalance, low, high, own, total) == min(parts)
    ins = [incoming_part(imbalance, r, own, total) for r in range(low, high + 1)]
    assert incoming_part_min(imbalance, low, high, own, total) == min(ins)
    far = [incoming_part(imbalance, r, own, total) for r in range(low, low + 4 * total + 10)]
    assert incoming_part_min(imbalance, low, None, own, total) == min(far)


@given(
    st.integers(0, MAX_IMBALANCE_PPM),
    st.integers(0, 200),
    st.integers(0, 200),
    st.integers(0, 200),
    st.integers(-100, 300),
)
def test_received_raw__smallest_solution(
    imbalance: int, own: int, other: int, forwarded: int, extra: int
) -> None:
    total = own + other
    with_out = forwarded + extra
    found = received_amount_raw(forwarded, with_out, imbalance, own, total)
    brute = next(
        (
            r
            for r in range(forwarded, forwarded + 6 * total + 700)
            if r - forwarded
            >= max(0, with_out - forwarded + incoming_part(imbalance, r, own, total))
        ),
        None,
    )
    assert found == brute
