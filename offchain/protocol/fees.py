"""Mediation fees: what a mediator takes for forwarding a payment, and what each hop must carry.

Belongs here: the per-channel `FeeSchedule`, the fee one mediator charges for one payment
(`mediation_fee`), and the exact integer arithmetic that turns the amount a target must
receive into the amount every channel of a route must carry (`hop_amounts`,
`amount_to_send`) and, for a mediator that knows only what it received, back
(`amount_to_forward`). Integers only, in token base units; no floats anywhere.

Does not belong here: choosing routes (`routes`), channel state and what is safe to spend
(`channel`), or where schedules and capacities come from (announcements, configuration:
the node).

The model. A mediator M receives `r` over its incoming channel and
forwards `a` over its outgoing channel; its fee is `r - a`. It has one `FeeSchedule` per
channel, for its own side of that channel, and charges:

- on the outgoing channel, for the forwarded amount `a`: ``flat + a * proportional_ppm /
  10**6`` plus the change of that channel's imbalance penalty when M's side falls by `a`;
- on the incoming channel, for the received amount `r`: only the change of that channel's
  imbalance penalty when M's side rises by `r`. Flat and proportional fees are the price of
  carrying a payment *out* over a channel, as in Lightning; charging them again on the way
  in would bill one forward twice.

The imbalance penalty of a channel with total capacity ``T = own + partner`` when M's side
holds ``x`` is ``P(x) = imbalance_ppm * (2x - T)**2 / (4 * 10**6 * T)``: zero when the
channel is balanced, ``imbalance_ppm * T / (4 * 10**6)`` when one side holds everything.
Its slope runs from ``-imbalance_ppm`` to ``+imbalance_ppm`` parts per million, so the
number reads like `proportional_ppm`: near an empty side every further unit costs up to
``imbalance_ppm`` ppm, and every unit that moves the channel back towards balance earns
up to as much as a rebate. The term charged is ``P(after) - P(before)`` (Raiden's idea):
positive when a payment unbalances the channel, negative when it rebalances it.

The total is ``max(0, outgoing + incoming)``: a rebate can cancel a mediator's fee but never
pays the payer, so a mediator never loses tokens by mediating and no route costs less than
nothing. The incoming term depends on `r`, which includes the fee, so `r` is a
fixed point; `received_amount` solves it exactly (closed form with `math.isqrt`, then an
exact integer check).

Rounding, always in the mediator's favour: each channel's term is rounded up (the ceiling
of the exact rational), and `r` is the smallest integer with ``r - a >= max(0, outgoing +
incoming(r))``. Where the rebate's rounding steps over that bound, the mediator keeps one
base unit more than the rounded fee. So a mediator never gets less than its exact fee,
and at most two units more.

Monotonicity (why `MAX_IMBALANCE_PPM` is 50%): with every imbalance slope at most 1/2 in
magnitude, the received amount never falls when the forwarded amount rises. Routing relies
on it (a route that must carry less is never worse upstream), and so does
`amount_to_forward`'s binary search. The converse is not exact: where a rebate grows faster
than the fee, two forwarded amounts may need the same received amount, so a mediator that
knows only `r` cannot always tell which amount was meant. A mediator therefore forwards
what the payment's target amount requires along the rest of its route (`hop_amounts`,
or `routes.Route.amounts`), which is exact; `amount_to_forward` is exact whenever the fee
does not fall as the amount grows (for example with no imbalance term).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import isqrt
from typing import Final

from offchain.protocol.errors import ValidationError
from offchain.protocol.types import UINT256_MAX, TokenAmount, check_uint

PPM: Final = 1_000_000
"""Parts per million: the denominator of `proportional_ppm` and `imbalance_ppm`."""

MAX_PROPORTIONAL_PPM: Final = PPM
"""A proportional fee of at most 100% of the forwarded amount."""

MAX_IMBALANCE_PPM: Final = PPM // 2
"""Steepest imbalance slope allowed: 50%, so that the amounts stay monotone (see above)."""


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """What a node charges for its side of one channel.

    `flat`: base units per payment forwarded out over this channel.
    `proportional_ppm`: parts per million of the amount forwarded out over this channel.
    `imbalance_ppm`: steepness of the imbalance penalty, charged (or rebated) on this
    channel for payments in either direction (module docstring).
    """

    flat: int = 0
    proportional_ppm: int = 0
    imbalance_ppm: int = 0

    def __post_init__(self) -> None:
        check_uint(self.flat, UINT256_MAX, "flat fee")
        check_uint(self.proportional_ppm, MAX_PROPORTIONAL_PPM, "proportional fee (ppm)")
        check_uint(self.imbalance_ppm, MAX_IMBALANCE_PPM, "imbalance fee (ppm)")


NO_FEES: Final = FeeSchedule()


@dataclass(frozen=True, slots=True)
class ChannelBalance:
    """What each side of one channel can send now, seen from the mediator.

    `own`: what the mediator can send to the partner; `partner`: what the partner can send
    to the mediator. Their sum is the channel's total capacity ``T`` of the penalty.
    """

    own: TokenAmount
    partner: TokenAmount

    def __post_init__(self) -> None:
        check_uint(self.own, UINT256_MAX, "own capacity")
        check_uint(self.partner, UINT256_MAX, "partner capacity")


@dataclass(frozen=True, slots=True)
class MediatorHop:
    """One mediator of a route: its schedules and balances on the channels in and out."""

    schedule_in: FeeSchedule
    schedule_out: FeeSchedule
    balance_in: ChannelBalance
    balance_out: ChannelBalance


# --- the kernel, on plain ints (routes calls these in its inner loop) --------------------


def outgoing_part(
    flat: int, proportional_ppm: int, imbalance_ppm: int, amount: int, own: int, total: int
) -> int:
    """The outgoing channel's term for forwarding `amount`, rounded up; may be negative.

    ``flat + ceil(amount * proportional_ppm / 10**6 + P(own - amount) - P(own))`` with
    ``P(own - a) - P(own) = imbalance_ppm * a * (a - 2*own + total) / (10**6 * total)``.
    """
    if imbalance_ppm == 0 or total == 0:
        return flat + -(-amount * proportional_ppm // PPM)
    numerator = amount * (proportional_ppm * total + imbalance_ppm * (amount - 2 * own + total))
    return flat + -(-numerator // (PPM * total))


def incoming_part(imbalance_ppm: int, received: int, own: int, total: int) -> int:
    """The incoming channel's term for receiving `received`, rounded up; may be negative.

    ``ceil(P(own + r) - P(own)) = ceil(imbalance_ppm * r * (r + 2*own - total) /
    (10**6 * total))``.
    """
    if imbalance_ppm == 0 or total == 0:
        return 0
    return -(-(imbalance_ppm * received * (received + 2 * own - total)) // (PPM * total))


def received_amount_raw(
    forwarded: int, with_out: int, imbalance_ppm: int, own: int, total: int
) -> int | None:
    """The smallest ``r >= forwarded`` with ``r - forwarded >= max(0, out + incoming(r))``.

    `with_out` is ``forwarded + outgoing_part(...)``; `imbalance_ppm`, `own` and `total`
    describe the incoming channel from the mediator's side. ``None`` when no such `r`
    exists, which happens only when `r` would exceed what the incoming channel holds.

    The condition ``r - with_out >= incoming(r)`` is, over the integers, ``10**6 * T *
    (r - with_out) >= imb * r * (r + 2*own - T)``: a quadratic inequality that holds
    between its two roots, so the answer is the ceiling of the smaller root, found with
    `isqrt` and settled by the exact integer test.
    """
    if imbalance_ppm == 0 or total == 0:
        return with_out if with_out > forwarded else forwarded
    scale = PPM * total
    base = imbalance_ppm * (2 * own - total)
    # A*r^2 + B*r + C <= 0 with A = imbalance_ppm, B = base - scale, C = scale * with_out.
    if scale * (forwarded - with_out) >= imbalance_ppm * forwarded * forwarded + base * forwarded:
        return forwarded
    minus_b = scale - base  # > 0 because imbalance_ppm < 10**6
    discriminant = minus_b * minus_b - 4 * imbalance_ppm * scale * with_out
    if discriminant < 0:
        return None
    two_a = 2 * imbalance_ppm
    low = (minus_b - isqrt(discriminant) - 1) // two_a  # at most the smaller root
    if low <= forwarded:
        low = forwarded + 1
    # The smaller root lies less than two units above `low`; past the larger root the
    # inequality fails for good, so a miss in these steps means "no solution".
    for candidate in range(low, low + 4):
        if (
            scale * (candidate - with_out)
            >= imbalance_ppm * candidate * candidate + base * candidate
        ):
            return candidate
    return None


# --- the public functions ----------------------------------------------------------------


def received_amount(hop: MediatorHop, amount: int) -> TokenAmount | None:
    """What the mediator of `hop` must receive to forward `amount`; fee included.

    ``None`` when the channels cannot carry it: `amount` above the outgoing capacity, or
    the amount to receive above what the payer holds on the incoming channel.
    """
    out = hop.balance_out
    if amount < 0 or amount > out.own:
        return None
    schedule = hop.schedule_out
    with_out = amount + outgoing_part(
        schedule.flat,
        schedule.proportional_ppm,
        schedule.imbalance_ppm,
        amount,
        out.own,
        out.own + out.partner,
    )
    into = hop.balance_in
    received = received_amount_raw(
        amount, with_out, hop.schedule_in.imbalance_ppm, into.own, into.own + into.partner
    )
    if received is None or received > into.partner:
        return None
    return TokenAmount(received)


def mediation_fee(
    schedule_in: FeeSchedule,
    schedule_out: FeeSchedule,
    amount: int,
    balance_in: ChannelBalance,
    balance_out: ChannelBalance,
) -> TokenAmount | None:
    """The fee a mediator takes to forward `amount`: never negative.

    `schedule_in`/`balance_in` are the mediator's on the channel the payment arrives by,
    `schedule_out`/`balance_out` on the channel it leaves by; the fee is computed on the
    forwarded `amount` (outgoing part) and on the received amount (incoming part), summed,
    floored at zero and rounded up (module docstring). ``None`` when the channels cannot
    carry the payment (see `received_amount`).
    """
    hop = MediatorHop(schedule_in, schedule_out, balance_in, balance_out)
    received = received_amount(hop, amount)
    if received is None:
        return None
    return TokenAmount(received - amount)


def hop_amounts(
    target_amount: int, mediators: Sequence[MediatorHop]
) -> tuple[TokenAmount, ...] | None:
    """The amount each channel of a route carries so the target gets `target_amount`.

    `mediators` in route order (the first forwards the payer's payment). The result has
    one amount per channel, ``len(mediators) + 1`` of them, payer's channel first; each
    mediator keeps exactly `mediation_fee` of the amount it forwards, and the last channel
    carries exactly `target_amount`. ``None`` when some channel cannot carry its amount.
    """
    if target_amount <= 0:
        raise ValidationError(f"target amount must be positive, got {target_amount}")
    amounts = [TokenAmount(target_amount)]
    amount = target_amount
    for hop in reversed(mediators):
        received = received_amount(hop, amount)
        if received is None:
            return None
        amounts.append(received)
        amount = received
    amounts.reverse()
    return tuple(amounts)


def amount_to_send(target_amount: int, mediators: Sequence[MediatorHop]) -> TokenAmount | None:
    """What the payer sends on its first channel so the target gets exactly `target_amount`."""
    amounts = hop_amounts(target_amount, mediators)
    return None if amounts is None else amounts[0]


def amount_to_forward(received: int, hop: MediatorHop) -> TokenAmount | None:
    """The most the mediator of `hop` can forward out of `received` and keep its full fee.

    The largest `a` with ``received_amount(hop, a) <= received`` (binary search: the
    received amount never falls as `a` rises). It inverts `received_amount` exactly when
    the fee does not fall as the amount grows; with imbalance rebates it may return more
    than the amount a route was planned for (module docstring). ``None`` when not even a
    zero amount can be forwarded (the flat fee exceeds `received`).
    """
    if received < 0:
        return None
    first = received_amount(hop, 0)
    if first is None or first > received:
        return None
    low, high = 0, min(received, hop.balance_out.own)  # received_amount(high) may be None
    while low < high:
        middle = (low + high + 1) // 2
        needed = received_amount(hop, middle)
        if needed is not None and needed <= received:
            low = middle
        else:
            high = middle - 1
    return TokenAmount(low)


# --- lower bounds, for the route search's heuristic ---------------------------------------


def _convex_min(square: int, linear: int, low: int, high: int | None) -> int:
    """``min(square*v*v + linear*v)`` over integers ``low <= v <= high`` (None: no end).

    `square` is positive: the real minimum is at ``-linear / (2*square)``, the integer one
    at its floor or ceiling, clamped into the range.
    """
    v = -linear // (2 * square)
    if v < low:
        v = low
    elif high is not None and v >= high:
        v = high
    else:
        left = square * v * v + linear * v
        v += 1
        right = square * v * v + linear * v
        return left if left < right else right
    return square * v * v + linear * v


def outgoing_part_min(
    flat: int,
    proportional_ppm: int,
    imbalance_ppm: int,
    low: int,
    high: int | None,
    own: int,
    total: int,
) -> int:
    """The least `outgoing_part` over forwarded amounts ``low..high`` (None: no end)."""
    if imbalance_ppm == 0 or total == 0:
        return flat + -(-low * proportional_ppm // PPM)
    least = _convex_min(
        imbalance_ppm,
        proportional_ppm * total + imbalance_ppm * (total - 2 * own),
        low,
        high,
    )
    return flat + -(-least // (PPM * total))


def incoming_part_min(imbalance_ppm: int, low: int, high: int | None, own: int, total: int) -> int:
    """The least `incoming_part` over received amounts ``low..high`` (None: no end)."""
    if imbalance_ppm == 0 or total == 0:
        return 0
    least = _convex_min(imbalance_ppm, imbalance_ppm * (2 * own - total), low, high)
    return -(-least // (PPM * total))
