"""The transaction outbox: every transaction the node means to send, persisted first.

Belongs here: the outbox tables (``SCHEMA``) and ``Outbox``, which records and reads them.
An intent is recorded under an idempotency key the caller chooses, before anything is
signed; each signed attempt (the raw transaction and its hash) is recorded before it is
broadcast; a replacement is another attempt with the same nonce. So after a crash every
transaction that may be on its way is known by hash and can be re-broadcast or found by
its receipt, and a key that was confirmed is never sent again.

Statuses move one way: ``QUEUED`` (recorded, not signed) -> ``SENT`` (signed, nonce
fixed) -> ``CONFIRMED`` or ``FAILED``; ``QUEUED`` may go straight to ``FAILED`` (reverted
at estimation, or its dependency failed).

Does not belong here: signing, fees, broadcasting, receipts (``transactions``).
"""

from __future__ import annotations

import enum
import sqlite3
from dataclasses import dataclass
from typing import Any, Final

from offchain.chain.calls import ContractCall
from offchain.chain.errors import OutboxConflict
from offchain.chain.store import create_tables as _create_tables
from offchain.chain.store import write
from offchain.protocol.types import Address

SCHEMA: Final[tuple[str, ...]] = (
    """CREATE TABLE IF NOT EXISTS chain_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL UNIQUE,
        sender BLOB NOT NULL,
        target BLOB NOT NULL,
        data BLOB NOT NULL,
        value TEXT NOT NULL,
        description TEXT NOT NULL,
        depends_on TEXT,
        status TEXT NOT NULL,
        nonce INTEGER,
        gas INTEGER,
        tx_hash BLOB,
        block INTEGER,
        gas_used INTEGER,
        reason TEXT,
        dropped INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS chain_outbox_attempts (
        tx_hash BLOB PRIMARY KEY,
        key TEXT NOT NULL REFERENCES chain_outbox (key),
        raw_tx BLOB NOT NULL,
        max_fee TEXT,
        priority_fee TEXT,
        gas_price TEXT,
        signed_at REAL NOT NULL,
        broadcast_at REAL
    )""",
    "CREATE INDEX IF NOT EXISTS chain_outbox_attempts_key ON chain_outbox_attempts (key)",
)
"""The outbox tables (statements safe to run twice)."""


def create_tables(conn: sqlite3.Connection) -> None:
    """Create the outbox tables (tests and tools; the node runs ``SCHEMA`` in migrations)."""
    _create_tables(conn, SCHEMA)


class IntentStatus(enum.Enum):
    QUEUED = "queued"
    SENT = "sent"
    CONFIRMED = "confirmed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One signed transaction of an intent. EIP-1559 fees, or a legacy ``gas_price``."""

    tx_hash: bytes
    raw_tx: bytes
    max_fee: int | None
    priority_fee: int | None
    gas_price: int | None
    signed_at: float
    broadcast_at: float | None = None


@dataclass(frozen=True, slots=True)
class Intent:
    """A transaction the node means to send, under the caller's idempotency ``key``.

    ``attempts``: oldest first, all with ``nonce``; any of them may be the one mined.
    ``tx_hash``, ``block``, ``gas_used``: the mined attempt once known. ``reason``: why it
    failed; ``last_error``: the last transient trouble (a refused broadcast...).
    """

    key: str
    call: ContractCall
    depends_on: str | None
    status: IntentStatus
    nonce: int | None
    gas: int | None
    attempts: tuple[Attempt, ...]
    tx_hash: bytes | None
    block: int | None
    gas_used: int | None
    reason: str | None
    dropped: bool
    last_error: str | None
    created_at: float
    updated_at: float

    @property
    def final(self) -> bool:
        return self.status in (IntentStatus.CONFIRMED, IntentStatus.FAILED)


_COLUMNS = (
    "key, target, data, value, description, depends_on, status, nonce, gas, tx_hash, block,"
    " gas_used, reason, dropped, last_error, created_at, updated_at"
)


def _int(value: str | None) -> int | None:
    return int(value) if value is not None else None


def _text(value: int | None) -> str | None:
    return str(value) if value is not None else None


class Outbox:
    """The intents of one sending address in the node's database."""

    def __init__(self, conn: sqlite3.Connection, sender: Address) -> None:
        self.conn = conn
        self.sender = sender

    # --- reading -----------------------------------------------------------------------

    def get(self, key: str) -> Intent | None:
        row = self.conn.execute(
            f"SELECT {_COLUMNS} FROM chain_outbox WHERE key = ? AND sender = ?",
            (key, self.sender),
        ).fetchone()
        return self._intent(row) if row else None

    def unfinished(self) -> list[Intent]:
        """Intents still queued or sent, in the order they were recorded."""
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM chain_outbox WHERE sender = ? AND status IN (?, ?)"
            " ORDER BY id",
            (self.sender, IntentStatus.QUEUED.value, IntentStatus.SENT.value),
        ).fetchall()
        return [self._intent(row) for row in rows]

    def highest_nonce(self) -> int | None:
        """The highest nonce any of our intents was signed with."""
        row = self.conn.execute(
            "SELECT MAX(nonce) FROM chain_outbox WHERE sender = ?", (self.sender,)
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def _intent(self, row: Any) -> Intent:
        (key, target, data, value, description, depends_on, status, nonce, gas, tx_hash) = row[:10]
        block, gas_used, reason, dropped, last_error, created_at, updated_at = row[10:]
        attempts = self.conn.execute(
            "SELECT tx_hash, raw_tx, max_fee, priority_fee, gas_price, signed_at, broadcast_at"
            " FROM chain_outbox_attempts WHERE key = ? ORDER BY signed_at, rowid",
            (key,),
        ).fetchall()
        return Intent(
            key=key,
            call=ContractCall(Address(bytes(target)), bytes(data), int(value), description),
            depends_on=depends_on,
            status=IntentStatus(status),
            nonce=nonce,
            gas=gas,
            attempts=tuple(
                Attempt(bytes(h), bytes(raw), _int(mf), _int(pf), _int(gp), signed, sent)
                for h, raw, mf, pf, gp, signed, sent in attempts
            ),
            tx_hash=bytes(tx_hash) if tx_hash is not None else None,
            block=block,
            gas_used=gas_used,
            reason=reason,
            dropped=bool(dropped),
            last_error=last_error,
            created_at=created_at,
            updated_at=updated_at,
        )

    # --- writing -----------------------------------------------------------------------

    def add(self, key: str, call: ContractCall, depends_on: str | None, now: float) -> Intent:
        """Record the intent ``key`` for ``call``, or return it if it is already recorded.

        ``OutboxConflict`` if ``key`` names another call, or ``depends_on`` no intent.
        """
        if not key:
            raise OutboxConflict("an intent needs a non-empty key")
        existing = self.get(key)
        if existing is not None:
            if (existing.call.to, existing.call.data, existing.call.value, existing.depends_on) != (
                call.to,
                call.data,
                call.value,
                depends_on,
            ):
                raise OutboxConflict(f"intent {key!r} already names another transaction")
            return existing
        if depends_on is not None and self.get(depends_on) is None:
            raise OutboxConflict(f"intent {key!r} depends on unknown intent {depends_on!r}")
        if self.conn.execute("SELECT 1 FROM chain_outbox WHERE key = ?", (key,)).fetchone():
            raise OutboxConflict(f"intent {key!r} belongs to another sender")
        with write(self.conn) as conn:
            conn.execute(
                "INSERT INTO chain_outbox (key, sender, target, data, value, description,"
                " depends_on, status, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    self.sender,
                    call.to,
                    call.data,
                    str(call.value),
                    call.description,
                    depends_on,
                    IntentStatus.QUEUED.value,
                    now,
                    now,
                ),
            )
        intent = self.get(key)
        assert intent is not None
        return intent

    def record_attempt(self, key: str, nonce: int, gas: int, attempt: Attempt) -> None:
        """Record a signed attempt (before it is broadcast); the intent becomes ``SENT``."""
        with write(self.conn) as conn:
            conn.execute(
                "INSERT INTO chain_outbox_attempts (tx_hash, key, raw_tx, max_fee, priority_fee,"
                " gas_price, signed_at, broadcast_at) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                (
                    attempt.tx_hash,
                    key,
                    attempt.raw_tx,
                    _text(attempt.max_fee),
                    _text(attempt.priority_fee),
                    _text(attempt.gas_price),
                    attempt.signed_at,
                ),
            )
            conn.execute(
                "UPDATE chain_outbox SET status = ?, nonce = ?, gas = ?, updated_at = ?"
                " WHERE key = ?",
                (IntentStatus.SENT.value, nonce, gas, attempt.signed_at, key),
            )

    def mark_broadcast(self, tx_hash: bytes, now: float) -> None:
        with write(self.conn) as conn:
            conn.execute(
                "UPDATE chain_outbox_attempts SET broadcast_at = ? WHERE tx_hash = ?",
                (now, tx_hash),
            )
            conn.execute(
                "UPDATE chain_outbox SET last_error = NULL, updated_at = ? WHERE key ="
                " (SELECT key FROM chain_outbox_attempts WHERE tx_hash = ?)",
                (now, tx_hash),
            )

    def confirm(self, key: str, tx_hash: bytes, block: int, gas_used: int, now: float) -> None:
        self._finish(key, IntentStatus.CONFIRMED, now, tx_hash=tx_hash, block=block, gas=gas_used)

    def fail(
        self,
        key: str,
        reason: str,
        now: float,
        tx_hash: bytes | None = None,
        block: int | None = None,
        dropped: bool = False,
    ) -> None:
        self._finish(
            key,
            IntentStatus.FAILED,
            now,
            tx_hash=tx_hash,
            block=block,
            reason=reason,
            dropped=dropped,
        )

    def note_error(self, key: str, error: str, now: float) -> None:
        """Remember a transient trouble of ``key`` (shown to the operator; retried)."""
        with write(self.conn) as conn:
            conn.execute(
                "UPDATE chain_outbox SET last_error = ?, updated_at = ? WHERE key = ?",
                (error, now, key),
            )

    def _finish(
        self,
        key: str,
        status: IntentStatus,
        now: float,
        *,
        tx_hash: bytes | None = None,
        block: int | None = None,
        gas: int | None = None,
        reason: str | None = None,
        dropped: bool = False,
    ) -> None:
        with write(self.conn) as conn:
            conn.execute(
                "UPDATE chain_outbox SET status = ?, tx_hash = ?, block = ?, gas_used = ?,"
                " reason = ?, dropped = ?, updated_at = ? WHERE key = ? AND status IN (?, ?)",
                (
                    status.value,
                    tx_hash,
                    block,
                    gas,
                    reason,
                    int(dropped),
                    now,
                    key,
                    IntentStatus.QUEUED.value,
                    IntentStatus.SENT.value,
                ),
            )
