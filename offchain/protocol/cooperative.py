"""Withdraw while open and cooperative settle: the two flows both participants sign.

Belongs here: making and checking `WithdrawRequest` / `WithdrawConfirmation` /
`WithdrawExpired` and `CoopSettleRequest` / `CoopSettleResponse` / `CoopSettleRefused`, and
what each does to the channel state. A withdraw reserves its amount from the requester's
spendable balance from the moment it is requested until it is confirmed on chain or
expires; a cooperative settle is offered only with no pending lock in either direction,
for totals that give each participant exactly its balance (the contract pays
`total - withdrawn`).

A withdraw in progress (requested, co-signed, even sent to the chain but not yet seen
there) does not stop a cooperative settle: the final total of a side is
`withdrawn + balance = deposit - T_self + T_other`, in which the withdrawn amount cancels
out, so both views name the same totals whether or not they have seen the withdraw land,
and each side takes exactly its total over the channel's life in every order:
- the withdraw lands first: the settle pays `total - new withdrawn` (the withdraw stays
  within the total, checked here, since its amount was reserved from the balance);
- the settle lands first: the channel is no longer open, so the withdraw reverts, and a
  reopening has a new generation, which its signatures do not name;
- the withdraw never lands (expired): the settle pays `total - withdrawn`.

Does not belong here: sending the transaction (the node turns a confirmed pair of
signatures into a `ContractSend` effect), timers, or any I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from offchain.protocol import frozen, signing
from offchain.protocol.channel import (
    NO_TIME,
    ChannelPhase,
    ChannelState,
    Rejected,
    balance,
    spendable,
)
from offchain.protocol.errors import InvalidSignature
from offchain.protocol.locks import ordered
from offchain.protocol.messages import (
    CoopSettleRefusal,
    CoopSettleRefused,
    CoopSettleRequest,
    CoopSettleResponse,
    WithdrawConfirmation,
    WithdrawExpired,
    WithdrawRequest,
)
from offchain.protocol.signing import PLACEHOLDER_SIGNATURE
from offchain.protocol.types import PrivateKey, Signature, Timestamp, TokenAmount


@dataclass(frozen=True, slots=True)
class SignedWithdraw:
    """A withdraw both participants signed: ready for `set_total_withdraw` on chain."""

    total_withdraw: TokenAmount
    expiration: Timestamp
    participant_signature: Signature
    partner_signature: Signature


@dataclass(frozen=True, slots=True)
class SignedCoopSettle:
    """A cooperative settle both signed: ready for `cooperative_settle` on chain."""

    total_withdraw1: TokenAmount
    total_withdraw2: TokenAmount
    expiration: Timestamp
    our_signature: Signature
    partner_signature: Signature


def _signer(channel: ChannelState, message: object, sender_is_partner: bool) -> object:
    sender, partner = (
        (channel.partner.address, channel.our.address)
        if sender_is_partner
        else (channel.our.address, channel.partner.address)
    )
    try:
        return signing.signer_of(message, channel.chain_id, sender, partner)  # type: ignore[arg-type]
    except InvalidSignature:
        return None


def request_withdraw(
    channel: ChannelState, key: PrivateKey, total_withdraw: TokenAmount, expiration: Timestamp
) -> tuple[ChannelState, WithdrawRequest] | Rejected:
    """Ask the partner to co-sign raising our total withdraw to `total_withdraw`."""
    if channel.phase is not ChannelPhase.OPENED:
        return Rejected("channel not open")
    our = channel.our
    if our.withdraw_pending > our.withdrawn:
        return Rejected("a withdraw is already pending")
    if total_withdraw <= our.withdrawn:
        return Rejected("total withdraw must rise")
    if total_withdraw - our.withdrawn > spendable(our, channel.partner):
        return Rejected("insufficient capacity")
    unsigned = WithdrawRequest(
        channel.token_network,
        channel.generation,
        our.address,
        total_withdraw,
        expiration,
        PLACEHOLDER_SIGNATURE,
    )
    message = signing.sign(key, unsigned, channel.chain_id, our.address, channel.partner.address)
    new_our = frozen.replace(our, withdraw_pending=total_withdraw, withdraw_expiration=expiration)
    return frozen.replace(channel, our=new_our), message


def receive_withdraw_request(
    channel: ChannelState, key: PrivateKey, message: WithdrawRequest, now: Timestamp
) -> tuple[ChannelState, WithdrawConfirmation] | Rejected:
    """Check the partner's request and co-sign it; its amount is reserved on its side."""
    partner = channel.partner
    if message.token_network != channel.token_network:
        return Rejected("wrong token network")
    if message.generation != channel.generation:
        return Rejected("wrong channel generation")
    if channel.phase is not ChannelPhase.OPENED:
        return Rejected("channel not open")
    if message.participant != partner.address:
        return Rejected("withdraw for someone else")
    if message.expiration <= now:
        return Rejected("withdraw already expired")
    if message.total_withdraw <= partner.withdrawn:
        return Rejected("total withdraw must rise")
    if partner.withdraw_pending > partner.withdrawn and now <= partner.withdraw_expiration:
        # An expired one can no longer land (the contract checks the expiration), and
        # withdraws are totals: even if both landed, only the larger would count.
        return Rejected("a withdraw is already pending")
    if message.total_withdraw - partner.withdrawn > spendable(partner, channel.our):
        return Rejected("withdraw exceeds the partner's capacity")
    if _signer(channel, message, sender_is_partner=True) != partner.address:
        return Rejected("invalid withdraw signature")
    confirmation = confirm_withdraw(channel, key, message)
    new_partner = frozen.replace(
        partner, withdraw_pending=message.total_withdraw, withdraw_expiration=message.expiration
    )
    return frozen.replace(channel, partner=new_partner), confirmation


def confirm_withdraw(
    channel: ChannelState, key: PrivateKey, request: WithdrawRequest
) -> WithdrawConfirmation:
    """Our signature of the partner's request (no checks: `receive_withdraw_request` makes
    them; a node also uses this to answer a repeated request it has already accepted)."""
    unsigned = WithdrawConfirmation(
        request.token_network,
        request.generation,
        request.participant,
        request.total_withdraw,
        request.expiration,
        PLACEHOLDER_SIGNATURE,
    )
    # The Withdraw struct names the participant, so our signature covers the same digest
    # whichever of us signs it: sender and partner only name the channel.
    return signing.sign(
        key, unsigned, channel.chain_id, channel.our.address, channel.partner.address
    )


def receive_withdraw_confirmation(
    channel: ChannelState, request: WithdrawRequest, message: WithdrawConfirmation
) -> SignedWithdraw | Rejected:
    """The partner's co-signature of our pending request: both signatures, ready for chain."""
    our = channel.our
    if (
        message.token_network,
        message.generation,
        message.participant,
        message.total_withdraw,
        message.expiration,
    ) != (
        request.token_network,
        request.generation,
        request.participant,
        request.total_withdraw,
        request.expiration,
    ):
        return Rejected("confirmation of another withdraw")
    if our.withdraw_pending != message.total_withdraw:
        return Rejected("no such pending withdraw")
    if _signer(channel, message, sender_is_partner=True) != channel.partner.address:
        return Rejected("invalid withdraw signature")
    return SignedWithdraw(
        message.total_withdraw, message.expiration, request.signature, message.signature
    )


def expire_withdraw(
    channel: ChannelState, key: PrivateKey, now: Timestamp
) -> tuple[ChannelState, WithdrawExpired] | Rejected:
    """Release our pending withdraw after its expiration (it never reached the chain)."""
    our = channel.our
    if our.withdraw_pending <= our.withdrawn:
        return Rejected("no pending withdraw")
    if now <= our.withdraw_expiration:
        return Rejected("withdraw not expired")
    unsigned = WithdrawExpired(
        channel.token_network,
        channel.generation,
        our.address,
        our.withdraw_pending,
        our.withdraw_expiration,
        PLACEHOLDER_SIGNATURE,
    )
    message = signing.sign(key, unsigned, channel.chain_id, our.address, channel.partner.address)
    # Both ends forget the expiration too, so the two views stay equal whether or not the
    # partner ever saw the request.
    new_our = frozen.replace(our, withdraw_pending=our.withdrawn, withdraw_expiration=NO_TIME)
    return frozen.replace(channel, our=new_our), message


def receive_withdraw_expired(
    channel: ChannelState, message: WithdrawExpired, now: Timestamp
) -> ChannelState | Rejected:
    """The partner releases its expired pending withdraw."""
    partner = channel.partner
    if message.token_network != channel.token_network or message.generation != channel.generation:
        return Rejected("wrong channel")
    if partner.withdraw_pending != message.total_withdraw or message.participant != partner.address:
        return Rejected("no such pending withdraw")
    if now <= partner.withdraw_expiration:
        return Rejected("withdraw not expired")
    if _signer(channel, message, sender_is_partner=True) != partner.address:
        return Rejected("invalid signature")
    return frozen.replace(
        channel,
        partner=frozen.replace(
            partner, withdraw_pending=partner.withdrawn, withdraw_expiration=NO_TIME
        ),
    )


REFUSAL_TEXT: Final[dict[CoopSettleRefusal, str]] = {
    CoopSettleRefusal.PENDING_LOCKS: "pending locks",
    CoopSettleRefusal.BALANCES_DIFFER: "totals do not match our balances",
    CoopSettleRefusal.CHANNEL_NOT_OPEN: "channel not open",
    CoopSettleRefusal.OFFER_EXPIRED: "offer expired",
    CoopSettleRefusal.WITHDRAW_ABOVE_TOTAL: "a pending withdraw exceeds its final total",
}
"""What each refusal reason means, said from the refuser's side."""


def _totals(channel: ChannelState) -> tuple[TokenAmount, TokenAmount] | CoopSettleRefusal:
    our, partner = channel.our, channel.partner
    if our.locks or partner.locks:
        return CoopSettleRefusal.PENDING_LOCKS
    ours = TokenAmount(our.withdrawn + balance(our, partner))
    theirs = TokenAmount(partner.withdrawn + balance(partner, our))
    for end, total in ((our, ours), (partner, theirs)):
        # Reserved from the balance when requested, so this holds unless the two clocks
        # disagree about an expiration; a withdraw above the total that landed first
        # would make the contract refuse the settle (nobody loses, the settle fails).
        if end.withdraw_pending > end.withdrawn and end.withdraw_pending > total:
            return CoopSettleRefusal.WITHDRAW_ABOVE_TOTAL
    first, _ = ordered(our.address, partner.address)
    return (ours, theirs) if first == our.address else (theirs, ours)


def coop_settle_totals(channel: ChannelState) -> tuple[TokenAmount, TokenAmount] | Rejected:
    """The final total withdraws (participant1, participant2) a cooperative settle uses.

    Each participant takes its balance on top of what it already withdrew; allowed only
    with no pending lock on either side. Pending withdraws do not matter (module
    docstring), as long as each stays within its side's total.
    """
    totals = _totals(channel)
    if isinstance(totals, CoopSettleRefusal):
        return Rejected(REFUSAL_TEXT[totals])
    return totals


def request_coop_settle(
    channel: ChannelState, key: PrivateKey, expiration: Timestamp
) -> CoopSettleRequest | Rejected:
    """Offer to close and settle now, each participant taking its balance."""
    if channel.phase is not ChannelPhase.OPENED:
        return Rejected("channel not open")
    totals = coop_settle_totals(channel)
    if isinstance(totals, Rejected):
        return totals
    unsigned = CoopSettleRequest(
        channel.token_network, channel.generation, *totals, expiration, PLACEHOLDER_SIGNATURE
    )
    return signing.sign(
        key, unsigned, channel.chain_id, channel.our.address, channel.partner.address
    )


def receive_coop_settle_request(
    channel: ChannelState, key: PrivateKey, message: CoopSettleRequest, now: Timestamp
) -> CoopSettleResponse | CoopSettleRefused | Rejected:
    """Co-sign the partner's offer if its totals are exactly the balances we agree on.

    An authentic offer we will not sign gets a `CoopSettleRefused` saying why, so the
    requester need not wait for an answer that will not come; only an offer that is not
    the partner's (a bad signature, another token network) is `Rejected`, unanswered.
    """
    if message.token_network != channel.token_network:
        return Rejected("wrong channel")
    if _signer(channel, message, sender_is_partner=True) != channel.partner.address:
        return Rejected("invalid signature")
    refusal: CoopSettleRefusal | None = None
    if message.generation != channel.generation or channel.phase is not ChannelPhase.OPENED:
        refusal = CoopSettleRefusal.CHANNEL_NOT_OPEN
    elif message.expiration <= now:
        refusal = CoopSettleRefusal.OFFER_EXPIRED
    else:
        totals = _totals(channel)
        if isinstance(totals, CoopSettleRefusal):
            refusal = totals
        elif (message.total_withdraw1, message.total_withdraw2) != totals:
            refusal = CoopSettleRefusal.BALANCES_DIFFER
    if refusal is not None:
        return refuse_coop_settle(channel, key, message, refusal)
    unsigned = CoopSettleResponse(
        message.token_network,
        message.generation,
        message.total_withdraw1,
        message.total_withdraw2,
        message.expiration,
        PLACEHOLDER_SIGNATURE,
    )
    return signing.sign(
        key, unsigned, channel.chain_id, channel.our.address, channel.partner.address
    )


def refuse_coop_settle(
    channel: ChannelState, key: PrivateKey, offer: CoopSettleRequest, reason: CoopSettleRefusal
) -> CoopSettleRefused:
    """Our signed refusal of the partner's offer, naming the offer and the reason."""
    unsigned = CoopSettleRefused(
        offer.token_network,
        offer.generation,
        offer.total_withdraw1,
        offer.total_withdraw2,
        offer.expiration,
        reason,
        PLACEHOLDER_SIGNATURE,
    )
    return signing.sign(
        key, unsigned, channel.chain_id, channel.our.address, channel.partner.address
    )


def receive_coop_settle_refused(
    channel: ChannelState, offer: CoopSettleRequest, message: CoopSettleRefused
) -> CoopSettleRefusal | Rejected:
    """The partner's refusal of our standing offer: why it will not co-sign."""
    if (
        message.token_network,
        message.generation,
        message.total_withdraw1,
        message.total_withdraw2,
        message.expiration,
    ) != (
        offer.token_network,
        offer.generation,
        offer.total_withdraw1,
        offer.total_withdraw2,
        offer.expiration,
    ):
        return Rejected("refusal of another offer")
    if _signer(channel, message, sender_is_partner=True) != channel.partner.address:
        return Rejected("invalid signature")
    return message.reason


def receive_coop_settle_response(
    channel: ChannelState, request: CoopSettleRequest, message: CoopSettleResponse
) -> SignedCoopSettle | Rejected:
    """The partner's co-signature of our offer: both signatures, ready for chain."""
    if (
        message.token_network,
        message.generation,
        message.total_withdraw1,
        message.total_withdraw2,
        message.expiration,
    ) != (
        request.token_network,
        request.generation,
        request.total_withdraw1,
        request.total_withdraw2,
        request.expiration,
    ):
        return Rejected("response to another offer")
    if _signer(channel, message, sender_is_partner=True) != channel.partner.address:
        return Rejected("invalid signature")
    return SignedCoopSettle(
        request.total_withdraw1,
        request.total_withdraw2,
        request.expiration,
        request.signature,
        message.signature,
    )
