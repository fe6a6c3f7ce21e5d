"""The initiator's side of a mediated payment: choose a route, lock, retry, finish.

Belongs here: starting a payment (`start`), what a `LockReturn` from our first hop does
(retry through another route or fail with the hop's reason), paying the first hop once
it proves the target has the secret (`on_secret_from_payee`), answering the target's
`SecretRequest`, and ending payments whose lock expired. Every payment ends in
`SUCCEEDED` or `FAILED` with a `FailureReason` (and the failed hop when one is known).

Retrying with the same secrethash is safe only because a retry follows a `LockReturn`:
the returned lock and its mirror pay each other in every outcome, so the earlier attempt
can never be claimed on top of the new one. A first hop that goes silent is never
retried around; its lock waits for its expiration.

Does not belong here: channel rules (`channel`), the moves shared by roles (`step`).
"""

from __future__ import annotations

from collections.abc import Iterator

from offchain.protocol import frozen
from offchain.protocol.channel import spendable
from offchain.protocol.locks import Lock
from offchain.protocol.messages import LockReturn, ReturnReason, SecretRequest
from offchain.protocol.routes import NoRouteReason, find_routes
from offchain.protocol.state import InitiatorState, InitiatorStatus, return_to_failure
from offchain.protocol.step import Step
from offchain.protocol.transitions import (
    ActionPay,
    EventPaymentFailed,
    EventPaymentSucceeded,
    FailureReason,
)
from offchain.protocol.types import Address, Secret, Timestamp, TokenAmount

_NO_ROUTE_REASONS = {
    NoRouteReason.NO_ROUTE: FailureReason.NO_ROUTE,
    NoRouteReason.CAPACITY: FailureReason.CAPACITY,
    NoRouteReason.FEE_TOO_HIGH: FailureReason.FEE_TOO_HIGH,
}


def start(step: Step, action: ActionPay) -> None:
    """Begin a payment; fails at once (with a reason) when no first lock can be made."""
    expiration = Timestamp(action.now + step.settings.lock_timeout)
    payment = InitiatorState(
        payment_id=action.payment_id,
        token_network=action.token_network,
        target=action.target,
        amount=action.amount,
        secrethash=action.secrethash,
        secret=action.secret,
        expiration=expiration,
        max_fee=action.max_fee,
        reveal_early=action.reveal_early,
    )
    if action.target in step.unreachable:
        _fail(step, payment, FailureReason.TARGET_OFFLINE, action.target)
        return
    if not _attempt(step, payment, None):
        return
    if action.secret is not None or not action.reveal_early:
        step.announce(
            step.initiators[action.payment_id], action.secret if action.reveal_early else None
        )


def _attempt(step: Step, payment: InitiatorState, previous: FailureReason | None) -> bool:
    """Lock towards the best untried first hop; on failure end the payment. True if locked."""
    reason = _try_routes(step, payment)
    if isinstance(reason, InitiatorState):
        step.initiators[payment.payment_id] = reason
        return True
    # After a return, the hop's own reason is more telling than "no other route".
    final = previous if previous is not None and reason is FailureReason.NO_ROUTE else reason
    _fail(step, payment, final, payment.failed_hop)
    return False


def _try_routes(step: Step, payment: InitiatorState) -> InitiatorState | FailureReason:
    me, target, network = step.address, payment.target, payment.token_network
    reason = FailureReason.NO_ROUTE
    searched: list[FailureReason] = []

    def candidates() -> Iterator[tuple[Address, TokenAmount]]:
        # Paying a partner needs no route search.
        if target not in payment.hops and step.open_channel(network, target) is not None:
            yield target, payment.amount
        graph = step.graphs.get(network)
        if graph is None:
            return
        found = find_routes(
            graph,
            me,
            target,
            payment.amount,
            k=3,
            exclude_nodes=payment.failed_nodes | step.unreachable,
            exclude_edges=[(me, hop) for hop in payment.hops],
            max_fee=payment.max_fee,
        )
        if found.reason is not None:
            searched.append(_NO_ROUTE_REASONS[found.reason])
        for route in found.routes:
            yield route.nodes[1], route.amount

    for hop, amount in candidates():
        if hop in payment.hops or hop in step.unreachable:
            continue
        channel = step.open_channel(network, hop)
        if channel is None:
            continue
        if amount > spendable(channel.our, channel.partner):
            reason = FailureReason.CAPACITY
            continue
        lock = Lock(payment.expiration, amount, payment.secrethash)
        problem = step.lock(network, hop, lock, payment.payment_id, target, payment.amount)
        if problem is None:
            return frozen.replace(payment, hops=(*payment.hops, hop), sent=amount)
        reason = FailureReason.CAPACITY
    if searched and reason is FailureReason.NO_ROUTE:
        reason = searched[0]
    return reason


def _fail(
    step: Step, payment: InitiatorState, reason: FailureReason, failed_hop: Address | None
) -> None:
    step.initiators[payment.payment_id] = frozen.replace(
        payment, status=InitiatorStatus.FAILED, reason=reason, failed_hop=failed_hop
    )
    step.effects.append(EventPaymentFailed(payment.payment_id, reason, failed_hop))


def on_lock_return(
    step: Step, payment: InitiatorState, sender: Address, message: LockReturn
) -> None:
    """Our current first hop gave the lock back: retry elsewhere or fail with its reason."""
    if payment.status is not InitiatorStatus.PENDING or not payment.hops:
        return
    if sender != payment.hops[-1]:
        return
    reason = return_to_failure(message.reason)
    failed = message.failed_hop
    payment = frozen.replace(
        payment, failed_hop=failed, failed_nodes=payment.failed_nodes | {failed} - {payment.target}
    )
    gives_up = (
        failed == payment.target
        or message.reason is ReturnReason.TARGET_OFFLINE
        or message.reason is ReturnReason.EXPIRY_TOO_SOON
        or len(payment.hops) >= step.settings.max_attempts
        or payment.expiration - step.now <= _min_time_left(step)
    )
    if gives_up:
        _fail(step, payment, reason, failed)
        return
    _attempt(step, payment, reason)


def _min_time_left(step: Step) -> int:
    return step.settings.reveal_timeout + step.settings.hop_margin


def on_secret_from_payee(
    step: Step, payment: InitiatorState, payee: Address, secret: Secret
) -> None:
    """The payee proved the target has the secret: pay it (unlock) and succeed."""
    if not step.unlock(payment.token_network, payee, secret, payment.payment_id):
        return
    if payment.status is InitiatorStatus.PENDING:
        _succeed(step, payment, secret)


def _succeed(step: Step, payment: InitiatorState, secret: Secret) -> None:
    step.initiators[payment.payment_id] = frozen.replace(
        payment, status=InitiatorStatus.SUCCEEDED, reason=None, failed_hop=None
    )
    step.effects.append(
        EventPaymentSucceeded(
            payment.payment_id,
            payment.target,
            payment.amount,
            TokenAmount(payment.sent - payment.amount),
            secret,
        )
    )


def on_secret_request(
    step: Step, payment: InitiatorState, sender: Address, request: SecretRequest
) -> bool:
    """Reveal the secret to the target if its lock is what we sent; False if refused."""
    if (
        payment.status is not InitiatorStatus.PENDING
        or payment.secret is None
        or sender != payment.target
        or request.secrethash != payment.secrethash
        or request.amount < payment.amount
        or request.expiration != payment.expiration
        or payment.expiration - step.now <= step.settings.reveal_timeout
    ):
        return False
    step.reveal(payment.token_network, sender, payment.secret)
    return True


def on_registered(step: Step, payment: InitiatorState, secret: Secret) -> None:
    """The secret is on chain in time: our lock is claimable, so pay it off chain too."""
    if not payment.hops:
        return
    step.unlock(payment.token_network, payment.hops[-1], secret, payment.payment_id)
    if payment.status is InitiatorStatus.PENDING:
        _succeed(step, payment, secret)  # even if the channel closed: the payee claims on chain


def on_tick(step: Step, payment: InitiatorState) -> None:
    """A pending payment whose lock expired unclaimed has failed."""
    if payment.status is not InitiatorStatus.PENDING:
        return
    if step.now <= payment.expiration + step.settings.clock_tolerance:
        return
    if step.registered_in_time(payment.secrethash, payment.expiration):
        return  # claimable on chain: the unlock (or the chain) settles it
    _fail(step, payment, FailureReason.LOCK_EXPIRED, payment.hops[-1] if payment.hops else None)
