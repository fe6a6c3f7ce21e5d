"""Decoding of raw logs into typed values: every event of the contracts, and bad logs.

Logs are made by hand with eth_abi from the event signatures of the shipped ABIs, in both
shapes a client sees them: plain JSON-RPC (hex strings) and web3's (bytes, ints). A bad
log never raises: it is counted and skipped.
"""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi.abi import encode as abi_encode

from offchain.chain.events import (
    EVENTS,
    ChannelClosedLog,
    ChannelOpenedLog,
    ChannelSettledLog,
    ChannelUnlockedLog,
    ContractKind,
    CoopSettledLog,
    DelegateRewardedLog,
    DepositLog,
    LogDecoder,
    NonClosingUpdatedLog,
    SecretRegisteredLog,
    TokenNetworkCreatedLog,
    WithdrawLog,
    log_timestamp,
    topic0_of,
)
from offchain.protocol.crypto import sha256
from offchain.protocol.locks import channel_id

NETWORK = b"\x4e" * 20
REGISTRY = b"\x7e" * 20
SECRETS = b"\x5e" * 20
P1, P2 = b"\x11" * 20, b"\x22" * 20
CID = channel_id(P1, P2)
BLOCK_HASH = b"\xbb" * 32
TX = b"\xcc" * 32
TIME = 1_700_000_000


def make_log(
    address: bytes,
    kind: ContractKind,
    name: str,
    indexed: list[Any],
    data: list[Any],
    *,
    hex_form: bool = True,
    block: int = 7,
    index: int = 3,
) -> dict[str, Any]:
    """A log as an endpoint returns it, encoded from the ABI's event signature."""
    spec = EVENTS[kind][topic0_of(kind, name)]
    topics = [spec.topic0] + [
        abi_encode([t], [v]) for (_, t), v in zip(spec.indexed, indexed, strict=True)
    ]
    body = abi_encode([t for _, t in spec.data], data)
    if hex_form:
        return {
            "address": "0x" + address.hex(),
            "topics": ["0x" + t.hex() for t in topics],
            "data": "0x" + body.hex(),
            "blockNumber": hex(block),
            "blockHash": "0x" + BLOCK_HASH.hex(),
            "logIndex": hex(index),
            "transactionHash": "0x" + TX.hex(),
            "removed": False,
        }
    return {
        "address": address,
        "topics": topics,
        "data": body,
        "blockNumber": block,
        "blockHash": BLOCK_HASH,
        "logIndex": index,
        "transactionHash": TX,
    }


def where() -> dict[str, Any]:
    return {"block": 7, "block_hash": BLOCK_HASH, "log_index": 3, "tx_hash": TX, "timestamp": TIME}


TN = ContractKind.TOKEN_NETWORK
CASES: list[tuple[str, bytes, ContractKind, str, list[Any], list[Any], object]] = [
    (
        "token network created",
        REGISTRY,
        ContractKind.REGISTRY,
        "TokenNetworkCreated",
        [b"\x70" * 20, NETWORK],
        [3600, 7200, 10**27, 10**30],
        TokenNetworkCreatedLog(
            REGISTRY, b"\x70" * 20, NETWORK, 3600, 7200, 10**27, 10**30, **where()
        ),
    ),
    (
        "channel opened",
        NETWORK,
        TN,
        "ChannelOpened",
        [CID, P1, P2],
        [2, 3600],
        ChannelOpenedLog(NETWORK, CID, P1, P2, 2, 3600, **where()),
    ),
    (
        "deposit",
        NETWORK,
        TN,
        "ChannelNewDeposit",
        [CID, P2],
        [10**20],
        DepositLog(NETWORK, CID, P2, 10**20, **where()),
    ),
    (
        "withdraw",
        NETWORK,
        TN,
        "ChannelWithdraw",
        [CID, P1],
        [5],
        WithdrawLog(NETWORK, CID, P1, 5, **where()),
    ),
    (
        "closed",
        NETWORK,
        TN,
        "ChannelClosed",
        [CID, P1],
        [9, b"\x99" * 32],
        ChannelClosedLog(NETWORK, CID, P1, 9, b"\x99" * 32, **where()),
    ),
    (
        "non-closing update",
        NETWORK,
        TN,
        "NonClosingBalanceProofUpdated",
        [CID, P1],
        [10, b"\x98" * 32, b"\x33" * 20],
        NonClosingUpdatedLog(NETWORK, CID, P1, 10, b"\x98" * 32, b"\x33" * 20, **where()),
    ),
    (
        "settled",
        NETWORK,
        TN,
        "ChannelSettled",
        [CID],
        [2, 40, 60, 3, 0],
        ChannelSettledLog(NETWORK, CID, 2, 40, 60, 3, 0, **where()),
    ),
    (
        "cooperative settle",
        NETWORK,
        TN,
        "ChannelCooperativeSettled",
        [CID],
        [1, 70, 30],
        CoopSettledLog(NETWORK, CID, 1, 70, 30, **where()),
    ),
    (
        "delegate rewarded",
        NETWORK,
        TN,
        "DelegateRewarded",
        [CID, P2, b"\x33" * 20],
        [4],
        DelegateRewardedLog(NETWORK, CID, P2, b"\x33" * 20, 4, **where()),
    ),
    (
        "unlocked",
        NETWORK,
        TN,
        "ChannelUnlocked",
        [CID, P2, P1],
        [b"\x55" * 32, 5, 3],
        ChannelUnlockedLog(NETWORK, CID, P2, P1, b"\x55" * 32, 5, 3, **where()),
    ),
    (
        "secret registered",
        SECRETS,
        ContractKind.SECRET_REGISTRY,
        "SecretRevealed",
        [sha256(b"\x5a" * 32)],
        [b"\x5a" * 32],
        SecretRegisteredLog(SECRETS, sha256(b"\x5a" * 32), b"\x5a" * 32, **where()),
    ),
]


@pytest.mark.parametrize("hex_form", [True, False], ids=["json", "web3"])
@pytest.mark.parametrize(
    ("address", "kind", "name", "indexed", "data", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_decode__every_event__typed_value(
    address: bytes,
    kind: ContractKind,
    name: str,
    indexed: list[Any],
    data: list[Any],
    expected: object,
    hex_form: bool,
) -> None:
    decoder = LogDecoder()
    raw = make_log(address, kind, name, indexed, data, hex_form=hex_form)
    assert decoder.decode(raw, kind, TIME) == expected
    assert (decoder.decoded, decoder.unknown, decoder.malformed) == (1, 0, 0)


def test_every_event_of_the_abis_is_decoded() -> None:
    names = {spec.name for kind in ContractKind for spec in EVENTS[kind].values()}
    assert names == {case[3] for case in CASES}


def opened(**changes: Any) -> dict[str, Any]:
    raw = make_log(NETWORK, TN, "ChannelOpened", [CID, P1, P2], [1, 3600])
    raw.update(changes)
    return raw


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(opened(topics=opened()["topics"][:3]), id="a topic missing"),
        pytest.param(opened(data=opened()["data"] + "00" * 32), id="data too long"),
        pytest.param(opened(data="0x1234"), id="data too short"),
        pytest.param(opened(data="0xzz"), id="data not hex"),
        pytest.param(
            opened(topics=[*opened()["topics"][:2], "0x" + "01" * 32, opened()["topics"][3]]),
            id="address topic with non-zero padding",
        ),
        pytest.param(
            make_log(NETWORK, TN, "ChannelOpened", [b"\x01" * 32, P1, P2], [1, 3600]),
            id="channel id not of the pair",
        ),
        pytest.param(
            make_log(NETWORK, TN, "ChannelOpened", [channel_id(P1, P2), P2, P1], [1, 3600]),
            id="participants out of order",
        ),
        pytest.param(
            make_log(NETWORK, TN, "ChannelOpened", [CID, P1, P2], [2**32, 3600]),
            id="generation beyond uint32",
        ),
        pytest.param(
            make_log(NETWORK, TN, "ChannelClosed", [CID, P1], [2**64, b"\x99" * 32]),
            id="nonce beyond uint64",
        ),
        pytest.param(opened(blockNumber=None), id="no block number"),
        pytest.param(opened(address="0x1234"), id="short address"),
    ],
)
def test_decode__malformed_log__skipped_and_counted(raw: dict[str, Any]) -> None:
    decoder = LogDecoder()
    assert decoder.decode(raw, TN, TIME) is None
    assert (decoder.decoded, decoder.malformed) == (0, 1)


def test_decode__secret_that_does_not_match_its_hash__malformed() -> None:
    decoder = LogDecoder()
    raw = make_log(
        SECRETS, ContractKind.SECRET_REGISTRY, "SecretRevealed", [b"\x01" * 32], [b"\x5a" * 32]
    )
    assert decoder.decode(raw, ContractKind.SECRET_REGISTRY, TIME) is None
    assert decoder.malformed == 1


def test_decode__unknown_topic_or_event_of_another_contract__skipped_as_unknown() -> None:
    decoder = LogDecoder()
    transfer = opened(topics=["0x" + "ab" * 32, *opened()["topics"][1:]])
    assert decoder.decode(transfer, TN, TIME) is None
    # A registry event is not one a token network emits: unknown for that kind.
    created = make_log(
        REGISTRY, ContractKind.REGISTRY, "TokenNetworkCreated", [P1, P2], [1, 2, 3, 4]
    )
    assert decoder.decode(created, TN, TIME) is None
    assert decoder.decode(opened(topics=[]), TN, TIME) is None
    assert (decoder.unknown, decoder.malformed) == (3, 0)


def test_decode__removed_log__skipped_and_counted() -> None:
    decoder = LogDecoder()
    assert decoder.decode(opened(removed=True), TN, TIME) is None
    assert decoder.removed == 1


def test_log_timestamp__read_when_the_endpoint_gives_it() -> None:
    assert log_timestamp(opened(blockTimestamp=hex(TIME))) == TIME
    assert log_timestamp(opened()) is None
    assert log_timestamp(opened(blockTimestamp="soon")) is None
