"""The mediator's side of a payment: forward a lock for a fee, pass back what comes back.

Belongs here: what a mediator does with a lock for someone else (`on_lock`: forward
towards the target or give it back at once with a reason), with a `LockReturn` from its
payee (try another next hop, else pass the return upstream naming the failed hop), with
the secret from its payee (unlock the payee, reveal to the payer), and when both locks
are resolved (`EventMediated` with the fee kept).

Offline (docs/offline.md, O-1): while the node does not see the chain it forwards only
while `offline_min_lead` is left before both the incoming channel's update horizon and
the lock's registration deadline; otherwise it gives the lock back (`OFFLINE_WINDOW`).

Safety (docs/spec.md §11): every hop uses the payment's one expiration `E`. A mediator
forwards only while `E - now > reveal_timeout + hop_margin` on both channels: it can
then still register the secret on chain before `E` if its payer does not unlock, and the
hops after it have `hop_margin` to pass the lock on. It forwards exactly what the
cheapest route from it needs to deliver `target_amount`, and only when what it received
covers that plus its own fee (`fees.mediation_fee`, never negative): an honest mediator
ends with its fee or, when the payment fails, with nothing lost.

Does not belong here: channel rules (`channel`), the shared moves (`step`).
"""

from __future__ import annotations

from collections.abc import Iterator

from offchain.protocol import frozen, offline
from offchain.protocol.channel import ChannelState, spendable
from offchain.protocol.fees import ChannelBalance, mediation_fee
from offchain.protocol.locks import Lock
from offchain.protocol.messages import LockedTransfer, LockReturn, ReturnReason
from offchain.protocol.routes import NoRouteReason, find_routes
from offchain.protocol.state import LockKey, MediatorState, MediatorStatus
from offchain.protocol.step import Step
from offchain.protocol.transitions import EventMediated
from offchain.protocol.types import Address, Secret, TokenAmount

_RETURN_REASONS = {
    NoRouteReason.NO_ROUTE: ReturnReason.NO_ROUTE,
    NoRouteReason.CAPACITY: ReturnReason.CAPACITY,
    NoRouteReason.FEE_TOO_HIGH: ReturnReason.FEE_TOO_HIGH,
}


def on_lock(step: Step, payer: Address, message: LockedTransfer) -> None:
    """A lock for someone else arrived (already applied to the channel): forward or return."""
    key: LockKey = (message.token_network, payer, message.secrethash)
    record = MediatorState(
        token_network=message.token_network,
        payer=payer,
        secrethash=message.secrethash,
        payment_id=message.payment_id,
        target=message.target,
        target_amount=message.target_amount,
        incoming=message.amount,
        expiration=message.expiration,
        status=MediatorStatus.FORWARDED,
    )
    _forward_or_return(step, key, record, ReturnReason.NO_ROUTE, step.address)


def _forward_or_return(
    step: Step,
    key: LockKey,
    record: MediatorState,
    fallback: ReturnReason,
    failed_hop: Address,
) -> None:
    result = _forward(step, record)
    if isinstance(result, MediatorState):
        step.mediators[key] = result
        return
    if result is None or (record.tried and result is ReturnReason.NO_ROUTE):
        # No other way on after a return: the downstream hop's reason is the precise one.
        reason, hop = fallback, failed_hop
    else:
        reason, hop = result, step.address
    returned = step.give_back(
        record.token_network, record.payer, record.secrethash, record.payment_id, reason, hop
    )
    status = MediatorStatus.RETURNED if returned else MediatorStatus.STUCK
    step.mediators[key] = frozen.replace(record, status=status, payee=None)


def _forward(step: Step, record: MediatorState) -> MediatorState | ReturnReason | None:
    """Lock towards the next hop; the reason we cannot; None if only tried hops remain."""
    settings = step.settings
    network, target = record.token_network, record.target
    incoming = step.channels.get((network, record.payer))
    if incoming is None:
        return ReturnReason.REJECTED
    if target in step.unreachable:
        return ReturnReason.TARGET_OFFLINE
    margin = settings.hop_margin
    if record.expiration - step.now <= incoming.reveal_timeout + margin:
        return ReturnReason.EXPIRY_TOO_SOON
    if not offline.accepts_value(step, network, record.payer, record.expiration):
        # Blind, and too close to the deadline by which we must reach the chain: a lock
        # we forwarded would have to be claimed (or our payer's proof defended) on chain.
        return ReturnReason.OFFLINE_WINDOW
    excluded = {record.payer, *record.tried, *step.unreachable}
    reason = ReturnReason.NO_ROUTE
    searched: list[ReturnReason] = []

    def candidates() -> Iterator[tuple[Address, TokenAmount]]:
        # The target itself first: when it is our partner no route search is needed.
        if target not in excluded and step.open_channel(network, target) is not None:
            yield target, record.target_amount
        graph = step.graphs.get(network)
        if graph is None or step.address not in graph.index:
            return
        found = find_routes(
            graph,
            step.address,
            target,
            record.target_amount,
            k=3,
            exclude_nodes=excluded - {target},
            exclude_edges=[(step.address, hop) for hop in excluded],
        )
        if found.reason is not None:
            searched.append(_RETURN_REASONS[found.reason])
        for route in found.routes:
            yield route.nodes[1], route.amount

    untried_left = False
    for hop, amount in candidates():
        if hop in excluded:
            continue
        untried_left = True
        outgoing = step.open_channel(network, hop)
        if outgoing is None:
            continue
        if record.expiration - step.now <= outgoing.reveal_timeout + margin:
            reason = ReturnReason.EXPIRY_TOO_SOON
            continue
        fee = _fee(step, incoming, outgoing, amount, record.incoming)
        if fee is None:
            reason = ReturnReason.CAPACITY
            continue
        if record.incoming < amount + fee:
            reason = ReturnReason.FEE_TOO_HIGH
            continue
        lock = Lock(record.expiration, amount, record.secrethash)
        problem = step.lock(network, hop, lock, record.payment_id, target, record.target_amount)
        if problem is not None:
            reason = ReturnReason.CAPACITY
            continue
        return frozen.replace(record, status=MediatorStatus.FORWARDED, payee=hop, outgoing=amount)
    if not untried_left and record.tried:
        return None
    if searched and reason is ReturnReason.NO_ROUTE:
        reason = searched[0]
    return reason


def _fee(
    step: Step,
    incoming: ChannelState,
    outgoing: ChannelState,
    amount: int,
    received: int,
) -> int | None:
    schedule = step.settings.fees
    # Balances as they were before the payer's lock: the fee is priced on the move.
    balance_in = ChannelBalance(
        own=spendable(incoming.our, incoming.partner),
        partner=TokenAmount(spendable(incoming.partner, incoming.our) + received),
    )
    balance_out = ChannelBalance(
        own=spendable(outgoing.our, outgoing.partner),
        partner=spendable(outgoing.partner, outgoing.our),
    )
    return mediation_fee(schedule, schedule, amount, balance_in, balance_out)


def on_lock_return(step: Step, key: LockKey, record: MediatorState, message: LockReturn) -> None:
    """Our payee gave our lock back: try another next hop, else pass it upstream."""
    if record.status is not MediatorStatus.FORWARDED or record.payee is None:
        return
    record = frozen.replace(record, tried=record.tried | {record.payee}, payee=None)
    if message.reason in (ReturnReason.TARGET_OFFLINE, ReturnReason.EXPIRY_TOO_SOON):
        # No other route changes these: pass them on at once.
        _give_back_upstream(step, key, record, message.reason, message.failed_hop)
        return
    _forward_or_return(step, key, record, message.reason, message.failed_hop)


def _give_back_upstream(
    step: Step, key: LockKey, record: MediatorState, reason: ReturnReason, failed_hop: Address
) -> None:
    returned = step.give_back(
        record.token_network, record.payer, record.secrethash, record.payment_id, reason, failed_hop
    )
    status = MediatorStatus.RETURNED if returned else MediatorStatus.STUCK
    step.mediators[key] = frozen.replace(record, status=status)


def on_secret(
    step: Step, key: LockKey, record: MediatorState, secret: Secret, from_chain: bool
) -> None:
    """We learned the secret (from our payee, or the chain): pay downstream, claim upstream."""
    if record.payee is not None and not record.paid_out:
        lock = _our_lock(step, record)
        claimable = lock is not None and (
            step.now <= lock.expiration
            or step.registered_in_time(record.secrethash, lock.expiration)
        )
        if claimable and step.unlock(record.token_network, record.payee, secret, record.payment_id):
            record = frozen.replace(record, paid_out=True)
    if not record.revealed and not from_chain and record.status is MediatorStatus.FORWARDED:
        step.reveal(record.token_network, record.payer, secret)
        record = frozen.replace(record, revealed=True)
    step.mediators[key] = record


def _our_lock(step: Step, record: MediatorState) -> Lock | None:
    if record.payee is None:
        return None
    channel = step.channels.get((record.token_network, record.payee))
    return None if channel is None else channel.our.lock_for(record.secrethash)


def on_paid(step: Step, key: LockKey, record: MediatorState, repaid: bool) -> None:
    """The payer unlocked its lock to us (`repaid`: we had returned it and paid it back)."""
    step.mediators[key] = frozen.replace(record, paid_in=True, repaid=repaid)


def settle_if_done(step: Step, key: LockKey) -> None:
    """Forget the payment once neither of its locks is pending; report the fee kept."""
    record = step.mediators.get(key)
    if record is None:
        return
    incoming = step.channels.get((record.token_network, record.payer))
    if incoming is not None and incoming.partner.lock_for(record.secrethash) is not None:
        return
    if _our_lock(step, record) is not None:
        return
    del step.mediators[key]
    fee = (
        (record.incoming if record.paid_in else 0)
        - (record.outgoing if record.paid_out else 0)
        - (record.incoming if record.repaid else 0)
    )
    step.effects.append(EventMediated(record.payment_id, record.payer, record.payee, fee))
