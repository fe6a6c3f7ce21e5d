"""The attack table of the token network: every known attack, and the revert that stops it.

Belongs here: one test per row of the table below (parametrized where the rows share a
shape), each beside the positive twin that shows the same call succeeds once the attack is
taken out of it. Does not belong here: the ordinary behaviour of each entry point (its own
test files), the delegation scheme end to end (test_delegation.py), token quirks in normal
use (test_tokens_accounting.py).

The table. Each row: the attack; the defence; the revert ("token_network: " prefix left out).

 1. Update with nonce 3 after nonce 5 (or nonce 5 again).
    Nonces strictly rise. -> proof not newer
 2. The closer's older proof after the non-closer's newer update (by a delegate or the closer).
    Same. -> proof not newer
 3. The closer pushes an update for its partner without the partner's Delegation.
    Delegation signature. -> invalid delegation signature
 4. Update naming the non-closer as the closer.
    Closer recorded at close. -> not the closing participant
 5. Proof signed for channel B-C used in A-B.
    Channel id in every struct. -> invalid balance proof signature
 6. Proof signed for another chain id.
    chainId in the domain. -> invalid balance proof signature
 7. Proof signed for another token network (same pair, channel id and generation).
    verifyingContract in the domain. -> invalid balance proof signature
 8. Proof of generation 1 used after settle and reopen.
    Generation in every struct. -> invalid balance proof signature
 9. Withdraw signatures of generation 1 replayed at generation 2.
    Same. -> invalid participant signature
10. High-s twin (s' = n - s, v flipped) of a balance proof, Close, Delegation, Withdraw or
    CooperativeSettle signature; also s = 0.
    Low-s only. -> high-s signature
11. v = 0, 1 or 29.
    v in {27, 28}. -> bad signature v
12. 64-byte signature.
    Exact length. -> bad signature length
13. r = 0, or an r that is no curve point (ecrecover yields the zero address).
    Zero signer refused. -> invalid signature
14. The closer's own proof passed off as its partner's (at close or update).
    Signer must be the partner. -> invalid balance proof signature
15. The same withdraw signatures submitted twice.
    Totals are monotonic. -> total withdraw must rise
16. Withdraw after its expiration.
    Expiration checked (inclusive). -> withdraw expired
17. Withdraw above D1 + D2 - W(partner).
    Bounded by the deposits. -> withdraw exceeds deposits
18. T = L = 2**256 - 1 in balance proofs.
    Saturating settle. -> none: settle and unlock pay out exactly TAD
19. Total deposit near 2**256, or above the network's cap.
    Deposit limits. -> participant deposit limit / network deposit limit
20. The closer's old proof with an inflated locked amount submitted as the update.
    A newer proof replaces it and its data no longer settles.
    -> proof not newer (to resubmit it) / balance data does not match the proof
21. Unlock of a lock whose secret was registered after expiry.
    Reveal time compared with expiry. -> none: the lock goes back to its sender
22. Unlock of the same locks twice.
    Retained amount zeroed. -> nothing to unlock
23. Token re-enters set_total_deposit, set_total_withdraw, settle_channel or unlock during
    transfer / transferFrom.
    Contract-wide @nonreentrant. -> bare revert (Vyper's lock has no reason string)
24. Fee-on-transfer or lying token at deposit or open with deposit.
    Balance-difference check. -> token delivered a different amount
25. Deposit into a closed channel.
    State check. -> channel not open
26. Settle at or before the deadline.
    Window check. -> settle window not over
27. Settle twice.
    State cleared by the first. -> channel not closed
28. Cooperative settle leaving pending locks (payouts below TAD), or paying more than TAD.
    Payouts must equal TAD. -> payouts must add up to the channel total
29. A delegate raises its reward in the call.
    Reward inside the Delegation. -> invalid delegation signature
30. A delegation signed for another channel.
    Channel id in the Delegation. -> invalid delegation signature
31. A submitter other than the named delegate (naming the real one, or itself).
    Delegate checked and signed. -> not the named delegate / invalid delegation signature
32. A third party closes without the closer's Close signature, with its own, or with the
    closer's Close for another proof.
    Close signature. -> bad signature length / invalid closing signature

The re-entrancy guard of Vyper 0.4.3 (`@nonreentrant`, transient storage) is an assert
without a reason, so the transaction reverts with empty data and boa names no reason (for
the EIP-1167 clone its source-map guess is meaningless). Those tests therefore inspect the
call trace: the re-entered call into the network reverted with no data before making any
call of its own, and the same callback into a function without the lock goes through.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

import boa
import coincurve
import pytest
from boa.contracts.base_evm_contract import BoaError

from offchain.protocol import eip712
from offchain.protocol.crypto import SECP256K1_N, keccak256, sha256
from offchain.protocol.locks import Lock, encode_locks
from offchain.protocol.settlement import ParticipantTotals, settlement_payout
from tests.lib import harness
from tests.lib.harness import ZERO32, ZERO_ADDRESS, Account, Deployment, now, raw

DEPOSIT_A = 100
DEPOSIT_B = 50
TAD = DEPOSIT_A + DEPOSIT_B
MAX = 2**256 - 1
SECP256K1_P = 2**256 - 2**32 - 977

Tamper = Callable[[bytes], bytes]


# --- helpers -----------------------------------------------------------------------------


def _off_curve_r() -> int:
    """The smallest x with no point on secp256k1 (x**3 + 7 not a square mod p)."""
    x = 1
    while pow(x**3 + 7, (SECP256K1_P - 1) // 2, SECP256K1_P) != SECP256K1_P - 1:
        x += 1
    return x


OFF_CURVE_R = _off_curve_r()


def _high_s(sig: bytes) -> bytes:
    s = int.from_bytes(sig[32:64], "big")
    return sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes((55 - sig[64],))


def _with_v(v: int) -> Tamper:
    return lambda sig: sig[:64] + bytes((v,))


def _s_zero(sig: bytes) -> bytes:
    return sig[:32] + ZERO32 + sig[64:]


def _r_zero(sig: bytes) -> bytes:
    return ZERO32 + sig[32:]


def _r_off_curve(sig: bytes) -> bytes:
    return OFF_CURVE_R.to_bytes(32, "big") + sig[32:]


def _short(sig: bytes) -> bytes:
    return sig[:64]


def _same(sig: bytes) -> bytes:
    return sig


def _loose_recover(digest: bytes, sig: bytes) -> bytes:
    """Recovery without the low-s rule (libsecp256k1 accepts high s when recovering)."""
    public = coincurve.PublicKey.from_signature_and_message(
        sig[:64] + bytes((sig[64] - 27,)), digest, hasher=None
    )
    return keccak256(public.format(compressed=False)[1:])[12:]


def _state(d: Deployment, a: Account, b: Account) -> tuple:
    """Everything an attack could change: channel, both sides, token balances."""
    return (
        tuple(d.network.get_channel(a.address, b.address)),
        tuple(d.network.get_participant(a.address, b.address)),
        tuple(d.network.get_participant(b.address, a.address)),
        d.token.balanceOf(d.network.address),
        d.token.balanceOf(a.address),
        d.token.balanceOf(b.address),
    )


def _balances(d: Deployment, *accounts: Account) -> list[int]:
    return [d.token.balanceOf(x.address) for x in accounts]


def _second_network(
    d: Deployment,
    participant_limit: int = harness.PARTICIPANT_LIMIT,
    network_limit: int = harness.NETWORK_LIMIT,
) -> tuple:
    """A second token and its network from the same registry (rolled back with the test)."""
    token = harness.load("test/test_token.vy", "Second Token", "T2", 18)
    address = d.registry.create_token_network(
        token.address, harness.SETTLE_MIN, harness.SETTLE_MAX, participant_limit, network_limit
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        network = harness.deployer("token_network.vy").at(address)
    return token, network


def _close_raw(
    d: Deployment, closer: Account, partner: Account, proof: harness.Proof, signature: bytes
) -> None:
    with boa.env.prank(closer.address):
        d.network.close_channel(
            closer.address,
            partner.address,
            proof.nonce,
            proof.balance_hash,
            proof.additional_hash,
            signature,
            b"",
        )


def _update_raw(
    d: Deployment,
    sender: Account,
    non_closer: Account,
    closer: Account,
    proof: harness.Proof,
    delegate: str,
    reward: int,
    delegation_sig: bytes,
) -> None:
    with boa.env.prank(sender.address):
        d.network.update_non_closing_balance_proof(
            closer.address,
            non_closer.address,
            proof.nonce,
            proof.balance_hash,
            proof.additional_hash,
            proof.signature,
            delegate,
            reward,
            delegation_sig,
        )


def _past_window() -> None:
    boa.env.time_travel(seconds=harness.SETTLE_WINDOW + 1)


@pytest.fixture
def ab(d: Deployment, funded: list[Account]) -> tuple[Account, Account, Account]:
    """An open channel a-b (deposits 100 and 50) and a third party c with tokens."""
    a, b, c = funded[0], funded[1], funded[2]
    d.open(a, b, deposit_a=DEPOSIT_A, deposit_b=DEPOSIT_B)
    return a, b, c


# --- replay: older proofs -------------------------------------------------------------------


@pytest.mark.parametrize("second_nonce", [3, 5])
def test_update__nonce_not_above_stored__reverts_proof_not_newer(d, ab, second_nonce):
    a, b, _ = ab
    d.close(a, b, None)
    d.update(b, a, d.proof(a, b, nonce=5, transferred=50))
    stale = d.proof(a, b, nonce=second_nonce, transferred=10)
    before = _state(d, a, b)
    with boa.reverts("token_network: proof not newer"):
        d.update(b, a, stale)
    assert _state(d, a, b) == before
    d.update(b, a, d.proof(a, b, nonce=6, transferred=60))  # positive twin: newer is taken
    assert d.network.get_participant(a.address, b.address).nonce == 6


@pytest.mark.parametrize("submitter", ["delegate", "closer"])
def test_update__closer_older_proof_after_newer_update__reverts_proof_not_newer(d, ab, submitter):
    a, b, c = ab
    d.close(a, b, None)
    old = d.proof(a, b, nonce=2, transferred=10)
    d.update(b, a, d.proof(a, b, nonce=4, transferred=40))
    sender = c if submitter == "delegate" else a
    delegation = d.sign_delegation(b, a, old, sender.address, 0)
    with boa.reverts("token_network: proof not newer"):
        _update_raw(d, sender, b, a, old, sender.address, 0, delegation)
    assert d.network.get_participant(a.address, b.address).nonce == 4


def test_update__closer_without_delegation__reverts_invalid_delegation_signature(d, ab):
    a, b, _ = ab
    d.close(a, b, None)
    proof = d.proof(a, b, nonce=1, transferred=1)
    forged = d.sign_delegation(a, b, proof, a.address, 0)  # signed by the closer itself
    with boa.reverts("token_network: invalid delegation signature"):
        _update_raw(d, a, b, a, proof, a.address, 0, forged)


def test_update__non_closer_named_as_closer__reverts_not_the_closing_participant(d, ab):
    a, b, _ = ab
    d.close(a, b, None)
    proof = d.proof(b, a, nonce=1, transferred=1)
    with boa.reverts("token_network: not the closing participant"):
        d.update(a, b, proof)


# --- replay: other channel, chain, contract, generation ---------------------------------------


def test_close__proof_signed_for_another_channel__reverts_invalid_signature(d, ab):
    a, b, c = ab
    d.open(b, c, deposit_a=10)
    foreign = d.proof(b, c, nonce=1, transferred=5)  # B's proof in channel B-C
    with boa.reverts("token_network: invalid balance proof signature"):
        _close_raw(d, a, b, foreign, foreign.signature)
    d.close(c, b, foreign)  # positive twin: valid in its own channel
    assert d.network.get_participant(b.address, c.address).nonce == 1


def test_close__proof_signed_for_another_chain__reverts_invalid_signature(d, ab):
    a, b, _ = ab
    other_chain = eip712.Domain(
        chain_id=d.domain.chain_id + 1, verifying_contract=raw(d.network.address)
    )
    foreign = d.proof(b, a, nonce=1, transferred=5, domain=other_chain)
    with boa.reverts("token_network: invalid balance proof signature"):
        d.close(a, b, foreign)
    d.close(a, b, d.proof(b, a, nonce=1, transferred=5))


def test_close__proof_signed_for_another_token_network__reverts_invalid_signature(d, ab):
    a, b, _ = ab
    token2, network2 = _second_network(d)
    with boa.env.prank(a.address):
        network2.open_channel(b.address, harness.SETTLE_WINDOW)
    # Same pair, same channel id, same generation: only verifyingContract differs.
    assert bytes(network2.get_channel(a.address, b.address).channel_id) == d.cid(a, b)
    assert network2.get_channel(a.address, b.address).generation == d.generation(a, b)
    domain2 = eip712.Domain(chain_id=d.domain.chain_id, verifying_contract=raw(network2.address))
    foreign = d.proof(b, a, nonce=1, transferred=5, domain=domain2)
    with boa.reverts("token_network: invalid balance proof signature"):
        d.close(a, b, foreign)
    with boa.env.prank(a.address):  # positive twin: the network it was signed for takes it
        network2.close_channel(
            a.address,
            b.address,
            foreign.nonce,
            foreign.balance_hash,
            foreign.additional_hash,
            foreign.signature,
            b"",
        )
    assert network2.get_channel(a.address, b.address).state == 2
    assert token2.balanceOf(network2.address) == 0


def _settle_and_reopen(d: Deployment, a: Account, b: Account) -> None:
    d.close(a, b, None)
    _past_window()
    d.settle(a, None, b, None)
    d.open(a, b, deposit_a=DEPOSIT_A, deposit_b=DEPOSIT_B)


def test_close__proof_of_earlier_generation__reverts_invalid_signature(d, ab):
    a, b, _ = ab
    old = d.proof(b, a, nonce=1, transferred=30)
    assert d.generation(a, b) == 1
    _settle_and_reopen(d, a, b)
    assert d.generation(a, b) == 2
    with boa.reverts("token_network: invalid balance proof signature"):
        d.close(a, b, old)
    d.close(a, b, d.proof(b, a, nonce=1, transferred=30))


def test_withdraw__signatures_of_earlier_generation__reverts_invalid_participant_signature(d, ab):
    a, b, _ = ab
    expiration = now() + 10 * harness.SETTLE_WINDOW
    sig_a = d.sign_withdraw(a, a, b, 30, expiration)
    sig_b = d.sign_withdraw(b, a, b, 30, expiration)
    _settle_and_reopen(d, a, b)
    with boa.env.prank(a.address), boa.reverts("token_network: invalid participant signature"):
        d.network.set_total_withdraw(a.address, b.address, 30, expiration, sig_a, sig_b)
    d.withdraw(a, b, 30, expiration)
    assert d.network.get_participant(a.address, b.address).withdrawn == 30


# --- malleable and malformed signatures -------------------------------------------------------


def _site_close_balance_proof(d, a, b, c):
    proof = d.proof(b, a, nonce=1, transferred=10)

    def submit(tamper: Tamper) -> None:
        _close_raw(d, a, b, proof, tamper(proof.signature))

    return submit


def _site_close_closing(d, a, b, c):
    proof = d.proof(b, a, nonce=1, transferred=10)
    closing = d.sign_close(a, b, proof)

    def submit(tamper: Tamper) -> None:
        with boa.env.prank(c.address):
            d.network.close_channel(
                a.address,
                b.address,
                proof.nonce,
                proof.balance_hash,
                proof.additional_hash,
                proof.signature,
                tamper(closing),
            )

    return submit


def _site_update_balance_proof(d, a, b, c):
    d.close(a, b, None)
    proof = d.proof(a, b, nonce=1, transferred=10)

    def submit(tamper: Tamper) -> None:
        with boa.env.prank(b.address):
            d.network.update_non_closing_balance_proof(
                a.address,
                b.address,
                proof.nonce,
                proof.balance_hash,
                proof.additional_hash,
                tamper(proof.signature),
                ZERO_ADDRESS,
                0,
                b"",
            )

    return submit


def _site_update_delegation(d, a, b, c):
    d.close(a, b, None)
    proof = d.proof(a, b, nonce=1, transferred=10)
    delegation = d.sign_delegation(b, a, proof, c.address, 3)

    def submit(tamper: Tamper) -> None:
        _update_raw(d, c, b, a, proof, c.address, 3, tamper(delegation))

    return submit


def _site_withdraw(which: str):
    def site(d, a, b, c):
        expiration = now() + 600
        sig_a = d.sign_withdraw(a, a, b, 30, expiration)
        sig_b = d.sign_withdraw(b, a, b, 30, expiration)

        def submit(tamper: Tamper) -> None:
            sigs = (tamper(sig_a), sig_b) if which == "participant" else (sig_a, tamper(sig_b))
            with boa.env.prank(a.address):
                d.network.set_total_withdraw(a.address, b.address, 30, expiration, *sigs)

        return submit

    return site


def _site_cooperative_settle(d, a, b, c):
    expiration = now() + 600
    sig_a = d.sign_coop(a, a, b, 90, 60, expiration)
    sig_b = d.sign_coop(b, a, b, 90, 60, expiration)

    def submit(tamper: Tamper) -> None:
        d.network.cooperative_settle(a.address, b.address, 90, 60, expiration, sig_a, tamper(sig_b))

    return submit


SITES = {
    "close-balance-proof": _site_close_balance_proof,
    "close-closing-signature": _site_close_closing,
    "update-balance-proof": _site_update_balance_proof,
    "update-delegation": _site_update_delegation,
    "withdraw-participant": _site_withdraw("participant"),
    "withdraw-partner": _site_withdraw("partner"),
    "cooperative-settle": _site_cooperative_settle,
}

MALFORMATIONS = {
    "high-s-twin": (_high_s, "token_network: high-s signature"),
    "s-zero": (_s_zero, "token_network: high-s signature"),
    "v-0": (_with_v(0), "token_network: bad signature v"),
    "v-1": (_with_v(1), "token_network: bad signature v"),
    "v-29": (_with_v(29), "token_network: bad signature v"),
    "64-bytes": (_short, "token_network: bad signature length"),
    "r-zero": (_r_zero, "token_network: invalid signature"),
    "r-off-curve": (_r_off_curve, "token_network: invalid signature"),
}


@pytest.mark.parametrize("malformation", MALFORMATIONS)
@pytest.mark.parametrize("site", SITES)
def test_submit__malformed_or_malleated_signature__reverts(d, ab, site, malformation):
    a, b, c = ab
    submit = SITES[site](d, a, b, c)
    tamper, reason = MALFORMATIONS[malformation]
    before = _state(d, a, b)
    with boa.reverts(reason):
        submit(tamper)
    assert _state(d, a, b) == before
    submit(_same)  # positive twin: the untouched signature is accepted
    assert _state(d, a, b) != before


def test_high_s_twin__of_a_balance_proof__recovers_the_signer_without_the_low_s_rule(d, ab):
    # Shows the high-s rows above refuse a genuine signature, not garbage.
    a, b, _ = ab
    proof = d.proof(b, a, nonce=1, transferred=10)
    struct = eip712.BalanceProof(
        channel_id=d.cid(a, b),
        generation=1,
        nonce=1,
        balance_hash=proof.balance_hash,
        additional_hash=proof.additional_hash,
    )
    digest = eip712.digest(d.domain, struct)
    twin = _high_s(proof.signature)
    assert twin != proof.signature
    assert _loose_recover(digest, twin) == b.raw == _loose_recover(digest, proof.signature)


# --- signature by the wrong party -------------------------------------------------------------


def test_close__closer_own_proof_as_partner_proof__reverts_invalid_signature(d, ab):
    a, b, _ = ab
    own = d.proof(a, b, nonce=1, transferred=0)  # A's proof towards B, not B's
    with boa.reverts("token_network: invalid balance proof signature"):
        d.close(a, b, own)


def test_update__non_closer_own_proof_as_closer_proof__reverts_invalid_signature(d, ab):
    a, b, _ = ab
    d.close(a, b, None)
    own = d.proof(b, a, nonce=1, transferred=0)
    with boa.env.prank(b.address), boa.reverts("token_network: invalid balance proof signature"):
        d.network.update_non_closing_balance_proof(
            a.address,
            b.address,
            own.nonce,
            own.balance_hash,
            own.additional_hash,
            own.signature,
            ZERO_ADDRESS,
            0,
            b"",
        )


# --- withdraw -------------------------------------------------------------------------------


def test_withdraw__same_signatures_twice__reverts_total_withdraw_must_rise(d, ab):
    a, b, _ = ab
    expiration = now() + 600
    sig_a = d.sign_withdraw(a, a, b, 30, expiration)
    sig_b = d.sign_withdraw(b, a, b, 30, expiration)
    with boa.env.prank(a.address):
        d.network.set_total_withdraw(a.address, b.address, 30, expiration, sig_a, sig_b)
    balance = d.token.balanceOf(a.address)
    with boa.env.prank(a.address), boa.reverts("token_network: total withdraw must rise"):
        d.network.set_total_withdraw(a.address, b.address, 30, expiration, sig_a, sig_b)
    assert d.token.balanceOf(a.address) == balance
    assert d.network.get_participant(a.address, b.address).withdrawn == 30


def test_withdraw__after_expiration__reverts_withdraw_expired(d, ab):
    a, b, _ = ab
    expiration = now() + 100
    boa.env.time_travel(seconds=101)
    with boa.reverts("token_network: withdraw expired"):
        d.withdraw(a, b, 30, expiration)


def test_withdraw__at_expiration__succeeds(d, ab):
    a, b, _ = ab
    expiration = now() + 100
    boa.env.time_travel(seconds=100)
    d.withdraw(a, b, 30, expiration)
    assert d.network.get_participant(a.address, b.address).withdrawn == 30


@pytest.mark.parametrize(("partner_withdrawn", "limit"), [(0, TAD), (20, TAD - 20)])
def test_withdraw__above_available__reverts_withdraw_exceeds_deposits(
    d, ab, partner_withdrawn, limit
):
    a, b, _ = ab
    if partner_withdrawn:
        d.withdraw(b, a, partner_withdrawn)
    with boa.reverts("token_network: withdraw exceeds deposits"):
        d.withdraw(a, b, limit + 1)
    d.withdraw(a, b, limit)  # positive twin: exactly what the channel holds
    assert d.token.balanceOf(d.network.address) == 0


# --- amounts near 2**256 ----------------------------------------------------------------------


@pytest.mark.parametrize("both_sides", [False, True], ids=["one-side", "both-sides"])
def test_settle__amounts_near_2_256__pays_out_exactly_tad(d, ab, both_sides):
    a, b, _ = ab
    expiration = now() + 10 * harness.SETTLE_WINDOW
    lock_b = Lock(expiration=expiration, amount=MAX, secrethash=sha256(b"b" * 32))
    proof_b = d.proof(b, a, nonce=1, transferred=MAX, locks=[lock_b])
    assert (proof_b.transferred, proof_b.locked) == (MAX, MAX)
    if both_sides:
        lock_a = Lock(expiration=expiration, amount=MAX, secrethash=sha256(b"a" * 32))
        proof_a = d.proof(a, b, nonce=1, transferred=MAX, locks=[lock_a])
    else:
        proof_a = d.proof(a, b, nonce=1, transferred=7)
    d.close(a, b, proof_b)
    d.update(b, a, proof_a)
    _past_window()
    before = _balances(d, a, b)
    d.settle(a, proof_a, b, proof_b)

    expected = settlement_payout(
        ParticipantTotals(DEPOSIT_A, 0, proof_a.transferred, proof_a.locked),
        ParticipantTotals(DEPOSIT_B, 0, proof_b.transferred, proof_b.locked),
    )
    gen = d.generation(a, b)
    retained_a = d.network.get_unlock_amount(b.address, a.address, gen, proof_a.locksroot)
    retained_b = d.network.get_unlock_amount(a.address, b.address, gen, proof_b.locksroot)
    after = _balances(d, a, b)
    assert after[0] - before[0] == expected.payout1
    assert after[1] - before[1] == expected.payout2
    assert (retained_a, retained_b) == (expected.locked_retained1, expected.locked_retained2)
    assert expected.total == TAD
    assert d.token.balanceOf(d.network.address) == retained_a + retained_b

    # The retained part pays out too (no secret registered: back to each sender).
    if retained_b:
        d.unlock(a, b, gen, [lock_b])
    if both_sides and retained_a:
        d.unlock(b, a, gen, [lock_a])
    assert d.token.balanceOf(d.network.address) == 0
    assert sum(_balances(d, a, b)) - sum(before) == TAD


@pytest.mark.parametrize("total", [harness.PARTICIPANT_LIMIT + 1, 2**128, 2**255, MAX])
def test_deposit__total_near_2_256__reverts_participant_deposit_limit(d, ab, total):
    a, b, _ = ab
    d.token.mint(a.address, harness.PARTICIPANT_LIMIT)
    before = _state(d, a, b)
    with boa.reverts("token_network: participant deposit limit"):
        d.deposit(a, b, total)
    assert _state(d, a, b) == before
    d.deposit(a, b, harness.PARTICIPANT_LIMIT)  # positive twin: the limit itself is allowed
    assert d.network.get_participant(a.address, b.address).deposit == harness.PARTICIPANT_LIMIT


def test_deposit__above_network_limit__reverts_network_deposit_limit(d, funded):
    a, b = funded[0], funded[1]
    token2, network2 = _second_network(d, participant_limit=100, network_limit=150)
    for x in (a, b):
        token2.mint(x.address, 1000)
        with boa.env.prank(x.address):
            token2.approve(network2.address, MAX)
    with boa.env.prank(a.address):
        network2.open_channel_with_deposit(b.address, harness.SETTLE_WINDOW, 100)
    with boa.env.prank(b.address), boa.reverts("token_network: network deposit limit"):
        network2.set_total_deposit(b.address, a.address, 51)
    with boa.env.prank(b.address):
        network2.set_total_deposit(b.address, a.address, 50)
    assert token2.balanceOf(network2.address) == 150


# --- old proof with an inflated locked amount --------------------------------------------------


def test_settle__closer_old_proof_with_inflated_locked_replaced__uses_newer(d, ab):
    a, b, c = ab
    # A's old proof claims 90 locked towards B; its newer one settled them (T = 20, none locked).
    inflated = Lock(expiration=now() + 10**5, amount=90, secrethash=sha256(b"i" * 32))
    old = d.proof(a, b, nonce=2, transferred=10, locks=[inflated])
    newer = d.proof(a, b, nonce=3, transferred=20)
    d.close(a, b, None)
    d.update(b, a, old, sender=c, reward=0)  # a stale update lands first
    d.update(b, a, newer)  # the partner replaces it
    with boa.reverts("token_network: proof not newer"):
        d.update(b, a, old, sender=c, reward=0)
    _past_window()
    with boa.reverts("token_network: balance data does not match the proof"):
        d.settle(a, old, b, None)
    before = _balances(d, a, b)
    d.settle(a, newer, b, None)
    after = _balances(d, a, b)
    assert (after[0] - before[0], after[1] - before[1]) == (DEPOSIT_A - 20, DEPOSIT_B + 20)
    assert d.network.get_unlock_amount(b.address, a.address, 1, old.locksroot) == 0


# --- unlock -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reveal_delay", "receiver_gets"),
    [(100, 20), (101, 0)],
    ids=["revealed-at-expiry", "revealed-after-expiry"],
)
def test_unlock__secret_registered_after_expiry__returns_lock_to_sender(
    d, ab, reveal_delay, receiver_gets
):
    a, b, _ = ab
    secret = b"\x42" * 32
    lock = Lock(expiration=now() + 100, amount=20, secrethash=sha256(secret))
    proof_b = d.proof(b, a, nonce=1, transferred=10, locks=[lock])
    d.close(a, b, proof_b)
    boa.env.time_travel(seconds=reveal_delay)
    d.register_secret(secret)
    assert d.secret_registry.get_secret_reveal_time(lock.secrethash) == lock.expiration + (
        reveal_delay - 100
    )
    _past_window()
    d.settle(a, None, b, proof_b)
    before = _balances(d, a, b)
    d.unlock(a, b, 1, [lock])
    after = _balances(d, a, b)
    assert (after[0] - before[0], after[1] - before[1]) == (receiver_gets, 20 - receiver_gets)


def test_unlock__twice__reverts_nothing_to_unlock(d, ab):
    a, b, _ = ab
    lock = Lock(expiration=now() + 100, amount=20, secrethash=sha256(b"\x43" * 32))
    proof_b = d.proof(b, a, nonce=1, transferred=10, locks=[lock])
    d.close(a, b, proof_b)
    _past_window()
    d.settle(a, None, b, proof_b)
    d.unlock(a, b, 1, [lock])
    before = _balances(d, a, b)
    with boa.reverts("token_network: nothing to unlock"):
        d.unlock(a, b, 1, [lock], caller=b)
    assert _balances(d, a, b) == before


# --- re-entrant token -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def reentrant_deployed() -> Deployment:
    return harness.deploy("test/reentrant_token.vy")


@pytest.fixture
def rd(reentrant_deployed: Deployment, accounts: list[Account]) -> Iterator[Deployment]:
    """The re-entrant token's network, accounts 0 and 1 funded, rolled back afterwards."""
    with boa.env.anchor():
        for x in accounts[:2]:
            reentrant_deployed.fund(x, 10**24)
        yield reentrant_deployed


def _reentered_frames(err: BoaError, token: str, network: str) -> list:
    """Frames of calls the token made into the network (the re-entry) in the failed call."""
    token_raw, network_raw = raw(token), raw(network)
    found = []

    def walk(frame) -> None:
        msg = frame.computation.msg
        # The CALL into the clone; its DELEGATECALL child keeps sender and storage address.
        if bytes(msg.sender) == token_raw and bytes(msg.code_address) == network_raw:
            found.append(frame)
        for child in frame.children:
            walk(child)

    walk(err.call_trace)
    return found


def _reentry_setup(rd: Deployment, a: Account, b: Account, case: str):
    """Prepare `case`; return (outer call, calldata of the re-entering callback)."""
    net = rd.network
    rd.open(a, b, deposit_a=DEPOSIT_A, deposit_b=DEPOSIT_B)
    if case == "deposit>set_total_deposit":
        payload = net.set_total_deposit.prepare_calldata(b.address, a.address, DEPOSIT_B + 1)
        return (lambda: rd.deposit(a, b, DEPOSIT_A + 10)), payload
    if case == "withdraw>set_total_withdraw":
        expiration = now() + 600
        sigs = [rd.sign_withdraw(x, b, a, 5, expiration) for x in (b, a)]
        payload = net.set_total_withdraw.prepare_calldata(
            b.address, a.address, 5, expiration, *sigs
        )
        return (lambda: rd.withdraw(a, b, 10)), payload
    secret = b"\x44" * 32
    lock = Lock(expiration=now() + 100, amount=20, secrethash=sha256(secret))
    proof_b = rd.proof(b, a, nonce=1, transferred=10, locks=[lock])
    rd.close(a, b, proof_b)
    rd.register_secret(secret)
    _past_window()
    settle_args = (a.address, 0, 0, ZERO32, b.address, *proof_b.settle_args())
    unlock_args = (a.address, b.address, 1, encode_locks([lock]))
    if case == "settle>settle_channel":
        return (lambda: rd.settle(a, None, b, proof_b)), net.settle_channel.prepare_calldata(
            *settle_args
        )
    rd.settle(a, None, b, proof_b)
    assert case == "unlock>unlock"
    return (lambda: rd.unlock(a, b, 1, [lock])), net.unlock.prepare_calldata(*unlock_args)


REENTRY_CASES = [
    "deposit>set_total_deposit",
    "withdraw>set_total_withdraw",
    "settle>settle_channel",
    "unlock>unlock",
]


@pytest.mark.parametrize("case", REENTRY_CASES)
def test_token_callback__reenters_network__reverts_on_reentrancy_lock(rd, accounts, case):
    a, b = accounts[0], accounts[1]
    outer, payload = _reentry_setup(rd, a, b, case)
    rd.token.arm(rd.network.address, payload)
    before = _state(rd, a, b)
    with pytest.raises(BoaError) as failure:
        outer()
    reentered = _reentered_frames(failure.value, rd.token.address, rd.network.address)
    assert len(reentered) == 1
    computation = reentered[0].computation
    # The lock refuses before the re-entered function does anything: no reason string,
    # no call of its own (every guarded function would read the token or the registry).
    assert computation.is_error
    assert bytes(computation.output) == b""
    assert all(not inner.children for inner in reentered[0].children)
    assert _state(rd, a, b) == before
    assert rd.token.armed()  # the whole transaction rolled back


@pytest.mark.parametrize("case", REENTRY_CASES)
def test_token_callback__reenters_unguarded_view__outer_call_succeeds(rd, accounts, case):
    # Positive twin: the same callback mechanism into a function without the lock passes,
    # so the revert above is the re-entrancy lock and nothing else.
    a, b = accounts[0], accounts[1]
    outer, _ = _reentry_setup(rd, a, b, case)
    rd.token.arm(rd.network.address, rd.network.get_channel.prepare_calldata(a.address, b.address))
    before = _state(rd, a, b)
    outer()
    assert not rd.token.armed()
    assert _state(rd, a, b) != before


# --- tokens that cheat at deposit -----------------------------------------------------------


@pytest.fixture(scope="module", params=["fee_token", "lying_token"])
def cheating_deployed(request) -> Deployment:
    return harness.deploy(f"test/{request.param}.vy")


@pytest.mark.parametrize("opening", [False, True], ids=["set_total_deposit", "open_with_deposit"])
def test_deposit__token_delivers_less__reverts_token_delivered_different_amount(
    cheating_deployed, accounts, opening
):
    cd = cheating_deployed
    a, b = accounts[0], accounts[1]
    with boa.env.anchor():
        cd.fund(a, 10**24)
        if not opening:
            cd.open(a, b)
        before = _state(cd, a, b)
        with (
            boa.env.prank(a.address),
            boa.reverts("token_network: token delivered a different amount"),
        ):
            if opening:
                cd.network.open_channel_with_deposit(b.address, harness.SETTLE_WINDOW, 1000)
            else:
                cd.network.set_total_deposit(a.address, b.address, 1000)
        assert _state(cd, a, b) == before


# --- lifecycle misuse -------------------------------------------------------------------------


def test_deposit__closed_channel__reverts_channel_not_open(d, ab):
    a, b, _ = ab
    d.close(a, b, None)
    before = _state(d, a, b)
    with boa.reverts("token_network: channel not open"):
        d.deposit(a, b, DEPOSIT_A + 1)
    assert _state(d, a, b) == before


@pytest.mark.parametrize("wait", [0, harness.SETTLE_WINDOW], ids=["just-closed", "at-deadline"])
def test_settle__before_window_over__reverts_settle_window_not_over(d, ab, wait):
    a, b, _ = ab
    d.close(a, b, None)
    boa.env.time_travel(seconds=wait)
    with boa.reverts("token_network: settle window not over"):
        d.settle(a, None, b, None)
    boa.env.time_travel(seconds=harness.SETTLE_WINDOW + 1 - wait)
    d.settle(a, None, b, None)  # positive twin: one second after the deadline
    assert d.network.get_channel(a.address, b.address).state == 0


def test_settle__twice__reverts_channel_not_closed(d, ab):
    a, b, _ = ab
    d.close(a, b, None)
    _past_window()
    d.settle(a, None, b, None)
    before = _balances(d, a, b)
    with boa.reverts("token_network: channel not closed"):
        d.settle(a, None, b, None)
    assert _balances(d, a, b) == before


@pytest.mark.parametrize(
    ("payout_a", "payout_b"),
    [(DEPOSIT_A - 20, DEPOSIT_B), (DEPOSIT_A, DEPOSIT_B + 1)],
    ids=["locks-left-pending", "more-than-tad"],
)
def test_cooperative_settle__payouts_not_tad__reverts_must_add_up(d, ab, payout_a, payout_b):
    a, b, _ = ab
    expiration = now() + 600
    sig_a = d.sign_coop(a, a, b, payout_a, payout_b, expiration)
    sig_b = d.sign_coop(b, a, b, payout_a, payout_b, expiration)
    with boa.reverts("token_network: payouts must add up to the channel total"):
        d.network.cooperative_settle(
            a.address, b.address, payout_a, payout_b, expiration, sig_a, sig_b
        )
    sig_a = d.sign_coop(a, a, b, DEPOSIT_A - 20, DEPOSIT_B + 20, expiration)
    sig_b = d.sign_coop(b, a, b, DEPOSIT_A - 20, DEPOSIT_B + 20, expiration)
    d.network.cooperative_settle(
        a.address, b.address, DEPOSIT_A - 20, DEPOSIT_B + 20, expiration, sig_a, sig_b
    )
    assert d.token.balanceOf(d.network.address) == 0


# --- delegates and third parties -----------------------------------------------------------


def test_update__delegate_raises_reward__reverts_invalid_delegation_signature(d, ab):
    a, b, c = ab
    d.close(a, b, None)
    proof = d.proof(a, b, nonce=1, transferred=10)
    delegation = d.sign_delegation(b, a, proof, c.address, 5)
    with boa.reverts("token_network: invalid delegation signature"):
        _update_raw(d, c, b, a, proof, c.address, 6, delegation)
    _update_raw(d, c, b, a, proof, c.address, 5, delegation)
    assert d.network.get_participant(b.address, a.address).reward == 5


def test_update__delegation_for_another_channel__reverts_invalid_delegation_signature(d, ab):
    a, b, c = ab
    other = harness.make_account(7)
    d.close(a, b, None)
    proof = d.proof(a, b, nonce=1, transferred=10)
    # B's delegation for the same nonce and balance hash, but in channel B-other.
    foreign = d.sign_delegation(b, other, proof, c.address, 5, generation=1)
    with boa.reverts("token_network: invalid delegation signature"):
        _update_raw(d, c, b, a, proof, c.address, 5, foreign)


def test_update__submitter_not_named_delegate__reverts_not_the_named_delegate(d, ab):
    a, b, c = ab
    intruder = harness.make_account(6)
    d.close(a, b, None)
    proof = d.proof(a, b, nonce=1, transferred=10)
    delegation = d.sign_delegation(b, a, proof, c.address, 5)
    with boa.reverts("token_network: not the named delegate"):
        _update_raw(d, intruder, b, a, proof, c.address, 5, delegation)
    # Naming itself instead does not help: the signature covers the delegate.
    with boa.reverts("token_network: invalid delegation signature"):
        _update_raw(d, intruder, b, a, proof, intruder.address, 5, delegation)
    _update_raw(d, c, b, a, proof, c.address, 5, delegation)
    assert d.network.get_participant(b.address, a.address).delegate == c.address


@pytest.mark.parametrize("closing", ["missing", "by-third-party", "for-another-proof"])
def test_close__third_party_without_closer_signature__reverts(d, ab, closing):
    a, b, c = ab
    proof = d.proof(b, a, nonce=2, transferred=10)
    if closing == "missing":
        signature, reason = b"", "token_network: bad signature length"
    elif closing == "by-third-party":
        struct = eip712.Close(
            channel_id=d.cid(a, b),
            generation=1,
            nonce=proof.nonce,
            balance_hash=proof.balance_hash,
            additional_hash=proof.additional_hash,
        )
        signature = eip712.sign(c.key, d.domain, struct)  # C's own key, for exactly this proof
        reason = "token_network: invalid closing signature"
    else:
        signature = d.sign_close(a, b, d.proof(b, a, nonce=1, transferred=5))
        reason = "token_network: invalid closing signature"
    before = _state(d, a, b)
    with boa.env.prank(c.address), boa.reverts(reason):
        d.network.close_channel(
            a.address,
            b.address,
            proof.nonce,
            proof.balance_hash,
            proof.additional_hash,
            proof.signature,
            signature,
        )
    assert _state(d, a, b) == before
    d.close(a, b, proof, sender=c)  # positive twin: with A's Close for exactly this proof
    assert d.network.get_channel(a.address, b.address).closer == a.address
