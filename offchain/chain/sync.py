"""Following the chain: confirmed logs of our contracts, in order, handed to the node once.

Belongs here: ``ChainFollower``. Each poll reads the head, and processes every block
that has ``confirmations`` blocks (itself included, as for receipts) and that it has not
processed yet, in ranges of up to ``max_range`` blocks (one ``eth_getLogs`` per range,
for the addresses of the registry, the secret registry and every token network, those
the registry creates later included; a range the endpoint refuses is split in halves,
and later ranges stay smaller for a while). For each range it decodes the logs, updates
the channel directory, maps them to the core's inputs for our address, hands the result
(``Batch``) to the node's handler, and only then moves its persisted cursor (block
number and hash) and stores the directory's changes, in one transaction. A crash between
the handler and that commit replays the range: delivery is at least once, and the core's
``Chain*`` inputs are idempotent (totals, generations, phases that only move on).

Reorgs: a block is processed only once ``confirmations - 1`` blocks are on top of it, so
a reorg shallower than ``confirmations`` cannot touch us. A deeper one is detected when
the cursor's block, or the parent of the next range, no longer has the hash we
processed: ``ReorgTooDeep``, with the common ancestor found among the remembered block
hashes (range ends and blocks with logs). It is raised, never absorbed.

Liveness: ``status`` gives the newest block seen, its timestamp and when it was seen
(device clock), the cursor and its block's timestamp (``view_time``: every log of ours
up to that chain time is applied), whether the endpoint answers and when it last did.
``assess`` turns a status into ``Liveness``: the chain is reachable when the endpoint
answers AND its newest block is at most ``max_block_age`` seconds old by the device clock
(a block from the future counts as recent: a device clock behind the chain's is the
clock's problem, reported as ``clock_offset``, not a dead endpoint). ``run`` polls
forever; a dead endpoint (``ChainUnavailable``) is retried with exponential backoff and
never stops it.

Does not belong here: decoding (``events``), what logs mean (``inputs``), SQL (``store``),
applying inputs to the core (the node's handler).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from web3 import Web3
from web3.exceptions import BlockNotFound, Web3RPCError

from offchain.chain.errors import ChainUnavailable, ReorgTooDeep
from offchain.chain.events import (
    ChainLog,
    ContractKind,
    LogDecoder,
    TokenNetworkCreatedLog,
    log_timestamp,
)
from offchain.chain.inputs import ChainInput, ChannelDirectory, ChannelRecord, inputs_for
from offchain.chain.manifest import Deployment
from offchain.chain.rpc import Endpoint, as_bytes, as_int, rpc_error_message
from offchain.chain.store import Cursor, FollowerStore, KnownNetwork
from offchain.protocol.types import Address, Timestamp

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FollowerConfig:
    """How the follower reads the chain.

    ``confirmations``: blocks a block needs, itself included, before it is processed
    (1: as soon as it is the head), as the node's ``confirmations`` setting counts them.
    ``max_range``: blocks per ``eth_getLogs`` at most. ``keep_blocks``: processed block
    hashes remembered, to find a reorg's common ancestor. ``poll_interval``: seconds
    between polls once caught up; ``retry_min`` / ``retry_max``: the backoff while the
    endpoint is unavailable.
    """

    confirmations: int = 5
    max_range: int = 1_000
    keep_blocks: int = 256
    poll_interval: float = 2.0
    retry_min: float = 1.0
    retry_max: float = 60.0

    def __post_init__(self) -> None:
        if self.confirmations < 1 or self.max_range < 1 or self.keep_blocks < 1:
            raise ValueError("confirmations, max_range and keep_blocks must be >= 1")
        if not 0 < self.retry_min <= self.retry_max or self.poll_interval <= 0:
            raise ValueError("poll_interval > 0 and 0 < retry_min <= retry_max")


@dataclass(frozen=True, slots=True)
class Batch:
    """The logs of blocks ``first_block..last_block`` (all ours, in chain order) and the
    core inputs they give our node, in the same order."""

    first_block: int
    last_block: int
    last_hash: bytes
    logs: tuple[ChainLog, ...]
    inputs: tuple[ChainInput, ...]


@dataclass(frozen=True, slots=True)
class ChainStatus:
    """What the node can tell of the chain now.

    ``latest_block`` / ``latest_timestamp``: the newest head seen (None: never reached);
    ``latest_seen_at``: device time it was read. ``confirmed_block``: the last block
    processed; ``view_time``: its timestamp (None until known since the start).
    ``last_answer``: Unix time the endpoint last answered; ``reachable``: its last call
    got an answer (see ``assess`` for the chain's reachability). ``synced``: every
    confirmed block up to the newest head seen is processed. ``error``: why the last
    poll failed, until one succeeds.
    """

    latest_block: int | None
    latest_timestamp: Timestamp | None
    confirmed_block: int | None
    last_answer: float | None
    reachable: bool
    synced: bool
    error: str | None
    latest_seen_at: float | None = None
    view_time: Timestamp | None = None


@dataclass(frozen=True, slots=True)
class Liveness:
    """Whether the node sees the chain now (docs/offline.md §1).

    ``reachable``: the endpoint answers and its newest block is recent. ``answering``:
    the endpoint answered its last call (a stale endpoint answers, yet is not reachable).
    ``block_age``: device seconds since the newest block's timestamp (negative: a block
    from the future). ``clock_offset``: chain time minus device time when the newest block
    was read (a block's lag included, so normally a little negative). ``view_time``:
    chain time up to which every log of ours is applied.
    """

    reachable: bool
    answering: bool
    block_age: float | None
    clock_offset: float | None
    view_time: Timestamp | None


def assess(status: ChainStatus, now: float, max_block_age: float) -> Liveness:
    """The chain's reachability at device time ``now`` from a follower's ``status``."""
    age = None if status.latest_timestamp is None else now - status.latest_timestamp
    offset = None
    if status.latest_timestamp is not None and status.latest_seen_at is not None:
        offset = status.latest_timestamp - status.latest_seen_at
    reachable = status.reachable and age is not None and age <= max_block_age
    return Liveness(reachable, status.reachable, age, offset, status.view_time)


Handler = Callable[[Batch], Awaitable[None]]

_GROW_AFTER = 8
"""Successful ranges after which a range shrunk by a refusal doubles again."""


@dataclass(frozen=True, slots=True)
class _Place:
    """Where a raw log says it is, read before decoding (to order and filter logs)."""

    block: int
    index: int
    block_hash: bytes
    address: Address


def _place(raw: Mapping[str, Any]) -> _Place | None:
    try:
        return _Place(
            as_int(raw["blockNumber"]),
            as_int(raw["logIndex"]),
            as_bytes(raw["blockHash"]),
            Address(as_bytes(raw["address"])),
        )
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class _Header:
    number: int
    hash: bytes
    parent: bytes
    timestamp: int


class ChainFollower:
    """Follows one deployment for the node at ``own``; state persists through ``conn``."""

    def __init__(
        self,
        endpoint: Endpoint,
        deployment: Deployment,
        own: Address,
        conn: sqlite3.Connection,
        config: FollowerConfig | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.deployment = deployment
        self.own = own
        self.config = config or FollowerConfig()
        self.store = FollowerStore(conn, deployment.registry)
        self.decoder = LogDecoder()
        self.directory = ChannelDirectory(self.store.channels())
        self._kinds: dict[Address, ContractKind] = {
            deployment.registry: ContractKind.REGISTRY,
            deployment.secret_registry: ContractKind.SECRET_REGISTRY,
        }
        self._tokens: dict[Address, Address] = {}
        for token, network in deployment.token_networks.items():
            self._add_network(token, network)
        for known in self.store.networks():
            self._add_network(known.token, known.token_network)
        self._range = self.config.max_range
        self._successes = 0
        self._latest: _Header | None = None
        self._latest_seen_at: float | None = None
        self._view: Timestamp | None = None
        self._error: str | None = None
        self._polling = asyncio.Lock()

    # --- what the node reads -------------------------------------------------------------

    @property
    def token_networks(self) -> Mapping[Address, Address]:
        """token -> token network, the manifest's and those the registry created since."""
        return MappingProxyType({token: net for net, token in self._tokens.items()})

    @property
    def range(self) -> int:
        """Blocks the next ``eth_getLogs`` asks for at most (shrinks when refused)."""
        return self._range

    @property
    def status(self) -> ChainStatus:
        cursor = self.store.cursor()
        done = cursor.block if cursor else self.deployment.start_block - 1
        latest = self._latest
        return ChainStatus(
            latest_block=latest.number if latest else None,
            latest_timestamp=Timestamp(latest.timestamp) if latest else None,
            confirmed_block=cursor.block if cursor else None,
            last_answer=self.endpoint.last_answer,
            reachable=self.endpoint.reachable,
            synced=latest is not None and done >= self._target(latest.number),
            error=self._error,
            latest_seen_at=self._latest_seen_at,
            view_time=self._view,
        )

    # --- polling -------------------------------------------------------------------------

    async def run(self, handler: Handler, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; retry an unavailable endpoint with backoff.

        ``ReorgTooDeep`` and the handler's own exceptions end the loop (raised).
        """
        delay = self.config.retry_min
        while not stop.is_set():
            try:
                await self.poll(handler)
                pause, delay = self.config.poll_interval, self.config.retry_min
            except ChainUnavailable as exc:
                logger.warning("chain unavailable, retrying in %.1f s: %s", delay, exc)
                pause, delay = delay, min(delay * 2, self.config.retry_max)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)

    async def poll(self, handler: Handler) -> int:
        """Process every confirmed block not processed yet; return how many were.

        Raises ``ChainUnavailable`` (nothing lost: the next poll resumes at the cursor) or
        ``ReorgTooDeep``.
        """
        try:
            # One poll at a time: two would hand the same range to the node twice.
            async with self._polling:
                processed = await self._poll(handler)
        except (ChainUnavailable, ReorgTooDeep) as exc:
            self._error = str(exc)
            raise
        self._error = None
        return processed

    async def _poll(self, handler: Handler) -> int:
        head = await self._header("latest")
        if head is None:
            raise ChainUnavailable("the endpoint has no latest block")
        self._latest = head
        self._latest_seen_at = self.endpoint.clock()
        target = self._target(head.number)
        cursor = self.store.cursor()
        if cursor is not None:
            if cursor.block > head.number:
                logger.info(
                    "the endpoint is behind our cursor (%d < %d)", head.number, cursor.block
                )
                return 0
            # Most polls find no new block: the head is the cursor's block, already fetched.
            found = head if head.number == cursor.block else await self._header(cursor.block)
            if found is None:
                return 0
            if found.hash != cursor.hash:
                await self._reorg(cursor, found.hash)
            self._view = Timestamp(found.timestamp)
        start = cursor.block + 1 if cursor else self.deployment.start_block
        processed = 0
        while start <= target:
            end = min(target, start + self._range - 1)
            cursor = await self._process(start, end, cursor, handler)
            processed += end - start + 1
            start = end + 1
        return processed

    def _target(self, head: int) -> int:
        """The newest block with enough confirmations when ``head`` is the newest block."""
        return head - self.config.confirmations + 1

    async def _process(
        self, start: int, end: int, parent: Cursor | None, handler: Handler
    ) -> Cursor:
        headers: dict[int, _Header] = {}

        async def header(number: int) -> _Header:
            if number not in headers:
                found = await self._header(number)
                if found is None:
                    raise ChainUnavailable(f"the endpoint lost block {number}")
                headers[number] = found
            return headers[number]

        first = await header(start)
        if parent is not None and first.parent != parent.hash:
            await self._reorg(parent, None)
        raws = await self._logs(start, end, list(self._kinds))
        new_networks = await self._new_networks(raws, header)
        if new_networks:
            since = min(n.block for n in new_networks)
            raws += await self._logs(since, end, [n.token_network for n in new_networks])
        last = await header(end)

        unique: dict[tuple[int, int], tuple[_Place, Mapping[str, Any]]] = {}
        for raw in raws:
            place = _place(raw)
            if place is None:
                # Not even where it was: the endpoint sent garbage; count it, go on.
                self.decoder.malformed += 1
                logger.warning("skipped a log without a valid position: %r", raw)
                continue
            unique[(place.block, place.index)] = (place, raw)
        logs: list[ChainLog] = []
        inputs: list[ChainInput] = []
        changed: dict[tuple[Address, bytes], ChannelRecord] = {}
        remembered = {end: last.hash}
        for key in sorted(unique):
            place, raw = unique[key]
            timestamp = log_timestamp(raw)
            if timestamp is None or place.block == end:
                found = await header(place.block)
                timestamp = found.timestamp
                # Every block of the range is confirmed: a log from another fork than
                # the headers we read means the chain changed under a confirmed block.
                if place.block_hash != found.hash:
                    raise ReorgTooDeep(place.block, found.hash, place.block_hash, None)
            remembered[place.block] = place.block_hash
            kind = self._kinds.get(place.address)
            if kind is None:
                continue  # an endpoint that ignores the address filter
            log = self.decoder.decode(raw, kind, timestamp)
            if log is None:
                continue
            logs.append(log)
            record = self.directory.apply(log)
            if record is not None:
                changed[(record.token_network, record.channel_id)] = record
            inputs.extend(inputs_for(log, self.own, self.directory))

        cursor = Cursor(end, last.hash)
        if logs:
            batch = Batch(start, end, last.hash, tuple(logs), tuple(inputs))
            try:
                await handler(batch)
            except BaseException:
                # The range will be processed again: forget what it did in memory.
                self.directory = ChannelDirectory(self.store.channels())
                raise
        self.store.advance(
            cursor,
            sorted(remembered.items()),
            self.config.keep_blocks,
            networks=new_networks,
            channels=changed.values(),
        )
        self._view = Timestamp(last.timestamp)
        return cursor

    async def _new_networks(
        self, raws: Sequence[Mapping[str, Any]], header: Callable[[int], Awaitable[_Header]]
    ) -> list[KnownNetwork]:
        """Token networks the registry created in these logs that we did not follow yet."""
        found: list[KnownNetwork] = []
        for raw in raws:
            place = _place(raw)
            if place is None or place.address != self.deployment.registry:
                continue
            timestamp = log_timestamp(raw)
            if timestamp is None:
                timestamp = (await header(place.block)).timestamp
            # A throwaway decoder: the main pass counts this log once, later.
            log = LogDecoder().decode(raw, ContractKind.REGISTRY, timestamp)
            if isinstance(log, TokenNetworkCreatedLog) and log.token_network not in self._kinds:
                self._add_network(log.token, log.token_network)
                found.append(KnownNetwork(log.token_network, log.token, log.block))
        return found

    def _add_network(self, token: Address, network: Address) -> None:
        self._kinds[network] = ContractKind.TOKEN_NETWORK
        self._tokens[network] = token

    async def _logs(self, start: int, end: int, addresses: list[Address]) -> list[Any]:
        """The logs of ``addresses`` in ``start..end``, split while the endpoint refuses."""
        query: Any = {
            "fromBlock": start,
            "toBlock": end,
            "address": [Web3.to_checksum_address(a) for a in addresses],
        }
        try:
            logs = list(
                await self.endpoint.call("eth_getLogs", self.endpoint.w3.eth.get_logs(query))
            )
        except Web3RPCError as exc:
            if start == end:
                raise ChainUnavailable(
                    f"the endpoint refuses eth_getLogs of block {start}: {rpc_error_message(exc)}"
                ) from exc
            size = end - start + 1
            self._range = max(1, min(self._range, size // 2))
            self._successes = 0
            logger.info("eth_getLogs of %d blocks refused (%s): halving", size, exc)
            middle = (start + end) // 2
            return await self._logs(start, middle, addresses) + await self._logs(
                middle + 1, end, addresses
            )
        self._successes += 1
        if self._successes >= _GROW_AFTER and self._range < self.config.max_range:
            self._range = min(self.config.max_range, self._range * 2)
            self._successes = 0
        return logs

    async def _header(self, block: int | Literal["latest"]) -> _Header | None:
        try:
            found = await self.endpoint.call(
                "eth_getBlockByNumber", self.endpoint.w3.eth.get_block(block)
            )
        except BlockNotFound:
            return None
        return _Header(
            number=int(found["number"]),
            hash=bytes(found["hash"]),
            parent=bytes(found["parentHash"]),
            timestamp=int(found["timestamp"]),
        )

    async def _reorg(self, cursor: Cursor, found: bytes | None) -> None:
        """Raise ``ReorgTooDeep`` for ``cursor``, naming the newest block both chains share."""
        ancestor: int | None = None
        for number, hash_ in self.store.block_hashes():
            header = await self._header(number)
            if header is not None and header.hash == hash_:
                ancestor = number
                break
        if found is None:
            header = await self._header(cursor.block)
            found = header.hash if header else None
        logger.error("reorg below block %d (common ancestor %s)", cursor.block, ancestor)
        raise ReorgTooDeep(cursor.block, cursor.hash, found, ancestor)
