"""A node's protocol core: `transition(state, input, key) -> (state, effects)`.

Belongs here: the one entry point of the pure core, which dispatches every input to the
channel rules and the role modules, and the rules that do not belong to one role:
- balance proofs from a partner are applied in nonce order: a duplicate is ignored, one
  that arrives before its predecessor waits (bounded) until the gap is filled, so a
  transport that reorders or repeats messages is enough;
- a secret learned from a payee (or the chain) pays that payee and is revealed to the
  payer (`mediator`, `initiator`), and a lock we can claim whose payer has not unlocked
  by `expiration - reveal_timeout` gets its secret registered on chain (one
  `ContractSendSecretRegister`);
- our locks that expired unclaimed are removed with `LockExpired`;
- chain events: channel opened, deposits, closed (we submit the partner's latest proof
  when the partner closed), settled (we claim the partner's locks whose secrets were
  registered in time), secret registered.

The key is an argument, not part of the state, so a persisted state never holds it.
A peer's bad message yields `EventInvalidReceived` and changes nothing; an exception
raised from here is a bug.

Does not belong here: I/O of any kind, clocks, randomness (all come in as inputs).
"""

from __future__ import annotations

from typing import assert_never

from offchain.protocol import channel as channel_rules
from offchain.protocol import cosigning, frozen, initiator, mediator, offline, signing, target
from offchain.protocol.channel import (
    BalanceProofMessage,
    ChannelPhase,
    ChannelState,
    EndState,
    Rejected,
)
from offchain.protocol.errors import InvalidSignature
from offchain.protocol.locks import secrethash_of
from offchain.protocol.messages import (
    NO_SECRET,
    CoopSettleRefused,
    CoopSettleRequest,
    CoopSettleResponse,
    DirectTransfer,
    LockedTransfer,
    LockExpired,
    LockReturn,
    Message,
    PaymentSecret,
    Processed,
    SecretRequest,
    SecretReveal,
    TransferBatch,
    Unlock,
    WithdrawConfirmation,
    WithdrawExpired,
    WithdrawRequest,
)
from offchain.protocol.state import (
    MAX_EARLY_MESSAGES,
    Announcement,
    InitiatorState,
    InitiatorStatus,
    LockKey,
    NodeState,
)
from offchain.protocol.step import Step
from offchain.protocol.transitions import (
    ActionCloseChannel,
    ActionCoopSettle,
    ActionExpectPayment,
    ActionPay,
    ActionPayDirect,
    ActionSetChainView,
    ActionSetUnreachable,
    ActionUpdateGraph,
    ActionWithdraw,
    ChainChannelClosed,
    ChainChannelOpened,
    ChainChannelSettled,
    ChainDeposit,
    ChainSecretRegistered,
    ChainWithdraw,
    ContractSendClose,
    ContractSendSecretRegister,
    ContractSendUnlock,
    ContractSendUpdate,
    Effect,
    EventActionRefused,
    EventDirectPaymentSent,
    EventPaymentReceived,
    Input,
    PartnerProof,
    ReceiveMessage,
    Tick,
)
from offchain.protocol.types import Address, Nonce, PrivateKey, Secret, SecretHash, Timestamp


def transition(state: NodeState, event: Input, key: PrivateKey) -> tuple[NodeState, list[Effect]]:
    """Apply one input; return the new state and the effects to carry out, in order."""
    step = Step(state, key, event.now)
    match event:
        case ReceiveMessage():
            _receive(step, event.sender, event.message)
        case Tick():
            _tick(step)
        case ActionPay():
            _pay(step, event)
        case ActionPayDirect():
            _refused(step, _pay_direct(step, event))
        case ActionExpectPayment():
            step.invoices[secrethash_of(event.secret)] = (event.secret, event.amount)
        case ActionUpdateGraph():
            step.graphs[event.token_network] = event.graph
        case ActionSetUnreachable():
            step.unreachable = event.addresses
        case ActionSetChainView():
            step.view_time = event.view_time
            step.delegated = dict(event.delegated)
        case ActionCloseChannel():
            _close(step, event)
        case ActionWithdraw():
            _refused(step, cosigning.withdraw(step, event))
        case ActionCoopSettle():
            _refused(step, cosigning.coop_settle(step, event))
        case ChainWithdraw():
            cosigning.on_chain_withdraw(step, event)
        case ChainChannelOpened():
            _opened(step, event)
        case ChainDeposit():
            _deposit(step, event)
        case ChainChannelClosed():
            _closed(step, event)
        case ChainChannelSettled():
            _settled(step, event)
        case ChainSecretRegistered():
            _registered(step, event)
        case _:
            assert_never(event)
    return step.finish(), step.effects


# --- local actions ------------------------------------------------------------------------


def _refused(step: Step, result: Rejected | None) -> None:
    if result is not None:
        step.effects.append(EventActionRefused(result.reason))


def _pay(step: Step, action: ActionPay) -> None:
    if action.payment_id in step.initiators:
        return  # the same action twice (a replay of the input log): nothing more to do
    if action.secret is not None and secrethash_of(action.secret) != action.secrethash:
        raise ValueError("ActionPay: secrethash is not sha256(secret)")  # our caller's bug
    if action.amount <= 0 or action.target == step.address:
        raise ValueError("ActionPay: amount must be positive and the target another node")
    initiator.start(step, action)


def _pay_direct(step: Step, action: ActionPayDirect) -> Rejected | None:
    key = (action.token_network, action.partner)
    channel = step.open_channel(*key)
    if channel is None:
        return Rejected("no open channel")
    message: DirectTransfer | TransferBatch
    if len(action.payments) == 1:
        (entry,) = action.payments
        made = channel_rules.make_direct_transfer(channel, step.key, entry.amount, entry.payment_id)
        if isinstance(made, Rejected):
            return made
        step.channels[key], message = made
    else:
        batch = channel_rules.make_transfer_batch(channel, step.key, action.payments)
        if isinstance(batch, Rejected):
            return batch
        step.channels[key], message = batch
    step.send(action.partner, message)
    for entry in action.payments:
        step.effects.append(
            EventDirectPaymentSent(
                action.token_network, entry.payment_id, action.partner, entry.amount
            )
        )
    return None


def _close(step: Step, action: ActionCloseChannel) -> None:
    channel = step.open_channel(action.token_network, action.partner)
    if channel is None:
        return
    step.effects.append(
        ContractSendClose(action.token_network, action.partner, _partner_proof(channel))
    )


def _partner_proof(channel: ChannelState) -> PartnerProof | None:
    partner = channel.partner
    if partner.signature is None:
        return None
    return PartnerProof(
        partner.nonce,
        partner.transferred,
        partner.locked,
        partner.locks,
        partner.additional_hash,
        partner.signature,
    )


# --- messages from peers ------------------------------------------------------------------


def _receive(step: Step, sender: Address, message: Message) -> None:
    match message:
        case (
            DirectTransfer()
            | TransferBatch()
            | LockedTransfer()
            | LockReturn()
            | Unlock()
            | LockExpired()
        ):
            _receive_balance_proof(step, sender, message)
        case PaymentSecret():
            if _verified(step, sender, message):
                _on_payment_secret(step, sender, message)
        case SecretRequest():
            if _verified(step, sender, message):
                payment = step.initiators.get(message.payment_id)
                if payment is None or not initiator.on_secret_request(
                    step, payment, sender, message
                ):
                    step.invalid(sender, message, "secret request for no payment of ours")
        case SecretReveal():
            if _verified(step, sender, message):
                _on_secret_reveal(step, sender, message)
        case Processed():
            pass  # acknowledgements are the transport's (it retries until one comes)
        case (
            WithdrawRequest()
            | WithdrawConfirmation()
            | WithdrawExpired()
            | CoopSettleRequest()
            | CoopSettleResponse()
            | CoopSettleRefused()
        ):
            cosigning.receive(step, sender, message)
        case _:
            assert_never(message)


def _verified(step: Step, sender: Address, message: Message) -> bool:
    try:
        signer = signing.signer_of(message, step.state.chain_id, sender, step.address)
    except InvalidSignature as error:
        step.invalid(sender, message, f"malformed signature: {error}")
        return False
    if signer != sender:
        step.invalid(sender, message, "signature is not the sender's")
        return False
    return True


def _receive_balance_proof(step: Step, sender: Address, message: BalanceProofMessage) -> None:
    key = (message.token_network, sender)
    channel = step.channels.get(key)
    if channel is None:
        step.invalid(sender, message, "no channel with the sender")
        return
    if message.generation == channel.generation:
        if message.nonce <= channel.partner.nonce:
            return  # a duplicate of a proof we applied: the transport repeated it
        if message.nonce > channel.partner.nonce + 1:
            early = step.early.setdefault(key, {})
            if len(early) < MAX_EARLY_MESSAGES:
                early[message.nonce] = message
            return
    _apply(step, sender, channel, message)
    early = step.early.get(key, {})
    while early:
        channel = step.channels[key]
        following = early.pop(Nonce(channel.partner.nonce + 1), None)
        if following is None:
            break
        _apply(step, sender, channel, following)
    if early:
        # Anything at or below the applied nonce can never apply now.
        for nonce in [n for n in early if n <= step.channels[key].partner.nonce]:
            del early[nonce]


def _apply(
    step: Step, sender: Address, channel: ChannelState, message: BalanceProofMessage
) -> None:
    registered_in_time = False
    if isinstance(message, LockExpired):
        lock = channel.partner.lock_for(message.secrethash)
        registered_in_time = lock is not None and step.registered_in_time(
            message.secrethash, lock.expiration
        )
    updated = channel_rules.receive(channel, message, step.now, registered_in_time)
    if isinstance(updated, Rejected):
        step.invalid(sender, message, updated.reason)
        return
    network = message.token_network
    step.channels[(network, sender)] = updated
    match message:
        case DirectTransfer():
            outside = not offline.accepts_value(step, network, sender, None)
            step.effects.append(
                EventPaymentReceived(
                    network, message.payment_id, sender, message.amount, sender, outside
                )
            )
        case TransferBatch():
            # One proof, several payments: each is received as if it had come alone.
            outside = not offline.accepts_value(step, network, sender, None)
            for entry in message.payments:
                step.effects.append(
                    EventPaymentReceived(
                        network, entry.payment_id, sender, entry.amount, sender, outside
                    )
                )
        case LockedTransfer():
            if message.target == step.address:
                target.on_lock(step, sender, message)
            else:
                mediator.on_lock(step, sender, message)
        case LockReturn():
            _on_lock_return(step, sender, message)
        case Unlock():
            lock_key: LockKey = (network, sender, secrethash_of(message.secret))
            # If we had given this lock back, its mirror is owed now: pay it back.
            repaid = _repay_mirror(step, network, sender, message)
            if lock_key in step.mediators:
                mediator.on_paid(step, lock_key, step.mediators[lock_key], repaid)
                mediator.settle_if_done(step, lock_key)
            elif lock_key in step.targets:
                if not repaid:
                    target.on_paid(step, lock_key)
                target.forget_if_done(step, lock_key)
        case LockExpired():
            # The payer removed an original: our mirror of it, if any, can go now too.
            _expire_our_locks(step, network, sender, updated)
            lock_key = (network, sender, message.secrethash)
            mediator.settle_if_done(step, lock_key)
            target.forget_if_done(step, lock_key)
        case _:
            assert_never(message)


def _repay_mirror(step: Step, network: Address, partner: Address, unlock: Unlock) -> bool:
    secrethash = secrethash_of(unlock.secret)
    channel = step.channels[(network, partner)]
    mirror = channel.our.lock_for(secrethash)
    if mirror is None or secrethash not in channel.our.mirrors:
        return False
    made = channel_rules.make_unlock(channel, step.key, unlock.secret, unlock.payment_id)
    if isinstance(made, Rejected):
        return False
    step.channels[(network, partner)], message = made
    step.send(partner, message)
    return True


def _unlock_registered_pairs(step: Step, secret: Secret, secrethash: SecretHash) -> None:
    """Pay the originals of returned pairs whose secret was registered in time: on chain
    both halves would pay, so off chain the original goes first and the mirror follows."""
    for (network, partner), channel in list(step.channels.items()):
        if channel.phase is not ChannelPhase.OPENED:
            continue
        lock = channel.our.lock_for(secrethash)
        if (
            lock is None
            or secrethash in channel.our.mirrors
            or channel.partner.lock_for(secrethash) != lock
            or not step.registered_in_time(secrethash, lock.expiration)
        ):
            continue
        made = channel_rules.make_unlock(
            channel, step.key, secret, _payment_id_of(step, secrethash), pair_registered=True
        )
        if isinstance(made, Rejected):
            continue
        step.channels[(network, partner)], message = made
        step.send(partner, message)


def _payment_id_of(step: Step, secrethash: SecretHash) -> int:
    for payment in step.initiators.values():
        if payment.secrethash == secrethash:
            return payment.payment_id
    for record in step.mediators.values():
        if record.secrethash == secrethash:
            return record.payment_id
    return 0


def _on_lock_return(step: Step, payee: Address, message: LockReturn) -> None:
    payment = step.initiators.get(message.payment_id)
    if payment is not None and payment.secrethash == message.secrethash:
        initiator.on_lock_return(step, payment, payee, message)
        return
    for key, record in list(step.mediators.items()):
        if (
            record.payee == payee
            and record.secrethash == message.secrethash
            and record.token_network == message.token_network
        ):
            mediator.on_lock_return(step, key, record, message)
            return


def _on_payment_secret(step: Step, sender: Address, message: PaymentSecret) -> None:
    secret = None if message.secret == NO_SECRET else message.secret
    step.announcements[message.payment_id] = Announcement(
        sender, message.token_network, message.amount, secret, step.now
    )
    for key, record in list(step.targets.items()):
        if record.payment_id == message.payment_id:
            target.try_claim(step, key)


def _on_secret_reveal(step: Step, sender: Address, message: SecretReveal) -> None:
    secret = message.secret
    secrethash = secrethash_of(secret)
    network = message.token_network
    channel = step.channels.get((network, sender))
    our_lock = None if channel is None else channel.our.lock_for(secrethash)
    if our_lock is None:
        # Not a payee of ours: the initiator answering our SecretRequest, or stale.
        target.on_secret_from_initiator(step, secret)
        return
    step.secrets[secrethash] = secret
    for payment in step.initiators.values():
        if payment.secrethash == secrethash and payment.token_network == network:
            initiator.on_secret_from_payee(step, payment, sender, secret)
            return
    for key, record in list(step.mediators.items()):
        if record.secrethash == secrethash and record.payee == sender:
            mediator.on_secret(step, key, record, secret, from_chain=False)


# --- time ---------------------------------------------------------------------------------


def _tick(step: Step) -> None:
    cosigning.on_tick(step)
    for payment in list(step.initiators.values()):
        initiator.on_tick(step, payment)
    for key, channel in list(step.channels.items()):
        if channel.phase is ChannelPhase.OPENED:
            _expire_our_locks(step, key[0], key[1], channel)
        _claim_deadlines(step, channel)
    for lock_key in list(step.mediators):
        mediator.settle_if_done(step, lock_key)
    for lock_key in list(step.targets):
        target.forget_if_done(step, lock_key)
    _forget_finished_payments(step)
    _forget_spent_secrets(step)


def _forget_spent_secrets(step: Step) -> None:
    """A long-running node must not keep every secret it ever saw: once no lock and no
    payment record refers to a secrethash, its secret and registration are of no more
    use; an announcement no lock followed goes once any lock for it would have expired."""
    live: set[SecretHash] = set(step.invoices)
    for channel in step.channels.values():
        live.update(lock.secrethash for lock in channel.our.locks)
        live.update(lock.secrethash for lock in channel.partner.locks)
    live.update(payment.secrethash for payment in step.initiators.values())
    live.update(key[2] for key in step.mediators)
    live.update(key[2] for key in step.targets)
    for secrethash in [h for h in step.secrets if h not in live]:
        del step.secrets[secrethash]
    for secrethash in [h for h in step.registered if h not in live]:
        del step.registered[secrethash]
    settings = step.settings
    horizon = step.now - settings.lock_timeout - settings.clock_tolerance
    if step.announcements:
        awaited = {record.payment_id for record in step.targets.values()}
        for payment_id, announcement in list(step.announcements.items()):
            if announcement.received_at < horizon and payment_id not in awaited:
                del step.announcements[payment_id]


def _expire_our_locks(
    step: Step, network: Address, partner: Address, channel: ChannelState
) -> None:
    # The partner accepts a LockExpired only once its clock passed the expiration; the
    # tolerance covers a partner clock behind ours.
    deadline = step.now - step.settings.clock_tolerance
    for lock in channel.our.locks:
        if lock.expiration >= deadline:
            continue
        if step.registered_in_time(lock.secrethash, lock.expiration):
            continue  # the payee can claim it on chain: it is not ours to take back
        current = step.channels[(network, partner)]
        made = channel_rules.make_lock_expired(current, step.key, lock.secrethash, step.now)
        if isinstance(made, Rejected):
            continue
        step.channels[(network, partner)], message = made
        step.send(partner, message)


def _claim_deadlines(step: Step, channel: ChannelState) -> None:
    """Register secrets of the partner's locks that it has not unlocked in time."""
    for lock in channel.partner.locks:
        secrethash = lock.secrethash
        secret = step.secrets.get(secrethash)
        if secret is None or secrethash in step.registered or secrethash in step.registering:
            continue
        if channel.our.lock_for(secrethash) == lock:
            continue  # a returned pair pays both ways: nothing to claim
        if step.now > lock.expiration:
            continue  # too late: a registration now would not count
        if lock.expiration - step.now <= channel.reveal_timeout:
            step.registering.add(secrethash)
            step.effects.append(ContractSendSecretRegister(secret, lock.expiration))


def _forget_finished_payments(step: Step) -> None:
    for payment_id, payment in list(step.initiators.items()):
        if payment.status is InitiatorStatus.PENDING:
            continue
        if not _has_pending_lock(step, payment):
            del step.initiators[payment_id]


def _has_pending_lock(step: Step, payment: InitiatorState) -> bool:
    for hop in payment.hops:
        channel = step.channels.get((payment.token_network, hop))
        if channel is not None and channel.our.lock_for(payment.secrethash) is not None:
            return True
    return False


# --- chain --------------------------------------------------------------------------------


def _opened(step: Step, event: ChainChannelOpened) -> None:
    key = (event.token_network, event.partner)
    existing = step.channels.get(key)
    if existing is not None and existing.generation >= event.generation:
        return
    step.channels[key] = ChannelState(
        chain_id=step.state.chain_id,
        token_network=event.token_network,
        generation=event.generation,
        settle_window=event.settle_window,
        reveal_timeout=step.settings.reveal_timeout,
        our=EndState(step.address),
        partner=EndState(event.partner),
    )


def _deposit(step: Step, event: ChainDeposit) -> None:
    key = (event.token_network, event.partner)
    channel = step.channels.get(key)
    if channel is None:
        return
    if event.participant == step.address:
        our = frozen.replace(channel.our, deposit=max(channel.our.deposit, event.total))
        step.channels[key] = frozen.replace(channel, our=our)
    elif event.participant == event.partner:
        partner = frozen.replace(channel.partner, deposit=max(channel.partner.deposit, event.total))
        step.channels[key] = frozen.replace(channel, partner=partner)


def _closed(step: Step, event: ChainChannelClosed) -> None:
    key = (event.token_network, event.partner)
    channel = step.channels.get(key)
    if channel is None or channel.phase is not ChannelPhase.OPENED:
        return
    step.channels[key] = frozen.replace(channel, phase=ChannelPhase.CLOSED)
    proof = _partner_proof(channel)
    if event.closer == event.partner and proof is not None:
        step.effects.append(ContractSendUpdate(event.token_network, event.partner, proof))


def _settled(step: Step, event: ChainChannelSettled) -> None:
    key = (event.token_network, event.partner)
    channel = step.channels.get(key)
    if channel is None or channel.phase is ChannelPhase.SETTLED:
        return
    step.channels[key] = frozen.replace(channel, phase=ChannelPhase.SETTLED)
    locks = channel.partner.locks
    if any(step.registered_in_time(lock.secrethash, lock.expiration) for lock in locks):
        # The contract finds what settle kept back by hashing ALL the pending locks (the
        # locksroot), then pays the registered ones and returns the rest: send them all.
        step.effects.append(ContractSendUnlock(event.token_network, event.partner, locks))
    ours = channel.our.locks
    if ours and not any(step.registered_in_time(lock.secrethash, lock.expiration) for lock in ours):
        step.effects.append(ContractSendUnlock(event.token_network, event.partner, ours, ours=True))


def _registered(step: Step, event: ChainSecretRegistered) -> None:
    secrethash: SecretHash = event.secrethash
    if secrethash_of(event.secret) != secrethash:
        raise ValueError("ChainSecretRegistered: secrethash is not sha256(secret)")
    if secrethash in step.registered:
        return
    step.registered[secrethash] = Timestamp(event.registered_at)
    step.registering.discard(secrethash)
    step.secrets[secrethash] = event.secret
    for payment in list(step.initiators.values()):
        if payment.secrethash == secrethash and step.registered_in_time(
            secrethash, payment.expiration
        ):
            initiator.on_registered(step, payment, event.secret)
    for key, record in list(step.mediators.items()):
        if record.secrethash == secrethash:
            mediator.on_secret(step, key, record, event.secret, from_chain=True)
    _unlock_registered_pairs(step, event.secret, secrethash)
