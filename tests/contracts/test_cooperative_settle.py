"""Unit tests of `cooperative_settle` of the token network.

What belongs here: closing and settling an open channel at once with both signatures over
each participant's FINAL TOTAL WITHDRAW (each is paid its total minus what it already
withdrew), in either argument order, the event, the channel cleared with its generation
kept, reopening, the inclusive expiration, signatures that stay correct across a later
withdraw (also one co-signed before the settle, landing before or after it), and every
revert: totals not adding up to D1 + D2, a total below what its participant already
withdrew, expired, invalid signatures, channel not open, signatures voided by a later
deposit or by a reopening. What must not: the unilateral close/settle path.
"""

from __future__ import annotations

from typing import Any

import boa
import pytest

from offchain.protocol import settlement
from tests.lib.harness import SETTLE_WINDOW, ZERO_ADDRESS, now

DEPOSIT_A = 100
DEPOSIT_B = 50
TAD = DEPOSIT_A + DEPOSIT_B


def _events(contract: Any, name: str) -> list[Any]:
    # Logs of the contract's LAST call: read them before any other call, a view included.
    return [e for e in contract.get_logs() if type(e).__name__ == name]


def _sigs(d, a, b, total_a, total_b, expiration):
    return (
        d.sign_coop(a, a, b, total_a, total_b, expiration),
        d.sign_coop(b, a, b, total_a, total_b, expiration),
    )


def _submit(d, a, b, total_a, total_b, expiration, sig_a, sig_b, caller=None):
    with boa.env.prank((caller or a).address):
        d.network.cooperative_settle(
            a.address, b.address, total_a, total_b, expiration, sig_a, sig_b
        )


def _open(d, a, b):
    return d.open(a, b, deposit_a=DEPOSIT_A, deposit_b=DEPOSIT_B)


def _balances(d, *accounts):
    return [d.token.balanceOf(x.address) for x in accounts]


def _payouts(d, a, b, total_a, total_b):
    """The oracle's payouts (a's, b's) for these totals on the channel as it stands."""
    info_a = d.network.get_participant(a.address, b.address)
    info_b = d.network.get_participant(b.address, a.address)
    return settlement.cooperative_payouts(
        info_a.deposit, info_b.deposit, info_a.withdrawn, info_b.withdrawn, total_a, total_b
    )


# --- positive ----------------------------------------------------------------------------------


def test_cooperative_settle__signed_totals_no_withdraws__pays_the_totals_and_clears(d, funded):
    a, b = funded[0], funded[1]
    cid = _open(d, a, b)
    before_a, before_b = _balances(d, a, b)
    expiration = now() + 600
    # Nothing withdrawn yet: the totals are the payouts.
    assert settlement.cooperative_payouts(DEPOSIT_A, DEPOSIT_B, 0, 0, 90, 60) == (90, 60)
    assert _payouts(d, a, b, 90, 60) == (90, 60)

    _submit(d, a, b, 90, 60, expiration, *_sigs(d, a, b, 90, 60, expiration))
    (event,) = _events(d.network, "ChannelCooperativeSettled")

    first = a.raw < b.raw
    assert event.channel_id == cid
    assert event.generation == 1
    assert (event.participant1_amount, event.participant2_amount) == (
        (90, 60) if first else (60, 90)
    )
    assert _balances(d, a, b) == [before_a + 90, before_b + 60]
    assert d.token.balanceOf(d.network.address) == 0
    channel = d.network.get_channel(a.address, b.address)
    assert (channel.state, channel.generation, channel.settle_window_or_deadline) == (0, 1, 0)
    assert channel.closer == ZERO_ADDRESS
    for x, y in ((a, b), (b, a)):
        info = d.network.get_participant(x.address, y.address)
        assert (info.deposit, info.withdrawn, info.nonce) == (0, 0, 0)


def test_cooperative_settle__arguments_in_the_other_order__pays_the_same(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    before_a, before_b = _balances(d, a, b)
    expiration = now() + 600
    sig_a, sig_b = _sigs(d, a, b, 90, 60, expiration)

    # b first: b's total and b's signature first.
    _submit(d, b, a, 60, 90, expiration, sig_b, sig_a)

    assert _balances(d, a, b) == [before_a + 90, before_b + 60]
    assert d.network.get_channel(a.address, b.address).state == 0


def test_cooperative_settle__all_to_one_side__pays_zero_to_the_other(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    before_a, before_b = _balances(d, a, b)
    expiration = now() + 600
    _submit(d, a, b, 0, TAD, expiration, *_sigs(d, a, b, 0, TAD, expiration))
    assert _balances(d, a, b) == [before_a, before_b + TAD]


def test_cooperative_settle__after_a_withdraw__pays_the_total_minus_the_withdrawn(d, funded):
    # Totals still add up to D1 + D2 (150); a's total 90 = the 40 it took + 50 now.
    a, b = funded[0], funded[1]
    _open(d, a, b)
    d.withdraw(a, b, 40)
    before_a, before_b = _balances(d, a, b)
    expiration = now() + 600
    assert settlement.cooperative_payouts(DEPOSIT_A, DEPOSIT_B, 40, 0, 90, 60) == (50, 60)
    assert _payouts(d, a, b, 90, 60) == (50, 60)

    _submit(d, a, b, 90, 60, expiration, *_sigs(d, a, b, 90, 60, expiration))
    (event,) = _events(d.network, "ChannelCooperativeSettled")

    first = a.raw < b.raw
    assert (event.participant1_amount, event.participant2_amount) == (
        (50, 60) if first else (60, 50)
    )
    assert _balances(d, a, b) == [before_a + 50, before_b + 60]
    assert d.token.balanceOf(d.network.address) == 0


def test_cooperative_settle__withdraw_after_signing__old_signatures_still_pay_correctly(d, funded):
    # Replaces "a withdraw after signing voids the signatures": with totals the old
    # signatures stay correct, the withdraw is deducted from the payout and nobody loses.
    a, b = funded[0], funded[1]
    _open(d, a, b)
    start_a, start_b = _balances(d, a, b)
    expiration = now() + 600
    sigs = _sigs(d, a, b, 90, 60, expiration)
    d.withdraw(a, b, 40)
    before_a, before_b = _balances(d, a, b)
    assert _payouts(d, a, b, 90, 60) == (50, 60)

    _submit(d, a, b, 90, 60, expiration, *sigs)

    assert _balances(d, a, b) == [before_a + 50, before_b + 60]
    # Over the channel's life a got its total 90 and b its total 60.
    assert _balances(d, a, b) == [start_a + 90, start_b + 60]
    assert d.token.balanceOf(d.network.address) == 0


def test_cooperative_settle__over_a_cosigned_withdraw__each_takes_its_total_in_either_order(
    d, funded
):
    # docs/spec.md §10: a partner co-signs a settle over a withdraw it co-signed but has
    # not seen land. Both signatures of the withdraw (40 to a) and of the settle (final
    # totals 90 / 60) exist before either is submitted; whichever lands first, a takes 90
    # and b 60 over the channel's life (they deposited 100 and 50), and the late withdraw
    # is refused, also after a reopening of the pair.
    a, b = funded[0], funded[1]
    for withdraw_first in (True, False):
        _open(d, a, b)
        start_a, start_b = _balances(d, a, b)
        expiration = now() + 600
        withdraw_sigs = (
            d.sign_withdraw(a, a, b, 40, expiration),
            d.sign_withdraw(b, a, b, 40, expiration),
        )
        settle_sigs = _sigs(d, a, b, 90, 60, expiration)

        def withdraw(withdraw_sigs=withdraw_sigs, expiration=expiration):
            with boa.env.prank(a.address):
                d.network.set_total_withdraw(a.address, b.address, 40, expiration, *withdraw_sigs)

        if withdraw_first:
            withdraw()
        _submit(d, a, b, 90, 60, expiration, *settle_sigs)
        if not withdraw_first:
            with boa.reverts("token_network: channel not open"):
                withdraw()
            _open(d, a, b)
            with boa.reverts("token_network: invalid participant signature"):
                withdraw()
            d.close(a, b, None)  # end the reopened channel: its deposits go back as they came
            boa.env.time_travel(seconds=SETTLE_WINDOW + 1)
            d.settle(a, None, b, None)
        assert _balances(d, a, b) == [start_a + 90, start_b + 60]
        assert d.token.balanceOf(d.network.address) == 0


def test_cooperative_settle__total_equal_to_the_withdrawn__pays_that_side_zero(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    d.withdraw(a, b, 40)
    before_a, before_b = _balances(d, a, b)
    expiration = now() + 600
    assert _payouts(d, a, b, 40, TAD - 40) == (0, TAD - 40)

    _submit(d, a, b, 40, TAD - 40, expiration, *_sigs(d, a, b, 40, TAD - 40, expiration))

    assert _balances(d, a, b) == [before_a, before_b + TAD - 40]
    assert d.token.balanceOf(d.network.address) == 0


def test_cooperative_settle__submitted_by_a_third_party__pays_the_participants(d, funded):
    a, b, relayer = funded[0], funded[1], funded[2]
    _open(d, a, b)
    before = _balances(d, a, b, relayer)
    expiration = now() + 600
    _submit(d, a, b, 75, 75, expiration, *_sigs(d, a, b, 75, 75, expiration), caller=relayer)
    assert _balances(d, a, b, relayer) == [before[0] + 75, before[1] + 75, before[2]]


def test_cooperative_settle__expiration_equal_to_now__is_accepted(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    expiration = now()
    _submit(d, a, b, 90, 60, expiration, *_sigs(d, a, b, 90, 60, expiration))
    assert d.network.get_channel(a.address, b.address).state == 0


def test_cooperative_settle__then_reopen__gets_the_next_generation(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    expiration = now() + 600
    _submit(d, a, b, 90, 60, expiration, *_sigs(d, a, b, 90, 60, expiration))

    d.open(b, a)

    channel = d.network.get_channel(a.address, b.address)
    assert (channel.state, channel.generation) == (1, 2)
    assert d.network.get_participant(a.address, b.address).deposit == 0


# --- reverts -----------------------------------------------------------------------------------


def test_cooperative_settle__totals_below_the_channel_total__reverts(d, funded):
    # Fewer tokens than D1 + D2 would leave tokens (pending locks) stuck in the contract.
    a, b = funded[0], funded[1]
    _open(d, a, b)
    expiration = now() + 600
    assert settlement.cooperative_payouts(DEPOSIT_A, DEPOSIT_B, 0, 0, 90, 59) is None
    with boa.reverts("token_network: payouts must add up to the channel total"):
        _submit(d, a, b, 90, 59, expiration, *_sigs(d, a, b, 90, 59, expiration))
    assert d.network.get_channel(a.address, b.address).state == 1


def test_cooperative_settle__totals_above_the_channel_total__reverts(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    expiration = now() + 600
    assert settlement.cooperative_payouts(DEPOSIT_A, DEPOSIT_B, 0, 0, 91, 60) is None
    with boa.reverts("token_network: payouts must add up to the channel total"):
        _submit(d, a, b, 91, 60, expiration, *_sigs(d, a, b, 91, 60, expiration))
    assert d.network.get_channel(a.address, b.address).state == 1


def test_cooperative_settle__after_a_withdraw_totals_as_payouts__reverts(d, funded):
    # The old payout semantics (50 + 60 = what is left) no longer add up: totals must
    # cover the whole D1 + D2, the withdrawn 40 included.
    a, b = funded[0], funded[1]
    _open(d, a, b)
    d.withdraw(a, b, 40)
    expiration = now() + 600
    assert _payouts(d, a, b, 50, 60) is None
    with boa.reverts("token_network: payouts must add up to the channel total"):
        _submit(d, a, b, 50, 60, expiration, *_sigs(d, a, b, 50, 60, expiration))


@pytest.mark.parametrize("who", ["a", "b"])
def test_cooperative_settle__total_below_the_withdrawn__reverts(d, funded, who):
    # Adds up to D1 + D2, but the withdrawer's total is below what it already took out.
    a, b = funded[0], funded[1]
    _open(d, a, b)
    expiration = now() + 600
    if who == "a":
        d.withdraw(a, b, 40)
        total_a, total_b = 30, TAD - 30
    else:
        d.withdraw(b, a, 40)
        total_a, total_b = TAD - 30, 30
    assert _payouts(d, a, b, total_a, total_b) is None
    sigs = _sigs(d, a, b, total_a, total_b, expiration)
    with boa.reverts("token_network: total withdraw below withdrawn"):
        _submit(d, a, b, total_a, total_b, expiration, *sigs)
    assert d.network.get_channel(a.address, b.address).state == 1


def test_cooperative_settle__withdraw_beyond_the_signed_total_after_signing__reverts(d, funded):
    # Twin of the "old signatures still pay correctly" test: once a side has withdrawn
    # more than its signed total, the old signatures cannot pay it a negative amount.
    a, b = funded[0], funded[1]
    _open(d, a, b)
    expiration = now() + 600
    sigs = _sigs(d, a, b, TAD, 0, expiration)
    d.withdraw(b, a, 40)
    assert _payouts(d, a, b, TAD, 0) is None
    with boa.reverts("token_network: total withdraw below withdrawn"):
        _submit(d, a, b, TAD, 0, expiration, *sigs)


def test_cooperative_settle__expired__reverts(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    expiration = now()
    sigs = _sigs(d, a, b, 90, 60, expiration)
    boa.env.time_travel(seconds=1)
    with boa.reverts("token_network: cooperative settle expired"):
        _submit(d, a, b, 90, 60, expiration, *sigs)


def test_cooperative_settle__signatures_swapped__reverts_invalid_participant_signature(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    expiration = now() + 600
    sig_a, sig_b = _sigs(d, a, b, 90, 60, expiration)
    with boa.reverts("token_network: invalid participant signature"):
        _submit(d, a, b, 90, 60, expiration, sig_b, sig_a)


def test_cooperative_settle__partner_slot_signed_by_a_stranger__reverts(d, funded):
    a, b, c = funded[0], funded[1], funded[2]
    _open(d, a, b)
    expiration = now() + 600
    sig_a = d.sign_coop(a, a, b, 90, 60, expiration)
    sig_c = d.sign_coop(c, a, b, 90, 60, expiration)
    with boa.reverts("token_network: invalid partner signature"):
        _submit(d, a, b, 90, 60, expiration, sig_a, sig_c)


def test_cooperative_settle__totals_other_than_signed__reverts(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    expiration = now() + 600
    sigs = _sigs(d, a, b, 90, 60, expiration)
    with boa.reverts("token_network: invalid participant signature"):
        _submit(d, a, b, 60, 90, expiration, *sigs)


def test_cooperative_settle__withdraw_after_signing_then_a_resplit__reverts(d, funded):
    # The old signatures cover only the signed totals, not another split that also adds up.
    a, b = funded[0], funded[1]
    _open(d, a, b)
    expiration = now() + 600
    sigs = _sigs(d, a, b, 90, 60, expiration)
    d.withdraw(a, b, 40)
    assert _payouts(d, a, b, 50, 100) == (10, 100)
    with boa.reverts("token_network: invalid participant signature"):
        _submit(d, a, b, 50, 100, expiration, *sigs)


def test_cooperative_settle__expiration_other_than_signed__reverts(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    expiration = now() + 600
    sigs = _sigs(d, a, b, 90, 60, expiration)
    with boa.reverts("token_network: invalid participant signature"):
        _submit(d, a, b, 90, 60, expiration + 1, *sigs)


def test_cooperative_settle__channel_never_opened__reverts(d, funded):
    a, b = funded[0], funded[1]
    expiration = now() + 600
    with boa.reverts("token_network: channel not open"):
        _submit(d, a, b, 0, 0, expiration, *_sigs(d, a, b, 0, 0, expiration))


def test_cooperative_settle__channel_closed__reverts(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    expiration = now() + 600
    sigs = _sigs(d, a, b, 90, 60, expiration)
    d.close(a, b, None)
    with boa.reverts("token_network: channel not open"):
        _submit(d, a, b, 90, 60, expiration, *sigs)


def test_cooperative_settle__twice__reverts_channel_not_open(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    expiration = now() + 600
    sigs = _sigs(d, a, b, 90, 60, expiration)
    _submit(d, a, b, 90, 60, expiration, *sigs)
    with boa.reverts("token_network: channel not open"):
        _submit(d, a, b, 90, 60, expiration, *sigs)


def test_cooperative_settle__deposit_after_signing__old_totals_no_longer_add_up(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    expiration = now() + 600
    sigs = _sigs(d, a, b, 90, 60, expiration)
    d.deposit(b, a, DEPOSIT_B + 10)
    assert _payouts(d, a, b, 90, 60) is None
    with boa.reverts("token_network: payouts must add up to the channel total"):
        _submit(d, a, b, 90, 60, expiration, *sigs)


def test_cooperative_settle__withdraw_then_top_up_after_signing__old_totals_no_longer_add_up(
    d, funded
):
    # Used to be a bug under payout semantics: b withdrew 40 of its 60 after signing and a
    # topped up 40, bringing what is left back to the signed 150, so the old split would have
    # paid b 60 more (100 in all) and a only 90 of its 140. With totals, D1 + D2 is now 190
    # and the old totals (150) no longer add up.
    a, b = funded[0], funded[1]
    _open(d, a, b)
    expiration = now() + 600
    sigs = _sigs(d, a, b, 90, 60, expiration)
    d.withdraw(b, a, 40)
    d.deposit(a, b, DEPOSIT_A + 40)
    assert settlement.cooperative_payouts(DEPOSIT_A + 40, DEPOSIT_B, 0, 40, 90, 60) is None
    assert _payouts(d, a, b, 90, 60) is None

    with boa.reverts("token_network: payouts must add up to the channel total"):
        _submit(d, a, b, 90, 60, expiration, *sigs)
    assert d.network.get_channel(a.address, b.address).state == 1


def test_cooperative_settle__signatures_of_an_earlier_generation__reverts(d, funded):
    a, b = funded[0], funded[1]
    _open(d, a, b)
    expiration = now() + 3 * SETTLE_WINDOW
    old = _sigs(d, a, b, 90, 60, expiration)
    d.close(a, b, None)
    boa.env.time_travel(seconds=SETTLE_WINDOW + 1)
    d.settle(a, None, b, None)
    _open(d, a, b)  # same deposits: the old totals add up again

    with boa.reverts("token_network: invalid participant signature"):
        _submit(d, a, b, 90, 60, expiration, *old)
