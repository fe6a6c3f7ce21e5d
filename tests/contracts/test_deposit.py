"""Unit tests of `set_total_deposit` of the token network.

What belongs here: raising a participant's total deposit (event, stored total, tokens
pulled from the caller), total-amount semantics, deposits paid by a third party, and every
revert: channel not open, total not rising, the participant and network deposit limits,
and the token's own refusal. What must not: the deposit made by `open_channel_with_deposit`
(test_open.py) or how deposits are paid out (settle, withdraw tests).
"""

from __future__ import annotations

import warnings
from typing import Any

import boa
import pytest

from tests.lib import harness
from tests.lib.harness import SETTLE_MAX, SETTLE_MIN, SETTLE_WINDOW, Deployment

SMALL_PARTICIPANT_LIMIT = 100
SMALL_NETWORK_LIMIT = 150


def _events(contract: Any, name: str) -> list[Any]:
    # Logs of the contract's LAST call: read them before any other call, a view included.
    return [e for e in contract.get_logs() if type(e).__name__ == name]


def _deposit_as(d, caller, participant, partner, total):
    with boa.env.prank(caller.address):
        d.network.set_total_deposit(participant.address, partner.address, total)


@pytest.fixture
def small(d: Deployment, accounts) -> Deployment:
    """A second token whose network holds at most 150 tokens, 100 per participant; the
    registry allows one network per token, hence the fresh token."""
    token = harness.load("test/test_token.vy", "Small Token", "SMALL", 18)
    address = d.registry.create_token_network(
        token.address, SETTLE_MIN, SETTLE_MAX, SMALL_PARTICIPANT_LIMIT, SMALL_NETWORK_LIMIT
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        network = harness.deployer("token_network.vy").at(address)
    small = Deployment(d.secret_registry, d.implementation, d.registry, token, network)
    for account in accounts[:3]:
        small.fund(account, 1000)
    return small


# --- positive ----------------------------------------------------------------------------------


def test_set_total_deposit__first_deposit__logs_records_and_pulls_tokens(d, funded):
    a, b = funded[0], funded[1]
    cid = d.open(a, b)
    before = d.token.balanceOf(a.address)

    _deposit_as(d, a, a, b, 100)
    events = _events(d.network, "ChannelNewDeposit")

    assert [(e.channel_id, e.participant, e.total_deposit) for e in events] == [
        (cid, a.address, 100)
    ]
    assert d.network.get_participant(a.address, b.address).deposit == 100
    assert d.token.balanceOf(a.address) == before - 100
    assert d.token.balanceOf(d.network.address) == 100


def test_set_total_deposit__higher_total__pulls_only_the_difference(d, funded):
    a, b = funded[0], funded[1]
    d.open(a, b)
    _deposit_as(d, a, a, b, 100)
    before = d.token.balanceOf(a.address)

    _deposit_as(d, a, a, b, 250)
    (event,) = _events(d.network, "ChannelNewDeposit")

    assert event.total_deposit == 250
    assert d.network.get_participant(a.address, b.address).deposit == 250
    assert d.token.balanceOf(a.address) == before - 150
    assert d.token.balanceOf(d.network.address) == 250


def test_set_total_deposit__for_someone_else__paid_by_the_caller(d, funded):
    a, b, payer = funded[0], funded[1], funded[2]
    d.open(a, b)
    before_a, before_payer = d.token.balanceOf(a.address), d.token.balanceOf(payer.address)

    _deposit_as(d, payer, a, b, 70)
    (event,) = _events(d.network, "ChannelNewDeposit")

    assert event.participant == a.address
    assert d.network.get_participant(a.address, b.address).deposit == 70
    assert d.token.balanceOf(a.address) == before_a
    assert d.token.balanceOf(payer.address) == before_payer - 70


def test_set_total_deposit__both_participants__totals_kept_apart(d, funded):
    a, b = funded[0], funded[1]
    d.open(a, b)
    _deposit_as(d, a, a, b, 100)
    _deposit_as(d, b, b, a, 30)
    _deposit_as(d, a, a, b, 101)

    assert d.network.get_participant(a.address, b.address).deposit == 101
    assert d.network.get_participant(b.address, a.address).deposit == 30
    assert d.token.balanceOf(d.network.address) == 131


def test_set_total_deposit__up_to_the_participant_limit__is_accepted(d, funded):
    a, b = funded[0], funded[1]
    limit = d.network.participant_deposit_limit()
    d.fund(a, limit)
    d.open(a, b)
    _deposit_as(d, a, a, b, limit)
    assert d.network.get_participant(a.address, b.address).deposit == limit


def test_set_total_deposit__network_exactly_full__is_accepted(small, accounts):
    a, b = accounts[0], accounts[1]
    small.open(a, b)
    _deposit_as(small, a, a, b, SMALL_PARTICIPANT_LIMIT)
    _deposit_as(small, b, b, a, SMALL_NETWORK_LIMIT - SMALL_PARTICIPANT_LIMIT)
    assert small.token.balanceOf(small.network.address) == SMALL_NETWORK_LIMIT


# --- reverts -----------------------------------------------------------------------------------


def test_set_total_deposit__same_total_retried__reverts_total_must_rise(d, funded):
    a, b = funded[0], funded[1]
    d.open(a, b)
    _deposit_as(d, a, a, b, 100)
    before = d.token.balanceOf(a.address)

    with boa.reverts("token_network: total deposit must rise"):
        _deposit_as(d, a, a, b, 100)
    assert d.token.balanceOf(a.address) == before


def test_set_total_deposit__lower_total__reverts(d, funded):
    a, b = funded[0], funded[1]
    d.open(a, b)
    _deposit_as(d, a, a, b, 100)
    with boa.reverts("token_network: total deposit must rise"):
        _deposit_as(d, a, a, b, 99)


def test_set_total_deposit__zero_total_on_a_fresh_channel__reverts(d, funded):
    a, b = funded[0], funded[1]
    d.open(a, b)
    with boa.reverts("token_network: total deposit must rise"):
        _deposit_as(d, a, a, b, 0)


def test_set_total_deposit__channel_never_opened__reverts(d, funded):
    a, b = funded[0], funded[1]
    with boa.reverts("token_network: channel not open"):
        _deposit_as(d, a, a, b, 100)


def test_set_total_deposit__participant_outside_the_channel__reverts(d, funded):
    a, b, c = funded[0], funded[1], funded[2]
    d.open(a, b)
    with boa.reverts("token_network: channel not open"):
        _deposit_as(d, c, c, a, 100)


def test_set_total_deposit__channel_closed__reverts(d, funded):
    a, b = funded[0], funded[1]
    d.open(a, b, deposit_a=10)
    d.close(a, b, None)
    with boa.reverts("token_network: channel not open"):
        _deposit_as(d, b, b, a, 100)


def test_set_total_deposit__channel_settled__reverts(d, funded):
    a, b = funded[0], funded[1]
    d.open(a, b, deposit_a=10)
    d.close(a, b, None)
    boa.env.time_travel(seconds=SETTLE_WINDOW + 1)
    d.settle(a, None, b, None)
    with boa.reverts("token_network: channel not open"):
        _deposit_as(d, a, a, b, 100)


def test_set_total_deposit__above_the_participant_limit__reverts(d, funded):
    a, b = funded[0], funded[1]
    limit = d.network.participant_deposit_limit()
    d.fund(a, limit + 1)
    d.open(a, b)
    with boa.reverts("token_network: participant deposit limit"):
        _deposit_as(d, a, a, b, limit + 1)


def test_set_total_deposit__small_network_participant_limit__reverts(small, accounts):
    a, b = accounts[0], accounts[1]
    small.open(a, b)
    with boa.reverts("token_network: participant deposit limit"):
        _deposit_as(small, a, a, b, SMALL_PARTICIPANT_LIMIT + 1)


def test_set_total_deposit__above_the_network_limit__reverts(small, accounts):
    a, b = accounts[0], accounts[1]
    small.open(a, b)
    _deposit_as(small, a, a, b, SMALL_PARTICIPANT_LIMIT)
    with boa.reverts("token_network: network deposit limit"):
        _deposit_as(small, b, b, a, SMALL_NETWORK_LIMIT - SMALL_PARTICIPANT_LIMIT + 1)
    assert small.network.get_participant(b.address, a.address).deposit == 0


def test_set_total_deposit__network_limit_counts_every_channel__reverts(small, accounts):
    a, b, c = accounts[0], accounts[1], accounts[2]
    small.open(a, b)
    small.open(c, b)
    _deposit_as(small, a, a, b, SMALL_PARTICIPANT_LIMIT)
    with boa.reverts("token_network: network deposit limit"):
        _deposit_as(small, c, c, b, SMALL_NETWORK_LIMIT - SMALL_PARTICIPANT_LIMIT + 1)


def test_set_total_deposit__insufficient_allowance__reverts_with_the_tokens_reason(d, accounts):
    a, b = accounts[5], accounts[6]
    d.token.mint(a.address, 100)
    with boa.env.prank(a.address):
        d.token.approve(d.network.address, 99)
    d.open(a, b)
    with boa.reverts("test_token: insufficient allowance"):
        _deposit_as(d, a, a, b, 100)
    assert d.network.get_participant(a.address, b.address).deposit == 0


def test_set_total_deposit__insufficient_balance__reverts_with_the_tokens_reason(d, accounts):
    a, b = accounts[5], accounts[6]
    d.token.mint(a.address, 99)
    with boa.env.prank(a.address):
        d.token.approve(d.network.address, 100)
    d.open(a, b)
    with boa.reverts("test_token: insufficient balance"):
        _deposit_as(d, a, a, b, 100)
