"""The target's side of a payment: accept a lock, reveal the secret, get unlocked.

Belongs here: what the target does with a lock for itself (`on_lock`), with the
initiator's `PaymentSecret` (which may arrive before or after the lock) or its reveal in
answer to a `SecretRequest`, and with the payer's `Unlock` (`EventPaymentReceived`).

A lock is claimed only if it carries at least the amount the initiator announced (or the
invoice asks) and there is still more than `reveal_timeout` before its expiration: time
enough to register the secret on chain if the payer does not unlock (the node's tick
does that, `node._claim_deadlines`). A lock that cannot be accepted is given back at
once (`LockReturn`, reason `REJECTED` or `EXPIRY_TOO_SOON`). While the node does not see
the chain, a lock is also given back (`OFFLINE_WINDOW`) when less than
`offline_min_lead` is left before its registration deadline or the channel's update
horizon (docs/offline.md, O-1).

Does not belong here: channel rules (`channel`), the shared moves (`step`).
"""

from __future__ import annotations

from offchain.protocol import frozen, offline
from offchain.protocol.locks import secrethash_of
from offchain.protocol.messages import LockedTransfer, ReturnReason
from offchain.protocol.state import LockKey, TargetState, TargetStatus
from offchain.protocol.step import Step
from offchain.protocol.transitions import EventPaymentReceived
from offchain.protocol.types import Address, Secret, TokenAmount


def on_lock(step: Step, payer: Address, message: LockedTransfer) -> None:
    """A lock for us arrived (already applied to the channel)."""
    key: LockKey = (message.token_network, payer, message.secrethash)
    step.targets[key] = TargetState(
        token_network=message.token_network,
        payer=payer,
        secrethash=message.secrethash,
        payment_id=message.payment_id,
        amount=message.amount,
        expiration=message.expiration,
        status=TargetStatus.WAITING_SECRET,
    )
    try_claim(step, key)


def try_claim(step: Step, key: LockKey) -> None:
    """Reveal the secret to the payer if we know it and the lock is good enough."""
    record = step.targets.get(key)
    if record is None or record.status is not TargetStatus.WAITING_SECRET:
        return
    secret, required = _known_secret(step, record)
    if required is None:
        return  # nothing known yet: the PaymentSecret may still be on its way
    if record.amount < required:
        _give_back(step, key, record, ReturnReason.REJECTED)
        return
    if record.expiration - step.now <= _channel_reveal_timeout(step, record):
        _give_back(step, key, record, ReturnReason.EXPIRY_TOO_SOON)
        return
    if not offline.accepts_value(step, record.token_network, record.payer, record.expiration):
        _give_back(step, key, record, ReturnReason.OFFLINE_WINDOW)
        return
    if secret is None:
        announcement = step.announcements.get(record.payment_id)
        if announcement is not None:
            step.request_secret(record, announcement)
            step.targets[key] = frozen.replace(record, status=TargetStatus.REQUESTED)
        return
    step.secrets[record.secrethash] = secret
    step.reveal(record.token_network, record.payer, secret)
    step.targets[key] = frozen.replace(record, status=TargetStatus.REVEALED)


def _known_secret(step: Step, record: TargetState) -> tuple[Secret | None, TokenAmount | None]:
    """The secret we know for this lock and the amount it must carry (None: unknown)."""
    invoice = step.invoices.get(record.secrethash)
    if invoice is not None:
        return invoice
    announcement = step.announcements.get(record.payment_id)
    if announcement is None or announcement.token_network != record.token_network:
        return None, None
    secret = announcement.secret
    if secret is not None and secrethash_of(secret) != record.secrethash:
        return None, None  # an announcement for another lock of the same id: not ours
    if secret is None:
        secret = step.secrets.get(record.secrethash)
    return secret, announcement.amount


def _channel_reveal_timeout(step: Step, record: TargetState) -> int:
    channel = step.channels.get((record.token_network, record.payer))
    return step.settings.reveal_timeout if channel is None else channel.reveal_timeout


def _give_back(step: Step, key: LockKey, record: TargetState, reason: ReturnReason) -> None:
    step.give_back(
        record.token_network,
        record.payer,
        record.secrethash,
        record.payment_id,
        reason,
        step.address,
    )
    step.targets[key] = frozen.replace(record, status=TargetStatus.RETURNED)


def on_secret_from_initiator(step: Step, secret: Secret) -> None:
    """The initiator answered our `SecretRequest`: claim every lock waiting for it."""
    secrethash = secrethash_of(secret)
    for key, record in list(step.targets.items()):
        if record.secrethash == secrethash and record.status is TargetStatus.REQUESTED:
            step.secrets[secrethash] = secret
            step.targets[key] = frozen.replace(record, status=TargetStatus.WAITING_SECRET)
            try_claim(step, key)


def on_paid(step: Step, key: LockKey) -> None:
    """The payer unlocked: the payment is ours off chain."""
    record = step.targets.get(key)
    if record is None:
        return
    step.targets[key] = frozen.replace(record, status=TargetStatus.PAID)
    step.effects.append(
        EventPaymentReceived(
            record.token_network,
            record.payment_id,
            record.payer,
            record.amount,
            _initiator(step, record),
        )
    )


def _initiator(step: Step, record: TargetState) -> Address | None:
    """Who started the payment, if an announcement proves it: one that carried the lock's
    secret came from the initiator (or from whom it told). An announcement without the
    secret proves nothing: anyone can send one naming a payment id."""
    announcement = step.announcements.get(record.payment_id)
    if (
        announcement is None
        or announcement.token_network != record.token_network
        or announcement.secret is None
        or secrethash_of(announcement.secret) != record.secrethash
    ):
        return None
    return announcement.initiator


def forget_if_done(step: Step, key: LockKey) -> None:
    """Forget the record once the payer's lock is no longer pending; once it was paid,
    forget its announcement too.

    A paid payment needs no other lock (its initiator has the secret back), and a busy
    target would otherwise keep every announcement of the last ``lock_timeout`` seconds
    (hundreds of thousands at a few hundred payments a second) in every snapshot. One
    that was given back or expired keeps it: the initiator may try another route.
    """
    record = step.targets.get(key)
    if record is None:
        return
    channel = step.channels.get((record.token_network, record.payer))
    if channel is not None and channel.partner.lock_for(record.secrethash) is not None:
        return
    del step.targets[key]
    if record.status is not TargetStatus.PAID:
        return
    announcement = step.announcements.get(record.payment_id)
    if announcement is None or announcement.token_network != record.token_network:
        return
    if announcement.secret is not None and secrethash_of(announcement.secret) != record.secrethash:
        return  # another payment's announcement under the same id
    if any(other.payment_id == record.payment_id for other in step.targets.values()):
        return
    del step.announcements[record.payment_id]
