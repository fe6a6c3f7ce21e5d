"""Whether a watcher takes a request: the checks, in order, and the reason when it does not.

Belongs here: ``Verdict`` and one ``judge_*`` function per request kind, pure: the
watcher's address, chain id, minimum reward, its view of the chain (``view_time``, None
when blind), the chain's facts about the channel and the time come in as arguments.

The order is part of the contract with clients (docs/spec.md §15.2): a blind watcher says
so first (it could not act, whatever the request); then what needs no chain (chain id,
reward, signatures: a forged request is refused as forged, never as stale); then the
channel on chain; then what the watcher already holds. A request equal to the one held
(same proofs, sent again after a restart) is accepted again: acceptance is idempotent.

Does not belong here: persistence, the request's later life (``plan``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from offchain.protocol import eip712
from offchain.protocol.errors import InvalidSignature
from offchain.protocol.types import Address, Timestamp
from offchain.watch.facts import ChannelFacts, Stage
from offchain.watch.wire import DelegateUpdate, RawTransaction, Reason, RegisterSecret, Unlock


@dataclass(frozen=True, slots=True)
class Verdict:
    reason: Reason
    text: str = ""

    @property
    def accepted(self) -> bool:
        return self.reason is Reason.ACCEPTED


ACCEPT: Final = Verdict(Reason.ACCEPTED)
BLIND: Final = Verdict(Reason.BLIND, "chain not reachable")


def _signer(domain: eip712.Domain, struct: eip712.SignedStruct, signature: bytes) -> Address | None:
    try:
        return eip712.recover_signer(domain, struct, signature)
    except InvalidSignature:
        return None


def judge_delegate_update(
    request: DelegateUpdate,
    *,
    chain_id: int,
    watcher: Address,
    min_reward: int,
    view_time: Timestamp | None,
    now: Timestamp,
    facts: ChannelFacts | None,
    held: tuple[int, int] | None,
) -> Verdict:
    """Take the delegation, or say why not.

    ``now``: chain time (the newest block's timestamp); ``held``: the rank
    (``DelegateUpdate.rank``) of the request already held for this channel side, if any.
    """
    if view_time is None:
        return BLIND
    if request.chain_id != chain_id:
        return Verdict(Reason.WRONG_CHAIN, f"this watcher serves chain {chain_id}")
    if request.reward < min_reward:
        return Verdict(Reason.REWARD_TOO_LOW, f"the reward must be at least {min_reward}")
    domain = eip712.Domain(chain_id, request.token_network)
    if _signer(domain, request.balance_proof(), request.closing_signature) != request.closer:
        return Verdict(Reason.BAD_PROOF_SIGNATURE, "the balance proof is not the closer's")
    signer = _signer(domain, request.delegation(watcher), request.delegation_signature)
    if signer != request.non_closer:
        return Verdict(
            Reason.BAD_DELEGATION_SIGNATURE,
            "the delegation is not the non-closer's, or names another delegate",
        )
    if facts is None:
        return Verdict(Reason.UNKNOWN_CHANNEL, "no such channel on chain")
    if facts.generation != request.generation:
        return Verdict(
            Reason.GENERATION_MISMATCH, f"the channel on chain is generation {facts.generation}"
        )
    if facts.stage is Stage.SETTLED:
        return Verdict(Reason.CHANNEL_NOT_OPEN, "the channel is settled")
    if facts.stage is Stage.CLOSED:
        if facts.closer != request.closer:
            return Verdict(
                Reason.CHANNEL_NOT_OPEN, "the client closed the channel: its partner updates"
            )
        deadline = facts.deadline
        if deadline is not None and now > deadline:
            return Verdict(Reason.TOO_LATE, f"the settle window ended at {deadline}")
        side = facts.closer_side
        if side is not None and side.nonce >= request.nonce:
            return Verdict(Reason.STALE, f"the chain holds the closer's nonce {side.nonce}")
    if held is not None and held > request.rank:
        return Verdict(Reason.STALE, f"holds nonce {held[0]} (own nonce {held[1]})")
    return ACCEPT


def judge_register_secret(
    request: RegisterSecret, *, view_time: Timestamp | None, now: Timestamp
) -> Verdict:
    """Take a secret registration unless the watcher is blind or it is too late (a
    secret registered already is taken: its outcome is "unnecessary")."""
    if view_time is None:
        return BLIND
    if now >= request.deadline:
        return Verdict(Reason.TOO_LATE, f"the deadline {request.deadline} has passed")
    return ACCEPT


def judge_unlock(
    request: Unlock, *, chain_id: int, view_time: Timestamp | None, facts: ChannelFacts | None
) -> Verdict:
    """Take an unlock of a channel generation the chain knows (it may not be settled yet:
    the watcher waits for the settle)."""
    if view_time is None:
        return BLIND
    if request.chain_id != chain_id:
        return Verdict(Reason.WRONG_CHAIN, f"this watcher serves chain {chain_id}")
    if facts is None:
        return Verdict(Reason.UNKNOWN_CHANNEL, "no such channel on chain")
    if facts.generation < request.generation:
        return Verdict(
            Reason.GENERATION_MISMATCH, f"the channel on chain is generation {facts.generation}"
        )
    return ACCEPT


def judge_raw_transaction(
    request: RawTransaction, *, view_time: Timestamp | None, now: Timestamp
) -> Verdict:
    """Take a transaction to broadcast unless the gateway is blind or it is too late."""
    if view_time is None:
        return BLIND
    if now > request.deadline:
        return Verdict(Reason.TOO_LATE, f"the deadline {request.deadline} has passed")
    return ACCEPT
