"""The requests a delegating node makes: its channels' newest proofs, as ``DelegateUpdate``s.

Belongs here: ``delegable`` (whether a channel has a partner proof worth delegating),
``delegation_signature`` (the participant's ``Delegation`` of the partner's proof to one
delegate) and ``delegate_update`` (the request, built from the channel state). Pure: the
key, the request id and the delegate come in as arguments.

Does not belong here: when to send, to whom, what came back (``offchain.node.delegation``).
"""

from __future__ import annotations

from offchain.protocol import eip712
from offchain.protocol.channel import ChannelPhase, ChannelState
from offchain.protocol.locks import channel_id as make_channel_id
from offchain.protocol.types import (
    AdditionalHash,
    Address,
    PrivateKey,
    Signature,
    TokenAmount,
)
from offchain.watch.wire import BalancePreimage, DelegateUpdate


def delegable(channel: ChannelState) -> bool:
    """Whether the partner's proof could be needed on chain: the channel is not settled
    and the partner has signed a proof (nonce 0 is "nothing received")."""
    return (
        channel.phase is not ChannelPhase.SETTLED
        and channel.partner.nonce > 0
        and channel.partner.signature is not None
    )


def delegation_signature(
    key: PrivateKey, own: Address, channel: ChannelState, delegate: Address, reward: int
) -> Signature:
    """Our ``Delegation`` of the partner's latest proof to ``delegate`` for ``reward``."""
    partner = channel.partner
    struct = eip712.Delegation(
        channel_id=make_channel_id(own, partner.address),
        generation=channel.generation,
        nonce=partner.nonce,
        balance_hash=partner.balance_hash,
        delegate=delegate,
        reward=TokenAmount(reward),
    )
    return eip712.sign(key, eip712.Domain(channel.chain_id, channel.token_network), struct)


def delegate_update(
    channel: ChannelState,
    *,
    own: Address,
    request_id: bytes,
    reward: int,
    signature: Signature,
) -> DelegateUpdate:
    """The request carrying the partner's latest proof and our own latest data; the
    caller checked ``delegable`` and signed the delegation (``delegation_signature``)."""
    partner, ours = channel.partner, channel.our
    assert partner.signature is not None, "delegable() first"
    return DelegateUpdate(
        request_id=request_id,
        chain_id=channel.chain_id,
        token_network=channel.token_network,
        generation=channel.generation,
        closer=partner.address,
        non_closer=own,
        nonce=partner.nonce,
        closer_balance=BalancePreimage.of(partner.transferred, partner.locks),
        additional_hash=AdditionalHash(partner.additional_hash),
        closing_signature=partner.signature,
        reward=TokenAmount(reward),
        delegation_signature=signature,
        own_nonce=ours.nonce,
        own_balance=BalancePreimage.of(ours.transferred, ours.locks),
    )
