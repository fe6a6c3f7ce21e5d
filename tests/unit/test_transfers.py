"""Mediated transfers through `node.transition`: every role, every ending, every refusal.

Nodes run in one process (tests/lib/network.py); every message crosses the real codec and
every signature is made and checked. Spec: docs/spec.md §11.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest

from offchain.protocol import codec, signing
from offchain.protocol.fees import FeeSchedule
from offchain.protocol.messages import (
    BatchEntry,
    DirectTransfer,
    LockedTransfer,
    LockExpired,
    LockReturn,
    PaymentSecret,
    SecretRequest,
    SecretReveal,
    TransferBatch,
    Unlock,
)
from offchain.protocol.node import transition
from offchain.protocol.state import (
    InitiatorStatus,
    MediatorStatus,
    NodeState,
    Settings,
    TargetStatus,
)
from offchain.protocol.transitions import (
    ActionCloseChannel,
    ActionExpectPayment,
    ActionPay,
    ActionPayDirect,
    ActionSetUnreachable,
    ChainChannelClosed,
    ChainChannelSettled,
    ContractSendClose,
    ContractSendSecretRegister,
    ContractSendUnlock,
    ContractSendUpdate,
    EventActionRefused,
    EventDirectPaymentSent,
    EventInvalidReceived,
    EventMediated,
    EventPaymentFailed,
    EventPaymentReceived,
    EventPaymentSucceeded,
    FailureReason,
    ReceiveMessage,
)
from offchain.protocol.types import Secret, TokenAmount
from tests.lib.network import START, TOKEN_NETWORK, Network, secret_for

DEPOSIT = 1_000


def pay(
    net: Network,
    payer: bytes,
    target: bytes,
    amount: int,
    index: int = 1,
    *,
    with_secret: bool = True,
    reveal_early: bool = True,
    max_fee: int | None = None,
) -> Secret:
    secret, secrethash = secret_for(index)
    net.apply(
        payer,  # type: ignore[arg-type]
        ActionPay(
            net.now,
            index,
            TOKEN_NETWORK,
            target,  # type: ignore[arg-type]
            TokenAmount(amount),
            secrethash,
            secret if with_secret else None,
            None if max_fee is None else TokenAmount(max_fee),
            reveal_early,
        ),
    )
    return secret


def pending_locks(net: Network) -> int:
    return sum(
        len(channel.our.locks) + len(channel.partner.locks)
        for state in net.states.values()
        for channel in state.channels.values()
    )


def drop(net: Network, kind: type) -> int:
    """Remove every message of `kind` in flight; return how many."""
    before = len(net.flights)
    net.flights = [f for f in net.flights if not isinstance(codec.decode(f.data), kind)]
    return before - len(net.flights)


def failure(net: Network, address: bytes) -> EventPaymentFailed:
    (event,) = net.events(address, EventPaymentFailed)  # type: ignore[arg-type]
    assert isinstance(event, EventPaymentFailed)
    return event


def test_pay__line_of_five__target_paid_mediators_even_no_locks_left() -> None:
    net = Network.create(5)
    a, b, c, d, e = net.line(DEPOSIT)
    secret = pay(net, a, e, 100)
    net.run()
    (done,) = net.events(a, EventPaymentSucceeded)
    assert done == EventPaymentSucceeded(1, e, TokenAmount(100), TokenAmount(0), secret)
    (received,) = net.events(e, EventPaymentReceived)
    # Paid by the last hop d; started by a, whose PaymentSecret carried the lock's secret.
    assert received == EventPaymentReceived(TOKEN_NETWORK, 1, d, TokenAmount(100), a)
    for mediator in (b, c, d):
        (mediated,) = net.events(mediator, EventMediated)
        assert isinstance(mediated, EventMediated) and mediated.fee == 0
        assert not net.states[mediator].mediators
    assert [net.balance(x, y) for x, y in itertools.pairwise(net.addresses)] == [900] * 4
    assert pending_locks(net) == 0


def test_pay__paid__target_forgets_record_and_announcement() -> None:
    net = Network.create(3)
    a, _, c = net.line(DEPOSIT)
    for index in range(1, 4):
        pay(net, a, c, 10, index=index)
    net.run()
    assert len(net.events(c, EventPaymentReceived)) == 3
    assert not net.states[c].targets and not net.states[c].announcements


def test_pay__flat_fees__each_mediator_keeps_its_fee() -> None:
    settings = Settings(fees=FeeSchedule(flat=5))
    net = Network.create(5, settings)
    a, b, c, d, e = net.line(DEPOSIT)
    pay(net, a, e, 100)
    net.run()
    (done,) = net.events(a, EventPaymentSucceeded)
    assert isinstance(done, EventPaymentSucceeded) and done.fee == 15
    for mediator in (b, c, d):
        (mediated,) = net.events(mediator, EventMediated)
        assert isinstance(mediated, EventMediated) and mediated.fee == 5
    assert net.balance(e, d) == DEPOSIT + 100
    assert net.balance(a, b) == DEPOSIT - 115


def test_pay__fee_above_budget__fails_fee_too_high_without_locking() -> None:
    net = Network.create(4, Settings(fees=FeeSchedule(flat=5)))
    a, _, _, d = net.line(DEPOSIT)
    pay(net, a, d, 100, max_fee=9)
    assert failure(net, a).reason is FailureReason.FEE_TOO_HIGH
    assert not net.flights


def test_pay__no_path__fails_no_route() -> None:
    net = Network.create(4)
    a, b, c, _ = net.addresses
    net.open(a, b, DEPOSIT, DEPOSIT)
    net.open(b, c, DEPOSIT, DEPOSIT)
    net.publish_graph()
    pay(net, a, net.addresses[3], 10)
    assert failure(net, a).reason is FailureReason.NO_ROUTE


def test_pay__above_capacity__fails_capacity() -> None:
    net = Network.create(3)
    a, _, c = net.line(DEPOSIT)
    pay(net, a, c, DEPOSIT + 1)
    assert failure(net, a).reason is FailureReason.CAPACITY


def test_pay__target_unreachable__fails_target_offline() -> None:
    net = Network.create(3)
    a, _, c = net.line(DEPOSIT)
    net.apply(a, ActionSetUnreachable(net.now, frozenset({c})))
    pay(net, a, c, 10)
    assert failure(net, a) == EventPaymentFailed(1, FailureReason.TARGET_OFFLINE, c)


def test_mediator__target_unreachable__returns_lock_and_initiator_fails_target_offline() -> None:
    net = Network.create(4)
    a, b, c, d = net.line(DEPOSIT)
    net.apply(c, ActionSetUnreachable(net.now, frozenset({d})))
    pay(net, a, d, 10)
    net.run()
    assert failure(net, a) == EventPaymentFailed(1, FailureReason.TARGET_OFFLINE, c)
    # Returned pairs free the capacity at once; they expire as pairs later.
    state = net.states[a].channels[(TOKEN_NETWORK, b)]
    assert len(state.our.locks) == len(state.partner.locks) == 1
    net.advance(Settings().lock_timeout + 10)
    net.run()
    assert pending_locks(net) == 0
    assert net.balance(a, b) == DEPOSIT


def diamond(net: Network) -> tuple[bytes, bytes, bytes, bytes]:
    """a - b - d and a - c - d; b's channel to d is too small for the payment."""
    a, b, c, d = net.addresses
    net.open(a, b, DEPOSIT, DEPOSIT)
    net.open(a, c, DEPOSIT, DEPOSIT)
    net.open(b, d, DEPOSIT, DEPOSIT)
    net.open(c, d, DEPOSIT, DEPOSIT)
    net.publish_graph()
    return a, b, c, d


def test_pay__hop_lacks_capacity__returned_and_retried_on_other_route() -> None:
    net = Network.create(4)
    a, b, c, d = diamond(net)
    # b pays most of its side to d directly: the published graph is now stale.
    secret_b = pay(net, b, d, 950, index=7)
    net.run()
    assert net.events(b, EventPaymentSucceeded)
    pay(net, a, d, 100)
    net.run()
    (done,) = net.events(a, EventPaymentSucceeded)
    assert isinstance(done, EventPaymentSucceeded) and done.amount == 100
    initiator_view = net.effects[a]
    assert not [e for e in initiator_view if isinstance(e, EventPaymentFailed)]
    assert net.balance(d, c) == DEPOSIT + 100
    assert net.balance(a, b) == DEPOSIT  # the pair nets out
    net.advance(Settings().lock_timeout + 10)
    net.run()
    assert pending_locks(net) == 0
    assert net.balance(a, b) == DEPOSIT and net.balance(a, c) == DEPOSIT - 100
    assert secret_b


def test_pay__every_route_fails__reason_and_failed_hop_reported() -> None:
    net = Network.create(3)
    a, b, c = net.line(DEPOSIT)
    pay(net, b, c, 990, index=9)  # b pays most of its side to c: it cannot forward 500
    net.run()
    pay(net, a, c, 500)
    net.run()
    event = failure(net, a)
    assert event.failed_hop == b and event.reason is FailureReason.CAPACITY


def test_pay_on_delivery__invoice_secret__initiator_learns_it() -> None:
    net = Network.create(3)
    a, _, c = net.line(DEPOSIT)
    secret, _ = secret_for(1)
    net.apply(c, ActionExpectPayment(net.now, TOKEN_NETWORK, secret, TokenAmount(50)))
    pay(net, a, c, 50, with_secret=False)
    net.run()
    (done,) = net.events(a, EventPaymentSucceeded)
    assert isinstance(done, EventPaymentSucceeded) and done.secret == secret
    assert net.balance(c, net.addresses[1]) == DEPOSIT + 50
    # Nothing told c who started it (the secret was c's own): paid by b, initiator unknown.
    (received,) = net.events(c, EventPaymentReceived)
    assert received == EventPaymentReceived(TOKEN_NETWORK, 1, net.addresses[1], TokenAmount(50))


def test_target__amount_below_invoice__rejected_by_target() -> None:
    net = Network.create(3)
    a, _, c = net.line(DEPOSIT)
    secret, _ = secret_for(1)
    net.apply(c, ActionExpectPayment(net.now, TOKEN_NETWORK, secret, TokenAmount(60)))
    pay(net, a, c, 50, with_secret=False)
    net.run()
    assert failure(net, a) == EventPaymentFailed(1, FailureReason.REJECTED, c)


def test_announce_without_secret__target_requests_it__paid() -> None:
    net = Network.create(3)
    a, _, c = net.line(DEPOSIT)
    pay(net, a, c, 40, reveal_early=False)
    kinds = [type(codec.decode(f.data)) for f in net.flights]
    assert PaymentSecret in kinds
    net.run()
    assert net.events(a, EventPaymentSucceeded)
    (received,) = net.events(c, EventPaymentReceived)
    # An announcement without the secret proves nobody started it: anyone may send one.
    assert isinstance(received, EventPaymentReceived) and received.initiator is None


def test_secret_request__wrong_amount__refused_as_invalid() -> None:
    net = Network.create(3)
    a, _, c = net.line(DEPOSIT)
    _, secrethash = secret_for(1)
    pay(net, a, c, 40, reveal_early=False)
    request = SecretRequest(TOKEN_NETWORK, 1, secrethash, TokenAmount(39), net.now, bytes(65))
    signed = signing.sign(net.keys[c], request, 1337, c, a)
    effects = net.apply(a, ReceiveMessage(net.now, c, signed))
    assert [type(e) for e in effects] == [EventInvalidReceived]


def test_payer_never_unlocks__payee_registers_secret_in_time_and_is_paid() -> None:
    net = Network.create(3)
    a, b, c = net.line(DEPOSIT)
    pay(net, a, c, 30)
    # b is away when c reveals the secret: c must protect itself on chain.
    while net.flights:
        if (
            isinstance(codec.decode(net.flights[0].data), SecretReveal)
            and net.flights[0].sender == c
        ):
            net.flights.pop(0)
            continue
        net.deliver(0)
    settings = Settings()
    net.advance(settings.lock_timeout - settings.reveal_timeout - 1)
    assert not net.registrations
    net.advance(2)
    assert [type(r) for r in net.registrations] == [ContractSendSecretRegister]
    net.mine()
    net.run()
    assert net.events(c, EventPaymentReceived)
    assert net.events(a, EventPaymentSucceeded)
    assert net.balance(c, b) == DEPOSIT + 30 and net.balance(b, a) == DEPOSIT + 30
    assert pending_locks(net) == 0


def test_secret_never_arrives__lock_expires__payment_failed_and_funds_back() -> None:
    net = Network.create(3)
    a, b, c = net.line(DEPOSIT)
    pay(net, a, c, 30)
    assert drop(net, PaymentSecret) == 1
    net.run()
    assert not net.events(a, EventPaymentFailed)
    net.advance(Settings().lock_timeout + Settings().clock_tolerance + 1)
    kinds = {type(codec.decode(f.data)) for f in net.flights}
    assert kinds == {LockExpired}
    net.run()
    assert failure(net, a).reason is FailureReason.LOCK_EXPIRED
    assert pending_locks(net) == 0
    assert net.balance(a, b) == DEPOSIT and net.balance(c, b) == DEPOSIT
    assert not net.states[b].mediators and not net.states[c].targets


def test_duplicates_and_reordering__same_outcome() -> None:
    net = Network.create(4)
    a, _, _, d = net.line(DEPOSIT)
    for index in range(1, 4):
        pay(net, a, d, 10, index=index)
    steps = 0
    while net.flights and steps < 10_000:
        steps += 1
        flight = net.flights[-1]  # newest first: reorders every channel's proofs
        net.flights.insert(0, dataclasses.replace(flight))  # and repeats each message once
        net.deliver(len(net.flights) - 1)
    assert len(net.events(a, EventPaymentSucceeded)) == 3
    assert len(net.events(d, EventPaymentReceived)) == 3
    assert not [e for s in net.effects.values() for e in s if isinstance(e, EventInvalidReceived)]
    assert net.balance(d, net.addresses[2]) == DEPOSIT + 30


def test_tampered_lock__invalid_event__state_unchanged() -> None:
    net = Network.create(3)
    a, b, c = net.line(DEPOSIT)
    pay(net, a, c, 30)
    flight = next(f for f in net.flights if f.recipient == b)
    message = codec.decode(flight.data)
    assert isinstance(message, LockedTransfer)
    for forged in (
        dataclasses.replace(message, amount=TokenAmount(31)),
        dataclasses.replace(message, target_amount=TokenAmount(29)),
        dataclasses.replace(message, signature=bytes(65)),
    ):
        before = net.states[b]
        state, effects = transition(before, ReceiveMessage(net.now, a, forged), net.keys[b])
        assert state == before
        assert [type(e) for e in effects] == [EventInvalidReceived]


def test_reveal_from_stranger__no_unlock() -> None:
    net = Network.create(3)
    a, b, c = net.line(DEPOSIT)
    secret = pay(net, a, c, 30)
    drop(net, PaymentSecret)
    net.run()
    reveal = signing.sign(net.keys[c], SecretReveal(TOKEN_NETWORK, secret, bytes(65)), 1337, c, a)
    effects = net.apply(a, ReceiveMessage(net.now, c, reveal))
    assert not [e for e in effects if isinstance(e, EventPaymentSucceeded)]
    assert net.states[a].channels[(TOKEN_NETWORK, b)].our.locks


def test_partner_closes__we_submit_its_latest_proof__settle_claims_registered_locks() -> None:
    net = Network.create(3)
    a, b, c = net.line(DEPOSIT)
    pay(net, a, c, 30)
    while net.flights:  # everything but the unlock from b to c
        flight = net.flights.pop(0)
        if isinstance(codec.decode(flight.data), Unlock) and flight.sender == b:
            continue
        net.flights.insert(0, flight)
        net.deliver(0)
    effects = net.apply(c, ChainChannelClosed(net.now, TOKEN_NETWORK, b, b))
    (update,) = [e for e in effects if isinstance(e, ContractSendUpdate)]
    assert update.proof.locked == 30 and len(update.proof.locks) == 1
    settings = Settings()
    net.advance(settings.lock_timeout - settings.reveal_timeout + 1)
    net.mine()
    effects = net.apply(c, ChainChannelSettled(net.now, TOKEN_NETWORK, b))
    (unlock,) = [e for e in effects if isinstance(e, ContractSendUnlock)]
    assert [lock.amount for lock in unlock.locks] == [30]


def test_close_action__emits_close_with_partner_proof() -> None:
    net = Network.create(2)
    a, b = net.line(DEPOSIT)
    pay(net, a, b, 30)
    net.run()
    effects = net.apply(b, ActionCloseChannel(net.now, TOKEN_NETWORK, a))
    (close,) = effects
    assert isinstance(close, ContractSendClose) and close.proof is not None
    assert close.proof.transferred == 30


def test_lock_return_message_names_failed_hop() -> None:
    net = Network.create(4)
    a, b, c, d = net.line(DEPOSIT)
    net.apply(c, ActionSetUnreachable(net.now, frozenset({d})))
    pay(net, a, d, 10)
    returns = []
    while net.flights:
        message = codec.decode(net.flights[0].data)
        if isinstance(message, LockReturn):
            returns.append((net.flights[0].sender, message.failed_hop, message.reason.name))
        net.deliver(0)
    assert returns == [(c, c, "TARGET_OFFLINE"), (b, c, "TARGET_OFFLINE")]


@pytest.mark.parametrize("amount", [0, -1])
def test_pay__non_positive_amount__is_a_caller_bug(amount: int) -> None:
    net = Network.create(2)
    a, b = net.line(DEPOSIT)
    with pytest.raises(ValueError, match="amount"):
        pay(net, a, b, amount)


def test_spec_tables__name_every_status_and_reason() -> None:
    spec = (Path(__file__).parents[2] / "docs" / "spec.md").read_text()
    section = spec[spec.index("## 11. Mediated transfers") :]
    for enum in (InitiatorStatus, MediatorStatus, TargetStatus, FailureReason):
        for member in enum:
            assert f"`{member.name}`" in section or member.name in section, member


def test_secret_request__from_someone_not_the_target__refused() -> None:
    net = Network.create(3)
    a, b, c = net.line(DEPOSIT)
    _, secrethash = secret_for(1)
    pay(net, a, c, 40, reveal_early=False)
    lock = net.states[a].channels[(TOKEN_NETWORK, b)].our.locks[0]
    request = SecretRequest(
        TOKEN_NETWORK, 1, secrethash, TokenAmount(40), lock.expiration, bytes(65)
    )
    signed = signing.sign(net.keys[b], request, 1337, b, a)
    effects = net.apply(a, ReceiveMessage(net.now, b, signed))
    assert [type(e) for e in effects] == [EventInvalidReceived]


def test_pay__same_action_twice__second_ignored() -> None:
    net = Network.create(2)
    a, b = net.line(DEPOSIT)
    pay(net, a, b, 10)
    before = net.states[a]
    assert pay(net, a, b, 10) and net.states[a] == before


def test_proof_with_a_gap__waits_for_its_predecessor() -> None:
    net = Network.create(2)
    a, b = net.line(DEPOSIT)
    for index in (1, 2):
        pay(net, a, b, 10, index=index)
    locks = [f for f in net.flights if isinstance(codec.decode(f.data), LockedTransfer)]
    assert len(locks) == 2
    net.flights.remove(locks[1])
    net.flights.insert(0, locks[1])  # nonce 2 first
    net.deliver(0)
    assert net.states[b].channels[(TOKEN_NETWORK, a)].partner.nonce == 0
    net.run()
    assert len(net.events(b, EventPaymentReceived)) == 2


def test_pay_direct__one_then_a_batch__partner_paid_each_with_one_signature_per_update() -> None:
    net = Network.create(2)
    a, b = net.line(DEPOSIT)
    net.apply(a, ActionPayDirect(net.now, TOKEN_NETWORK, b, (BatchEntry(1, TokenAmount(5)),)))
    entries = tuple(BatchEntry(n, TokenAmount(n)) for n in range(2, 12))
    net.apply(a, ActionPayDirect(net.now, TOKEN_NETWORK, b, entries))
    assert [type(codec.decode(f.data)) for f in net.flights] == [DirectTransfer, TransferBatch]
    net.run()
    received = [e for e in net.events(b, EventPaymentReceived)]
    assert len(received) == 11
    assert len(net.events(a, EventDirectPaymentSent)) == 11
    assert net.balance(b, a) == DEPOSIT + 5 + sum(range(2, 12))
    assert net.states[b].channels[(TOKEN_NETWORK, a)].partner.nonce == 2


def test_pay_direct__above_capacity__refused_nothing_sent() -> None:
    net = Network.create(2)
    a, b = net.line(DEPOSIT)
    entries = (BatchEntry(1, TokenAmount(DEPOSIT)), BatchEntry(2, TokenAmount(1)))
    effects = net.apply(a, ActionPayDirect(net.now, TOKEN_NETWORK, b, entries))
    assert effects == [EventActionRefused("insufficient capacity")]
    assert not net.flights


def test_returned_pair__secret_registered_in_time__both_halves_paid_off_chain() -> None:
    net = Network.create(4)
    a, b, c, d = diamond(net)
    pay(net, b, d, 950, index=7)  # b's side to d is too small now: b will return a's lock
    net.run()
    pay(net, a, d, 100)
    # c is away when d reveals: d registers the secret, which also covers the a-b pair.
    while net.flights:
        flight = net.flights[0]
        if flight.sender == d and isinstance(codec.decode(flight.data), SecretReveal):
            net.flights.pop(0)
            continue
        net.deliver(0)
    settings = Settings()
    net.advance(settings.lock_timeout - settings.reveal_timeout, tick_every=10, mine=True)
    net.run()
    assert pending_locks(net) == 0
    assert net.balance(a, b) == DEPOSIT  # the pair paid both ways
    assert net.balance(a, c) == DEPOSIT - 100 and net.balance(d, c) == DEPOSIT + 100
    (mediated,) = net.events(b, EventMediated)
    assert isinstance(mediated, EventMediated) and mediated.fee == 0


def test_transition__keeps_every_state_field_it_does_not_change() -> None:
    """`Step.finish` names NodeState's fields one by one: a field left out would silently
    fall back to its default after every input."""
    values: dict[str, object] = {}
    for field in dataclasses.fields(NodeState):
        if field.name in ("address", "chain_id"):
            continue
        if field.name == "settings":
            values[field.name] = Settings(reveal_timeout=61)
        elif field.name == "early":
            values[field.name] = {(TOKEN_NETWORK, b"p" * 20): {7: "proof"}}
        elif "frozenset" in str(field.type):
            values[field.name] = frozenset({field.name})
        else:
            values[field.name] = {field.name: "value"}
    state = NodeState(b"a" * 20, 7, **values)  # type: ignore[arg-type]
    new, effects = transition(state, ActionSetUnreachable(START, frozenset()), b"\x01" * 32)  # type: ignore[arg-type]
    assert effects == []
    assert dataclasses.replace(new, unreachable=state.unreachable) == state


def test_settle_with_our_unclaimable_lock__we_unlock_it_back_to_us() -> None:
    # A's lock to B is pending and its secret never registered: after settle nobody but
    # A has a reason to call unlock, so A's node does (else the tokens stay in the contract).
    net = Network.create(3)
    a, b, _ = net.line(DEPOSIT)
    pay(net, a, b, 30, with_secret=False)  # a lock whose secret B never learns
    net.run()
    lock = net.states[a].channels[(TOKEN_NETWORK, b)].our.locks
    assert lock, "the lock is pending"
    net.apply(a, ChainChannelClosed(net.now, TOKEN_NETWORK, b, a))
    effects = net.apply(a, ChainChannelSettled(net.now, TOKEN_NETWORK, b))
    (unlock,) = [e for e in effects if isinstance(e, ContractSendUnlock)]
    assert unlock.ours and unlock.locks == lock and unlock.partner == b


def test_tick__a_long_running_node_forgets_spent_secrets_and_stale_announcements() -> None:
    net = Network.create(3)
    a, _, c = net.line(DEPOSIT)
    for index in range(1, 6):
        pay(net, a, c, 3, index)
        net.run()
    net.advance(Settings().lock_timeout + 60, tick_every=10)
    for address in net.addresses:
        state = net.states[address]
        assert not state.secrets and not state.registered, address.hex()
        assert not state.announcements and not state.initiators and not state.targets
