"""Unit tests of `set_total_withdraw` of the token network.

What belongs here: paying a participant out of an open channel with both signatures (event,
stored total, tokens moved, total-amount semantics), the inclusive expiration, the bound
D1 + D2 - W_partner with its exact boundary, and every revert: expired, not rising,
exceeding the deposits, each invalid signature, replay into a reopened channel, channel not
open. What must not: how withdraws enter the settle payouts (test_settle.py).
"""

from __future__ import annotations

import warnings
from typing import Any

import boa
import pytest

from offchain.protocol import eip712
from tests.lib import harness
from tests.lib.harness import SETTLE_WINDOW, Deployment, now

DEPOSIT_A = 100
DEPOSIT_B = 50


def _events(contract: Any, name: str) -> list[Any]:
    # Logs of the contract's LAST call: read them before any other call, a view included.
    return [e for e in contract.get_logs() if type(e).__name__ == name]


def _submit(d, participant, partner, total, expiration, sig_participant, sig_partner, caller=None):
    with boa.env.prank((caller or participant).address):
        d.network.set_total_withdraw(
            participant.address, partner.address, total, expiration, sig_participant, sig_partner
        )


def _both_signatures(d, participant, partner, total, expiration):
    return (
        d.sign_withdraw(participant, participant, partner, total, expiration),
        d.sign_withdraw(partner, participant, partner, total, expiration),
    )


def _open(d, a, b):
    return d.open(a, b, deposit_a=DEPOSIT_A, deposit_b=DEPOSIT_B)


# --- positive ----------------------------------------------------------------------------------


def test_set_total_withdraw__both_signatures__pays_participant_logs_and_records(d, funded):
    a, b = funded[0], funded[1]
    cid = _open(d, a, b)
    before = d.token.balanceOf(a.address)
    expiration = now() + 600

    _submit(d, a, b, 30, expiration, *_both_signatures(d, a, b, 30, expiration))
    events = _events(d.network, "ChannelWithdraw")

    assert [(e.channel_id, e.participant, e.total_withdraw) for e in events] == [
        (cid, a.address, 30)
    ]
    assert d.token.balanceOf(a.address) == before + 30
    assert d.token.balanceOf(d.network.address) == DEPOSIT_A + DEPOSIT_B - 30
    info = d.network.get_participant(a.address, b.address)
    assert (info.deposit, info.withdrawn) == (DEPOSIT_A, 30)
    assert d.network.get_participant(b.address, a.address).withdrawn == 0
    assert d.network.get_channel(a.address, b.address).state == 1


def test_set_total_withdraw__rising_totals__pays_only_the_difference(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    d.withdraw(a, b, 30)
    before = d.token.balanceOf(a.address)

    d.withdraw(a, b, 50)
    (event,) = _events(d.network, "ChannelWithdraw")

    assert event.total_withdraw == 50
    assert d.token.balanceOf(a.address) == before + 20
    assert d.network.get_participant(a.address, b.address).withdrawn == 50


def test_set_total_withdraw__expiration_equal_to_now__is_accepted(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    d.withdraw(a, b, 10, expiration=now())
    assert d.network.get_participant(a.address, b.address).withdrawn == 10


def test_set_total_withdraw__submitted_by_a_third_party__pays_the_participant(d, funded):
    a, b, relayer = funded[0], funded[1], funded[2]
    _open(d, a, b)
    before_a, before_relayer = d.token.balanceOf(a.address), d.token.balanceOf(relayer.address)
    expiration = now() + 600

    _submit(d, a, b, 25, expiration, *_both_signatures(d, a, b, 25, expiration), caller=relayer)

    assert d.token.balanceOf(a.address) == before_a + 25
    assert d.token.balanceOf(relayer.address) == before_relayer


def test_set_total_withdraw__exactly_both_deposits_minus_partner_withdraw__is_accepted(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    d.withdraw(b, a, 20)

    d.withdraw(a, b, DEPOSIT_A + DEPOSIT_B - 20)

    assert d.network.get_participant(a.address, b.address).withdrawn == DEPOSIT_A + DEPOSIT_B - 20
    assert d.token.balanceOf(d.network.address) == 0


def test_set_total_withdraw__second_participant__totals_kept_apart(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    d.withdraw(a, b, 40)
    d.withdraw(b, a, 15)
    assert d.network.get_participant(a.address, b.address).withdrawn == 40
    assert d.network.get_participant(b.address, a.address).withdrawn == 15


@pytest.mark.parametrize("most_to", ["participant1", "participant2"])
def test_set_total_withdraw__deposits_at_the_cap__largest_totals_fit_and_read_back(
    d, funded, most_to
):
    # Withdraw totals are packed (92 bits each while open): the largest reachable totals,
    # from deposits at the largest participant limit, must survive open and close, in
    # either participant's field.
    low, high = sorted(funded[:2], key=lambda x: x.raw)
    a, b = (low, high) if most_to == "participant1" else (high, low)
    cap = 2**91 - 1
    token = harness.load("test/test_token.vy", "Big Token", "BIG", 18)
    address = d.registry.create_token_network(token.address, 600, 7200, cap, 2**256 - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        network = harness.deployer("token_network.vy").at(address)
    big = Deployment(d.secret_registry, d.implementation, d.registry, token, network)
    big.fund(a, cap)
    big.fund(b, cap)
    big.open(a, b, window=600, deposit_a=cap, deposit_b=cap)

    big.withdraw(b, a, 2**64 + 5)
    big.withdraw(a, b, 2 * cap - 2**64 - 5)

    for closed in (False, True):
        assert network.get_participant(a.address, b.address).withdrawn == 2 * cap - 2**64 - 5
        assert network.get_participant(b.address, a.address).withdrawn == 2**64 + 5
        assert network.get_participant(a.address, b.address).deposit == cap
        if not closed:
            big.close(a, b, None)
    assert token.balanceOf(a.address) == 2 * cap - 2**64 - 5
    assert token.balanceOf(address) == 0


# --- reverts -----------------------------------------------------------------------------------


def test_set_total_withdraw__expired__reverts(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    expiration = now()
    sigs = _both_signatures(d, a, b, 10, expiration)
    boa.env.time_travel(seconds=1)
    with boa.reverts("token_network: withdraw expired"):
        _submit(d, a, b, 10, expiration, *sigs)


def test_set_total_withdraw__same_total_again__reverts_must_rise(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    expiration = now() + 600
    sigs = _both_signatures(d, a, b, 30, expiration)
    _submit(d, a, b, 30, expiration, *sigs)
    with boa.reverts("token_network: total withdraw must rise"):
        _submit(d, a, b, 30, expiration, *sigs)


def test_set_total_withdraw__lower_total__reverts_must_rise(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    d.withdraw(a, b, 30)
    with boa.reverts("token_network: total withdraw must rise"):
        d.withdraw(a, b, 29)


def test_set_total_withdraw__zero_total__reverts_must_rise(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    with boa.reverts("token_network: total withdraw must rise"):
        d.withdraw(a, b, 0)


def test_set_total_withdraw__one_above_deposits_minus_partner_withdraw__reverts(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    d.withdraw(b, a, 20)
    with boa.reverts("token_network: withdraw exceeds deposits"):
        d.withdraw(a, b, DEPOSIT_A + DEPOSIT_B - 20 + 1)


def test_set_total_withdraw__more_than_both_deposits__reverts(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    with boa.reverts("token_network: withdraw exceeds deposits"):
        d.withdraw(a, b, DEPOSIT_A + DEPOSIT_B + 1)


def test_set_total_withdraw__signatures_swapped__reverts_invalid_participant_signature(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    expiration = now() + 600
    sig_a, sig_b = _both_signatures(d, a, b, 10, expiration)
    with boa.reverts("token_network: invalid participant signature"):
        _submit(d, a, b, 10, expiration, sig_b, sig_a)


def test_set_total_withdraw__participant_slot_signed_by_a_stranger__reverts(d, funded):
    a, b, c = funded[0], funded[1], funded[2]
    _open(d, a, b)
    expiration = now() + 600
    sig_c = d.sign_withdraw(c, a, b, 10, expiration)
    sig_b = d.sign_withdraw(b, a, b, 10, expiration)
    with boa.reverts("token_network: invalid participant signature"):
        _submit(d, a, b, 10, expiration, sig_c, sig_b)


def test_set_total_withdraw__partner_slot_signed_by_a_stranger__reverts(d, funded):
    a, b, c = funded[0], funded[1], funded[2]
    _open(d, a, b)
    expiration = now() + 600
    sig_a = d.sign_withdraw(a, a, b, 10, expiration)
    sig_c = d.sign_withdraw(c, a, b, 10, expiration)
    with boa.reverts("token_network: invalid partner signature"):
        _submit(d, a, b, 10, expiration, sig_a, sig_c)


def test_set_total_withdraw__participant_signed_both_slots__reverts(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    expiration = now() + 600
    sig_a = d.sign_withdraw(a, a, b, 10, expiration)
    with boa.reverts("token_network: invalid partner signature"):
        _submit(d, a, b, 10, expiration, sig_a, sig_a)


def test_set_total_withdraw__amount_other_than_signed__reverts(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    expiration = now() + 600
    sigs = _both_signatures(d, a, b, 10, expiration)
    with boa.reverts("token_network: invalid participant signature"):
        _submit(d, a, b, 11, expiration, *sigs)


def test_set_total_withdraw__signed_for_the_partner__reverts(d, funded):
    # The struct names the participant: b's withdraw signatures do not pay a.
    a, b = funded[0], funded[1]
    _open(d, a, b)
    expiration = now() + 600
    sigs = _both_signatures(d, b, a, 10, expiration)
    with boa.reverts("token_network: invalid participant signature"):
        _submit(d, a, b, 10, expiration, sigs[1], sigs[0])


def test_set_total_withdraw__signatures_of_an_earlier_generation__reverts(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    expiration = now() + 3 * SETTLE_WINDOW
    old = _both_signatures(d, a, b, 10, expiration)
    d.close(a, b, None)
    boa.env.time_travel(seconds=SETTLE_WINDOW + 1)
    d.settle(a, None, b, None)
    _open(d, a, b)

    with boa.reverts("token_network: invalid participant signature"):
        _submit(d, a, b, 10, expiration, *old)
    # The same withdraw signed for the new generation is accepted.
    struct = eip712.Withdraw(
        channel_id=d.cid(a, b),
        generation=2,
        participant=a.raw,
        total_withdraw=10,
        expiration=expiration,
    )
    fresh = (eip712.sign(a.key, d.domain, struct), eip712.sign(b.key, d.domain, struct))
    _submit(d, a, b, 10, expiration, *fresh)
    assert d.network.get_participant(a.address, b.address).withdrawn == 10


def test_set_total_withdraw__channel_never_opened__reverts(d, funded):
    a, b = funded[0], funded[1]
    expiration = now() + 600
    with boa.reverts("token_network: channel not open"):
        _submit(d, a, b, 10, expiration, *_both_signatures(d, a, b, 10, expiration))


def test_set_total_withdraw__channel_closed__reverts(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    expiration = now() + 600
    sigs = _both_signatures(d, a, b, 10, expiration)
    d.close(b, a, None)
    with boa.reverts("token_network: channel not open"):
        _submit(d, a, b, 10, expiration, *sigs)
