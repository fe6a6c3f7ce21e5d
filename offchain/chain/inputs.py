"""Decoded logs turned into the protocol core's ``Chain*`` inputs, and the public channels.

Belongs here: ``ChannelDirectory``, the public facts of every channel of the followed
token networks as the chain shows them (participants, generation, settle window,
deposits, withdraws, open / closed / settled, closer and close time), built from the
logs of all channels, not only ours: the node learns the payment graph from its records
(``ChannelRecord.public_capacity``, ``ChannelDirectory.edges``); and ``inputs_for``, the
pure mapping of one log to the inputs of the core for a node with a given address (only
channels it is in, and every registered secret), with ``now`` = the log's block timestamp.

Logs that do not name both participants (deposits, closes, settles...) are resolved
through the directory, so the directory must have applied a channel's ``ChannelOpened``
before its other logs: apply each log, then map it (``ChainFollower`` does).

Does not belong here: what the core does with an input (``offchain.protocol``), fetching
or decoding logs (``sync``, ``events``), persistence of the directory (``store``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from offchain.chain.events import (
    ChainLog,
    ChannelClosedLog,
    ChannelOpenedLog,
    ChannelSettledLog,
    CoopSettledLog,
    DepositLog,
    SecretRegisteredLog,
    WithdrawLog,
)
from offchain.protocol.locks import channel_id as make_channel_id
from offchain.protocol.routes import ChannelEdge
from offchain.protocol.transitions import (
    ChainChannelClosed,
    ChainChannelOpened,
    ChainChannelSettled,
    ChainDeposit,
    ChainSecretRegistered,
    ChainWithdraw,
)
from offchain.protocol.types import (
    Address,
    ChannelId,
    Generation,
    Timestamp,
    TokenAmount,
)

ChainInput = (
    ChainChannelOpened
    | ChainDeposit
    | ChainWithdraw
    | ChainChannelClosed
    | ChainChannelSettled
    | ChainSecretRegistered
)

ZERO = TokenAmount(0)


class ChannelStage(enum.Enum):
    """A channel's state on chain."""

    OPENED = "opened"
    CLOSED = "closed"
    SETTLED = "settled"
    """Settled, or cooperatively settled; the pair may be reopened (a new generation)."""


@dataclass(frozen=True, slots=True)
class ChannelRecord:
    """What the chain says of one channel (the latest opening of a pair in a network).

    Amounts are totals as the logs report them; they restart at zero on a reopening.
    ``settled_generation``: the last generation that was settled (an unlock names it).
    """

    token_network: Address
    channel_id: ChannelId
    participant1: Address
    participant2: Address
    generation: Generation
    settle_window: int
    stage: ChannelStage = ChannelStage.OPENED
    deposit1: TokenAmount = ZERO
    deposit2: TokenAmount = ZERO
    withdrawn1: TokenAmount = ZERO
    withdrawn2: TokenAmount = ZERO
    closer: Address | None = None
    closed_at: Timestamp | None = None
    settled_generation: Generation | None = None

    def has(self, address: Address) -> bool:
        return address in (self.participant1, self.participant2)

    def partner_of(self, address: Address) -> Address:
        """The other participant; ``address`` must be one of the two."""
        if address == self.participant1:
            return self.participant2
        if address == self.participant2:
            return self.participant1
        raise ValueError("not a participant of this channel")

    def public_capacity(self, address: Address) -> int:
        """What ``address`` can send at most, as far as the chain shows: its deposit less
        its withdraws (off-chain transfers move the true figure either way)."""
        if address == self.participant1:
            return max(0, self.deposit1 - self.withdrawn1)
        if address == self.participant2:
            return max(0, self.deposit2 - self.withdrawn2)
        raise ValueError("not a participant of this channel")

    @property
    def settle_deadline(self) -> Timestamp | None:
        """The last second of the settle window (settle is allowed after it), once closed."""
        if self.closed_at is None:
            return None
        return Timestamp(self.closed_at + self.settle_window)


class ChannelDirectory:
    """The channels of the followed token networks by (token network, channel id).

    A channel id names a pair of addresses, the same in every token network, so the key
    includes the network.
    """

    def __init__(self, records: Iterable[ChannelRecord] = ()) -> None:
        self._records: dict[tuple[Address, ChannelId], ChannelRecord] = {}
        for record in records:
            self._records[(record.token_network, record.channel_id)] = record

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[ChannelRecord]:
        return iter(self._records.values())

    def get(self, token_network: Address, channel_id: ChannelId) -> ChannelRecord | None:
        return self._records.get((token_network, channel_id))

    def find(self, token_network: Address, a: Address, b: Address) -> ChannelRecord | None:
        """The channel of the pair ``a``, ``b`` in ``token_network``, if ever opened."""
        return self.get(token_network, make_channel_id(a, b))

    def channels(self, token_network: Address) -> list[ChannelRecord]:
        return [r for (network, _), r in self._records.items() if network == token_network]

    def apply(self, log: ChainLog) -> ChannelRecord | None:
        """Update the directory with ``log``; return the record it changed, if any.

        Idempotent: a log applied twice (a batch replayed after a crash) changes nothing
        the second time, since every amount is a total and every stage only moves on.
        """
        record: ChannelRecord | None
        match log:
            case ChannelOpenedLog():
                old = self.get(log.token_network, log.channel_id)
                if old is not None and old.generation >= log.generation:
                    return None
                record = ChannelRecord(
                    token_network=log.token_network,
                    channel_id=log.channel_id,
                    participant1=log.participant1,
                    participant2=log.participant2,
                    generation=log.generation,
                    settle_window=log.settle_window,
                    settled_generation=old.settled_generation if old else None,
                )
            case DepositLog():
                record = self._amount(log, log.participant, log.total_deposit, deposit=True)
            case WithdrawLog():
                record = self._amount(log, log.participant, log.total_withdraw, deposit=False)
            case ChannelClosedLog():
                old = self.get(log.token_network, log.channel_id)
                if old is None or old.stage is not ChannelStage.OPENED:
                    return None
                record = replace(
                    old,
                    stage=ChannelStage.CLOSED,
                    closer=log.closing_participant,
                    closed_at=log.timestamp,
                )
            case ChannelSettledLog() | CoopSettledLog():
                old = self.get(log.token_network, log.channel_id)
                if old is None or old.generation != log.generation:
                    return None
                if old.stage is ChannelStage.SETTLED:
                    return None
                record = replace(old, stage=ChannelStage.SETTLED, settled_generation=log.generation)
            case _:
                return None
        if record is None:
            return None
        self._records[(record.token_network, record.channel_id)] = record
        return record

    def _amount(
        self,
        log: DepositLog | WithdrawLog,
        participant: Address,
        total: TokenAmount,
        *,
        deposit: bool,
    ) -> ChannelRecord | None:
        old = self.get(log.token_network, log.channel_id)
        if old is None or old.stage is not ChannelStage.OPENED or not old.has(participant):
            return None
        first = participant == old.participant1
        if deposit:
            current = old.deposit1 if first else old.deposit2
        else:
            current = old.withdrawn1 if first else old.withdrawn2
        if current >= total:
            return None
        if deposit:
            return replace(old, deposit1=total) if first else replace(old, deposit2=total)
        return replace(old, withdrawn1=total) if first else replace(old, withdrawn2=total)

    def edges(self, token_network: Address) -> list[ChannelEdge]:
        """The open channels of ``token_network`` as graph edges, with public capacities.

        A side's capacity here is its deposit minus its withdraws: all the chain shows.
        Off-chain transfers move it either way; the node knows the true figures of its
        own channels and replaces these where it can.
        """
        return [
            ChannelEdge(
                a=record.participant1,
                b=record.participant2,
                capacity_ab=TokenAmount(record.public_capacity(record.participant1)),
                capacity_ba=TokenAmount(record.public_capacity(record.participant2)),
            )
            for record in self.channels(token_network)
            if record.stage is ChannelStage.OPENED
        ]


def inputs_for(log: ChainLog, own: Address, directory: ChannelDirectory) -> tuple[ChainInput, ...]:
    """The core's inputs for a node at ``own`` from ``log`` (already applied to ``directory``).

    Registered secrets concern everyone (any lock may use them); every other log only the
    two participants of its channel. Logs without a core input (updates, unlocks, delegate
    rewards, new token networks) give none: the node reads them from the batch if needed.
    """
    now = log.timestamp
    if isinstance(log, SecretRegisteredLog):
        return (ChainSecretRegistered(now, log.secret, log.secrethash, log.timestamp),)
    if isinstance(log, ChannelOpenedLog):
        if own not in (log.participant1, log.participant2):
            return ()
        partner = log.participant2 if own == log.participant1 else log.participant1
        return (
            ChainChannelOpened(now, log.token_network, partner, log.generation, log.settle_window),
        )
    if not isinstance(
        log, DepositLog | WithdrawLog | ChannelClosedLog | ChannelSettledLog | CoopSettledLog
    ):
        return ()
    record = directory.get(log.token_network, log.channel_id)
    if record is None or not record.has(own):
        return ()
    partner = record.partner_of(own)
    network = log.token_network
    # The contract never emits these for a stranger or another generation; a log that
    # does is not evidence about our channel.
    match log:
        case DepositLog() if record.has(log.participant):
            return (ChainDeposit(now, network, partner, log.participant, log.total_deposit),)
        case WithdrawLog() if record.has(log.participant):
            return (ChainWithdraw(now, network, partner, log.participant, log.total_withdraw),)
        case ChannelClosedLog() if record.has(log.closing_participant):
            return (ChainChannelClosed(now, network, partner, log.closing_participant),)
        case ChannelSettledLog() | CoopSettledLog() if log.generation == record.generation:
            return (ChainChannelSettled(now, network, partner),)
        case _:
            return ()
