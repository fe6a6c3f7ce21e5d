"""The client side of delegation: keep the chosen delegates up to date with our partners'
newest proofs, and remember what each acknowledged.

Belongs here: ``DelegationBook`` (per token network, partner and delegate: the proof the
delegate acknowledged last and the chain time it said it had seen, persisted) and
``Delegator``, which, after the runtime commits anything (a listener on its effects,
coalesced by a short timer, ``COALESCE`` seconds: a burst of payments costs one
``Delegation`` signature per channel and delegate, never one per payment, and nothing on
the payment path itself), compares each channel's newest partner proof (and our own,
which a settle needs) with what each delegate acknowledged, and sends a ``DelegateUpdate``
where it is behind. At most one request per channel and delegate is in flight: the next
goes when its answer (or the mesh's "expired") comes back, with whatever is newest then,
so an unreachable delegate costs one queued message per channel, not one per payment.

While the node is blind it also keeps the gateways it picked (``set_gateways``, by the
gateway client: watchers whose beacons say they see the chain) up to date the same way,
so that a close by a partner that such a gateway sees is corrected. Gateways are not
chosen by the user: their acknowledgements are recorded like a delegate's but never move
the safety window (``on_delegate_view`` counts the configured ``delegates`` only; a
gateway could be the partner's own device).

An acknowledgement is recorded (event ``delegate_ack``) with the delegate's view time;
``on_delegate_view(network, partner, view_time, nonce, delegate)`` is called when the view
that covers our LATEST proof from that partner changes (the safety window of
docs/offline.md counts from it): on an acknowledgement, and on a delegate's signed beacon,
whose later view time covers every proof that delegate acknowledged (it has watched them
since). A refusal is recorded (event ``delegate_refused``, with the reason); the same
proof goes to that delegate again only after ``RETRY_REFUSED`` seconds when the reason may
pass (the delegate was blind or full), never when it holds (stale, forged, unpaid).

Does not belong here: building or signing the request (``offchain.watch.client``), the
watcher's side (``watcher``), routing payloads (``watch_service``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from offchain.node.runtime import NodeRuntime
from offchain.node.watch_store import Acked, WatchStore
from offchain.protocol.channel import ChannelState
from offchain.protocol.transitions import Effect
from offchain.protocol.types import Address, BalanceHash, Nonce, Signature
from offchain.watch import client
from offchain.watch.wire import REQUEST_ID_LENGTH, Reason, WatchAck, encode

log = logging.getLogger("smartmesh.delegation")

COALESCE: Final = 0.2
"""Seconds between a change of a partner's proof and the updates it triggers: the
newest proof per channel in that time goes, once per delegate."""
UPDATE_LIFETIME: Final = 600.0
IN_FLIGHT_TIMEOUT: Final = 900.0
"""An update delivered but never answered is given up after this long (then resent)."""
RETRY_FULL: Final = 1.0
RETRY_REFUSED: Final = 30.0
"""Seconds before a proof a delegate refused for a passing reason (it was blind, or
full) is offered to it again."""
PASSING: Final = frozenset({Reason.BLIND, Reason.OVERLOADED, Reason.INVALID})
"""Refusals that may not hold later; any other refusal holds for that proof for good."""

ChannelKey = tuple[Address, Address]
"""(token network, partner)."""
DelegateKey = tuple[Address, Address, Address]
"""(token network, partner, delegate)."""
Send = Callable[[Address, bytes, float], bytes | None]
ViewCallback = Callable[[Address, Address, int, int, Address], None]
"""(token network, partner, view time, nonce of the partner's proof the view covers, the
delegate whose view it is)."""


class DelegationBook:
    """What each delegate acknowledged last, per channel; in memory and in the database."""

    def __init__(self, items: WatchStore) -> None:
        self.items = items
        self._acked: dict[DelegateKey, Acked] = {}
        self._beacons: dict[Address, int] = {}
        """The newest view time each delegate's beacons told (in memory: the next beacon
        comes within a minute of a restart)."""
        for acked in items.acked():
            self._acked[(acked.token_network, acked.partner, acked.delegate)] = acked

    def get(self, network: Address, partner: Address, delegate: Address) -> Acked | None:
        return self._acked.get((network, partner, delegate))

    def record(self, acked: Acked) -> None:
        """Remember an acknowledgement (the caller holds a transaction)."""
        self.items.record_ack(acked)
        self._acked[(acked.token_network, acked.partner, acked.delegate)] = acked

    def heard(self, delegate: Address, view_time: int) -> bool:
        """A signed beacon of ``delegate``: it has seen the chain up to ``view_time`` since
        it acknowledged what it holds. True if that moves its view on."""
        if view_time <= self._beacons.get(delegate, 0):
            return False
        self._beacons[delegate] = view_time
        return True

    def delegates_of(self, network: Address, partner: Address) -> list[Address]:
        return [d for (n, p, d) in self._acked if n == network and p == partner]

    def view(
        self,
        network: Address,
        partner: Address,
        nonce: int,
        among: Collection[Address] | None = None,
    ) -> int | None:
        """The newest view time among the delegates (of ``among``, when given) that
        acknowledged a proof of ``partner`` with at least ``nonce`` (its view when it
        acknowledged, or a later one from its beacons: it has watched that proof since);
        None if none did."""
        found = self.best(network, partner, nonce, among)
        return None if found is None else found[0]

    def best(
        self,
        network: Address,
        partner: Address,
        nonce: int,
        among: Collection[Address] | None = None,
    ) -> tuple[int, Address] | None:
        """``view`` and the delegate that has it (the merchant view names who covers)."""
        best: tuple[int, Address] | None = None
        for (n, p, delegate), acked in self._acked.items():
            if among is not None and delegate not in among:
                continue
            if n == network and p == partner and acked.rank[0] >= nonce:
                seen = max(acked.view_time, self._beacons.get(delegate, 0))
                if best is None or seen > best[0]:
                    best = (seen, delegate)
        return best

    def views(
        self, latest: Mapping[ChannelKey, int], among: Collection[Address] | None = None
    ) -> dict[ChannelKey, int]:
        """``view`` for each channel of ``latest`` (partner nonces) that has one: what
        ``ActionSetChainView.delegated`` takes."""
        found = {}
        for (network, partner), nonce in latest.items():
            view = self.view(network, partner, nonce, among)
            if view is not None:
                found[(network, partner)] = view
        return found


@dataclass(slots=True)
class _InFlight:
    request_id: bytes
    message_id: bytes
    rank: tuple[int, int]
    sent_at: float
    delivered: bool = False


class Delegator:
    """Sends our partners' newest proofs to ``delegates``; see the module doc."""

    def __init__(
        self,
        *,
        runtime: NodeRuntime,
        book: DelegationBook,
        delegates: Sequence[Address],
        reward: int,
        send: Send,
        clock: Callable[[], float] = time.time,
        coalesce: float = COALESCE,
    ) -> None:
        self.runtime = runtime
        self.book = book
        self.delegates = tuple(dict.fromkeys(delegates))
        self.gateways: tuple[Address, ...] = ()
        """Gateways kept up to date too while the node is blind (``set_gateways``)."""
        self.reward = reward
        self.send = send
        self.clock = clock
        self.coalesce = coalesce
        self.on_delegate_view: ViewCallback | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._stop_listening: Callable[[], None] | None = None
        self._in_flight: dict[DelegateKey, _InFlight] = {}
        self._by_request: dict[bytes, DelegateKey] = {}
        self._by_message: dict[bytes, DelegateKey] = {}
        self._refused: dict[DelegateKey, tuple[int, int]] = {}
        self._retry_at: dict[DelegateKey, float] = {}
        self._signatures: dict[DelegateKey, tuple[Nonce, BalanceHash, Signature]] = {}
        self.stats = {"sent": 0, "acked": 0, "refused": 0, "signed": 0}

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._stop_listening = self.runtime.listen(self._on_effect)
        self._arm()

    def set_gateways(self, gateways: Sequence[Address]) -> None:
        """Keep ``gateways`` up to date as well (an empty list: none, the node sees the
        chain); those just added get every channel's newest proof at once."""
        chosen = tuple(g for g in dict.fromkeys(gateways) if g not in self.delegates)
        if chosen != self.gateways:
            added = set(chosen) - set(self.gateways)
            self.gateways = chosen
            if added:
                log.info("gateways kept up to date: %s", ", ".join("0x" + g.hex() for g in chosen))
                self._arm()

    def stop(self) -> None:
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- what changed -----------------------------------------------------------------------

    def _on_effect(self, effect: Effect) -> None:
        if self.delegates or self.gateways:
            self._arm()

    def _arm(self, delay: float | None = None) -> None:
        if self._timer is None and self._stop_listening is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.coalesce if delay is None else delay, self.flush)

    def flush(self) -> None:
        """Send each delegate the newest proof of every channel it is behind on."""
        self._timer = None
        now = self.clock()
        retry_in = float("inf")
        own = self.runtime.address
        for (network, partner), channel in list(self.runtime.state.channels.items()):
            if not client.delegable(channel):
                continue
            rank = (int(channel.partner.nonce), int(channel.our.nonce))
            for delegate in self.delegates + self.gateways:
                if delegate in (partner, own):
                    continue  # the closer cannot watch itself, nor we ourselves
                key = (network, partner, delegate)
                acked = self.book.get(network, partner, delegate)
                if acked is not None and acked.rank >= rank:
                    continue
                if self._refused.get(key) == rank:
                    continue
                if self._retry_at.get(key, 0.0) > now:
                    retry_in = min(retry_in, self._retry_at[key] - now)
                    continue
                flying = self._in_flight.get(key)
                if flying is not None:
                    if now - flying.sent_at < IN_FLIGHT_TIMEOUT:
                        continue
                    self._forget(key)
                if not self._send(key, channel, rank, now):
                    retry_in = min(retry_in, RETRY_FULL)
        if retry_in != float("inf"):
            self._arm(retry_in)

    def _send(
        self, key: DelegateKey, channel: ChannelState, rank: tuple[int, int], now: float
    ) -> bool:
        _, partner, delegate = key
        partner_end = channel.partner
        cached = self._signatures.get(key)
        if cached is not None and cached[:2] == (partner_end.nonce, partner_end.balance_hash):
            signature = cached[2]
        else:
            signature = client.delegation_signature(
                self.runtime.key, self.runtime.address, channel, delegate, self.reward
            )
            self._signatures[key] = (partner_end.nonce, partner_end.balance_hash, signature)
            self.stats["signed"] += 1
        request_id = secrets.token_bytes(REQUEST_ID_LENGTH)
        request = client.delegate_update(
            channel,
            own=self.runtime.address,
            request_id=request_id,
            reward=self.reward,
            signature=signature,
        )
        message_id = self.send(delegate, encode(request), UPDATE_LIFETIME)
        if message_id is None:
            return False
        self._in_flight[key] = _InFlight(request_id, message_id, rank, now)
        self._by_request[request_id] = key
        self._by_message[message_id] = key
        self.stats["sent"] += 1
        log.debug("delegated nonce %d of 0x%s to 0x%s", rank[0], partner.hex(), delegate.hex())
        return True

    def _forget(self, key: DelegateKey) -> _InFlight | None:
        flying = self._in_flight.pop(key, None)
        if flying is not None:
            self._by_request.pop(flying.request_id, None)
            self._by_message.pop(flying.message_id, None)
        return flying

    # -- what came back ---------------------------------------------------------------------

    def on_mesh_outcome(self, message_id: bytes, delivered: bool) -> bool:
        """The mesh's word on a message we sent; True if it was one of our updates."""
        key = self._by_message.get(message_id)
        if key is None:
            return False
        if delivered:
            flying = self._in_flight.get(key)
            if flying is not None:
                flying.delivered = True
            return True
        self._forget(key)  # expired undelivered: the newest goes again
        self._arm()
        return True

    def on_ack(self, origin: Address, ack: WatchAck) -> bool:
        """A delegate's answer; True if it answers one of our updates. Records it (the
        caller acknowledges the mesh message once this returns)."""
        key = self._by_request.get(ack.request_id)
        if key is None:
            return False
        network, partner, delegate = key
        if origin != delegate:
            log.warning(
                "an answer to our update for 0x%s came from 0x%s", delegate.hex(), origin.hex()
            )
            return True
        flying = self._forget(key)
        assert flying is not None
        store = self.runtime.store
        data: dict[str, object] = {
            "token_network": "0x" + network.hex(),
            "partner": "0x" + partner.hex(),
            "delegate": "0x" + delegate.hex(),
            "nonce": str(flying.rank[0]),
            "view_time": int(ack.view_time),
        }
        latest = self.runtime.state.channels.get((network, partner))
        before = (
            None
            if latest is None
            else self.book.view(network, partner, latest.partner.nonce, self.delegates)
        )
        now = self.clock()
        if ack.accepted:
            self.stats["acked"] += 1
            acked = Acked(network, partner, delegate, flying.rank, int(ack.view_time), now)
            with store.transaction():
                self.book.record(acked)
                store.add_event("delegate_ack", data, now)
        else:
            self.stats["refused"] += 1
            if ack.reason in PASSING:
                self._retry_at[key] = now + RETRY_REFUSED
            else:
                self._refused[key] = flying.rank
            data.update(reason=ack.reason.name.lower(), text=ack.text)
            with store.transaction():
                store.add_event("delegate_refused", data, now)
            log.warning(
                "delegate 0x%s refused nonce %d of 0x%s: %s",
                delegate.hex(), flying.rank[0], partner.hex(), ack.text or ack.reason.name,
            )  # fmt: skip
        if latest is not None:
            self._tell_view(network, partner, latest.partner.nonce, before)
        self._arm()  # what changed while this one flew goes now
        return True

    def on_beacon(self, watcher: Address, view_time: int) -> None:
        """A beacon (signature checked) of one of our delegates moves the view of every
        channel whose latest proof it holds."""
        if watcher not in self.delegates:
            return
        held = [
            (network, partner, channel.partner.nonce)
            for (network, partner), channel in self.runtime.state.channels.items()
            if watcher in self.book.delegates_of(network, partner)
        ]
        before = [
            self.book.view(network, partner, nonce, self.delegates)
            for network, partner, nonce in held
        ]
        if not self.book.heard(watcher, view_time):
            return
        for (network, partner, nonce), old in zip(held, before, strict=True):
            self._tell_view(network, partner, nonce, old)

    def _tell_view(
        self, network: Address, partner: Address, nonce: int, before: int | None
    ) -> None:
        if self.on_delegate_view is None:
            return
        found = self.book.best(network, partner, nonce, self.delegates)
        after = None if found is None else found[0]
        if found is not None and after != before:
            try:
                self.on_delegate_view(network, partner, found[0], nonce, found[1])
            except Exception:
                log.exception("on_delegate_view raised")

    def views(self) -> dict[ChannelKey, int]:
        """The delegates' view time per channel, for our latest proof from each partner."""
        latest = {
            key: int(channel.partner.nonce)
            for key, channel in self.runtime.state.channels.items()
            if client.delegable(channel)
        }
        return self.book.views(latest, self.delegates)
