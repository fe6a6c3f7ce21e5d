"""Which tokens the token network supports, and that its books match its token balance.

Belongs here: a USDT-like token without return values through the whole channel life
(open with deposit, deposit, withdraw, close, update, settle, unlock, cooperative settle),
and the refusal of tokens that deliver less than asked (fee-on-transfer, lying) at
`set_total_deposit` and `open_channel_with_deposit`, with the network's balance and books
unchanged after every refusal. Does not belong here: the test tokens' own behaviour
(test_tokens.py) or the rest of the attack table (test_attacks.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import boa
import pytest

from offchain.protocol.crypto import sha256
from offchain.protocol.locks import Lock
from offchain.protocol.settlement import ParticipantTotals, settlement_payout
from tests.lib import harness
from tests.lib.harness import Account, Deployment, now

FUNDS = 10**24


def _deployment_fixture(token_file: str):
    @pytest.fixture(scope="module")
    def deployed() -> Deployment:
        return harness.deploy(token_file)

    return deployed


no_return_deployed = _deployment_fixture("test/no_return_token.vy")
fee_deployed = _deployment_fixture("test/fee_token.vy")
lying_deployed = _deployment_fixture("test/lying_token.vy")


def _anchored(deployed: Deployment, accounts: list[Account]) -> Iterator[Deployment]:
    with boa.env.anchor():
        for x in accounts[:3]:
            deployed.fund(x, FUNDS)
        yield deployed


@pytest.fixture
def nr(no_return_deployed: Deployment, accounts: list[Account]) -> Iterator[Deployment]:
    """The no-return token's network, accounts 0..2 funded, rolled back afterwards."""
    yield from _anchored(no_return_deployed, accounts)


@pytest.fixture(params=["fee_token", "lying_token"])
def cheat(request, accounts: list[Account]) -> Iterator[Deployment]:
    """A network whose token delivers less than asked, accounts 0..2 funded."""
    deployed = request.getfixturevalue(
        "fee_deployed" if request.param == "fee_token" else "lying_deployed"
    )
    yield from _anchored(deployed, accounts)


def _balances(dep: Deployment, *holders: Account) -> list[int]:
    return [dep.token.balanceOf(x.address) for x in holders]


def _books(dep: Deployment, a: Account, b: Account) -> tuple:
    """The network's token balance, the payer's, the channel and both participants."""
    return (
        dep.token.balanceOf(dep.network.address),
        dep.token.balanceOf(a.address),
        tuple(dep.network.get_channel(a.address, b.address)),
        tuple(dep.network.get_participant(a.address, b.address)),
        tuple(dep.network.get_participant(b.address, a.address)),
    )


# --- a token without return values ----------------------------------------------------------


def test_lifecycle__no_return_token__deposits_withdraws_settles_and_unlocks(nr, accounts):
    a, b = accounts[0], accounts[1]
    with boa.env.prank(a.address):
        nr.network.open_channel_with_deposit(b.address, harness.SETTLE_WINDOW, 100)
    nr.deposit(b, a, 50)
    nr.deposit(a, b, 120)
    assert nr.token.balanceOf(nr.network.address) == 170
    assert _balances(nr, a, b) == [FUNDS - 120, FUNDS - 50]

    nr.withdraw(a, b, 30)
    assert nr.token.balanceOf(nr.network.address) == 140
    assert nr.network.get_participant(a.address, b.address).withdrawn == 30

    secret = b"\x51" * 32
    lock = Lock(expiration=now() + 1000, amount=20, secrethash=sha256(secret))
    proof_b = nr.proof(b, a, nonce=3, transferred=15, locks=[lock])
    proof_a = nr.proof(a, b, nonce=4, transferred=60)
    nr.close(a, b, proof_b)
    nr.update(b, a, proof_a)
    nr.register_secret(secret)
    boa.env.time_travel(seconds=harness.SETTLE_WINDOW + 1)

    expected = settlement_payout(
        ParticipantTotals(120, 30, proof_a.transferred, proof_a.locked),
        ParticipantTotals(50, 0, proof_b.transferred, proof_b.locked),
    )
    before = _balances(nr, a, b)
    nr.settle(a, proof_a, b, proof_b)
    after = _balances(nr, a, b)
    assert (after[0] - before[0], after[1] - before[1]) == (expected.payout1, expected.payout2)
    assert expected.locked_retained2 == 20
    assert nr.token.balanceOf(nr.network.address) == 20

    nr.unlock(a, b, 1, [lock])
    assert nr.token.balanceOf(nr.network.address) == 0
    # Every token that came in went out: A and B together are back where they started.
    assert sum(_balances(nr, a, b)) == 2 * FUNDS
    assert _balances(nr, a, b) == [
        FUNDS - 120 + 30 + expected.payout1 + 20,
        FUNDS - 50 + expected.payout2,
    ]


def test_cooperative_settle__no_return_token__pays_both(nr, accounts):
    a, b = accounts[0], accounts[1]
    nr.open(a, b, deposit_a=100, deposit_b=50)
    expiration = now() + 600
    sig_a = nr.sign_coop(a, a, b, 70, 80, expiration)
    sig_b = nr.sign_coop(b, a, b, 70, 80, expiration)
    nr.network.cooperative_settle(a.address, b.address, 70, 80, expiration, sig_a, sig_b)
    assert _balances(nr, a, b) == [FUNDS - 30, FUNDS + 30]
    assert nr.token.balanceOf(nr.network.address) == 0
    assert nr.network.get_channel(a.address, b.address).state == 0


# --- tokens that deliver less than asked ---------------------------------------------------


def test_set_total_deposit__token_delivers_less__reverts_and_books_unchanged(cheat, accounts):
    a, b = accounts[0], accounts[1]
    cheat.open(a, b)
    before = _books(cheat, a, b)
    for total in (100, 1000, FUNDS):
        with boa.reverts("token_network: token delivered a different amount"):
            cheat.deposit(a, b, total)
        assert _books(cheat, a, b) == before
    # On behalf of the partner, too: the payer's tokens are what is measured.
    with boa.env.prank(a.address), boa.reverts("token_network: token delivered a different amount"):
        cheat.network.set_total_deposit(b.address, a.address, 500)
    assert _books(cheat, a, b) == before


def test_open_channel_with_deposit__token_delivers_less__reverts_and_nothing_opens(cheat, accounts):
    a, b = accounts[0], accounts[1]
    before = _books(cheat, a, b)
    for total in (100, 1000):
        with (
            boa.env.prank(a.address),
            boa.reverts("token_network: token delivered a different amount"),
        ):
            cheat.network.open_channel_with_deposit(b.address, harness.SETTLE_WINDOW, total)
        assert _books(cheat, a, b) == before
    assert cheat.network.get_channel(a.address, b.address).state == 0
    assert cheat.network.get_channel(a.address, b.address).generation == 0


@pytest.mark.parametrize("opening", [False, True], ids=["set_total_deposit", "open_with_deposit"])
def test_deposit__fee_token_below_fee_threshold__accepted(fee_deployed, accounts, opening):
    # Positive twin: the check is about what arrives. Under 100 units the 1% fee rounds to
    # zero, the whole amount arrives, and the fee token is then accepted.
    with boa.env.anchor():
        dep = fee_deployed
        a, b = accounts[0], accounts[1]
        dep.fund(a, FUNDS)
        if opening:
            with boa.env.prank(a.address):
                dep.network.open_channel_with_deposit(b.address, harness.SETTLE_WINDOW, 99)
        else:
            dep.open(a, b)
            dep.deposit(a, b, 99)
        assert dep.network.get_participant(a.address, b.address).deposit == 99
        assert dep.token.balanceOf(dep.network.address) == 99
        assert dep.token.balanceOf(a.address) == FUNDS - 99


@pytest.mark.parametrize("opening", [False, True], ids=["set_total_deposit", "open_with_deposit"])
def test_deposit__standard_token__books_match_balance(d, funded, opening):
    # Positive twin of the refusals above with a token that delivers what it is asked.
    a, b = funded[0], funded[1]
    before = d.token.balanceOf(a.address)
    if opening:
        with boa.env.prank(a.address):
            d.network.open_channel_with_deposit(b.address, harness.SETTLE_WINDOW, 1000)
    else:
        d.open(a, b)
        d.deposit(a, b, 1000)
    assert d.network.get_participant(a.address, b.address).deposit == 1000
    assert d.token.balanceOf(d.network.address) == 1000
    assert d.token.balanceOf(a.address) == before - 1000
