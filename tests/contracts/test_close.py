"""Unit tests of `close_channel` of the token network.

What belongs here: closing an open channel by the closer (with the partner's balance proof
or without one) and by a third party holding the closer's `Close` signature: the event,
state, deadline, closer and the proof stored for the non-closer; every revert (proof
without nonce, nonce too large, invalid balance proof or closing signature, channel not
open) and the signature checks every entry point shares (length, v, high s, no signer).
What must not: the update and settle that follow (test_update.py, test_settle.py).
"""

from __future__ import annotations

from typing import Any

import boa

from offchain.protocol import eip712
from offchain.protocol.crypto import SECP256K1_N
from tests.lib.harness import SETTLE_WINDOW, ZERO32, ZERO_ADDRESS, now

UINT64_MAX = 2**64 - 1


def _events(contract: Any, name: str) -> list[Any]:
    # Logs of the contract's LAST call: read them before any other call, a view included.
    return [e for e in contract.get_logs() if type(e).__name__ == name]


def _close(d, sender, closer, partner, nonce, balance_hash, additional_hash, sig, closing_sig=b""):
    with boa.env.prank(sender.address):
        d.network.close_channel(
            closer.address, partner.address, nonce, balance_hash, additional_hash, sig, closing_sig
        )


def _close_with(d, closer, partner, proof, signature=None):
    _close(
        d,
        closer,
        closer,
        partner,
        proof.nonce,
        proof.balance_hash,
        proof.additional_hash,
        proof.signature if signature is None else signature,
    )


def _sign_proof_for(d, signer, a, b, proof):
    """`signer`'s signature over `proof`'s fields in the channel of a and b."""
    struct = eip712.BalanceProof(
        channel_id=d.cid(a, b),
        generation=d.generation(a, b),
        nonce=proof.nonce,
        balance_hash=proof.balance_hash,
        additional_hash=proof.additional_hash,
    )
    return eip712.sign(signer.key, d.domain, struct)


def _open(d, a, b):
    return d.open(a, b, deposit_a=100, deposit_b=50)


# --- positive ----------------------------------------------------------------------------------


def test_close_channel__closer_with_partner_proof__logs_and_records(d, funded):
    a, b = funded[0], funded[1]
    cid = _open(d, a, b)
    proof = d.proof(b, a, nonce=3, transferred=20)
    closed_at = now()

    d.close(a, b, proof)
    events = _events(d.network, "ChannelClosed")

    assert [(e.channel_id, e.closing_participant, e.nonce, e.balance_hash) for e in events] == [
        (cid, a.address, 3, proof.balance_hash)
    ]
    channel = d.network.get_channel(a.address, b.address)
    assert channel.state == 2
    assert channel.generation == 1
    assert channel.settle_window_or_deadline == closed_at + SETTLE_WINDOW
    assert channel.closer == a.address
    partner = d.network.get_participant(b.address, a.address)
    assert (partner.nonce, partner.balance_hash) == (3, proof.balance_hash)
    assert (partner.deposit, partner.withdrawn) == (50, 0)
    closer = d.network.get_participant(a.address, b.address)
    assert (closer.nonce, closer.balance_hash) == (0, ZERO32)


def test_close_channel__after_withdraws__both_totals_still_reported(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    d.withdraw(a, b, 30)
    d.withdraw(b, a, 7)

    d.close(b, a, None)

    assert d.network.get_participant(a.address, b.address).withdrawn == 30
    assert d.network.get_participant(b.address, a.address).withdrawn == 7
    assert d.network.get_channel(a.address, b.address).closer == b.address


def test_close_channel__closer_is_the_other_participant__records_that_closer(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    proof = d.proof(a, b, nonce=1, transferred=5)
    d.close(b, a, proof)
    assert d.network.get_channel(a.address, b.address).closer == b.address
    assert d.network.get_participant(a.address, b.address).nonce == 1
    assert d.network.get_participant(b.address, a.address).nonce == 0


def test_close_channel__without_proof__stores_nonce_zero(d, funded):
    a, b = funded[0], funded[1]
    cid = _open(d, a, b)

    d.close(a, b, None)
    (event,) = _events(d.network, "ChannelClosed")

    assert (event.channel_id, event.closing_participant, event.nonce) == (cid, a.address, 0)
    assert event.balance_hash == ZERO32
    assert d.network.get_channel(a.address, b.address).state == 2
    for x, y in ((a, b), (b, a)):
        info = d.network.get_participant(x.address, y.address)
        assert (info.nonce, info.balance_hash) == (0, ZERO32)


def test_close_channel__without_proof_any_signature_bytes__are_ignored(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    _close(d, a, a, b, 0, ZERO32, b"\x22" * 32, b"\x01" * 7)
    assert d.network.get_channel(a.address, b.address).state == 2


def test_close_channel__third_party_with_close_signature__closes_for_the_closer(d, funded):
    a, b, relayer = funded[0], funded[1], funded[2]
    cid = _open(d, a, b)
    proof = d.proof(b, a, nonce=2, transferred=10)

    d.close(a, b, proof, sender=relayer)
    (event,) = _events(d.network, "ChannelClosed")

    assert (event.channel_id, event.closing_participant, event.nonce) == (cid, a.address, 2)
    assert d.network.get_channel(a.address, b.address).closer == a.address
    assert d.network.get_participant(b.address, a.address).balance_hash == proof.balance_hash


def test_close_channel__third_party_without_proof__closes_for_the_closer(d, funded):
    a, b, relayer = funded[0], funded[1], funded[2]
    _open(d, a, b)
    d.close(a, b, None, sender=relayer)
    assert d.network.get_channel(a.address, b.address).closer == a.address


def test_close_channel__largest_nonce__is_accepted(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    d.close(a, b, d.proof(b, a, nonce=UINT64_MAX, transferred=1))
    assert d.network.get_participant(b.address, a.address).nonce == UINT64_MAX


def test_close_channel__nonce_with_zero_balance_hash__stores_the_nonce_only(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    proof = d.proof(b, a, nonce=4)
    proof.balance_hash = ZERO32
    proof.signature = _sign_proof_for(d, b, a, b, proof)

    d.close(a, b, proof)

    info = d.network.get_participant(b.address, a.address)
    assert (info.nonce, info.balance_hash) == (4, ZERO32)


# --- reverts -----------------------------------------------------------------------------------


def test_close_channel__balance_hash_without_nonce__reverts(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    proof = d.proof(b, a, nonce=1, transferred=10)
    with boa.reverts("token_network: proof without nonce"):
        _close(d, a, a, b, 0, proof.balance_hash, proof.additional_hash, proof.signature)


def test_close_channel__nonce_2_pow_64__reverts(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    proof = d.proof(b, a, nonce=1, transferred=10)
    with boa.reverts("token_network: nonce too large"):
        _close(d, a, a, b, 2**64, proof.balance_hash, proof.additional_hash, proof.signature)


def test_close_channel__proof_signed_by_the_closer__reverts(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    own = d.proof(a, b, nonce=1, transferred=10)
    with boa.reverts("token_network: invalid balance proof signature"):
        _close_with(d, a, b, own)


def test_close_channel__proof_signed_by_a_stranger__reverts(d, funded):
    a, b, c = funded[0], funded[1], funded[2]
    _open(d, a, b)
    proof = d.proof(b, a, nonce=1, transferred=10)
    with boa.reverts("token_network: invalid balance proof signature"):
        _close_with(d, a, b, proof, signature=_sign_proof_for(d, c, a, b, proof))


def test_close_channel__proof_of_another_channel__reverts(d, funded):
    a, b, c = funded[0], funded[1], funded[2]
    _open(d, a, b)
    d.open(c, b)
    other = d.proof(b, c, nonce=1, transferred=10)
    with boa.reverts("token_network: invalid balance proof signature"):
        _close_with(d, a, b, other)


def test_close_channel__proof_of_an_earlier_generation__reverts(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    old = d.proof(b, a, nonce=5, transferred=10)
    d.close(a, b, None)
    boa.env.time_travel(seconds=SETTLE_WINDOW + 1)
    d.settle(a, None, b, None)
    _open(d, a, b)
    with boa.reverts("token_network: invalid balance proof signature"):
        _close_with(d, a, b, old)


def test_close_channel__fields_other_than_signed__reverts(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    proof = d.proof(b, a, nonce=2, transferred=10)
    with boa.reverts("token_network: invalid balance proof signature"):
        _close(d, a, a, b, 3, proof.balance_hash, proof.additional_hash, proof.signature)
    with boa.reverts("token_network: invalid balance proof signature"):
        _close(d, a, a, b, 2, proof.balance_hash, b"\x33" * 32, proof.signature)


def test_close_channel__third_party_close_signed_by_the_partner__reverts(d, funded):
    a, b, relayer = funded[0], funded[1], funded[2]
    _open(d, a, b)
    proof = d.proof(b, a, nonce=1, transferred=10)
    closing_sig = d.sign_close(b, a, proof)
    with boa.reverts("token_network: invalid closing signature"):
        _close(
            d,
            relayer,
            a,
            b,
            proof.nonce,
            proof.balance_hash,
            proof.additional_hash,
            proof.signature,
            closing_sig,
        )


def test_close_channel__third_party_close_signed_for_no_proof__reverts(d, funded):
    # The Close signature names the exact proof: one for "no proof" cannot carry another.
    a, b, relayer = funded[0], funded[1], funded[2]
    _open(d, a, b)
    proof = d.proof(b, a, nonce=1, transferred=10)
    closing_sig = d.sign_close(a, b, None)
    with boa.reverts("token_network: invalid closing signature"):
        _close(
            d,
            relayer,
            a,
            b,
            proof.nonce,
            proof.balance_hash,
            proof.additional_hash,
            proof.signature,
            closing_sig,
        )


def test_close_channel__third_party_without_closing_signature__reverts(d, funded):
    a, b, relayer = funded[0], funded[1], funded[2]
    _open(d, a, b)
    with boa.reverts("token_network: bad signature length"):
        _close(d, relayer, a, b, 0, ZERO32, ZERO32, b"", b"")


def test_close_channel__partner_calls_as_closer_without_signature__reverts(d, funded):
    # Only the closer itself is exempt from the Close signature.
    a, b = funded[0], funded[1]
    _open(d, a, b)
    with boa.reverts("token_network: bad signature length"):
        _close(d, b, a, b, 0, ZERO32, ZERO32, b"", b"")


def test_close_channel__twice__reverts_channel_not_open(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    d.close(a, b, None)
    with boa.reverts("token_network: channel not open"):
        d.close(b, a, None)
    with boa.reverts("token_network: channel not open"):
        d.close(a, b, None)


def test_close_channel__never_opened__reverts(d, funded):
    a, b = funded[0], funded[1]
    with boa.reverts("token_network: channel not open"):
        d.close(a, b, None)


def test_close_channel__settled__reverts(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    d.close(a, b, None)
    boa.env.time_travel(seconds=SETTLE_WINDOW + 1)
    d.settle(a, None, b, None)
    with boa.reverts("token_network: channel not open"):
        d.close(a, b, None)


# --- signature encoding (shared by every signed entry point) -----------------------------------


def test_close_channel__signature_of_64_bytes__reverts(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    proof = d.proof(b, a, nonce=1, transferred=10)
    with boa.reverts("token_network: bad signature length"):
        _close_with(d, a, b, proof, signature=proof.signature[:64])


def test_close_channel__signature_v_not_27_or_28__reverts(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    proof = d.proof(b, a, nonce=1, transferred=10)
    for v in (0, 1, 29):
        with boa.reverts("token_network: bad signature v"):
            _close_with(d, a, b, proof, signature=proof.signature[:64] + bytes([v]))


def test_close_channel__high_s_twin_of_a_valid_signature__reverts(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    proof = d.proof(b, a, nonce=1, transferred=10)
    sig = proof.signature
    s = int.from_bytes(sig[32:64], "big")
    twin = sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - sig[64]])
    with boa.reverts("token_network: high-s signature"):
        _close_with(d, a, b, proof, signature=twin)
    _close_with(d, a, b, proof)  # the low-s original is accepted
    assert d.network.get_channel(a.address, b.address).state == 2


def test_close_channel__zero_s__reverts(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    proof = d.proof(b, a, nonce=1, transferred=10)
    with boa.reverts("token_network: high-s signature"):
        _close_with(d, a, b, proof, signature=proof.signature[:32] + ZERO32 + proof.signature[64:])


def test_close_channel__signature_that_recovers_no_address__reverts(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    proof = d.proof(b, a, nonce=1, transferred=10)
    no_point = ZERO32 + proof.signature[32:]  # r = 0 is not a curve point
    with boa.reverts("token_network: invalid signature"):
        _close_with(d, a, b, proof, signature=no_point)
    assert d.network.get_channel(a.address, b.address).closer == ZERO_ADDRESS
