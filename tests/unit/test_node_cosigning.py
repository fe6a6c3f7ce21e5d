"""Withdraw and cooperative settle through `node.transition` (offchain/protocol/cosigning.py)."""

from __future__ import annotations

import dataclasses

from offchain.protocol import codec
from offchain.protocol.channel import spendable
from offchain.protocol.locks import ordered
from offchain.protocol.messages import WithdrawConfirmation
from offchain.protocol.state import Settings
from offchain.protocol.transitions import (
    ActionCoopSettle,
    ActionPay,
    ActionWithdraw,
    ChainWithdraw,
    ContractSendCoopSettle,
    ContractSendWithdraw,
    EventActionRefused,
    EventInvalidReceived,
    EventPaymentFailed,
    ReceiveMessage,
)
from offchain.protocol.types import Timestamp, TokenAmount
from tests.lib.network import TOKEN_NETWORK, Network, secret_for

DEPOSIT = 1_000


def withdraw(net: Network, partner: bytes, total: int, seconds: int) -> ActionWithdraw:
    return ActionWithdraw(
        net.now,
        TOKEN_NETWORK,
        partner,  # type: ignore[arg-type]
        TokenAmount(total),
        Timestamp(net.now + seconds),
    )


def test_withdraw__partner_cosigns__both_signatures_and_reserved_until_on_chain() -> None:
    net = Network.create(2)
    a, b = net.line(DEPOSIT)
    expiration = Timestamp(net.now + 300)
    net.apply(a, ActionWithdraw(net.now, TOKEN_NETWORK, b, TokenAmount(300), expiration))
    channel = net.states[a].channels[(TOKEN_NETWORK, b)]
    assert spendable(channel.our, channel.partner) == DEPOSIT - 300
    net.run()
    (effect,) = net.events(a, ContractSendWithdraw)
    assert isinstance(effect, ContractSendWithdraw)
    assert (effect.withdraw.total_withdraw, effect.withdraw.expiration) == (300, expiration)
    for me, partner in ((a, b), (b, a)):
        net.apply(me, ChainWithdraw(net.now, TOKEN_NETWORK, partner, a, TokenAmount(300)))
    assert net.balance(a, b) == DEPOSIT - 300 and net.balance(b, a) == DEPOSIT
    assert net.states[a].channels[(TOKEN_NETWORK, b)].our.withdrawn == 300


def test_withdraw__confirmation_lost__expires_and_reservation_released_on_both_sides() -> None:
    net = Network.create(2)
    a, b = net.line(DEPOSIT)
    net.apply(
        a, ActionWithdraw(net.now, TOKEN_NETWORK, b, TokenAmount(300), Timestamp(net.now + 60))
    )
    net.deliver(0)  # the request reaches b; b's confirmation is lost
    net.flights.clear()
    net.advance(61 + Settings().clock_tolerance)
    net.run()
    for me, partner in ((a, b), (b, a)):
        view = net.states[me].channels[(TOKEN_NETWORK, partner)]
        end = view.our if me == a else view.partner
        assert end.withdraw_pending == end.withdrawn == 0
    channel = net.states[a].channels[(TOKEN_NETWORK, b)]
    assert spendable(channel.our, channel.partner) == DEPOSIT


def test_withdraw__above_capacity__refused_locally() -> None:
    net = Network.create(2)
    a, b = net.line(DEPOSIT)
    effects = net.apply(
        a,
        ActionWithdraw(
            net.now, TOKEN_NETWORK, b, TokenAmount(DEPOSIT + 1), Timestamp(net.now + 60)
        ),
    )
    assert effects == [EventActionRefused("insufficient capacity")]


def test_confirmation__replayed_ignored__forged_invalid() -> None:
    net = Network.create(2)
    a, b = net.line(DEPOSIT)
    net.apply(a, withdraw(net, b, 20, 60))
    net.deliver(0)
    reply = codec.decode(net.flights.pop(0).data)
    assert isinstance(reply, WithdrawConfirmation)
    forged = dataclasses.replace(
        reply, signature=bytes([reply.signature[0] ^ 1]) + reply.signature[1:]
    )
    effects = net.apply(a, ReceiveMessage(net.now, b, forged))
    assert [type(e) for e in effects] == [EventInvalidReceived]
    assert [type(e) for e in net.apply(a, ReceiveMessage(net.now, b, reply))] == [
        ContractSendWithdraw
    ]
    assert net.apply(a, ReceiveMessage(net.now, b, reply)) == []  # sent to the chain once


def test_withdraw_request__repeated__same_confirmation_again() -> None:
    net = Network.create(2)
    a, b = net.line(DEPOSIT)
    net.apply(a, withdraw(net, b, 20, 60))
    request = net.flights[0]
    net.deliver(0)
    net.flights.append(request)
    net.deliver(1)
    first, second = (codec.decode(f.data) for f in net.flights)
    assert first == second
    assert not net.events(b, EventInvalidReceived)


def test_coop_settle__after_payments__totals_are_balances_and_channel_frozen() -> None:
    net = Network.create(2)
    a, b = net.line(DEPOSIT)
    secret, secrethash = secret_for(1)
    net.apply(a, ActionPay(net.now, 1, TOKEN_NETWORK, b, TokenAmount(250), secrethash, secret))
    net.run()
    net.apply(a, ActionCoopSettle(net.now, TOKEN_NETWORK, b, Timestamp(net.now + 120)))
    net.run()
    (effect,) = net.events(a, ContractSendCoopSettle)
    assert isinstance(effect, ContractSendCoopSettle)
    first, _ = ordered(a, b)
    totals = (DEPOSIT - 250, DEPOSIT + 250) if first == a else (DEPOSIT + 250, DEPOSIT - 250)
    assert (effect.settle.total_withdraw1, effect.settle.total_withdraw2) == totals
    # Neither side pays over the channel while the signed settle stands.
    secret2, secrethash2 = secret_for(2)
    net.apply(b, ActionPay(net.now, 2, TOKEN_NETWORK, a, TokenAmount(5), secrethash2, secret2))
    (failed,) = net.events(b, EventPaymentFailed)
    assert isinstance(failed, EventPaymentFailed)


def test_coop_settle__pending_lock__refused() -> None:
    net = Network.create(2)
    a, b = net.line(DEPOSIT)
    secret, secrethash = secret_for(1)
    net.apply(a, ActionPay(net.now, 1, TOKEN_NETWORK, b, TokenAmount(250), secrethash, secret))
    effects = net.apply(a, ActionCoopSettle(net.now, TOKEN_NETWORK, b, Timestamp(net.now + 120)))
    assert effects == [EventActionRefused("pending locks")]
