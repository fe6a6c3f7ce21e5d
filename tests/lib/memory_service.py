"""An in-memory ``NodeService`` that behaves like a node, for the API and CLI tests.

Belongs here: ``MemoryNodeService``, which keeps channels, payments, pending locks and an
event log in dicts and follows the node's rules closely enough that the API's mapping of
every outcome can be tested: state changes (open, deposit, withdraw, close, settle, pay),
total-amount semantics (asking for the current total again is a no-op), and the node's
errors (``not_found``, ``conflict``, ``insufficient_funds``, ``no_route``,
``chain_unavailable``, ``transaction_failed``, ``timeout``). Bad input changes nothing.
Test controls beside the interface: a chain gate (hold chain operations until released),
a clock offset (``advance``), partner deposits, received payments, routes, when pending
payments finish (``payment_delay``: after that many seconds, ``None``: by hand with
``finish_payment``) and how (``payment_failure``).

Not a model of the protocol: there are no messages, signatures or fees beyond one flat
fee per route, and a chain transaction is an ``await``. Use it from the event loop's
thread only (``tests/lib/api_server.py`` marshals calls from other threads).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from offchain.node.service import (
    Address,
    ChannelInfo,
    ChannelStatus,
    Coverage,
    DeadlineInfo,
    ErrorCode,
    NodeEvent,
    NodeStatus,
    PaymentDirection,
    PaymentInfo,
    PaymentRisk,
    PaymentStatus,
    PendingTransfer,
    ServiceError,
    TokenInfo,
    pick_payment,
)

SETTLE_WINDOW_MIN = 600
SETTLE_WINDOW_MAX = 30 * 24 * 3600
DEFAULT_SETTLE_WINDOW = 3600
LOCK_TIMEOUT = 600
SAFETY_MARGIN = 35  # clock tolerance + submit margin, as the node's defaults
UINT256_MAX = 2**256 - 1


def _hex(address: bytes) -> str:
    return "0x" + address.hex()


@dataclass(slots=True)
class _Channel:
    token: TokenInfo
    partner: Address
    generation: int
    settle_window: int
    status: ChannelStatus = ChannelStatus.OPENING
    settle_deadline: int | None = None
    our_deposit: int = 0
    partner_deposit: int = 0
    our_withdrawn: int = 0
    partner_withdrawn: int = 0
    sent: int = 0  # total we transferred to the partner (amounts and fees)
    received: int = 0  # total the partner transferred to us
    our_locked: int = 0
    partner_locked: int = 0

    @property
    def channel_id(self) -> bytes:
        return hashlib.sha256(
            self.token.token_network + self.partner + self.generation.to_bytes(8, "big")
        ).digest()

    @property
    def our_balance(self) -> int:
        return self.our_deposit - self.our_withdrawn - self.sent + self.received - self.our_locked

    @property
    def partner_balance(self) -> int:
        return (
            self.partner_deposit
            - self.partner_withdrawn
            - self.received
            + self.sent
            - self.partner_locked
        )


@dataclass(frozen=True, slots=True)
class Route:
    """A target reached through a partner for a flat fee."""

    via: Address
    fee: int


class MemoryNodeService:
    """A node held in memory. See the module docstring for what it does and does not do."""

    def __init__(
        self,
        address: Address,
        tokens: list[TokenInfo],
        *,
        chain_balance: int = 10**24,
        chain_id: int = 1337,
        payment_delay: float | None = 0.0,
        seed: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.address = address
        self.chain_id = chain_id
        self._tokens = {t.token: t for t in tokens}
        self.chain_balance = {t.token: chain_balance for t in tokens}
        self.payment_delay = payment_delay
        self.payment_failure: str | None = None  # when set, payments fail with this reason
        self.chain_reachable = True
        self.fail_next_transaction: str | None = None
        self.peers = 0
        self.block = 1
        self.blind_since: float | None = None  # set by ``go_blind``
        self._rng = random.Random(seed)
        self._clock = clock
        self._offset = 0.0
        self._channels: dict[tuple[Address, Address], list[_Channel]] = {}
        self._routes: dict[tuple[Address, Address], Route] = {}
        self._payments: dict[int, PaymentInfo] = {}  # sent, by id (ours are unique)
        self._received: list[PaymentInfo] = []  # ids chosen by each payer: may repeat
        self._first_hop: dict[int, tuple[_Channel, int]] = {}  # payment id: channel, locked
        self._pending: dict[int, PendingTransfer] = {}
        self._done: dict[int, asyncio.Event] = {}
        self._events: list[NodeEvent] = []
        self._gate = asyncio.Event()
        self._gate.set()
        self.chain_waiters = 0  # chain operations held at the gate now

    # Test controls.

    def now(self) -> float:
        return self._clock() + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds

    def hold_chain(self) -> None:
        """Chain operations wait (after their checks) until ``release_chain``."""
        self._gate.clear()

    def release_chain(self) -> None:
        self._gate.set()

    def go_blind(self) -> None:
        """The chain is no longer seen: payments received from now on carry a risk."""
        self.chain_reachable = False
        self.blind_since = self.now()

    def add_route(self, token: Address, target: Address, via: Address, fee: int) -> None:
        self._routes[(token, target)] = Route(via, fee)

    def partner_deposit(self, token: Address, partner: Address, total: int) -> None:
        channel = self._live(token, partner)
        channel.partner_deposit = total
        self._event("channel_deposit", channel, participant=_hex(partner), total=str(total))

    def receive(
        self,
        token: Address,
        partner: Address,
        amount: int,
        *,
        payment_id: int | None = None,
        payer: Address | None | bool = True,
    ) -> PaymentInfo:
        """The partner pays us ``amount`` (a received, finished payment): directly by
        default (``payer`` the partner), or for ``payer`` (None: an unknown one) through
        it; ``payment_id`` as the payer chose it (any, even one of ours), else fresh."""
        channel = self._live(token, partner)
        assert channel.partner_balance >= amount, "the partner cannot pay that much"
        channel.received += amount
        if payment_id is None:
            payment_id = self._fresh_payment_id()
        now = self.now()
        info = PaymentInfo(
            payment_id=payment_id,
            direction=PaymentDirection.RECEIVED,
            token=token,
            partner=partner,
            amount=amount,
            fee=0,
            status=PaymentStatus.SUCCEEDED,
            reason=None,
            failed_hop=None,
            secrethash=hashlib.sha256(self._rng.randbytes(32)).digest(),
            created_at=now,
            finished_at=now,
            payer=partner if payer is True else (payer or None),
            risk=None if self.chain_reachable else self._risk(channel),
        )
        self._received.append(info)
        self._event("payment_received", channel, payment_id=str(payment_id), amount=str(amount))
        return info

    def finish_payment(
        self, payment_id: int, *, success: bool = True, reason: str = "expired"
    ) -> PaymentInfo:
        """Settle a pending sent payment: paid (the lock unlocked) or failed (lock freed)."""
        info = self._payments[payment_id]
        if info.status is not PaymentStatus.PENDING:
            return info
        channel, locked = self._first_hop.pop(payment_id)
        channel.our_locked -= locked
        self._pending.pop(payment_id, None)
        if success:
            channel.sent += locked
        info = dataclasses.replace(
            info,
            status=PaymentStatus.SUCCEEDED if success else PaymentStatus.FAILED,
            reason=None if success else reason,
            failed_hop=None if success else channel.partner,
            finished_at=self.now(),
        )
        self._payments[payment_id] = info
        kind = "payment_succeeded" if success else "payment_failed"
        self._event(kind, channel, payment_id=str(payment_id), amount=str(info.amount))
        self._done[payment_id].set()
        return info

    # Helpers.

    def _event(self, kind: str, channel: _Channel | None = None, **data: object) -> None:
        if channel is not None:
            data = {"token": _hex(channel.token.token), "partner": _hex(channel.partner), **data}
        seq = len(self._events) + 1
        self._events.append(NodeEvent(seq=seq, time=self.now(), kind=kind, data=data))

    def _token(self, token: Address) -> TokenInfo:
        info = self._tokens.get(token)
        if info is None:
            raise ServiceError(ErrorCode.NOT_FOUND, f"the node follows no token {_hex(token)}")
        return info

    def _newest(self, token: Address, partner: Address) -> _Channel:
        self._token(token)
        generations = self._channels.get((token, partner))
        if not generations:
            raise ServiceError(
                ErrorCode.NOT_FOUND, f"no channel with {_hex(partner)} in {_hex(token)}"
            )
        return generations[-1]

    def _live(self, token: Address, partner: Address) -> _Channel:
        """The channel, which must be open (not opening, closing or closed)."""
        channel = self._newest(token, partner)
        status = self._status(channel)
        if status is not ChannelStatus.OPEN:
            raise ServiceError(ErrorCode.CONFLICT, f"the channel is {status.value}, not open")
        return channel

    def _status(self, channel: _Channel) -> ChannelStatus:
        if (
            channel.status is ChannelStatus.CLOSED
            and channel.settle_deadline is not None
            and self.now() >= channel.settle_deadline
        ):
            return ChannelStatus.SETTLEABLE
        return channel.status

    def _info(self, channel: _Channel) -> ChannelInfo:
        return ChannelInfo(
            token=channel.token.token,
            token_network=channel.token.token_network,
            partner=channel.partner,
            channel_id=channel.channel_id,
            generation=channel.generation,
            status=self._status(channel),
            settle_window=channel.settle_window,
            settle_deadline=channel.settle_deadline,
            our_deposit=channel.our_deposit,
            partner_deposit=channel.partner_deposit,
            our_withdrawn=channel.our_withdrawn,
            partner_withdrawn=channel.partner_withdrawn,
            our_balance=channel.our_balance,
            partner_balance=channel.partner_balance,
            our_locked=channel.our_locked,
            partner_locked=channel.partner_locked,
            spendable=channel.our_balance,
        )

    async def _transaction(self, what: str) -> None:
        """Send a transaction and wait for it to be confirmed (the gate stands for mining)."""
        if not self.chain_reachable:
            raise ServiceError(ErrorCode.CHAIN_UNAVAILABLE, "the chain's RPC endpoint is down")
        self.chain_waiters += 1
        try:
            await self._gate.wait()
        finally:
            self.chain_waiters -= 1
        if self.fail_next_transaction is not None:
            reason, self.fail_next_transaction = self.fail_next_transaction, None
            raise ServiceError(ErrorCode.TRANSACTION_FAILED, f"{what} reverted: {reason}")
        self.block += 1

    def _fresh_payment_id(self) -> int:
        while True:
            payment_id = self._rng.randrange(1, 2**64)
            if payment_id not in self._payments and all(
                p.payment_id != payment_id for p in self._received
            ):
                return payment_id

    def _horizon(self, channel: _Channel) -> float:
        view = self.now() if self.blind_since is None else self.blind_since
        return view + channel.settle_window - SAFETY_MARGIN

    def _risk(self, channel: _Channel) -> PaymentRisk:
        return PaymentRisk(
            nonce=channel.received,  # one proof per unit here: only its shape matters
            deadline=self._horizon(channel),
            chain_deadline=int(self._horizon(channel)) + SAFETY_MARGIN,
            covered_by=Coverage.SELF,
            delegate=None,
            within_window=True,
        )

    # NodeService.

    def status(self) -> NodeStatus:
        blind_since = None
        if not self.chain_reachable:
            blind_since = self.now() if self.blind_since is None else self.blind_since
        upcoming = [d for d in self.deadlines() if d.deadline is not None]
        return NodeStatus(
            address=self.address,
            chain_id=self.chain_id,
            synced=self.chain_reachable,
            chain_reachable=self.chain_reachable,
            latest_block=self.block,
            confirmed_block=self.block,
            blind_since=blind_since,
            peers=self.peers,
            version="memory",
            blind_for_s=None if blind_since is None else self.now() - blind_since,
            view_time=self.block,
            next_deadline=upcoming[0].deadline if upcoming and blind_since else None,
            next_deadline_what=upcoming[0].what if upcoming and blind_since else None,
        )

    def deadlines(self) -> list[DeadlineInfo]:
        """An update horizon per open channel that holds received value."""
        found = []
        for generations in self._channels.values():
            channel = generations[-1]
            if channel.status is not ChannelStatus.OPEN or channel.received == 0:
                continue
            horizon = self._horizon(channel)
            found.append(
                DeadlineInfo(
                    what="update_horizon",
                    token=channel.token.token,
                    partner=channel.partner,
                    deadline=horizon,
                    chain_deadline=int(horizon) + SAFETY_MARGIN,
                    covered_by=Coverage.SELF,
                    delegate=None,
                    nonce=channel.received,
                    amount=channel.received,
                    secrethash=None,
                    pending=False,
                    text="reach the chain before then or hand the proofs to a delegate",
                )
            )
        return sorted(found, key=lambda d: d.deadline or 0)

    def tokens(self) -> list[TokenInfo]:
        return list(self._tokens.values())

    def channels(self, token: Address | None = None) -> list[ChannelInfo]:
        return [
            self._info(channel)
            for (channel_token, _), generations in self._channels.items()
            if token is None or channel_token == token
            for channel in generations
        ]

    def channel(self, token: Address, partner: Address) -> ChannelInfo:
        return self._info(self._newest(token, partner))

    async def open_channel(
        self, token: Address, partner: Address, deposit: int, settle_window: int | None
    ) -> ChannelInfo:
        info = self._token(token)
        if partner == self.address:
            raise ServiceError(ErrorCode.INVALID_ARGUMENT, "a channel with ourselves")
        window = DEFAULT_SETTLE_WINDOW if settle_window is None else settle_window
        if not SETTLE_WINDOW_MIN <= window <= SETTLE_WINDOW_MAX:
            raise ServiceError(
                ErrorCode.INVALID_ARGUMENT,
                f"settle_window must be {SETTLE_WINDOW_MIN} to {SETTLE_WINDOW_MAX} seconds",
            )
        generations = self._channels.setdefault((token, partner), [])
        if generations and generations[-1].status is not ChannelStatus.SETTLED:
            status = self._status(generations[-1]).value
            raise ServiceError(ErrorCode.CONFLICT, f"a channel with the partner is {status}")
        if deposit > self.chain_balance[token]:
            raise ServiceError(
                ErrorCode.INSUFFICIENT_FUNDS,
                f"deposit {deposit} is more than our {self.chain_balance[token]} on chain",
            )
        channel = _Channel(info, partner, len(generations) + 1, window)
        generations.append(channel)
        try:
            await self._transaction("open")
        except ServiceError:
            generations.remove(channel)
            raise
        channel.status = ChannelStatus.OPEN
        channel.our_deposit = deposit
        self.chain_balance[token] -= deposit
        self._event("channel_opened", channel, deposit=str(deposit))
        return self._info(channel)

    async def deposit(self, token: Address, partner: Address, total_deposit: int) -> ChannelInfo:
        channel = self._live(token, partner)
        if total_deposit < channel.our_deposit:
            raise ServiceError(
                ErrorCode.CONFLICT,
                f"the total deposit is {channel.our_deposit} already and cannot go down",
            )
        increase = total_deposit - channel.our_deposit
        if increase == 0:
            return self._info(channel)
        if increase > self.chain_balance[token]:
            raise ServiceError(
                ErrorCode.INSUFFICIENT_FUNDS,
                f"{increase} more is more than our {self.chain_balance[token]} on chain",
            )
        await self._transaction("deposit")
        self._live(token, partner)  # still open after the wait
        channel.our_deposit = total_deposit
        self.chain_balance[token] -= increase
        self._event("channel_deposit", channel, total=str(total_deposit))
        return self._info(channel)

    async def withdraw(self, token: Address, partner: Address, total_withdraw: int) -> ChannelInfo:
        channel = self._live(token, partner)
        if total_withdraw < channel.our_withdrawn:
            raise ServiceError(
                ErrorCode.CONFLICT,
                f"the total withdrawn is {channel.our_withdrawn} already and cannot go down",
            )
        increase = total_withdraw - channel.our_withdrawn
        if increase == 0:
            return self._info(channel)
        if increase > channel.our_balance:
            raise ServiceError(
                ErrorCode.INSUFFICIENT_FUNDS,
                f"{increase} more is more than our {channel.our_balance} in the channel",
            )
        await self._transaction("withdraw")
        self._live(token, partner)
        channel.our_withdrawn = total_withdraw
        self.chain_balance[token] += increase
        self._event("channel_withdraw", channel, total=str(total_withdraw))
        return self._info(channel)

    async def close(self, token: Address, partner: Address, cooperative: bool) -> ChannelInfo:
        channel = self._live(token, partner)
        if cooperative and (channel.our_locked or channel.partner_locked):
            raise ServiceError(
                ErrorCode.CONFLICT, "locks are pending: close unilaterally or wait for them"
            )
        channel.status = ChannelStatus.CLOSING
        try:
            await self._transaction("cooperative settle" if cooperative else "close")
        except ServiceError:
            channel.status = ChannelStatus.OPEN
            raise
        if cooperative:
            self._payout(channel)
        else:
            channel.status = ChannelStatus.CLOSED
            channel.settle_deadline = int(self.now()) + channel.settle_window
            self._event("channel_closed", channel)
        return self._info(channel)

    async def settle(self, token: Address, partner: Address) -> ChannelInfo:
        channel = self._newest(token, partner)
        status = self._status(channel)
        if status is ChannelStatus.CLOSED:
            raise ServiceError(
                ErrorCode.CONFLICT,
                f"the settle window runs until {channel.settle_deadline} (Unix time)",
            )
        if status is not ChannelStatus.SETTLEABLE:
            raise ServiceError(ErrorCode.CONFLICT, f"the channel is {status.value}, not closed")
        await self._transaction("settle")
        if channel.status is ChannelStatus.SETTLED:  # settled by a concurrent request
            return self._info(channel)
        self._payout(channel)
        return self._info(channel)

    def _payout(self, channel: _Channel) -> None:
        self.chain_balance[channel.token.token] += channel.our_balance + channel.our_locked
        channel.status = ChannelStatus.SETTLED
        self._event("channel_settled", channel)

    async def pay(
        self,
        token: Address,
        target: Address,
        amount: int,
        *,
        max_fee: int | None = None,
        payment_id: int | None = None,
        secret: bytes | None = None,
        secrethash: bytes | None = None,
        direct: bool = False,
    ) -> PaymentInfo:
        self._token(token)
        if amount <= 0:
            raise ServiceError(ErrorCode.INVALID_ARGUMENT, "amount must be positive")
        if target == self.address:
            raise ServiceError(ErrorCode.INVALID_ARGUMENT, "a payment to ourselves")
        if direct and (secret is not None or secrethash is not None):
            raise ServiceError(ErrorCode.INVALID_ARGUMENT, "a direct transfer has no secret")
        if secret is not None:
            computed = hashlib.sha256(secret).digest()
            if secrethash is not None and secrethash != computed:
                raise ServiceError(ErrorCode.INVALID_ARGUMENT, "secrethash is not sha256(secret)")
            secrethash = computed
        if payment_id is not None and payment_id in self._payments:
            raise ServiceError(ErrorCode.CONFLICT, f"payment id {payment_id} is taken")
        channel, fee = self._route(token, target, amount, max_fee, direct)
        if payment_id is None:
            payment_id = self._fresh_payment_id()
        if secrethash is None:
            secrethash = hashlib.sha256(self._rng.randbytes(32)).digest()
        now = self.now()
        info = PaymentInfo(
            payment_id=payment_id,
            direction=PaymentDirection.SENT,
            token=token,
            partner=target,
            amount=amount,
            fee=fee,
            status=PaymentStatus.PENDING,
            reason=None,
            failed_hop=None,
            secrethash=secrethash,
            created_at=now,
            finished_at=None,
        )
        self._payments[payment_id] = info
        self._done[payment_id] = asyncio.Event()
        channel.our_locked += amount + fee
        self._first_hop[payment_id] = (channel, amount + fee)
        self._event("payment_started", channel, payment_id=str(payment_id), amount=str(amount))
        if direct:
            return self.finish_payment(payment_id)
        self._pending[payment_id] = PendingTransfer(
            token=token,
            partner=channel.partner,
            direction=PaymentDirection.SENT,
            payment_id=payment_id,
            amount=amount + fee,
            secrethash=secrethash,
            expiration=int(now) + LOCK_TIMEOUT,
            role="initiator",
        )
        if self.payment_delay is not None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                pass  # called outside a loop: it stays pending until finished by hand
            else:
                loop.call_later(self.payment_delay, self._auto_finish, payment_id)
        return info

    def _auto_finish(self, payment_id: int) -> None:
        failure = self.payment_failure
        self.finish_payment(payment_id, success=failure is None, reason=failure or "")

    def _route(
        self, token: Address, target: Address, amount: int, max_fee: int | None, direct: bool
    ) -> tuple[_Channel, int]:
        generations = self._channels.get((token, target))
        if generations and self._status(generations[-1]) is ChannelStatus.OPEN:
            channel = generations[-1]
            if channel.our_balance >= amount:
                return channel, 0
            if direct:
                raise ServiceError(
                    ErrorCode.INSUFFICIENT_FUNDS,
                    f"{amount} is more than the {channel.our_balance} we can send",
                )
        if direct:
            raise ServiceError(ErrorCode.NO_ROUTE, f"no open channel with {_hex(target)}")
        route = self._routes.get((token, target))
        if route is not None and (max_fee is None or route.fee <= max_fee):
            via = self._channels.get((token, route.via))
            if (
                via
                and self._status(via[-1]) is ChannelStatus.OPEN
                and via[-1].our_balance >= amount + route.fee
            ):
                return via[-1], route.fee
        raise ServiceError(
            ErrorCode.NO_ROUTE, f"no route to {_hex(target)} for {amount} within the fee budget"
        )

    def payment(
        self,
        payment_id: int,
        *,
        direction: PaymentDirection | None = None,
        payer: Address | None = None,
        partner: Address | None = None,
    ) -> PaymentInfo:
        found = [p for p in self._received if p.payment_id == payment_id]
        if payment_id in self._payments:
            found.append(self._payments[payment_id])
        return pick_payment(payment_id, found, direction=direction, payer=payer, partner=partner)

    def payments(
        self,
        *,
        direction: PaymentDirection | None = None,
        status: PaymentStatus | None = None,
        token: Address | None = None,
        partner: Address | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[PaymentInfo]:
        everything = sorted(
            [*self._payments.values(), *self._received],
            key=lambda p: (p.created_at, p.payment_id),
            reverse=True,
        )
        chosen = [
            p
            for p in everything
            if (direction is None or p.direction is direction)
            and (status is None or p.status is status)
            and (token is None or p.token == token)
            and (partner is None or p.partner == partner)
        ]
        return chosen[offset : offset + limit]

    async def wait_payment(
        self,
        payment_id: int,
        timeout: float,
        *,
        direction: PaymentDirection | None = None,
        payer: Address | None = None,
        partner: Address | None = None,
    ) -> PaymentInfo:
        info = self.payment(payment_id, direction=direction, payer=payer, partner=partner)
        if info.status is not PaymentStatus.PENDING:
            return info
        try:
            await asyncio.wait_for(self._done[payment_id].wait(), timeout)
        except TimeoutError:
            raise ServiceError(
                ErrorCode.TIMEOUT, f"payment {payment_id} still pending after {timeout:g} s"
            ) from None
        return self._payments[payment_id]

    def pending_transfers(self, token: Address | None = None) -> list[PendingTransfer]:
        return [p for p in self._pending.values() if token is None or p.token == token]

    def events(self, since: int = 0, limit: int = 100) -> list[NodeEvent]:
        return [e for e in self._events if e.seq > since][:limit]
