"""The pure helpers of the sender: fee bumps for replacements and revert reasons."""

from __future__ import annotations

import pytest
from eth_abi.abi import encode as abi_encode
from hypothesis import given
from hypothesis import strategies as st
from web3.exceptions import ContractLogicError

from offchain.chain.transactions import bump, revert_reason


@given(st.integers(0, 10**30))
def test_bump__at_least_twelve_and_a_half_percent_more(fee: int) -> None:
    assert bump(fee) * 8 >= fee * 9
    assert bump(fee) > fee


def test_revert_reason__error_string_decoded() -> None:
    data = "0x08c379a0" + abi_encode(["string"], ["token_network: channel not open"]).hex()
    exc = ContractLogicError("execution reverted: token_network: channel not open", data=data)
    assert revert_reason(exc) == "token_network: channel not open"


def test_revert_reason__panic_code() -> None:
    data = "0x4e487b71" + (0x11).to_bytes(32, "big").hex()
    assert revert_reason(ContractLogicError("execution reverted", data=data)) == "panic 0x11"


@pytest.mark.parametrize(
    ("message", "data", "expected"),
    [
        ("execution reverted: out of luck", None, "out of luck"),
        ("execution reverted", "0x", "reverted without a reason"),
        ("execution reverted: garbled", "0x08c379a0ffff", "garbled"),
    ],
)
def test_revert_reason__without_a_decodable_reason__the_nodes_message(
    message: str, data: str | None, expected: str
) -> None:
    assert revert_reason(ContractLogicError(message, data=data)) == expected
