"""The payouts the token network computes at settle, unlock and cooperative settle.

Belongs here: pure functions over the channel's totals (deposit D, withdraw W, transferred
T, locked L of each participant) that return who gets how much, exactly as the contract
computes it, so that a node can predict and check every payout. The settle rule is
Raiden's: it must never fail, whatever the two submitted balance proofs claim, so all its
arithmetic saturates (subtraction floors at 0, addition caps at 2**256-1) and every
intermediate value stays within a uint256.

Invariant (docs/spec.md, conservation): payout1 + payout2 + locked_retained1 +
locked_retained2 == TAD for every input.

Does not belong here: whether a balance proof is valid or current (signatures, nonces:
channel logic), or moving tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from offchain.protocol.locks import Lock
from offchain.protocol.types import UINT256_MAX, SecretHash, TokenAmount, check_uint


def sat_add(a: int, b: int) -> TokenAmount:
    """Return ``min(a + b, 2**256 - 1)``: uint256 addition that caps instead of reverting."""
    return TokenAmount(min(a + b, UINT256_MAX))


def sat_sub(a: int, b: int) -> TokenAmount:
    """Return ``max(a - b, 0)``: uint256 subtraction that floors instead of reverting."""
    return TokenAmount(max(a - b, 0))


@dataclass(frozen=True, slots=True)
class ParticipantTotals:
    """One participant's totals as the contract holds them at settle time.

    ``transferred`` and ``locked`` come from the balance proof the partner submitted for
    this participant (zero if none); they can be anything a signer chose, which is why
    the settle rule saturates instead of trusting them.
    """

    deposit: TokenAmount
    withdrawn: TokenAmount
    transferred: TokenAmount
    locked: TokenAmount

    def __post_init__(self) -> None:
        check_uint(self.deposit, UINT256_MAX, "deposit")
        check_uint(self.withdrawn, UINT256_MAX, "withdrawn")
        check_uint(self.transferred, UINT256_MAX, "transferred")
        check_uint(self.locked, UINT256_MAX, "locked")


@dataclass(frozen=True, slots=True)
class SettlementPayout:
    """What settle pays out and what it keeps back, in the order the participants were given.

    ``payoutN`` goes to participant N at settle. ``locked_retainedN`` is the part of
    participant N's pending locks (towards its partner) that the contract keeps until
    ``unlock`` splits it between the partner (locks whose secret was revealed in time) and
    participant N (the rest).
    """

    payout1: TokenAmount
    payout2: TokenAmount
    locked_retained1: TokenAmount
    locked_retained2: TokenAmount

    @property
    def total(self) -> int:
        """Sum of the four parts; equals TAD (conservation)."""
        return self.payout1 + self.payout2 + self.locked_retained1 + self.locked_retained2


def total_available_deposit(p1: ParticipantTotals, p2: ParticipantTotals) -> TokenAmount:
    """Return TAD = D1 + D2 - W1 - W2, saturating.

    The contract guarantees W1 + W2 <= D1 + D2 (withdraws are checked against the deposits)
    and D1 + D2 <= token supply < 2**256, so this is the exact value on every reachable
    state; saturation only keeps the function total on unreachable ones.
    """
    return sat_sub(sat_add(p1.deposit, p2.deposit), sat_add(p1.withdrawn, p2.withdrawn))


def settlement_payout(p1: ParticipantTotals, p2: ParticipantTotals) -> SettlementPayout:
    """Compute the settle payouts (Raiden's ``getSettleTransferAmounts``); never fails.

    With the participants ordered so that T1 + L1 <= T2 + L2 (ties keep the given order):
    P1 may receive at most ``(T2 + L2) - (T1 + L1) + D1 - W1``, bounded by TAD; P2 gets the
    rest of TAD. From each side's share, first the partner's pending locks are held back
    (up to the share), and the remainder is paid out.
    """
    swapped = sat_add(p1.transferred, p1.locked) > sat_add(p2.transferred, p2.locked)
    a, b = (p2, p1) if swapped else (p1, p2)

    tad = total_available_deposit(a, b)
    net_received = sat_sub(sat_add(b.transferred, b.locked), sat_add(a.transferred, a.locked))
    max_receivable_a = TokenAmount(min(tad, sat_sub(sat_add(net_received, a.deposit), a.withdrawn)))
    max_receivable_b = TokenAmount(tad - max_receivable_a)

    retained_b = TokenAmount(min(max_receivable_a, b.locked))
    payout_a = TokenAmount(max_receivable_a - retained_b)
    retained_a = TokenAmount(min(max_receivable_b, a.locked))
    payout_b = TokenAmount(max_receivable_b - retained_a)

    if swapped:
        return SettlementPayout(payout_b, payout_a, retained_b, retained_a)
    return SettlementPayout(payout_a, payout_b, retained_a, retained_b)


def apply_reward(share: TokenAmount, reward: TokenAmount) -> tuple[TokenAmount, TokenAmount]:
    """Split a participant's payout with its delegate: ``(participant_gets, delegate_gets)``.

    The delegate gets the promised reward but never more than the share, so a reward can
    not take tokens that belong to the partner.
    """
    check_uint(share, UINT256_MAX, "share")
    check_uint(reward, UINT256_MAX, "reward")
    delegate_gets = TokenAmount(min(reward, share))
    return TokenAmount(share - delegate_gets), delegate_gets


def is_claimable(lock: Lock, reveal_times: Mapping[SecretHash, int]) -> bool:
    """Return whether ``lock`` pays its receiver: its secret was registered at a time t with
    ``0 < t <= lock.expiration`` (0 or absent means never registered)."""
    revealed_at = reveal_times.get(lock.secrethash, 0)
    return 0 < revealed_at <= lock.expiration


def unlock_split(
    locks: Sequence[Lock],
    reveal_times: Mapping[SecretHash, int],
    retained: TokenAmount,
) -> tuple[TokenAmount, TokenAmount]:
    """Split the tokens kept back for one sender's locks: ``(to_receiver, to_sender)``.

    ``reveal_times`` maps secrethashes to the time the secret registry recorded them.
    The receiver gets the claimable locks' amounts (summed with saturation) but never more
    than ``retained``, the amount settle actually held back; the sender gets the rest.
    """
    check_uint(retained, UINT256_MAX, "retained")
    claimable = TokenAmount(0)
    for lock in locks:
        if is_claimable(lock, reveal_times):
            claimable = sat_add(claimable, lock.amount)
    to_receiver = TokenAmount(min(retained, claimable))
    return to_receiver, TokenAmount(retained - to_receiver)


def cooperative_payouts(
    deposit1: TokenAmount,
    deposit2: TokenAmount,
    withdrawn1: TokenAmount,
    withdrawn2: TokenAmount,
    total_withdraw1: TokenAmount,
    total_withdraw2: TokenAmount,
) -> tuple[TokenAmount, TokenAmount] | None:
    """What a cooperative settle with these final total withdraws pays, or None if refused.

    The totals must add up to ``D1 + D2`` exactly (every token leaves the channel, so no
    lock can be left pending) and neither may be below what its participant has already
    withdrawn. Each participant is paid its total minus its withdrawn amount.
    """
    values = (deposit1, deposit2, withdrawn1, withdrawn2, total_withdraw1, total_withdraw2)
    for value in values:
        check_uint(value, UINT256_MAX, "amount")
    if total_withdraw1 < withdrawn1 or total_withdraw2 < withdrawn2:
        return None
    if total_withdraw1 + total_withdraw2 != deposit1 + deposit2:
        return None
    return TokenAmount(total_withdraw1 - withdrawn1), TokenAmount(total_withdraw2 - withdrawn2)
