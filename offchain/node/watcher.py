"""The watch role of a node: requests taken, held, acted on before their deadlines.

Belongs here: ``ChainReader`` (what the watcher reads of the chain: its view, the time,
one channel's facts, a secret's registration, what a settle retained for locks,
receipts) and ``Watcher``, which
- takes requests from any mesh origin (``offer``), judges them (``offchain.watch.rules``)
  against the chain and what it holds, writes the accepted ones to the database, and only
  then acknowledges the mesh message and answers with a ``WatchAck`` (a crash in between
  makes the origin send the request again; the answer is then the same);
- on every pass (each second, and at once when a request or a batch of logs arrives)
  plans each held request from fresh chain facts (``offchain.watch.plan``), earliest
  deadline first, and carries the steps out: transactions through the node's
  ``TxSender`` under ``watch:...`` idempotency keys (a key is sent once, ever), raw
  transactions of blind nodes by ``eth_sendRawTransaction``; it tells the client each
  outcome (``WatchOutcome``) and records it (events ``watch_submitted``,
  ``watch_outcome``, ``watch_reward``);
- sends a signed ``ChainBeacon`` every minute while it sees the chain, to its channel
  partners, its mesh neighbours and its clients.

A blind watcher (no answer from its endpoint, or no block processed yet) refuses new
requests ("chain not reachable") and waits: what it holds stays held.

Testing only: ``drop_submissions`` makes a watcher that accepts and acknowledges every
request (and sends its beacons) but never acts on any: the "gateway that drops
submissions" of the attack tests (setting ``watch_drop_submissions``).

Does not belong here: the wire format and the decisions (``offchain.watch``), the SQL
(``watch_store``), the client side (``delegation``), routing 0xA2 payloads
(``watch_service``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import BlockNotFound, TransactionNotFound, Web3RPCError

from offchain.chain import calls
from offchain.chain.artifacts import load_artifact
from offchain.chain.calls import BalanceData, ContractCall
from offchain.chain.errors import ChainError, ChainUnavailable, TransactionFailed
from offchain.chain.events import ChannelClosedLog, DelegateRewardedLog, NonClosingUpdatedLog
from offchain.chain.inputs import ChannelRecord, ChannelStage
from offchain.chain.manifest import Deployment
from offchain.chain.outbox import IntentStatus
from offchain.chain.rpc import Endpoint, rpc_error_message
from offchain.chain.sync import Batch, ChainFollower
from offchain.chain.transactions import TxSender
from offchain.node.store import Store
from offchain.node.watch_store import Item, WatchStore
from offchain.protocol.crypto import sha256
from offchain.protocol.types import (
    Address,
    BalanceHash,
    ChannelId,
    Generation,
    Nonce,
    PrivateKey,
    Timestamp,
    TokenAmount,
)
from offchain.watch import plan, rules
from offchain.watch.facts import ChannelFacts, SideOnChain, Stage
from offchain.watch.plan import Finish, Receipt, Step, Submit, Wait
from offchain.watch.rules import Verdict
from offchain.watch.wire import (
    MAX_TEXT,
    Action,
    BalancePreimage,
    ChainBeacon,
    DelegateUpdate,
    OutcomeStatus,
    RawTransaction,
    Reason,
    RegisterSecret,
    Request,
    Service,
    Unlock,
    WatchAck,
    WatchOutcome,
    decode,
    encode,
)
from offchain.watch.wire import UNSIGNED as UNSIGNED_SIGNATURE

log = logging.getLogger("smartmesh.watch")

WATCH_INTERVAL: Final = 1.0
"""Seconds between two passes over the held requests (a request or a batch of logs
starts one at once)."""
BEACON_INTERVAL: Final = 60.0
GREET_INTERVAL: Final = 2.0
"""Seconds between two looks for recipients that have not had a beacon yet."""
BEACON_TTL: Final = 3
ANSWER_LIFETIME: Final = 6 * 3600.0
"""Seconds the mesh keeps trying to deliver an ack or an outcome: a blind client learns
it when a path back exists."""
BEACON_LIFETIME: Final = 60.0
MAX_HELD_PER_CLIENT: Final = 4_096
INTAKE_LIMIT: Final = 256
"""Requests waiting to be judged; more are not acknowledged (their origin sends them
again later): the mesh's own retry is the backpressure."""
REBROADCAST: Final = 30.0
CONFIRMED: Final = IntentStatus.CONFIRMED
STATE_NONE: Final = 0
STATE_CLOSED: Final = 2
"""``get_channel``'s states (0 none or settled, 1 open, 2 closed)."""
ZERO_TX: Final = bytes(32)

Send = Callable[[Address, bytes, float], bytes | None]
"""Queue a payload on the mesh for a destination (lifetime in seconds); the message id,
or None when the mesh refused it (queue full)."""


def _side(info: Any) -> SideOnChain:
    return SideOnChain(
        Nonce(int(info.nonce)),
        BalanceHash(bytes(info.balance_hash)),
        Address(bytes.fromhex(str(info.delegate)[2:])),
        TokenAmount(int(info.reward)),
    )


_STAGES: Final = {
    ChannelStage.OPENED: Stage.OPENED,
    ChannelStage.CLOSED: Stage.CLOSED,
    ChannelStage.SETTLED: Stage.SETTLED,
}


class ChainReader:
    """The chain as the watcher needs it, through the node's endpoint and follower."""

    def __init__(self, endpoint: Endpoint, follower: ChainFollower, deployment: Deployment) -> None:
        self.endpoint = endpoint
        self.follower = follower
        self.deployment = deployment
        w3 = endpoint.w3
        self._networks = load_artifact("token_network").abi_list()
        self._registry = w3.eth.contract(
            address=Web3.to_checksum_address(deployment.secret_registry),
            abi=load_artifact("secret_registry").abi_list(),
        )
        self._view: tuple[int, Timestamp] | None = None
        self._head: int | None = None

    async def begin_pass(self) -> None:
        """Read the head: a pass reads every channel at it (one consistent state)."""
        w3 = self.endpoint.w3
        self._head = int(await self.endpoint.call("eth_blockNumber", w3.eth.block_number))

    def _network(self, network: Address) -> Any:
        return self.endpoint.w3.eth.contract(
            address=Web3.to_checksum_address(network), abi=self._networks, decode_tuples=True
        )

    async def view_time(self) -> Timestamp | None:
        """The timestamp of the newest block up to which the follower has processed every
        log of our contracts; None while the endpoint does not answer (blind)."""
        status = self.follower.status
        if not status.reachable or status.confirmed_block is None:
            return None
        block = status.confirmed_block
        if self._view is not None and self._view[0] == block:
            return self._view[1]
        if block == status.latest_block and status.latest_timestamp is not None:
            stamp = status.latest_timestamp
        else:
            try:
                stamp = await self.block_timestamp(block)
            except ChainUnavailable:
                return None
        self._view = (block, stamp)
        return stamp

    def now(self) -> Timestamp:
        """Chain time: the newest block's timestamp (0 before any was seen)."""
        return self.follower.status.latest_timestamp or Timestamp(0)

    def record(self, network: Address, a: Address, b: Address) -> ChannelRecord | None:
        return self.follower.directory.find(network, a, b)

    async def facts(self, network: Address, a: Address, b: Address) -> ChannelFacts | None:
        """The channel of ``a`` and ``b``; after a close, with both sides' proofs on chain."""
        record = self.record(network, a, b)
        if record is None:
            return None
        facts = ChannelFacts(
            generation=record.generation,
            settle_window=record.settle_window,
            stage=_STAGES[record.stage],
            closer=record.closer,
            closed_at=record.closed_at,
            settled_generation=record.settled_generation,
        )
        if record.stage is not ChannelStage.CLOSED or record.closer is None:
            return facts
        closer = record.closer
        non_closer = record.partner_of(closer)
        functions = self._network(network).functions
        # All three reads at one block: a settle between two of them would clear the
        # proofs and the delegation under a channel still read as closed.
        block = self._head if self._head is not None else "latest"
        pair = (Web3.to_checksum_address(closer), Web3.to_checksum_address(non_closer))
        channel = await self.endpoint.call(
            "eth_call", functions.get_channel(*pair).call(block_identifier=block)
        )
        generation = Generation(int(channel.generation))
        if int(channel.state) != STATE_CLOSED:
            # The chain is ahead of the follower: settled (state 0), or settled and
            # reopened (state 1, a newer generation).
            settled = generation if int(channel.state) == STATE_NONE else generation - 1
            return ChannelFacts(
                generation=generation,
                settle_window=facts.settle_window,
                stage=Stage.SETTLED if int(channel.state) == STATE_NONE else Stage.OPENED,
                settled_generation=Generation(max(settled, record.settled_generation or 0)),
            )
        closer_side = await self.endpoint.call(
            "eth_call", functions.get_participant(*pair).call(block_identifier=block)
        )
        non_closer_side = await self.endpoint.call(
            "eth_call",
            functions.get_participant(pair[1], pair[0]).call(block_identifier=block),
        )
        return ChannelFacts(
            generation=facts.generation,
            settle_window=facts.settle_window,
            stage=facts.stage,
            closer=closer,
            closed_at=facts.closed_at,
            settled_generation=facts.settled_generation,
            closer_side=_side(closer_side),
            non_closer_side=_side(non_closer_side),
        )

    async def registered_at(self, secrethash: bytes) -> Timestamp | None:
        stamp = await self.endpoint.call(
            "eth_call", self._registry.functions.secrethash_to_timestamp(secrethash).call()
        )
        return None if int(stamp) == 0 else Timestamp(int(stamp))

    async def retained(self, request: Unlock) -> int:
        functions = self._network(request.token_network).functions
        amount = await self.endpoint.call(
            "eth_call",
            functions.get_unlock_amount(
                Web3.to_checksum_address(request.receiver),
                Web3.to_checksum_address(request.sender),
                request.generation,
                request.locksroot,
            ).call(),
        )
        return int(amount)

    async def receipt(self, tx_hash: bytes) -> Receipt | None:
        w3 = self.endpoint.w3
        try:
            found = await self.endpoint.call(
                "eth_getTransactionReceipt", w3.eth.get_transaction_receipt(HexBytes(tx_hash))
            )
        except TransactionNotFound:
            return None
        if found is None:
            return None
        stamp = await self.block_timestamp(int(found["blockNumber"]))
        return Receipt(int(found["status"]) == 1, stamp)

    async def block_timestamp(self, block: int) -> Timestamp:
        try:
            found = await self.endpoint.call(
                "eth_getBlockByNumber", self.endpoint.w3.eth.get_block(block)
            )
        except BlockNotFound as exc:
            raise ChainUnavailable(f"the endpoint lost block {block}") from exc
        return Timestamp(int(found["timestamp"]))

    async def send_raw(self, raw: bytes) -> str | None:
        """Broadcast ``raw``; None when the endpoint took it (or has it), else its refusal."""
        try:
            await self.endpoint.call(
                "eth_sendRawTransaction", self.endpoint.w3.eth.send_raw_transaction(raw)
            )
        except Web3RPCError as exc:
            message = rpc_error_message(exc)
            lowered = message.lower()
            if any(s in lowered for s in ("already known", "known transaction", "nonce too low")):
                return None  # the pool has it, or it was mined: the receipt tells
            return message
        return None


def subject_of(request: Request) -> bytes:
    """What a request is about: a newer request about the same subject replaces it."""
    match request:
        case DelegateUpdate():
            return (
                b"U"
                + request.token_network
                + request.channel_id
                + int(request.generation).to_bytes(4, "big")
                + request.non_closer
            )
        case RegisterSecret():
            return b"S" + sha256(request.secret) + int(request.deadline).to_bytes(8, "big")
        case Unlock():
            return (
                b"L"
                + request.token_network
                + request.channel_id
                + int(request.generation).to_bytes(4, "big")
                + request.sender
                + request.locksroot
            )
        case RawTransaction():
            return b"R" + request.tx_hash


def _rank(request: Request) -> tuple[int, int]:
    return request.rank if isinstance(request, DelegateUpdate) else (0, 0)


def _deadline(request: Request, facts: ChannelFacts | None) -> int | None:
    match request:
        case DelegateUpdate():
            return None if facts is None else facts.deadline
        case RegisterSecret() | RawTransaction():
            return int(request.deadline)
        case Unlock():
            return None


def _data(preimage: BalancePreimage) -> BalanceData:
    return BalanceData(preimage.transferred, preimage.locked, preimage.locksroot)


@dataclass(frozen=True, slots=True)
class _Planned:
    item: Item
    request: Request
    step: Step
    facts: ChannelFacts | None


class Watcher:
    """The watch role: requests in, transactions out, outcomes back."""

    def __init__(
        self,
        *,
        key: PrivateKey,
        address: Address,
        chain_id: int,
        deployment: Deployment,
        store: Store,
        chain: ChainReader,
        sender: TxSender,
        send: Send,
        acknowledge: Callable[[bytes, bytes], None],
        recipients: Callable[[], Iterable[Address]],
        min_reward: int = 0,
        clock: Callable[[], float] = time.time,
        drop_submissions: bool = False,
    ) -> None:
        self.key = key
        self.drop_submissions = drop_submissions
        self.address = address
        self.chain_id = chain_id
        self.deployment = deployment
        self.store = store
        self.items = WatchStore(store.conn)
        self.chain = chain
        self.sender = sender
        self.send = send
        self.acknowledge = acknowledge
        self.recipients = recipients
        self.min_reward = min_reward
        self.clock = clock
        self._queue: asyncio.Queue[tuple[Address, Request, bytes]] = asyncio.Queue(INTAKE_LIMIT)
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._running: dict[str, asyncio.Task[None]] = {}
        self._submitted: set[str] = set()
        self._broadcast_at: dict[bytes, float] = {}
        self._settled_by_us: dict[bytes, bytes] = {}
        self._rewards: dict[tuple[Address, ChannelId, Address], DelegateRewardedLog] = {}
        self.stats = {"accepted": 0, "refused": 0, "submitted": 0, "outcomes": 0}

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._tasks = [
            asyncio.create_task(self._intake(), name="watch-intake"),
            asyncio.create_task(self._act_loop(), name="watch-act"),
            asyncio.create_task(self._beacon_loop(), name="watch-beacons"),
        ]

    async def stop(self) -> None:
        self._stop.set()
        tasks = self._tasks + list(self._running.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        self._running.clear()

    # -- requests in -------------------------------------------------------------------------

    def offer(self, origin: Address, request: Request, message_id: bytes) -> bool:
        """Queue a request to be judged; False (not acknowledged) when the queue is full."""
        try:
            self._queue.put_nowait((origin, request, message_id))
        except asyncio.QueueFull:
            log.warning("watch intake full: request from 0x%s left unacknowledged", origin.hex())
            return False
        return True

    async def _intake(self) -> None:
        while not self._stop.is_set():
            origin, request, message_id = await self._queue.get()
            try:
                ack = await self.take(origin, request)
            except ChainUnavailable as exc:
                log.info("request from 0x%s: chain unavailable: %s", origin.hex(), exc)
                ack = WatchAck(
                    request.request_id, Reason.BLIND, Timestamp(0), "chain not reachable"
                )
            except Exception:  # our bug: answer, keep serving
                log.exception("judging a request from 0x%s raised", origin.hex())
                ack = WatchAck(request.request_id, Reason.INVALID, Timestamp(0), "watcher error")
            # Persisted (or refused) first, acknowledged after: a crash in between makes
            # the origin send it again, and it gets the same answer.
            self.acknowledge(origin, message_id)
            self.send(origin, encode(ack), ANSWER_LIFETIME)
            if ack.accepted:
                self._wake.set()

    async def take(self, origin: Address, request: Request) -> WatchAck:
        """Judge ``request`` from ``origin``; hold it (written to the database) if accepted.
        The answer to send back."""
        payload = encode(request)
        existing = self.items.get(request.request_id)
        view = await self.chain.view_time()
        if existing is not None:
            if existing.client == origin and existing.payload == payload:
                return WatchAck(request.request_id, Reason.ACCEPTED, view or Timestamp(0))
            verdict = Verdict(Reason.INVALID, "request id in use")
            return self._refused(origin, request, verdict, view)
        facts: ChannelFacts | None = None
        if view is None:
            verdict = rules.BLIND
        elif self.items.held_by(origin) >= MAX_HELD_PER_CLIENT:
            verdict = Verdict(Reason.OVERLOADED, f"at most {MAX_HELD_PER_CLIENT} requests held")
        else:
            verdict, facts = await self._judge(request, view)
        if not verdict.accepted:
            return self._refused(origin, request, verdict, view)
        subject = subject_of(request)
        now = self.clock()
        with self.store.transaction():
            self.items.add(
                request.request_id, origin, payload[2], subject, _rank(request),
                _deadline(request, facts), payload, now,
            )  # fmt: skip
            self.store.add_event("watch_accepted", self._describe(origin, request), now)
        self.stats["accepted"] += 1
        log.info("holding %s from 0x%s", type(request).__name__, origin.hex())
        assert view is not None
        return WatchAck(request.request_id, Reason.ACCEPTED, view)

    def _refused(
        self, origin: Address, request: Request, verdict: Verdict, view: Timestamp | None
    ) -> WatchAck:
        self.stats["refused"] += 1
        data = self._describe(origin, request)
        data.update(reason=verdict.reason.name.lower(), text=verdict.text)
        with self.store.transaction():
            self.store.add_event("watch_refused", data, self.clock())
        log.info("refused %s from 0x%s: %s", type(request).__name__, origin.hex(), verdict.text)
        return WatchAck(request.request_id, verdict.reason, view or Timestamp(0), verdict.text)

    async def _judge(
        self, request: Request, view: Timestamp
    ) -> tuple[Verdict, ChannelFacts | None]:
        now = self.chain.now()
        match request:
            case DelegateUpdate():
                facts = await self.chain.facts(
                    request.token_network, request.closer, request.non_closer
                )
                verdict = rules.judge_delegate_update(
                    request,
                    chain_id=self.chain_id,
                    watcher=self.address,
                    min_reward=self.min_reward,
                    view_time=view,
                    now=now,
                    facts=facts,
                    held=self.items.best_rank(subject_of(request)),
                )
                return verdict, facts
            case RegisterSecret():
                return rules.judge_register_secret(request, view_time=view, now=now), None
            case Unlock():
                facts = await self.chain.facts(
                    request.token_network, request.receiver, request.sender
                )
                verdict = rules.judge_unlock(
                    request, chain_id=self.chain_id, view_time=view, facts=facts
                )
                return verdict, facts
            case RawTransaction():
                return rules.judge_raw_transaction(request, view_time=view, now=now), None

    def _describe(self, origin: Address, request: Request) -> dict[str, object]:
        data: dict[str, object] = {
            "request_id": "0x" + request.request_id.hex(),
            "client": "0x" + origin.hex(),
            "kind": type(request).__name__,
        }
        if isinstance(request, DelegateUpdate):
            data.update(
                token_network="0x" + request.token_network.hex(),
                closer="0x" + request.closer.hex(),
                non_closer="0x" + request.non_closer.hex(),
                nonce=str(request.nonce),
                reward=str(request.reward),
            )
        elif isinstance(request, RegisterSecret | RawTransaction):
            data["deadline"] = int(request.deadline)
        return data

    # -- acting -----------------------------------------------------------------------------

    def on_batch(self, batch: Batch) -> None:
        """New confirmed logs: note the rewards paid to us, and look at the requests again
        when a channel closed or was updated."""
        wake = False
        for entry in batch.logs:
            if isinstance(entry, DelegateRewardedLog) and entry.delegate == self.address:
                key = (entry.token_network, entry.channel_id, entry.participant)
                self._rewards[key] = entry
                with self.store.transaction():
                    self.store.add_event(
                        "watch_reward",
                        {
                            "token_network": "0x" + entry.token_network.hex(),
                            "channel_id": "0x" + entry.channel_id.hex(),
                            "participant": "0x" + entry.participant.hex(),
                            "reward": str(entry.reward),
                            "tx_hash": "0x" + entry.tx_hash.hex(),
                        },
                        self.clock(),
                    )
                log.info(
                    "reward %d paid to us (channel 0x%s)", entry.reward, entry.channel_id.hex()
                )
            wake = wake or isinstance(
                entry, ChannelClosedLog | NonClosingUpdatedLog | DelegateRewardedLog
            )
        if wake or batch.logs:
            self._wake.set()

    async def _act_loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), WATCH_INTERVAL)
            self._wake.clear()
            try:
                await self.act()
            except ChainUnavailable as exc:
                log.debug("watch pass: chain unavailable: %s", exc)
            except asyncio.CancelledError:
                raise
            except Exception:  # our bug: keep watching
                log.exception("a watch pass raised")

    async def act(self) -> None:
        """One pass: plan every held request, finish what is over, start what is due
        (earliest deadline first)."""
        if self.drop_submissions:
            return  # testing only: a watcher that takes requests and does nothing
        if await self.chain.view_time() is None:
            return
        await self.chain.begin_pass()
        now = self.chain.now()
        for item in self.items.held():
            request = decode(item.payload)
            assert not isinstance(request, WatchAck | WatchOutcome | ChainBeacon)
            planned = await self._plan(item, request, now)
            match planned.step:
                case Finish():
                    await self._finish(planned)
                case Submit():
                    self._start(planned)
                case Wait():
                    pass

    def _status(self, request: Request, action: Action) -> IntentStatus | None:
        intent = self.sender.intent(self._key(request, action))
        return None if intent is None else intent.status

    async def _plan(self, item: Item, request: Request, now: Timestamp) -> _Planned:
        facts: ChannelFacts | None = None
        step: Step
        match request:
            case DelegateUpdate():
                done = item.done_work or self._status(request, Action.UPDATE) is CONFIRMED
                facts = await self.chain.facts(
                    request.token_network, request.closer, request.non_closer
                )
                step = plan.plan_update(request, facts, now, watcher=self.address, updated=done)
            case RegisterSecret():
                done = item.done_work or self._status(request, Action.REGISTER_SECRET) is CONFIRMED
                registered = await self.chain.registered_at(sha256(request.secret))
                step = plan.plan_register_secret(request, registered, now, submitted=done)
            case Unlock():
                done = item.done_work or self._status(request, Action.UNLOCK) is CONFIRMED
                facts = await self.chain.facts(
                    request.token_network, request.receiver, request.sender
                )
                retained = None
                if facts is not None and facts.settled(request.generation):
                    retained = await self.chain.retained(request)
                step = plan.plan_unlock(request, facts, retained, submitted=done)
            case RawTransaction():
                receipt = await self.chain.receipt(request.tx_hash)
                step = plan.plan_raw_transaction(request, receipt, now)
        if isinstance(step, Submit) and step.action is not Action.BROADCAST:
            intent = self.sender.intent(self._key(request, step.action))
            if intent is not None and intent.status is IntentStatus.FAILED:
                step = self._after_failure(step, intent.reason or "failed", facts, now)
            elif intent is not None and intent.status is CONFIRMED:
                # Done already: what the chain shows lags by a block or a poll. Never a
                # second pass over confirmed work (it would spin).
                step = Wait(f"{step.action.name.lower()} confirmed; the chain view catches up")
        return _Planned(item, request, step, facts)

    @staticmethod
    def _after_failure(
        step: Submit, reason: str, facts: ChannelFacts | None, now: Timestamp
    ) -> Step:
        """The plan asks again for work whose transaction failed (its key is never sent
        twice). Usually someone else did the work first, and the plan said so before
        asking (it reads the channel live). A settle races the participants' own, and the
        chain read may be a block behind the failure: so a failed settle waits, and fails
        for good only a whole settle window after the first (nobody settled, and we
        cannot)."""
        if step.action is Action.SETTLE and facts is not None:
            deadline = facts.deadline
            if deadline is None or now <= deadline + facts.settle_window:
                return Wait(f"our settle failed ({reason}); waiting for the settle")
        return Finish(step.action, OutcomeStatus.FAILED, reason)

    def _key(self, request: Request, action: Action) -> str:
        """The outbox key of the transaction for ``action``: the same work, the same key,
        so it is sent once whatever the number of requests or passes asking for it."""
        match request:
            case DelegateUpdate():
                where = (
                    f"{request.token_network.hex()}:{request.channel_id.hex()}:{request.generation}"
                )
                if action is Action.SETTLE:
                    return f"watch:settle:{where}"
                return f"watch:update:{where}:{request.non_closer.hex()}:{request.nonce}"
            case RegisterSecret():
                return f"watch:secret:{sha256(request.secret).hex()}"
            case Unlock():
                return (
                    f"watch:unlock:{request.token_network.hex()}:{request.channel_id.hex()}:"
                    f"{request.generation}:{request.sender.hex()}:{request.locksroot.hex()}"
                )
            case RawTransaction():
                return f"watch:raw:{request.tx_hash.hex()}"

    def _call(self, planned: _Planned, action: Action) -> ContractCall:
        request = planned.request
        match request:
            case DelegateUpdate():
                if action is Action.SETTLE:
                    assert planned.facts is not None
                    data = plan.settle_data(request, planned.facts)
                    assert data is not None, "planned only with both sides' data"
                    return calls.settle_channel(
                        request.token_network,
                        request.closer,
                        _data(data[0]),
                        request.non_closer,
                        _data(data[1]),
                    )
                return calls.update_non_closing_delegated(
                    request.token_network,
                    request.closer,
                    request.non_closer,
                    request.nonce,
                    request.balance_hash,
                    request.additional_hash,
                    request.closing_signature,
                    self.address,
                    request.reward,
                    request.delegation_signature,
                )
            case RegisterSecret():
                return calls.register_secret(self.deployment.secret_registry, request.secret)
            case Unlock():
                return calls.unlock(
                    request.token_network,
                    request.receiver,
                    request.sender,
                    request.generation,
                    request.locks,
                )
            case RawTransaction():
                raise AssertionError("raw transactions are broadcast, not sent")

    def _start(self, planned: _Planned) -> None:
        assert isinstance(planned.step, Submit)
        key = self._key(planned.request, planned.step.action)
        if key in self._running:
            return
        task = asyncio.get_running_loop().create_task(self._carry_out(key, planned), name=key)
        self._running[key] = task
        task.add_done_callback(lambda _: self._running.pop(key, None))

    async def _carry_out(self, key: str, planned: _Planned) -> None:
        step, request, item = planned.step, planned.request, planned.item
        assert isinstance(step, Submit)
        if isinstance(request, RawTransaction):
            await self._broadcast(item, request)
            return
        try:
            await self.sender.submit(key, self._call(planned, step.action))
            if key not in self._submitted:
                self._submitted.add(key)
                self.stats["submitted"] += 1
                data = self._describe(item.client, request)
                data.update(action=step.action.name.lower(), key=key, deadline=step.deadline)
                with self.store.transaction():
                    self.store.add_event("watch_submitted", data, self.clock())
            outcome = await self.sender.wait(key)
        except TransactionFailed as exc:
            log.warning("%s failed: %s", key, exc)
            self._wake.set()  # the next pass reports it (or finds it unnecessary)
            return
        except (ChainUnavailable, ChainError, TimeoutError) as exc:
            log.info("%s waits: %s", key, exc)
            return
        log.info("%s confirmed in block %d", key, outcome.block)
        if step.action is Action.SETTLE:
            self._settled_by_us[item.request_id] = outcome.tx_hash
        else:
            with self.store.transaction():
                self.items.work_done(item.request_id, outcome.tx_hash, self.clock())
        if step.action is Action.UPDATE:
            assert isinstance(request, DelegateUpdate)
            stamp = await self.chain.block_timestamp(outcome.block)
            await self._tell(
                item,
                WatchOutcome(
                    item.request_id, Action.UPDATE, OutcomeStatus.CONFIRMED, outcome.tx_hash,
                    stamp, f"updated with nonce {request.nonce}",
                ),
            )  # fmt: skip
        self._wake.set()

    async def _broadcast(self, item: Item, request: RawTransaction) -> None:
        last = self._broadcast_at.get(request.tx_hash)
        if last is not None and self.clock() - last < REBROADCAST:
            return
        self._broadcast_at[request.tx_hash] = self.clock()
        refusal = await self.chain.send_raw(request.raw)
        key = self._key(request, Action.BROADCAST)
        if key not in self._submitted:
            self._submitted.add(key)
            self.stats["submitted"] += 1
            data = self._describe(item.client, request)
            data.update(action="broadcast", tx_hash="0x" + request.tx_hash.hex())
            with self.store.transaction():
                self.store.add_event("watch_submitted", data, self.clock())
        if refusal is not None and await self.chain.receipt(request.tx_hash) is None:
            failed = Finish(Action.BROADCAST, OutcomeStatus.FAILED, refusal)
            await self._finish(_Planned(item, request, failed, None))

    async def _finish(self, planned: _Planned) -> None:
        step, item, request = planned.step, planned.item, planned.request
        assert isinstance(step, Finish)
        tx_hash, stamp, text = ZERO_TX, Timestamp(0), step.text
        if step.action is Action.BROADCAST and isinstance(request, RawTransaction):
            receipt = await self.chain.receipt(request.tx_hash)
            if receipt is not None:
                tx_hash, stamp = request.tx_hash, receipt.block_timestamp
        elif step.action is Action.SETTLE and isinstance(request, DelegateUpdate):
            reward = self._rewards.get(
                (request.token_network, request.channel_id, request.non_closer)
            )
            ours = self._settled_by_us.pop(item.request_id, None)
            if reward is not None:
                tx_hash, stamp = reward.tx_hash, reward.timestamp
                text = f"settled; reward {reward.reward} paid"
            elif ours is not None:
                tx_hash = ours
        elif item.done_work and item.work_tx is not None:
            tx_hash = item.work_tx
        if tx_hash != ZERO_TX and stamp == 0:
            receipt = await self.chain.receipt(tx_hash)
            if receipt is not None:
                stamp = receipt.block_timestamp
        text = text.encode()[:MAX_TEXT].decode(errors="ignore")
        outcome = WatchOutcome(item.request_id, step.action, step.status, tx_hash, stamp, text)
        with self.store.transaction():
            self.items.finish(
                item.request_id, step.status.name.lower(), text, tx_hash if any(tx_hash) else None,
                self.clock(),
            )  # fmt: skip
        await self._tell(item, outcome)

    async def _tell(self, item: Item, outcome: WatchOutcome) -> None:
        self.stats["outcomes"] += 1
        data = {
            "request_id": "0x" + item.request_id.hex(),
            "client": "0x" + item.client.hex(),
            "action": outcome.action.name.lower(),
            "status": outcome.status.name.lower(),
            "tx_hash": "0x" + outcome.tx_hash.hex(),
            "block_timestamp": int(outcome.block_timestamp),
            "text": outcome.text,
        }
        with self.store.transaction():
            self.store.add_event("watch_outcome", data, self.clock())
        log.info(
            "outcome for 0x%s: %s %s (%s)",
            item.client.hex(),
            outcome.action.name.lower(),
            outcome.status.name.lower(),
            outcome.text,
        )
        self.send(item.client, encode(outcome), ANSWER_LIFETIME)

    # -- beacons ----------------------------------------------------------------------------

    async def beacon(self) -> ChainBeacon | None:
        """Our signed beacon now; None while blind."""
        view = await self.chain.view_time()
        if view is None:
            return None
        return ChainBeacon(
            chain_id=self.chain_id,
            watcher=self.address,
            view_time=view,
            min_reward=TokenAmount(self.min_reward),
            services=Service.DELEGATE | Service.GATEWAY,
            issued_at=int(self.clock() * 1000),
            signature=UNSIGNED_SIGNATURE,
            ttl=BEACON_TTL,
        ).signed(self.key)

    async def _beacon_loop(self) -> None:
        """A beacon to everyone every ``BEACON_INTERVAL``; in between, every
        ``GREET_INTERVAL``, one to each recipient that appeared since (a mesh neighbour
        just met: a blind node coming into range hears of this gateway at once, not up to
        a minute later)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), 2.0)
        greeted: set[Address] = set()
        last = -BEACON_INTERVAL
        while not self._stop.is_set():
            targets = set(self.recipients()) | set(self.items.clients())
            targets.discard(self.address)
            now = time.monotonic()
            due = now - last >= BEACON_INTERVAL
            new = targets if due else targets - greeted
            if new:
                try:
                    beacon = await self.beacon()
                except ChainUnavailable:
                    beacon = None
                if beacon is not None:
                    data = encode(beacon)
                    for target in sorted(new):
                        self.send(target, data, BEACON_LIFETIME)
                    greeted = targets if due else greeted | new
                    if due:
                        last = now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), GREET_INTERVAL)
