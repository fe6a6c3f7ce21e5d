"""The node's database: one SQLite file in WAL mode, a lock file, a versioned schema.

Belongs here: ``Store``, which owns the connection and keeps, in one transaction per batch
of inputs (group commit):
- the input log (``inputs``) and snapshots of the core state (``snapshots``), so a
  restart is "latest snapshot, then replay the inputs after it";
- the work the inputs' effects left to do (``work``): messages to send until the
  destination acknowledged them, transactions to hand to the chain layer; a row is
  written before the effect runs and marked done after, so a crash re-runs exactly the
  unfinished ones;
- what the user reads: payments (``payments``) and the event log (``events``), written
  from the effects in the same transaction as the input that caused them, and from the
  chain inputs about our channels (``channel_opened``, ``channel_deposit``,
  ``channel_withdraw``, ``channel_closed``, ``channel_settled``);
- channel graphs, stored once per content (``blobs``) and referenced from inputs and
  snapshots: a graph can be large and changes far less often than payments happen.

What a batch writes is gathered first as ``Rows`` (plain tuples: ``log``, ``mark_done``,
``snapshot``) and then written by ``write`` in one transaction (``executemany`` per table),
or, inside ``transaction()``, just before its COMMIT. ``write(rows, sync=False)`` commits
without waiting for the disk, and a ``LogSyncer`` (a helper process: an fsync of the WAL
file on request) makes it durable later: with ``synchronous=FULL`` the runtime's event
loop then never blocks on an fsync (see ``runtime``). Until the helper answers, such a
commit survives a crash of the process (it is in the OS's cache) but not a power cut;
nothing may act on it before (the runtime does not). Every other commit
(``transaction()``, the chain layer's writes) is durable when it returns, as
``synchronous`` says.

The schema is versioned (``PRAGMA user_version``) and upgraded in place by ``MIGRATIONS``;
a database newer than the code is refused, never altered. The chain layer's tables
(its cursor, channel directory and outbox) are a migration here too, and so are the
watch service's (``watch_store``): one database.

A lock file (``fcntl.flock``) stops a second process from opening the same database: two
runtimes signing from one state would sign two different proofs with one nonce.

Does not belong here: deciding anything (the core), running effects (``runtime``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import fcntl
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from offchain.chain import schema as chain_schema
from offchain.node import encoding, watch_store
from offchain.node.errors import StoreError, StoreLockedError
from offchain.protocol import codec
from offchain.protocol.routes import ChannelGraph
from offchain.protocol.state import NodeState
from offchain.protocol.transitions import (
    ActionPay,
    ActionPayDirect,
    ActionUpdateGraph,
    ChainChannelClosed,
    ChainChannelOpened,
    ChainChannelSettled,
    ChainDeposit,
    ChainWithdraw,
    ContractSendClose,
    ContractSendCoopSettle,
    ContractSendSecretRegister,
    ContractSendUnlock,
    ContractSendUpdate,
    ContractSendWithdraw,
    Effect,
    EventActionRefused,
    EventDirectPaymentSent,
    EventInvalidReceived,
    EventMediated,
    EventPaymentFailed,
    EventPaymentReceived,
    EventPaymentSucceeded,
    Input,
    SendMessage,
)
from offchain.protocol.types import Address

ContractSend = (
    ContractSendSecretRegister
    | ContractSendClose
    | ContractSendUpdate
    | ContractSendUnlock
    | ContractSendWithdraw
    | ContractSendCoopSettle
)
CONTRACT_SENDS: Final = (
    ContractSendSecretRegister,
    ContractSendClose,
    ContractSendUpdate,
    ContractSendUnlock,
    ContractSendWithdraw,
    ContractSendCoopSettle,
)

_V1: Final = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE inputs (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)",
    "CREATE TABLE snapshots (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)",
    "CREATE TABLE blobs (hash BLOB PRIMARY KEY, data BLOB NOT NULL)",
    # kind: 'send' (recipient, data = the message's wire bytes) or 'chain' (data = the
    # encoded ContractSend effect). done: 0 to do, 1 done.
    """CREATE TABLE work (
        seq INTEGER NOT NULL, idx INTEGER NOT NULL, kind TEXT NOT NULL,
        recipient BLOB, data BLOB NOT NULL, done INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (seq, idx))""",
    "CREATE INDEX work_todo ON work (done, kind)",
    """CREATE TABLE payments (
        direction TEXT NOT NULL, payment_id INTEGER NOT NULL, partner BLOB NOT NULL,
        token_network BLOB NOT NULL, amount TEXT NOT NULL, fee TEXT NOT NULL,
        status TEXT NOT NULL, reason TEXT, failed_hop BLOB, secrethash BLOB,
        created_at REAL NOT NULL, finished_at REAL,
        PRIMARY KEY (direction, payment_id, partner))""",
    "CREATE INDEX payments_by_id ON payments (payment_id)",
    "CREATE INDEX payments_by_status ON payments (status, created_at)",
    """CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL,
        kind TEXT NOT NULL, data TEXT NOT NULL)""",
)

_V3: Final = (
    # Payment ids are unique per initiator only. A received row now names its initiator
    # (``payer``; empty when the node does not know it, and for sent rows), and the key
    # takes it in: two payers' payments of one id through the same partner were one row
    # (the second was dropped). SQLite cannot change a primary key in place: copy.
    """CREATE TABLE payments_v3 (
        direction TEXT NOT NULL, payment_id INTEGER NOT NULL, partner BLOB NOT NULL,
        token_network BLOB NOT NULL, amount TEXT NOT NULL, fee TEXT NOT NULL,
        status TEXT NOT NULL, reason TEXT, failed_hop BLOB, secrethash BLOB,
        created_at REAL NOT NULL, finished_at REAL, payer BLOB NOT NULL DEFAULT X'',
        PRIMARY KEY (direction, payment_id, partner, payer))""",
    # Spelt out, not `_PAYMENT_COLUMNS`: a released migration never changes.
    """INSERT INTO payments_v3 (direction, payment_id, partner, token_network, amount, fee,
        status, reason, failed_hop, secrethash, created_at, finished_at)
        SELECT direction, payment_id, partner, token_network, amount, fee, status, reason,
        failed_hop, secrethash, created_at, finished_at FROM payments""",
    "DROP TABLE payments",
    "ALTER TABLE payments_v3 RENAME TO payments",
    "CREATE INDEX payments_by_id ON payments (payment_id)",
    "CREATE INDEX payments_by_status ON payments (status, created_at)",
)

MIGRATIONS: list[tuple[int, Sequence[str]]] = [
    (1, _V1),
    (2, chain_schema.SCHEMA),
    (3, _V3),
    (4, watch_store.SCHEMA),
    (5, watch_store.CLIENT_SCHEMA),
]
"""(version, statements): each brings the schema from version - 1 to version. Append
only; never edit a released one. Version 2 adds the chain layer's follower cursor,
channel directory and transaction outbox (``offchain.chain.schema``); version 3 the
initiator of received payments (``payer``) to the payments' key; version 4 the watch
service's requests held and delegations acknowledged (``watch_store``); version 5 a blind
node's hand-offs to gateways (``watch_store.CLIENT_SCHEMA``)."""

_PAYMENT_COLUMNS: Final = (
    "direction, payment_id, partner, token_network, amount, fee, status, reason, failed_hop, "
    "secrethash, created_at, finished_at, payer"
)


def schema_version() -> int:
    """The version this code writes."""
    return max(version for version, _ in MIGRATIONS)


@dataclass(slots=True)
class Rows:
    """What one transaction writes, gathered as plain values (see the module docstring).

    The payments table is written statement by statement in order (an update may follow
    the insert of the same row in one batch); the other tables are written table by
    table (inputs, blobs, work, done marks, events, then the snapshot and its pruning),
    which gives the same result: no statement of one reads what another writes.
    """

    inputs: list[tuple[int, bytes]] = field(default_factory=list)
    blobs: dict[bytes, bytes] = field(default_factory=dict)
    work: list[tuple[int, int, str, bytes | None, bytes]] = field(default_factory=list)
    done: list[tuple[int, int]] = field(default_factory=list)
    payments: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    events: list[tuple[float, str, str]] = field(default_factory=list)
    snapshot: tuple[int, bytes, int] | None = None  # (seq, data, how many to keep)

    def __bool__(self) -> bool:
        return bool(
            self.inputs or self.blobs or self.work or self.done or self.payments or self.events
        ) or (self.snapshot is not None)


class LogSyncer:
    """A helper process that fsyncs the WAL file whenever asked, so that the asker's event
    loop neither waits for the disk nor shares its interpreter lock with a thread.

    ``request`` writes one byte to the helper's stdin; for each request the helper
    answers one byte on its stdout (``fileno``, for ``loop.add_reader``) once an fsync
    that began after the request has returned: ``k`` (durable) or ``e`` (the fsync
    failed). An fsync covers every commit made before it began, so requests queued
    together share one. A handed-over thread did the same at about 45 us more CPU per
    commit (the interpreter lock going back and forth) than an fsync inline; a pipe write
    and read cost a few. The helper exits at the end of its stdin: when this process
    closes it, or dies (it ignores SIGINT and SIGTERM, which a terminal or a service
    manager sends to the whole process group while the node still stops gently).
    """

    def __init__(self, wal: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-S", "-c", _SYNC_HELPER, str(wal)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self._requests = self.process.stdin.fileno()
        self._answers = self.process.stdout.fileno()
        os.set_blocking(self._answers, False)

    def fileno(self) -> int:
        """Readable when answers came."""
        return self._answers

    def request(self) -> None:
        """Ask for an fsync of everything committed so far."""
        os.write(self._requests, b"s")

    def answers(self) -> bytes | None:
        """The answers that came (``k``/``e`` each), ``b""`` if none yet, ``None`` once
        the helper is gone (it died: nothing asked of it is known to be durable)."""
        try:
            data = os.read(self._answers, 4096)
        except BlockingIOError:
            return b""
        return data or None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        assert self.process.stdout is not None
        self.process.stdout.close()


_SYNC_HELPER: Final = """
import os, signal, sys
# Ctrl-C or a service manager's SIGTERM reach the whole process group: the node stops
# gently and still needs its fsyncs; the helper ends at the end of its stdin.
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
wal = os.open(sys.argv[1], os.O_RDONLY)
while True:
    asked = os.read(0, 4096)
    if not asked:
        break
    try:
        os.fsync(wal)
        answer = b"k"
    except OSError:
        answer = b"e"
    os.write(1, answer * len(asked))
"""


@dataclass(frozen=True, slots=True)
class Restored:
    """What a restart reads: the latest snapshot and the inputs logged after it."""

    snapshot_seq: int
    state: NodeState | None
    inputs: list[tuple[int, Input]]


@dataclass(frozen=True, slots=True)
class Work:
    """One unfinished effect: a message to (re)send or a transaction to hand over."""

    seq: int
    idx: int
    kind: str  # "send" | "chain"
    recipient: bytes | None
    data: bytes

    @property
    def key(self) -> tuple[int, int]:
        return (self.seq, self.idx)


class Store:
    """One node's database. Open with ``Store.open``; close with ``close``."""

    def __init__(
        self, path: Path, conn: sqlite3.Connection, lock_fd: int, synchronous: str = "FULL"
    ) -> None:
        self.path = path
        self.conn = conn
        self.synchronous = synchronous
        self._lock_fd = lock_fd
        self._seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM inputs").fetchone()[0]
        snap = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM snapshots").fetchone()[0]
        self._snapshot_seq = int(snap)
        self._seq = max(self._seq, snap)
        self._in_transaction = False
        self._rows: Rows | None = None  # what the open transaction() writes at its end
        # id(graph) -> (graph, hash, encoded) of graphs already encoded; the graph is kept
        # so its id is not reused while cached. The blob is written again (INSERT OR
        # IGNORE) with every row that refers to it: the pruning after a snapshot may have
        # dropped it since it was cached.
        self._graph_refs: dict[int, tuple[ChannelGraph, bytes, bytes]] = {}

    # -- lifecycle --------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, synchronous: str = "FULL") -> Store:
        """Open (or create) the database at ``path``, locked for this process.

        ``synchronous``: FULL (default) survives power loss; NORMAL survives a crash of
        the process (kill -9) but may lose the last commits on power loss.
        """
        if synchronous not in ("FULL", "NORMAL"):
            raise StoreError("synchronous must be FULL or NORMAL")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_path = path.with_name(path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            holder = _read_pid(lock_path)
            raise StoreLockedError(
                f"{path} is in use by another process{f' (pid {holder})' if holder else ''}"
            ) from exc
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            _migrate(conn, path)
        except sqlite3.DatabaseError as exc:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise StoreError(f"{path}: not a usable database: {exc}") from exc
        except BaseException:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise
        return cls(path, conn, fd, synchronous)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()
        if self._lock_fd >= 0:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = -1

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic commit on ``conn``; nested calls join the outer one. What ``log``,
        ``mark_done`` and ``snapshot`` gather inside it is written just before the COMMIT."""
        if self._in_transaction:
            yield
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._in_transaction = True
        self._rows = Rows()
        try:
            yield
            _write_rows(self.conn, self._rows)
        except BaseException:
            self._in_transaction = False
            self._rows = None
            self.conn.execute("ROLLBACK")
            raise
        self._in_transaction = False
        self._rows = None
        self.conn.execute("COMMIT")

    def write(self, rows: Rows, *, sync: bool = True) -> bool:
        """Write ``rows`` in one transaction; whether an fsync of the log must follow.

        ``sync=True``: durable (as ``synchronous`` says) when this returns. ``sync=False``
        with ``synchronous=FULL``: committed without the fsync, which a ``LogSyncer`` does
        (returns True); with NORMAL there is nothing to wait for (returns False).
        """
        assert not self._in_transaction, "write() inside transaction()"
        deferred = not sync and self.synchronous == "FULL"
        conn = self.conn
        if deferred:  # this commit only; the pragma is back to FULL before any other
            conn.execute("PRAGMA synchronous=NORMAL")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                _write_rows(conn, rows)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            if deferred:
                conn.execute("PRAGMA synchronous=FULL")
        return deferred

    def log_syncer(self) -> LogSyncer:
        """A helper process that fsyncs this database's WAL file on request."""
        return LogSyncer(Path(f"{self.path}-wal"))

    def _target(self, rows: Rows | None, what: str) -> Rows:
        if rows is not None:
            return rows
        assert self._in_transaction and self._rows is not None, f"{what}() outside a transaction"
        return self._rows

    # -- identity ---------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def bind_identity(self, address: bytes, chain_id: int) -> None:
        """Record which node and chain this database belongs to, or check that it does."""
        known = (self.meta("address"), self.meta("chain_id"))
        wanted = ("0x" + address.hex(), str(chain_id))
        if known == (None, None):
            with self.transaction():
                self.set_meta("address", wanted[0])
                self.set_meta("chain_id", wanted[1])
        elif known != wanted:
            raise StoreError(
                f"{self.path} belongs to account {known[0]} on chain {known[1]}, "
                f"not {wanted[0]} on chain {wanted[1]}"
            )

    # -- the state machine log ------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        return int(self._seq)

    def log(
        self, event: Input, effects: Sequence[Effect], now: float, rows: Rows | None = None
    ) -> int:
        """Record one input and what its effects leave to do or to show; its seq.

        Into ``rows`` (written later by ``write``), or inside ``transaction``: nothing is
        visible (or durable) before the commit. Inputs get their seq in the order logged.
        """
        rows = self._target(rows, "log")
        self._seq += 1
        seq = self._seq
        rows.inputs.append((seq, self._encode_input(event, rows)))
        channel_event = _CHANNEL_EVENTS.get(type(event))
        if channel_event is not None:
            rows.events.append((now, channel_event, _dumps(_plain(event))))
        if isinstance(event, ActionPay):
            self._payment_started(rows, event, now)
        elif isinstance(event, ActionPayDirect):
            # The core refuses a batch as a whole (e.g. more than the channel can spend):
            # then its payments are failed at once, not pending forever.
            refused = next((e for e in effects if isinstance(e, EventActionRefused)), None)
            status, reason = ("pending", None) if refused is None else ("failed", "rejected")
            finished = None if refused is None else now
            for entry in event.payments:
                self._payment_row(
                    rows, "sent", entry.payment_id, event.partner, event.token_network,
                    entry.amount, 0, status, reason, None, None, now, finished,
                )  # fmt: skip
        work: list[tuple[int, int, str, bytes | None, bytes]] = []
        for idx, effect in enumerate(effects):
            if isinstance(effect, SendMessage):
                work.append((seq, idx, "send", effect.recipient, codec.encode(effect.message)))
            elif isinstance(effect, CONTRACT_SENDS):
                work.append((seq, idx, "chain", None, encoding.encode(effect)))
            else:
                self._project(rows, effect, now)
        rows.work.extend(work)
        return int(seq)

    def snapshot(self, state: NodeState, keep: int = 2, rows: Rows | None = None) -> None:
        """Store ``state`` as of the last logged input; drop what older snapshots needed
        (into ``rows``, or inside ``transaction``)."""
        rows = self._target(rows, "snapshot")
        graphs = {network: self._graph_ref(graph, rows) for network, graph in state.graphs.items()}
        body = encoding.to_tree(dataclasses.replace(state, graphs={}))
        body["graphs"] = {"$m": [["0x" + n.hex(), "0x" + h.hex()] for n, h in graphs.items()]}
        rows.snapshot = (self._seq, _dumps(body).encode(), keep)
        self._snapshot_seq = self._seq

    def restore(self) -> Restored:
        """The latest snapshot and every input after it, decoded."""
        row = self.conn.execute(
            "SELECT seq, data FROM snapshots ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        state: NodeState | None = None
        since = 0
        if row is not None:
            since = int(row[0])
            tree = _json(row[1])
            refs = tree.pop("graphs", {"$m": []})
            tree["graphs"] = {"$m": []}
            decoded = encoding.from_tree(tree)
            if not isinstance(decoded, NodeState):
                raise StoreError(f"snapshot {since} is not a node state")
            graphs = {
                Address(bytes.fromhex(n[2:])): self._load_graph(bytes.fromhex(h[2:]))
                for n, h in refs["$m"]
            }
            state = dataclasses.replace(decoded, graphs=graphs)
        inputs = [
            (int(seq), self._decode_input(data))
            for seq, data in self.conn.execute(
                "SELECT seq, data FROM inputs WHERE seq > ? ORDER BY seq", (since,)
            )
        ]
        return Restored(since, state, inputs)

    def inputs_since_snapshot(self) -> int:
        """Inputs logged after the last snapshot (written or gathered)."""
        return int(self._seq) - self._snapshot_seq

    # -- unfinished work --------------------------------------------------------------------

    def pending_work(self, kind: str | None = None) -> list[Work]:
        query = "SELECT seq, idx, kind, recipient, data FROM work WHERE done = 0"
        args: tuple[Any, ...] = ()
        if kind is not None:
            query += " AND kind = ?"
            args = (kind,)
        return [Work(*row) for row in self.conn.execute(query + " ORDER BY seq, idx", args)]

    def mark_done(self, keys: Sequence[tuple[int, int]], rows: Rows | None = None) -> None:
        """Mark unfinished work done (into ``rows``, or inside ``transaction``)."""
        self._target(rows, "mark_done").done.extend(keys)

    # -- what the user reads ----------------------------------------------------------------

    def add_event(self, kind: str, data: dict[str, object], now: float) -> None:
        """Record an event now, on ``conn`` (outside a batch; inside ``transaction`` it
        commits with it)."""
        self.conn.execute(
            "INSERT INTO events (time, kind, data) VALUES (?, ?, ?)", (now, kind, _dumps(data))
        )

    def events(self, since: int, limit: int) -> list[tuple[int, float, str, dict[str, Any]]]:
        rows = self.conn.execute(
            "SELECT seq, time, kind, data FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (since, limit),
        )
        return [(int(s), float(t), str(k), json.loads(d)) for s, t, k, d in rows]

    def payments(
        self, where: str = "", args: Sequence[Any] = (), limit: int = 100, offset: int = 0
    ) -> list[sqlite3.Row]:
        cursor = self.conn.cursor()
        cursor.row_factory = sqlite3.Row  # type: ignore[assignment]
        query = "SELECT * FROM payments"
        if where:
            query += " WHERE " + where
        query += " ORDER BY created_at DESC, payment_id DESC LIMIT ? OFFSET ?"
        return list(cursor.execute(query, (*args, limit, offset)))

    # -- internals ----------------------------------------------------------------------------

    def _payment_started(self, rows: Rows, action: ActionPay, now: float) -> None:
        self._payment_row(
            rows, "sent", action.payment_id, action.target, action.token_network, action.amount,
            0, "pending", None, None, action.secrethash, now, None,
        )  # fmt: skip

    def _payment_row(self, rows: Rows, *values: Any, payer: bytes = b"") -> None:
        direction, payment_id, partner, network, amount, fee, status, reason, hop, sh, t, f = values
        rows.payments.append((
            _INSERT_PAYMENT,
            (direction, payment_id, partner, network, str(amount), str(fee), status, reason,
             hop, sh, t, f, payer),
        ))  # fmt: skip

    def _project(self, rows: Rows, effect: Effect, now: float) -> None:
        """Payments and the event log, from a notification effect."""
        match effect:
            case EventPaymentSucceeded():
                rows.payments.append((
                    _FINISH_PAYMENT,
                    ("succeeded", str(effect.fee), None, None, now, effect.payment_id,
                     effect.target),
                ))  # fmt: skip
                self._event(rows, "payment_succeeded", effect, now)
            case EventPaymentFailed():
                rows.payments.append((
                    _FAIL_PAYMENT,
                    (effect.reason.value, effect.failed_hop, now, effect.payment_id),
                ))  # fmt: skip
                self._event(rows, "payment_failed", effect, now)
            case EventDirectPaymentSent():
                rows.payments.append((
                    _FINISH_PAYMENT,
                    ("succeeded", "0", None, None, now, effect.payment_id, effect.partner),
                ))  # fmt: skip
                self._event(rows, "direct_payment_sent", effect, now)
            case EventPaymentReceived():
                # Outside the offline window: kept, but the merchant view must say so.
                note = "offline_window" if effect.outside_window else None
                self._payment_row(
                    rows, "received", effect.payment_id, effect.payer, effect.token_network,
                    effect.amount, 0, "succeeded", note, None, None, now, now,
                    payer=effect.initiator or b"",
                )  # fmt: skip
                self._event(rows, "payment_received", effect, now)
            case EventMediated():
                self._event(rows, "mediated", effect, now)
            case EventInvalidReceived():
                self._event(rows, "invalid_received", effect, now)
            case EventActionRefused():
                self._event(rows, "action_refused", effect, now)
            case _:
                self._event(rows, _snake(type(effect).__name__), effect, now)

    def _event(self, rows: Rows, kind: str, effect: Effect, now: float) -> None:
        rows.events.append((now, kind, _dumps(_plain(effect))))

    def _encode_input(self, event: Input, rows: Rows) -> bytes:
        if isinstance(event, ActionUpdateGraph):
            ref = self._graph_ref(event.graph, rows)
            tree = encoding.to_tree(dataclasses.replace(event, graph=_EMPTY_GRAPH))
            tree["graph"] = {"$ref": "0x" + ref.hex()}
            return json.dumps(tree, separators=(",", ":")).encode()
        return encoding.encode(event)

    def _decode_input(self, data: bytes) -> Input:
        tree = _json(data)
        ref = tree.get("graph") if isinstance(tree, dict) else None
        if isinstance(ref, dict) and "$ref" in ref:
            tree["graph"] = {"$": "ChannelGraph", "edges": []}
            event = encoding.from_tree(tree)
            event = dataclasses.replace(
                event, graph=self._load_graph(bytes.fromhex(ref["$ref"][2:]))
            )
        else:
            event = encoding.from_tree(tree)
        if not isinstance(event, _INPUT_TYPES):
            raise StoreError(f"logged input is a {type(event).__name__}")
        return typing.cast(Input, event)

    def _graph_ref(self, graph: ChannelGraph, rows: Rows) -> bytes:
        known = self._graph_refs.get(id(graph))
        if known is not None:
            _, digest, data = known
        else:
            data = encoding.encode(graph)
            digest = hashlib.sha256(data).digest()
            if len(self._graph_refs) > 64:
                self._graph_refs.clear()
            self._graph_refs[id(graph)] = (graph, digest, data)
        rows.blobs[digest] = data
        return digest

    def _load_graph(self, digest: bytes) -> ChannelGraph:
        row = self.conn.execute("SELECT data FROM blobs WHERE hash = ?", (digest,)).fetchone()
        if row is None:
            raise StoreError(f"graph {digest.hex()} missing from the database")
        graph = encoding.decode(row[0])
        if not isinstance(graph, ChannelGraph):
            raise StoreError(f"blob {digest.hex()} is not a graph")
        return graph


_INSERT_PAYMENT: Final = (
    f"INSERT OR IGNORE INTO payments ({_PAYMENT_COLUMNS}) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_FINISH_PAYMENT: Final = (
    "UPDATE payments SET status = ?, fee = ?, reason = ?, failed_hop = ?, finished_at = ? "
    "WHERE direction = 'sent' AND payment_id = ? AND partner = ?"
)
_FAIL_PAYMENT: Final = (
    "UPDATE payments SET status = 'failed', reason = ?, failed_hop = ?, finished_at = ? "
    "WHERE direction = 'sent' AND payment_id = ? AND status = 'pending'"
)


def _write_rows(conn: sqlite3.Connection, rows: Rows) -> None:
    """Execute ``rows`` on ``conn`` inside its open transaction (see ``Rows``)."""
    if rows.inputs:
        conn.executemany("INSERT INTO inputs (seq, data) VALUES (?, ?)", rows.inputs)
    if rows.blobs:
        conn.executemany(
            "INSERT OR IGNORE INTO blobs (hash, data) VALUES (?, ?)", list(rows.blobs.items())
        )
    if rows.work:
        conn.executemany(
            "INSERT INTO work (seq, idx, kind, recipient, data) VALUES (?, ?, ?, ?, ?)", rows.work
        )
    if rows.done:
        conn.executemany("UPDATE work SET done = 1 WHERE seq = ? AND idx = ?", rows.done)
    start = 0
    payments = rows.payments
    while start < len(payments):  # runs of one statement, in order
        end = start + 1
        while end < len(payments) and payments[end][0] is payments[start][0]:
            end += 1
        conn.executemany(payments[start][0], [params for _, params in payments[start:end]])
        start = end
    if rows.events:
        conn.executemany("INSERT INTO events (time, kind, data) VALUES (?, ?, ?)", rows.events)
    if rows.snapshot is not None:
        seq, data, keep = rows.snapshot
        conn.execute("INSERT OR REPLACE INTO snapshots (seq, data) VALUES (?, ?)", (seq, data))
        older = conn.execute(
            "SELECT seq FROM snapshots ORDER BY seq DESC LIMIT -1 OFFSET ?", (keep,)
        ).fetchall()
        if older:
            oldest_kept = conn.execute(
                "SELECT MIN(seq) FROM (SELECT seq FROM snapshots ORDER BY seq DESC LIMIT ?)",
                (keep,),
            ).fetchone()[0]
            conn.execute("DELETE FROM snapshots WHERE seq < ?", (oldest_kept,))
            conn.execute("DELETE FROM inputs WHERE seq <= ?", (oldest_kept,))
            conn.execute("DELETE FROM work WHERE done = 1 AND seq <= ?", (oldest_kept,))
            _drop_unused_graphs(conn)


def _drop_unused_graphs(conn: sqlite3.Connection) -> None:
    used: set[bytes] = set()
    for (data,) in conn.execute("SELECT data FROM snapshots"):
        for _, ref in _json(data).get("graphs", {"$m": []})["$m"]:
            used.add(bytes.fromhex(ref[2:]))
    for (data,) in conn.execute("SELECT data FROM inputs WHERE data LIKE '%\"$ref\"%'"):
        used.add(bytes.fromhex(_json(data)["graph"]["$ref"][2:]))
    for (digest,) in conn.execute("SELECT hash FROM blobs").fetchall():
        if digest not in used:
            conn.execute("DELETE FROM blobs WHERE hash = ?", (digest,))


_dumps: Final = encoding.dumps


_EMPTY_GRAPH: Final = ChannelGraph.from_edges(())
_CHANNEL_EVENTS: Final[dict[type, str]] = {
    ChainChannelOpened: "channel_opened",
    ChainDeposit: "channel_deposit",
    ChainWithdraw: "channel_withdraw",
    ChainChannelClosed: "channel_closed",
    ChainChannelSettled: "channel_settled",
}
"""Chain inputs (about our channels: the follower makes no other) the event log shows."""
_INPUT_TYPES: Final = typing.get_args(Input)


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    current = int(conn.execute("PRAGMA user_version").fetchone()[0])
    target = schema_version()
    if current > target:
        raise StoreError(
            f"{path} has schema version {current}, newer than this release ({target}): "
            "upgrade smartmesh, do not downgrade"
        )
    for version, statements in MIGRATIONS:
        if version <= current:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {int(version)}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise StoreError(f"corrupt row: {exc}") from exc


def _read_pid(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _snake(name: str) -> str:
    out = "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
    return out.removeprefix("event_")


def _plain(value: object) -> dict[str, object]:
    """An effect as JSON-able fields: bytes as 0x hex, ints as decimal strings."""
    result: dict[str, object] = {}
    for item in dataclasses.fields(value):  # type: ignore[arg-type]
        result[item.name] = _plain_value(getattr(value, item.name))
    return result


def _plain_value(value: object) -> object:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    return str(value)
