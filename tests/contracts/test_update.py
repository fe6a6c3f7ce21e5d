"""Unit tests of `update_non_closing_balance_proof` of the token network.

What belongs here: the non-closer (or its delegate) submitting the closer's newer balance
proof during the settle window: the event with its submitter, the proof stored for the
closer, the delegation recorded (delegate and reward) or cleared, successive updates, the
window's inclusive end, and every revert: not closed, window over, wrong closer, proof not
newer, nonce too large, invalid balance proof, not the named delegate, reward too large,
invalid delegation signature. What must not: how the reward is paid (test_settle.py).
"""

from __future__ import annotations

from typing import Any

import boa
import pytest

from offchain.protocol import eip712
from tests.lib.harness import SETTLE_WINDOW, ZERO32, ZERO_ADDRESS, raw

MAX_REWARD = 2**96 - 1


def _events(contract: Any, name: str) -> list[Any]:
    # Logs of the contract's LAST call: read them before any other call, a view included.
    return [e for e in contract.get_logs() if type(e).__name__ == name]


def _update(d, sender, closer, non_closer, proof, delegate, reward, delegation_sig, nonce=None):
    with boa.env.prank(sender.address):
        d.network.update_non_closing_balance_proof(
            closer.address,
            non_closer.address,
            proof.nonce if nonce is None else nonce,
            proof.balance_hash,
            proof.additional_hash,
            proof.signature,
            delegate,
            reward,
            delegation_sig,
        )


def _sign_delegation(d, signer, closer, non_closer, proof, delegate, reward):
    """`signer`'s Delegation over `proof` in the channel of closer and non_closer."""
    struct = eip712.Delegation(
        channel_id=d.cid(closer, non_closer),
        generation=d.generation(closer, non_closer),
        nonce=proof.nonce,
        balance_hash=proof.balance_hash,
        delegate=raw(delegate),
        reward=reward,
    )
    return eip712.sign(signer.key, d.domain, struct)


@pytest.fixture
def closed(d, funded):
    """a and b (deposits 100 and 50); a closed with b's proof of nonce 4: (a, b, cid)."""
    a, b = funded[0], funded[1]
    cid = d.open(a, b, deposit_a=100, deposit_b=50)
    d.close(a, b, d.proof(b, a, nonce=4, transferred=10))
    return a, b, cid


# --- positive ----------------------------------------------------------------------------------


def test_update__by_the_non_closer__logs_and_stores_the_closers_proof(d, closed):
    a, b, cid = closed
    proof = d.proof(a, b, nonce=1, transferred=30)

    d.update(b, a, proof)
    events = _events(d.network, "NonClosingBalanceProofUpdated")

    assert [
        (e.channel_id, e.closing_participant, e.nonce, e.balance_hash, e.submitter) for e in events
    ] == [(cid, a.address, 1, proof.balance_hash, b.address)]
    closer = d.network.get_participant(a.address, b.address)
    assert (closer.nonce, closer.balance_hash) == (1, proof.balance_hash)
    non_closer = d.network.get_participant(b.address, a.address)
    assert (non_closer.nonce, non_closer.delegate, non_closer.reward) == (4, ZERO_ADDRESS, 0)
    assert d.network.get_channel(a.address, b.address).state == 2


def test_update__at_exactly_the_deadline__is_accepted(d, closed):
    a, b, _ = closed
    deadline = d.network.get_channel(a.address, b.address).settle_window_or_deadline
    boa.env.time_travel(seconds=SETTLE_WINDOW)
    assert boa.env.evm.patch.timestamp == deadline

    d.update(b, a, d.proof(a, b, nonce=1, transferred=30))
    assert d.network.get_participant(a.address, b.address).nonce == 1


def test_update__by_a_delegate__records_delegate_and_reward(d, closed, funded):
    a, b, _ = closed
    delegate = funded[2]
    proof = d.proof(a, b, nonce=2, transferred=30)

    d.update(b, a, proof, sender=delegate, reward=7)
    (event,) = _events(d.network, "NonClosingBalanceProofUpdated")

    assert event.submitter == delegate.address
    info = d.network.get_participant(b.address, a.address)
    assert (info.delegate, info.reward) == (delegate.address, 7)
    assert d.network.get_participant(a.address, b.address).balance_hash == proof.balance_hash


def test_update__delegation_naming_zero_address__anyone_submits_and_is_recorded(
    d, closed, accounts
):
    a, b, _ = closed
    anyone = accounts[6]
    proof = d.proof(a, b, nonce=1, transferred=30)

    d.update(b, a, proof, sender=anyone, delegate=ZERO_ADDRESS, reward=5)

    info = d.network.get_participant(b.address, a.address)
    assert (info.delegate, info.reward) == (anyone.address, 5)


def test_update__largest_reward__is_accepted(d, closed, funded):
    a, b, _ = closed
    d.update(b, a, d.proof(a, b, nonce=1), sender=funded[2], reward=MAX_REWARD)
    assert d.network.get_participant(b.address, a.address).reward == MAX_REWARD


def test_update__by_the_non_closer_after_a_delegate__clears_the_delegation(d, closed, funded):
    a, b, _ = closed
    d.update(b, a, d.proof(a, b, nonce=1, transferred=30), sender=funded[2], reward=7)

    d.update(b, a, d.proof(a, b, nonce=2, transferred=40))

    info = d.network.get_participant(b.address, a.address)
    assert (info.delegate, info.reward) == (ZERO_ADDRESS, 0)
    assert d.network.get_participant(a.address, b.address).nonce == 2


def test_update__second_delegate__replaces_the_first_delegation(d, closed, funded):
    a, b, _ = closed
    d.update(b, a, d.proof(a, b, nonce=1, transferred=30), sender=funded[2], reward=7)
    d.update(b, a, d.proof(a, b, nonce=2, transferred=40), sender=funded[3], reward=3)
    info = d.network.get_participant(b.address, a.address)
    assert (info.delegate, info.reward) == (funded[3].address, 3)


def test_update__successive_rising_nonces__keeps_the_latest(d, closed):
    a, b, _ = closed
    for nonce in (1, 2, 5):
        proof = d.proof(a, b, nonce=nonce, transferred=10 * nonce)
        d.update(b, a, proof)
    info = d.network.get_participant(a.address, b.address)
    assert (info.nonce, info.balance_hash) == (5, proof.balance_hash)


def test_update__largest_nonce__is_accepted(d, closed):
    a, b, _ = closed
    d.update(b, a, d.proof(a, b, nonce=2**64 - 1, transferred=1))
    assert d.network.get_participant(a.address, b.address).nonce == 2**64 - 1


def test_update__closer_was_the_other_participant__roles_follow_the_close(d, funded):
    a, b = funded[0], funded[1]
    d.open(a, b)
    d.close(b, a, None)
    d.update(a, b, d.proof(b, a, nonce=1, transferred=10))
    assert d.network.get_participant(b.address, a.address).nonce == 1


# --- reverts -----------------------------------------------------------------------------------


def test_update__channel_open__reverts_not_closed(d, funded):
    a, b = funded[0], funded[1]
    d.open(a, b)
    with boa.reverts("token_network: channel not closed"):
        d.update(b, a, d.proof(a, b, nonce=1))


def test_update__channel_settled__reverts_not_closed(d, closed):
    a, b, _ = closed
    proof = d.proof(a, b, nonce=1)
    boa.env.time_travel(seconds=SETTLE_WINDOW + 1)
    d.settle(a, None, b, d.proof(b, a, nonce=4, transferred=10))
    with boa.reverts("token_network: channel not closed"):
        d.update(b, a, proof)


def test_update__one_second_after_the_deadline__reverts_window_over(d, closed):
    a, b, _ = closed
    proof = d.proof(a, b, nonce=1, transferred=30)
    boa.env.time_travel(seconds=SETTLE_WINDOW + 1)
    with boa.reverts("token_network: settle window over"):
        d.update(b, a, proof)


def test_update__roles_swapped__reverts_not_the_closing_participant(d, closed):
    # a closed; b pretends to be the closer and a submits b's proof as an "update".
    a, b, _ = closed
    with boa.reverts("token_network: not the closing participant"):
        d.update(a, b, d.proof(b, a, nonce=5, transferred=10))


def test_update__equal_nonce__reverts_not_newer(d, closed):
    a, b, _ = closed
    d.update(b, a, d.proof(a, b, nonce=2, transferred=30))
    with boa.reverts("token_network: proof not newer"):
        d.update(b, a, d.proof(a, b, nonce=2, transferred=40))


def test_update__lower_nonce__reverts_not_newer(d, closed):
    a, b, _ = closed
    d.update(b, a, d.proof(a, b, nonce=2, transferred=30))
    with boa.reverts("token_network: proof not newer"):
        d.update(b, a, d.proof(a, b, nonce=1, transferred=20))


def test_update__nonce_zero__reverts_not_newer(d, closed):
    a, b, _ = closed
    proof = d.proof(a, b, nonce=1, transferred=30)
    with boa.reverts("token_network: proof not newer"):
        _update(d, b, a, b, proof, ZERO_ADDRESS, 0, b"", nonce=0)


def test_update__nonce_2_pow_64__reverts_too_large(d, closed):
    a, b, _ = closed
    proof = d.proof(a, b, nonce=1, transferred=30)
    with boa.reverts("token_network: nonce too large"):
        _update(d, b, a, b, proof, ZERO_ADDRESS, 0, b"", nonce=2**64)


def test_update__proof_signed_by_the_non_closer__reverts(d, closed):
    a, b, _ = closed
    own = d.proof(b, a, nonce=5, transferred=30)
    with boa.reverts("token_network: invalid balance proof signature"):
        d.update(b, a, own)


def test_update__proof_signed_by_a_stranger__reverts(d, closed, funded):
    a, b, _ = closed
    stranger = funded[2]
    d.open(stranger, b)
    foreign = d.proof(stranger, b, nonce=5, transferred=30)  # valid, but another channel
    with boa.reverts("token_network: invalid balance proof signature"):
        d.update(b, a, foreign)


def test_update__fields_other_than_signed__reverts(d, closed):
    a, b, _ = closed
    proof = d.proof(a, b, nonce=2, transferred=30)
    with boa.reverts("token_network: invalid balance proof signature"):
        _update(d, b, a, b, proof, ZERO_ADDRESS, 0, b"", nonce=3)


def test_update__delegate_other_than_named__reverts(d, closed, funded):
    a, b, _ = closed
    named, submitter = funded[2], funded[3]
    with boa.reverts("token_network: not the named delegate"):
        d.update(b, a, d.proof(a, b, nonce=1), sender=submitter, delegate=named.address)


def test_update__reward_above_96_bits__reverts(d, closed, funded):
    a, b, _ = closed
    with boa.reverts("token_network: reward too large"):
        d.update(b, a, d.proof(a, b, nonce=1), sender=funded[2], reward=MAX_REWARD + 1)


def test_update__reward_other_than_signed__reverts(d, closed, funded):
    a, b, _ = closed
    delegate = funded[2]
    proof = d.proof(a, b, nonce=1)
    sig = d.sign_delegation(b, a, proof, delegate.address, 5)
    with boa.reverts("token_network: invalid delegation signature"):
        _update(d, delegate, a, b, proof, delegate.address, 6, sig)


def test_update__delegation_signed_for_another_delegate__reverts(d, closed, funded):
    a, b, _ = closed
    other, submitter = funded[2], funded[3]
    proof = d.proof(a, b, nonce=1)
    sig = d.sign_delegation(b, a, proof, other.address, 5)
    with boa.reverts("token_network: invalid delegation signature"):
        _update(d, submitter, a, b, proof, submitter.address, 5, sig)


def test_update__delegation_naming_a_delegate_used_as_zero__reverts(d, closed, funded):
    # A delegation for one delegate cannot be turned into an "anyone" delegation.
    a, b, _ = closed
    delegate = funded[2]
    proof = d.proof(a, b, nonce=1)
    sig = d.sign_delegation(b, a, proof, delegate.address, 5)
    with boa.reverts("token_network: invalid delegation signature"):
        _update(d, delegate, a, b, proof, ZERO_ADDRESS, 5, sig)


def test_update__delegation_for_another_proof__reverts(d, closed, funded):
    a, b, _ = closed
    delegate = funded[2]
    older = d.proof(a, b, nonce=1, transferred=10)
    newer = d.proof(a, b, nonce=2, transferred=20)
    sig = d.sign_delegation(b, a, older, delegate.address, 5)
    with boa.reverts("token_network: invalid delegation signature"):
        _update(d, delegate, a, b, newer, delegate.address, 5, sig)


@pytest.mark.parametrize("signer_index", [0, 2], ids=["closer", "stranger"])
def test_update__delegation_signed_by_other_than_the_non_closer__reverts(
    d, closed, funded, signer_index
):
    a, b, _ = closed
    delegate = funded[3]
    proof = d.proof(a, b, nonce=1)
    sig = _sign_delegation(d, funded[signer_index], a, b, proof, delegate.address, 5)
    with boa.reverts("token_network: invalid delegation signature"):
        _update(d, delegate, a, b, proof, delegate.address, 5, sig)


def test_update__delegate_without_delegation_signature__reverts(d, closed, funded):
    a, b, _ = closed
    delegate = funded[2]
    with boa.reverts("token_network: bad signature length"):
        _update(d, delegate, a, b, d.proof(a, b, nonce=1), delegate.address, 0, b"")
    assert d.network.get_participant(a.address, b.address).balance_hash == ZERO32
