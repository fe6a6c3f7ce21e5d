"""One channel as its participant sees it: balances, pending locks, balance-proof messages.

Belongs here: the channel's state (`ChannelState`, one `EndState` per direction), what is
safe to spend, and the pure functions that make our next balance-proof message or check
and apply the partner's. Every outgoing proof is signed over exactly the (T, L, locksroot)
the contract will see; every incoming one is checked the same way (token network,
generation, nonce exactly +1, amounts, lock rules, signature), and a bad one leaves the
state unchanged and comes back as a `Rejected` with the reason.

Does not belong here: which payment a lock belongs to, routing or retries (the transfer
state machines), timers, or anything that talks to the chain. Time comes in as `now`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple

from offchain.protocol import frozen, signing
from offchain.protocol.errors import InvalidSignature
from offchain.protocol.locks import (
    MAX_PENDING_LOCKS,
    Lock,
    balance_hash,
    find_lock,
    locked_total,
    locksroot,
    secrethash_of,
    with_lock,
    without_lock,
)
from offchain.protocol.messages import (
    MAX_BATCH_PAYMENTS,
    BatchEntry,
    DirectTransfer,
    LockedTransfer,
    LockExpired,
    LockReturn,
    PaymentId,
    ReturnReason,
    TransferBatch,
    Unlock,
)
from offchain.protocol.signing import PLACEHOLDER_SIGNATURE
from offchain.protocol.types import (
    Address,
    BalanceHash,
    Generation,
    Locksroot,
    Nonce,
    PrivateKey,
    Secret,
    SecretHash,
    Signature,
    Timestamp,
    TokenAmount,
)

BalanceProofMessage = (
    DirectTransfer | LockedTransfer | LockReturn | Unlock | LockExpired | TransferBatch
)
NONCE_LIMIT: Final = 2**64 - 1
ZERO_AMOUNT: Final = TokenAmount(0)
NO_NONCE: Final = Nonce(0)
NO_TIME: Final = Timestamp(0)


class ChannelPhase(enum.Enum):
    """Where the channel is in its on-chain life."""

    OPENED = "opened"
    CLOSED = "closed"
    SETTLED = "settled"


@dataclass(frozen=True, slots=True)
class EndState:
    """One direction of a channel: what `address` has deposited, withdrawn and sent.

    `nonce`, `signature` and `additional_hash` belong to the latest balance proof this end
    signed; for the partner's end they are what we can submit on chain.
    """

    address: Address
    deposit: TokenAmount = ZERO_AMOUNT
    withdrawn: TokenAmount = ZERO_AMOUNT
    transferred: TokenAmount = ZERO_AMOUNT
    locks: tuple[Lock, ...] = ()
    nonce: Nonce = NO_NONCE
    signature: Signature | None = None
    additional_hash: bytes = bytes(32)
    withdraw_pending: TokenAmount = ZERO_AMOUNT
    withdraw_expiration: Timestamp = NO_TIME
    mirrors: frozenset[SecretHash] = frozenset()
    """Secrethashes of this end's locks that are mirrors (made by `LockReturn`)."""

    @property
    def locked(self) -> TokenAmount:
        return locked_total(self.locks)

    @property
    def locksroot(self) -> Locksroot:
        return locksroot(self.locks)

    @property
    def balance_hash(self) -> BalanceHash:
        return _balance_hash_of(self.transferred, self.locks)

    def lock_for(self, secrethash: SecretHash) -> Lock | None:
        return find_lock(self.locks, secrethash)


def _balance_hash_of(transferred: TokenAmount, locks: tuple[Lock, ...]) -> BalanceHash:
    # L and the locksroot are remembered per tuple of locks (locks.with_lock/without_lock).
    return balance_hash(transferred, locked_total(locks), locksroot(locks))


@dataclass(frozen=True, slots=True)
class ChannelState:
    """A channel between `our.address` and `partner.address` in one token network.

    `reveal_timeout`: seconds before a lock's expiration by which a payee must have the
    secret registered on chain if its payer has not unlocked; no lock is accepted with
    less time than that left. Locks must also expire within the settle window, so that a
    close can never settle while one of them may still be claimed.
    """

    chain_id: int
    token_network: Address
    generation: Generation
    settle_window: int
    reveal_timeout: int
    our: EndState
    partner: EndState
    phase: ChannelPhase = ChannelPhase.OPENED


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why a message was refused, or a local action is not possible; state unchanged."""

    reason: str


def balance(end: EndState, other: EndState) -> TokenAmount:
    """What `end` would be paid if the channel settled now with no pending locks."""
    return TokenAmount(end.deposit - end.withdrawn - end.transferred + other.transferred)


def returned_amount(end: EndState, other: EndState) -> TokenAmount:
    """The part of `end`'s locks that `other` has given back with mirror locks.

    A mirror lock (same secrethash, amount and expiration, from the payee back to the
    payer) pays exactly what the original pays, in every outcome, so the two cancel for
    the payer, whose capacity is freed at once. Only for the payer: the returner counts
    its mirror as a full lock. With netting on one side only, removing either half of a
    pair never lowers the other end's capacity as its partner sees it, so no proof made
    before the removal can be refused after it (docs/spec.md §10).
    """
    if not other.mirrors:
        return ZERO_AMOUNT
    total = 0
    for lock in end.locks:
        if lock.secrethash in other.mirrors and other.lock_for(lock.secrethash) == lock:
            total += lock.amount
    return TokenAmount(total)


def spendable(end: EndState, other: EndState, now: Timestamp | None = None) -> TokenAmount:
    """What `end` can still send or lock towards `other` (never negative).

    A withdraw being signed (`withdraw_pending` above `withdrawn`) is reserved: once both
    signatures exist either party may put it on chain. With `now` (a receiver judging the
    partner's proof), a reservation past its expiration no longer counts: the contract
    refuses the withdraw then, and the partner may already have released it.
    """
    reserved = max(end.withdraw_pending - end.withdrawn, 0)
    if now is not None and now > end.withdraw_expiration:
        reserved = 0
    free = balance(end, other) - end.locked + returned_amount(end, other) - reserved
    return TokenAmount(max(free, 0))


# --- outgoing ---------------------------------------------------------------------------


def _sign_new_end(
    channel: ChannelState,
    key: PrivateKey,
    message: BalanceProofMessage,
    *,
    transferred: TokenAmount | None = None,
    locks: tuple[Lock, ...] | None = None,
    mirrors: frozenset[SecretHash] | None = None,
) -> tuple[ChannelState, BalanceProofMessage]:
    """Sign `message`, our next proof, over our end with these changes (None: unchanged).

    Our end is rebuilt once, with the changes and the proof together: this runs for every
    proof we send.
    """
    our = channel.our
    transferred = our.transferred if transferred is None else transferred
    locks = our.locks if locks is None else locks
    signed, additional_hash = signing.sign_with_body_hash(
        key,
        message,
        channel.chain_id,
        our.address,
        channel.partner.address,
        _balance_hash_of(transferred, locks),
    )
    assert additional_hash is not None  # a balance proof's signature covers its body
    new_our = frozen.replace(
        our,
        transferred=transferred,
        locks=locks,
        mirrors=our.mirrors if mirrors is None else mirrors,
        nonce=message.nonce,
        signature=signed.signature,
        additional_hash=additional_hash,
    )
    return frozen.replace(channel, our=new_our), signed


def _next_nonce(channel: ChannelState) -> Nonce | Rejected:
    if channel.phase is not ChannelPhase.OPENED:
        return Rejected("channel not open")
    if channel.our.nonce >= NONCE_LIMIT:
        return Rejected("nonce exhausted")
    return Nonce(channel.our.nonce + 1)


def make_direct_transfer(
    channel: ChannelState, key: PrivateKey, amount: TokenAmount, payment_id: PaymentId
) -> tuple[ChannelState, DirectTransfer] | Rejected:
    """Pay `amount` to the partner at once (T rises)."""
    nonce = _next_nonce(channel)
    if isinstance(nonce, Rejected):
        return nonce
    if amount <= 0:
        return Rejected("amount must be positive")
    if amount > spendable(channel.our, channel.partner):
        return Rejected("insufficient capacity")
    message = DirectTransfer(
        channel.token_network, channel.generation, nonce, payment_id, amount, PLACEHOLDER_SIGNATURE
    )
    new_channel, signed = _sign_new_end(
        channel, key, message, transferred=TokenAmount(channel.our.transferred + amount)
    )
    assert isinstance(signed, DirectTransfer)
    return new_channel, signed


def make_transfer_batch(
    channel: ChannelState, key: PrivateKey, entries: Sequence[BatchEntry]
) -> tuple[ChannelState, TransferBatch] | Rejected:
    """Pay several payments to the partner at once, under one signature (T rises by the sum).

    The same rules as for the receiver: 1..`MAX_BATCH_PAYMENTS` entries, each amount
    positive, payment ids distinct, the total within what we can spend.
    """
    nonce = _next_nonce(channel)
    if isinstance(nonce, Rejected):
        return nonce
    payments = tuple(entries)
    total = _batch_total(payments)
    if isinstance(total, Rejected):
        return total
    if total > spendable(channel.our, channel.partner):
        return Rejected("insufficient capacity")
    message = TransferBatch(
        channel.token_network, channel.generation, nonce, payments, PLACEHOLDER_SIGNATURE
    )
    new_channel, signed = _sign_new_end(
        channel, key, message, transferred=TokenAmount(channel.our.transferred + total)
    )
    assert isinstance(signed, TransferBatch)
    return new_channel, signed


def _batch_total(payments: tuple[BatchEntry, ...]) -> TokenAmount | Rejected:
    """The sum a batch pays, or why the batch is not valid (for sender and receiver alike)."""
    if not 1 <= len(payments) <= MAX_BATCH_PAYMENTS:
        return Rejected(f"a batch holds 1 to {MAX_BATCH_PAYMENTS} payments")
    amounts = [entry.amount for entry in payments]
    if min(amounts) <= 0:
        return Rejected("amount must be positive")
    # Distinct ids let the receiver attribute each payment, and prove it with the signed body.
    if len({entry.payment_id for entry in payments}) != len(payments):
        return Rejected("duplicate payment id in the batch")
    return TokenAmount(sum(amounts))


def check_new_lock(channel: ChannelState, lock: Lock, now: Timestamp) -> Rejected | None:
    """The rules a lock we make must meet: those of a received lock, and time to claim it."""
    if lock.amount > 0 and lock.expiration <= now + channel.reveal_timeout:
        return Rejected("lock expires too soon")
    return _check_lock_received(channel, lock, now)


def _check_lock_received(channel: ChannelState, lock: Lock, now: Timestamp) -> Rejected | None:
    """The rules every partner's lock must meet (a late one is still applied, §10)."""
    if lock.amount <= 0:
        return Rejected("lock amount must be positive")
    if lock.expiration > now + channel.settle_window:
        return Rejected("lock expires after the settle window")
    return None


def make_locked_transfer(
    channel: ChannelState,
    key: PrivateKey,
    lock: Lock,
    payment_id: PaymentId,
    target: Address,
    target_amount: TokenAmount,
    now: Timestamp,
) -> tuple[ChannelState, LockedTransfer] | Rejected:
    """Lock `lock.amount` towards the partner under `lock.secrethash` (L rises)."""
    nonce = _next_nonce(channel)
    if isinstance(nonce, Rejected):
        return nonce
    problem = check_new_lock(channel, lock, now) or _check_room(channel.our, channel.partner, lock)
    if problem is not None:
        return problem
    message = LockedTransfer(
        channel.token_network,
        channel.generation,
        nonce,
        payment_id,
        lock.expiration,
        lock.amount,
        lock.secrethash,
        target,
        target_amount,
        PLACEHOLDER_SIGNATURE,
    )
    new_channel, signed = _sign_new_end(
        channel, key, message, locks=with_lock(channel.our.locks, lock)
    )
    assert isinstance(signed, LockedTransfer)
    return new_channel, signed


def make_lock_return(
    channel: ChannelState,
    key: PrivateKey,
    secrethash: SecretHash,
    payment_id: PaymentId,
    reason: ReturnReason,
    failed_hop: Address,
) -> tuple[ChannelState, LockReturn] | Rejected:
    """Give the partner's lock of `secrethash` back with a mirror lock towards it."""
    nonce = _next_nonce(channel)
    if isinstance(nonce, Rejected):
        return nonce
    lock = channel.partner.lock_for(secrethash)
    if lock is None:
        return Rejected("no such lock from the partner")
    if channel.our.lock_for(secrethash) is not None:
        return Rejected("lock already returned")
    problem = _check_room(channel.our, channel.partner, lock)
    if problem is not None:
        return problem
    message = LockReturn(
        channel.token_network,
        channel.generation,
        nonce,
        payment_id,
        lock.expiration,
        lock.amount,
        lock.secrethash,
        reason,
        failed_hop,
        PLACEHOLDER_SIGNATURE,
    )
    new_channel, signed = _sign_new_end(
        channel,
        key,
        message,
        locks=with_lock(channel.our.locks, lock),
        mirrors=channel.our.mirrors | {secrethash},
    )
    assert isinstance(signed, LockReturn)
    return new_channel, signed


def make_unlock(
    channel: ChannelState,
    key: PrivateKey,
    secret: Secret,
    payment_id: PaymentId,
    pair_registered: bool = False,
) -> tuple[ChannelState, Unlock] | Rejected:
    """Pay our lock of `sha256(secret)` off chain: its amount moves from L to T.

    `pair_registered`: our lock is the original of a returned pair whose secret was
    registered on chain in time. Both halves then pay on chain, so they are paid off
    chain too: the original first (this), then the returner pays its mirror back when
    the unlock reaches it.
    """
    nonce = _next_nonce(channel)
    if isinstance(nonce, Rejected):
        return nonce
    secrethash = secrethash_of(secret)
    lock = channel.our.lock_for(secrethash)
    if lock is None:
        return Rejected("no such lock")
    if channel.partner.lock_for(secrethash) == lock and (
        secrethash in channel.our.mirrors or not pair_registered
    ):
        # A returned pair pays both ways or not at all: unlocking one half alone would
        # take back capacity the pair had already freed. It expires as a pair (or, when
        # its secret is registered in time, the original is unlocked first).
        return Rejected("lock was returned")
    message = Unlock(
        channel.token_network, channel.generation, nonce, payment_id, secret, PLACEHOLDER_SIGNATURE
    )
    new_channel, signed = _sign_new_end(
        channel,
        key,
        message,
        transferred=TokenAmount(channel.our.transferred + lock.amount),
        locks=without_lock(channel.our.locks, secrethash),
        mirrors=channel.our.mirrors - {secrethash},
    )
    assert isinstance(signed, Unlock)
    return new_channel, signed


def make_lock_expired(
    channel: ChannelState, key: PrivateKey, secrethash: SecretHash, now: Timestamp
) -> tuple[ChannelState, LockExpired] | Rejected:
    """Remove our expired lock of `secrethash` (L falls)."""
    nonce = _next_nonce(channel)
    if isinstance(nonce, Rejected):
        return nonce
    lock = channel.our.lock_for(secrethash)
    if lock is None:
        return Rejected("no such lock")
    if now <= lock.expiration:
        return Rejected("lock not expired")
    if _original_pending(channel.our, channel.partner, lock):
        return Rejected("the original of this mirror is still pending")
    message = LockExpired(
        channel.token_network, channel.generation, nonce, secrethash, PLACEHOLDER_SIGNATURE
    )
    new_channel, signed = _sign_new_end(
        channel,
        key,
        message,
        locks=without_lock(channel.our.locks, secrethash),
        mirrors=channel.our.mirrors - {secrethash},
    )
    assert isinstance(signed, LockExpired)
    return new_channel, signed


def _original_pending(end: EndState, other: EndState, lock: Lock) -> bool:
    """Whether `lock` is a mirror of `end` whose original `other` still holds.

    A pair is removed original first: the returner keeps its mirror until the payer has
    removed the original, so the payer's capacity (which nets the pair) never drops.
    """
    return lock.secrethash in end.mirrors and other.lock_for(lock.secrethash) == lock


def _check_room(
    end: EndState, other: EndState, lock: Lock, now: Timestamp | None = None
) -> Rejected | None:
    if end.lock_for(lock.secrethash) is not None:
        return Rejected("secrethash already locked")
    if len(end.locks) >= MAX_PENDING_LOCKS:
        return Rejected("too many pending locks")
    if lock.amount > spendable(end, other, now):
        return Rejected("insufficient capacity")
    return None


# --- incoming ---------------------------------------------------------------------------


def receive(
    channel: ChannelState,
    message: BalanceProofMessage,
    now: Timestamp,
    secret_registered_in_time: bool = False,
) -> ChannelState | Rejected:
    """Check the partner's balance-proof message and apply it.

    `secret_registered_in_time` says (for `LockExpired`) that the lock's secret is
    registered on chain at or before its expiration: the lock is then ours to claim and
    its removal is refused.
    """
    if message.token_network != channel.token_network:
        return Rejected("wrong token network")
    if message.generation != channel.generation:
        return Rejected("wrong channel generation")
    if channel.phase is not ChannelPhase.OPENED:
        return Rejected("channel not open")
    if message.nonce != channel.partner.nonce + 1:
        return Rejected(f"nonce {message.nonce} is not {channel.partner.nonce + 1}")
    derived = _derive_partner(channel, message, now, secret_registered_in_time)
    if isinstance(derived, Rejected):
        return derived
    partner = channel.partner
    try:
        signer, additional_hash = signing.signer_with_body_hash(
            message,
            channel.chain_id,
            partner.address,
            channel.our.address,
            _balance_hash_of(derived.transferred, derived.locks),
        )
    except InvalidSignature as error:
        return Rejected(f"malformed signature: {error}")
    if signer != partner.address:
        return Rejected("signature does not match the partner's balance")
    assert additional_hash is not None  # a balance proof's signature covers its body
    # The partner's end is rebuilt once, with the derived balance and the proof together.
    new_partner = frozen.replace(
        partner,
        transferred=derived.transferred,
        locks=derived.locks,
        mirrors=derived.mirrors,
        nonce=message.nonce,
        signature=message.signature,
        additional_hash=additional_hash,
    )
    return frozen.replace(channel, partner=new_partner)


class _Derived(NamedTuple):
    """What a partner's proof says its end holds now: T, the pending locks, the mirrors."""

    transferred: TokenAmount
    locks: tuple[Lock, ...]
    mirrors: frozenset[SecretHash]


def _derive_partner(
    channel: ChannelState,
    message: BalanceProofMessage,
    now: Timestamp,
    secret_registered_in_time: bool,
) -> _Derived | Rejected:
    partner, our = channel.partner, channel.our
    match message:
        case DirectTransfer():
            if message.amount <= 0:
                return Rejected("amount must be positive")
            if message.amount > spendable(partner, our, now):
                return Rejected("amount exceeds the partner's capacity")
            return _Derived(
                TokenAmount(partner.transferred + message.amount), partner.locks, partner.mirrors
            )
        case TransferBatch():
            total = _batch_total(message.payments)
            if isinstance(total, Rejected):
                return total
            if total > spendable(partner, our, now):
                return Rejected("amount exceeds the partner's capacity")
            return _Derived(
                TokenAmount(partner.transferred + total), partner.locks, partner.mirrors
            )
        case LockedTransfer():
            lock = Lock(message.expiration, message.amount, message.secrethash)
            # A lock that arrives with too little time left (a slow transport) is still the
            # next proof of the sender's chain: it is applied, so later proofs stay in
            # order, and the roles decline to act on it (they give it back or let it expire).
            problem = _check_lock_received(channel, lock, now) or _check_room(
                partner, our, lock, now
            )
            if problem is not None:
                return problem
            if message.target_amount > message.amount:
                return Rejected("target amount above the lock amount")
            return _Derived(partner.transferred, with_lock(partner.locks, lock), partner.mirrors)
        case LockReturn():
            # Only the netting depends on it mirroring one of our pending locks; if ours was
            # unlocked meanwhile (the two messages crossed), it is a plain lock in our favour.
            lock = Lock(message.expiration, message.amount, message.secrethash)
            problem = _check_room(partner, our, lock, now)
            if problem is not None:
                return problem
            return _Derived(
                partner.transferred,
                with_lock(partner.locks, lock),
                partner.mirrors | {message.secrethash},
            )
        case Unlock():
            secrethash = secrethash_of(message.secret)
            unlocked = partner.lock_for(secrethash)
            if unlocked is None:
                return Rejected("unlock of an unknown lock")
            # Accepted even if we mirrored it: the payer unlocked before our return reached
            # it. We are paid, and we owe the mirror back (we now know its secret).
            return _Derived(
                TokenAmount(partner.transferred + unlocked.amount),
                without_lock(partner.locks, secrethash),
                partner.mirrors - {secrethash},
            )
        case LockExpired():
            expired = partner.lock_for(message.secrethash)
            if expired is None:
                return Rejected("expiry of an unknown lock")
            if now <= expired.expiration:
                return Rejected("lock not expired")
            if secret_registered_in_time:
                return Rejected("secret registered on chain before the lock expired")
            if _original_pending(partner, our, expired):
                return Rejected("the original of this mirror is still pending")
            return _Derived(
                partner.transferred,
                without_lock(partner.locks, message.secrethash),
                partner.mirrors - {message.secrethash},
            )
