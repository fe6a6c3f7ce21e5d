"""Regressions of the offline property test, kept as plain tests (DESIGN.md §4), and the
attack it is built around, step by step (tests/property/test_offline_property.py).

1. A payer blind since before its lock's expiration took the lock back (LockExpired)
   though its payee had registered the secret in time: the payee refused it, an invalid
   message between honest nodes, and the payer reported as failed a payment the chain
   paid. Fixed in the core (`Step.registrations_known`: such a payer waits until it has
   seen the chain past the expiration); unit tests in tests/unit/test_offline.py.
2. The attack, replayed on its boundaries: a dishonest partner closes one second after
   its victim lost the chain (the earliest close its view allows), with every clock
   `clock_tolerance` behind the chain's and every transaction taking `submit_margin` to
   be included. The victim that reaches the chain exactly at its announced horizon loses
   nothing; two seconds later it loses what the partner's newest proof held, and the
   test finds the missed deadline that explains it; a victim whose delegate beacons its
   view all along loses nothing while blind for the whole window.
"""

from __future__ import annotations

from typing import Any

from offchain.protocol.channel import ChannelPhase
from offchain.protocol.offline import DeadlineKind
from offchain.protocol.transitions import EventInvalidReceived, EventPaymentSucceeded
from offchain.watch.facts import Stage
from tests.lib.network import TOKEN_NETWORK
from tests.property.test_offline_property import TOLERANCE, OfflineMachine


class _Draws:
    """Plays back hypothesis's draws in order."""

    def __init__(self, *values: Any) -> None:
        self.values = list(values)

    def draw(self, _: object) -> Any:
        return self.values.pop(0)


def _machine(dishonest: set[int], delegates: list[int | None], inclusion: int) -> OfflineMachine:
    machine = OfflineMachine()
    machine.set_up(
        dishonest=dishonest, delegates=delegates, offsets=[-TOLERANCE] * 4, inclusion=inclusion
    )
    return machine


def _check(machine: OfflineMachine) -> None:
    machine.channel_views_hold()
    machine.no_invalid_messages_between_honest_nodes()
    machine.core_sees_what_the_runtime_sees()


def test_blind_payer__payee_registered_in_time__keeps_the_lock_and_the_payment_succeeds() -> None:
    machine = _machine({3}, [None] * 4, inclusion=30)
    w = machine.w
    n0, n1 = w.addresses[:2]
    machine.pay(_Draws(n0, n1), [100])
    machine.deliver_in_order(2)  # the lock and the secret reach n1, which reveals
    machine.disturb(_Draws(0), "drop")  # the reveal is lost for a while
    machine.node_chain(0, "lose")
    machine.advance(600)  # n1 registers the secret (n0 has not unlocked); n0 does not see it
    machine.advance(45)  # past the expiration: n0 cannot tell, and keeps the lock
    _check(machine)
    machine.deliver_in_order(30)
    _check(machine)
    assert not [e for e in w.effects[n1] if isinstance(e, EventInvalidReceived)]
    machine.teardown()
    assert [e for e in w.effects[n0] if isinstance(e, EventPaymentSucceeded)]


def _attack(then: str, delegates: list[int | None]) -> OfflineMachine:
    machine = _machine({0}, delegates, inclusion=30)
    n0, n1 = machine.w.addresses[:2]
    machine.attack(_Draws((n0, n1)), amount=50, then=then)
    return machine


def test_attack__victim_regains_at_its_horizon__update_lands_on_the_last_second() -> None:
    machine = _attack("at horizon", [None] * 4)
    w = machine.w
    n0, n1 = w.addresses[:2]
    channel = w.ledger.channel(n0, n1)
    assert channel is not None and channel.deadline is not None
    w.advance(w.ledger.inclusion)
    assert channel.proof(n0).nonce == 1  # the victim's update is on chain, just in time
    assert not w.ledger.reverts
    machine.teardown()
    assert channel.paid[n1] == 550
    assert not w.hosts[n1].misses


def test_attack__victim_regains_two_seconds_late__loses_what_the_missed_horizon_held() -> None:
    machine = _attack("2 s late", [None] * 4)
    w = machine.w
    n0, n1 = w.addresses[:2]
    machine.teardown()  # the loss is explained by the missed horizon (it checks)
    channel = w.ledger.channel(n0, n1)
    assert channel is not None and channel.stage is Stage.SETTLED
    assert channel.paid[n1] == 500  # the 50 the dishonest partner paid is lost
    (miss,) = w.hosts[n1].misses
    assert (miss.kind, miss.nonce, miss.amount) == (DeadlineKind.UPDATE_HORIZON, 1, 50)
    assert [reason for _, _, reason in w.ledger.reverts] == ["settle window over"]


def test_attack__victim_blind_all_window__its_delegate_corrects_the_close() -> None:
    machine = _attack("delegate", [None, 0, None, None])
    w = machine.w
    n0, n1 = w.addresses[:2]
    channel = w.ledger.channel(n0, n1)
    assert channel is not None
    watcher = w.watchers[w.hosts[n1].delegate or n1]
    assert channel.rewards[n1] == 1  # the delegate's update stood: it was paid its reward
    assert watcher.held[(n0, n1)].updated
    machine.teardown()
    assert channel.paid[n1] + channel.rewards[n1] == 550
    view = w.states[n1].channels[(TOKEN_NETWORK, n0)]
    assert view.phase is ChannelPhase.SETTLED
