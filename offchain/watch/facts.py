"""What the chain shows a watcher, as plain values: the input of ``rules`` and ``plan``.

Belongs here: ``ChannelFacts`` (one channel's stage, generation, window, closer, close
time, last settled generation, and after a close each side's proof on chain) and
``SideOnChain``. The node fills them from its follower's channel directory and from
``get_participant`` calls; the pure modules only read them.

Does not belong here: reading the chain (``offchain.node.watcher``), deciding.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from offchain.protocol.types import (
    ZERO_ADDRESS,
    Address,
    BalanceHash,
    Generation,
    Nonce,
    Timestamp,
    TokenAmount,
)

NO_REWARD: Final = TokenAmount(0)


class Stage(enum.Enum):
    """A channel's state on chain (the latest opening of the pair)."""

    OPENED = "opened"
    CLOSED = "closed"
    SETTLED = "settled"


@dataclass(frozen=True, slots=True)
class SideOnChain:
    """One participant's side of a closed channel, as ``get_participant`` reads it:
    the nonce and balance hash of the proof this participant signed that is on chain
    (zero: none), and the delegate (zero: none) whose update stands for it, with the
    reward it named."""

    nonce: Nonce
    balance_hash: BalanceHash
    delegate: Address = ZERO_ADDRESS
    reward: TokenAmount = NO_REWARD


@dataclass(frozen=True, slots=True)
class ChannelFacts:
    """One channel as the chain shows it.

    ``closer_side`` / ``non_closer_side``: read after a close (None when not read);
    ``closer_side`` holds the closer's proof (put there by an update), ``non_closer_side``
    the non-closer's proof (put there by the close) and the delegation that stands.
    """

    generation: Generation
    settle_window: int
    stage: Stage
    closer: Address | None = None
    closed_at: Timestamp | None = None
    settled_generation: Generation | None = None
    closer_side: SideOnChain | None = None
    non_closer_side: SideOnChain | None = None

    @property
    def deadline(self) -> Timestamp | None:
        """The last second an update is accepted (settle is allowed after it)."""
        if self.closed_at is None:
            return None
        return Timestamp(self.closed_at + self.settle_window)

    def settled(self, generation: int) -> bool:
        """Whether ``generation`` of this channel is settled (reopened ones count)."""
        return self.settled_generation is not None and self.settled_generation >= generation
