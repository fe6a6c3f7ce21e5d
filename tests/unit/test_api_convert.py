"""The API's edge encoding: checksummed addresses, decimal amounts, hex byte strings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from offchain.api import convert

# The test vectors of EIP-55 itself.
EIP55 = [
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    "0x52908400098527886E0F7030069857D2E4169EE7",
    "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
    "0xde709f2102306220921060314715629080e2fb77",
    "0x27b1fdb04752bbc536007a920d24acb045561c26",
]


@pytest.mark.parametrize("address", EIP55)
def test_checksum_address__matches_eip55_vectors(address: str) -> None:
    raw = bytes.fromhex(address[2:])
    assert convert.checksum_address(raw) == address
    assert convert.parse_address(address) == raw
    assert convert.parse_address(address.lower()) == raw
    assert convert.parse_address("0x" + address[2:].upper()) == raw


@given(st.binary(min_size=20, max_size=20).filter(any))
def test_parse_address__round_trips_the_checksum(raw: bytes) -> None:
    assert convert.parse_address(convert.checksum_address(raw)) == raw


@pytest.mark.parametrize(
    "text",
    [
        "0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed",  # mixed case, one letter wrong
        "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",  # no 0x
        "0X5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe",  # 39 digits
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed00",
        "0x" + "00" * 20,  # the zero address
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeg",
        " 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "",
    ],
)
def test_parse_address__refuses(text: str) -> None:
    with pytest.raises(ValueError):
        convert.parse_address(text)


@pytest.mark.parametrize("value", [0, 1, 10**18, 2**256 - 1])
def test_parse_amount__takes_uint256(value: int) -> None:
    assert convert.parse_amount(str(value)) == value


@pytest.mark.parametrize(
    "text", ["", "-1", "+1", "01", " 1", "1 ", "1_000", "1e3", "1.0", "0x10", str(2**256), "٣"]
)
def test_parse_amount__refuses(text: str) -> None:
    with pytest.raises(ValueError):
        convert.parse_amount(text)


def test_parse_uint64__bounds() -> None:
    assert convert.parse_uint64(str(2**64 - 1)) == 2**64 - 1
    with pytest.raises(ValueError):
        convert.parse_uint64(str(2**64))


def test_parse_bytes32() -> None:
    assert convert.parse_bytes32("0x" + "Ab" * 32) == bytes([0xAB]) * 32
    for bad in ["0x" + "ab" * 31, "ab" * 32, "0x" + "ab" * 33, "0x" + "zz" * 32]:
        with pytest.raises(ValueError):
            convert.parse_bytes32(bad)
