"""Plain replays of token network state-machine runs: found failures and pinned paths.

Belongs here: every failing sequence hypothesis finds in test_token_network_model.py, kept
as a plain pytest function that replays the printed steps against the same machine and
checks every invariant (I-C1..I-C5 of docs/spec.md) after each step, so that the case
stays tested whatever the random search does next. Beside them, a few sequences that pin
paths the random search reaches only in a minority of runs (stale close with a delegated
update, unlock at the exact expiration edge, a withdraw that makes a stale close
saturate, every invalid call), so that `make test` always walks them.

Does not belong here: new properties (they go in the state machine) or single-behaviour
contract tests (tests/contracts).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.property.test_token_network_model import (
    MAX_REWARD,
    UINT64_MAX,
    UINT256_MAX,
    TokenNetworkMachine,
)

pytestmark = pytest.mark.usefixtures("token_network_world")


@pytest.fixture
def state() -> Iterator[TokenNetworkMachine]:
    machine = TokenNetworkMachine()
    machine.check_all()
    try:
        yield machine
    finally:
        machine.teardown()


def step(state: TokenNetworkMachine, rule: Any, **kwargs: Any) -> None:
    """Run one rule, then every invariant, as hypothesis does."""
    rule(**kwargs)
    state.check_all()


def test_stale_close_then_delegated_update_with_capped_reward(state: TokenNetworkMachine) -> None:
    """A third party closes for side 0 with side 1's older proof; side 1's delegate puts
    side 0's latest proof (with a lock) on chain for a reward above side 1's share; the
    lock's secret is registered in time and the unlock pays side 1."""
    step(state, state.open_channel, pick=0, second=False, window=600, deposit=1000)
    step(
        state,
        state.deposit_or_withdraw,
        pick=0,
        side=1,
        withdraw=False,
        by_partner=False,
        amount=1000,
        fraction=1,
    )
    step(state, state.offchain, pick=1, kind="transfer", fraction=10, lifetime=1)
    step(state, state.offchain, pick=1, kind="lock", fraction=10, lifetime=3600)
    step(state, state.offchain, pick=0, kind="lock", fraction=10, lifetime=3600)
    step(state, state.offchain, pick=0, kind="transfer", fraction=10, lifetime=1)
    step(state, state.close, pick=0, side=0, stale=True, age=1, third_party=True)
    ch = state.channels[0]
    assert ch.sides[1].onchain_nonce == 1 < ch.sides[1].nonce  # a stale proof
    step(state, state.update, pick=0, age=0, how="delegate", reward=MAX_REWARD)
    assert ch.sides[0].onchain_nonce == ch.sides[0].nonce  # the latest proof won
    step(state, state.register_secret, pick=1)  # side 0's lock
    step(state, state.settle, pick=0, first=1, caller=4)
    assert 0 < state.rewards_paid < MAX_REWARD
    assert len(state.pending) == 1
    step(state, state.unlock, pick=0, caller=2)
    assert all(record.checked for record in state.records)


def test_secret_registered_at_expiration_counts_one_second_later_does_not(
    state: TokenNetworkMachine,
) -> None:
    """Two locks of side 0 reach the chain; one secret is registered exactly at its lock's
    expiration (claimable), the other one second after (returned to side 0)."""
    step(state, state.open_channel, pick=0, second=False, window=600, deposit=1000)
    step(state, state.offchain, pick=0, kind="lock", fraction=10, lifetime=100)
    step(state, state.offchain, pick=0, kind="lock", fraction=10, lifetime=200)
    step(state, state.close, pick=0, side=1, stale=False, age=0, third_party=False)
    # Edges: the deadline, then both expirations.
    step(state, state.time_travel, seconds=1, to_edge=True, pick=1, offset=0)
    step(state, state.register_secret, pick=0)
    step(state, state.time_travel, seconds=1, to_edge=True, pick=2, offset=1)
    step(state, state.register_secret, pick=0)
    first, second = (lock for _, lock in state.secrets)
    assert state.reveal[first.secrethash] == first.expiration
    assert state.reveal[second.secrethash] == second.expiration + 1
    step(state, state.settle, pick=0, first=0, caller=0)
    step(state, state.unlock, pick=0, caller=4)
    step(state, state.invalid_call, group=0, pick=0, side=0, kind=0)  # unlock again
    assert all(record.checked for record in state.records)


def test_withdraw_then_close_without_proof_saturates(state: TokenNetworkMachine) -> None:
    """Side 1 withdraws what side 0 sent it, then closes without side 0's proof: its share
    floors at zero (settle must not revert), side 0 takes the rest; the pair reopens in a
    new generation and settles cooperatively."""
    step(state, state.open_channel, pick=0, second=False, window=600, deposit=1000)
    step(state, state.offchain, pick=0, kind="transfer", fraction=50, lifetime=1)
    step(
        state,
        state.deposit_or_withdraw,
        pick=1,
        side=1,
        withdraw=True,
        by_partner=False,
        amount=1,
        fraction=100,
    )
    assert state.channels[0].sides[1].withdrawn == 500
    step(state, state.close, pick=0, side=1, stale=True, age=0, third_party=False)
    step(state, state.settle, pick=0, first=0, caller=3)
    step(state, state.open_channel, pick=0, second=True, window=600, deposit=700)
    assert state.channels[0].generation == 2
    step(state, state.offchain, pick=0, kind="transfer", fraction=30, lifetime=1)
    step(state, state.cooperative_settle, pick=0, side=1, caller=4)


def test_every_invalid_call_reverts_and_changes_nothing(state: TokenNetworkMachine) -> None:
    """Each kind of invalid call on an open channel, on a closed one (inside and after the
    window) and on an unlock."""
    step(state, state.open_channel, pick=0, second=False, window=600, deposit=1000)
    step(
        state,
        state.deposit_or_withdraw,
        pick=0,
        side=1,
        withdraw=False,
        by_partner=True,
        amount=300,
        fraction=1,
    )
    step(
        state,
        state.deposit_or_withdraw,
        pick=0,
        side=0,
        withdraw=True,
        by_partner=False,
        amount=1,
        fraction=10,
    )
    step(state, state.offchain, pick=0, kind="lock", fraction=10, lifetime=5000)
    for kind in range(11):
        for side in (0, 1):
            state._invalid_on_open_channel(0, side, kind)
            state.check_all()
    step(state, state.offchain, pick=1, kind="transfer", fraction=10, lifetime=1)
    step(state, state.close, pick=0, side=1, stale=False, age=0, third_party=False)
    for kind in range(10):
        state._invalid_on_closed_channel(0, 0, kind)
        state.check_all()
    step(state, state.time_travel, seconds=1, to_edge=True, pick=0, offset=1)
    for kind in range(10):
        state._invalid_on_closed_channel(0, 0, kind)
        state.check_all()
    step(state, state.settle, pick=0, first=0, caller=1)
    assert state.pending
    for kind in range(3):
        state._invalid_unlock(0, 0, kind)
        state.check_all()
    step(state, state.unlock, pick=0, caller=1)
    for kind in range(3):
        state._invalid_unlock(0, 0, kind)
        state.check_all()


def test_byzantine_proofs_at_the_uint256_limits_settle_and_unlock(
    state: TokenNetworkMachine,
) -> None:
    """Side 1 signs L = 2**256 - 1 under the empty locksroot; side 0 signs T = L = 2**256 - 1
    with the last nonce and locks of any amount. Both reach the chain (close, then an
    update by anyone's delegate); settle saturates instead of reverting (I-C4) and both
    retained sets unlock, the empty one included."""
    step(state, state.open_channel, pick=0, second=False, window=600, deposit=1000)
    step(
        state,
        state.deposit_or_withdraw,
        pick=0,
        side=1,
        withdraw=False,
        by_partner=False,
        amount=500,
        fraction=1,
    )
    step(state, state.offchain, pick=0, kind="transfer", fraction=10, lifetime=1)
    step(
        state,
        state.sign_arbitrary,
        pick=0,
        side=1,
        transferred=0,
        locked=UINT256_MAX,
        locks="none",
        amounts=[1],
        lifetime=1,
        last_nonce=False,
    )
    step(
        state,
        state.sign_arbitrary,
        pick=0,
        side=0,
        transferred=UINT256_MAX,
        locked=None,
        locks="fresh",
        amounts=[UINT256_MAX, 5],
        lifetime=100,
        last_nonce=True,
    )
    ch = state.channels[0]
    assert ch.sides[0].nonce == UINT64_MAX
    step(state, state.close, pick=0, side=0, stale=False, age=0, third_party=False)
    step(state, state.update, pick=0, age=0, how="anyone", reward=7)
    step(state, state.register_secret, pick=1)  # the 5-token lock, in time
    step(state, state.settle, pick=0, first=1, caller=2)
    assert sorted(len(p.locks) for p in state.pending) == [0, 2]
    step(state, state.unlock, pick=0, caller=4)
    step(state, state.unlock, pick=0, caller=4)
    assert not state.pending
    step(state, state.open_channel, pick=0, second=True, window=600, deposit=10)
    for side in (0, 1):
        state._invalid_on_open_channel(0, side, 10)  # generation 1 proofs are void
        state.check_all()
