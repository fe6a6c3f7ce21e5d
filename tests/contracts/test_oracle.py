"""What Python signs the contract accepts, and what Python predicts the contract pays.

Belongs here: agreement between `offchain.protocol` (the oracle the node uses) and the
contracts, struct by struct and for settlement payouts (docs/spec.md I-C2, I-C6).
"""

import boa
from hypothesis import given
from hypothesis import strategies as st

from offchain.protocol import eip712
from offchain.protocol.crypto import sha256
from offchain.protocol.locks import Lock, channel_id
from offchain.protocol.settlement import ParticipantTotals, settlement_payout
from tests.lib import harness
from tests.lib.harness import Account, Deployment

UINT256_MAX = 2**256 - 1


def test_domain_separator__python_and_contract__equal(d: Deployment) -> None:
    assert bytes(d.network.domain_separator()) == d.domain.separator


def test_channel_id__python_and_contract__equal(d: Deployment, accounts: list[Account]) -> None:
    a, b = accounts[0], accounts[1]
    assert bytes(d.network.channel_id(a.address, b.address)) == channel_id(a.raw, b.raw)
    assert bytes(d.network.channel_id(b.address, a.address)) == channel_id(a.raw, b.raw)


def test_withdraw__signed_by_python__accepted(d: Deployment, funded: list[Account]) -> None:
    a, b = funded[0], funded[1]
    d.open(a, b, deposit_a=100)
    d.withdraw(a, b, 40)
    assert d.network.get_participant(a.address, b.address).withdrawn == 40


def test_cooperative_settle__signed_by_python__accepted(
    d: Deployment, funded: list[Account]
) -> None:
    a, b = funded[0], funded[1]
    d.open(a, b, deposit_a=100, deposit_b=50)
    expiration = harness.now() + 60
    sig_a = d.sign_coop(a, a, b, 70, 80, expiration)
    sig_b = d.sign_coop(b, a, b, 70, 80, expiration)
    before = d.token.balanceOf(a.address), d.token.balanceOf(b.address)
    d.network.cooperative_settle(a.address, b.address, 70, 80, expiration, sig_a, sig_b)
    assert d.token.balanceOf(a.address) - before[0] == 70
    assert d.token.balanceOf(b.address) - before[1] == 80


def test_balance_proof_close_and_delegation__signed_by_python__accepted(
    d: Deployment, funded: list[Account]
) -> None:
    a, b, delegate, closer_agent = funded[0], funded[1], funded[2], funded[3]
    d.open(a, b, deposit_a=100, deposit_b=100)
    proof_b = d.proof(b, a, nonce=4, transferred=30)
    proof_a = d.proof(a, b, nonce=7, transferred=10)
    d.close(a, b, proof_b, sender=closer_agent)  # Close + BalanceProof
    d.update(b, a, proof_a, sender=delegate, reward=3)  # BalanceProof + Delegation
    info = d.network.get_participant(a.address, b.address)
    assert (info.nonce, bytes(info.balance_hash)) == (7, proof_a.balance_hash)
    assert d.network.get_participant(b.address, a.address).reward == 3


amounts = st.integers(min_value=0, max_value=10**21)
huge = st.one_of(amounts, st.integers(min_value=0, max_value=UINT256_MAX))


@given(
    deposits=st.tuples(amounts, amounts),
    withdraw_share=st.floats(min_value=0, max_value=1),
    transferred=st.tuples(huge, huge),
    locked=st.tuples(huge, huge),
)
def test_settle__any_proofs__pays_what_python_predicts(
    deployed: Deployment,
    accounts: list[Account],
    deposits: tuple[int, int],
    withdraw_share: float,
    transferred: tuple[int, int],
    locked: tuple[int, int],
) -> None:
    d = deployed
    a, b = accounts[4], accounts[5]
    with boa.env.anchor():
        for account in (a, b):
            d.fund(account, 10**22)
        d.open(a, b, deposit_a=deposits[0] or 0, deposit_b=deposits[1] or 0)
        withdraw = int(deposits[0] * withdraw_share)
        if withdraw:
            d.withdraw(a, b, withdraw)
        expiration = harness.now() + 10_000
        lock_a = [Lock(expiration=expiration, amount=locked[0], secrethash=sha256(b"a" * 32))]
        lock_b = [Lock(expiration=expiration, amount=locked[1], secrethash=sha256(b"b" * 32))]
        proof_a = d.proof(a, b, nonce=1, transferred=transferred[0], locks=lock_a)
        proof_b = d.proof(b, a, nonce=1, transferred=transferred[1], locks=lock_b)
        d.close(a, b, proof_b)
        d.update(b, a, proof_a)
        boa.env.time_travel(seconds=harness.SETTLE_WINDOW + 1)
        before = d.token.balanceOf(a.address), d.token.balanceOf(b.address)
        d.settle(a, proof_a, b, proof_b)
        paid = (d.token.balanceOf(a.address) - before[0], d.token.balanceOf(b.address) - before[1])

        predicted = settlement_payout(
            ParticipantTotals(deposits[0], withdraw, transferred[0], locked[0]),
            ParticipantTotals(deposits[1], 0, transferred[1], locked[1]),
        )
        assert paid == (predicted.payout1, predicted.payout2)
        generation = d.generation(a, b)
        root_a, root_b = proof_a.locksroot, proof_b.locksroot
        retained = (
            d.network.get_unlock_amount(b.address, a.address, generation, root_a),
            d.network.get_unlock_amount(a.address, b.address, generation, root_b),
        )
        assert retained == (predicted.locked_retained1, predicted.locked_retained2)
        assert d.token.balanceOf(d.network.address) == sum(retained)


def test_eip712_struct_types__match_contract_typehashes() -> None:
    # The contract's type strings are constants in its source; the oracle's must be the same.
    source = (harness.CONTRACTS / "token_network.vy").read_text()
    for struct in (
        eip712.BalanceProof,
        eip712.Close,
        eip712.Delegation,
        eip712.Withdraw,
        eip712.CooperativeSettle,
    ):
        assert f'"{struct.TYPE.decode()}"' in source
