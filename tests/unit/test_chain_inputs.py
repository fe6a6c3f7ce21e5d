"""Decoded logs -> the core's Chain* inputs, and the public channel directory.

The node at OWN is in one channel (with PARTNER); OTHER_A and OTHER_B have a channel of
their own that the node only learns as part of the graph.
"""

from __future__ import annotations

from typing import Any

from offchain.chain.events import (
    ChainLog,
    ChannelClosedLog,
    ChannelOpenedLog,
    ChannelSettledLog,
    CoopSettledLog,
    DelegateRewardedLog,
    DepositLog,
    NonClosingUpdatedLog,
    SecretRegisteredLog,
    WithdrawLog,
)
from offchain.chain.inputs import ChannelDirectory, ChannelStage, inputs_for
from offchain.protocol.crypto import sha256
from offchain.protocol.locks import channel_id, ordered
from offchain.protocol.transitions import (
    ChainChannelClosed,
    ChainChannelOpened,
    ChainChannelSettled,
    ChainDeposit,
    ChainSecretRegistered,
    ChainWithdraw,
)

NET = b"\x4e" * 20
OTHER_NET = b"\x4f" * 20
OWN, PARTNER = b"\x30" * 20, b"\x10" * 20
OTHER_A, OTHER_B = b"\x50" * 20, b"\x60" * 20
OURS = channel_id(OWN, PARTNER)
THEIRS = channel_id(OTHER_A, OTHER_B)


def at(block: int) -> dict[str, Any]:
    return {
        "block": block,
        "block_hash": block.to_bytes(32, "big"),
        "log_index": 0,
        "tx_hash": bytes(32),
        "timestamp": 1000 + block,
    }


def open_log(
    a: bytes, b: bytes, block: int, generation: int = 1, net: bytes = NET
) -> ChannelOpenedLog:
    p1, p2 = ordered(a, b)
    return ChannelOpenedLog(net, channel_id(a, b), p1, p2, generation, 3600, **at(block))


def run(logs: list[ChainLog], own: bytes = OWN) -> tuple[ChannelDirectory, list[object]]:
    directory = ChannelDirectory()
    inputs: list[object] = []
    for log in logs:
        directory.apply(log)
        inputs.extend(inputs_for(log, own, directory))
    return directory, inputs


def test_lifecycle_of_our_channel__inputs_with_partner_and_block_time() -> None:
    secret = b"\x5a" * 32
    logs: list[ChainLog] = [
        open_log(OWN, PARTNER, 1),
        DepositLog(NET, OURS, OWN, 100, **at(2)),
        DepositLog(NET, OURS, PARTNER, 50, **at(3)),
        WithdrawLog(NET, OURS, PARTNER, 20, **at(4)),
        ChannelClosedLog(NET, OURS, PARTNER, 3, b"\x99" * 32, **at(5)),
        NonClosingUpdatedLog(NET, OURS, PARTNER, 4, b"\x98" * 32, OWN, **at(6)),
        SecretRegisteredLog(b"\x5e" * 20, sha256(secret), secret, **at(7)),
        ChannelSettledLog(NET, OURS, 1, 10, 20, 0, 0, **at(8)),
    ]
    directory, inputs = run(logs)
    assert inputs == [
        ChainChannelOpened(1001, NET, PARTNER, 1, 3600),
        ChainDeposit(1002, NET, PARTNER, OWN, 100),
        ChainDeposit(1003, NET, PARTNER, PARTNER, 50),
        ChainWithdraw(1004, NET, PARTNER, PARTNER, 20),
        ChainChannelClosed(1005, NET, PARTNER, PARTNER),
        ChainSecretRegistered(1007, secret, sha256(secret), 1007),
        ChainChannelSettled(1008, NET, PARTNER),
    ]
    record = directory.find(NET, OWN, PARTNER)
    assert record is not None
    assert record.stage is ChannelStage.SETTLED
    assert (record.participant1, record.participant2) == (PARTNER, OWN)
    assert (record.deposit1, record.deposit2, record.withdrawn1) == (50, 100, 20)
    assert (record.closer, record.closed_at, record.settle_deadline) == (PARTNER, 1005, 4605)
    assert record.settled_generation == 1


def test_channels_of_others__no_inputs_but_in_the_directory_and_graph() -> None:
    logs: list[ChainLog] = [
        open_log(OTHER_A, OTHER_B, 1),
        DepositLog(NET, THEIRS, OTHER_A, 70, **at(2)),
        DepositLog(NET, THEIRS, OTHER_B, 30, **at(3)),
        WithdrawLog(NET, THEIRS, OTHER_B, 10, **at(4)),
        open_log(OWN, PARTNER, 5),
        open_log(OWN, OTHER_A, 6, net=OTHER_NET),
    ]
    directory, inputs = run(logs)
    assert inputs == [
        ChainChannelOpened(1005, NET, PARTNER, 1, 3600),
        ChainChannelOpened(1006, OTHER_NET, OTHER_A, 1, 3600),
    ]
    edges = {(e.a, e.b): (e.capacity_ab, e.capacity_ba) for e in directory.edges(NET)}
    assert edges == {(OTHER_A, OTHER_B): (70, 20), (PARTNER, OWN): (0, 0)}
    assert len(directory.channels(OTHER_NET)) == 1


def test_closed_or_settled_channels__leave_the_graph() -> None:
    logs: list[ChainLog] = [
        open_log(OTHER_A, OTHER_B, 1),
        open_log(OWN, PARTNER, 2),
        ChannelClosedLog(NET, THEIRS, OTHER_A, 0, bytes(32), **at(3)),
        CoopSettledLog(NET, OURS, 1, 0, 0, **at(4)),
    ]
    directory, inputs = run(logs)
    assert directory.edges(NET) == []
    assert inputs[-1] == ChainChannelSettled(1004, NET, PARTNER)
    closed = directory.get(NET, THEIRS)
    assert closed is not None and closed.stage is ChannelStage.CLOSED


def test_reopening__new_generation_starts_from_zero_and_keeps_the_settled_one() -> None:
    logs: list[ChainLog] = [
        open_log(OWN, PARTNER, 1),
        DepositLog(NET, OURS, OWN, 100, **at(2)),
        ChannelClosedLog(NET, OURS, OWN, 0, bytes(32), **at(3)),
        ChannelSettledLog(NET, OURS, 1, 100, 0, 0, 0, **at(4)),
        open_log(OWN, PARTNER, 5, generation=2),
    ]
    directory, inputs = run(logs)
    record = directory.find(NET, PARTNER, OWN)
    assert record is not None
    assert (record.generation, record.stage, record.deposit2, record.settled_generation) == (
        2,
        ChannelStage.OPENED,
        0,
        1,
    )
    assert inputs[-1] == ChainChannelOpened(1005, NET, PARTNER, 2, 3600)


def test_apply__replayed_logs_change_nothing() -> None:
    logs: list[ChainLog] = [
        open_log(OWN, PARTNER, 1),
        DepositLog(NET, OURS, OWN, 100, **at(2)),
        ChannelClosedLog(NET, OURS, OWN, 0, bytes(32), **at(3)),
    ]
    directory = ChannelDirectory()
    changed = [directory.apply(log) for log in logs]
    assert all(record is not None for record in changed)
    before = list(directory)
    # An older deposit total, a second open of the same generation, a second close.
    assert [directory.apply(log) for log in logs] == [None, None, None]
    assert directory.apply(DepositLog(NET, OURS, OWN, 60, **at(9))) is None
    assert list(directory) == before


def test_logs_of_unknown_channels_or_strangers__ignored() -> None:
    stranger = b"\x77" * 20
    logs: list[ChainLog] = [
        DepositLog(NET, OURS, OWN, 100, **at(1)),  # no ChannelOpened seen
        open_log(OWN, PARTNER, 2),
        DepositLog(NET, OURS, stranger, 5, **at(3)),  # not a participant
        ChannelSettledLog(NET, OURS, 7, 0, 0, 0, 0, **at(4)),  # another generation
        DelegateRewardedLog(NET, OURS, OWN, stranger, 1, **at(5)),
    ]
    directory, inputs = run(logs)
    assert inputs == [ChainChannelOpened(1002, NET, PARTNER, 1, 3600)]
    record = directory.find(NET, OWN, PARTNER)
    assert record is not None and record.stage is ChannelStage.OPENED
    assert (record.deposit1, record.deposit2) == (0, 0)


def test_directory__rebuilt_from_its_records() -> None:
    directory, _ = run([open_log(OWN, PARTNER, 1), DepositLog(NET, OURS, OWN, 9, **at(2))])
    again = ChannelDirectory(list(directory))
    assert list(again) == list(directory)
    assert len(again) == 1
