"""The watch service's tables in the node's database: requests held, delegations acked.

Belongs here: ``SCHEMA`` (run by the node's migrations, ``store.MIGRATIONS``) and
``WatchStore``, the SQL of
- ``watch_items``: every request a watcher accepted (the payload as it came, who sent it,
  what it is about, its deadline) and what became of it; a request is written before it
  is acknowledged, so a watcher never promises what a crash can make it forget;
- ``delegations``: on the client side, per (token network, partner, delegate), the proof
  (nonce, own nonce) the delegate acknowledged last and the chain time it said it saw;
- ``gateway_handoffs`` and ``gateway_tries`` (``CLIENT_SCHEMA``, migration 5): on the
  client side, what a blind node handed to gateways (the request as sent, what it is
  about, its deadlines, what became of it) and each gateway it went to with its answers;
  written before the request is sent, so a crash never forgets a hand-off nor makes a
  second one of the same submission.

Ranks (``DelegateUpdate.rank``: the closer's nonce, then the own nonce) are stored as 16
big-endian bytes so that SQLite compares them as the numbers they are.

Does not belong here: deciding anything (``offchain.watch``), the chain, the mesh.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from offchain.protocol.types import Address

SCHEMA: Final[tuple[str, ...]] = (
    # state: 'held' (the watcher acts on it), 'done' (outcome sent), 'superseded' (a
    # newer request about the same subject replaced it). done_work: the watcher's own
    # transaction for the request's main action (update, registration, unlock) was
    # confirmed (its hash in work_tx).
    """CREATE TABLE watch_items (
        request_id BLOB PRIMARY KEY, client BLOB NOT NULL, kind INTEGER NOT NULL,
        subject BLOB NOT NULL, rank BLOB NOT NULL, deadline INTEGER,
        payload BLOB NOT NULL, state TEXT NOT NULL, done_work INTEGER NOT NULL DEFAULT 0,
        work_tx BLOB, outcome TEXT, reason TEXT, outcome_tx BLOB,
        received_at REAL NOT NULL, updated_at REAL NOT NULL)""",
    "CREATE INDEX watch_items_by_state ON watch_items (state, kind)",
    "CREATE INDEX watch_items_by_subject ON watch_items (subject, state)",
    "CREATE INDEX watch_items_by_client ON watch_items (client, state)",
    """CREATE TABLE delegations (
        token_network BLOB NOT NULL, partner BLOB NOT NULL, delegate BLOB NOT NULL,
        rank BLOB NOT NULL, view_time INTEGER NOT NULL, acked_at REAL NOT NULL,
        PRIMARY KEY (token_network, partner, delegate))""",
)


CLIENT_SCHEMA: Final[tuple[str, ...]] = (
    # subject: what the submission is (one row per subject, ever: ``secret:<hash>``,
    # ``unlock:...``, ``raw:<tx hash>``); what/token_network/partner/secrethash: the
    # deadline it covers (``GET /deadlines``); state: handoff.HandState.
    """CREATE TABLE gateway_handoffs (
        request_id BLOB PRIMARY KEY, subject TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
        what TEXT NOT NULL, token_network BLOB, partner BLOB, secrethash BLOB,
        payload BLOB NOT NULL, act_by REAL, chain_deadline INTEGER, state TEXT NOT NULL,
        outcome TEXT, gateway BLOB, outcome_tx BLOB, outcome_time INTEGER,
        created_at REAL NOT NULL, updated_at REAL NOT NULL)""",
    "CREATE INDEX gateway_handoffs_by_state ON gateway_handoffs (state)",
    """CREATE TABLE gateway_tries (
        request_id BLOB NOT NULL, gateway BLOB NOT NULL, handed_at REAL NOT NULL,
        acked_at REAL, refused INTEGER NOT NULL DEFAULT 0, reason TEXT, outcome TEXT,
        mined INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (request_id, gateway))""",
)


def pack_rank(rank: tuple[int, int]) -> bytes:
    return rank[0].to_bytes(8, "big") + rank[1].to_bytes(8, "big")


def unpack_rank(data: bytes) -> tuple[int, int]:
    return int.from_bytes(data[:8], "big"), int.from_bytes(data[8:16], "big")


@dataclass(frozen=True, slots=True)
class Item:
    """One request a watcher holds (or held)."""

    request_id: bytes
    client: Address
    kind: int
    subject: bytes
    rank: tuple[int, int]
    deadline: int | None
    payload: bytes
    state: str
    done_work: bool
    work_tx: bytes | None
    outcome: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class Handed:
    """One submission a blind node handed (or is handing) to gateways."""

    request_id: bytes
    subject: str
    kind: str
    what: str
    token_network: Address | None
    partner: Address | None
    secrethash: bytes | None
    payload: bytes
    act_by: float | None
    chain_deadline: int | None
    state: str
    outcome: str | None
    gateway: Address | None
    created_at: float


@dataclass(frozen=True, slots=True)
class TryRow:
    """One gateway a submission went to, and its answers."""

    request_id: bytes
    gateway: Address
    handed_at: float
    acked_at: float | None
    refused: bool
    reason: str | None
    outcome: str | None
    mined: bool


@dataclass(frozen=True, slots=True)
class Acked:
    """What one delegate acknowledged last for one channel."""

    token_network: Address
    partner: Address
    delegate: Address
    rank: tuple[int, int]
    view_time: int
    acked_at: float


_ITEM_COLUMNS: Final = (
    "request_id, client, kind, subject, rank, deadline, payload, state, done_work, work_tx, "
    "outcome, reason"
)


def _item(row: Any) -> Item:
    rid, client, kind, subject, rank, deadline, payload, state, done, tx, outcome, reason = row
    return Item(
        request_id=bytes(rid),
        client=Address(bytes(client)),
        kind=int(kind),
        subject=bytes(subject),
        rank=unpack_rank(bytes(rank)),
        deadline=None if deadline is None else int(deadline),
        payload=bytes(payload),
        state=str(state),
        done_work=bool(done),
        work_tx=None if tx is None else bytes(tx),
        outcome=None if outcome is None else str(outcome),
        reason=None if reason is None else str(reason),
    )


class WatchStore:
    """The watch tables on the node's connection; the caller owns the transactions."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    # -- watcher ------------------------------------------------------------------------------

    def get(self, request_id: bytes) -> Item | None:
        row = self.conn.execute(
            f"SELECT {_ITEM_COLUMNS} FROM watch_items WHERE request_id = ?", (request_id,)
        ).fetchone()
        return None if row is None else _item(row)

    def held(self, kind: int | None = None) -> list[Item]:
        """Requests the watcher still acts on, earliest deadline first (none last)."""
        query = f"SELECT {_ITEM_COLUMNS} FROM watch_items WHERE state = 'held'"
        args: tuple[object, ...] = ()
        if kind is not None:
            query += " AND kind = ?"
            args = (kind,)
        query += " ORDER BY deadline IS NULL, deadline, received_at"
        return [_item(row) for row in self.conn.execute(query, args)]

    def best_rank(self, subject: bytes) -> tuple[int, int] | None:
        """The highest rank held (or done) for ``subject``: what a new request must beat."""
        row = self.conn.execute(
            "SELECT MAX(rank) FROM watch_items WHERE subject = ? AND state != 'superseded'",
            (subject,),
        ).fetchone()
        return None if row is None or row[0] is None else unpack_rank(bytes(row[0]))

    def held_by(self, client: Address) -> int:
        row = self.conn.execute(
            "SELECT COUNT(*) FROM watch_items WHERE client = ? AND state = 'held'", (client,)
        ).fetchone()
        return int(row[0])

    def clients(self) -> list[Address]:
        rows = self.conn.execute("SELECT DISTINCT client FROM watch_items WHERE state = 'held'")
        return [Address(bytes(row[0])) for row in rows]

    def add(
        self,
        request_id: bytes,
        client: Address,
        kind: int,
        subject: bytes,
        rank: tuple[int, int],
        deadline: int | None,
        payload: bytes,
        now: float,
    ) -> None:
        """Hold a request; the held ones about the same subject that it outranks (or
        repeats) are superseded. Call inside a transaction."""
        packed = pack_rank(rank)
        self.conn.execute(
            "UPDATE watch_items SET state = 'superseded', updated_at = ? "
            "WHERE subject = ? AND state = 'held' AND rank <= ?",
            (now, subject, packed),
        )
        self.conn.execute(
            "INSERT INTO watch_items (request_id, client, kind, subject, rank, deadline, "
            "payload, state, received_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'held', ?, ?)",
            (request_id, client, kind, subject, packed, deadline, payload, now, now),
        )

    def work_done(self, request_id: bytes, tx_hash: bytes, now: float) -> None:
        self.conn.execute(
            "UPDATE watch_items SET done_work = 1, work_tx = ?, updated_at = ? "
            "WHERE request_id = ?",
            (tx_hash, now, request_id),
        )

    def finish(
        self, request_id: bytes, outcome: str, reason: str, tx_hash: bytes | None, now: float
    ) -> None:
        self.conn.execute(
            "UPDATE watch_items SET state = 'done', outcome = ?, reason = ?, outcome_tx = ?, "
            "updated_at = ? WHERE request_id = ?",
            (outcome, reason, tx_hash, now, request_id),
        )

    # -- client -------------------------------------------------------------------------------

    def acked(self) -> Iterator[Acked]:
        rows = self.conn.execute(
            "SELECT token_network, partner, delegate, rank, view_time, acked_at FROM delegations"
        )
        for network, partner, delegate, rank, view_time, acked_at in rows:
            yield Acked(
                Address(bytes(network)),
                Address(bytes(partner)),
                Address(bytes(delegate)),
                unpack_rank(bytes(rank)),
                int(view_time),
                float(acked_at),
            )

    def record_ack(self, acked: Acked) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO delegations (token_network, partner, delegate, rank, "
            "view_time, acked_at) VALUES (?, ?, ?, ?, ?, ?)",
            (
                acked.token_network,
                acked.partner,
                acked.delegate,
                pack_rank(acked.rank),
                acked.view_time,
                acked.acked_at,
            ),
        )

    # -- client: hand-offs to gateways ------------------------------------------------------------

    _HANDED: Final = (
        "request_id, subject, kind, what, token_network, partner, secrethash, payload, act_by, "
        "chain_deadline, state, outcome, gateway, created_at"
    )

    @staticmethod
    def _handed(row: Any) -> Handed:
        rid, subject, kind, what, network, partner, secrethash, payload = row[:8]
        act_by, chain_deadline, state, outcome, gateway, created_at = row[8:]
        return Handed(
            request_id=bytes(rid),
            subject=str(subject),
            kind=str(kind),
            what=str(what),
            token_network=None if network is None else Address(bytes(network)),
            partner=None if partner is None else Address(bytes(partner)),
            secrethash=None if secrethash is None else bytes(secrethash),
            payload=bytes(payload),
            act_by=None if act_by is None else float(act_by),
            chain_deadline=None if chain_deadline is None else int(chain_deadline),
            state=str(state),
            outcome=None if outcome is None else str(outcome),
            gateway=None if gateway is None else Address(bytes(gateway)),
            created_at=float(created_at),
        )

    def handoff(self, subject: str) -> Handed | None:
        row = self.conn.execute(
            f"SELECT {self._HANDED} FROM gateway_handoffs WHERE subject = ?", (subject,)
        ).fetchone()
        return None if row is None else self._handed(row)

    def handoff_by_request(self, request_id: bytes) -> Handed | None:
        row = self.conn.execute(
            f"SELECT {self._HANDED} FROM gateway_handoffs WHERE request_id = ?", (request_id,)
        ).fetchone()
        return None if row is None else self._handed(row)

    def handoffs(self, *states: str) -> list[Handed]:
        """Hand-offs in these states (all when none given), oldest first."""
        query = f"SELECT {self._HANDED} FROM gateway_handoffs"
        if states:
            query += f" WHERE state IN ({', '.join('?' * len(states))})"
        query += " ORDER BY created_at, rowid"
        return [self._handed(row) for row in self.conn.execute(query, states)]

    def add_handoff(self, handed: Handed, now: float) -> None:
        """Record a new hand-off (call inside a transaction)."""
        self.conn.execute(
            "INSERT INTO gateway_handoffs (request_id, subject, kind, what, token_network, "
            "partner, secrethash, payload, act_by, chain_deadline, state, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                handed.request_id, handed.subject, handed.kind, handed.what,
                handed.token_network, handed.partner, handed.secrethash, handed.payload,
                handed.act_by, handed.chain_deadline, handed.state, handed.created_at, now,
            ),
        )  # fmt: skip

    def set_handoff_state(
        self,
        request_id: bytes,
        state: str,
        now: float,
        *,
        outcome: str | None = None,
        gateway: Address | None = None,
        tx_hash: bytes | None = None,
        block_time: int | None = None,
    ) -> None:
        self.conn.execute(
            "UPDATE gateway_handoffs SET state = ?, outcome = COALESCE(?, outcome), "
            "gateway = COALESCE(?, gateway), outcome_tx = COALESCE(?, outcome_tx), "
            "outcome_time = COALESCE(?, outcome_time), updated_at = ? WHERE request_id = ?",
            (state, outcome, gateway, tx_hash, block_time, now, request_id),
        )

    def tries(self, request_id: bytes) -> list[TryRow]:
        rows = self.conn.execute(
            "SELECT request_id, gateway, handed_at, acked_at, refused, reason, outcome, mined "
            "FROM gateway_tries WHERE request_id = ? ORDER BY handed_at, rowid",
            (request_id,),
        )
        found = []
        for rid, gateway, handed_at, acked_at, refused, reason, outcome, mined in rows:
            found.append(
                TryRow(
                    request_id=bytes(rid),
                    gateway=Address(bytes(gateway)),
                    handed_at=float(handed_at),
                    acked_at=None if acked_at is None else float(acked_at),
                    refused=bool(refused),
                    reason=None if reason is None else str(reason),
                    outcome=None if outcome is None else str(outcome),
                    mined=bool(mined),
                )
            )
        return found

    def hand(self, request_id: bytes, gateway: Address, now: float) -> None:
        """Record that ``request_id`` goes to ``gateway`` now (again: its answers so far
        are forgotten). Call inside a transaction, before sending."""
        self.conn.execute(
            "INSERT OR REPLACE INTO gateway_tries (request_id, gateway, handed_at) "
            "VALUES (?, ?, ?)",
            (request_id, gateway, now),
        )

    def answered(
        self,
        request_id: bytes,
        gateway: Address,
        now: float,
        *,
        refused: str | None = None,
        outcome: str | None = None,
        mined: bool = False,
    ) -> bool:
        """Record a gateway's answer (an acknowledgement, a refusal or an outcome); False
        when it was never handed that request."""
        cursor = self.conn.execute(
            "UPDATE gateway_tries SET acked_at = COALESCE(acked_at, ?), "
            "refused = MAX(refused, ?), reason = COALESCE(?, reason), "
            "outcome = COALESCE(?, outcome), mined = MAX(mined, ?) "
            "WHERE request_id = ? AND gateway = ?",
            (
                now, int(refused is not None), refused, outcome, int(mined),
                request_id, gateway,
            ),
        )  # fmt: skip
        return cursor.rowcount > 0
