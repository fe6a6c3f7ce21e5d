"""What a watcher does next for one held request, given the chain's facts and the time.

Belongs here: the steps (``Wait``, ``Submit``, ``Finish``) and one pure ``plan_*`` function
per request kind, plus ``settle_data`` (the (transferred, locked, locksroot) of both sides
that a settle must name, when the watcher holds them). The node calls a plan whenever the
chain or the request changes (and on a timer), carries out a ``Submit`` under an
idempotency key, and re-plans after the transaction is final; a ``Finish`` ends the
request with the outcome the client is sent. Re-planning from fresh facts after every
step is what makes the watcher's work idempotent and crash-proof: nothing is decided from
what the watcher remembers doing, except whether it did the work (``ours``, ``submitted``)
for the outcome it reports.

Times are chain times (``now`` = the newest block's timestamp). The settle window's last
second is ``closed_at + settle_window``: an update is accepted up to it, a settle after it.

Does not belong here: reading the chain, sending transactions (``offchain.node.watcher``).
"""

from __future__ import annotations

from dataclasses import dataclass

from offchain.protocol.types import ZERO_ADDRESS, Address, BalanceHash, Timestamp
from offchain.watch.facts import ChannelFacts, SideOnChain, Stage
from offchain.watch.wire import (
    NO_BALANCE,
    Action,
    BalancePreimage,
    DelegateUpdate,
    OutcomeStatus,
    RawTransaction,
    RegisterSecret,
    Unlock,
)


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to do now; look again when the chain or the time moves."""

    why: str


@dataclass(frozen=True, slots=True)
class Submit:
    """Send the transaction for ``action`` now; ``deadline`` (chain time) orders work."""

    action: Action
    deadline: Timestamp | None = None


@dataclass(frozen=True, slots=True)
class Finish:
    """The request is over: report ``status`` for ``action`` to the client."""

    action: Action
    status: OutcomeStatus
    text: str = ""


Step = Wait | Submit | Finish


def _matches(side: SideOnChain | None, held: BalancePreimage) -> BalancePreimage | None:
    """The data a settle names for a side whose proof on chain is ``side``: none when
    the chain holds no proof, ``held`` when it commits to it, else unknown (None)."""
    if side is None:
        return None
    if side.balance_hash == BalanceHash(bytes(32)):
        return NO_BALANCE
    if side.balance_hash == held.balance_hash:
        return held
    return None


def settle_data(
    request: DelegateUpdate, facts: ChannelFacts
) -> tuple[BalancePreimage, BalancePreimage] | None:
    """(closer's, non-closer's) data for ``settle_channel``, if the request holds what the
    chain's balance hashes commit to; None if either side is unknown to the watcher."""
    closer = _matches(facts.closer_side, request.closer_balance)
    non_closer = _matches(facts.non_closer_side, request.own_balance)
    if closer is None or non_closer is None:
        return None
    return closer, non_closer


def update_stands(request: DelegateUpdate, facts: ChannelFacts, watcher: Address) -> bool:
    """Whether the update on chain is this watcher's, with this request's proof: the
    reward its delegation names is then paid to it at settle."""
    closer, non_closer = facts.closer_side, facts.non_closer_side
    return (
        closer is not None
        and non_closer is not None
        and closer.nonce == request.nonce
        and non_closer.delegate == watcher
        and watcher != ZERO_ADDRESS
    )


def plan_update(
    request: DelegateUpdate,
    facts: ChannelFacts | None,
    now: Timestamp,
    *,
    watcher: Address,
    updated: bool,
) -> Step:
    """The next step for a held delegation.

    ``updated``: the watcher's own update of this request was confirmed (remembered: the
    chain forgets delegations at settle, and the outcome of the settle says whether the
    reward was ours).
    """
    if facts is None:
        return Wait("the channel is not on chain (yet)")
    if facts.generation > request.generation or facts.settled(request.generation):
        if updated:
            return Finish(Action.SETTLE, OutcomeStatus.CONFIRMED, "settled")
        return Finish(Action.UPDATE, OutcomeStatus.UNNECESSARY, "settled without our update")
    if facts.generation < request.generation:
        return Wait("the chain shows an older generation")
    if facts.stage is Stage.OPENED:
        return Wait("open")
    if facts.stage is Stage.SETTLED:  # settled_generation unknown: a directory gap
        return Finish(Action.UPDATE, OutcomeStatus.UNNECESSARY, "settled")
    if facts.closer != request.closer:
        return Finish(Action.UPDATE, OutcomeStatus.UNNECESSARY, "closed by the client itself")
    deadline = facts.deadline
    assert deadline is not None, "a closed channel has a close time"
    if facts.closer_side is None or facts.non_closer_side is None:
        return Wait("the proofs on chain are not read yet")
    if updated or update_stands(request, facts, watcher):
        if now <= deadline:
            return Wait(f"the settle window is open until {deadline}")
        if not update_stands(request, facts, watcher):
            # A newer proof replaced ours (the client, or another delegate): no reward.
            return Finish(
                Action.SETTLE, OutcomeStatus.UNNECESSARY, "a newer update replaced ours: no reward"
            )
        if settle_data(request, facts) is None:
            return Wait("cannot settle: the chain holds a proof the watcher has no data of")
        return Submit(Action.SETTLE, None)
    if facts.closer_side.nonce >= request.nonce:
        return Finish(
            Action.UPDATE,
            OutcomeStatus.UNNECESSARY,
            f"the chain holds the closer's nonce {facts.closer_side.nonce}",
        )
    if now > deadline:
        return Finish(Action.UPDATE, OutcomeStatus.FAILED, f"the settle window ended at {deadline}")
    return Submit(Action.UPDATE, deadline)


def plan_register_secret(
    request: RegisterSecret, registered_at: Timestamp | None, now: Timestamp, *, submitted: bool
) -> Step:
    """``registered_at``: when the chain registered the secret (None: not registered)."""
    if registered_at is not None:
        if registered_at <= request.deadline:
            status = OutcomeStatus.CONFIRMED if submitted else OutcomeStatus.UNNECESSARY
            return Finish(Action.REGISTER_SECRET, status, f"registered at {registered_at}")
        return Finish(
            Action.REGISTER_SECRET,
            OutcomeStatus.FAILED,
            f"registered at {registered_at}, after the deadline {request.deadline}",
        )
    if now >= request.deadline:
        # The next block's timestamp is above ``now``: too late for ``<= deadline``.
        return Finish(
            Action.REGISTER_SECRET, OutcomeStatus.FAILED, f"the deadline {request.deadline} passed"
        )
    return Submit(Action.REGISTER_SECRET, request.deadline)


def plan_unlock(
    request: Unlock, facts: ChannelFacts | None, retained: int | None, *, submitted: bool
) -> Step:
    """``retained``: what the chain still retains for these locks (None: not read)."""
    if facts is None or not facts.settled(request.generation):
        return Wait("the channel is not settled yet")
    if retained is None:
        return Wait("the retained amount is not read yet")
    if retained > 0:
        return Submit(Action.UNLOCK, None)
    status = OutcomeStatus.CONFIRMED if submitted else OutcomeStatus.UNNECESSARY
    return Finish(Action.UNLOCK, status, "nothing left to unlock")


@dataclass(frozen=True, slots=True)
class Receipt:
    """A mined transaction: ``ok`` (status 1) and its block's timestamp."""

    ok: bool
    block_timestamp: Timestamp


def plan_raw_transaction(request: RawTransaction, receipt: Receipt | None, now: Timestamp) -> Step:
    if receipt is not None:
        status = OutcomeStatus.CONFIRMED if receipt.ok else OutcomeStatus.FAILED
        return Finish(Action.BROADCAST, status, "mined" if receipt.ok else "reverted")
    if now > request.deadline:
        return Finish(
            Action.BROADCAST, OutcomeStatus.FAILED, f"not mined by the deadline {request.deadline}"
        )
    return Submit(Action.BROADCAST, request.deadline)
