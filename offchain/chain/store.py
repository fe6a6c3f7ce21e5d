"""What the chain follower persists in the node's SQLite database, and how it writes.

Belongs here: ``write``, the short transaction every write of this package goes through;
the follower's tables (``SCHEMA``): its cursor (the last block processed, number and
hash), the hashes of the last blocks it processed (to tell how deep a reorg went), the
token networks it learned from the registry, and the channel directory; and
``FollowerStore``, which reads and writes them.

The node owns the connection (WAL mode, its one database) and runs ``SCHEMA`` inside its
versioned migrations; ``create_tables`` is for tests and tools. Amounts are stored as
decimal text: uint256 does not fit SQLite's 64-bit integers.

Does not belong here: the transaction outbox (``outbox``), deciding what to store
(``sync``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from offchain.chain.errors import StoreError
from offchain.chain.inputs import ChannelRecord, ChannelStage
from offchain.protocol.types import Address, ChannelId, Generation, Timestamp, TokenAmount

SCHEMA: Final[tuple[str, ...]] = (
    """CREATE TABLE IF NOT EXISTS chain_cursor (
        registry BLOB PRIMARY KEY,
        block INTEGER NOT NULL,
        hash BLOB NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS chain_blocks (
        registry BLOB NOT NULL,
        number INTEGER NOT NULL,
        hash BLOB NOT NULL,
        PRIMARY KEY (registry, number)
    )""",
    """CREATE TABLE IF NOT EXISTS chain_token_networks (
        token_network BLOB PRIMARY KEY,
        registry BLOB NOT NULL,
        token BLOB NOT NULL,
        block INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS chain_channels (
        registry BLOB NOT NULL,
        token_network BLOB NOT NULL,
        channel_id BLOB NOT NULL,
        participant1 BLOB NOT NULL,
        participant2 BLOB NOT NULL,
        generation INTEGER NOT NULL,
        settle_window INTEGER NOT NULL,
        stage TEXT NOT NULL,
        deposit1 TEXT NOT NULL,
        deposit2 TEXT NOT NULL,
        withdrawn1 TEXT NOT NULL,
        withdrawn2 TEXT NOT NULL,
        closer BLOB,
        closed_at INTEGER,
        settled_generation INTEGER,
        PRIMARY KEY (token_network, channel_id)
    )""",
)
"""The follower's tables (CREATE TABLE statements, safe to run twice)."""


@contextmanager
def write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One short write transaction, committed on exit, rolled back on an exception.

    Refuses to run inside a transaction someone else left open: what this package writes
    must be durable when it says so (an outbox record before a broadcast), not whenever
    the outer transaction commits, or rolls back.
    """
    if conn.in_transaction:
        raise StoreError("the database connection is inside an open transaction")
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def create_tables(conn: sqlite3.Connection, schema: Iterable[str] = SCHEMA) -> None:
    """Run ``schema`` (default: the follower's tables) in one transaction."""
    with write(conn):
        for statement in schema:
            conn.execute(statement)


@dataclass(frozen=True, slots=True)
class Cursor:
    """The last block the follower processed (its logs were handed to the node)."""

    block: int
    hash: bytes


@dataclass(frozen=True, slots=True)
class KnownNetwork:
    """A token network the registry created (learned from its ``TokenNetworkCreated``)."""

    token_network: Address
    token: Address
    block: int


class FollowerStore:
    """The follower's rows of one registry (one deployment) in the node's database."""

    def __init__(self, conn: sqlite3.Connection, registry: Address) -> None:
        self.conn = conn
        self.registry = registry

    def cursor(self) -> Cursor | None:
        row = self.conn.execute(
            "SELECT block, hash FROM chain_cursor WHERE registry = ?", (self.registry,)
        ).fetchone()
        return Cursor(int(row[0]), bytes(row[1])) if row else None

    def block_hashes(self) -> list[tuple[int, bytes]]:
        """The remembered (number, hash) of processed blocks, newest first."""
        rows = self.conn.execute(
            "SELECT number, hash FROM chain_blocks WHERE registry = ? ORDER BY number DESC",
            (self.registry,),
        ).fetchall()
        return [(int(number), bytes(hash_)) for number, hash_ in rows]

    def networks(self) -> list[KnownNetwork]:
        rows = self.conn.execute(
            "SELECT token_network, token, block FROM chain_token_networks WHERE registry = ?",
            (self.registry,),
        ).fetchall()
        return [KnownNetwork(Address(bytes(n)), Address(bytes(t)), int(b)) for n, t, b in rows]

    def channels(self) -> list[ChannelRecord]:
        rows = self.conn.execute(
            "SELECT token_network, channel_id, participant1, participant2, generation,"
            " settle_window, stage, deposit1, deposit2, withdrawn1, withdrawn2, closer,"
            " closed_at, settled_generation FROM chain_channels WHERE registry = ?",
            (self.registry,),
        ).fetchall()
        return [_record(row) for row in rows]

    def advance(
        self,
        cursor: Cursor,
        hashes: Iterable[tuple[int, bytes]],
        keep: int,
        networks: Iterable[KnownNetwork] = (),
        channels: Iterable[ChannelRecord] = (),
    ) -> None:
        """Move the cursor and store what the processed range changed, in one transaction.

        ``hashes``: (number, hash) of blocks of the range to remember; only the ``keep``
        newest remembered blocks are kept.
        """
        with write(self.conn) as conn:
            conn.execute(
                "INSERT OR REPLACE INTO chain_cursor (registry, block, hash) VALUES (?, ?, ?)",
                (self.registry, cursor.block, cursor.hash),
            )
            conn.executemany(
                "INSERT OR REPLACE INTO chain_blocks (registry, number, hash) VALUES (?, ?, ?)",
                [(self.registry, number, hash_) for number, hash_ in hashes],
            )
            conn.execute(
                "DELETE FROM chain_blocks WHERE registry = ? AND number NOT IN"
                " (SELECT number FROM chain_blocks WHERE registry = ?"
                " ORDER BY number DESC LIMIT ?)",
                (self.registry, self.registry, keep),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO chain_token_networks (token_network, registry, token, block)"
                " VALUES (?, ?, ?, ?)",
                [(n.token_network, self.registry, n.token, n.block) for n in networks],
            )
            conn.executemany(
                "INSERT OR REPLACE INTO chain_channels VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(self.registry, *_row(record)) for record in channels],
            )


def _row(r: ChannelRecord) -> tuple[object, ...]:
    return (
        r.token_network,
        r.channel_id,
        r.participant1,
        r.participant2,
        r.generation,
        r.settle_window,
        r.stage.value,
        str(r.deposit1),
        str(r.deposit2),
        str(r.withdrawn1),
        str(r.withdrawn2),
        r.closer,
        r.closed_at,
        r.settled_generation,
    )


def _record(row: Any) -> ChannelRecord:
    network, cid, p1, p2, generation, window, stage, d1, d2, w1, w2, closer, closed, settled = row
    return ChannelRecord(
        token_network=Address(bytes(network)),
        channel_id=ChannelId(bytes(cid)),
        participant1=Address(bytes(p1)),
        participant2=Address(bytes(p2)),
        generation=Generation(int(generation)),
        settle_window=int(window),
        stage=ChannelStage(stage),
        deposit1=TokenAmount(int(d1)),
        deposit2=TokenAmount(int(d2)),
        withdrawn1=TokenAmount(int(w1)),
        withdrawn2=TokenAmount(int(w2)),
        closer=Address(bytes(closer)) if closer is not None else None,
        closed_at=Timestamp(int(closed)) if closed is not None else None,
        settled_generation=Generation(int(settled)) if settled is not None else None,
    )
