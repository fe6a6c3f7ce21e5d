"""A blind node's way to the chain: its due submissions handed to gateways of its mesh.

Belongs here: ``GatewayClient``, which once a second, while the node does not see the
chain (``OfflineMonitor.blind``; docs/offline.md §4):
- picks gateways: watchers whose signed beacons say they see the chain (best view first),
  then the configured ``delegates``; never the counterparty of what is handed;
- keeps the best ``DELEGATION_FANOUT`` of them up to date with every partner's newest
  proof (``Delegator.set_gateways``: a ``DelegateUpdate`` now and after each change), so
  that a close with an old proof that such a gateway sees is corrected;
- hands each due submission to a gateway: the secret registrations and unlocks of the
  node's schedule (``RegisterSecret``, ``Unlock``), the registration of every incoming
  lock whose secret the node knows and whose payer has not unlocked it within
  ``handoff.REGISTER_GRACE`` (before the core itself would ask for it: a gateway path is
  slow), and the node's own transactions (close, update, withdraw, cooperative settle, and
  any transaction signed before the chain went away) as ``RawTransaction``: signed here,
  under the schedule's own outbox key, with a fixed gas limit, fees from the last ones seen
  and the account's last known nonce (``TxSender.sign_offline``: a nonce is never used by
  two different transactions, and once the chain is back the node's sender finds the
  gateway's receipt or broadcasts the same bytes itself);
- writes each hand-off and each gateway it goes to before the request is sent
  (``watch_store`` tables ``gateway_handoffs``, ``gateway_tries``: a crash forgets nothing
  and never makes a second hand-off of one submission), learns the answers
  (``WatchAck``, ``WatchOutcome``; events ``gateway_handed``, ``gateway_refused``,
  ``gateway_done``, ``gateway_failed``), and hands a submission to the next gateway when
  one refuses it, does not acknowledge it or report its outcome within ``patience``, or
  when its deadline is near (``offchain.watch.handoff``).
While the node sees the chain it hands nothing (its own schedule sends everything, and
asks the chain first whether each is still needed: a submission a gateway already got on
chain is then found unnecessary), and every 30 s notes the fees and the account's nonce
that signing without the chain will need.

A gateway's outcome is its word, not proof: the node's schedule keeps each item until it
sees the chain itself; ``covering`` tells ``GET /deadlines`` which gateway has it.

Does not belong here: the policy of whom and when (``offchain.watch.handoff``), the wire
format, the gateway's side (``watcher``), delegates' acknowledgements (``delegation``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from offchain.chain import calls
from offchain.chain.errors import ChainError, ChainUnavailable, OutboxConflict, TransactionFailed
from offchain.chain.manifest import Deployment
from offchain.chain.outbox import IntentStatus
from offchain.chain.sync import ChainFollower
from offchain.chain.transactions import Fees, TxSender
from offchain.node.chain_bridge import ChainBridge
from offchain.node.delegation import Delegator
from offchain.node.offline import OfflineMonitor
from offchain.node.store import ContractSend
from offchain.node.watch_service import WatchService
from offchain.node.watch_store import Handed, WatchStore
from offchain.protocol.crypto import sha256
from offchain.protocol.offline import Deadline, DeadlineKind, act_by
from offchain.protocol.transitions import (
    ContractSendClose,
    ContractSendCoopSettle,
    ContractSendSecretRegister,
    ContractSendUnlock,
    ContractSendUpdate,
    ContractSendWithdraw,
)
from offchain.protocol.types import Address, Generation, Secret, SecretHash, Timestamp
from offchain.watch import handoff
from offchain.watch.handoff import HandKind, HandOff, HandState, Try
from offchain.watch.wire import (
    MAX_UNLOCK_LOCKS,
    Answer,
    OutcomeStatus,
    RawTransaction,
    RegisterSecret,
    Request,
    Service,
    Unlock,
    WatchAck,
    WatchOutcome,
    decode,
    encode,
)

log = logging.getLogger("smartmesh.gateway")

INTERVAL: Final = 1.0
SNAPSHOT_EVERY: Final = 30.0
"""Seconds between two readings of the fees and the account's nonce while the chain is seen."""
DELEGATION_FANOUT: Final = 2
"""Gateways kept up to date with the partners' newest proofs while blind: a gateway that
does nothing cannot be noticed (the node does not see the close it would miss), so more
than one holds them."""
RAW_GAS: Final[dict[type, int]] = {
    ContractSendClose: 200_000,
    ContractSendUpdate: 200_000,
    ContractSendWithdraw: 200_000,
    ContractSendCoopSettle: 250_000,
}
"""Gas limits of transactions signed without the chain (no estimate is possible): over
twice what each uses (``gas.json``: close 85k, update 66k, withdraw 81k, cooperative settle
105k). A limit only caps: unused gas is not paid."""
FEE_FACTOR: Final = 2
"""The fee cap of a transaction signed without the chain: twice the one the sender would
offer now (which is twice the base fee plus the tip), so four times the last base fee
seen. The base fee rises at most 12.5 % a block: four times covers twelve full blocks in a
row; a cap only limits what is paid (a transaction pays the base fee and its tip), so the
price of a high cap is only that the account must hold gas times the cap. Too low after a
long blackout, the gateway reports it refused or unmined and the node's sender replaces it
(same nonce, higher fees) once the chain is back."""
UNKNOWN_FEES: Final = Fees(max_fee=100 * 10**9, priority_fee=2 * 10**9)
"""Fees when none were ever seen (the node never saw the chain): 100 gwei, 2 gwei tip."""
RAW_LIFETIME: Final = 6 * 3600
"""Seconds a gateway keeps broadcasting a transaction that has no deadline of its own."""
SIGN_WAIT: Final = 5.0
"""Seconds a round waits for the sender to sign offline before it tries in the next."""
META_FEES: Final = "gateway.fees"
META_NONCE: Final = "gateway.nonce"


@dataclass(frozen=True, slots=True)
class Wanted:
    """A submission the node would hand to a gateway now."""

    subject: str
    kind: HandKind
    what: str
    build: Callable[[bytes], Request]
    act_by: float | None
    chain_deadline: int | None
    token_network: Address | None = None
    partner: Address | None = None
    secrethash: bytes | None = None
    derived: bool = False


@dataclass(frozen=True, slots=True)
class _Label:
    """What a signed transaction of the schedule is for (``GET /deadlines``)."""

    what: str
    token_network: Address
    partner: Address
    chain_deadline: int | None


_WHAT: Final[dict[type, DeadlineKind]] = {
    ContractSendClose: DeadlineKind.CLOSE,
    ContractSendUpdate: DeadlineKind.UPDATE,
    ContractSendWithdraw: DeadlineKind.WITHDRAW,
    ContractSendCoopSettle: DeadlineKind.COOPERATIVE_SETTLE,
}


class GatewayClient:
    """Hands a blind node's due submissions to gateways; see the module doc."""

    def __init__(
        self,
        *,
        watch: WatchService,
        bridge: ChainBridge,
        offline: OfflineMonitor,
        sender: TxSender,
        follower: ChainFollower,
        deployment: Deployment,
        delegates: Sequence[bytes] = (),
        patience: float = 60.0,
        clock: Callable[[], float] = time.time,
        interval: float = INTERVAL,
    ) -> None:
        self.watch = watch
        self.runtime = watch.runtime
        self.store = watch.runtime.store
        self.items = WatchStore(self.store.conn)
        self.bridge = bridge
        self.offline = offline
        self.sender = sender
        self.follower = follower
        self.deployment = deployment
        self.delegates = tuple(Address(d) for d in delegates)
        self.patience = patience
        self.clock = clock
        self.interval = interval
        self.own = watch.runtime.address
        self._first_seen: dict[str, float] = {}
        self._labels: dict[str, _Label] = {}
        self._snapshot_at = -SNAPSHOT_EVERY
        self._was_blind = True
        """Whether the last round was blind (True at first: a restart that finds the chain
        closes what it had open before the crash)."""
        self._task: asyncio.Task[None] | None = None
        self.stats = {"handed": 0, "done": 0, "signed": 0}

    @property
    def delegator(self) -> Delegator:
        return self.watch.delegator

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self.watch.answer_listeners.append(self.on_answer)
        self.offline.gateway_cover = self.covering
        self._task = asyncio.get_running_loop().create_task(self._run(), name="node-gateways")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(ValueError):
            self.watch.answer_listeners.remove(self.on_answer)

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # our bug: the node must keep trying to reach the chain
                log.exception("gateway client: a round failed")
            await asyncio.sleep(self.interval)

    # -- one round ----------------------------------------------------------------------------

    async def tick(self, now: float | None = None) -> None:
        """Hand what is due while blind; note fees and nonce while the chain is seen."""
        now = self.clock() if now is None else now
        if not self.offline.blind:
            if self._was_blind:
                self._was_blind = False
                self.delegator.set_gateways(())
                self._close_open("the chain is seen again: the node sends it itself", now)
            if self.offline.reachable and now - self._snapshot_at >= SNAPSHOT_EVERY:
                await self._snapshot(now)
            return
        self._was_blind = True
        gateways = self.gateways(now)
        self.delegator.set_gateways(self._delegation_gateways(gateways))
        wanted = await self._wanted(now, bool(gateways))
        for item in wanted:
            self._hand(item, gateways, now)
        subjects = {item.subject for item in wanted}
        for row in self.items.handoffs(HandState.OPEN.value):
            if row.subject not in subjects:
                self._set_state(row, HandState.CLOSED, "no longer needed", now)
        for subject in [s for s in self._first_seen if s not in subjects]:
            del self._first_seen[subject]

    def gateways(self, now: float) -> list[Address]:
        """Whom to hand submissions to, best first: watchers whose beacons say they see
        the chain (furthest view first), then the configured delegates."""
        found = [b.watcher for b in self.watch.beacons.fresh(int(now * 1000), Service.GATEWAY)]
        found += [d for d in self.delegates if d not in found]
        return [g for g in found if g != self.own]

    def _delegation_gateways(self, gateways: Sequence[Address]) -> list[Address]:
        chosen = []
        for gateway in gateways:
            beacon = self.watch.beacons.get(gateway)
            if beacon is not None and beacon.min_reward > self.delegator.reward:
                continue  # it would refuse our delegation (reward_too_low)
            chosen.append(gateway)
        return chosen[:DELEGATION_FANOUT]

    # -- what is due ----------------------------------------------------------------------------

    async def _wanted(self, now: float, signing: bool) -> list[Wanted]:
        """Every submission the node would hand now (``signing``: a gateway is known, so
        the schedule's own transactions may be signed for it)."""
        wanted: list[Wanted] = []
        scheduled = self.bridge.scheduled()
        keys = {self.bridge.intent_key(key) for key, _ in scheduled}
        for stale in [k for k in self._labels if k not in keys]:
            del self._labels[stale]
        for key, effect in scheduled:
            match effect:
                case ContractSendSecretRegister():
                    wanted.append(self._register(effect.secret, int(effect.deadline)))
                case ContractSendUnlock():
                    unlock = self._unlock(effect)
                    if unlock is not None:
                        wanted.append(unlock)
                case _:
                    if signing:
                        signing = await self._sign(key, effect, now)
        known = {w.subject for w in wanted}
        for item in self.offline.deadlines(now):
            if item.kind is not DeadlineKind.REGISTER_SECRET or item.pending:
                continue
            if item.secrethash is None or item.chain_deadline is None:
                continue
            secret = self.runtime.state.secrets.get(item.secrethash)
            if secret is None:
                continue
            register = self._register(secret, int(item.chain_deadline), derived=True)
            if register.subject not in known:
                known.add(register.subject)
                wanted.append(register)
        for intent in self.sender.outbox.unfinished():
            if intent.status is not IntentStatus.SENT or not intent.attempts:
                continue
            wanted.append(self._raw(intent.key, intent.attempts[-1].raw_tx, now))
        return wanted

    def _register(self, secret: Secret, expiration: int, *, derived: bool = False) -> Wanted:
        secrethash = SecretHash(sha256(secret))
        deadline = act_by(self.runtime.state.settings, expiration)
        return Wanted(
            subject=f"secret:{secrethash.hex()}",
            kind=HandKind.REGISTER_SECRET,
            what=DeadlineKind.REGISTER_SECRET.value,
            build=lambda rid: RegisterSecret(rid, secret, Timestamp(expiration)),
            act_by=float(deadline),
            chain_deadline=expiration,
            partner=self._payer_of(secrethash),
            secrethash=secrethash,
            derived=derived,
        )

    def _payer_of(self, secrethash: SecretHash) -> Address | None:
        for (_, partner), channel in self.runtime.state.channels.items():
            if channel.partner.lock_for(secrethash) is not None:
                return partner
        return None

    def _unlock(self, effect: ContractSendUnlock) -> Wanted | None:
        record = self.follower.directory.find(effect.token_network, self.own, effect.partner)
        if record is None or record.settled_generation is None:
            return None
        if not effect.locks or len(effect.locks) > MAX_UNLOCK_LOCKS:
            return None  # more than one payload holds: the node unlocks itself when back
        receiver, sender = (effect.partner, self.own) if effect.ours else (self.own, effect.partner)
        generation = Generation(record.settled_generation)
        chain_id = self.deployment.chain_id
        request = Unlock(
            bytes(8), chain_id, effect.token_network, receiver, sender, generation, effect.locks
        )
        subject = (
            f"unlock:{effect.token_network.hex()}:{receiver.hex()}:{sender.hex()}:"
            f"{generation}:{request.locksroot.hex()}"
        )
        return Wanted(
            subject=subject,
            kind=HandKind.UNLOCK,
            what=DeadlineKind.UNLOCK.value,
            build=lambda rid: Unlock(
                rid, chain_id, effect.token_network, receiver, sender, generation, effect.locks
            ),
            act_by=None,
            chain_deadline=None,
            token_network=effect.token_network,
            partner=effect.partner,
        )

    async def _sign(self, key: tuple[int, int], effect: ContractSend, now: float) -> bool:
        """Sign one of the schedule's transactions for a gateway to broadcast (once: the
        outbox keeps it under the schedule's own key); False when the sender is busy (the
        round signs nothing more)."""
        intent_key = self.bridge.intent_key(key)
        limit = self.bridge.deadline_of(effect)
        assert not isinstance(effect, ContractSendSecretRegister | ContractSendUnlock)
        self._labels[intent_key] = _Label(
            _WHAT[type(effect)].value,
            effect.token_network,
            effect.partner,
            None if limit is None else int(limit),
        )
        known = self.sender.intent(intent_key)
        if known is not None and known.status is not IntentStatus.QUEUED:
            return True
        if limit is not None and now > limit:
            return True  # too late for the chain: the schedule finds it unnecessary or failed
        try:
            call = calls.for_effect(
                effect, self.own, self.deployment.secret_registry, self.follower.directory
            )
            # The sender's lock may be held by a step waiting on an endpoint that does not
            # answer: this round goes on without it (the signing waits only for the lock;
            # once it holds it nothing can interrupt it).
            await asyncio.wait_for(
                self.sender.sign_offline(
                    intent_key,
                    call,
                    gas=RAW_GAS[type(effect)],
                    fees=self._offline_fees(),
                    least_nonce=self._known_nonce(),
                ),
                SIGN_WAIT,
            )
        except TimeoutError:
            log.info("%s not signed yet: the sender is busy", type(effect).__name__)
            return False
        except (ChainError, OutboxConflict, TransactionFailed) as exc:
            log.info("%s not signed for a gateway: %s", type(effect).__name__, exc)
            return True
        self.stats["signed"] += 1
        return True

    def _raw(self, intent_key: str, raw: bytes, now: float) -> Wanted:
        label = self._labels.get(intent_key)
        chain_deadline = None if label is None else label.chain_deadline
        deadline = chain_deadline if chain_deadline is not None else int(now) + RAW_LIFETIME
        probe = RawTransaction(bytes(8), Timestamp(deadline), raw)
        settings = self.runtime.state.settings
        return Wanted(
            subject=f"raw:{probe.tx_hash.hex()}",
            kind=HandKind.RAW_TRANSACTION,
            what="transaction" if label is None else label.what,
            build=lambda rid: RawTransaction(rid, Timestamp(deadline), raw),
            act_by=None if chain_deadline is None else float(act_by(settings, chain_deadline)),
            chain_deadline=chain_deadline,
            token_network=None if label is None else label.token_network,
            partner=None if label is None else label.partner,
        )

    # -- handing ----------------------------------------------------------------------------------

    def _hand(self, item: Wanted, gateways: Sequence[Address], now: float) -> None:
        row = self.items.handoff(item.subject)
        if row is None:
            first = self._first_seen.setdefault(item.subject, now)
            if not gateways or not handoff.due(item.derived, first, now):
                return
            request_id = secrets.token_bytes(8)
            row = Handed(
                request_id=request_id,
                subject=item.subject,
                kind=item.kind.value,
                what=item.what,
                token_network=item.token_network,
                partner=item.partner,
                secrethash=item.secrethash,
                payload=encode(item.build(request_id)),
                act_by=item.act_by,
                chain_deadline=item.chain_deadline,
                state=HandState.OPEN.value,
                outcome=None,
                gateway=None,
                created_at=now,
            )
            with self.store.transaction():
                self.items.add_handoff(row, now)
        elif row.state == HandState.CLOSED.value:
            # Wanted again (the node went blind again with it still to do): reopened.
            with self.store.transaction():
                self.items.set_handoff_state(row.request_id, HandState.OPEN.value, now)
        elif row.state != HandState.OPEN.value:
            return
        plan = self._plan(row)
        verdict = handoff.state(plan, now)
        if verdict is not HandState.OPEN:
            self._set_state(row, verdict, "past its chain deadline", now)
            return
        candidates = [g for g in gateways if g != row.partner]
        request = decode(row.payload)
        assert isinstance(request, RegisterSecret | Unlock | RawTransaction)
        for gateway in handoff.next_gateways(plan, candidates, now, self.patience):
            data = self._describe(row)
            data["gateway"] = "0x" + gateway.hex()
            with self.store.transaction():
                self.items.hand(row.request_id, gateway, now)
                self.store.add_event("gateway_handed", data, now)
            self.stats["handed"] += 1
            log.info("%s handed to gateway 0x%s", row.subject, gateway.hex())
            if not self.watch.request(gateway, request):
                log.info("the mesh did not take %s for 0x%s now", row.subject, gateway.hex())

    def _plan(self, row: Handed) -> HandOff:
        tries = tuple(
            Try(
                gateway=t.gateway,
                handed_at=t.handed_at,
                acked_at=t.acked_at,
                refused=t.refused,
                outcome=None if t.outcome is None else OutcomeStatus[t.outcome.upper()],
                mined=t.mined,
            )
            for t in self.items.tries(row.request_id)
        )
        return HandOff(HandKind(row.kind), row.act_by, row.chain_deadline, tries)

    def _set_state(self, row: Handed, state: HandState, why: str, now: float) -> None:
        with self.store.transaction():
            self.items.set_handoff_state(row.request_id, state.value, now)
            if state is HandState.FAILED:
                data = self._describe(row)
                data["reason"] = why
                self.store.add_event("gateway_failed", data, now)
        log.info("%s: %s (%s)", row.subject, state.value, why)

    def _close_open(self, why: str, now: float) -> None:
        for row in self.items.handoffs(HandState.OPEN.value):
            self._set_state(row, HandState.CLOSED, why, now)

    # -- answers ----------------------------------------------------------------------------------

    def on_answer(self, origin: Address, answer: Answer) -> None:
        """A gateway's ``WatchAck`` or ``WatchOutcome`` (a ``WatchService`` listener)."""
        row = self.items.handoff_by_request(answer.request_id)
        if row is None:
            return
        now = self.clock()
        data = self._describe(row)
        data["gateway"] = "0x" + origin.hex()
        with self.store.transaction():
            if isinstance(answer, WatchAck):
                refused = None if answer.accepted else answer.reason.name.lower()
                if not self.items.answered(row.request_id, origin, now, refused=refused):
                    return
                if refused is not None:
                    data.update(reason=refused, text=answer.text)
                    self.store.add_event("gateway_refused", data, now)
                return
            assert isinstance(answer, WatchOutcome)
            mined = any(answer.tx_hash)
            status = answer.status.name.lower()
            if not self.items.answered(row.request_id, origin, now, outcome=status, mined=mined):
                return
            done = answer.status in (OutcomeStatus.CONFIRMED, OutcomeStatus.UNNECESSARY)
            lost = answer.status is OutcomeStatus.FAILED and mined and row.kind == "raw_transaction"
            if (done or lost) and row.state != HandState.DONE.value:
                state = HandState.DONE if done else HandState.FAILED
                self.items.set_handoff_state(
                    row.request_id, state.value, now, outcome=status, gateway=origin,
                    tx_hash=answer.tx_hash if mined else None,
                    block_time=int(answer.block_timestamp) or None,
                )  # fmt: skip
                data.update(
                    status=status, text=answer.text, tx_hash="0x" + answer.tx_hash.hex(),
                    block_timestamp=int(answer.block_timestamp),
                )  # fmt: skip
                self.store.add_event("gateway_done" if done else "gateway_failed", data, now)
                if done:
                    self.stats["done"] += 1
        log.info(
            "gateway 0x%s answered %s: %s",
            origin.hex(),
            row.subject,
            answer.status.name.lower() if isinstance(answer, WatchOutcome) else answer.reason.name,
        )

    # -- what GET /deadlines shows -----------------------------------------------------------

    def covering(self, item: Deadline) -> tuple[Address, bool] | None:
        """(gateway, done) when, while blind, a gateway has what ``item`` asks for."""
        if not self.offline.blind:
            return None
        if item.kind is DeadlineKind.UPDATE_HORIZON:
            if item.partner is None:
                return None
            for gateway in self.delegator.gateways:
                acked = self.delegator.book.get(item.token_network, item.partner, gateway)
                if acked is not None and acked.rank[0] >= item.nonce:
                    return gateway, False
            return None
        for row in self.items.handoffs(HandState.OPEN.value, HandState.DONE.value):
            if row.what != item.kind.value:
                continue
            if item.kind is DeadlineKind.REGISTER_SECRET:
                if row.secrethash != item.secrethash:
                    continue
            elif (row.token_network, row.partner) != (item.token_network, item.partner):
                continue
            if row.state == HandState.DONE.value and row.gateway is not None:
                return row.gateway, True
            tries = self.items.tries(row.request_id)
            live = [t for t in tries if not t.refused]
            if live:
                return live[-1].gateway, False
        return None

    # -- fees and nonce for signing without the chain ---------------------------------------

    async def _snapshot(self, now: float) -> None:
        try:
            fees = await self.sender.fees_now()
            nonce = await self.sender.pending_nonce()
        except (ChainUnavailable, ChainError) as exc:
            log.debug("fees and nonce not read: %s", exc)
            return
        self._snapshot_at = now
        text = json.dumps(
            {
                "max_fee": fees.max_fee,
                "priority_fee": fees.priority_fee,
                "gas_price": fees.gas_price,
            }
        )
        with self.store.transaction():
            self.store.set_meta(META_FEES, text)
            self.store.set_meta(META_NONCE, str(nonce))

    def _offline_fees(self) -> Fees:
        text = self.store.meta(META_FEES)
        try:
            seen = json.loads(text) if text else None
        except ValueError:
            seen = None
        if not isinstance(seen, dict):
            return UNKNOWN_FEES
        if seen.get("gas_price") is not None:
            return Fees(gas_price=int(seen["gas_price"]) * FEE_FACTOR)
        if seen.get("max_fee") is None or seen.get("priority_fee") is None:
            return UNKNOWN_FEES
        return Fees(
            max_fee=int(seen["max_fee"]) * FEE_FACTOR, priority_fee=int(seen["priority_fee"])
        )

    def _known_nonce(self) -> int:
        text = self.store.meta(META_NONCE)
        try:
            return int(text) if text else 0
        except ValueError:
            return 0

    @staticmethod
    def _describe(row: Handed) -> dict[str, object]:
        data: dict[str, object] = {
            "request_id": "0x" + row.request_id.hex(),
            "subject": row.subject,
            "kind": row.kind,
            "what": row.what,
            "deadline": row.act_by,
            "chain_deadline": row.chain_deadline,
        }
        if row.token_network is not None:
            data["token_network"] = "0x" + row.token_network.hex()
        if row.partner is not None:
            data["partner"] = "0x" + row.partner.hex()
        if row.secrethash is not None:
            data["secrethash"] = "0x" + row.secrethash.hex()
        return data
