"""The node's asyncio runtime: inputs in, one commit per batch, then the effects run.

Belongs here: ``NodeRuntime``, the only place where the core's effects run (DESIGN.md §1).
Every input (a user action, a peer's message, a chain event, a tick) is queued with
``submit``. The loop takes what is queued (up to ``max_batch``), runs each through the
pure ``transition``, gathers every input and what its effects leave to do as the rows of
ONE transaction (group commit: one fsync for the batch), and only once that transaction
is durable runs the effects: messages to the transport, transactions to the chain port,
notifications to waiters. A crash before the commit loses inputs nobody was told about (a
peer's message is not acknowledged yet, so it comes again; an API call had no answer
yet); a crash after it re-runs the unfinished work at start.

The commit is pipelined (with ``synchronous=FULL``): a busy runtime commits a batch
without the fsync and asks its ``LogSyncer`` helper process for it, and the event loop
goes on: the mesh and the API keep running during the fsync, and what arrives meanwhile
is already run through the core and gathered into the next batch, which is committed as
soon as the previous one is durable. So commits stay in order, one at a time; the
effects of a batch run only after its own fsync (and so after every earlier one);
``state`` is the state as of the last durable commit (what readers see), while the loop
computes ahead on its own copy. An idle runtime (nothing queued, nothing of its own in
flight) commits with the fsync inline: nobody would use the loop meanwhile, and a lone
payment's path (seven commits one after another) is spared the hand-over. A failed
write or fsync (or a dead helper) stops the loop for good: the state computed ahead was
never acted upon, and nothing more is written.

Restart: the latest snapshot, then the inputs logged after it replayed through the same
pure transition (the core is deterministic: same state, same input, same key, same
result), then the unfinished work re-run. A snapshot is written at start (so settings
changed in the config are never replayed under the old ones) and every
``snapshot_every`` inputs.

Direct payments queued to the same partner before a batch runs are folded into one
``ActionPayDirect`` (one signature, one message for all of them).

Does not belong here: protocol rules (``offchain.protocol``), SQL (``store``), sockets
(``mesh_relay``), JSON-RPC (``offchain.chain``), HTTP (``offchain.api``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from offchain.node import encoding
from offchain.node.errors import StoreError
from offchain.node.store import CONTRACT_SENDS, ContractSend, LogSyncer, Rows, Store
from offchain.node.transport import MeshTransport, WorkKey
from offchain.protocol import codec
from offchain.protocol.codec import DecodeError
from offchain.protocol.crypto import address_from_private_key
from offchain.protocol.frozen import replace
from offchain.protocol.messages import BatchEntry, PaymentId
from offchain.protocol.node import transition
from offchain.protocol.state import NodeState, Settings
from offchain.protocol.transitions import (
    ActionPayDirect,
    Effect,
    EventDirectPaymentSent,
    EventPaymentFailed,
    EventPaymentSucceeded,
    Input,
    ReceiveMessage,
    SendMessage,
    Tick,
)
from offchain.protocol.types import Address, PrivateKey, Timestamp, TokenAmount

log = logging.getLogger("smartmesh.node")

MAX_BATCH: Final = 512
MAX_DIRECT_PER_BATCH: Final = 255  # a TransferBatch carries at most 255 payments

ChainSubmit = Callable[[WorkKey, ContractSend], None]
"""Hands a transaction effect to the chain layer, which calls ``NodeRuntime.work_done``
with the key once it is confirmed (or provably unnecessary)."""

Listener = Callable[[Effect], None]


@dataclass(slots=True)
class _Queued:
    event: Input
    future: asyncio.Future[list[Effect]] | None = None
    after_commit: Callable[[], None] | None = None


@dataclass(slots=True)
class _Batch:
    """Inputs run through the core, waiting for (or in) their one commit."""

    state: NodeState  # after these inputs
    rows: Rows = field(default_factory=Rows)
    results: list[tuple[_Queued, int, list[Effect]]] = field(default_factory=list)
    refused: list[_Queued] = field(default_factory=list)
    taken: int = 0  # queued items taken into it (the max_batch budget)
    write: asyncio.Future[None] | None = None  # its fsync, asked of the helper


@dataclass(slots=True)
class _DirectQueue:
    entries: list[BatchEntry] = field(default_factory=list)
    futures: list[asyncio.Future[list[Effect]]] = field(default_factory=list)


class NodeRuntime:
    """One node: its state, store, transport and chain port on an asyncio loop."""

    def __init__(
        self,
        key: bytes,
        chain_id: int,
        store: Store,
        *,
        settings: Settings | None = None,
        clock: Callable[[], float] = time.time,
        snapshot_every: int = 1_000,
        tick_interval: float = 1.0,
        max_batch: int = MAX_BATCH,
        pipeline: bool = True,
    ) -> None:
        self.key = PrivateKey(key)
        self.address: Address = address_from_private_key(self.key)
        self.chain_id = chain_id
        self.store = store
        self.settings = settings or Settings()
        self.clock = clock
        self.snapshot_every = snapshot_every
        self.tick_interval = tick_interval
        self.max_batch = max_batch
        self.pipeline = pipeline
        """Whether a busy loop goes on while its commit's fsync runs in the helper
        (False: every commit is durable before the loop goes on)."""
        self.state = NodeState(self.address, chain_id, self.settings)
        """The state as of the last durable commit."""
        self._state = self.state  # ahead of ``state`` by the batches not yet durable
        self._open: _Batch | None = None  # computed, not yet handed to the writer
        self._writing: _Batch | None = None  # committed, its fsync under way in the helper
        self._syncer: LogSyncer | None = None
        self._broken: BaseException | None = None  # a write failed: nothing more is written
        self.transport: MeshTransport | None = None
        self.chain_submit: ChainSubmit | None = None
        self._queue: deque[_Queued] = deque()
        self._direct: dict[tuple[Address, Address], _DirectQueue] = {}
        self._wake = asyncio.Event()
        self._done_keys: list[WorkKey] = []
        self._listeners: list[Listener] = []
        self._payment_waiters: dict[int, list[asyncio.Future[Effect]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        self.crash_after_commits: int | None = None
        """Failpoint for crash tests: exit like ``kill -9`` right after this many commits
        that logged inputs (counted since the start), before their effects run (``main``
        sets it from ``SMARTMESH_FAILPOINT``, or arms it later with ``crash_after``)."""
        self._commits = 0
        self.stats = {
            "inputs": 0,
            "batches": 0,
            "ticks_skipped": 0,
            "core_errors": 0,
            "synced_by_helper": 0,  # commits whose fsync the helper process did
        }

    # -- lifecycle --------------------------------------------------------------------------

    def restore(self) -> int:
        """Load the latest snapshot and replay the inputs after it; the inputs replayed."""
        self.store.bind_identity(self.address, self.chain_id)
        restored = self.store.restore()
        state = restored.state or NodeState(self.address, self.chain_id, self.settings)
        for seq, event in restored.inputs:
            try:
                state, _ = transition(state, event, self.key)
            except Exception:  # an input that raised when it was new was never logged
                log.exception("replaying input %d raised: the core changed under the log", seq)
                raise
        if state.settings != self.settings:
            state = replace(state, settings=self.settings)
        self.state = self._state = state
        with self.store.transaction():
            self.store.snapshot(state)
        return len(restored.inputs)

    async def start(
        self, transport: MeshTransport | None = None, chain_submit: ChainSubmit | None = None
    ) -> None:
        """Restore, then run: re-run unfinished work, process inputs, tick."""
        self.transport = transport
        self.chain_submit = chain_submit
        replayed = self.restore()
        log.info(
            "node 0x%s restored: %d inputs replayed after the snapshot",
            self.address.hex(),
            replayed,
        )
        self._running = True
        if self.pipeline and self.store.synchronous == "FULL":
            self._syncer = self.store.log_syncer()
            asyncio.get_running_loop().add_reader(self._syncer.fileno(), self._on_synced)
        for work in self.store.pending_work():
            if work.kind == "send":
                if transport is not None and work.recipient is not None:
                    transport.send(work.key, work.recipient, work.data)
            elif chain_submit is not None:
                self._submit_chain(work.key, work.data)
        self._tasks = [
            asyncio.create_task(self._loop(), name="node-inputs"),
            asyncio.create_task(self._ticker(), name="node-ticks"),
        ]

    async def stop(self) -> None:
        """Finish the queued inputs, write a snapshot, stop."""
        if not self._running:
            return
        self._running = False
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                try:
                    await task
                except Exception as exc:
                    if exc is not self._broken:  # a failed write was logged already
                        raise
        self._tasks = []
        writing, self._writing = self._writing, None
        if writing is not None and self._broken is None:  # let its commit end, effects run
            assert writing.write is not None
            with contextlib.suppress(Exception):  # a failure is recorded in _broken
                await asyncio.shield(writing.write)
                self._check_write(writing)
        if self._syncer is not None:
            asyncio.get_running_loop().remove_reader(self._syncer.fileno())
            self._syncer.close()
            self._syncer = None
        if self._broken is not None:
            return  # the state computed ahead was never logged: no snapshot of it
        self._compute()  # what was queued before the stop still counts
        batch = self._open or _Batch(self._state)
        self._open = None
        self.store.mark_done(self._done_keys, batch.rows)
        self._done_keys = []
        self.store.snapshot(self._state, rows=batch.rows)
        self.store.write(batch.rows)
        self._finish(batch)

    def crash_after(self, commits: int) -> None:
        """Arm the failpoint from now: exit after ``commits`` more commits that log inputs.

        A crash test arms a node once it is idle, so that only the commits of what it does
        next count (the commits of its start, graph updates, depend on timing)."""
        self.crash_after_commits = self._commits + commits
        log.warning("failpoint armed: exiting after %d more commits", commits)

    # -- inputs -----------------------------------------------------------------------------

    def submit(
        self, event: Input, *, after_commit: Callable[[], None] | None = None
    ) -> asyncio.Future[list[Effect]]:
        """Queue ``event``; the future resolves with its effects once it is committed."""
        future: asyncio.Future[list[Effect]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(event, future, after_commit))
        self._wake.set()
        return future

    def pay_direct(
        self, token_network: Address, partner: Address, payment_id: int, amount: int
    ) -> asyncio.Future[list[Effect]]:
        """Queue a direct payment; those queued together to one partner share one proof."""
        future: asyncio.Future[list[Effect]] = asyncio.get_running_loop().create_future()
        queue = self._direct.setdefault((token_network, partner), _DirectQueue())
        queue.entries.append(BatchEntry(PaymentId(payment_id), TokenAmount(amount)))
        queue.futures.append(future)
        self._wake.set()
        return future

    def receive_payload(self, origin: bytes, payload: bytes, message_id: bytes) -> None:
        """A mesh delivery: decode it into an input, acknowledged after its commit."""
        transport = self.transport
        assert transport is not None

        def ack() -> None:
            transport.acknowledge(origin, message_id)

        try:
            message = codec.decode(payload)
        except DecodeError as exc:
            # Never processable, whoever sent it: record it and let the origin stop.
            log.warning("undecodable message from 0x%s: %s", origin.hex(), exc)
            with self.store.transaction():
                self.store.add_event(
                    "invalid_received",
                    {"sender": "0x" + origin.hex(), "reason": f"undecodable: {exc}"},
                    self.clock(),
                )
            ack()
            return
        event = ReceiveMessage(Timestamp(int(self.clock())), Address(origin), message)
        self._queue.append(_Queued(event, None, ack))
        self._wake.set()

    def work_done(self, key: WorkKey) -> None:
        """An effect's work finished (message acknowledged, transaction confirmed); it is
        recorded with the next commit (losing the mark in a crash only repeats the work)."""
        self._done_keys.append(key)
        self._wake.set()

    # -- notifications ----------------------------------------------------------------------

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every effect after its commit; returns the stop function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def payment_future(self, payment_id: int) -> asyncio.Future[Effect]:
        """A future of the terminal event of a payment we make (succeeded, failed or
        direct-sent), registered now: check the store first, then await this, and no
        event can slip in between."""
        future: asyncio.Future[Effect] = asyncio.get_running_loop().create_future()
        waiters = self._payment_waiters.setdefault(payment_id, [])
        waiters.append(future)

        def forget(done: asyncio.Future[Effect]) -> None:
            left = self._payment_waiters.get(payment_id)
            if left is not None and done in left:
                left.remove(done)
                if not left:
                    del self._payment_waiters[payment_id]

        future.add_done_callback(forget)
        return future

    async def wait_payment(self, payment_id: int) -> Effect:
        """The terminal event of a payment we make (succeeded, failed or direct-sent)."""
        return await self.payment_future(payment_id)

    # -- the loop ---------------------------------------------------------------------------

    async def _loop(self) -> None:
        while self._running:
            await self._wake.wait()
            self._wake.clear()
            self._step()
            if self._has_input() and (self._open is None or self._open.taken < self.max_batch):
                self._wake.set()
                await asyncio.sleep(0)  # let the transport and the API run between batches

    async def _ticker(self) -> None:
        while self._running:
            await asyncio.sleep(self.tick_interval)
            self._queue.append(_Queued(Tick(Timestamp(int(self.clock())))))
            self._wake.set()

    def _has_input(self) -> bool:
        return bool(self._queue or self._direct)

    def _step(self) -> None:
        """Finish the batch whose fsync returned, compute what is queued, and commit the
        next batch once none is waiting for its fsync."""
        if self._broken is not None:
            raise self._broken
        writing = self._writing
        if writing is not None and writing.write is not None and writing.write.done():
            self._writing = None
            self._check_write(writing)
        self._compute()
        if self._writing is None and (self._open is not None or self._done_keys):
            self._start_write()

    def _compute(self) -> None:
        """Run queued inputs through the core into the open batch (up to ``max_batch``)."""
        if not self._has_input():
            return
        batch = self._open
        if batch is None:
            batch = self._open = _Batch(self._state)
        if batch.taken >= self.max_batch:
            return
        items = self._take_batch(self.max_batch - batch.taken)
        batch.taken += len(items)
        state = self._state
        now = self.clock()
        rows = batch.rows
        for item in items:
            try:
                new_state, effects = transition(state, item.event, self.key)
            except Exception as exc:  # our bug: the input is refused, the node goes on
                self.stats["core_errors"] += 1
                log.exception("the core raised on %s", type(item.event).__name__)
                if item.future is not None and not item.future.done():
                    item.future.set_exception(exc)
                batch.refused.append(item)
                continue
            if isinstance(item.event, Tick) and not effects and new_state == state:
                self.stats["ticks_skipped"] += 1  # nothing happened: nothing to replay
                continue
            seq = self.store.log(item.event, effects, now, rows)
            state = new_state
            batch.results.append((item, seq, effects))
        self._state = batch.state = state

    def _check_write(self, batch: _Batch) -> None:
        """Finish ``batch`` if its write succeeded; else the runtime is broken for good."""
        assert batch.write is not None
        error = batch.write.exception()
        if error is None:
            self._finish(batch)
            return
        self._broken = error
        log.critical("writing a batch failed (%s): the node stops processing inputs", error)
        raise error

    def _start_write(self) -> None:
        batch = self._open or _Batch(self._state)
        self._open = None
        if self._done_keys:
            self.store.mark_done(self._done_keys, batch.rows)
            self._done_keys = []
        if self.store.inputs_since_snapshot() >= self.snapshot_every:
            self.store.snapshot(batch.state, rows=batch.rows)
        if not batch.rows:  # e.g. only ticks that changed nothing
            self._finish(batch)
            return
        idle = not self._has_input() and (self.transport is None or not self.transport.backlog())
        try:
            deferred = self.store.write(batch.rows, sync=idle or self._syncer is None)
            if deferred:
                assert self._syncer is not None
                self._syncer.request()
        except BaseException as exc:
            self._broken = exc
            log.critical("writing a batch failed (%s): the node stops processing inputs", exc)
            raise
        if not deferred:
            self._finish(batch)  # durable already (or synchronous=NORMAL: nothing to wait for)
            return
        self.stats["synced_by_helper"] += 1
        batch.write = asyncio.get_running_loop().create_future()
        self._writing = batch

    def _on_synced(self) -> None:
        """The helper answered (or died): the batch under way is durable, or never will be."""
        syncer = self._syncer
        assert syncer is not None
        answers = syncer.answers()
        if answers == b"":
            return
        error: Exception | None = None
        if answers is None:
            asyncio.get_running_loop().remove_reader(syncer.fileno())
            error = StoreError("the fsync helper process is gone")
        elif b"e" in answers:
            error = StoreError("fsync of the database log failed")
        writing = self._writing
        if writing is not None and writing.write is not None and not writing.write.done():
            if error is None:
                writing.write.set_result(None)
            else:
                writing.write.set_exception(error)
        elif error is not None:
            self._broken = error  # no batch under way: the next one would wait forever
        self._wake.set()

    def _take_batch(self, room: int) -> list[_Queued]:
        batch: list[_Queued] = []
        now = Timestamp(int(self.clock()))
        for (network, partner), queue in list(self._direct.items()):
            entries, futures = queue.entries, queue.futures
            for start in range(0, len(entries), MAX_DIRECT_PER_BATCH):
                chunk = tuple(entries[start : start + MAX_DIRECT_PER_BATCH])
                action = ActionPayDirect(now, network, partner, chunk)
                group = futures[start : start + MAX_DIRECT_PER_BATCH]
                batch.append(_Queued(action, _fan_out(group)))
        self._direct.clear()
        while self._queue and len(batch) < room:
            batch.append(self._queue.popleft())
        return batch

    def _finish(self, batch: _Batch) -> None:
        """The batch is durable: its state becomes ``state``, then its effects run."""
        self.state = batch.state
        results = batch.results
        if results:
            self._commits += 1  # commits that logged inputs: the persistence points
        if (
            results
            and self.crash_after_commits is not None
            and self._commits >= self.crash_after_commits
        ):
            log.error("failpoint after_commit:%d reached: exiting now", self._commits)
            os._exit(137)
        self.stats["inputs"] += len(results)
        self.stats["batches"] += 1
        for item, seq, effects in results:
            self._run_effects(seq, effects)
            if item.after_commit is not None:
                item.after_commit()
            if item.future is not None and not item.future.done():
                item.future.set_result(effects)
        for item in batch.refused:  # a core error: still acknowledge, a resend would fail again
            if item.after_commit is not None:
                item.after_commit()

    def _run_effects(self, seq: int, effects: list[Effect]) -> None:
        for idx, effect in enumerate(effects):
            if isinstance(effect, SendMessage):
                if self.transport is not None:
                    self.transport.send((seq, idx), effect.recipient, codec.encode(effect.message))
            elif isinstance(effect, CONTRACT_SENDS):
                if self.chain_submit is not None:
                    self.chain_submit((seq, idx), effect)
            elif isinstance(
                effect, EventPaymentSucceeded | EventPaymentFailed | EventDirectPaymentSent
            ):
                self._resolve_payment(effect.payment_id, effect)
            for listener in list(self._listeners):
                try:
                    listener(effect)
                except Exception:
                    log.exception("an effect listener raised")

    def _resolve_payment(self, payment_id: int, effect: Effect) -> None:
        for future in self._payment_waiters.pop(payment_id, []):
            if not future.done():
                future.set_result(effect)

    def _submit_chain(self, key: WorkKey, data: bytes) -> None:
        effect = encoding.decode(data)
        assert isinstance(effect, CONTRACT_SENDS)
        assert self.chain_submit is not None
        self.chain_submit(key, effect)


def _fan_out(futures: list[asyncio.Future[list[Effect]]]) -> asyncio.Future[list[Effect]]:
    """One future for a folded batch that resolves each caller's future."""
    combined: asyncio.Future[list[Effect]] = asyncio.get_running_loop().create_future()

    def done(result: asyncio.Future[list[Effect]]) -> None:
        for future in futures:
            if future.done():
                continue
            error = result.exception()
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result.result())

    combined.add_done_callback(done)
    return combined
