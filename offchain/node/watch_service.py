"""The watch service of one node: every 0xA2 payload in, both roles, the beacons heard.

Belongs here: ``WatchService``, the one object the node (``app``) creates, starts,
stops, and hands 0xA2 payloads (``receive``) and confirmed log batches (``on_batch``):
- requests (``DelegateUpdate``, ``RegisterSecret``, ``Unlock``, ``RawTransaction``) go to
  the ``Watcher`` when the node runs the watch role (``watch = true``); otherwise they are
  refused at once ("not watching");
- answers (``WatchAck``, ``WatchOutcome``) go to the ``Delegator`` (its updates) or to
  whoever made the request through ``request`` and to the ``answer_listeners`` (a blind
  node's hand-offs to gateways, ``gateway_client``), and are recorded (events
  ``watch_outcome`` on the client side too);
- beacons are checked into the ``BeaconBook`` and passed on along our channels with one
  hop less, like capacity announcements.
Gossip (beacons) and undecodable payloads are acknowledged at once; answers once they are
recorded; requests once the watcher has written them down (or refused them).

Does not belong here: the decisions (``offchain.watch``), the watcher's and the client's
work (``watcher``, ``delegation``).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import Final

from mesh_relay.effects import Deliver, EventDelivered
from mesh_relay.errors import MeshError
from mesh_relay.runtime import AppEvent, MeshRuntime
from offchain.chain.manifest import Deployment
from offchain.chain.rpc import Endpoint
from offchain.chain.sync import Batch, ChainFollower
from offchain.chain.transactions import TxSender
from offchain.node.delegation import DelegationBook, Delegator, ViewCallback
from offchain.node.runtime import NodeRuntime
from offchain.node.watch_store import WatchStore
from offchain.node.watcher import ANSWER_LIFETIME, ChainReader, Watcher
from offchain.protocol.types import Address, Timestamp
from offchain.watch.beacons import BeaconBook
from offchain.watch.errors import WireError
from offchain.watch.wire import (
    REQUEST_ID_LENGTH,
    Action,
    Answer,
    ChainBeacon,
    Reason,
    Request,
    WatchAck,
    WatchOutcome,
    decode,
    encode,
)

log = logging.getLogger("smartmesh.watch")

BEACON_FORWARD_LIFETIME: Final = 60.0
REQUEST_LIFETIME: Final = 3_600.0

AnswerCallback = Callable[[Address, Answer], None]


class WatchService:
    """Both sides of the watch service for one node (see the module doc)."""

    def __init__(
        self,
        *,
        runtime: NodeRuntime,
        mesh: MeshRuntime,
        deployment: Deployment,
        endpoint: Endpoint,
        follower: ChainFollower,
        sender: TxSender,
        watch: bool,
        min_reward: int = 0,
        delegates: tuple[bytes, ...] = (),
        delegate_reward: int = 0,
        clock: Callable[[], float] = time.time,
        drop_submissions: bool = False,
    ) -> None:
        self.runtime = runtime
        self.mesh = mesh
        self.address = runtime.address
        self.clock = clock
        self.beacons = BeaconBook(deployment.chain_id, self.address)
        self.book = DelegationBook(WatchStore(runtime.store.conn))
        self.delegator = Delegator(
            runtime=runtime,
            book=self.book,
            delegates=[Address(d) for d in delegates],
            reward=delegate_reward,
            send=self._send,
            clock=clock,
        )
        self.watcher: Watcher | None = None
        if watch:
            self.watcher = Watcher(
                key=runtime.key,
                address=self.address,
                chain_id=deployment.chain_id,
                deployment=deployment,
                store=runtime.store,
                chain=ChainReader(endpoint, follower, deployment),
                sender=sender,
                send=self._send,
                acknowledge=self._acknowledge,
                recipients=self._recipients,
                min_reward=min_reward,
                clock=clock,
                drop_submissions=drop_submissions,
            )
        self._requests: dict[bytes, tuple[Address, AnswerCallback | None]] = {}
        self._stop_listening: Callable[[], None] | None = None
        self.answer_listeners: list[AnswerCallback] = []
        """Called with every answer that is not the delegator's (before the mesh message is
        acknowledged: a listener that records it makes it safe to acknowledge)."""
        self.stats = {"invalid": 0, "beacons": 0, "forwarded": 0}

    @property
    def on_delegate_view(self) -> ViewCallback | None:
        """Called with (token network, partner, view time, nonce, delegate) when the
        delegates' view that covers our latest proof from that partner changes."""
        return self.delegator.on_delegate_view

    @on_delegate_view.setter
    def on_delegate_view(self, callback: ViewCallback | None) -> None:
        self.delegator.on_delegate_view = callback

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._stop_listening = self.mesh.listen(self._on_mesh)
        self.delegator.start()
        if self.watcher is not None:
            self.watcher.start()

    async def stop(self) -> None:
        self.delegator.stop()
        if self.watcher is not None:
            await self.watcher.stop()
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None

    # -- the mesh ---------------------------------------------------------------------------

    def _send(self, recipient: Address, payload: bytes, lifetime: float) -> bytes | None:
        try:
            return self.mesh.send(recipient, payload, lifetime)
        except (MeshError, RuntimeError) as exc:  # a full queue, or stopping
            log.info("watch payload to 0x%s not queued: %s", recipient.hex(), exc)
            return None

    def _acknowledge(self, origin: bytes, message_id: bytes) -> None:
        self.mesh.acknowledge(origin, message_id)

    def _recipients(self) -> list[Address]:
        partners = {partner for _, partner in self.runtime.state.channels}
        partners.update(Address(a) for a in self.mesh.node.neighbour_addresses())
        return sorted(partners)

    def _on_mesh(self, event: AppEvent) -> None:
        if isinstance(event, Deliver):
            return  # payloads come through the node's transport (``receive``)
        self.delegator.on_mesh_outcome(event.message_id, isinstance(event, EventDelivered))

    # -- payloads in ------------------------------------------------------------------------

    def receive(self, origin: bytes, payload: bytes, message_id: bytes) -> None:
        """A 0xA2 payload from the mesh (``origin`` is authenticated by the envelope)."""
        sender = Address(origin)
        try:
            message = decode(payload)
        except WireError as exc:
            self.stats["invalid"] += 1
            log.info("watch payload from 0x%s refused: %s", origin.hex(), exc)
            self._acknowledge(origin, message_id)  # never processable: do not ask again
            return
        match message:
            case ChainBeacon():
                self._acknowledge(origin, message_id)  # gossip: nothing to persist
                self._beacon(sender, message)
            case WatchAck() | WatchOutcome():
                self._answer(sender, message)
                self._acknowledge(origin, message_id)
            case _:
                self._request(sender, message, message_id)

    def _request(self, origin: Address, request: Request, message_id: bytes) -> None:
        if self.watcher is None:
            self._acknowledge(origin, message_id)
            refusal = WatchAck(
                request.request_id, Reason.NOT_WATCHING, Timestamp(0), "this node does not watch"
            )
            self._send(origin, encode(refusal), ANSWER_LIFETIME)
            return
        self.watcher.offer(origin, request, message_id)

    def _answer(self, origin: Address, answer: Answer) -> None:
        if isinstance(answer, WatchAck) and self.delegator.on_ack(origin, answer):
            return
        waiting = self._requests.get(answer.request_id)
        if waiting is not None and waiting[0] != origin:
            waiting = None  # only the watcher asked answers
        if isinstance(answer, WatchOutcome):
            self._record_outcome(origin, answer)
        for listener in self.answer_listeners:
            try:
                listener(origin, answer)
            except Exception:
                log.exception("a watch answer listener raised")
        if waiting is not None:
            refused = isinstance(answer, WatchAck) and not answer.accepted
            # A gateway request has one outcome; a delegation may have two (update, settle).
            final = isinstance(answer, WatchOutcome) and answer.action is not Action.UPDATE
            if refused or final:
                self._requests.pop(answer.request_id, None)
            callback = waiting[1]
            if callback is not None:
                try:
                    callback(origin, answer)
                except Exception:
                    log.exception("a watch answer callback raised")

    def _record_outcome(self, origin: Address, outcome: WatchOutcome) -> None:
        store = self.runtime.store
        data = {
            "watcher": "0x" + origin.hex(),
            "request_id": "0x" + outcome.request_id.hex(),
            "action": outcome.action.name.lower(),
            "status": outcome.status.name.lower(),
            "tx_hash": "0x" + outcome.tx_hash.hex(),
            "block_timestamp": int(outcome.block_timestamp),
            "text": outcome.text,
        }
        with store.transaction():
            store.add_event("watch_outcome", data, self.clock())

    def _beacon(self, origin: Address, beacon: ChainBeacon) -> None:
        verdict = self.beacons.accept(beacon, int(self.clock() * 1000))
        if not verdict.accepted:
            log.debug("beacon of 0x%s ignored: %s", beacon.watcher.hex(), verdict.why)
            return
        self.stats["beacons"] += 1
        self.delegator.on_beacon(beacon.watcher, beacon.view_time)
        if not verdict.forward:
            return
        data = encode(beacon.hop())
        for network_partner in sorted({p for _, p in self.runtime.state.channels}):
            if network_partner not in (origin, beacon.watcher, self.address):
                self.stats["forwarded"] += 1
                self._send(network_partner, data, BEACON_FORWARD_LIFETIME)

    def on_batch(self, batch: Batch) -> None:
        """Confirmed logs (after the node's core took them)."""
        if self.watcher is not None:
            self.watcher.on_batch(batch)

    # -- requests out (a blind node's gateway requests) -------------------------------------------

    def request(
        self, watcher: Address, request: Request, on_answer: AnswerCallback | None = None
    ) -> bool:
        """Send ``request`` to ``watcher``; ``on_answer`` gets its ``WatchAck`` and its
        ``WatchOutcome``s. False when the mesh could not queue it."""
        self._requests[request.request_id] = (watcher, on_answer)
        if self._send(watcher, encode(request), REQUEST_LIFETIME) is None:
            self._requests.pop(request.request_id, None)
            return False
        return True

    @staticmethod
    def new_request_id() -> bytes:
        return secrets.token_bytes(REQUEST_ID_LENGTH)
