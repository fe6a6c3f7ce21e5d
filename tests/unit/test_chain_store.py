"""The chain package's tables on a real SQLite file: follower cursor and outbox records.

Everything the follower and the sender need to survive a crash is here: the cursor moves
with the directory in one transaction, an intent is recorded once per key, attempts keep
their order, and nothing is written inside a transaction someone else left open.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from offchain.chain import schema
from offchain.chain.calls import ContractCall
from offchain.chain.errors import OutboxConflict, StoreError
from offchain.chain.inputs import ChannelRecord, ChannelStage
from offchain.chain.outbox import Attempt, IntentStatus, Outbox
from offchain.chain.store import Cursor, FollowerStore, KnownNetwork

REGISTRY = b"\x7e" * 20
SENDER = b"\x30" * 20
CALL = ContractCall(b"\x4e" * 20, b"\x01\x02", 0, "token_network.open_channel")


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(tmp_path / "node.db")
    conn.execute("PRAGMA journal_mode=WAL")
    schema.create_tables(conn)
    schema.create_tables(conn)  # the statements are safe to run twice
    return conn


def test_follower_store__cursor_hashes_networks_channels_round_trip(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    store = FollowerStore(conn, REGISTRY)
    assert store.cursor() is None
    big = 2**255 + 1  # uint256 amounts do not fit SQLite integers
    channel = ChannelRecord(
        b"\x4e" * 20,
        b"\xc1" * 32,
        b"\x10" * 20,
        b"\x30" * 20,
        2,
        3600,
        stage=ChannelStage.CLOSED,
        deposit1=big,
        closer=b"\x10" * 20,
        closed_at=99,
    )
    store.advance(
        Cursor(10, b"\xaa" * 32),
        [(n, bytes([n]) * 32) for n in range(1, 11)],
        keep=4,
        networks=[KnownNetwork(b"\x4e" * 20, b"\x70" * 20, 5)],
        channels=[channel],
    )
    again = FollowerStore(sqlite3.connect(tmp_path / "node.db"), REGISTRY)
    assert again.cursor() == Cursor(10, b"\xaa" * 32)
    assert again.block_hashes() == [(n, bytes([n]) * 32) for n in (10, 9, 8, 7)]
    assert again.networks() == [KnownNetwork(b"\x4e" * 20, b"\x70" * 20, 5)]
    assert again.channels() == [channel]
    # Another deployment in the same database sees none of it.
    assert FollowerStore(conn, b"\x01" * 20).cursor() is None
    assert FollowerStore(conn, b"\x01" * 20).channels() == []


def test_write__inside_someone_elses_transaction__refused_nothing_written(
    conn: sqlite3.Connection,
) -> None:
    conn.execute("BEGIN")
    with pytest.raises(StoreError):
        FollowerStore(conn, REGISTRY).advance(Cursor(1, bytes(32)), [], keep=1)
    conn.execute("ROLLBACK")
    assert FollowerStore(conn, REGISTRY).cursor() is None


def test_outbox__same_key_same_call__one_intent(conn: sqlite3.Connection) -> None:
    outbox = Outbox(conn, SENDER)
    first = outbox.add("open:1", CALL, None, 1.0)
    assert first.status is IntentStatus.QUEUED
    assert outbox.add("open:1", CALL, None, 2.0) == first
    assert [i.key for i in outbox.unfinished()] == ["open:1"]


@pytest.mark.parametrize(
    ("call", "depends_on"),
    [
        (ContractCall(CALL.to, b"\x09", 0, ""), None),
        (ContractCall(CALL.to, CALL.data, 5, ""), None),
        (CALL, "approve:1"),
    ],
    ids=["other data", "other value", "other dependency"],
)
def test_outbox__key_reused_for_another_call__conflict(
    conn: sqlite3.Connection, call: ContractCall, depends_on: str | None
) -> None:
    outbox = Outbox(conn, SENDER)
    outbox.add("approve:1", CALL, None, 1.0)
    outbox.add("open:1", CALL, None, 1.0)
    with pytest.raises(OutboxConflict):
        outbox.add("open:1", call, depends_on, 2.0)


def test_outbox__unknown_dependency_or_empty_key__conflict(conn: sqlite3.Connection) -> None:
    outbox = Outbox(conn, SENDER)
    with pytest.raises(OutboxConflict, match="unknown intent"):
        outbox.add("deposit:1", CALL, "approve:9", 1.0)
    with pytest.raises(OutboxConflict):
        outbox.add("", CALL, None, 1.0)
    assert outbox.unfinished() == []


def test_outbox__key_of_another_sender__conflict(conn: sqlite3.Connection) -> None:
    Outbox(conn, b"\x01" * 20).add("k", CALL, None, 1.0)
    with pytest.raises(OutboxConflict, match="another sender"):
        Outbox(conn, SENDER).add("k", CALL, None, 1.0)


def test_outbox__attempts_then_final__status_moves_one_way(conn: sqlite3.Connection) -> None:
    outbox = Outbox(conn, SENDER)
    outbox.add("k", CALL, None, 1.0)
    first = Attempt(b"\x01" * 32, b"raw1", 100, 2, None, signed_at=2.0)
    second = Attempt(b"\x02" * 32, b"raw2", 113, 3, None, signed_at=3.0)
    outbox.record_attempt("k", 7, 50_000, first)
    outbox.mark_broadcast(first.tx_hash, 2.5)
    outbox.record_attempt("k", 7, 50_000, second)
    intent = outbox.get("k")
    assert intent is not None
    assert (intent.status, intent.nonce, intent.gas) == (IntentStatus.SENT, 7, 50_000)
    assert [a.tx_hash for a in intent.attempts] == [first.tx_hash, second.tx_hash]
    assert intent.attempts[0].broadcast_at == 2.5 and intent.attempts[1].broadcast_at is None
    assert outbox.highest_nonce() == 7
    outbox.confirm("k", second.tx_hash, 12, 40_000, 4.0)
    outbox.fail("k", "too late", 5.0)  # a final intent never changes again
    done = outbox.get("k")
    assert done is not None and done.final
    assert (done.status, done.tx_hash, done.block, done.gas_used) == (
        IntentStatus.CONFIRMED,
        second.tx_hash,
        12,
        40_000,
    )
    assert outbox.unfinished() == []
