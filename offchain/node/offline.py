"""The node's side of the offline safety window: does it see the chain, and what is due.

Belongs here: ``OfflineMonitor``, which once a second
- judges whether the node sees the chain (``offchain.chain.sync.assess``: the endpoint
  answers and its newest block is at most ``chain_max_block_age`` old by the device
  clock), remembers since when it does not (``blind_since``, kept in the database so a
  restart while blind still knows), and warns of a device clock behind the chain's by
  more than ``clock_tolerance``;
- tells the core what it sees (``ActionSetChainView``) when that changes: no window while
  the chain is seen; otherwise the chain time up to which every log is applied, and the
  views of delegates that hold our latest proof from a partner (``on_delegate_view``,
  called by the delegation client; a view whose partner has signed a newer proof since is
  dropped until the delegate acknowledges that one);
- writes a ``deadline_warning`` event ``deadline_warn_lead`` seconds ahead of every
  deadline that matters now (while blind: every horizon and registration deadline; always:
  every deferred submission not confirmed), once each;
and answers the API's questions: the deadlines (``deadlines``: the core's
``offline.deadlines`` with the schedule's transactions and the chain's settle deadlines),
who covers each (``coverage``: the node itself, a delegate, or, while blind, a gateway it
handed the submission to: ``gateway_cover``, set by the gateway client), the earliest one
that matters, and the merchant view of a received payment (``risk``). A deadline a
gateway reported done is not warned about (the node still lists it until it sees the
chain itself: the gateway's word is not proof).

Does not belong here: the rules of the window (``offchain.protocol.offline``), sending
transactions (``chain_bridge``), delegation (the watch service), HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from offchain.chain.sync import ChainFollower, ChainStatus, Liveness, assess
from offchain.node.chain_bridge import ChainBridge
from offchain.node.runtime import NodeRuntime
from offchain.node.service import Coverage, PaymentRisk
from offchain.protocol import offline
from offchain.protocol.channel import ChannelPhase
from offchain.protocol.offline import Deadline, DeadlineKind
from offchain.protocol.state import ChannelKey
from offchain.protocol.transitions import ActionSetChainView, ContractSendSecretRegister, Effect
from offchain.protocol.types import Address, Nonce, Timestamp

log = logging.getLogger("smartmesh.offline")

INTERVAL: Final = 1.0
PERSIST_EVERY: Final = 30.0
"""Seconds between writes of the last moment the chain was seen (older is only safer)."""
SKEW_LOG_EVERY: Final = 600.0
META_LAST_SEEN: Final = "offline.last_seen"
META_VIEW_TIME: Final = "offline.view_time"
WARNING_TEXT: Final = "reach the chain before {when} or hand the proofs to a delegate"

GatewayCover = Callable[[Deadline], "tuple[Address, bool] | None"]
"""(gateway, done) when a gateway was handed what a deadline asks for, else None."""


@dataclass(frozen=True, slots=True)
class DelegateView:
    """What a delegate reported: its view time, for our proof of `nonce` from the partner."""

    view_time: Timestamp
    nonce: Nonce
    delegate: Address | None


def when(device_time: float | None, chain_time: int | None = None) -> str:
    """A deadline for people: UTC by the device clock, and the chain time behind it."""
    if device_time is None:
        return "no deadline"
    text = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(device_time))
    return text if chain_time is None else f"{text} (chain time {chain_time})"


class OfflineMonitor:
    """Chain liveness, the core's chain view, deadline warnings and the merchant view."""

    def __init__(
        self,
        runtime: NodeRuntime,
        follower: ChainFollower,
        bridge: ChainBridge,
        *,
        max_block_age: float,
        warn_lead: float,
        clock: Callable[[], float] = time.time,
        interval: float = INTERVAL,
        status: Callable[[], ChainStatus] | None = None,
    ) -> None:
        self.runtime = runtime
        self.follower = follower
        self.bridge = bridge
        self.store = runtime.store
        self.max_block_age = max_block_age
        self.warn_lead = warn_lead
        self.clock = clock
        self.interval = interval
        self.chain_status: Callable[[], ChainStatus] = status or (lambda: follower.status)
        """The follower's status (a test may give its own)."""
        self._delegates: dict[ChannelKey, DelegateView] = {}
        self.gateway_cover: GatewayCover | None = None
        """Who among the gateways covers a deadline (the gateway client sets it)."""
        self._warned: set[tuple[object, ...]] = set()
        self._submitting: asyncio.Future[list[Effect]] | None = None
        self._reachable: bool | None = None
        self._last_seen = _float(self.store.meta(META_LAST_SEEN))
        self._saved_view = _int(self.store.meta(META_VIEW_TIME))
        self._persisted_at = 0.0
        self._skew_logged_at = -SKEW_LOG_EVERY
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="node-offline")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._reachable:
            self._persist(self.clock())

    async def _run(self) -> None:
        while True:
            try:
                self.check()
            except Exception:  # our bug: liveness must keep being judged
                log.exception("offline monitor: a check failed")
            await asyncio.sleep(self.interval)

    # -- what the node sees -----------------------------------------------------------------

    def liveness(self, now: float | None = None) -> Liveness:
        return assess(self.chain_status(), self.clock() if now is None else now, self.max_block_age)

    @property
    def reachable(self) -> bool:
        return bool(self._reachable)

    @property
    def blind(self) -> bool:
        """Judged and not seeing the chain (False before the first judgement)."""
        return self._reachable is False

    def blind_since(self) -> float | None:
        """Device time the chain was last seen, while it is not seen now (None otherwise,
        or if it was never seen)."""
        return None if self._reachable else self._last_seen

    def view_time(self) -> Timestamp | None:
        """Chain time up to which every log of ours is applied, as best known."""
        seen = self.chain_status().view_time
        if seen is not None:
            return seen
        if self.runtime.state.view_time is not None:
            return self.runtime.state.view_time
        return None if self._saved_view is None else Timestamp(self._saved_view)

    def on_delegate_view(
        self,
        token_network: bytes,
        partner: bytes,
        view_time: int | None,
        delegate: bytes | None = None,
        nonce: int | None = None,
    ) -> None:
        """A delegate acknowledged our latest proof from ``partner`` (of ``nonce``; the one
        we hold now when not given) and reported that it sees the chain up to
        ``view_time``; None: it no longer holds it."""
        key = (Address(token_network), Address(partner))
        if view_time is None:
            self._delegates.pop(key, None)
        else:
            channel = self.runtime.state.channels.get(key)
            held = nonce if nonce is not None else (0 if channel is None else channel.partner.nonce)
            self._delegates[key] = DelegateView(
                Timestamp(view_time), Nonce(held), None if delegate is None else Address(delegate)
            )
        self._update_core(self.clock())

    # -- one round ----------------------------------------------------------------------------

    def check(self, now: float | None = None) -> None:
        """Judge liveness, update the core's view, write the warnings that are due."""
        now = self.clock() if now is None else now
        status = self.chain_status()
        if status.latest_block is None and status.error is None:
            return  # the first poll has not ended: nothing known yet
        liveness = self.liveness(now)
        self._note_skew(liveness, now)
        was = self._reachable
        self._reachable = liveness.reachable
        if liveness.reachable:
            self._last_seen = now
            if was is False:
                log.warning("the chain is seen again (view at chain time %s)", liveness.view_time)
                self._record("chain_reachable", {"view_time": liveness.view_time}, now)
            if now - self._persisted_at >= PERSIST_EVERY:
                self._persist(now)
        elif was is not False:
            log.warning(
                "blind: the chain is not seen (block age %s s, endpoint %s); last seen %s",
                None if liveness.block_age is None else round(liveness.block_age),
                "answers" if liveness.answering else "does not answer",
                when(self._last_seen),
            )
            if was:
                self._persist(now)
            self._record(
                "chain_unreachable",
                {"blind_since": self._last_seen, "view_time": self.view_time()},
                now,
            )
        self._update_core(now)
        self._warn(now)

    def _update_core(self, now: float) -> None:
        if self._reachable is None:
            return
        if self._submitting is not None and not self._submitting.done():
            return  # the last view is not committed yet: compare once it is
        state = self.runtime.state
        view: Timestamp | None = None
        delegated: dict[ChannelKey, Timestamp] = {}
        if not self._reachable:
            view = self.view_time() or Timestamp(0)
            for key, seen in list(self._delegates.items()):
                channel = state.channels.get(key)
                if channel is None or channel.partner.nonce > seen.nonce:
                    continue  # the delegate holds an older proof than ours: it cannot cover it
                delegated[key] = seen.view_time
        if state.view_time == view and dict(state.delegated) == delegated:
            return
        self._submitting = self.runtime.submit(
            ActionSetChainView(Timestamp(int(now)), view, delegated)
        )

    def _note_skew(self, liveness: Liveness, now: float) -> None:
        tolerance = self.runtime.settings.clock_tolerance
        age = liveness.block_age
        if age is not None and -age > tolerance and now - self._skew_logged_at >= SKEW_LOG_EVERY:
            self._skew_logged_at = now
            log.warning(
                "clock skew: the newest block is %.0f s ahead of this device's clock (tolerance "
                "%d s); deadlines assume the two agree within the tolerance: set the clock",
                -age,
                tolerance,
            )

    def _persist(self, now: float) -> None:
        self._persisted_at = now
        view = self.chain_status().view_time
        with self.store.transaction():
            if self._last_seen is not None:
                self.store.set_meta(META_LAST_SEEN, repr(self._last_seen))
            if view is not None:
                self.store.set_meta(META_VIEW_TIME, str(int(view)))
                self._saved_view = int(view)

    def _record(self, kind: str, data: dict[str, object], now: float) -> None:
        with self.store.transaction():
            self.store.add_event(kind, data, now)

    # -- deadlines ----------------------------------------------------------------------------

    def deadlines(self, now: float | None = None) -> list[Deadline]:
        """Everything the node must get on chain, earliest first."""
        moment = Timestamp(int(self.clock() if now is None else now))
        work = [effect for _, effect in self.bridge.scheduled()]
        settles: dict[ChannelKey, Timestamp] = {}
        for effect in work:
            if isinstance(effect, ContractSendSecretRegister):
                continue
            record = self.follower.directory.find(
                effect.token_network, self.runtime.address, effect.partner
            )
            if record is not None and record.settle_deadline is not None:
                settles[(effect.token_network, effect.partner)] = Timestamp(record.settle_deadline)
        return offline.deadlines(self.runtime.state, moment, work, settles)

    def matters(self, item: Deadline) -> bool:
        """Whether a deadline calls for the user now: while blind, all of them; while the
        chain is seen, only transactions the node has not got confirmed yet."""
        return item.pending or not self._reachable

    def next_deadline(self, now: float | None = None) -> Deadline | None:
        for item in self.deadlines(now):
            if item.deadline is not None and self.matters(item):
                return item
        return None

    def coverage(self, item: Deadline) -> tuple[Coverage, Address | None]:
        if item.delegated and item.partner is not None:
            seen = self._delegates.get((item.token_network, item.partner))
            return Coverage.DELEGATE, None if seen is None else seen.delegate
        covered = self._gateway(item)
        if covered is not None:
            return Coverage.GATEWAY, covered[0]
        return Coverage.SELF, None

    def _gateway(self, item: Deadline) -> tuple[Address, bool] | None:
        if self.gateway_cover is None:
            return None
        try:
            return self.gateway_cover(item)
        except Exception:  # our bug: coverage is shown, never needed to run
            log.exception("gateway coverage raised")
            return None

    def text(self, item: Deadline) -> str:
        if item.deadline is None:
            return "no deadline: sent whenever the chain is reachable"
        return WARNING_TEXT.format(when=when(item.deadline, item.chain_deadline))

    def _warn(self, now: float) -> None:
        for item in self.deadlines(now):
            if item.deadline is None or not self.matters(item):
                continue
            if now < item.deadline - self.warn_lead:
                continue
            by_gateway = self._gateway(item)
            if by_gateway is not None and by_gateway[1]:
                continue  # a gateway reports it done
            key = (item.kind, item.token_network, item.partner, item.secrethash, item.deadline)
            if key in self._warned:
                continue
            self._warned.add(key)
            covered, delegate = self.coverage(item)
            text = self.text(item)
            if now > item.deadline:
                text = "missed: " + text
            log.warning(
                "deadline %s with 0x%s: %s",
                item.kind.value,
                "" if item.partner is None else item.partner.hex(),
                text,
            )
            data: dict[str, object] = {
                "what": item.kind.value,
                "token_network": "0x" + item.token_network.hex(),
                "partner": None if item.partner is None else "0x" + item.partner.hex(),
                "deadline": item.deadline,
                "chain_deadline": item.chain_deadline,
                "covered_by": covered.value,
                "delegate": None if delegate is None else "0x" + delegate.hex(),
                "nonce": str(item.nonce),
                "amount": str(item.amount),
                "text": text,
            }
            if item.secrethash is not None:
                data["secrethash"] = "0x" + item.secrethash.hex()
            self._record("deadline_warning", data, now)

    # -- the merchant view --------------------------------------------------------------------

    def risk(
        self, token_network: bytes, partner: bytes, received_at: float, within_window: bool
    ) -> PaymentRisk | None:
        """A received payment's risk, None once it is safe: the node has seen the chain
        (synced) since it came and nothing of that channel waits to be sent."""
        key = (Address(token_network), Address(partner))
        waiting = any(
            not isinstance(effect, ContractSendSecretRegister)
            and (effect.token_network, effect.partner) == key
            for _, effect in self.bridge.scheduled()
        )
        seen_since = bool(self._reachable) or (
            self._last_seen is not None and self._last_seen >= received_at
        )
        if seen_since and self.chain_status().synced and not waiting and within_window:
            return None
        pending = []
        if waiting:
            pending = [
                item
                for item in self.deadlines()
                if item.pending and (item.token_network, item.partner) == key
            ]
        channel = self.runtime.state.channels.get(key)
        if channel is None:
            return None
        if pending:
            item = pending[0]
        elif channel.phase is ChannelPhase.OPENED:
            by, limit, delegated = offline.update_horizon(
                self.runtime.state.settings,
                channel,
                self.runtime.state.view_time,
                self.runtime.state.delegated,
                Timestamp(int(self.clock())),
            )
            item = Deadline(
                DeadlineKind.UPDATE_HORIZON, key[0], key[1], by, limit, delegated=delegated
            )
        else:
            return None  # closed by us or settled: the chain has decided
        covered, delegate = self.coverage(item)
        return PaymentRisk(
            nonce=int(channel.partner.nonce),
            deadline=None if item.deadline is None else float(item.deadline),
            chain_deadline=item.chain_deadline,
            covered_by=covered,
            delegate=delegate,
            within_window=within_window,
        )


def _float(text: str | None) -> float | None:
    try:
        return None if text is None else float(text)
    except ValueError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return None if text is None else int(text)
    except ValueError:
        return None
