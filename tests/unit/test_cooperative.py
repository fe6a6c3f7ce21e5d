"""Withdraw and cooperative-settle flows between two views of one channel."""

from __future__ import annotations

import dataclasses

from offchain.protocol import channel as ch
from offchain.protocol import cooperative as coop
from offchain.protocol import settlement, signing
from offchain.protocol.channel import NO_TIME, Rejected
from offchain.protocol.messages import CoopSettleRefusal, CoopSettleRefused, CoopSettleResponse
from offchain.protocol.types import Generation, Timestamp, TokenAmount
from tests.lib.channel_views import KEY_A, KEY_B, NOW, lock, views

LATER = Timestamp(NOW + 300)


def test_withdraw__request_and_confirmation__both_signatures_and_capacity_reserved() -> None:
    a, b = views(deposit_a=100, deposit_b=50)
    result = coop.request_withdraw(a, KEY_A, TokenAmount(40), LATER)
    assert not isinstance(result, Rejected)
    a, request = result
    assert ch.spendable(a.our, a.partner) == 60
    confirmed = coop.receive_withdraw_request(b, KEY_B, request, NOW)
    assert not isinstance(confirmed, Rejected)
    b, confirmation = confirmed
    assert ch.spendable(b.partner, b.our) == 60
    signed = coop.receive_withdraw_confirmation(a, request, confirmation)
    assert isinstance(signed, coop.SignedWithdraw)
    assert (signed.total_withdraw, signed.expiration) == (40, LATER)


def test_withdraw__over_capacity_or_expired_or_forged__rejected() -> None:
    a, b = views(deposit_a=100, deposit_b=50)
    assert coop.request_withdraw(a, KEY_A, TokenAmount(101), LATER) == Rejected(
        "insufficient capacity"
    )
    result = coop.request_withdraw(a, KEY_A, TokenAmount(40), LATER)
    assert not isinstance(result, Rejected)
    _, request = result
    assert coop.receive_withdraw_request(b, KEY_B, request, LATER) == Rejected(
        "withdraw already expired"
    )
    forged = dataclasses.replace(request, total_withdraw=TokenAmount(45))
    assert coop.receive_withdraw_request(b, KEY_B, forged, NOW) == Rejected(
        "invalid withdraw signature"
    )
    assert coop.request_withdraw(result[0], KEY_A, TokenAmount(10), LATER) == Rejected(
        "a withdraw is already pending"
    )


def test_withdraw__expired__capacity_released_on_both_sides() -> None:
    a, b = views()
    result = coop.request_withdraw(a, KEY_A, TokenAmount(40), LATER)
    assert not isinstance(result, Rejected)
    a, request = result
    confirmed = coop.receive_withdraw_request(b, KEY_B, request, NOW)
    assert not isinstance(confirmed, Rejected)
    b, _ = confirmed
    assert coop.expire_withdraw(a, KEY_A, LATER) == Rejected("withdraw not expired")
    expired = coop.expire_withdraw(a, KEY_A, Timestamp(LATER + 1))
    assert not isinstance(expired, Rejected)
    a, message = expired
    b2 = coop.receive_withdraw_expired(b, message, Timestamp(LATER + 1))
    assert isinstance(b2, ch.ChannelState)
    assert ch.spendable(a.our, a.partner) == ch.spendable(b2.partner, b2.our) == 100


def test_coop_settle__no_locks__totals_are_the_balances_and_both_sign() -> None:
    a, b = views(deposit_a=100, deposit_b=50)
    made = ch.make_direct_transfer(a, KEY_A, TokenAmount(30), 1)
    assert not isinstance(made, Rejected)
    a, transfer = made
    received = ch.receive(b, transfer, NOW)
    assert isinstance(received, ch.ChannelState)
    b = received
    request = coop.request_coop_settle(a, KEY_A, LATER)
    assert not isinstance(request, Rejected)
    response = coop.receive_coop_settle_request(b, KEY_B, request, NOW)
    assert isinstance(response, CoopSettleResponse)
    signed = coop.receive_coop_settle_response(a, request, response)
    assert isinstance(signed, coop.SignedCoopSettle)
    by_address = dict(
        zip(
            sorted([a.our.address, b.our.address]),
            (signed.total_withdraw1, signed.total_withdraw2),
            strict=True,
        )
    )
    assert (by_address[a.our.address], by_address[b.our.address]) == (70, 80)


def _by_address(a: ch.ChannelState, totals: tuple[int, int]) -> dict[bytes, int]:
    first, second = sorted([a.our.address, a.partner.address])
    return {first: totals[0], second: totals[1]}


def _refusal(answer: object) -> CoopSettleRefusal:
    assert isinstance(answer, CoopSettleRefused), answer
    return answer.reason


def _cosigned_withdraw(
    a: ch.ChannelState, b: ch.ChannelState, total: int
) -> tuple[ch.ChannelState, ch.ChannelState]:
    """A asks to withdraw up to `total`, B co-signs: pending in both views, on chain in none."""
    made = coop.request_withdraw(a, KEY_A, TokenAmount(total), LATER)
    assert not isinstance(made, Rejected)
    a, request = made
    confirmed = coop.receive_withdraw_request(b, KEY_B, request, NOW)
    assert not isinstance(confirmed, Rejected)
    return a, confirmed[0]


def test_coop_settle__pending_lock_in_the_requester_view__refused_locally() -> None:
    a, b = views()
    made = ch.make_locked_transfer(a, KEY_A, lock(1), 1, b.our.address, TokenAmount(10), NOW)
    assert not isinstance(made, Rejected)
    assert coop.request_coop_settle(made[0], KEY_A, LATER) == Rejected("pending locks")


def test_coop_settle_request__totals_not_our_balances__signed_refusal_naming_the_offer() -> None:
    a, b = views()
    request = coop.request_coop_settle(a, KEY_A, LATER)
    assert not isinstance(request, Rejected)
    greedy = signing.sign(
        KEY_A,
        dataclasses.replace(request, total_withdraw1=request.total_withdraw1 + 1),
        1,
        a.our.address,
        a.partner.address,
    )
    refused = coop.receive_coop_settle_request(b, KEY_B, greedy, NOW)
    assert _refusal(refused) is CoopSettleRefusal.BALANCES_DIFFER
    assert isinstance(refused, CoopSettleRefused)
    assert (refused.total_withdraw1, refused.expiration) == (greedy.total_withdraw1, LATER)
    assert signing.signer_of(refused, 1, b.our.address, a.our.address) == b.our.address


def test_coop_settle_request__not_the_partners__rejected_unanswered() -> None:
    a, b = views()
    request = coop.request_coop_settle(a, KEY_A, LATER)
    assert not isinstance(request, Rejected)
    # Altered after signing: nothing to answer (a refusal would sign what a forger chose).
    forged = dataclasses.replace(request, total_withdraw1=request.total_withdraw1 + 1)
    assert coop.receive_coop_settle_request(b, KEY_B, forged, NOW) == Rejected("invalid signature")


def test_coop_settle_request__each_rule__its_refusal_reason() -> None:
    a, b = views()
    request = coop.request_coop_settle(a, KEY_A, LATER)
    assert not isinstance(request, Rejected)
    answer = coop.receive_coop_settle_request
    assert _refusal(answer(b, KEY_B, request, LATER)) is CoopSettleRefusal.OFFER_EXPIRED
    closed = dataclasses.replace(b, phase=ch.ChannelPhase.CLOSED)
    assert _refusal(answer(closed, KEY_B, request, NOW)) is CoopSettleRefusal.CHANNEL_NOT_OPEN
    reopened = dataclasses.replace(b, generation=Generation(2))
    assert _refusal(answer(reopened, KEY_B, request, NOW)) is CoopSettleRefusal.CHANNEL_NOT_OPEN
    # A lock of B's that A has not seen yet (in flight towards A).
    made = ch.make_locked_transfer(b, KEY_B, lock(1), 1, a.our.address, TokenAmount(10), NOW)
    assert not isinstance(made, Rejected)
    assert _refusal(answer(made[0], KEY_B, request, NOW)) is CoopSettleRefusal.PENDING_LOCKS


def test_coop_settle__cosigned_withdraw_on_chain_in_neither_view__same_totals_both_sign() -> None:
    a, b = views(deposit_a=100, deposit_b=50)
    a, b = _cosigned_withdraw(a, b, 40)
    request = coop.request_coop_settle(a, KEY_A, LATER)
    assert not isinstance(request, Rejected)
    response = coop.receive_coop_settle_request(b, KEY_B, request, NOW)
    assert isinstance(response, CoopSettleResponse)
    # Final totals over the channel's life: the withdraw, landed or not, is part of A's 100.
    totals = (request.total_withdraw1, request.total_withdraw2)
    assert _by_address(a, totals) == {a.our.address: 100, b.our.address: 50}


def test_coop_settle__withdraw_landed_in_the_requester_view_only__same_totals_both_sign() -> None:
    # The known bug: B co-signed A's withdraw but its chain endpoint is down, so it never
    # saw the withdraw land; A's totals (withdrawn 40 + balance 60) equal B's (0 + 100).
    a, b = views(deposit_a=100, deposit_b=50)
    made = ch.make_direct_transfer(a, KEY_A, TokenAmount(30), 1)
    assert not isinstance(made, Rejected)
    a, transfer = made
    received = ch.receive(b, transfer, NOW)
    assert isinstance(received, ch.ChannelState)
    a, b = _cosigned_withdraw(a, received, 40)
    a = dataclasses.replace(
        a, our=dataclasses.replace(a.our, withdrawn=TokenAmount(40), withdraw_expiration=NO_TIME)
    )
    assert coop.coop_settle_totals(a) == coop.coop_settle_totals(b)
    request = coop.request_coop_settle(a, KEY_A, LATER)
    assert not isinstance(request, Rejected)
    response = coop.receive_coop_settle_request(b, KEY_B, request, NOW)
    assert isinstance(response, CoopSettleResponse)
    signed = coop.receive_coop_settle_response(a, request, response)
    assert isinstance(signed, coop.SignedCoopSettle)
    totals = (signed.total_withdraw1, signed.total_withdraw2)
    assert _by_address(a, totals) == {a.our.address: 70, b.our.address: 80}
    # In either order each side takes exactly its total over the channel's life (the
    # contract's rule, `settlement.cooperative_payouts`); a withdraw after the settle
    # reverts (tests/contracts/test_cooperative_settle.py).
    for withdrawn_a in (40, 0):  # the withdraw landed before the settle, or never
        withdrawn = _by_address(a, (0, 0)) | {a.our.address: withdrawn_a}
        deposits = {a.our.address: 100, b.our.address: 50}
        first, second = sorted(deposits)
        paid = settlement.cooperative_payouts(
            TokenAmount(deposits[first]),
            TokenAmount(deposits[second]),
            TokenAmount(withdrawn[first]),
            TokenAmount(withdrawn[second]),
            *totals,
        )
        assert paid is not None
        lifetime = {x: withdrawn[x] + p for x, p in zip((first, second), paid, strict=True)}
        assert lifetime == {a.our.address: 70, b.our.address: 80}


def test_coop_settle__pending_withdraw_above_its_final_total__refused() -> None:
    # Cannot arise while reservations hold (the amount was reserved from the balance), but
    # if it did, a withdraw landing first would make the contract refuse the settle.
    a, b = views(deposit_a=100, deposit_b=50)
    a, b = _cosigned_withdraw(a, b, 40)
    request = coop.request_coop_settle(a, KEY_A, LATER)
    assert not isinstance(request, Rejected)
    b = dataclasses.replace(
        b, partner=dataclasses.replace(b.partner, withdraw_pending=TokenAmount(101))
    )
    answer = coop.receive_coop_settle_request(b, KEY_B, request, NOW)
    assert _refusal(answer) is CoopSettleRefusal.WITHDRAW_ABOVE_TOTAL
    assert coop.coop_settle_totals(b) == Rejected("a pending withdraw exceeds its final total")


def test_coop_settle_refused__matches_our_offer__its_reason_else_rejected() -> None:
    a, b = views()
    request = coop.request_coop_settle(a, KEY_A, LATER)
    assert not isinstance(request, Rejected)
    refused = coop.refuse_coop_settle(b, KEY_B, request, CoopSettleRefusal.PENDING_LOCKS)
    assert coop.receive_coop_settle_refused(a, request, refused) is CoopSettleRefusal.PENDING_LOCKS
    older = dataclasses.replace(request, expiration=Timestamp(LATER - 1))
    assert coop.receive_coop_settle_refused(a, older, refused) == Rejected(
        "refusal of another offer"
    )
    forged = dataclasses.replace(refused, reason=CoopSettleRefusal.OFFER_EXPIRED)
    assert coop.receive_coop_settle_refused(a, request, forged) == Rejected("invalid signature")
