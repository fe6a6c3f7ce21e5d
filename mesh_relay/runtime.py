"""The asyncio driver of one ``MeshNode``: links in, effects out, timers, snapshots, app API.

Belongs here: ``MeshRuntime``, the only place where the core's effects run. It feeds the
node what the link adapters report (``links.LinkEvents``), carries out the returned
effects in order (frames to the adapters' senders, deliveries and outcomes to the
application), calls ``tick`` when ``next_timer`` says, and keeps the pending store on disk
(``persistence.SnapshotFile``): restored at start, written within ``snapshot_interval``
of a change (only when its bytes changed) and at stop. The application API: ``send``
(returns the message id), ``outcome`` (await delivered or expired), ``subscribe`` (a
queue of deliveries and outcomes) or ``listen`` (a callback for them), ``status``.

Time is the wall clock (``time.time``): hellos and expiries are absolute Unix times that
other nodes compare with theirs. A peer's bad frame never raises out of the core; an
exception that does is our bug: it is logged with its traceback and counted
(``core_errors``), and the relay keeps serving its other neighbours.

Does not belong here: sockets (adapters), the command line and its config file (``cli``),
the control socket protocol (``control``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

from mesh_relay.config import Link, MeshConfig
from mesh_relay.effects import (
    Deliver,
    Effect,
    EventDelivered,
    EventExpired,
    EventInvalidFrame,
    SendFrame,
)
from mesh_relay.errors import ConfigError
from mesh_relay.identity import Address, as_address
from mesh_relay.links import FrameSender, LinkAdapter, Received
from mesh_relay.node import MeshNode
from mesh_relay.persistence import SnapshotFile

log = logging.getLogger("mesh_relay")

AppEvent = Deliver | EventDelivered | EventExpired
"""What the application hears: payloads for it, and the fate of what it sent."""

_RESOLVED_MEMORY = 65_536
"""Outcomes remembered for ``outcome`` calls that come after the event."""
_INVALID_LOG_INTERVAL = 10.0


class Outcome(enum.Enum):
    """The fate of a message this node sent."""

    DELIVERED = "delivered"
    EXPIRED = "expired"


class MeshRuntime:
    """One mesh node on an asyncio loop, its links and its snapshot file."""

    def __init__(
        self,
        config: MeshConfig,
        private_key: bytes,
        adapters: Sequence[LinkAdapter],
        *,
        snapshot: Path | None = None,
        snapshot_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        seed: bytes | None = None,
    ) -> None:
        if snapshot_interval <= 0:
            raise ConfigError("snapshot_interval must be positive")
        self.config = config
        self.node = MeshNode(config, private_key, seed or os.urandom(32))
        self.address: Address = self.node.address
        self.adapters = list(adapters)
        self.stats: Counter[str] = Counter()
        self._snapshot = SnapshotFile(snapshot) if snapshot is not None else None
        self._snapshot_interval = snapshot_interval
        self._clock = clock
        self._senders: dict[str, FrameSender] = {}
        self._links: dict[str, Link] = {}
        self._listeners: list[Callable[[AppEvent], None]] = []
        self._queues: dict[asyncio.Queue[AppEvent], Callable[[], None]] = {}
        self._waiters: dict[bytes, list[asyncio.Future[Outcome]]] = {}
        self._resolved: OrderedDict[bytes, Outcome] = OrderedDict()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._snapshot_task: asyncio.Task[None] | None = None
        self._dirty = False
        self._last_saved: bytes | None = None
        self._saving = asyncio.Lock()
        self._running = False
        self._last_invalid_log = 0.0
        self.restored = (0, 0)
        """(own messages, frames in custody) loaded from the snapshot at start."""

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Lock and restore the snapshot, open every adapter, start the timers."""
        self._loop = asyncio.get_running_loop()
        if self._snapshot is not None:
            self._snapshot.lock()
            try:
                data = self._snapshot.load()
                if data is not None:
                    self._run(self.node.restore(data, self._clock()))
                    self._last_saved = data
                    self.restored = (self.node.pending_count(), self.node.custody_count())
                    log.info(
                        "restored snapshot %s: %d own messages, %d frames in custody",
                        self._snapshot.path,
                        *self.restored,
                    )
            except BaseException:
                self._snapshot.unlock()
                raise
        self._running = True
        started: list[LinkAdapter] = []
        try:
            for adapter in self.adapters:
                await adapter.start(self)
                started.append(adapter)
        except BaseException:
            for adapter in started:
                await adapter.close()
            self._running = False
            if self._snapshot is not None:
                self._snapshot.unlock()
            raise
        if self._snapshot is not None:
            self._snapshot_task = asyncio.create_task(self._snapshot_loop(), name="snapshots")
        self._arm()

    async def stop(self) -> None:
        """Close the links, write the final snapshot, release the lock. Idempotent."""
        if not self._running:
            return
        self._running = False
        for adapter in self.adapters:
            try:
                await adapter.close()
            except Exception:  # a broken adapter must not stop the final snapshot
                log.exception("closing %s failed", adapter.name)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._snapshot_task is not None:
            self._snapshot_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._snapshot_task
            self._snapshot_task = None
        if self._snapshot is not None:
            async with self._saving:
                data = self.node.snapshot()
                if data != self._last_saved:
                    self._snapshot.save(data)
                    self._last_saved = data
                    self.stats["snapshots_written"] += 1
            self._snapshot.unlock()
            log.info(
                "final snapshot %s: %d own messages, %d frames in custody",
                self._snapshot.path,
                self.node.pending_count(),
                self.node.custody_count(),
            )
        for waiters in self._waiters.values():
            for future in waiters:
                future.cancel()
        self._waiters.clear()

    async def __aenter__(self) -> MeshRuntime:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    # -- application API ------------------------------------------------------------------

    def send(self, destination: bytes, payload: bytes, lifetime: float = 300.0) -> bytes:
        """Queue ``payload`` for ``destination`` for ``lifetime`` seconds; its message id.

        Raises ``MeshValidationError`` for bad arguments and ``QueueFull`` when too many
        messages are unresolved. Exactly one outcome follows (``outcome``, ``subscribe``).
        """
        if not self._running:
            raise RuntimeError("MeshRuntime is not running")
        now = self._clock()
        message_id = self.node.send(as_address(destination), payload, now + lifetime, now)
        self._dirty = True
        self._arm()
        return message_id

    def acknowledge(self, origin: bytes, message_id: bytes) -> None:
        """Acknowledge a ``Deliver`` end to end (only with ``MeshConfig.app_acks``): call it
        once what the payload made the application do is on disk."""
        if not self._running:
            return
        self._run(self._guard(self.node.acknowledge, origin, message_id, self._clock()))
        self._dirty = True
        self._arm()

    async def outcome(self, message_id: bytes) -> Outcome:
        """Wait for the fate of a message this node sent (since its start or restore)."""
        known = self._resolved.get(message_id)
        if known is not None:
            return known
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(message_id, []).append(future)
        return await future

    def subscribe(self, maxsize: int = 0) -> asyncio.Queue[AppEvent]:
        """A queue that gets every delivery and outcome from now on. A bounded queue that
        is full loses events (counted in ``stats['subscriber_overflow']``)."""
        queue: asyncio.Queue[AppEvent] = asyncio.Queue(maxsize)
        self._queues[queue] = self.listen(lambda event: self._offer(queue, event))
        return queue

    def unsubscribe(self, queue: asyncio.Queue[AppEvent]) -> None:
        stop = self._queues.pop(queue, None)
        if stop is not None:
            stop()

    def listen(self, callback: Callable[[AppEvent], None]) -> Callable[[], None]:
        """Call ``callback`` with every delivery and outcome, as the effect runs (it must
        not block); returns the function that stops it. The cheapest way to consume
        events at high rates: no queue, no task switch."""
        self._listeners.append(callback)

        def stop() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(callback)

        return stop

    def status(self) -> dict[str, object]:
        """A JSON-ready view: address, links, neighbours, routes, queues, counters."""
        node = self.node
        counters: dict[str, int] = dict(node.stats)
        for name, value in self.stats.items():
            counters[f"runtime.{name}"] = value
        for adapter in self.adapters:
            for name, value in adapter.stats.items():
                counters[f"{adapter.name}.{name}"] = value
        return {
            "address": "0x" + self.address.hex(),
            "links": sorted(self._links),
            "adapters": [adapter.describe() for adapter in self.adapters],
            "neighbours": sorted("0x" + a.hex() for a in node.neighbour_addresses()),
            "destinations": sorted("0x" + a.hex() for a in node.routing.destinations()),
            "pending": node.pending_count(),
            "custody": node.custody_count(),
            "restored": {"pending": self.restored[0], "custody": self.restored[1]},
            "stats": dict(sorted(counters.items())),
        }

    async def save_snapshot(self) -> bool:
        """Write the snapshot now if it changed; True when written."""
        if self._snapshot is None:
            return False
        async with self._saving:
            self._dirty = False
            data = self.node.snapshot()
            if data == self._last_saved:
                return False
            await asyncio.to_thread(self._snapshot.save, data)
            self._last_saved = data
            self.stats["snapshots_written"] += 1
            return True

    # -- LinkEvents (called by adapters) --------------------------------------------------

    def link_up(self, link: Link, send: FrameSender) -> None:
        if not self._running:
            return
        try:
            effects = self.node.link_up(link, self._clock())
        except ConfigError as exc:
            self.stats["links_refused"] += 1
            log.error("link %s refused: %s", link.link_id, exc)
            return
        self._senders[link.link_id] = send
        self._links[link.link_id] = link
        log.info("link up: %s (MTU %d)", link.link_id, link.mtu)
        self._run(effects)
        self._arm()

    def link_down(self, link_id: str) -> None:
        if self._senders.pop(link_id, None) is None:
            return
        self._links.pop(link_id, None)
        log.info("link down: %s", link_id)
        if self._running:
            self._run(self._guard(self.node.link_down, link_id, self._clock()))
            self._dirty = True
            self._arm()

    def frames_received(self, link_id: str, frames: Received) -> None:
        if not self._running:
            return
        # One batch per read: the node coalesces the hop acks the batch owes.
        self._run(self._guard(self.node.receive_frames, link_id, frames, self._clock()))
        self._dirty = True
        self._arm()

    # -- effects and timers ---------------------------------------------------------------

    def _run(self, effects: list[Effect]) -> None:
        senders = self._senders
        for effect in effects:
            if type(effect) is SendFrame:
                sender = senders.get(effect.link_id)
                if sender is None:
                    self.stats["send_no_link"] += 1
                else:
                    sender(effect.link_addr, effect.data)
            elif isinstance(effect, Deliver):
                self._publish(effect)
            elif isinstance(effect, EventDelivered):
                self._resolve(effect.message_id, Outcome.DELIVERED)
                self._publish(effect)
            elif isinstance(effect, EventExpired):
                self._resolve(effect.message_id, Outcome.EXPIRED)
                self._publish(effect)
            elif isinstance(effect, EventInvalidFrame):
                self._invalid(effect.reason)

    def _publish(self, event: AppEvent) -> None:
        for callback in self._listeners:
            try:
                callback(event)
            except Exception:
                self.stats["listener_errors"] += 1
                log.exception("an event listener raised")

    def _offer(self, queue: asyncio.Queue[AppEvent], event: AppEvent) -> None:
        try:
            queue.put_nowait(event)
        except asyncio.QueueFull:
            self.stats["subscriber_overflow"] += 1

    def _resolve(self, message_id: bytes, outcome: Outcome) -> None:
        self._resolved[message_id] = outcome
        if len(self._resolved) > _RESOLVED_MEMORY:
            self._resolved.popitem(last=False)
        for future in self._waiters.pop(message_id, ()):
            if not future.done():
                future.set_result(outcome)

    def _invalid(self, reason: str) -> None:
        self.stats["invalid_frames"] += 1
        now = time.monotonic()
        # A flooding neighbour must not flood the log too: one line per interval.
        if now - self._last_invalid_log >= _INVALID_LOG_INTERVAL:
            self._last_invalid_log = now
            log.warning(
                "invalid frame dropped: %s (%d so far)", reason, self.stats["invalid_frames"]
            )
        else:
            log.debug("invalid frame dropped: %s", reason)

    def _guard(self, call: Callable[..., list[Effect]], *args: object) -> list[Effect]:
        try:
            return call(*args)
        except Exception:
            self._core_error(getattr(call, "__name__", "core"))
            return []

    def _core_error(self, where: str) -> None:
        self.stats["core_errors"] += 1
        log.exception("bug: MeshNode.%s raised; the input is dropped", where)

    def _arm(self) -> None:
        """Make sure ``tick`` runs no later than the node's ``next_timer``."""
        if not self._running or self._loop is None:
            return
        when = self.node.next_timer
        if when is None:
            return
        if self._timer is not None:
            if self._timer_when <= when:
                return
            self._timer.cancel()
        self._timer_when = when
        self._timer = self._loop.call_later(max(0.0, when - self._clock()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if not self._running:
            return
        # The loop's timers may fire a hair early against the wall clock: the timer was
        # for ``_timer_when``, so that much time has passed as far as the node is concerned.
        now = max(self._clock(), self._timer_when)
        self._run(self._guard(self.node.tick, now))
        self._dirty = True
        self._arm()

    async def _snapshot_loop(self) -> None:
        while True:
            await asyncio.sleep(self._snapshot_interval)
            if not self._dirty:
                continue
            try:
                await self.save_snapshot()
            except Exception:
                # Disk full or gone: keep relaying, keep trying; the operator sees the log.
                self.stats["snapshot_errors"] += 1
                log.exception("writing the snapshot failed")
