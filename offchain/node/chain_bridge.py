"""Between the node runtime and the chain layer: logs in, transactions out, settles on time.

Belongs here: ``ChainBridge``, which
- runs the follower and hands each batch's core inputs to the runtime, awaiting their
  commit before the follower moves its cursor (so a crash replays the batch: the core's
  chain inputs are idempotent);
- keeps the graph view's chain facts in step with the follower's channel directory;
- carries out the core's ``ContractSend*`` effects: the deferred-submission schedule
  (docs/offline.md §3, spec O-5). Each effect waits in the runtime's ``work`` table (the
  persisted schedule) until it is confirmed or provably unnecessary. Whenever the endpoint
  answers, the waiting effects are taken in order of their chain deadline (earliest
  first; none last); for each the chain is asked first whether it is still needed
  (``offchain.chain.checks``: a newer proof already there, the secret registered, the
  channel settled...), and only then is it sent through the sender's outbox (key
  ``fx:<seq>:<idx>``, so a re-run after a crash never sends twice). The first effect the
  endpoint does not take stops the round, so the order holds when the chain comes back.
  A transaction that fails is checked again: unnecessary by now, it is done; otherwise it
  is retried under a new key (``fx:<seq>:<idx>:r<n>``) a few times, then recorded as failed
  (an event: one the chain refuses for good is not retried forever);
- settles our closed channels once their window is over, naming exactly the data behind
  the balance hashes the chain holds for each side (read from the contract at settle time:
  a node restarted during the settle window has not seen the close logs again);
- sends the user's own transactions (approve + open with deposit, deposit) under
  idempotency keys, after reading what the chain would allow of a deposit
  (``deposit_room``).

Does not belong here: protocol rules, SQL, JSON-RPC details (``offchain.chain``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import Final

from web3 import Web3

from offchain.chain import calls, checks
from offchain.chain.artifacts import load_artifact
from offchain.chain.calls import BalanceData
from offchain.chain.errors import (
    ChainError,
    ChainUnavailable,
    OutboxConflict,
    ReorgTooDeep,
    TransactionFailed,
)
from offchain.chain.inputs import ChannelRecord, ChannelStage
from offchain.chain.manifest import Deployment
from offchain.chain.outbox import IntentStatus
from offchain.chain.sync import Batch, ChainFollower
from offchain.chain.transactions import TxSender
from offchain.node.gossip import GraphView
from offchain.node.runtime import NodeRuntime
from offchain.node.store import ContractSend
from offchain.node.transport import WorkKey
from offchain.protocol.channel import EndState
from offchain.protocol.offline import send_deadline
from offchain.protocol.transitions import ContractSendSecretRegister, ContractSendUpdate
from offchain.protocol.types import Address, BalanceHash, Timestamp, TokenAmount

log = logging.getLogger("smartmesh.chain")

ZERO_HASH: Final = bytes(32)
SETTLE_CHECK_INTERVAL: Final = 5.0
SCHEDULE_INTERVAL: Final = 2.0
"""Seconds between two rounds of the schedule when nothing wakes it."""
MAX_RETRIES: Final = 3
"""New keys a failed, still needed transaction is sent under before it is given up."""


class ChainBridge:
    """The node's use of one chain endpoint (follower + sender)."""

    def __init__(
        self,
        runtime: NodeRuntime,
        deployment: Deployment,
        follower: ChainFollower,
        sender: TxSender,
        graph: GraphView,
        *,
        on_graph_change: Callable[[], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.runtime = runtime
        self.deployment = deployment
        self.follower = follower
        self.sender = sender
        self.graph = graph
        self.own = runtime.address
        self._on_graph_change = on_graph_change
        self.clock = clock
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._settling: set[tuple[Address, bytes, int]] = set()
        self._work: dict[WorkKey, ContractSend] = {}
        """The schedule: effects not yet confirmed nor found unnecessary."""
        self._in_flight: set[WorkKey] = set()
        self._confirming: set[asyncio.Task[None]] = set()
        self._retries: dict[WorkKey, int] = {}
        self._wake = asyncio.Event()
        self.halted: str | None = None
        """Why the follower stopped for good (a reorganisation deeper than allowed)."""
        self.batch_listeners: list[Callable[[Batch], None]] = []
        """Called with each batch of confirmed logs once the core has committed its inputs
        (the watch service reads closes, updates and rewards of others' channels)."""

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        for record in self.follower.directory:
            self.graph.set_channel(record)
        self._on_graph_change()
        self._tasks = [
            asyncio.create_task(self._follow(), name="chain-follow"),
            asyncio.create_task(self.sender.run(self._stop), name="chain-send"),
            asyncio.create_task(self._settle_loop(), name="chain-settle"),
            asyncio.create_task(self._schedule_loop(), name="chain-schedule"),
        ]

    async def _follow(self) -> None:
        """Run the follower; a reorganisation deeper than the confirmations stops it (a
        human must look: the node's view of the chain may be wrong) and is recorded; any
        other failure is recorded and the follower restarts after a pause."""
        while not self._stop.is_set():
            try:
                await self.follower.run(self._batch, self._stop)
            except ReorgTooDeep as exc:
                self.halted = f"reorganisation deeper than the confirmations: {exc}"
                log.error("chain follower stopped: %s", self.halted)
                self._record("reorg_too_deep", {"reason": str(exc)})
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # our bug or a store failure: keep the node alive
                log.exception("chain follower failed; restarting in 5 s")
                self._record("chain_follower_failed", {"reason": repr(exc)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 5.0)

    async def stop(self) -> None:
        self._stop.set()
        self._tasks += list(self._confirming)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    # -- logs in ----------------------------------------------------------------------------

    async def _batch(self, batch: Batch) -> None:
        futures = [self.runtime.submit(event) for event in batch.inputs]
        if futures:
            await asyncio.gather(*futures)
        changed = False
        for entry in batch.logs:
            network = getattr(entry, "token_network", None)
            channel_id = getattr(entry, "channel_id", None)
            if network is None or channel_id is None:
                continue
            record = self.follower.directory.get(network, channel_id)
            if record is not None:
                self.graph.set_channel(record)
                changed = True
        if changed:
            self._on_graph_change()
        for listener in self.batch_listeners:
            listener(batch)

    # -- effects out: the deferred-submission schedule --------------------------------------

    def submit_effect(self, key: WorkKey, effect: ContractSend) -> None:
        """``runtime.chain_submit``: schedule it; it is reported done when final."""
        self._work[key] = effect
        self._wake.set()

    def scheduled(self) -> list[tuple[WorkKey, ContractSend]]:
        """The effects waiting to be confirmed, in the order they will be sent."""
        return sorted(self._work.items(), key=lambda item: self._order(item[0], item[1]))

    def deadline_of(self, effect: ContractSend) -> Timestamp | None:
        """The chain's limit for ``effect`` (None: none): an update's is the channel's
        settle deadline on chain."""
        settle = None
        if isinstance(effect, ContractSendUpdate):
            record = self.follower.directory.find(effect.token_network, self.own, effect.partner)
            if record is not None and record.settle_deadline is not None:
                settle = Timestamp(record.settle_deadline)
        return send_deadline(effect, settle)

    def _order(self, key: WorkKey, effect: ContractSend) -> tuple[bool, int, WorkKey]:
        deadline = self.deadline_of(effect)
        return (deadline is None, deadline or 0, key)

    async def _schedule_loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), SCHEDULE_INTERVAL)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                await self._round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # our bug: keep the schedule alive
                log.exception("deferred submissions: a round failed")
                self._record("schedule_failed", {"reason": repr(exc)})

    async def _round(self) -> None:
        """Send what waits, earliest deadline first, until the endpoint stops taking it."""
        for key, effect in self.scheduled():
            if key in self._in_flight or key not in self._work:
                continue
            if not await self._send(key, effect):
                return

    def intent_key(self, key: WorkKey) -> str:
        """The outbox key the effect ``key`` is (or will be) sent under now: a blind node's
        gateway client signs it under the same key, so it is one transaction either way."""
        return self._intent_key(key)

    def _intent_key(self, key: WorkKey) -> str:
        retry = self._retries.get(key, 0)
        base = f"fx:{key[0]}:{key[1]}"
        return base if retry == 0 else f"{base}:r{retry}"

    async def _needed(self, effect: ContractSend) -> checks.Needed:
        generation = None
        if not isinstance(effect, ContractSendSecretRegister):
            channel = self.runtime.state.channels.get((effect.token_network, effect.partner))
            generation = None if channel is None else int(channel.generation)
        return await checks.still_needed(
            effect,
            self.sender.endpoint,
            self.own,
            self.deployment.secret_registry,
            self.follower.directory,
            generation,
        )

    async def _send(self, key: WorkKey, effect: ContractSend) -> bool:
        """Check and send one effect; False when the endpoint did not take it (stop)."""
        intent_key = self._intent_key(key)
        what = type(effect).__name__
        known = self.sender.intent(intent_key)
        if known is None or known.status is IntentStatus.QUEUED:
            try:
                needed = await self._needed(effect)
            except ChainUnavailable as exc:
                log.debug("deferred submissions wait for the chain: %s", exc)
                return False
            except ChainError as exc:  # e.g. an unlock before the settle is seen
                log.info("%s not possible yet: %s", what, exc)
                return True
            if not needed.needed:
                if known is not None:  # recorded, never signed: it must not go out now
                    self.sender.outbox.fail(
                        intent_key, f"unnecessary: {needed.reason}", self.clock()
                    )
                self._unnecessary(key, effect, needed.reason)
                return True
            try:
                call = calls.for_effect(
                    effect, self.own, self.deployment.secret_registry, self.follower.directory
                )
                known = await self.sender.submit(intent_key, call)
            except TransactionFailed as exc:
                await self._failed(key, effect, str(exc))
                return True
            except ChainUnavailable as exc:
                log.info("deferred submissions wait for the chain: %s", exc)
                return False
            except (ChainError, OutboxConflict) as exc:
                log.info("%s not possible yet: %s", what, exc)
                return True
            if known.status is IntentStatus.QUEUED:
                return False  # the endpoint went away while signing: keep the order
        self._in_flight.add(key)
        task = asyncio.get_running_loop().create_task(self._confirm(key, effect, intent_key))
        self._confirming.add(task)
        task.add_done_callback(self._confirming.discard)
        return True

    async def _confirm(self, key: WorkKey, effect: ContractSend, intent_key: str) -> None:
        what = type(effect).__name__
        try:
            await self.sender.wait(intent_key)
        except TransactionFailed as exc:
            self._in_flight.discard(key)
            await self._failed(key, effect, str(exc))
            return
        except asyncio.CancelledError:
            self._in_flight.discard(key)
            raise
        log.info("%s confirmed (%s)", what, intent_key)
        self._in_flight.discard(key)
        self._done(key)

    async def _failed(self, key: WorkKey, effect: ContractSend, reason: str) -> None:
        """A transaction failed: done if no longer needed, else retried, at last recorded."""
        what = type(effect).__name__
        try:
            needed = await self._needed(effect)
        except ChainUnavailable:
            return  # asked again in the next round, under the same key: it is final
        except ChainError:
            needed = checks.Needed(True, reason)
        if not needed.needed:
            self._unnecessary(key, effect, needed.reason)
            return
        retry = self._retries.get(key, 0)
        if retry < MAX_RETRIES:
            self._retries[key] = retry + 1
            log.warning("%s failed (%s); retrying under a new key", what, reason)
            self._wake.set()
            return
        log.warning("%s failed for good: %s", what, reason)
        self._record("transaction_failed", {"what": what, "reason": reason})
        self._done(key)

    def _unnecessary(self, key: WorkKey, effect: ContractSend, reason: str) -> None:
        what = type(effect).__name__
        log.info("%s is not needed any more: %s", what, reason)
        self._record("submission_unnecessary", {"what": what, "reason": reason})
        self._done(key)

    def _done(self, key: WorkKey) -> None:
        self._work.pop(key, None)
        self._retries.pop(key, None)
        self.runtime.work_done(key)

    def _record(self, kind: str, data: dict[str, object]) -> None:
        store = self.runtime.store
        with store.transaction():
            store.add_event(kind, data, self.clock())

    # -- settles ----------------------------------------------------------------------------

    async def _settle_loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), SETTLE_CHECK_INTERVAL)
            if self._stop.is_set():
                return
            now = self.follower.status.latest_timestamp or int(self.clock())
            for record in self.follower.directory:
                deadline = record.settle_deadline
                if (
                    record.stage is ChannelStage.CLOSED
                    and record.has(self.own)
                    and deadline is not None
                    and now > deadline
                ):
                    marker = (record.token_network, record.channel_id, record.generation)
                    if marker not in self._settling:
                        self._settling.add(marker)
                        asyncio.get_running_loop().create_task(self.settle(record))

    async def settle_call(self, record: ChannelRecord) -> calls.ContractCall:
        """The settle of one of our closed channels, with the data the chain holds (read
        now: once the settle window is over, no proof on chain can change)."""
        partner = record.partner_of(self.own)
        channel = self.runtime.state.channels.get((record.token_network, partner))
        if channel is None:
            raise ChainError("settle: we hold no state of this channel")
        network = record.token_network
        ours = self._side_data(await self._held(network, self.own, partner), self.own, channel.our)
        theirs = self._side_data(
            await self._held(network, partner, self.own), partner, channel.partner
        )
        return calls.settle_channel(network, self.own, ours, partner, theirs)

    async def _held(self, network: Address, participant: Address, partner: Address) -> bytes:
        """The balance hash of ``participant``'s proof the chain holds (zero: none)."""
        contract = self.sender.endpoint.w3.eth.contract(
            address=Web3.to_checksum_address(network),
            abi=load_artifact("token_network").abi_list(),
            decode_tuples=True,
        )
        side = await self.sender.endpoint.call(
            "eth_call",
            contract.functions.get_participant(
                Web3.to_checksum_address(participant), Web3.to_checksum_address(partner)
            ).call(),
        )
        return bytes(side.balance_hash)

    def _side_data(self, held: bytes, side: Address, end: EndState) -> BalanceData:
        if held == ZERO_HASH:
            return BalanceData.none()
        if BalanceHash(held) == end.balance_hash:
            return BalanceData.of(end.transferred, end.locks)
        raise ChainError(
            f"settle: the chain holds a proof of 0x{side.hex()} that is not the latest we know"
        )

    async def settle(self, record: ChannelRecord) -> None:
        key = f"settle:{record.token_network.hex()}:{record.channel_id.hex()}:{record.generation}"
        try:
            await self.sender.submit(key, await self.settle_call(record))
            await self.sender.wait(key)
            log.info("channel 0x%s settled", record.channel_id.hex())
        except (ChainError, TimeoutError) as exc:
            log.warning("settle of 0x%s: %s", record.channel_id.hex(), exc)
            self._settling.discard((record.token_network, record.channel_id, record.generation))

    # -- the user's own transactions ----------------------------------------------------------

    async def deposit_room(self, token: Address, network: Address) -> tuple[int, int]:
        """(our token balance, the network's per-participant deposit limit), read now: a
        deposit beyond either is refused before any transaction (an approve included)
        instead of reverting on chain."""
        endpoint = self.sender.endpoint
        w3 = endpoint.w3
        tokens = w3.eth.contract(
            address=Web3.to_checksum_address(token), abi=load_artifact("test_token").abi_list()
        )
        channels = w3.eth.contract(
            address=Web3.to_checksum_address(network),
            abi=load_artifact("token_network").abi_list(),
        )
        held = await endpoint.call(
            "eth_call", tokens.functions.balanceOf(Web3.to_checksum_address(self.own)).call()
        )
        limit = await endpoint.call(
            "eth_call", channels.functions.participant_deposit_limit().call()
        )
        return int(held), int(limit)

    async def open_channel(
        self, token: Address, network: Address, partner: Address, settle_window: int, deposit: int
    ) -> None:
        tag = secrets.token_hex(8)
        if deposit:
            approve = f"user:{tag}:approve"
            await self.sender.submit(approve, calls.approve(token, network, deposit))
            key = f"user:{tag}:open"
            await self.sender.submit(
                key,
                calls.open_channel_with_deposit(
                    network, partner, settle_window, TokenAmount(deposit)
                ),
                depends_on=approve,
            )
        else:
            key = f"user:{tag}:open"
            await self.sender.submit(key, calls.open_channel(network, partner, settle_window))
        await self.sender.wait(key)

    async def deposit(
        self, token: Address, network: Address, partner: Address, total: int, added: int
    ) -> None:
        tag = secrets.token_hex(8)
        approve = f"user:{tag}:approve"
        await self.sender.submit(approve, calls.approve(token, network, added))
        key = f"user:{tag}:deposit"
        await self.sender.submit(
            key,
            calls.set_total_deposit(network, self.own, partner, TokenAmount(total)),
            depends_on=approve,
        )
        await self.sender.wait(key)

    async def settle_now(self, network: Address, partner: Address) -> None:
        record = self.follower.directory.find(network, self.own, partner)
        if record is None or record.stage is not ChannelStage.CLOSED:
            raise ChainError("settle: the channel is not closed on chain")
        deadline = record.settle_deadline
        now = self.follower.status.latest_timestamp or int(self.clock())
        if deadline is not None and now <= deadline:
            raise ChainError(f"settle: the settle window ends at {deadline} (now {now})")
        key = f"settle:{network.hex()}:{record.channel_id.hex()}:{record.generation}"
        await self.sender.submit(key, await self.settle_call(record))
        await self.sender.wait(key)
