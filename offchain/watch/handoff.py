"""A blind node's hand-offs to gateways: whom to hand a submission to next, and when.

Belongs here (pure: the time, the hand-off's history and the gateways heard of come in as
values; docs/offline.md §4 explains the policy):
- ``Try``: one gateway a submission was handed to, and what it answered (acknowledged,
  refused, an outcome);
- ``HandOff``: one submission (a secret registration, an unlock, a signed transaction of
  ours) and every gateway it was handed to;
- ``state``: open, done (a gateway reported it confirmed or provably unnecessary), or
  failed for good (our transaction was mined and reverted: its nonce is spent; or the
  chain's deadline is over);
- ``next_gateways``: the gateways to hand it to now. A gateway is waited for while it is
  *live*: not refused, no failed outcome, acknowledged within ``patience`` of the hand-off
  and (except for an unlock, whose outcome comes only after a settle) its outcome within
  ``patience`` of the acknowledgement. When no try is live the first candidate never tried
  gets it, else the one tried longest ago (at most once per ``patience`` each: a gateway
  blind a minute ago may see the chain now). Close to the deadline (less than ``patience``
  left before the time to act by) one live gateway is not enough: every candidate not
  tried yet gets it at once, because there is no time left to find out that one dropped it.
- ``due``: when a submission is first handed: at once, or for a secret registration the
  node derived itself (an incoming lock whose payer has not unlocked) after a grace in
  which an honest payer unlocks.

Handing a submission to several gateways is safe: a registration or an unlock already
done is "unnecessary" to the second one, and a signed transaction lands once (its nonce).

Does not belong here: building, signing or sending the requests, persistence, the
gateways' own work (``offchain.node.gateway_client``, ``offchain.node.watcher``).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from offchain.protocol.types import Address
from offchain.watch.wire import OutcomeStatus

REGISTER_GRACE: Final = 10.0
"""Seconds an incoming lock's payer has, once we know the secret, to unlock it off chain
before a blind node asks a gateway to register the secret (an honest payer unlocks within
a mesh round trip of our reveal; a registration costs the gateway a transaction)."""


class HandKind(enum.Enum):
    """What is handed to a gateway."""

    REGISTER_SECRET = "register_secret"
    UNLOCK = "unlock"
    RAW_TRANSACTION = "raw_transaction"


class HandState(enum.Enum):
    OPEN = "open"
    """Not known to be done: handed (or to be handed) to gateways."""
    DONE = "done"
    """A gateway reported it confirmed, or provably unnecessary."""
    FAILED = "failed"
    """Nothing can make it land any more (reverted on chain, or past its chain deadline)."""
    CLOSED = "closed"
    """No longer wanted (the lock was unlocked off chain, the node saw the chain again and
    took the work back, a newer signed attempt replaced this one)."""


@dataclass(frozen=True, slots=True)
class Try:
    """One gateway a submission was handed to (the latest hand-off to it)."""

    gateway: Address
    handed_at: float
    acked_at: float | None = None
    refused: bool = False
    outcome: OutcomeStatus | None = None
    mined: bool = False
    """The outcome names a mined transaction (for a failed broadcast: it reverted)."""


@dataclass(frozen=True, slots=True)
class HandOff:
    """One submission and the gateways it went to, oldest first.

    ``act_by``: the device time by which it must be sent to the chain (None: no limit);
    ``chain_deadline``: the chain's own limit (a block timestamp; None: none)."""

    kind: HandKind
    act_by: float | None
    chain_deadline: int | None
    tries: tuple[Try, ...] = ()


def state(handoff: HandOff, now: float) -> HandState:
    """Done, failed for good, or still open (device time ``now``)."""
    for attempt in handoff.tries:
        if attempt.outcome in (OutcomeStatus.CONFIRMED, OutcomeStatus.UNNECESSARY):
            return HandState.DONE
    for attempt in handoff.tries:
        if (
            attempt.outcome is OutcomeStatus.FAILED
            and attempt.mined
            and handoff.kind is HandKind.RAW_TRANSACTION
        ):
            return HandState.FAILED  # mined and reverted: its nonce is spent
    if handoff.chain_deadline is not None and now > handoff.chain_deadline:
        return HandState.FAILED
    return HandState.OPEN


def live(attempt: Try, kind: HandKind, now: float, patience: float) -> bool:
    """Whether ``attempt``'s gateway is still worth waiting for."""
    if attempt.refused or attempt.outcome is not None:
        return False
    if attempt.acked_at is None:
        return now < attempt.handed_at + patience
    if kind is HandKind.UNLOCK:
        return True  # its outcome comes after the settle, whenever that is
    return now < attempt.acked_at + patience


def urgent(handoff: HandOff, now: float, patience: float) -> bool:
    """Less than ``patience`` is left before the time to act by: no time to wait for one
    gateway to prove useless."""
    return handoff.act_by is not None and now >= handoff.act_by - patience


def next_gateways(
    handoff: HandOff, candidates: Sequence[Address], now: float, patience: float
) -> list[Address]:
    """The gateways to hand ``handoff`` to now (``candidates``: best first)."""
    if state(handoff, now) is not HandState.OPEN or not candidates:
        return []
    tried = {attempt.gateway: attempt for attempt in handoff.tries}
    fresh = [gateway for gateway in candidates if gateway not in tried]
    waiting = [a for a in handoff.tries if live(a, handoff.kind, now, patience)]
    if urgent(handoff, now, patience):
        if fresh:
            return fresh
    elif waiting:
        return []
    if fresh:
        return fresh[:1]
    if waiting:
        return []
    again = [
        tried[gateway]
        for gateway in candidates
        if now >= tried[gateway].handed_at + patience
        and tried[gateway].outcome not in (OutcomeStatus.CONFIRMED, OutcomeStatus.UNNECESSARY)
    ]
    again.sort(key=lambda attempt: attempt.handed_at)
    return [again[0].gateway] if again else []


def due(derived: bool, first_seen: float, now: float) -> bool:
    """Whether a submission is to be handed now: at once, or (``derived``: a secret
    registration for a lock whose payer has not unlocked) after ``REGISTER_GRACE``."""
    return not derived or now >= first_seen + REGISTER_GRACE
