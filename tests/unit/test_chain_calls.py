"""Effects and node operations -> calldata: checked by decoding it with web3's own ABI codec.

web3's ``decode_function_input`` is an encoder independent of ours: each call must decode
to the function and the arguments the contracts expect (docs/spec.md §3), with the right
participant in each place.
"""

from __future__ import annotations

from typing import Any

import pytest
from web3 import Web3

from offchain.chain.artifacts import load_artifact
from offchain.chain.calls import (
    BalanceData,
    approve,
    for_effect,
    open_channel,
    open_channel_with_deposit,
    set_total_deposit,
    settle_channel,
)
from offchain.chain.errors import ChainError
from offchain.chain.events import ChannelOpenedLog, ChannelSettledLog
from offchain.chain.inputs import ChannelDirectory
from offchain.protocol.cooperative import SignedCoopSettle, SignedWithdraw
from offchain.protocol.locks import (
    EMPTY_LOCKSROOT,
    Lock,
    balance_hash,
    channel_id,
    encode_locks,
    locksroot,
    ordered,
)
from offchain.protocol.transitions import (
    ContractSendClose,
    ContractSendCoopSettle,
    ContractSendSecretRegister,
    ContractSendUnlock,
    ContractSendUpdate,
    ContractSendWithdraw,
    PartnerProof,
)

NET = b"\x4e" * 20
SECRETS = b"\x5e" * 20
OWN, PARTNER = b"\x30" * 20, b"\x10" * 20
SIG_A, SIG_B = b"\xa1" * 65, b"\xb2" * 65
LOCKS = (Lock(2000, 5, b"\x01" * 32), Lock(2100, 7, b"\x02" * 32))
PROOF = PartnerProof(4, 90, 12, LOCKS, b"\xad" * 32, SIG_B)


def decode(artifact: str, data: bytes) -> tuple[str, dict[str, Any]]:
    contract = Web3().eth.contract(abi=load_artifact(artifact).abi_list())
    function, args = contract.decode_function_input(data)
    return function.fn_name, dict(args)


def cs(raw: bytes) -> str:
    return Web3.to_checksum_address(raw)


def test_close__our_close_with_the_partners_proof() -> None:
    call = for_effect(ContractSendClose(NET, PARTNER, PROOF), OWN, SECRETS, ChannelDirectory())
    assert call.to == NET and call.value == 0
    assert decode("token_network", call.data) == (
        "close_channel",
        {
            "closing_participant": cs(OWN),
            "non_closing_participant": cs(PARTNER),
            "nonce": 4,
            "balance_hash": balance_hash(90, 12, locksroot(LOCKS)),
            "additional_hash": b"\xad" * 32,
            "non_closing_signature": SIG_B,
            "closing_signature": b"",
        },
    )


def test_close__without_a_proof__nonce_zero_and_zero_hashes() -> None:
    call = for_effect(ContractSendClose(NET, PARTNER, None), OWN, SECRETS, ChannelDirectory())
    _, args = decode("token_network", call.data)
    assert (args["nonce"], args["balance_hash"], args["non_closing_signature"]) == (
        0,
        bytes(32),
        b"",
    )


def test_update__partner_is_the_closer() -> None:
    call = for_effect(ContractSendUpdate(NET, PARTNER, PROOF), OWN, SECRETS, ChannelDirectory())
    name, args = decode("token_network", call.data)
    assert name == "update_non_closing_balance_proof"
    assert (args["closing_participant"], args["non_closing_participant"]) == (cs(PARTNER), cs(OWN))
    assert (args["nonce"], args["closing_signature"], args["reward"]) == (4, SIG_B, 0)
    assert args["delegate"] == cs(bytes(20))


def test_withdraw__ours_with_both_signatures() -> None:
    signed = SignedWithdraw(70, 5000, SIG_A, SIG_B)
    call = for_effect(ContractSendWithdraw(NET, PARTNER, signed), OWN, SECRETS, ChannelDirectory())
    assert decode("token_network", call.data) == (
        "set_total_withdraw",
        {
            "participant": cs(OWN),
            "partner": cs(PARTNER),
            "total_withdraw": 70,
            "expiration": 5000,
            "participant_signature": SIG_A,
            "partner_signature": SIG_B,
        },
    )


@pytest.mark.parametrize(("own", "partner"), [(OWN, PARTNER), (PARTNER, OWN)])
def test_coop_settle__signed_totals_are_in_participant_order(own: bytes, partner: bytes) -> None:
    first, _ = ordered(own, partner)
    signed = SignedCoopSettle(11, 22, 5000, SIG_A, SIG_B)  # 11 for participant1
    call = for_effect(
        ContractSendCoopSettle(NET, partner, signed), own, SECRETS, ChannelDirectory()
    )
    name, args = decode("token_network", call.data)
    assert name == "cooperative_settle"
    ours = 11 if own == first else 22
    assert (args["participant"], args["participant_total_withdraw"]) == (cs(own), ours)
    assert (args["partner"], args["partner_total_withdraw"]) == (cs(partner), 33 - ours)
    assert (args["participant_signature"], args["partner_signature"]) == (SIG_A, SIG_B)


def test_secret_register__to_the_secret_registry() -> None:
    call = for_effect(
        ContractSendSecretRegister(b"\x5a" * 32, 99), OWN, SECRETS, ChannelDirectory()
    )
    assert call.to == SECRETS
    assert decode("secret_registry", call.data) == ("register_secret", {"secret": b"\x5a" * 32})


def settled_directory() -> ChannelDirectory:
    p1, p2 = ordered(OWN, PARTNER)
    cid = channel_id(OWN, PARTNER)
    where = {
        "block": 1,
        "block_hash": bytes(32),
        "log_index": 0,
        "tx_hash": bytes(32),
        "timestamp": 1,
    }
    directory = ChannelDirectory()
    directory.apply(ChannelOpenedLog(NET, cid, p1, p2, 3, 3600, **where))
    directory.apply(ChannelSettledLog(NET, cid, 3, 0, 0, 0, 12, **where))
    directory.apply(ChannelOpenedLog(NET, cid, p1, p2, 4, 3600, **where))
    return directory


def test_unlock__receiver_is_us_generation_is_the_settled_one() -> None:
    call = for_effect(ContractSendUnlock(NET, PARTNER, LOCKS), OWN, SECRETS, settled_directory())
    assert decode("token_network", call.data) == (
        "unlock",
        {"receiver": cs(OWN), "sender": cs(PARTNER), "generation": 3, "locks": encode_locks(LOCKS)},
    )


def test_unlock__channel_never_seen_settled__chain_error() -> None:
    with pytest.raises(ChainError, match="never seen settled"):
        for_effect(ContractSendUnlock(NET, PARTNER, LOCKS), OWN, SECRETS, ChannelDirectory())


def test_node_operations__decode_to_their_functions() -> None:
    assert decode("test_token", approve(b"\x70" * 20, NET).data) == (
        "approve",
        {"spender": cs(NET), "amount": 2**256 - 1},
    )
    assert decode("token_network", open_channel(NET, PARTNER, 3600).data) == (
        "open_channel",
        {"partner": cs(PARTNER), "settle_window": 3600},
    )
    name, args = decode("token_network", open_channel_with_deposit(NET, PARTNER, 3600, 10).data)
    assert (name, args["total_deposit"]) == ("open_channel_with_deposit", 10)
    name, args = decode("token_network", set_total_deposit(NET, OWN, PARTNER, 10).data)
    assert (name, args["participant"], args["partner"]) == (
        "set_total_deposit",
        cs(OWN),
        cs(PARTNER),
    )
    data = BalanceData.of(90, LOCKS)
    call = settle_channel(NET, OWN, data, PARTNER, BalanceData.none())
    name, args = decode("token_network", call.data)
    assert name == "settle_channel"
    assert (args["participant_transferred"], args["participant_locked"]) == (90, 12)
    assert args["participant_locksroot"] == locksroot(LOCKS)
    assert (args["partner_locked"], args["partner_locksroot"]) == (0, bytes(32))
    assert BalanceData.of(0, ()).locksroot == EMPTY_LOCKSROOT
