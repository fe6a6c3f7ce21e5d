"""Unit tests of opening channels: `open_channel`, `open_channel_with_deposit`, and the views
that describe a channel (`channel_id`, `get_channel`).

What belongs here: the opened channel's event and stored fields, the channel id (against
the Python oracle), the settle-window bounds, every revert of opening, and reopening a
settled pair with a new generation. What must not: later deposits (test_deposit.py) or
the lifecycle after opening.
"""

from __future__ import annotations

from typing import Any

import boa

from offchain.protocol.locks import channel_id
from tests.lib.harness import SETTLE_MAX, SETTLE_MIN, SETTLE_WINDOW, ZERO_ADDRESS


def _events(contract: Any, name: str) -> list[Any]:
    # Logs of the contract's LAST call: read them before any other call, a view included.
    return [e for e in contract.get_logs() if type(e).__name__ == name]


def _ordered(a, b):
    return (a, b) if a.raw < b.raw else (b, a)


def _open(d, a, b, window=SETTLE_WINDOW):
    with boa.env.prank(a.address):
        return d.network.open_channel(b.address, window)


def _settle_without_proofs(d, a, b):
    d.close(a, b, None)
    boa.env.time_travel(seconds=SETTLE_WINDOW + 1)
    d.settle(a, None, b, None)


# --- open_channel: positive --------------------------------------------------------------------


def test_open_channel__new_pair__logs_channel_opened(d, accounts):
    a, b = accounts[0], accounts[1]
    cid = _open(d, a, b)
    (event,) = _events(d.network, "ChannelOpened")

    p1, p2 = _ordered(a, b)
    assert event.channel_id == cid
    assert (event.participant1, event.participant2) == (p1.address, p2.address)
    assert event.generation == 1
    assert event.settle_window == SETTLE_WINDOW


def test_open_channel__new_pair__get_channel_shows_an_open_first_generation(d, accounts):
    a, b = accounts[0], accounts[1]
    cid = _open(d, a, b)

    p1, p2 = _ordered(a, b)
    for x, y in ((a, b), (b, a)):
        channel = d.network.get_channel(x.address, y.address)
        assert channel.channel_id == cid
        assert (channel.participant1, channel.participant2) == (p1.address, p2.address)
        assert channel.state == 1
        assert channel.generation == 1
        assert channel.settle_window_or_deadline == SETTLE_WINDOW
        assert channel.closer == ZERO_ADDRESS


def test_open_channel__new_pair__participants_start_from_nothing(d, accounts):
    a, b = accounts[0], accounts[1]
    _open(d, a, b)
    for x, y in ((a, b), (b, a)):
        info = d.network.get_participant(x.address, y.address)
        assert (info.deposit, info.withdrawn, info.nonce, info.reward) == (0, 0, 0, 0)
        assert info.balance_hash == bytes(32)
        assert info.delegate == ZERO_ADDRESS


def test_open_channel__either_opener__channel_id_matches_oracle_and_view(d, accounts):
    a, b = accounts[0], accounts[1]
    expected = channel_id(a.raw, b.raw)
    assert d.network.channel_id(a.address, b.address) == expected
    assert d.network.channel_id(b.address, a.address) == expected

    with boa.env.anchor():
        assert _open(d, a, b) == expected
    assert _open(d, b, a) == expected


def test_open_channel__opener_is_the_higher_address__participants_still_ordered(d, accounts):
    a, b = accounts[0], accounts[1]
    low, high = _ordered(a, b)
    _open(d, high, low)
    channel = d.network.get_channel(high.address, low.address)
    assert (channel.participant1, channel.participant2) == (low.address, high.address)


def test_open_channel__window_at_the_bounds__is_accepted(d, accounts):
    a = accounts[0]
    _open(d, a, accounts[1], SETTLE_MIN)
    _open(d, a, accounts[2], SETTLE_MAX)
    assert d.network.get_channel(a.address, accounts[1].address).settle_window_or_deadline == (
        SETTLE_MIN
    )
    assert d.network.get_channel(a.address, accounts[2].address).settle_window_or_deadline == (
        SETTLE_MAX
    )


def test_open_channel__pair_sharing_one_participant__is_a_separate_channel(d, accounts):
    a, b, c = accounts[0], accounts[1], accounts[2]
    first = _open(d, a, b)
    second = _open(d, a, c)
    assert first != second
    assert d.network.get_channel(a.address, c.address).state == 1


# --- open_channel: reverts ---------------------------------------------------------------------


def test_open_channel__zero_partner__reverts(d, accounts):
    with boa.env.prank(accounts[0].address), boa.reverts("token_network: zero partner"):
        d.network.open_channel(ZERO_ADDRESS, SETTLE_WINDOW)


def test_open_channel__with_oneself__reverts(d, accounts):
    a = accounts[0]
    with boa.env.prank(a.address), boa.reverts("token_network: channel with oneself"):
        d.network.open_channel(a.address, SETTLE_WINDOW)


def test_open_channel__window_too_short__reverts(d, accounts):
    with boa.reverts("token_network: settle window too short"):
        _open(d, accounts[0], accounts[1], SETTLE_MIN - 1)


def test_open_channel__window_too_long__reverts(d, accounts):
    with boa.reverts("token_network: settle window too long"):
        _open(d, accounts[0], accounts[1], SETTLE_MAX + 1)


def test_open_channel__channel_exists_same_order__reverts(d, accounts):
    a, b = accounts[0], accounts[1]
    _open(d, a, b)
    with boa.reverts("token_network: channel exists"):
        _open(d, a, b)


def test_open_channel__channel_exists_reverse_order__reverts(d, accounts):
    a, b = accounts[0], accounts[1]
    _open(d, a, b)
    with boa.reverts("token_network: channel exists"):
        _open(d, b, a, SETTLE_MIN)


def test_open_channel__channel_closed_not_settled__reverts(d, accounts):
    a, b = accounts[0], accounts[1]
    _open(d, a, b)
    d.close(a, b, None)
    with boa.reverts("token_network: channel exists"):
        _open(d, b, a)


# --- reopening ---------------------------------------------------------------------------------


def test_open_channel__after_settle__gets_generation_2_and_zeroed_amounts(d, funded):
    a, b = funded[0], funded[1]
    d.open(a, b, deposit_a=100, deposit_b=50)
    d.withdraw(a, b, 30)
    _settle_without_proofs(d, a, b)

    cid = _open(d, b, a, SETTLE_MIN)
    (event,) = _events(d.network, "ChannelOpened")

    assert event.channel_id == cid == channel_id(a.raw, b.raw)
    assert event.generation == 2
    channel = d.network.get_channel(a.address, b.address)
    assert (channel.state, channel.generation) == (1, 2)
    assert channel.settle_window_or_deadline == SETTLE_MIN
    assert channel.closer == ZERO_ADDRESS
    for x, y in ((a, b), (b, a)):
        info = d.network.get_participant(x.address, y.address)
        assert (info.deposit, info.withdrawn, info.nonce) == (0, 0, 0)
        assert info.balance_hash == bytes(32)


def test_open_channel__third_opening__gets_generation_3(d, accounts):
    a, b = accounts[0], accounts[1]
    for _ in range(2):
        _open(d, a, b)
        _settle_without_proofs(d, a, b)
    _open(d, a, b)
    assert d.network.get_channel(a.address, b.address).generation == 3


# --- open_channel_with_deposit ------------------------------------------------------------------


def test_open_channel_with_deposit__funded_opener__opens_and_pulls_the_deposit(d, funded):
    a, b = funded[0], funded[1]
    before = d.token.balanceOf(a.address)
    with boa.env.prank(a.address):
        cid = d.network.open_channel_with_deposit(b.address, SETTLE_WINDOW, 250)
    opened = _events(d.network, "ChannelOpened")
    deposits = _events(d.network, "ChannelNewDeposit")

    assert cid == channel_id(a.raw, b.raw)
    assert [(e.channel_id, e.generation) for e in opened] == [(cid, 1)]
    assert [(e.channel_id, e.participant, e.total_deposit) for e in deposits] == [
        (cid, a.address, 250)
    ]
    assert d.network.get_channel(a.address, b.address).state == 1
    assert d.network.get_participant(a.address, b.address).deposit == 250
    assert d.network.get_participant(b.address, a.address).deposit == 0
    assert d.token.balanceOf(a.address) == before - 250
    assert d.token.balanceOf(d.network.address) == 250


def test_open_channel_with_deposit__zero_deposit__reverts_and_opens_nothing(d, funded):
    a, b = funded[0], funded[1]
    with boa.env.prank(a.address), boa.reverts("token_network: total deposit must rise"):
        d.network.open_channel_with_deposit(b.address, SETTLE_WINDOW, 0)
    assert d.network.get_channel(a.address, b.address).state == 0


def test_open_channel_with_deposit__deposit_above_limit__reverts_and_opens_nothing(d, funded):
    a, b = funded[0], funded[1]
    limit = d.network.participant_deposit_limit()
    with boa.env.prank(a.address), boa.reverts("token_network: participant deposit limit"):
        d.network.open_channel_with_deposit(b.address, SETTLE_WINDOW, limit + 1)
    assert d.network.get_channel(a.address, b.address).state == 0


def test_open_channel_with_deposit__no_allowance__reverts_and_opens_nothing(d, accounts):
    a, b = accounts[5], accounts[6]
    d.token.mint(a.address, 100)
    with boa.env.prank(a.address), boa.reverts("test_token: insufficient allowance"):
        d.network.open_channel_with_deposit(b.address, SETTLE_WINDOW, 100)
    assert d.network.get_channel(a.address, b.address).state == 0


def test_open_channel_with_deposit__channel_exists__reverts(d, funded):
    a, b = funded[0], funded[1]
    _open(d, b, a)
    with boa.env.prank(a.address), boa.reverts("token_network: channel exists"):
        d.network.open_channel_with_deposit(b.address, SETTLE_WINDOW, 10)


def test_open_channel_with_deposit__window_too_short__reverts(d, funded):
    a, b = funded[0], funded[1]
    with boa.env.prank(a.address), boa.reverts("token_network: settle window too short"):
        d.network.open_channel_with_deposit(b.address, SETTLE_MIN - 1, 10)
