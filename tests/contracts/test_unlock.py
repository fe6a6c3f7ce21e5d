"""Unit tests of `unlock` and `get_unlock_amount` of the token network.

What belongs here: paying out what settle retained for a sender's pending locks: to the
receiver for each lock whose secret was registered at or before its expiration, the rest
back to the sender (checked against `offchain.protocol.settlement.unlock_split`), the cap
at the retained amount, the event, who may call, unlocking an earlier generation after a
reopening, an empty lock list (tokens locked under the empty locksroot), and every revert:
nothing to unlock (wrong locks, generation or direction, twice, before settle, an empty
list with nothing under it), malformed locks. What must not: the settle payouts
themselves (test_settle.py) or the secret registry's own rules.
"""

from __future__ import annotations

from typing import Any

import boa
import pytest

from offchain.protocol.crypto import sha256
from offchain.protocol.locks import Lock, encode_locks, locksroot
from offchain.protocol.settlement import unlock_split
from tests.lib.harness import SETTLE_WINDOW, Account, Deployment, now

DEPOSIT_A = 100


def _events(contract: Any, name: str) -> list[Any]:
    # Logs of the contract's LAST call: read them before any other call, a view included.
    return [e for e in contract.get_logs() if type(e).__name__ == name]


def _secret(i: int) -> bytes:
    return sha256(b"unlock-test-secret-%d" % i)


def _lock(i: int, amount: int, expiration: int) -> Lock:
    return Lock(expiration, amount, sha256(_secret(i)))


def _reveal_times(d: Deployment, locks: list[Lock]) -> dict[bytes, int]:
    return {
        lock.secrethash: d.secret_registry.secrethash_to_timestamp(lock.secrethash)
        for lock in locks
    }


def _balances(d, *accounts):
    return [d.token.balanceOf(x.address) for x in accounts]


def _close_with_locks(
    d: Deployment,
    a: Account,
    b: Account,
    locks: list[Lock],
    deposit_a: int = DEPOSIT_A,
    transferred: int = 0,
) -> Any:
    """a sends `locks` (and `transferred`) to b; b closes with a's proof. Returns the proof."""
    d.open(a, b, deposit_a=deposit_a)
    proof = d.proof(a, b, nonce=1, transferred=transferred, locks=locks)
    d.close(b, a, proof)
    return proof


def _settle(d: Deployment, a: Account, b: Account, proof: Any) -> None:
    boa.env.time_travel(seconds=SETTLE_WINDOW + 1)
    d.settle(a, proof, b, None)


def _unlock_raw(d, caller, receiver, sender, generation, data):
    with boa.env.prank(caller.address):
        d.network.unlock(receiver.address, sender.address, generation, data)


# --- positive ----------------------------------------------------------------------------------


def test_unlock__secret_registered_before_expiry__receiver_gets_the_lock(d, funded):
    a, b = funded[0], funded[1]
    t0 = now()
    locks = [_lock(0, 30, t0 + 1000), _lock(1, 12, t0 + 1000)]
    d.register_secret(_secret(0))
    proof = _close_with_locks(d, a, b, locks)
    _settle(d, a, b, proof)
    assert d.network.get_unlock_amount(b.address, a.address, 1, proof.locksroot) == 42
    before_a, before_b = _balances(d, a, b)

    d.unlock(b, a, 1, locks)

    assert _balances(d, a, b) == [before_a + 12, before_b + 30]
    assert d.network.get_unlock_amount(b.address, a.address, 1, proof.locksroot) == 0
    assert d.token.balanceOf(d.network.address) == 0


def test_unlock__secret_registered_after_expiry__all_back_to_the_sender(d, funded):
    a, b = funded[0], funded[1]
    t0 = now()
    locks = [_lock(0, 30, t0 + 1000)]
    proof = _close_with_locks(d, a, b, locks)
    boa.env.time_travel(seconds=1001)
    d.register_secret(_secret(0))  # revealed, but one second late
    _settle(d, a, b, proof)
    before_a, before_b = _balances(d, a, b)

    d.unlock(b, a, 1, locks)

    assert _balances(d, a, b) == [before_a + 30, before_b]


def test_unlock__secret_never_registered__all_back_to_the_sender(d, funded):
    a, b = funded[0], funded[1]
    locks = [_lock(0, 30, now() + 1000)]
    proof = _close_with_locks(d, a, b, locks)
    _settle(d, a, b, proof)
    before_a, before_b = _balances(d, a, b)
    d.unlock(b, a, 1, locks)
    assert _balances(d, a, b) == [before_a + 30, before_b]


def test_unlock__registered_exactly_at_expiration__counts(d, funded):
    a, b = funded[0], funded[1]
    t0 = now()
    on_time = _lock(0, 25, t0 + 500)
    one_second_late = _lock(1, 9, t0 + 499)
    locks = [on_time, one_second_late]
    boa.env.time_travel(seconds=500)
    d.register_secret(_secret(0))
    d.register_secret(_secret(1))
    assert _reveal_times(d, locks) == {
        on_time.secrethash: t0 + 500,
        one_second_late.secrethash: t0 + 500,
    }
    proof = _close_with_locks(d, a, b, locks)
    _settle(d, a, b, proof)
    before_a, before_b = _balances(d, a, b)

    d.unlock(b, a, 1, locks)

    assert _balances(d, a, b) == [before_a + 9, before_b + 25]


def test_unlock__mixed_set_of_six_locks__split_as_the_oracle_says(d, funded):
    a, b = funded[0], funded[1]
    t0 = now()
    locks = [_lock(i, 10 * (i + 1), t0 + 1000 + 100 * i) for i in range(6)]
    d.register_secret(_secret(0))  # in time
    boa.env.time_travel(seconds=1000)
    d.register_secret(_secret(1))  # at t0 + 1000, lock 1 expires at t0 + 1100: in time
    boa.env.time_travel(seconds=200)
    d.register_secret(_secret(2))  # at expiration exactly (t0 + 1200): in time
    d.register_secret(_secret(3))  # lock 3 expires at t0 + 1300: in time
    boa.env.time_travel(seconds=401)
    d.register_secret(_secret(4))  # at t0 + 1601 after t0 + 1400: late; lock 5 never
    proof = _close_with_locks(d, a, b, locks, deposit_a=300, transferred=50)
    _settle(d, a, b, proof)
    retained = d.network.get_unlock_amount(b.address, a.address, 1, proof.locksroot)
    to_b, to_a = unlock_split(locks, _reveal_times(d, locks), retained)
    before_a, before_b = _balances(d, a, b)

    d.unlock(b, a, 1, locks)
    (event,) = _events(d.network, "ChannelUnlocked")

    assert retained == sum(lock.amount for lock in locks) == 210
    assert (to_b, to_a) == (10 + 20 + 30 + 40, 50 + 60)
    assert _balances(d, a, b) == [before_a + to_a, before_b + to_b]
    assert (event.channel_id, event.receiver, event.sender) == (d.cid(a, b), b.address, a.address)
    assert (event.locksroot, event.unlocked_amount, event.returned_amount) == (
        proof.locksroot,
        to_b,
        to_a,
    )


def test_unlock__claims_more_than_retained__pays_at_most_the_retained(d, funded):
    # a deposited 40 but locked 100 towards b: settle can only retain 40.
    a, b = funded[0], funded[1]
    t0 = now()
    locks = [_lock(0, 60, t0 + 1000), _lock(1, 40, t0 + 1000)]
    d.register_secret(_secret(0))
    d.register_secret(_secret(1))
    proof = _close_with_locks(d, a, b, locks, deposit_a=40)
    _settle(d, a, b, proof)
    retained = d.network.get_unlock_amount(b.address, a.address, 1, proof.locksroot)
    before_a, before_b = _balances(d, a, b)

    d.unlock(b, a, 1, locks)

    assert retained == 40
    assert unlock_split(locks, _reveal_times(d, locks), retained) == (40, 0)
    assert _balances(d, a, b) == [before_a, before_b + 40]
    assert d.token.balanceOf(d.network.address) == 0


def test_unlock__called_by_anyone__pays_only_receiver_and_sender(d, funded):
    a, b, anyone = funded[0], funded[1], funded[2]
    locks = [_lock(0, 30, now() + 1000), _lock(1, 5, now() + 1000)]
    d.register_secret(_secret(1))
    proof = _close_with_locks(d, a, b, locks)
    _settle(d, a, b, proof)
    before = _balances(d, a, b, anyone)

    d.unlock(b, a, 1, locks, caller=anyone)

    assert _balances(d, a, b, anyone) == [before[0] + 30, before[1] + 5, before[2]]


def test_unlock__both_directions__each_unlocks_its_own_locks(d, funded):
    a, b = funded[0], funded[1]
    t0 = now()
    locks_a = [_lock(0, 30, t0 + 1000)]
    locks_b = [_lock(1, 20, t0 + 1000)]
    d.register_secret(_secret(0))
    d.register_secret(_secret(1))
    d.open(a, b, deposit_a=100, deposit_b=100)
    proof_a = d.proof(a, b, nonce=1, locks=locks_a)
    proof_b = d.proof(b, a, nonce=1, locks=locks_b)
    d.close(b, a, proof_a)
    d.update(a, b, proof_b)
    boa.env.time_travel(seconds=SETTLE_WINDOW + 1)
    d.settle(a, proof_a, b, proof_b)
    before_a, before_b = _balances(d, a, b)

    d.unlock(b, a, 1, locks_a)
    d.unlock(a, b, 1, locks_b)

    assert _balances(d, a, b) == [before_a + 20, before_b + 30]
    assert d.token.balanceOf(d.network.address) == 0


def test_unlock__earlier_generation_after_reopening__still_pays(d, funded):
    a, b = funded[0], funded[1]
    locks = [_lock(0, 30, now() + 1000)]
    d.register_secret(_secret(0))
    proof = _close_with_locks(d, a, b, locks)
    _settle(d, a, b, proof)
    d.open(a, b, deposit_a=10)
    before_b = d.token.balanceOf(b.address)

    d.unlock(b, a, 1, locks)

    assert d.token.balanceOf(b.address) == before_b + 30
    assert d.network.get_participant(a.address, b.address).deposit == 10


def test_unlock__amount_locked_under_the_empty_locksroot__returns_to_the_sender(d, funded):
    # A proof may claim a locked amount without any lock: settle retains it under
    # keccak256(b""), and the empty list is what returns it.
    a, b = funded[0], funded[1]
    d.open(a, b, deposit_a=DEPOSIT_A)
    proof = d.proof(a, b, nonce=1, transferred=5, locked=30)
    assert proof.locksroot == locksroot([])
    d.close(b, a, proof)
    _settle(d, a, b, proof)
    assert d.network.get_unlock_amount(b.address, a.address, 1, proof.locksroot) == 30
    before_a, before_b = _balances(d, a, b)

    _unlock_raw(d, b, b, a, 1, b"")
    (event,) = _events(d.network, "ChannelUnlocked")

    assert (event.unlocked_amount, event.returned_amount) == (0, 30)
    assert _balances(d, a, b) == [before_a + 30, before_b]
    assert d.token.balanceOf(d.network.address) == 0


def test_get_unlock_amount__before_settle__is_zero(d, funded):
    a, b = funded[0], funded[1]
    locks = [_lock(0, 30, now() + 1000)]
    proof = _close_with_locks(d, a, b, locks)
    assert d.network.get_unlock_amount(b.address, a.address, 1, proof.locksroot) == 0
    _settle(d, a, b, proof)
    assert d.network.get_unlock_amount(b.address, a.address, 1, proof.locksroot) == 30
    # Keyed by direction: nothing is retained for b's (non-existent) locks.
    assert d.network.get_unlock_amount(a.address, b.address, 1, proof.locksroot) == 0


# --- reverts -----------------------------------------------------------------------------------


@pytest.fixture
def settled(d, funded):
    """a's two locks towards b retained by a settled first generation: (a, b, locks)."""
    a, b = funded[0], funded[1]
    locks = [_lock(0, 30, now() + 1000), _lock(1, 12, now() + 1000)]
    d.register_secret(_secret(0))
    proof = _close_with_locks(d, a, b, locks)
    _settle(d, a, b, proof)
    return a, b, locks


@pytest.mark.parametrize(
    "variant", ["one_lock_missing", "reordered", "amount_changed", "extra_lock"]
)
def test_unlock__locks_other_than_settled__reverts_nothing_to_unlock(d, settled, variant):
    a, b, locks = settled
    other = {
        "one_lock_missing": locks[:1],
        "reordered": locks[::-1],
        "amount_changed": [locks[0], Lock(locks[1].expiration, 13, locks[1].secrethash)],
        "extra_lock": [*locks, _lock(2, 1, now())],
    }[variant]
    assert locksroot(other) != locksroot(locks)
    with boa.reverts("token_network: nothing to unlock"):
        d.unlock(b, a, 1, other)


def test_unlock__wrong_generation__reverts_nothing_to_unlock(d, settled):
    a, b, locks = settled
    for generation in (0, 2):
        with boa.reverts("token_network: nothing to unlock"):
            d.unlock(b, a, generation, locks)


def test_unlock__receiver_and_sender_swapped__reverts_nothing_to_unlock(d, settled):
    a, b, locks = settled
    with boa.reverts("token_network: nothing to unlock"):
        d.unlock(a, b, 1, locks)


def test_unlock__twice__reverts_nothing_to_unlock(d, settled):
    a, b, locks = settled
    d.unlock(b, a, 1, locks)
    held = d.token.balanceOf(d.network.address)
    with boa.reverts("token_network: nothing to unlock"):
        d.unlock(b, a, 1, locks)
    assert d.token.balanceOf(d.network.address) == held


def test_unlock__before_settle__reverts_nothing_to_unlock(d, funded):
    a, b = funded[0], funded[1]
    locks = [_lock(0, 30, now() + 1000)]
    _close_with_locks(d, a, b, locks)
    with boa.reverts("token_network: nothing to unlock"):
        d.unlock(b, a, 1, locks)


def test_unlock__empty_list_with_nothing_locked_under_it__reverts_nothing_to_unlock(d, settled):
    a, b, _ = settled
    with boa.reverts("token_network: nothing to unlock"):
        _unlock_raw(d, b, b, a, 1, b"")


@pytest.mark.parametrize("cut", [1, 95, -1])
def test_unlock__length_not_a_multiple_of_96__reverts_malformed(d, settled, cut):
    a, b, locks = settled
    data = encode_locks(locks)
    data = data[:cut] if cut > 0 else data + b"\x00"
    with boa.reverts("token_network: malformed locks"):
        _unlock_raw(d, b, b, a, 1, data)
