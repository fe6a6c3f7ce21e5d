"""Sending transactions from the node's key: exactly once, through the outbox.

Belongs here: ``TxSender``. ``submit(key, call)`` records the intent under the caller's
idempotency key, estimates its gas (a revert there fails the intent with the revert
reason and sends nothing), prices it (EIP-1559 from the latest base fee and the
endpoint's priority fee; a legacy gas price where blocks have no base fee), takes the
next nonce (the endpoint's pending nonce at first, then counted locally, never below
one the outbox already used), signs locally, records the signed attempt, and only then
broadcasts it. ``step`` (or ``run``, which calls it forever) moves every unfinished intent
on: broadcasts what was recorded but not sent (after a crash), finds receipts of any
attempt, waits for ``confirmations``, replaces an attempt that stayed unmined for
``replace_after`` seconds with the same nonce and fees raised by at least 12.5 %, and
notices a nonce used by another transaction (the intent is dropped). ``wait`` awaits an
intent's outcome. A key already confirmed is never sent again.

While the node cannot reach the chain, ``sign_offline`` records and signs an intent
without asking the endpoint anything (the caller gives the gas limit, the fees and the
least nonce it knows the account is at) and does not broadcast it: a gateway of the mesh
broadcasts the signed bytes for the node (docs/offline.md §4). The nonce is never one any
intent of the outbox was signed with, and the intent keeps it: once the endpoint answers
again ``step`` finds the gateway's receipt, or broadcasts the same bytes itself, or
replaces them with the same nonce and higher fees, so two different transactions with
one nonce are never both out. ``fees_now`` and ``pending_nonce`` read what
``sign_offline`` needs while the chain is seen.

Does not belong here: the calldata (``calls``), the SQL (``outbox``), deciding what to
send (the node and the protocol core).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from eth_abi.abi import decode as abi_decode
from eth_account import Account
from web3 import Web3
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError

from offchain.chain.calls import ContractCall
from offchain.chain.errors import ChainUnavailable, OutboxConflict, TransactionFailed
from offchain.chain.outbox import Attempt, Intent, IntentStatus, Outbox
from offchain.chain.rpc import Endpoint, rpc_error_message
from offchain.protocol.types import Address

logger = logging.getLogger(__name__)

_ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
_PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)
_DEFAULT_PRIORITY_FEE = 10**9  # 1 gwei, when the endpoint cannot suggest one


@dataclass(frozen=True, slots=True)
class SenderConfig:
    """How transactions are sent.

    ``confirmations``: blocks, the transaction's own included, before an outcome is final.
    ``replace_after``: seconds an attempt may stay unmined before it is replaced.
    ``gas_margin_percent``: added to the gas estimate (a public node may estimate
    against a slightly different state than the block that includes it).
    ``max_fee_cap``: the highest fee per gas ever offered (None: no cap).
    ``poll_interval``: seconds between steps of ``run`` and checks of ``wait``.
    """

    confirmations: int = 1
    replace_after: float = 180.0
    gas_margin_percent: int = 20
    max_fee_cap: int | None = None
    poll_interval: float = 2.0
    retry_max: float = 60.0

    def __post_init__(self) -> None:
        if self.confirmations < 1 or self.replace_after <= 0 or self.gas_margin_percent < 0:
            raise ValueError("confirmations >= 1, replace_after > 0, gas_margin_percent >= 0")


@dataclass(frozen=True, slots=True)
class Fees:
    """EIP-1559 fees (``max_fee``, ``priority_fee``) or a legacy ``gas_price``."""

    max_fee: int | None = None
    priority_fee: int | None = None
    gas_price: int | None = None


@dataclass(frozen=True, slots=True)
class TxOutcome:
    """A confirmed intent: the attempt that was mined, where, and its gas."""

    key: str
    tx_hash: bytes
    block: int
    gas_used: int


def bump(fee: int) -> int:
    """``fee`` raised by at least 12.5 %: what nodes require of a replacement (geth 10 %)."""
    return fee + (fee + 7) // 8 + 1


def revert_reason(exc: ContractLogicError) -> str:
    """The reason of a revert: the ``Error(string)`` message, a panic code, or web3's text."""
    data = exc.data
    raw: bytes | None = None
    if isinstance(data, str) and data.startswith("0x"):
        try:
            raw = bytes.fromhex(data[2:])
        except ValueError:
            raw = None
    if raw is not None and raw[:4] == _ERROR_SELECTOR:
        try:
            (message,) = abi_decode(["string"], raw[4:])
            return str(message)
        except Exception:  # a garbled reason is still a revert
            pass
    if raw is not None and raw[:4] == _PANIC_SELECTOR and len(raw) == 36:
        return f"panic 0x{int.from_bytes(raw[4:], 'big'):02x}"
    message = exc.message or str(exc)
    reason = message.removeprefix("execution reverted: ").removeprefix("execution reverted")
    return reason or "reverted without a reason"


def _is_revert(exc: Web3RPCError) -> bool:
    return "revert" in rpc_error_message(exc).lower()


class TxSender:
    """Sends the node's transactions from ``private_key`` through the outbox in ``conn``."""

    def __init__(
        self,
        endpoint: Endpoint,
        private_key: bytes,
        conn: sqlite3.Connection,
        chain_id: int,
        config: SenderConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.endpoint = endpoint
        self.chain_id = chain_id
        self.config = config or SenderConfig()
        self.clock = clock
        self._account = Account.from_key(private_key)
        self.address = Address(bytes.fromhex(self._account.address[2:]))
        self.outbox = Outbox(conn, self.address)
        self._lock = asyncio.Lock()
        self._nonce: int | None = None

    @property
    def _w3(self) -> Any:
        return self.endpoint.w3

    @property
    def _from(self) -> str:
        return str(self._account.address)

    # --- the caller's side --------------------------------------------------------------

    def intent(self, key: str) -> Intent | None:
        return self.outbox.get(key)

    async def submit(
        self,
        key: str,
        call: ContractCall,
        *,
        depends_on: str | None = None,
        broadcast: bool = True,
    ) -> Intent:
        """Record ``call`` under ``key`` and send it now if it can go (see the module doc).

        Idempotent: a key already recorded with the same call is not sent again, whatever
        its status. ``depends_on``: the key of an intent that must be confirmed first
        (an approval before a deposit): this one waits, queued, and fails if that fails.
        ``broadcast=False`` signs and records without broadcasting; the next ``step``
        broadcasts. Raises ``TransactionFailed`` if the intent failed (a revert at
        estimation: nothing was sent), ``OutboxConflict`` for a key naming another call.
        An unavailable endpoint leaves the intent queued for ``step``.
        """
        async with self._lock:
            intent = self.outbox.add(key, call, depends_on, self.clock())
            if intent.status is IntentStatus.QUEUED and self._ready(intent):
                try:
                    await self._sign(intent, broadcast)
                except ChainUnavailable as exc:
                    logger.warning("intent %s stays queued: %s", key, exc)
                    self.outbox.note_error(key, str(exc), self.clock())
            intent = self._get(key)
        if intent.status is IntentStatus.FAILED:
            raise _failure(intent)
        return intent

    async def sign_offline(
        self, key: str, call: ContractCall, *, gas: int, fees: Fees, least_nonce: int
    ) -> Intent:
        """Record ``call`` under ``key`` and sign it without the endpoint; not broadcast.

        ``least_nonce``: the account's nonce as last known (the chain's pending count); the
        nonce taken is at least that and above every nonce the outbox used. An intent
        already signed is returned as it is (its newest attempt holds the bytes to hand
        on). Raises ``TransactionFailed`` for an intent that failed, ``OutboxConflict`` for
        a key naming another call.
        """
        async with self._lock:
            intent = self.outbox.add(key, call, None, self.clock())
            if intent.status is IntentStatus.QUEUED:
                used = self.outbox.highest_nonce()
                nonce = max(least_nonce, 0 if used is None else used + 1, self._nonce or 0)
                attempt = self._signed(call, nonce, gas, self._capped(fees))
                self.outbox.record_attempt(key, nonce, gas, attempt)
                self._nonce = nonce + 1
                logger.info(
                    "intent %s signed offline: nonce %d, tx 0x%s",
                    key, nonce, attempt.tx_hash.hex(),
                )  # fmt: skip
            intent = self._get(key)
        if intent.status is IntentStatus.FAILED:
            raise _failure(intent)
        return intent

    async def fees_now(self) -> Fees:
        """The fees a transaction would be priced with now (asks the endpoint)."""
        return await self._fees()

    async def pending_nonce(self) -> int:
        """The account's next nonce as the endpoint counts it, pending transactions included."""
        pending = await self.endpoint.call(
            "eth_getTransactionCount", self._w3.eth.get_transaction_count(self._from, "pending")
        )
        return int(pending)

    async def wait(self, key: str, timeout: float | None = None) -> TxOutcome:
        """Await the outcome of ``key``: its receipt with the configured confirmations.

        Moves the outbox on itself (``step``) when no ``run`` loop is doing it. Raises
        ``TransactionFailed``, or ``TimeoutError`` after ``timeout`` seconds (the intent
        goes on).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            intent = self._get(key)
            if intent.status is IntentStatus.CONFIRMED:
                assert intent.tx_hash is not None and intent.block is not None
                return TxOutcome(key, intent.tx_hash, intent.block, intent.gas_used or 0)
            if intent.status is IntentStatus.FAILED:
                raise _failure(intent)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"intent {key!r} is not final after {timeout} s")
            if not self._lock.locked():
                try:
                    await self.step()
                except ChainUnavailable as exc:
                    logger.info("waiting for %s: %s", key, exc)
                if self._get(key).final:
                    continue
            await asyncio.sleep(self.config.poll_interval)

    async def run(self, stop: asyncio.Event) -> None:
        """Call ``step`` until ``stop`` is set; an unavailable endpoint is retried with backoff."""
        delay = self.config.poll_interval
        while not stop.is_set():
            try:
                await self.step()
                pause, delay = self.config.poll_interval, self.config.poll_interval
            except ChainUnavailable as exc:
                logger.warning("chain unavailable, retrying in %.1f s: %s", delay, exc)
                pause, delay = delay, min(delay * 2, self.config.retry_max)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)

    # --- moving intents on -------------------------------------------------------------

    async def step(self) -> None:
        """Move every unfinished intent on once (see the module doc)."""
        async with self._lock:
            unfinished = self.outbox.unfinished()
            if not unfinished:
                return
            # The nonce first, receipts second: a transaction mined in between then shows
            # its receipt, so a used nonce without a receipt is really someone else's.
            mined_nonce = await self.endpoint.call(
                "eth_getTransactionCount", self._w3.eth.get_transaction_count(self._from, "latest")
            )
            head = await self.endpoint.call("eth_blockNumber", self._w3.eth.block_number)
            for intent in unfinished:
                if intent.status is IntentStatus.QUEUED:
                    if self._ready(intent):
                        # A failure is recorded; the caller learns it from `wait`.
                        with contextlib.suppress(TransactionFailed):
                            await self._sign(intent, broadcast=True)
                else:
                    await self._follow(intent, int(head), int(mined_nonce))

    def _get(self, key: str) -> Intent:
        intent = self.outbox.get(key)
        if intent is None:
            raise OutboxConflict(f"no intent {key!r}")
        return intent

    def _ready(self, intent: Intent) -> bool:
        """Whether a queued intent may be signed now; fails it if its dependency failed."""
        if intent.depends_on is None:
            return True
        dependency = self._get(intent.depends_on)
        if dependency.status is IntentStatus.FAILED:
            self.outbox.fail(
                intent.key,
                f"dependency {dependency.key!r} failed: {dependency.reason}",
                self.clock(),
            )
            return False
        return dependency.status is IntentStatus.CONFIRMED

    def _tx(self, call: ContractCall) -> dict[str, Any]:
        return {
            "from": self._from,
            "to": Web3.to_checksum_address(call.to),
            "data": "0x" + call.data.hex(),
            "value": call.value,
        }

    async def _sign(self, intent: Intent, broadcast: bool) -> None:
        """Estimate, price, take a nonce, sign, record; then broadcast if asked."""
        tx = self._tx(intent.call)
        try:
            estimate = await self.endpoint.call("eth_estimateGas", self._w3.eth.estimate_gas(tx))
        except ContractLogicError as exc:
            self._fail(intent.key, revert_reason(exc))
        except Web3RPCError as exc:
            if not _is_revert(exc):
                raise ChainUnavailable(f"eth_estimateGas: {rpc_error_message(exc)}") from exc
            self._fail(intent.key, rpc_error_message(exc))
        gas = int(estimate) * (100 + self.config.gas_margin_percent) // 100
        fees = await self._fees()
        if self._nonce is None:
            pending = await self.endpoint.call(
                "eth_getTransactionCount", self._w3.eth.get_transaction_count(self._from, "pending")
            )
            used = self.outbox.highest_nonce()
            self._nonce = max(int(pending), used + 1 if used is not None else 0)
        nonce = self._nonce
        attempt = self._signed(intent.call, nonce, gas, fees)
        # Durable before the broadcast: after a crash the attempt is re-broadcast or
        # found by its receipt, never signed again with another nonce.
        self.outbox.record_attempt(intent.key, nonce, gas, attempt)
        self._nonce = nonce + 1
        logger.info("intent %s: nonce %d, tx 0x%s", intent.key, nonce, attempt.tx_hash.hex())
        if broadcast:
            await self._broadcast(intent.key, attempt)

    def _fail(self, key: str, reason: str) -> NoReturn:
        self.outbox.fail(key, reason, self.clock())
        raise TransactionFailed(key, reason)

    def _signed(self, call: ContractCall, nonce: int, gas: int, fees: Fees) -> Attempt:
        tx: dict[str, Any] = {
            "chainId": self.chain_id,
            "nonce": nonce,
            "to": Web3.to_checksum_address(call.to),
            "value": call.value,
            "data": call.data,
            "gas": gas,
        }
        if fees.gas_price is not None:
            tx["gasPrice"] = fees.gas_price
        else:
            tx.update(type=2, maxFeePerGas=fees.max_fee, maxPriorityFeePerGas=fees.priority_fee)
        signed = self._account.sign_transaction(tx)
        return Attempt(
            tx_hash=bytes(signed.hash),
            raw_tx=bytes(signed.raw_transaction),
            max_fee=fees.max_fee,
            priority_fee=fees.priority_fee,
            gas_price=fees.gas_price,
            signed_at=self.clock(),
        )

    async def _fees(self) -> Fees:
        latest = await self.endpoint.call("eth_getBlockByNumber", self._w3.eth.get_block("latest"))
        base = latest.get("baseFeePerGas")
        if base is None:
            price = await self.endpoint.call("eth_gasPrice", self._w3.eth.gas_price)
            return self._capped(Fees(gas_price=int(price)))
        try:
            priority = int(
                await self.endpoint.call("eth_maxPriorityFeePerGas", self._w3.eth.max_priority_fee)
            )
        except Web3RPCError:
            priority = _DEFAULT_PRIORITY_FEE
        # Twice the base fee: it still pays after six full blocks of +12.5 % each.
        return self._capped(Fees(max_fee=2 * int(base) + priority, priority_fee=priority))

    def _capped(self, fees: Fees) -> Fees:
        cap = self.config.max_fee_cap
        if cap is None:
            return fees
        if fees.gas_price is not None:
            return Fees(gas_price=min(fees.gas_price, cap))
        assert fees.max_fee is not None and fees.priority_fee is not None
        return Fees(max_fee=min(fees.max_fee, cap), priority_fee=min(fees.priority_fee, cap))

    async def _broadcast(self, key: str, attempt: Attempt) -> None:
        try:
            await self.endpoint.call(
                "eth_sendRawTransaction", self._w3.eth.send_raw_transaction(attempt.raw_tx)
            )
        except Web3RPCError as exc:
            message = rpc_error_message(exc)
            lowered = message.lower()
            if (
                "already known" in lowered
                or "already imported" in lowered
                or "known transaction" in lowered
            ):
                pass  # the endpoint has it: as good as sent
            elif "nonce too low" in lowered:
                # Mined already, or the nonce was used by another transaction: the next
                # step tells which from the receipts.
                pass
            else:
                logger.warning("broadcast of %s refused: %s", key, message)
                self.outbox.note_error(key, f"broadcast refused: {message}", self.clock())
                return
        self.outbox.mark_broadcast(attempt.tx_hash, self.clock())

    async def _receipt(self, tx_hash: bytes) -> Any:
        try:
            return await self.endpoint.call(
                "eth_getTransactionReceipt", self._w3.eth.get_transaction_receipt(tx_hash)
            )
        except TransactionNotFound:
            return None

    async def _follow(self, intent: Intent, head: int, mined_nonce: int) -> None:
        """A sent intent: final once a receipt is deep enough; re-broadcast, replace or
        drop it otherwise."""
        assert intent.nonce is not None and intent.attempts
        for attempt in reversed(intent.attempts):
            receipt = await self._receipt(attempt.tx_hash)
            if receipt is not None:
                await self._settle(intent, attempt, receipt, head)
                return
        if intent.nonce < mined_nonce:
            # None of its attempts can ever be mined now. Not re-signed under a new nonce:
            # if a receipt was only hidden from us, that would send it twice.
            self.outbox.fail(
                intent.key,
                f"dropped: nonce {intent.nonce} was used by another transaction",
                self.clock(),
                dropped=True,
            )
            # Someone else uses this key: count from the chain again.
            self._nonce = None
            return
        newest = intent.attempts[-1]
        if self.clock() - newest.signed_at >= self.config.replace_after:
            await self._replace(intent, newest)
        elif newest.broadcast_at is None:
            await self._broadcast(intent.key, newest)
        else:
            known = await self.endpoint.call(
                "eth_getTransactionByHash", self._known(newest.tx_hash)
            )
            if not known:
                # The endpoint forgot it (restarted, evicted): send the same bytes again.
                await self._broadcast(intent.key, newest)

    async def _known(self, tx_hash: bytes) -> bool:
        try:
            await self._w3.eth.get_transaction(tx_hash)
        except TransactionNotFound:
            return False
        return True

    async def _settle(self, intent: Intent, attempt: Attempt, receipt: Any, head: int) -> None:
        block = int(receipt["blockNumber"])
        if head - block + 1 < self.config.confirmations:
            return
        if int(receipt["status"]) == 1:
            self.outbox.confirm(
                intent.key, attempt.tx_hash, block, int(receipt["gasUsed"]), self.clock()
            )
            logger.info("intent %s confirmed in block %d", intent.key, block)
            return
        reason = await self._onchain_reason(intent, block)
        self.outbox.fail(intent.key, reason, self.clock(), tx_hash=attempt.tx_hash, block=block)
        logger.warning("intent %s reverted in block %d: %s", intent.key, block, reason)

    async def _onchain_reason(self, intent: Intent, block: int) -> str:
        """Why a mined transaction reverted: replayed as a call on the state after its block.

        Best effort (the state before it is not at hand without tracing); the conditions
        that make our calls revert (a channel no longer open, a total that did not rise,
        a window that ended) still hold after the block.
        """
        tx = {**self._tx(intent.call), "gas": intent.gas}
        try:
            await self.endpoint.call("eth_call", self._w3.eth.call(tx, block))
        except ContractLogicError as exc:
            return revert_reason(exc)
        except Web3RPCError as exc:
            return rpc_error_message(exc)
        return "reverted"

    async def _replace(self, intent: Intent, old: Attempt) -> None:
        """Sign the same call again with the same nonce and fees raised by >= 12.5 %."""
        assert intent.nonce is not None and intent.gas is not None
        fresh = await self._fees()
        if old.gas_price is not None:
            fees = Fees(gas_price=max(bump(old.gas_price), fresh.gas_price or 0))
        else:
            assert old.max_fee is not None and old.priority_fee is not None
            priority = max(bump(old.priority_fee), fresh.priority_fee or 0)
            fees = Fees(
                max_fee=max(bump(old.max_fee), fresh.max_fee or 0, priority), priority_fee=priority
            )
        cap = self.config.max_fee_cap
        if cap is not None and (fees.max_fee or fees.gas_price or 0) > cap:
            self.outbox.note_error(
                intent.key, "stuck: the fee cap forbids a replacement", self.clock()
            )
            return
        attempt = self._signed(intent.call, intent.nonce, intent.gas, fees)
        self.outbox.record_attempt(intent.key, intent.nonce, intent.gas, attempt)
        logger.info(
            "intent %s: replaced 0x%s with 0x%s",
            intent.key,
            old.tx_hash.hex(),
            attempt.tx_hash.hex(),
        )
        await self._broadcast(intent.key, attempt)


def _failure(intent: Intent) -> TransactionFailed:
    return TransactionFailed(
        intent.key, intent.reason or "failed", intent.tx_hash, dropped=intent.dropped
    )
