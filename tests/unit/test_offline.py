"""The offline safety window in the pure core: docs/spec.md §14 (O-1..O-4), docs/offline.md.

Nodes run in one process (tests/lib/network.py); every message crosses the real codec.
Each rule is checked on both sides of its boundary. With the default settings
(clock_tolerance 5, submit_margin 30, offline_min_lead 120) and the network's settle
window of 3600 s, a blind node takes value from a partner while
view(P) + 3600 - 35 - now >= 120, i.e. view(P) >= now - 3445, and a lock while
E - 35 - now >= 120, i.e. E - now >= 155.
"""

from __future__ import annotations

import dataclasses

import pytest

from offchain.node import encoding
from offchain.protocol import codec, offline
from offchain.protocol.messages import BatchEntry, LockReturn, ReturnReason, SecretReveal
from offchain.protocol.offline import DeadlineKind
from offchain.protocol.state import MediatorStatus, Settings, TargetStatus
from offchain.protocol.transitions import (
    ActionPay,
    ActionPayDirect,
    ActionSetChainView,
    ChainChannelClosed,
    ChainSecretRegistered,
    ContractSendSecretRegister,
    ContractSendUnlock,
    ContractSendUpdate,
    EventDirectPaymentSent,
    EventInvalidReceived,
    EventPaymentFailed,
    EventPaymentReceived,
    EventPaymentSucceeded,
    FailureReason,
    PartnerProof,
)
from offchain.protocol.types import Address, Nonce, Signature, Timestamp, TokenAmount
from tests.lib.network import SETTLE_WINDOW, TOKEN_NETWORK, Network, secret_for

DEPOSIT = 1_000
SETTINGS = Settings()
LEAD = SETTINGS.clock_tolerance + SETTINGS.submit_margin + SETTINGS.offline_min_lead  # 155
OLDEST_VIEW = SETTLE_WINDOW - LEAD  # 3445: view(P) may be this far behind now


def blind(net: Network, node: Address, behind: int, **delegated: int) -> None:
    """`node` stops seeing the chain; its view is `behind` seconds old."""
    views = {(TOKEN_NETWORK, Address(bytes.fromhex(k[1:]))): Timestamp(net.now - v)
             for k, v in delegated.items()}  # fmt: skip
    net.apply(node, ActionSetChainView(net.now, Timestamp(net.now - behind), views))


def pay(net: Network, payer: Address, target: Address, amount: int, index: int = 1) -> None:
    secret, secrethash = secret_for(index)
    net.apply(
        payer,
        ActionPay(net.now, index, TOKEN_NETWORK, target, TokenAmount(amount), secrethash, secret),
    )


def failure(net: Network, address: Address) -> EventPaymentFailed:
    (event,) = net.events(address, EventPaymentFailed)
    assert isinstance(event, EventPaymentFailed)
    return event


def returns(net: Network) -> list[LockReturn]:
    found = []
    for flight in net.flights:
        message = codec.decode(flight.data)
        if isinstance(message, LockReturn):
            found.append(message)
    return found


# --- O-1: the mediator ---------------------------------------------------------------------


@pytest.mark.parametrize(("behind", "forwarded"), [(OLDEST_VIEW, True), (OLDEST_VIEW + 1, False)])
def test_mediator__blind__forwards_only_while_the_horizon_leaves_the_lead(
    behind: int, forwarded: bool
) -> None:
    net = Network.create(3)
    a, b, c = net.line(DEPOSIT)
    blind(net, b, behind)
    pay(net, a, c, 100)
    net.run()
    if forwarded:
        assert net.events(a, EventPaymentSucceeded)
        assert net.balance(c, b) == DEPOSIT + 100
    else:
        assert failure(net, a) == EventPaymentFailed(1, FailureReason.OFFLINE_WINDOW, b)
        assert net.balance(c, b) == DEPOSIT
        assert not net.events(c, EventPaymentReceived)


@pytest.mark.parametrize(("lock_timeout", "forwarded"), [(LEAD, True), (LEAD - 1, False)])
def test_mediator__blind_with_a_recent_view__forwards_only_a_lock_that_leaves_the_lead(
    lock_timeout: int, forwarded: bool
) -> None:
    net = Network.create(3, Settings(lock_timeout=lock_timeout))
    a, b, c = net.line(DEPOSIT)
    blind(net, b, 0)
    pay(net, a, c, 100)
    net.run()
    assert bool(net.events(a, EventPaymentSucceeded)) is forwarded
    if not forwarded:
        assert failure(net, a).reason is FailureReason.OFFLINE_WINDOW


def test_mediator__sees_the_chain__window_refuses_nothing() -> None:
    net = Network.create(3, Settings(lock_timeout=LEAD - 1))
    a, b, c = net.line(DEPOSIT)
    blind(net, b, OLDEST_VIEW + 1000)
    net.apply(b, ActionSetChainView(net.now, None, {}))  # the chain is back
    pay(net, a, c, 100)
    net.run()
    assert net.events(a, EventPaymentSucceeded)


def test_mediator__blind__a_delegate_view_of_the_payer_channel_opens_the_window() -> None:
    net = Network.create(3)
    a, b, c = net.line(DEPOSIT)
    # B's own view is too old, but a delegate holding A's latest proof saw the chain now.
    blind(net, b, OLDEST_VIEW + 1, **{"x" + a.hex(): 0})
    pay(net, a, c, 100)
    net.run()
    assert net.events(a, EventPaymentSucceeded)


def test_mediator__blind__a_delegate_view_of_another_channel_does_not_help() -> None:
    net = Network.create(3)
    a, b, c = net.line(DEPOSIT)
    blind(net, b, OLDEST_VIEW + 1, **{"x" + c.hex(): 0})
    pay(net, a, c, 100)
    net.run()
    assert failure(net, a).reason is FailureReason.OFFLINE_WINDOW


def test_initiator__blind_mediator__retries_another_route_excluding_it() -> None:
    net = Network.create(4)
    a, b, c, d = net.addresses
    for x, y in ((a, b), (a, c), (b, d), (c, d)):
        net.open(x, y, DEPOSIT, DEPOSIT)
    net.publish_graph()
    blind(net, b, OLDEST_VIEW + 1)
    blind(net, c, 0)
    pay(net, a, d, 100)
    net.run()
    assert net.events(a, EventPaymentSucceeded)
    assert net.balance(d, c) == DEPOSIT + 100  # through C, whatever was tried first


def test_initiator__every_mediator_blind__fails_offline_window_naming_the_last() -> None:
    net = Network.create(4)
    a, b, c, d = net.addresses
    for x, y in ((a, b), (a, c), (b, d), (c, d)):
        net.open(x, y, DEPOSIT, DEPOSIT)
    net.publish_graph()
    blind(net, b, OLDEST_VIEW + 1)
    blind(net, c, OLDEST_VIEW + 1)
    pay(net, a, d, 100)
    net.run()
    failed = failure(net, a)
    assert failed.reason is FailureReason.OFFLINE_WINDOW and failed.failed_hop in (b, c)
    for mediator in (b, c):
        assert all(
            record.status is MediatorStatus.RETURNED
            for record in net.states[mediator].mediators.values()
        )


# --- O-1: the target -----------------------------------------------------------------------


@pytest.mark.parametrize(("behind", "paid"), [(OLDEST_VIEW, True), (OLDEST_VIEW + 1, False)])
def test_target__blind__claims_only_while_the_horizon_leaves_the_lead(
    behind: int, paid: bool
) -> None:
    net = Network.create(2)
    a, b = net.line(DEPOSIT)
    blind(net, b, behind)
    pay(net, a, b, 100)
    net.run()
    assert bool(net.events(b, EventPaymentReceived)) is paid
    if not paid:
        # The target itself refused: final, no retry.
        assert failure(net, a) == EventPaymentFailed(1, FailureReason.OFFLINE_WINDOW, b)
        assert all(t.status is TargetStatus.RETURNED for t in net.states[b].targets.values())


@pytest.mark.parametrize(("lock_timeout", "paid"), [(LEAD, True), (LEAD - 1, False)])
def test_target__blind__claims_only_a_lock_that_leaves_the_lead(
    lock_timeout: int, paid: bool
) -> None:
    net = Network.create(2, Settings(lock_timeout=lock_timeout))
    a, b = net.line(DEPOSIT)
    blind(net, b, 0)
    pay(net, a, b, 100)
    net.run()
    assert bool(net.events(b, EventPaymentReceived)) is paid


def test_target__return_reason__crosses_the_wire_as_offline_window() -> None:
    net = Network.create(2)
    a, b = net.line(DEPOSIT)
    blind(net, b, OLDEST_VIEW + 1)
    pay(net, a, b, 100)
    for _ in range(2):  # the lock and the secret reach B
        net.deliver(0)
    (returned,) = returns(net)
    assert returned.reason is ReturnReason.OFFLINE_WINDOW and returned.failed_hop == b
    assert codec.decode(codec.encode(returned)) == returned


# --- O-2: sending is never refused -------------------------------------------------------


def test_initiator__blind_with_an_ancient_view__still_pays_and_pays_directly() -> None:
    net = Network.create(3)
    a, b, c = net.line(DEPOSIT)
    blind(net, a, 10 * SETTLE_WINDOW)
    pay(net, a, c, 100)
    net.apply(a, ActionPayDirect(net.now, TOKEN_NETWORK, b, (BatchEntry(7, TokenAmount(5)),)))
    net.run()
    assert net.events(a, EventPaymentSucceeded)
    assert net.events(a, EventDirectPaymentSent)
    assert net.balance(c, b) == DEPOSIT + 100


# --- O-3: proofs are never refused ---------------------------------------------------------


@pytest.mark.parametrize(("behind", "outside"), [(OLDEST_VIEW, False), (OLDEST_VIEW + 1, True)])
def test_direct__blind_receiver__applies_the_proof_and_flags_it_outside_the_window(
    behind: int, outside: bool
) -> None:
    net = Network.create(2)
    a, b = net.line(DEPOSIT)
    blind(net, b, behind)
    entries = (BatchEntry(7, TokenAmount(5)), BatchEntry(8, TokenAmount(6)))
    net.apply(a, ActionPayDirect(net.now, TOKEN_NETWORK, b, entries[:1]))
    net.apply(a, ActionPayDirect(net.now, TOKEN_NETWORK, b, entries))
    net.run()
    received = net.events(b, EventPaymentReceived)
    assert [(e.payment_id, e.outside_window) for e in received] == [  # type: ignore[attr-defined]
        (7, outside),
        (7, outside),
        (8, outside),
    ]
    assert net.balance(b, a) == DEPOSIT + 16
    assert not net.events(b, EventInvalidReceived)


def test_target__window_closes_after_the_reveal__the_unlock_is_still_applied() -> None:
    net = Network.create(2)
    a, b = net.line(DEPOSIT)
    pay(net, a, b, 100)
    for _ in range(2):  # the lock and the secret reach B, which reveals
        net.deliver(0)
    assert isinstance(codec.decode(net.flights[0].data), SecretReveal)
    blind(net, b, 10 * SETTLE_WINDOW)
    net.run()
    assert net.events(b, EventPaymentReceived)
    assert not net.events(b, EventInvalidReceived)
    assert net.balance(b, a) == DEPOSIT + 100


# --- the view in the state -----------------------------------------------------------------


def test_chain_view__persisted_with_the_state__survives_the_store_encoding() -> None:
    net = Network.create(2)
    a, b = net.line(DEPOSIT)
    blind(net, b, 50, **{"x" + a.hex(): 10})
    state = net.states[b]
    assert state.view_time == net.now - 50
    assert state.delegated == {(TOKEN_NETWORK, a): net.now - 10}
    decoded = encoding.decode(encoding.encode(dataclasses.replace(state, graphs={})))
    assert (decoded.view_time, decoded.delegated) == (state.view_time, state.delegated)
    net.apply(b, ActionSetChainView(net.now, None, {}))
    assert net.states[b].view_time is None and not net.states[b].delegated


# --- deadlines ------------------------------------------------------------------------------


def test_deadlines__no_value_held__no_horizon() -> None:
    net = Network.create(2)
    _, b = net.line(DEPOSIT)
    assert offline.deadlines(net.states[b], net.now) == []


def test_deadlines__value_held__horizon_from_own_or_delegate_view() -> None:
    net = Network.create(2)
    a, b = net.line(DEPOSIT)
    net.apply(a, ActionPayDirect(net.now, TOKEN_NETWORK, b, (BatchEntry(7, TokenAmount(5)),)))
    net.run()
    # Seeing the chain: the horizon counts from now (as if the chain disappeared now).
    (item,) = offline.deadlines(net.states[b], net.now)
    assert item.kind is DeadlineKind.UPDATE_HORIZON and item.partner == a
    assert item.chain_deadline == net.now + SETTLE_WINDOW
    assert item.deadline == net.now + SETTLE_WINDOW - 35
    assert (item.nonce, item.amount, item.delegated) == (1, 5, False)
    blind(net, b, 100)
    (item,) = offline.deadlines(net.states[b], Timestamp(net.now + 1000))
    assert item.chain_deadline == net.now - 100 + SETTLE_WINDOW and not item.delegated
    blind(net, b, 100, **{"x" + a.hex(): 20})
    (item,) = offline.deadlines(net.states[b], net.now)
    assert item.chain_deadline == net.now - 20 + SETTLE_WINDOW and item.delegated
    # A's side holds nothing from B: A lists nothing.
    assert offline.deadlines(net.states[a], net.now) == []


def test_deadlines__known_secret_lock_not_unlocked__registration_deadline_until_registered() -> (
    None
):
    net = Network.create(2)
    a, b = net.line(DEPOSIT)
    pay(net, a, b, 100)
    for _ in range(2):
        net.deliver(0)  # B knows the secret and revealed; A has not unlocked
    state = net.states[b]
    (lock,) = state.channels[(TOKEN_NETWORK, a)].partner.locks
    items = offline.deadlines(state, net.now)
    kinds = [item.kind for item in items]
    assert kinds == [DeadlineKind.REGISTER_SECRET, DeadlineKind.UPDATE_HORIZON]
    register = items[0]
    assert register.chain_deadline == lock.expiration
    assert register.deadline == lock.expiration - 35
    assert (register.secrethash, register.amount, register.pending) == (lock.secrethash, 100, False)
    # The registration queued: listed once, as pending work.
    secret, _ = secret_for(1)
    work = [ContractSendSecretRegister(secret, lock.expiration)]
    items = offline.deadlines(state, net.now, work)
    assert [(i.kind, i.pending) for i in items] == [
        (DeadlineKind.REGISTER_SECRET, True),
        (DeadlineKind.UPDATE_HORIZON, False),
    ]
    assert items[0].partner == a and items[0].amount == 100
    # Registered in time: nothing to do any more.
    net.apply(b, ChainSecretRegistered(net.now, secret, lock.secrethash, net.now))
    assert [i.kind for i in offline.deadlines(net.states[b], net.now)] == [
        DeadlineKind.UPDATE_HORIZON
    ]


def test_deadlines__lock_secret_unknown__no_registration_deadline() -> None:
    net = Network.create(3)
    a, b, c = net.line(DEPOSIT)
    pay(net, a, c, 100)
    net.deliver(0)  # the lock reaches B, which forwards it; B knows no secret
    kinds = [item.kind for item in offline.deadlines(net.states[b], net.now)]
    assert kinds == [DeadlineKind.UPDATE_HORIZON]


def test_deadlines__work__ordered_by_limit_no_limit_last() -> None:
    net = Network.create(2)
    a, b = net.line(DEPOSIT)
    proof = PartnerProof(Nonce(3), TokenAmount(40), TokenAmount(2), (), bytes(32),
                         Signature(bytes(65)))  # fmt: skip
    secret, _ = secret_for(9)
    work = [
        ContractSendUnlock(TOKEN_NETWORK, a, ()),
        ContractSendUpdate(TOKEN_NETWORK, a, proof),
        ContractSendSecretRegister(secret, Timestamp(net.now + 50)),
    ]
    closes = {(TOKEN_NETWORK, a): Timestamp(net.now + 900)}
    net.apply(b, ChainChannelClosed(net.now, TOKEN_NETWORK, a, a))
    items = offline.deadlines(net.states[b], net.now, work, closes)
    assert [i.kind for i in items] == [
        DeadlineKind.REGISTER_SECRET,
        DeadlineKind.UPDATE,
        DeadlineKind.UNLOCK,
    ]
    update = items[1]
    assert (update.chain_deadline, update.deadline) == (net.now + 900, net.now + 900 - 35)
    assert (update.nonce, update.amount, update.pending) == (3, 42, True)
    assert items[2].deadline is None and items[2].chain_deadline is None


def test_act_by__subtracts_tolerance_and_margin_never_below_zero() -> None:
    settings = dataclasses.replace(SETTINGS, clock_tolerance=7, submit_margin=11)
    assert offline.act_by(settings, 100) == 82
    assert offline.act_by(settings, 10) == 0
