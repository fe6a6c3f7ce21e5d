"""The delegation scheme end to end: a third party submits the non-closer's update for it.

Belongs here: whole stories from open to settle in which the non-closing participant B,
offline, has signed a `Delegation` for the closer A's latest balance proof naming a delegate
C and a reward R; what C may submit, what settle pays B and C (checked against
`offchain.protocol.settlement`), and how B's own update, a later delegation, a zero-address
delegate, a reward above B's share and a reopened channel change that. Does not belong here:
single forged or malformed delegations (the attack table, test_attacks.py).
"""

from __future__ import annotations

import boa
import pytest

from offchain.protocol.settlement import ParticipantTotals, apply_reward, settlement_payout
from tests.lib import harness
from tests.lib.harness import ZERO_ADDRESS, Account, Deployment, Proof

DEPOSIT_A = 100
DEPOSIT_B = 60
WITHDRAW_A = 20
REWARD = 7


def _past_window() -> None:
    boa.env.time_travel(seconds=harness.SETTLE_WINDOW + 1)


def _balances(d: Deployment, *accounts: Account) -> list[int]:
    return [d.token.balanceOf(x.address) for x in accounts]


def _shares(
    d: Deployment, a: Account, a_proof: Proof | None, b: Account, b_proof: Proof | None
) -> tuple[int, int]:
    """(A's, B's) settle payout by the Python oracle, from the channel's totals on chain."""
    info_a = d.network.get_participant(a.address, b.address)
    info_b = d.network.get_participant(b.address, a.address)
    payout = settlement_payout(
        ParticipantTotals(
            info_a.deposit,
            info_a.withdrawn,
            a_proof.transferred if a_proof else 0,
            a_proof.locked if a_proof else 0,
        ),
        ParticipantTotals(
            info_b.deposit,
            info_b.withdrawn,
            b_proof.transferred if b_proof else 0,
            b_proof.locked if b_proof else 0,
        ),
    )
    assert payout.locked_retained1 == payout.locked_retained2 == 0
    return payout.payout1, payout.payout2


def _delegate_update(
    d: Deployment,
    submitter: Account,
    b: Account,
    a: Account,
    proof: Proof,
    delegate: str,
    reward: int,
    generation: int | None = None,
) -> None:
    """`submitter` sends A's `proof` as B's update with B's Delegation(delegate, reward)."""
    signature = d.sign_delegation(b, a, proof, delegate, reward, generation=generation)
    with boa.env.prank(submitter.address):
        d.network.update_non_closing_balance_proof(
            a.address,
            b.address,
            proof.nonce,
            proof.balance_hash,
            proof.additional_hash,
            proof.signature,
            delegate,
            reward,
            signature,
        )


@pytest.fixture(params=[False, True], ids=["a-first", "a-second"])
def parties(request, d: Deployment, funded: list[Account]) -> tuple[Account, ...]:
    """(A closer, B non-closer, C delegate, D someone else), both orders of A and B.

    C and D hold no tokens, so their balances are exactly what the channel paid them.
    """
    low, high = sorted(funded[:2], key=lambda x: x.raw)
    a, b = (high, low) if request.param else (low, high)
    return a, b, funded[5], funded[6]


@pytest.fixture
def story(d: Deployment, parties: tuple[Account, ...]) -> dict:
    """A and B fund a channel, A withdraws, both pay; A closes with B's latest proof.

    A's proofs towards B: nonce 1..3 (T = 10, 25, 40), and nonce 4 (T = 45) that B gets
    later. B's proof towards A: nonce 2 (T = 15).
    """
    a, b, _, _ = parties
    d.open(a, b, deposit_a=DEPOSIT_A, deposit_b=DEPOSIT_B)
    d.withdraw(a, b, WITHDRAW_A)
    proofs_a = {
        n: d.proof(a, b, nonce=n, transferred=t) for n, t in ((1, 10), (2, 25), (3, 40), (4, 45))
    }
    proof_b = d.proof(b, a, nonce=2, transferred=15)
    d.close(a, b, proof_b)
    return {"a": proofs_a, "b": proof_b}


def test_settle__delegate_submitted_latest_proof__pays_delegate_reward_from_non_closer(
    d, parties, story
):
    a, b, c, _ = parties
    latest = story["a"][3]
    _delegate_update(d, c, b, a, latest, c.address, REWARD)
    info = d.network.get_participant(b.address, a.address)
    assert (info.delegate, info.reward) == (c.address, REWARD)
    assert d.network.get_participant(a.address, b.address).nonce == 3

    _past_window()
    share_a, share_b = _shares(d, a, latest, b, story["b"])
    b_gets, c_gets = apply_reward(share_b, REWARD)
    assert (share_a, share_b) == (DEPOSIT_A - WITHDRAW_A - 40 + 15, DEPOSIT_B + 40 - 15)
    assert c_gets == min(REWARD, share_b) == REWARD
    held = d.token.balanceOf(d.network.address)
    before = _balances(d, a, b, c)
    d.settle(a, latest, b, story["b"], sender=c)
    gained = [x - y for x, y in zip(_balances(d, a, b, c), before, strict=True)]
    assert gained == [share_a, b_gets, c_gets]
    # Conservation: everything that leaves at settle is what deposits left after withdraws.
    assert sum(gained) == held == DEPOSIT_A + DEPOSIT_B - WITHDRAW_A
    assert d.token.balanceOf(d.network.address) == 0
    info = d.network.get_participant(b.address, a.address)
    assert (info.delegate, info.reward) == (ZERO_ADDRESS, 0)


def test_settle__delegate_paid__logs_delegate_rewarded(d, parties, story):
    a, b, c, _ = parties
    latest = story["a"][3]
    _delegate_update(d, c, b, a, latest, c.address, REWARD)
    _past_window()
    d.settle(a, latest, b, story["b"])
    rewarded = [e for e in d.network.get_logs() if type(e).__name__ == "DelegateRewarded"]
    assert [(e.participant, e.delegate, e.reward) for e in rewarded] == [
        (b.address, c.address, REWARD)
    ]


def test_update__non_closer_returns_with_newer_proof__clears_delegation_and_pays_no_reward(
    d, parties, story
):
    a, b, c, _ = parties
    _delegate_update(d, c, b, a, story["a"][3], c.address, REWARD)
    newest = story["a"][4]
    d.update(b, a, newest)  # B is back online and submits itself
    info = d.network.get_participant(b.address, a.address)
    assert (info.delegate, info.reward) == (ZERO_ADDRESS, 0)

    _past_window()
    share_a, share_b = _shares(d, a, newest, b, story["b"])
    before = _balances(d, a, b, c)
    d.settle(a, newest, b, story["b"])
    gained = [x - y for x, y in zip(_balances(d, a, b, c), before, strict=True)]
    assert gained == [share_a, share_b, 0]


def test_update__zero_address_delegate__rewards_whoever_submits(d, parties, story):
    a, b, c, someone = parties
    latest = story["a"][3]
    _delegate_update(d, someone, b, a, latest, ZERO_ADDRESS, REWARD)
    info = d.network.get_participant(b.address, a.address)
    assert (info.delegate, info.reward) == (someone.address, REWARD)

    _past_window()
    _, share_b = _shares(d, a, latest, b, story["b"])
    before = _balances(d, b, c, someone)
    d.settle(a, latest, b, story["b"])
    gained = [x - y for x, y in zip(_balances(d, b, c, someone), before, strict=True)]
    assert gained == [share_b - REWARD, 0, REWARD]


def test_update__two_delegations_in_nonce_order__pays_only_the_last_delegate(d, parties, story):
    a, b, c, other = parties
    _delegate_update(d, c, b, a, story["a"][2], c.address, 3)
    latest = story["a"][3]
    _delegate_update(d, other, b, a, latest, other.address, 4)
    info = d.network.get_participant(b.address, a.address)
    assert (info.delegate, info.reward) == (other.address, 4)
    # The first delegate cannot win back its place with its older proof.
    with boa.reverts("token_network: proof not newer"):
        _delegate_update(d, c, b, a, story["a"][2], c.address, 3)

    _past_window()
    _, share_b = _shares(d, a, latest, b, story["b"])
    before = _balances(d, b, c, other)
    d.settle(a, latest, b, story["b"])
    gained = [x - y for x, y in zip(_balances(d, b, c, other), before, strict=True)]
    assert gained == [share_b - 4, 0, 4]


@pytest.mark.parametrize("reward", [10, 11, 1000, 2**96 - 1])
def test_settle__reward_at_or_above_share__pays_delegate_the_share_only(d, parties, reward):
    a, b, c, _ = parties
    d.open(a, b, deposit_a=DEPOSIT_A)  # B deposits nothing: its share is what A sent
    proof = d.proof(a, b, nonce=1, transferred=10)
    d.close(a, b, None)
    _delegate_update(d, c, b, a, proof, c.address, reward)
    _past_window()
    share_a, share_b = _shares(d, a, proof, b, None)
    assert share_b == 10
    before = _balances(d, a, b, c)
    d.settle(a, proof, b, None)
    gained = [x - y for x, y in zip(_balances(d, a, b, c), before, strict=True)]
    assert gained == [share_a, 0, 10]
    assert gained[2] == apply_reward(share_b, reward)[1]


def test_update__reward_above_96_bits__reverts_reward_too_large(d, parties):
    a, b, c, _ = parties
    d.open(a, b, deposit_a=DEPOSIT_A)
    proof = d.proof(a, b, nonce=1, transferred=10)
    d.close(a, b, None)
    with boa.reverts("token_network: reward too large"):
        _delegate_update(d, c, b, a, proof, c.address, 2**96)


def test_update__delegation_of_earlier_generation__reverts_invalid_delegation_signature(d, parties):
    a, b, c, _ = parties
    d.open(a, b, deposit_a=DEPOSIT_A)
    d.close(a, b, None)
    _past_window()
    d.settle(a, None, b, None)
    d.open(a, b, deposit_a=DEPOSIT_A)
    assert d.generation(a, b) == 2
    proof = d.proof(a, b, nonce=1, transferred=10)
    d.close(a, b, None)
    with boa.reverts("token_network: invalid delegation signature"):
        _delegate_update(d, c, b, a, proof, c.address, REWARD, generation=1)
    _delegate_update(d, c, b, a, proof, c.address, REWARD)  # positive twin: generation 2
    assert d.network.get_participant(b.address, a.address).delegate == c.address


def test_settle__delegation_of_previous_opening__does_not_carry_over(d, parties):
    # A delegation recorded and paid in generation 1 leaves nothing for generation 2.
    a, b, c, _ = parties
    d.open(a, b, deposit_a=DEPOSIT_A)
    proof = d.proof(a, b, nonce=1, transferred=10)
    d.close(a, b, None)
    _delegate_update(d, c, b, a, proof, c.address, REWARD)
    _past_window()
    d.settle(a, proof, b, None)
    assert _balances(d, c) == [REWARD]
    d.open(a, b, deposit_a=DEPOSIT_A)
    info = d.network.get_participant(b.address, a.address)
    assert (info.delegate, info.reward) == (ZERO_ADDRESS, 0)
    proof2 = d.proof(a, b, nonce=1, transferred=10)
    d.close(a, b, None)
    d.update(b, a, proof2)
    _past_window()
    before = _balances(d, b, c)
    d.settle(a, proof2, b, None)
    assert [x - y for x, y in zip(_balances(d, b, c), before, strict=True)] == [10, 0]
