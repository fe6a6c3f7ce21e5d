"""Withdraw and cooperative-settle flows between two views of one channel."""

from __future__ import annotations

import dataclasses

from offchain.protocol import channel as ch
from offchain.protocol import cooperative as coop
from offchain.protocol.channel import Rejected
from offchain.protocol.types import Timestamp, TokenAmount
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
    assert not isinstance(response, Rejected)
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


def test_coop_settle__pending_lock_or_wrong_totals__rejected() -> None:
    a, b = views()
    made = ch.make_locked_transfer(a, KEY_A, lock(1), 1, b.our.address, TokenAmount(10), NOW)
    assert not isinstance(made, Rejected)
    assert coop.request_coop_settle(made[0], KEY_A, LATER) == Rejected("pending locks")
    request = coop.request_coop_settle(a, KEY_A, LATER)
    assert not isinstance(request, Rejected)
    greedy = dataclasses.replace(request, total_withdraw1=request.total_withdraw1 + 1)
    assert coop.receive_coop_settle_request(b, KEY_B, greedy, NOW) == Rejected(
        "totals do not match our balances"
    )
