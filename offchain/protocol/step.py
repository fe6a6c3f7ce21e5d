"""The working copy of a node's state during one transition, and the moves every role uses.

Belongs here: `Step`, which `node.transition` creates from a `NodeState`, lets the role
modules change (copies of the state's maps, never the maps themselves: the input state
is left untouched) and turns back into a new `NodeState` with the effects collected on
the way; and the channel moves shared by the roles (lock, return, unlock, reveal, send),
each of which signs through `channel` and queues the message.

Does not belong here: which move to make (`initiator`, `mediator`, `target`, `node`).
"""

from __future__ import annotations

from offchain.protocol import channel as channel_rules
from offchain.protocol import signing
from offchain.protocol.channel import ChannelPhase, ChannelState, Rejected
from offchain.protocol.locks import Lock
from offchain.protocol.messages import (
    NO_SECRET,
    Message,
    PaymentId,
    PaymentSecret,
    ReturnReason,
    SecretRequest,
    SecretReveal,
)
from offchain.protocol.signing import PLACEHOLDER_SIGNATURE
from offchain.protocol.state import (
    Announcement,
    InitiatorState,
    NodeState,
    TargetState,
)
from offchain.protocol.transitions import Effect, EventInvalidReceived, SendMessage
from offchain.protocol.types import (
    Address,
    PrivateKey,
    Secret,
    SecretHash,
    Timestamp,
    TokenAmount,
)


class Step:
    """One transition in progress: mutable copies of the state's maps plus the effects."""

    def __init__(self, state: NodeState, key: PrivateKey, now: Timestamp) -> None:
        self.state = state
        self.key = key
        self.now = now
        self.address = state.address
        self.settings = state.settings
        self.effects: list[Effect] = []
        self.channels = dict(state.channels)
        self.initiators = dict(state.initiators)
        self.mediators = dict(state.mediators)
        self.targets = dict(state.targets)
        self.announcements = dict(state.announcements)
        self.invoices = dict(state.invoices)
        self.secrets = dict(state.secrets)
        self.registered = dict(state.registered)
        self.registering = set(state.registering)
        self.early = {k: dict(v) for k, v in state.early.items()}
        self.withdraws = dict(state.withdraws)
        self.withdraws_signed = set(state.withdraws_signed)
        self.coop_offers = dict(state.coop_offers)
        self.settling = dict(state.settling)
        self.graphs = dict(state.graphs)
        self.unreachable = state.unreachable
        self.view_time = state.view_time
        self.delegated = state.delegated

    def finish(self) -> NodeState:
        # The constructor directly, keywords in field order: this runs once per input.
        return NodeState(
            address=self.address,
            chain_id=self.state.chain_id,
            settings=self.settings,
            channels=self.channels,
            graphs=self.graphs,
            unreachable=self.unreachable,
            initiators=self.initiators,
            mediators=self.mediators,
            targets=self.targets,
            announcements=self.announcements,
            invoices=self.invoices,
            secrets=self.secrets,
            registered=self.registered,
            registering=frozenset(self.registering),
            early={k: v for k, v in self.early.items() if v},
            withdraws=self.withdraws,
            withdraws_signed=frozenset(self.withdraws_signed),
            coop_offers=self.coop_offers,
            settling=self.settling,
            view_time=self.view_time,
            delegated=self.delegated,
        )

    # --- lookups ----------------------------------------------------------------------

    def open_channel(self, token_network: Address, partner: Address) -> ChannelState | None:
        """The channel, if it is open and we may make new payments in it."""
        channel = self.channels.get((token_network, partner))
        if channel is None or channel.phase is not ChannelPhase.OPENED:
            return None
        if self.settling_now(token_network, partner):
            return None  # a cooperative settle offered or signed fixes the balances
        return channel

    def settling_now(self, token_network: Address, partner: Address) -> bool:
        """Whether our cooperative-settle offer stands, or one both signed, in the channel."""
        key = (token_network, partner)
        until = self.settling.get(key)
        if until is not None and self.now <= until:
            return True
        offer = self.coop_offers.get(key)
        return offer is not None and self.now <= offer.expiration

    def registered_in_time(self, secrethash: SecretHash, expiration: Timestamp) -> bool:
        at = self.registered.get(secrethash)
        return at is not None and at <= expiration

    # --- effects ----------------------------------------------------------------------

    def send(self, recipient: Address, message: Message, end_to_end: bool = False) -> None:
        self.effects.append(SendMessage(recipient, message, end_to_end))

    def invalid(self, sender: Address, message: Message, reason: str) -> None:
        self.effects.append(EventInvalidReceived(sender, message.TYPE, reason))

    def sign(self, message: Message, recipient: Address) -> Message:
        """Sign a message that is not a balance proof (domain of its token network)."""
        return signing.sign(self.key, message, self.state.chain_id, self.address, recipient)

    # --- channel moves ----------------------------------------------------------------

    def lock(
        self,
        token_network: Address,
        payee: Address,
        lock: Lock,
        payment_id: PaymentId,
        target: Address,
        target_amount: TokenAmount,
    ) -> Rejected | None:
        """Lock towards `payee` and send the `LockedTransfer`."""
        channel = self.open_channel(token_network, payee)
        if channel is None:
            return Rejected("no open channel")
        made = channel_rules.make_locked_transfer(
            channel, self.key, lock, payment_id, target, target_amount, self.now
        )
        if isinstance(made, Rejected):
            return made
        self.channels[(token_network, payee)], message = made
        self.send(payee, message)
        return None

    def give_back(
        self,
        token_network: Address,
        payer: Address,
        secrethash: SecretHash,
        payment_id: PaymentId,
        reason: ReturnReason,
        failed_hop: Address,
    ) -> bool:
        """Return the payer's lock with a mirror lock; False if the channel cannot carry it."""
        channel = self.open_channel(token_network, payer)
        if channel is None:
            return False
        made = channel_rules.make_lock_return(
            channel, self.key, secrethash, payment_id, reason, failed_hop
        )
        if isinstance(made, Rejected):
            return False
        self.channels[(token_network, payer)], message = made
        self.send(payer, message)
        return True

    def unlock(
        self, token_network: Address, payee: Address, secret: Secret, payment_id: PaymentId
    ) -> bool:
        """Pay our lock towards `payee` off chain; False if there is none to pay."""
        channel = self.open_channel(token_network, payee)
        if channel is None:
            return False
        made = channel_rules.make_unlock(channel, self.key, secret, payment_id)
        if isinstance(made, Rejected):
            return False
        self.channels[(token_network, payee)], message = made
        self.send(payee, message)
        return True

    def reveal(self, token_network: Address, recipient: Address, secret: Secret) -> None:
        """Tell `recipient` the secret (our payer, so it unlocks; or a target)."""
        message = SecretReveal(token_network, secret, PLACEHOLDER_SIGNATURE)
        self.send(recipient, self.sign(message, recipient))

    def announce(self, payment: InitiatorState, secret: Secret | None) -> None:
        """Send the target the payment's secret (or an announcement without it)."""
        message = PaymentSecret(
            payment.token_network,
            payment.payment_id,
            secret if secret is not None else NO_SECRET,
            payment.amount,
            PLACEHOLDER_SIGNATURE,
        )
        self.send(payment.target, self.sign(message, payment.target), end_to_end=True)

    def request_secret(self, record: TargetState, announcement: Announcement) -> None:
        message = SecretRequest(
            record.token_network,
            record.payment_id,
            record.secrethash,
            record.amount,
            record.expiration,
            PLACEHOLDER_SIGNATURE,
        )
        self.send(
            announcement.initiator,
            self.sign(message, announcement.initiator),
            end_to_end=True,
        )
