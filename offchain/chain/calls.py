"""Contract calls: the protocol core's ``ContractSend*`` effects and the node's own
operations as the exact calldata of a transaction.

Belongs here: ``ContractCall`` (target, calldata, value, a readable description) and one
pure function per contract operation, ABI-encoded from the shipped artifacts (so an
argument list that drifts from the contracts fails at once): token approval, open (with
or without deposit), deposit, withdraw, cooperative settle, close, update the non-closing
proof (ourselves, or as the non-closer's delegate), settle, unlock, register a secret;
and ``for_effect``, the mapping of each ``ContractSend*`` effect to its call for our node.

Which participant an argument names follows the contracts (docs/spec.md §3): a close is
(closer = us, non-closer = partner, the partner's proof); an update is (closer = partner,
non-closer = us, the partner's proof); an unlock is (receiver = us, sender = partner).

Does not belong here: signing, sending, fees (``transactions``), deciding which call a
channel needs (``offchain.protocol``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from eth_abi.abi import encode as abi_encode

from offchain.chain.artifacts import load_artifact
from offchain.chain.errors import ChainError
from offchain.chain.inputs import ChannelDirectory
from offchain.protocol.cooperative import SignedCoopSettle, SignedWithdraw
from offchain.protocol.crypto import keccak256
from offchain.protocol.locks import (
    NO_PROOF_BALANCE_HASH,
    Lock,
    balance_hash,
    encode_locks,
    locksroot,
    ordered,
)
from offchain.protocol.transitions import (
    ContractSendClose,
    ContractSendCoopSettle,
    ContractSendSecretRegister,
    ContractSendUnlock,
    ContractSendUpdate,
    ContractSendWithdraw,
    PartnerProof,
)
from offchain.protocol.types import (
    ZERO_ADDRESS,
    AdditionalHash,
    Address,
    BalanceHash,
    Generation,
    Locksroot,
    Nonce,
    Secret,
    Signature,
    TokenAmount,
)

UNLIMITED: Final = 2**256 - 1
"""The approval amount that never runs out (ERC-20 convention)."""

ContractEffect = (
    ContractSendSecretRegister
    | ContractSendClose
    | ContractSendUpdate
    | ContractSendUnlock
    | ContractSendWithdraw
    | ContractSendCoopSettle
)


@dataclass(frozen=True, slots=True)
class ContractCall:
    """One transaction's target, calldata and value; ``description`` is for logs."""

    to: Address
    data: bytes
    value: int = 0
    description: str = ""


@dataclass(frozen=True, slots=True)
class BalanceData:
    """A participant's (transferred, locked, locksroot) as its proof on chain commits to."""

    transferred: TokenAmount
    locked: TokenAmount
    locksroot: Locksroot

    @classmethod
    def of(cls, transferred: int, locks: Sequence[Lock]) -> BalanceData:
        locked = sum(lock.amount for lock in locks)
        return cls(TokenAmount(transferred), TokenAmount(locked), locksroot(locks))

    @classmethod
    def none(cls) -> BalanceData:
        """No proof on chain for this participant: all zeros."""
        return cls(TokenAmount(0), TokenAmount(0), Locksroot(bytes(32)))


def _function(artifact: str, name: str) -> tuple[bytes, list[str]]:
    for entry in load_artifact(artifact).abi:
        if entry.get("type") == "function" and entry.get("name") == name:
            types = [str(i["type"]) for i in entry["inputs"]]
            selector = keccak256(f"{name}({','.join(types)})".encode())[:4]
            return selector, types
    raise ChainError(f"{artifact} has no function {name}")


def encode_call(artifact: str, function: str, args: Sequence[Any]) -> bytes:
    """The calldata of ``function(*args)`` of ``artifact``'s ABI (addresses as 20 bytes)."""
    selector, types = _function(artifact, function)
    return selector + abi_encode(types, list(args))


def _call(to: Address, artifact: str, function: str, *args: Any) -> ContractCall:
    return ContractCall(to, encode_call(artifact, function, args), 0, f"{artifact}.{function}")


# --- the node's operations ----------------------------------------------------------------


def approve(token: Address, spender: Address, amount: int = UNLIMITED) -> ContractCall:
    """ERC-20 ``approve(spender, amount)``: lets a token network pull deposits."""
    return _call(token, "test_token", "approve", spender, amount)


def open_channel(network: Address, partner: Address, settle_window: int) -> ContractCall:
    return _call(network, "token_network", "open_channel", partner, settle_window)


def open_channel_with_deposit(
    network: Address, partner: Address, settle_window: int, total_deposit: TokenAmount
) -> ContractCall:
    """Open and deposit in one transaction (the network must be approved first)."""
    return _call(
        network,
        "token_network",
        "open_channel_with_deposit",
        partner,
        settle_window,
        total_deposit,
    )


def set_total_deposit(
    network: Address, participant: Address, partner: Address, total_deposit: TokenAmount
) -> ContractCall:
    """Raise ``participant``'s total deposit; the tokens come from the sender."""
    return _call(network, "token_network", "set_total_deposit", participant, partner, total_deposit)


def withdraw(
    network: Address, participant: Address, partner: Address, signed: SignedWithdraw
) -> ContractCall:
    """``set_total_withdraw`` with both signatures (``participant`` signed first)."""
    return _call(
        network,
        "token_network",
        "set_total_withdraw",
        participant,
        partner,
        signed.total_withdraw,
        signed.expiration,
        signed.participant_signature,
        signed.partner_signature,
    )


def cooperative_settle(
    network: Address, own: Address, partner: Address, signed: SignedCoopSettle
) -> ContractCall:
    """``cooperative_settle`` with ours first; the signed totals are in participant order."""
    first, _ = ordered(own, partner)
    if first == own:
        ours, theirs = signed.total_withdraw1, signed.total_withdraw2
    else:
        ours, theirs = signed.total_withdraw2, signed.total_withdraw1
    return _call(
        network,
        "token_network",
        "cooperative_settle",
        own,
        partner,
        ours,
        theirs,
        signed.expiration,
        signed.our_signature,
        signed.partner_signature,
    )


def _proof_args(proof: PartnerProof | None) -> tuple[int, bytes, bytes, bytes]:
    if proof is None or proof.nonce == 0:
        return 0, NO_PROOF_BALANCE_HASH, bytes(32), b""
    bh = balance_hash(proof.transferred, proof.locked, locksroot(proof.locks))
    return proof.nonce, bh, proof.additional_hash, proof.signature


def close_channel(
    network: Address, own: Address, partner: Address, proof: PartnerProof | None
) -> ContractCall:
    """We close with the partner's latest proof (None: we received nothing)."""
    nonce, bh, additional, signature = _proof_args(proof)
    return _call(
        network,
        "token_network",
        "close_channel",
        own,
        partner,
        nonce,
        bh,
        additional,
        signature,
        b"",  # the closer's own signature: not needed when the closer sends
    )


def update_non_closing(
    network: Address, own: Address, partner: Address, proof: PartnerProof
) -> ContractCall:
    """The partner closed: we submit its newer proof ourselves (no delegate, no reward)."""
    nonce, bh, additional, signature = _proof_args(proof)
    return _call(
        network,
        "token_network",
        "update_non_closing_balance_proof",
        partner,
        own,
        nonce,
        bh,
        additional,
        signature,
        ZERO_ADDRESS,
        0,
        b"",
    )


def update_non_closing_delegated(
    network: Address,
    closer: Address,
    non_closer: Address,
    nonce: Nonce,
    balance_hash: BalanceHash,
    additional_hash: AdditionalHash,
    closing_signature: Signature,
    delegate: Address,
    reward: TokenAmount,
    delegation_signature: Signature,
) -> ContractCall:
    """A delegate submits the closer's proof for the non-closer: the closer's signed
    balance proof and the non-closer's ``Delegation`` of exactly it to ``delegate`` (the
    sender of this transaction) for ``reward``, paid at settle (docs/spec.md §5)."""
    return _call(
        network,
        "token_network",
        "update_non_closing_balance_proof",
        closer,
        non_closer,
        nonce,
        balance_hash,
        additional_hash,
        closing_signature,
        delegate,
        reward,
        delegation_signature,
    )


def settle_channel(
    network: Address,
    participant: Address,
    participant_data: BalanceData,
    partner: Address,
    partner_data: BalanceData,
) -> ContractCall:
    """Settle after the window; each side's data as its proof on chain commits to."""
    return _call(
        network,
        "token_network",
        "settle_channel",
        participant,
        participant_data.transferred,
        participant_data.locked,
        participant_data.locksroot,
        partner,
        partner_data.transferred,
        partner_data.locked,
        partner_data.locksroot,
    )


def unlock(
    network: Address,
    receiver: Address,
    sender: Address,
    generation: Generation,
    locks: Sequence[Lock],
) -> ContractCall:
    """Pay out the retained locks of ``sender``: ``locks`` must be exactly those its
    locksroot on chain commits to, in creation order."""
    return _call(
        network, "token_network", "unlock", receiver, sender, generation, encode_locks(locks)
    )


def register_secret(secret_registry: Address, secret: Secret) -> ContractCall:
    return _call(secret_registry, "secret_registry", "register_secret", secret)


# --- the core's effects ---------------------------------------------------------------------


def for_effect(
    effect: ContractEffect,
    own: Address,
    secret_registry: Address,
    directory: ChannelDirectory,
) -> ContractCall:
    """The call that carries out ``effect`` for our node at ``own``.

    An unlock names the settled generation, which the effect does not carry: it comes
    from ``directory`` (``ChainError`` if the channel was never seen settled).
    """
    match effect:
        case ContractSendSecretRegister():
            return register_secret(secret_registry, effect.secret)
        case ContractSendClose():
            return close_channel(effect.token_network, own, effect.partner, effect.proof)
        case ContractSendUpdate():
            return update_non_closing(effect.token_network, own, effect.partner, effect.proof)
        case ContractSendWithdraw():
            return withdraw(effect.token_network, own, effect.partner, effect.withdraw)
        case ContractSendCoopSettle():
            return cooperative_settle(effect.token_network, own, effect.partner, effect.settle)
        case ContractSendUnlock():
            record = directory.find(effect.token_network, own, effect.partner)
            if record is None or record.settled_generation is None:
                raise ChainError("unlock: the channel was never seen settled on chain")
            receiver, sender = (effect.partner, own) if effect.ours else (own, effect.partner)
            return unlock(
                effect.token_network, receiver, sender, record.settled_generation, effect.locks
            )
