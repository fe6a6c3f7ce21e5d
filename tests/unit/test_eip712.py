"""Unit tests of offchain.protocol.eip712: type strings, domain, digests, signatures.

The reference is eth_account's own EIP-712 implementation (``encode_typed_data`` and
``Account.sign_message`` / ``recover_message``), fed with type definitions parsed from
docs/spec.md rather than from our constants, so a typo on either side shows up.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.address import to_checksum_address
from hypothesis import given
from hypothesis import strategies as st

from offchain.protocol import eip712
from offchain.protocol.crypto import SECP256K1_N, address_from_private_key
from offchain.protocol.eip712 import (
    BalanceProof,
    Close,
    CooperativeSettle,
    Delegation,
    Domain,
    SignedStruct,
    Withdraw,
)
from offchain.protocol.errors import ValidationError
from offchain.protocol.types import (
    AdditionalHash,
    Address,
    BalanceHash,
    ChannelId,
    Generation,
    Nonce,
)

SPEC = Path(__file__).resolve().parents[2] / "docs" / "spec.md"
STRUCTS: dict[str, type[SignedStruct]] = {
    "BalanceProof": BalanceProof,
    "Close": Close,
    "Delegation": Delegation,
    "Withdraw": Withdraw,
    "CooperativeSettle": CooperativeSettle,
}


def _spec_type_strings() -> dict[str, str]:
    found = re.findall(r"`((\w+)\((?:\w+ \w+,?)*\))`", SPEC.read_text())
    return {name: type_string for type_string, name in found}


SPEC_TYPES = _spec_type_strings()


def _fields(type_string: str) -> list[tuple[str, str]]:
    inner = type_string[type_string.index("(") + 1 : -1]
    return [(name, typ) for typ, name in (part.split(" ") for part in inner.split(","))]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _eth_account_message(domain: Domain, struct: SignedStruct) -> Any:
    primary = type(struct).__name__
    fields = _fields(SPEC_TYPES[primary])
    message: dict[str, object] = {}
    for name, typ in fields:
        value = getattr(struct, _snake(name))
        message[name] = to_checksum_address(value) if typ == "address" else value
    full = {
        "types": {
            "EIP712Domain": [
                {"name": n, "type": t} for n, t in _fields(SPEC_TYPES["EIP712Domain"])
            ],
            primary: [{"name": n, "type": t} for n, t in fields],
        },
        "primaryType": primary,
        "domain": {
            "name": "SmartMesh TokenNetwork",
            "version": "1",
            "chainId": domain.chain_id,
            "verifyingContract": to_checksum_address(domain.verifying_contract),
        },
        "message": message,
    }
    return encode_typed_data(full_message=full)


# -- strategies -------------------------------------------------------------------------

bytes32 = st.binary(min_size=32, max_size=32)
addresses = st.binary(min_size=20, max_size=20).map(Address)
uint32 = st.integers(0, 2**32 - 1)
uint64 = st.integers(0, 2**64 - 1)
uint256 = st.integers(0, 2**256 - 1)
private_keys = st.integers(1, SECP256K1_N - 1).map(lambda k: k.to_bytes(32, "big"))
domains = st.builds(Domain, chain_id=uint256, verifying_contract=addresses)

structs: st.SearchStrategy[SignedStruct] = st.one_of(
    st.builds(BalanceProof, bytes32, uint32, uint64, bytes32, bytes32),
    st.builds(Close, bytes32, uint32, uint64, bytes32, bytes32),
    st.builds(Delegation, bytes32, uint32, uint64, bytes32, addresses, uint256),
    st.builds(Withdraw, bytes32, uint32, addresses, uint256, uint64),
    st.builds(CooperativeSettle, bytes32, uint32, uint256, uint256, uint64),
)

DOMAIN = Domain(chain_id=1, verifying_contract=Address(bytes.fromhex("11" * 20)))
PRIV = (0xB0B).to_bytes(32, "big")
PROOF = BalanceProof(
    channel_id=ChannelId(b"\x01" * 32),
    generation=Generation(1),
    nonce=Nonce(7),
    balance_hash=BalanceHash(b"\x02" * 32),
    additional_hash=AdditionalHash(b"\x03" * 32),
)


# -- type strings -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["EIP712Domain", *STRUCTS])
def test_type_strings_match_spec_byte_for_byte(name: str) -> None:
    ours = eip712.EIP712_DOMAIN_TYPE if name == "EIP712Domain" else STRUCTS[name].TYPE
    assert ours.decode() == SPEC_TYPES[name]


@pytest.mark.parametrize("name", list(STRUCTS))
def test_struct_fields_follow_type_string(name: str) -> None:
    cls = STRUCTS[name]
    assert [_snake(n) for n, _ in _fields(SPEC_TYPES[name])] == [
        f.name for f in dataclasses.fields(cls)
    ]


# -- differential against eth_account -----------------------------------------------------


@given(domains)
def test_domain_separator_matches_eth_account(domain: Domain) -> None:
    assert domain.separator == _eth_account_message(domain, PROOF).header


@given(domains, structs, private_keys)
def test_digest_and_signature_match_eth_account(
    domain: Domain, struct: SignedStruct, priv: bytes
) -> None:
    signable = _eth_account_message(domain, struct)
    assert struct.struct_hash() == signable.body

    theirs = Account.sign_message(signable, priv)
    assert eip712.digest(domain, struct) == theirs.message_hash

    ours = eip712.sign(priv, domain, struct)
    signer = address_from_private_key(priv)
    assert Account.recover_message(signable, signature=ours) == to_checksum_address(signer)
    assert eip712.recover_signer(domain, struct, ours) == signer
    assert eip712.recover_signer(domain, struct, theirs.signature) == signer


# -- replay across domains and types ------------------------------------------------------


@pytest.mark.parametrize(
    "other",
    [
        Domain(chain_id=2, verifying_contract=DOMAIN.verifying_contract),
        Domain(chain_id=1, verifying_contract=Address(bytes.fromhex("12" * 20))),
    ],
)
def test_signature_from_other_domain_recovers_other_address(other: Domain) -> None:
    sig = eip712.sign(PRIV, other, PROOF)
    assert eip712.recover_signer(DOMAIN, PROOF, sig) != address_from_private_key(PRIV)
    assert eip712.recover_signer(other, PROOF, sig) == address_from_private_key(PRIV)


def test_balance_proof_and_close_with_same_fields_differ() -> None:
    close = Close(
        PROOF.channel_id, PROOF.generation, PROOF.nonce, PROOF.balance_hash, PROOF.additional_hash
    )
    assert eip712.digest(DOMAIN, close) != eip712.digest(DOMAIN, PROOF)
    sig = eip712.sign(PRIV, DOMAIN, PROOF)
    assert eip712.recover_signer(DOMAIN, close, sig) != address_from_private_key(PRIV)


def test_other_generation_recovers_other_address() -> None:
    sig = eip712.sign(PRIV, DOMAIN, PROOF)
    reopened = BalanceProof(
        PROOF.channel_id, Generation(2), PROOF.nonce, PROOF.balance_hash, PROOF.additional_hash
    )
    assert eip712.recover_signer(DOMAIN, reopened, sig) != address_from_private_key(PRIV)


# -- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"generation": 2**32},
        {"generation": -1},
        {"nonce": 2**64},
        {"nonce": True},
        {"channel_id": b"\x01" * 31},
        {"balance_hash": "00" * 32},
        {"additional_hash": bytearray(32)},
    ],
)
def test_balance_proof_rejects_bad_fields(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {
        "channel_id": PROOF.channel_id,
        "generation": PROOF.generation,
        "nonce": PROOF.nonce,
        "balance_hash": PROOF.balance_hash,
        "additional_hash": PROOF.additional_hash,
    }
    fields.update(kwargs)
    with pytest.raises(ValidationError):
        BalanceProof(**fields)  # type: ignore[arg-type]


def test_other_structs_reject_out_of_range() -> None:
    with pytest.raises(ValidationError):
        Delegation(b"\x00" * 32, 1, 1, b"\x00" * 32, b"\x00" * 19, 0)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Withdraw(b"\x00" * 32, 1, b"\x00" * 20, 2**256, 0)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        CooperativeSettle(b"\x00" * 32, 1, 0, 0, 2**64)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Domain(chain_id=-1, verifying_contract=Address(bytes(20)))


def test_structs_are_frozen_and_hashable() -> None:
    with pytest.raises(AttributeError):
        PROOF.nonce = Nonce(8)  # type: ignore[misc]
    assert hash(PROOF) == hash(BalanceProof(**{f: getattr(PROOF, f) for f in PROOF.__slots__}))
    assert Domain(1, DOMAIN.verifying_contract) == DOMAIN
