"""The node's side of the flows both partners sign: withdraw and cooperative settle.

Belongs here: turning `ActionWithdraw` / `ActionCoopSettle` into signed requests, answering
the partner's requests, and turning a complete pair of signatures into the transaction
effect (`ContractSendWithdraw`, `ContractSendCoopSettle`); expiring our unused withdraw
requests on `Tick`. The rules themselves (what may be withdrawn, which totals a
cooperative settle must carry) are `cooperative`'s.

While our offer stands (`NodeState.coop_offers`) and once both have signed a cooperative
settle (`NodeState.settling`), we make no new payment in the channel until the offer
expires: the signed totals are the balances of that moment. A partner that will not sign
says why (`CoopSettleRefused`); our offer is then dropped and we may pay again. A partner
offer is co-signed even while we are settling, if its totals are those we already stand
by (two offers that crossed, or one repeated after a lost answer).

Does not belong here: channel rules (`cooperative`, `channel`), other messages (`node`).
"""

from __future__ import annotations

from offchain.protocol import cooperative, frozen
from offchain.protocol.channel import NO_TIME, ChannelPhase, EndState, Rejected
from offchain.protocol.messages import (
    CoopSettleRefused,
    CoopSettleRequest,
    CoopSettleResponse,
    WithdrawConfirmation,
    WithdrawExpired,
    WithdrawRequest,
)
from offchain.protocol.step import Step
from offchain.protocol.transitions import (
    ActionCoopSettle,
    ActionWithdraw,
    ChainWithdraw,
    ContractSendCoopSettle,
    ContractSendWithdraw,
    EventCoopSettleRefused,
)
from offchain.protocol.types import Address, Timestamp, TokenAmount

CosignedMessage = (
    WithdrawRequest
    | WithdrawConfirmation
    | WithdrawExpired
    | CoopSettleRequest
    | CoopSettleResponse
    | CoopSettleRefused
)


def withdraw(step: Step, action: ActionWithdraw) -> Rejected | None:
    """Ask the partner to co-sign our new total withdraw."""
    key = (action.token_network, action.partner)
    channel = step.open_channel(*key)
    if channel is None:
        return Rejected("no open channel")
    made = cooperative.request_withdraw(channel, step.key, action.total_withdraw, action.expiration)
    if isinstance(made, Rejected):
        return made
    step.channels[key], request = made
    step.withdraws[key] = request
    step.send(action.partner, request)
    return None


def coop_settle(step: Step, action: ActionCoopSettle) -> Rejected | None:
    """Offer the partner a cooperative settle at today's balances."""
    key = (action.token_network, action.partner)
    if step.settling_now(*key):
        return Rejected("a cooperative settle is under way")
    channel = step.open_channel(*key)
    if channel is None:
        return Rejected("no open channel")
    made = cooperative.request_coop_settle(channel, step.key, action.expiration)
    if isinstance(made, Rejected):
        return made
    step.coop_offers[key] = made  # no new payments while the offer stands
    step.send(action.partner, made)
    return None


def receive(step: Step, sender: Address, message: CosignedMessage) -> None:
    key = (message.token_network, sender)
    channel = step.channels.get(key)
    if channel is None:
        step.invalid(sender, message, "no channel with the sender")
        return
    match message:
        case WithdrawRequest():
            partner = channel.partner
            if (partner.withdraw_pending, partner.withdraw_expiration) == (
                message.total_withdraw,
                message.expiration,
            ) and partner.withdraw_pending > partner.withdrawn:
                # A repeated request: the same answer again.
                step.send(sender, cooperative.confirm_withdraw(channel, step.key, message))
                return
            if message.expiration <= step.now or message.total_withdraw <= partner.withdrawn:
                return  # stale (late, or already on chain): nothing to sign, nothing wrong
            made = cooperative.receive_withdraw_request(channel, step.key, message, step.now)
            if isinstance(made, Rejected):
                step.invalid(sender, message, made.reason)
                return
            step.channels[key], confirmation = made
            step.send(sender, confirmation)
        case WithdrawConfirmation():
            request = step.withdraws.get(key)
            if (
                request is None
                or key in step.withdraws_signed
                or (message.total_withdraw, message.expiration)
                != (request.total_withdraw, request.expiration)
            ):
                return  # late or repeated: the request expired, landed or is signed already
            signed = cooperative.receive_withdraw_confirmation(channel, request, message)
            if isinstance(signed, Rejected):
                step.invalid(sender, message, signed.reason)
                return
            step.withdraws_signed.add(key)
            step.effects.append(ContractSendWithdraw(message.token_network, sender, signed))
        case WithdrawExpired():
            partner = channel.partner
            if (partner.withdraw_pending, partner.withdraw_expiration) != (
                message.total_withdraw,
                message.expiration,
            ) or partner.withdraw_pending <= partner.withdrawn:
                return  # not what we reserved (its request came late, or an older one)
            updated = cooperative.receive_withdraw_expired(channel, message, step.now)
            if isinstance(updated, Rejected):
                step.invalid(sender, message, updated.reason)
                return
            step.channels[key] = updated
        case CoopSettleRequest():
            # No `open_channel` here: while we are settling, our balances are the totals
            # we signed, so an offer of those same totals (crossed with ours, or repeated)
            # is signed again, and any other is refused by the totals check.
            response = cooperative.receive_coop_settle_request(channel, step.key, message, step.now)
            if isinstance(response, Rejected):
                step.invalid(sender, message, response.reason)
                return
            if isinstance(response, CoopSettleResponse):
                _settling_until(step, key, message.expiration)
            # A refusal is an answer, not the partner's fault: a payment may have crossed.
            step.send(sender, response)
        case CoopSettleResponse():
            offer = step.coop_offers.get(key)
            if offer is None:
                step.invalid(sender, message, "no cooperative settle offer of ours")
                return
            settled = cooperative.receive_coop_settle_response(channel, offer, message)
            if isinstance(settled, Rejected):
                step.invalid(sender, message, settled.reason)
                return
            del step.coop_offers[key]
            # Both signed: the balances stay fixed until the offer expires.
            _settling_until(step, key, offer.expiration)
            step.effects.append(ContractSendCoopSettle(message.token_network, sender, settled))
        case CoopSettleRefused():
            offer = step.coop_offers.get(key)
            if offer is None:
                return  # late or repeated: the offer was answered, refused or has lapsed
            refusal = cooperative.receive_coop_settle_refused(channel, offer, message)
            if isinstance(refusal, Rejected):
                if refusal.reason != "refusal of another offer":
                    step.invalid(sender, message, refusal.reason)
                return  # a refusal of an earlier offer of ours: not this one's answer
            # Paying again is safe for us: the partner still holds our signature until the
            # offer expires, but a settle at those totals would only cost it what we pay.
            del step.coop_offers[key]
            step.effects.append(
                EventCoopSettleRefused(
                    message.token_network, sender, cooperative.REFUSAL_TEXT[refusal]
                )
            )


def _settling_until(step: Step, key: tuple[Address, Address], expiration: Timestamp) -> None:
    """Both signed a settle valid until `expiration`: keep the balances fixed until then
    (or until a later one we also signed expires)."""
    step.settling[key] = max(step.settling.get(key, expiration), expiration)


def on_tick(step: Step) -> None:
    """Release our withdraws that expired without reaching the chain, and lapsed offers.

    A withdraw both signed stays reserved until it lands (`ChainWithdraw`) or expires: the
    contract refuses it after its expiration, so then the reservation can go.
    """
    for key, request in list(step.withdraws.items()):
        channel = step.channels.get(key)
        # Released only once the partner's clock, too, is past the expiration: its copy of
        # our end stops counting the reservation then (`channel.spendable`).
        if channel is None or step.now <= request.expiration + step.settings.clock_tolerance:
            continue
        del step.withdraws[key]
        step.withdraws_signed.discard(key)
        if channel.phase is not ChannelPhase.OPENED:
            continue  # nothing is spent in a closed channel: both views keep it as it was
        made = cooperative.expire_withdraw(channel, step.key, step.now)
        if isinstance(made, Rejected):
            continue
        step.channels[key], expired = made
        step.send(key[1], expired)
    for key, until in list(step.settling.items()):
        if step.now > until:
            del step.settling[key]
    for key, offer in list(step.coop_offers.items()):
        if step.now > offer.expiration:
            del step.coop_offers[key]


def on_chain_withdraw(step: Step, event: ChainWithdraw) -> None:
    key = (event.token_network, event.partner)
    channel = step.channels.get(key)
    if channel is None:
        return
    if event.participant == step.address:
        request = step.withdraws.get(key)
        if request is not None and event.total >= request.total_withdraw:
            del step.withdraws[key]  # landed: nothing left to expire
            step.withdraws_signed.discard(key)
        step.channels[key] = frozen.replace(channel, our=_landed(channel.our, event.total))
    elif event.participant == event.partner:
        step.channels[key] = frozen.replace(channel, partner=_landed(channel.partner, event.total))


def _landed(end: EndState, total: TokenAmount) -> EndState:
    withdrawn = TokenAmount(max(end.withdrawn, total))
    if end.withdraw_pending > withdrawn:
        return frozen.replace(end, withdrawn=withdrawn)
    # Nothing pending any more: both views drop the request the same way.
    return frozen.replace(
        end, withdrawn=withdrawn, withdraw_pending=withdrawn, withdraw_expiration=NO_TIME
    )
