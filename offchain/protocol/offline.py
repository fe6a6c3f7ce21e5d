"""The offline safety window: by when a node that may not see the chain must reach it.

Belongs here (pure: `now` and the chain view come in as values; docs/offline.md gives the
argument, docs/spec.md §14 the invariants O-1..O-6):
- the update horizon of a channel, H(P) = view(P) + W - clock_tolerance - submit_margin,
  where W is the channel's settle window and view(P) the later of the node's own view
  time and the view time of a delegate holding our latest proof from P. A partner can
  only close at a chain time at or after view(P) (any earlier close is known already),
  so its latest proof to us reaches the chain in time if it is sent before H(P) by our
  clock (`update_horizon`);
- the registration deadline of an incoming lock whose secret we know, E - clock_tolerance
  - submit_margin (`lock_deadline`): the contract pays a lock only if its secret was
  registered at or before E;
- the acceptance rule (`accepts_value`): while the node does not see the chain, value from
  a partner (a lock it would forward or claim) is taken only when at least
  `offline_min_lead` seconds are left before the earliest deadline it would add to;
  while the node sees the chain nothing is refused;
- `deadlines`: everything a node must get on chain and by when: the horizons of channels
  whose partner's proof holds value, the registration deadlines of locks we could claim,
  and the transactions the node has still to send (its `ContractSend*` work), each with
  the device time to act by and the chain's own limit; `send_deadline` orders that work.

Does not belong here: where the view comes from (the node's runtime measures it), I/O,
the roles' other rules (`mediator`, `target`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from offchain.protocol.channel import ChannelPhase, ChannelState
from offchain.protocol.locks import secrethash_of
from offchain.protocol.state import ChannelKey, NodeState, Settings
from offchain.protocol.step import Step
from offchain.protocol.transitions import (
    ContractSendClose,
    ContractSendCoopSettle,
    ContractSendSecretRegister,
    ContractSendUnlock,
    ContractSendUpdate,
    ContractSendWithdraw,
)
from offchain.protocol.types import Address, Nonce, SecretHash, Timestamp, TokenAmount

ContractWork = (
    ContractSendSecretRegister
    | ContractSendClose
    | ContractSendUpdate
    | ContractSendUnlock
    | ContractSendWithdraw
    | ContractSendCoopSettle
)
"""A transaction the core asked for and the node has not confirmed yet."""


NO_NONCE: Final = Nonce(0)
NOTHING: Final = TokenAmount(0)


class DeadlineKind(enum.Enum):
    """What must reach the chain."""

    UPDATE_HORIZON = "update_horizon"
    """If the partner closes with an older proof, its latest one must reach the chain
    (or a delegate must hold it) before this: the node must see the chain again by then."""
    REGISTER_SECRET = "register_secret"
    """The secret of a lock we can claim, whose payer has not unlocked, must be registered."""
    UPDATE = "update"
    """The partner closed: its latest proof must be on chain before the settle window ends."""
    UNLOCK = "unlock"
    CLOSE = "close"
    WITHDRAW = "withdraw"
    COOPERATIVE_SETTLE = "cooperative_settle"


@dataclass(frozen=True, slots=True)
class Deadline:
    """One thing the node must get on chain.

    `deadline`: the time by our clock to act by (the transaction sent), None when there
    is no limit; `chain_deadline`: the chain's own limit (a block timestamp) it is derived
    from. `delegated`: a delegate's view sets the horizon (it holds our latest proof).
    `nonce`, `amount`: the partner's proof at stake and the value it holds for us (for a
    lock: its amount). `pending`: a transaction is queued for it (the node's work).
    """

    kind: DeadlineKind
    token_network: Address
    partner: Address | None
    deadline: Timestamp | None
    chain_deadline: Timestamp | None
    delegated: bool = False
    nonce: Nonce = NO_NONCE
    amount: TokenAmount = NOTHING
    secrethash: SecretHash | None = None
    pending: bool = False


def _seconds(value: int) -> Timestamp:
    return Timestamp(max(value, 0))


def act_by(settings: Settings, chain_deadline: int) -> Timestamp:
    """The time by our clock to send a transaction that must be included by
    `chain_deadline` (chain time): our clock may be `clock_tolerance` behind the chain's,
    and inclusion takes up to `submit_margin`."""
    return _seconds(chain_deadline - settings.clock_tolerance - settings.submit_margin)


def channel_view(
    view_time: Timestamp | None,
    delegated: Mapping[ChannelKey, Timestamp],
    key: ChannelKey,
    now: Timestamp,
) -> tuple[Timestamp, bool]:
    """view(P): the chain time from which a close of the channel `key` may be unknown to
    us, and whether a delegate's view sets it. While we see the chain (`view_time` None)
    it is `now`: nothing has been missed."""
    own = now if view_time is None else view_time
    delegate = delegated.get(key)
    if delegate is not None and delegate > own:
        return delegate, True
    return own, False


def update_horizon(
    settings: Settings,
    channel: ChannelState,
    view_time: Timestamp | None,
    delegated: Mapping[ChannelKey, Timestamp],
    now: Timestamp,
) -> tuple[Timestamp, Timestamp, bool]:
    """H(P) by our clock, the chain's limit view(P) + W behind it, and whether a
    delegate's view sets it (docs/offline.md §2)."""
    key = (channel.token_network, channel.partner.address)
    view, by_delegate = channel_view(view_time, delegated, key, now)
    limit = Timestamp(view + channel.settle_window)
    return act_by(settings, limit), limit, by_delegate


def lock_deadline(settings: Settings, expiration: Timestamp) -> Timestamp:
    """By our clock, the last moment to send the registration of a lock's secret."""
    return act_by(settings, expiration)


def accepts_value(
    step: Step, token_network: Address, payer: Address, expiration: Timestamp | None
) -> bool:
    """The offline acceptance rule (O-1): may we take value from `payer` now?

    Always while we see the chain. Otherwise only if at least `offline_min_lead` seconds
    are left before the earlier of the channel's update horizon and (for a lock expiring
    at `expiration`) the lock's registration deadline.
    """
    if step.view_time is None:
        return True
    channel = step.channels.get((token_network, payer))
    if channel is None:
        return False
    settings = step.settings
    horizon, _, _ = update_horizon(settings, channel, step.view_time, step.delegated, step.now)
    earliest = horizon
    if expiration is not None:
        earliest = min(earliest, lock_deadline(settings, expiration))
    return earliest - step.now >= settings.offline_min_lead


def send_deadline(effect: ContractWork, settle_deadline: Timestamp | None) -> Timestamp | None:
    """The chain's limit for a transaction (a block timestamp), None when it has none.

    `settle_deadline`: when the settle window of the effect's channel ends (chain time),
    if it is closed: the limit of an update.
    """
    match effect:
        case ContractSendSecretRegister():
            return effect.deadline
        case ContractSendUpdate():
            return settle_deadline
        case ContractSendWithdraw():
            return effect.withdraw.expiration
        case ContractSendCoopSettle():
            return effect.settle.expiration
        case ContractSendClose() | ContractSendUnlock():
            return None


def _work_item(
    state: NodeState, effect: ContractWork, settle_deadline: Timestamp | None
) -> Deadline:
    limit = send_deadline(effect, settle_deadline)
    by = None if limit is None else act_by(state.settings, limit)
    match effect:
        case ContractSendSecretRegister():
            secrethash, network, partner, amount = _lock_of(state, effect)
            return Deadline(
                DeadlineKind.REGISTER_SECRET, network, partner, by, limit,
                amount=amount, secrethash=secrethash, pending=True,
            )  # fmt: skip
        case ContractSendUpdate():
            proof = effect.proof
            return Deadline(
                DeadlineKind.UPDATE, effect.token_network, effect.partner, by, limit,
                nonce=proof.nonce, amount=TokenAmount(proof.transferred + proof.locked),
                pending=True,
            )  # fmt: skip
        case ContractSendUnlock():
            amount = TokenAmount(sum(lock.amount for lock in effect.locks))
            return Deadline(
                DeadlineKind.UNLOCK, effect.token_network, effect.partner, by, limit,
                amount=amount, pending=True,
            )  # fmt: skip
        case ContractSendClose():
            nonce = NO_NONCE if effect.proof is None else effect.proof.nonce
            return Deadline(
                DeadlineKind.CLOSE, effect.token_network, effect.partner, by, limit,
                nonce=nonce, pending=True,
            )  # fmt: skip
        case ContractSendWithdraw():
            return Deadline(
                DeadlineKind.WITHDRAW, effect.token_network, effect.partner, by, limit,
                amount=effect.withdraw.total_withdraw, pending=True,
            )  # fmt: skip
        case ContractSendCoopSettle():
            return Deadline(
                DeadlineKind.COOPERATIVE_SETTLE, effect.token_network, effect.partner, by,
                limit, pending=True,
            )  # fmt: skip


def _lock_of(
    state: NodeState, effect: ContractSendSecretRegister
) -> tuple[SecretHash, Address, Address | None, TokenAmount]:
    """The incoming lock a registration is for (the secret's hash, its channel, amount)."""
    secrethash = secrethash_of(effect.secret)
    for (network, partner), channel in state.channels.items():
        lock = channel.partner.lock_for(secrethash)
        if lock is not None:
            return secrethash, network, partner, lock.amount
    return secrethash, Address(bytes(20)), None, NOTHING


def deadlines(
    state: NodeState,
    now: Timestamp,
    work: Iterable[ContractWork] = (),
    settle_deadlines: Mapping[ChannelKey, Timestamp] | None = None,
) -> list[Deadline]:
    """Everything `state`'s node must get on chain, earliest first (no limit last).

    - per open channel whose partner's proof holds value for us (transferred > 0 or
      pending locks): its update horizon (as if the chain disappeared now, while we see
      it);
    - per incoming lock whose secret we know, not unlocked by the payer, not a returned
      pair, not registered in time: its registration deadline;
    - per transaction in `work` (the node's unconfirmed `ContractSend*` effects): its
      deadline, from `settle_deadlines` (chain time, by channel) for an update.
    """
    settings = state.settings
    items: list[Deadline] = []
    queued = list(work)
    registering = {
        secrethash_of(e.secret) for e in queued if isinstance(e, ContractSendSecretRegister)
    }
    for key, channel in state.channels.items():
        network, partner_address = key
        partner = channel.partner
        if channel.phase is ChannelPhase.OPENED and (partner.transferred > 0 or partner.locks):
            by, limit, delegated = update_horizon(
                settings, channel, state.view_time, state.delegated, now
            )
            held = TokenAmount(partner.transferred + partner.locked)
            horizon = Deadline(
                DeadlineKind.UPDATE_HORIZON, network, partner_address, by, limit,
                delegated=delegated, nonce=partner.nonce, amount=held,
            )  # fmt: skip
            items.append(horizon)
        for lock in partner.locks:
            secrethash = lock.secrethash
            if secrethash not in state.secrets or secrethash in registering:
                continue
            registered = state.registered.get(secrethash)
            if registered is not None and registered <= lock.expiration:
                continue
            if channel.our.lock_for(secrethash) == lock:
                continue  # a returned pair pays both ways: nothing to claim
            register = Deadline(
                DeadlineKind.REGISTER_SECRET, network, partner_address,
                lock_deadline(settings, lock.expiration), lock.expiration,
                amount=lock.amount, secrethash=secrethash,
            )  # fmt: skip
            items.append(register)
    closes = settle_deadlines or {}
    for effect in queued:
        key = (
            (effect.token_network, effect.partner)
            if not isinstance(effect, ContractSendSecretRegister)
            else (Address(bytes(20)), Address(bytes(20)))
        )
        items.append(_work_item(state, effect, closes.get(key)))
    items.sort(key=lambda item: (item.deadline is None, item.deadline or 0))
    return items
