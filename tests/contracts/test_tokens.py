"""Tests of the development-only tokens in `contracts/test/`.

What belongs here: proof that each test token behaves exactly as its NatSpec
says (standard, fee-on-transfer, lying, no-return, reentrant), so that the
token network's tests can rely on them. What must not: the token network's
own handling of these tokens, which its tests cover.
"""

from __future__ import annotations

from pathlib import Path

import boa
import pytest
from eth.exceptions import Revert

TEST_CONTRACTS = Path(__file__).resolve().parents[2] / "contracts" / "test"
MAX_UINT256 = 2**256 - 1
ZERO_ADDRESS = "0x" + "00" * 20
TRUE_WORD = (1).to_bytes(32, "big")


def _deploy(name: str, decimals: int = 18):
    return boa.load(str(TEST_CONTRACTS / f"{name}.vy"), "Test " + name, "TST", decimals)


def _events(contract, name: str) -> list:
    # Logs of the contract's LAST call: read them before any other call, a
    # view included, replaces `contract._computation`.
    return [e for e in contract.get_logs() if type(e).__name__ == name]


@pytest.fixture
def alice():
    return boa.env.generate_address("alice")


@pytest.fixture
def bob():
    return boa.env.generate_address("bob")


@pytest.fixture
def carol():
    return boa.env.generate_address("carol")


# --- the tokens with standard balances --------------------------------------
# (name, value `transfer`/`transferFrom`/`approve` return to a Python caller)
STANDARD = [
    ("test_token", True),
    ("reentrant_token", True),  # disarmed, it is a plain ERC-20
    ("no_return_token", None),
]


@pytest.fixture(params=STANDARD, ids=[name for name, _ in STANDARD])
def standard(request, alice):
    name, returns = request.param
    token = _deploy(name)
    token.mint(alice, 1000)
    return name, returns, token


def test_constructor__metadata__is_stored():
    for name, _ in [*STANDARD, ("fee_token", True), ("lying_token", True)]:
        token = _deploy(name, decimals=6)
        assert token.name() == "Test " + name
        assert token.symbol() == "TST"
        assert token.decimals() == 6
        assert token.totalSupply() == 0


def test_mint__by_anyone__credits_and_logs(standard, bob, carol):
    _, _, token = standard
    with boa.env.prank(carol):
        token.mint(bob, 5)
    logs = _events(token, "Transfer")
    assert [(e.sender, e.receiver, e.value) for e in logs] == [(ZERO_ADDRESS, bob, 5)]
    assert token.balanceOf(bob) == 5
    assert token.totalSupply() == 1005


def test_mint__to_zero_address__reverts(standard):
    name, _, token = standard
    with boa.reverts(f"{name}: mint to the zero address"):
        token.mint(ZERO_ADDRESS, 5)


def test_transfer__enough_balance__moves_tokens_and_logs(standard, alice, bob):
    _, returns, token = standard
    with boa.env.prank(alice):
        assert token.transfer(bob, 400) is returns
    logs = _events(token, "Transfer")
    assert [(e.sender, e.receiver, e.value) for e in logs] == [(alice, bob, 400)]
    assert token.balanceOf(alice) == 600
    assert token.balanceOf(bob) == 400
    assert token.totalSupply() == 1000


def test_transfer__whole_balance__succeeds(standard, alice, bob):
    _, _, token = standard
    with boa.env.prank(alice):
        token.transfer(bob, 1000)
    assert token.balanceOf(alice) == 0


def test_transfer__insufficient_balance__reverts(standard, alice, bob):
    name, _, token = standard
    with boa.env.prank(alice), boa.reverts(f"{name}: insufficient balance"):
        token.transfer(bob, 1001)
    assert token.balanceOf(alice) == 1000


def test_transfer__to_zero_address__reverts(standard, alice):
    name, _, token = standard
    with boa.env.prank(alice), boa.reverts(f"{name}: transfer to the zero address"):
        token.transfer(ZERO_ADDRESS, 1)


def test_approve__any_amount__sets_allowance_and_logs(standard, alice, bob):
    _, returns, token = standard
    with boa.env.prank(alice):
        assert token.approve(bob, 300) is returns
    logs = _events(token, "Approval")
    assert [(e.owner, e.spender, e.value) for e in logs] == [(alice, bob, 300)]
    assert token.allowance(alice, bob) == 300
    with boa.env.prank(alice):
        token.approve(bob, 7)  # overwrites, does not add
    assert token.allowance(alice, bob) == 7


def test_transfer_from__within_allowance__moves_tokens_and_spends_allowance(
    standard, alice, bob, carol
):
    _, returns, token = standard
    with boa.env.prank(alice):
        token.approve(bob, 300)
    with boa.env.prank(bob):
        assert token.transferFrom(alice, carol, 200) is returns
    logs = _events(token, "Transfer")
    assert [(e.sender, e.receiver, e.value) for e in logs] == [(alice, carol, 200)]
    assert token.balanceOf(alice) == 800
    assert token.balanceOf(carol) == 200
    assert token.allowance(alice, bob) == 100


def test_transfer_from__insufficient_allowance__reverts(standard, alice, bob, carol):
    name, _, token = standard
    with boa.env.prank(alice):
        token.approve(bob, 199)
    with boa.env.prank(bob), boa.reverts(f"{name}: insufficient allowance"):
        token.transferFrom(alice, carol, 200)
    assert token.allowance(alice, bob) == 199


def test_transfer_from__max_allowance__is_not_decremented(standard, alice, bob, carol):
    _, _, token = standard
    with boa.env.prank(alice):
        token.approve(bob, MAX_UINT256)
    with boa.env.prank(bob):
        token.transferFrom(alice, carol, 200)
    assert token.allowance(alice, bob) == MAX_UINT256
    assert token.balanceOf(carol) == 200


def test_transfer_from__enough_allowance_insufficient_balance__reverts(standard, alice, bob, carol):
    name, _, token = standard
    with boa.env.prank(alice):
        token.approve(bob, MAX_UINT256)
    with boa.env.prank(bob), boa.reverts(f"{name}: insufficient balance"):
        token.transferFrom(alice, carol, 1001)


# --- return data, seen from the EVM -----------------------------------------

CALLER = """
# pragma version ~=0.4.3
from ethereum.ercs import IERC20

@external
def returned_length(token: address, to: address, amount: uint256) -> uint256:
    response: Bytes[32] = raw_call(
        token,
        abi_encode(to, amount, method_id=method_id("transfer(address,uint256)")),
        max_outsize=32,
    )
    return len(response)

@external
def checked_transfer(token: IERC20, to: address, amount: uint256) -> bool:
    return extcall token.transfer(to, amount)

@external
def defaulted_transfer(token: IERC20, to: address, amount: uint256) -> bool:
    return extcall token.transfer(to, amount, default_return_value=True)
"""


@pytest.fixture
def caller():
    return boa.loads(CALLER)


def test_transfer__standard_token__returns_one_true_word(alice, bob):
    token = _deploy("test_token")
    token.mint(alice, 10)
    out = boa.env.raw_call(
        token.address, sender=alice, data=token.transfer.prepare_calldata(bob, 1)
    ).output
    assert out == TRUE_WORD


def test_transfer__no_return_token__returns_no_data(alice, bob):
    token = _deploy("no_return_token")
    token.mint(alice, 10)
    for calldata in (
        token.transfer.prepare_calldata(bob, 1),
        token.approve.prepare_calldata(bob, 5),
    ):
        assert boa.env.raw_call(token.address, sender=alice, data=calldata).output == b""
    with boa.env.prank(alice):
        token.approve(bob, 5)
    out = boa.env.raw_call(
        token.address, sender=bob, data=token.transferFrom.prepare_calldata(alice, bob, 1)
    ).output
    assert out == b""
    assert token.balanceOf(bob) == 2


def test_returned_length__standard_token__is_32(caller):
    token = _deploy("test_token")
    token.mint(caller.address, 10)
    assert caller.returned_length(token.address, boa.env.generate_address(), 1) == 32


def test_returned_length__no_return_token__is_0(caller):
    token = _deploy("no_return_token")
    token.mint(caller.address, 10)
    assert caller.returned_length(token.address, boa.env.generate_address(), 1) == 0


def test_checked_transfer__standard_token__succeeds(caller):
    token = _deploy("test_token")
    token.mint(caller.address, 10)
    assert caller.checked_transfer(token.address, boa.env.generate_address(), 1) is True


def test_checked_transfer__no_return_token__reverts_without_default_return_value(caller):
    # Vyper checks the return data size of a plain extcall, so a token
    # network must use `default_return_value=True` for USDT-like tokens.
    token = _deploy("no_return_token")
    token.mint(caller.address, 10)
    with boa.reverts():
        caller.checked_transfer(token.address, boa.env.generate_address(), 1)
    assert caller.defaulted_transfer(token.address, boa.env.generate_address(), 1) is True
    assert token.balanceOf(caller.address) == 9


def test_defaulted_transfer__no_return_token_insufficient_balance__reverts(caller):
    token = _deploy("no_return_token")
    token.mint(caller.address, 10)
    with boa.reverts("no_return_token: insufficient balance"):
        caller.defaulted_transfer(token.address, boa.env.generate_address(), 11)


# --- fee_token ----------------------------------------------------------------


@pytest.fixture
def fee_token(alice):
    token = _deploy("fee_token")
    token.mint(alice, 10_000)
    return token


def test_fee_token_transfer__amount__delivers_99_percent_and_burns_1(fee_token, alice, bob):
    with boa.env.prank(alice):
        assert fee_token.transfer(bob, 1000) is True
    logs = _events(fee_token, "Transfer")
    assert [(e.sender, e.receiver, e.value) for e in logs] == [
        (alice, bob, 990),
        (alice, ZERO_ADDRESS, 10),
    ]
    assert fee_token.balanceOf(alice) == 9000
    assert fee_token.balanceOf(bob) == 990
    assert fee_token.totalSupply() == 9990


def test_fee_token_transfer__amount_below_100__delivers_all_no_fee(fee_token, alice, bob):
    with boa.env.prank(alice):
        fee_token.transfer(bob, 99)
    assert len(_events(fee_token, "Transfer")) == 1
    assert fee_token.balanceOf(bob) == 99
    assert fee_token.totalSupply() == 10_000


def test_fee_token_transfer__odd_amount__fee_rounds_down(fee_token, alice, bob):
    with boa.env.prank(alice):
        fee_token.transfer(bob, 1999)
    assert fee_token.balanceOf(bob) == 1999 - 19


def test_fee_token_transfer__insufficient_balance__reverts(fee_token, alice, bob):
    with boa.env.prank(alice), boa.reverts("fee_token: insufficient balance"):
        fee_token.transfer(bob, 10_001)


def test_fee_token_transfer_from__within_allowance__delivers_99_percent_spends_full(
    fee_token, alice, bob, carol
):
    with boa.env.prank(alice):
        fee_token.approve(bob, 3000)
    with boa.env.prank(bob):
        assert fee_token.transferFrom(alice, carol, 2000) is True
    assert fee_token.balanceOf(alice) == 8000
    assert fee_token.balanceOf(carol) == 1980
    assert fee_token.allowance(alice, bob) == 1000
    assert fee_token.totalSupply() == 9980


def test_fee_token_transfer_from__insufficient_allowance__reverts(fee_token, alice, bob, carol):
    with boa.env.prank(alice):
        fee_token.approve(bob, 1999)
    with boa.env.prank(bob), boa.reverts("fee_token: insufficient allowance"):
        fee_token.transferFrom(alice, carol, 2000)


# --- lying_token --------------------------------------------------------------


@pytest.fixture
def lying_token(alice):
    token = _deploy("lying_token")
    token.mint(alice, 1000)
    return token


def test_lying_token_mint__any__credits_normally(lying_token, alice):
    # Positive twin of the lies below: minting is real.
    assert lying_token.balanceOf(alice) == 1000
    assert lying_token.totalSupply() == 1000


def test_lying_token_transfer__any__returns_true_moves_nothing(lying_token, alice, bob):
    with boa.env.prank(alice):
        assert lying_token.transfer(bob, 400) is True
    assert lying_token.get_logs() == []
    assert lying_token.balanceOf(alice) == 1000
    assert lying_token.balanceOf(bob) == 0


def test_lying_token_transfer__more_than_balance__still_returns_true(lying_token, alice, bob):
    with boa.env.prank(alice):
        assert lying_token.transfer(bob, 10**30) is True
    assert lying_token.balanceOf(bob) == 0


def test_lying_token_transfer_from__approved__returns_true_moves_nothing(
    lying_token, alice, bob, carol
):
    with boa.env.prank(alice):
        lying_token.approve(bob, 500)
    with boa.env.prank(bob):
        assert lying_token.transferFrom(alice, carol, 400) is True
    assert lying_token.balanceOf(alice) == 1000
    assert lying_token.balanceOf(carol) == 0
    assert lying_token.allowance(alice, bob) == 500


# --- reentrant_token ----------------------------------------------------------

RECORDER = """
# pragma version ~=0.4.3
from ethereum.ercs import IERC20

calls: public(uint256)
last_caller: public(address)

@external
def poke():
    self.calls += 1
    self.last_caller = msg.sender

@external
def transfer_back(token: IERC20, to: address, amount: uint256):
    # A callback that itself transfers: the disarmed token must not recurse.
    self.calls += 1
    extcall token.transfer(to, amount)
"""

VICTIM = """
# pragma version ~=0.4.3
from ethereum.ercs import IERC20

token: public(IERC20)
deposits: public(HashMap[address, uint256])
_locked: bool

@deploy
def __init__(token: IERC20):
    self.token = token

@external
def deposit(amount: uint256):
    assert not self._locked, "victim: reentrant call"
    self._locked = True
    extcall self.token.transferFrom(msg.sender, self, amount)
    self.deposits[msg.sender] += amount
    self._locked = False
"""

GUARDED = """
# pragma version ~=0.4.3
from ethereum.ercs import IERC20

token: public(IERC20)

@deploy
def __init__(token: IERC20):
    self.token = token

@external
@nonreentrant
def deposit(amount: uint256):
    extcall self.token.transferFrom(msg.sender, self, amount)
"""


@pytest.fixture
def reentrant_token(alice):
    token = _deploy("reentrant_token")
    token.mint(alice, 1000)
    return token


@pytest.fixture
def recorder():
    return boa.loads(RECORDER)


def test_reentrant_token_transfer__armed__calls_target_once_then_transfers(
    reentrant_token, recorder, alice, bob
):
    reentrant_token.arm(recorder.address, recorder.poke.prepare_calldata())
    assert reentrant_token.armed() is True
    with boa.env.prank(alice):
        assert reentrant_token.transfer(bob, 10) is True
    assert recorder.calls() == 1
    assert recorder.last_caller() == reentrant_token.address
    assert reentrant_token.armed() is False
    assert reentrant_token.balanceOf(bob) == 10
    with boa.env.prank(alice):
        reentrant_token.transfer(bob, 10)
    assert recorder.calls() == 1  # fired once per arm


def test_reentrant_token_transfer__not_armed__does_not_call_target(
    reentrant_token, recorder, alice, bob
):
    with boa.env.prank(alice):
        reentrant_token.transfer(bob, 10)
    assert recorder.calls() == 0


def test_reentrant_token_transfer_from__armed__calls_target(reentrant_token, recorder, alice, bob):
    with boa.env.prank(alice):
        reentrant_token.approve(bob, 10)
    reentrant_token.arm(recorder.address, recorder.poke.prepare_calldata())
    with boa.env.prank(bob):
        assert reentrant_token.transferFrom(alice, bob, 10) is True
    assert recorder.calls() == 1
    assert reentrant_token.balanceOf(bob) == 10


def test_reentrant_token_transfer__callback_transfers_again__does_not_recurse(
    reentrant_token, recorder, alice, bob
):
    reentrant_token.mint(recorder.address, 50)
    payload = recorder.transfer_back.prepare_calldata(reentrant_token.address, bob, 50)
    reentrant_token.arm(recorder.address, payload)
    with boa.env.prank(alice):
        reentrant_token.transfer(bob, 10)
    assert recorder.calls() == 1
    assert reentrant_token.balanceOf(bob) == 60
    assert reentrant_token.balanceOf(recorder.address) == 0


def test_reentrant_token_transfer__callback_reverts__reverts_with_callee_reason(
    reentrant_token, alice, bob
):
    victim = boa.loads(VICTIM, reentrant_token.address)
    # The callback re-enters the victim while the victim is mid-deposit.
    reentrant_token.arm(victim.address, victim.deposit.prepare_calldata(1))
    with boa.env.prank(alice):
        reentrant_token.approve(victim.address, MAX_UINT256)
        with boa.reverts("victim: reentrant call"):
            victim.deposit(100)
    assert reentrant_token.balanceOf(victim.address) == 0
    assert reentrant_token.armed() is True  # the whole transaction rolled back


def test_victim_deposit__token_not_armed__succeeds(reentrant_token, alice):
    # Positive twin of the re-entrancy revert above.
    victim = boa.loads(VICTIM, reentrant_token.address)
    with boa.env.prank(alice):
        reentrant_token.approve(victim.address, MAX_UINT256)
        victim.deposit(100)
    assert victim.deposits(alice) == 100
    assert reentrant_token.balanceOf(victim.address) == 100


def test_reentrant_token_transfer_from__target_uses_vyper_nonreentrant__reverts(
    reentrant_token, alice
):
    guarded = boa.loads(GUARDED, reentrant_token.address)
    reentrant_token.arm(guarded.address, guarded.deposit.prepare_calldata(1))
    with boa.env.prank(alice):
        reentrant_token.approve(guarded.address, MAX_UINT256)
        with boa.reverts():
            guarded.deposit(100)
    # Vyper's @nonreentrant reverts with EMPTY data (no reason string), and
    # the token and the outer extcall pass it on unchanged.
    with pytest.raises(Revert) as excinfo:
        boa.env.raw_call(guarded.address, sender=alice, data=guarded.deposit.prepare_calldata(100))
    assert excinfo.value.args[0] == b""
    assert reentrant_token.balanceOf(guarded.address) == 0


def test_guarded_deposit__token_not_armed__succeeds(reentrant_token, alice):
    # Positive twin of the @nonreentrant revert above.
    guarded = boa.loads(GUARDED, reentrant_token.address)
    with boa.env.prank(alice):
        reentrant_token.approve(guarded.address, MAX_UINT256)
        guarded.deposit(100)
    assert reentrant_token.balanceOf(guarded.address) == 100


def test_reentrant_token_arm__long_payload__is_stored(reentrant_token, recorder):
    payload = b"\xab" * 2048
    reentrant_token.arm(recorder.address, payload)
    assert reentrant_token.target() == recorder.address
    assert reentrant_token.payload() == payload
