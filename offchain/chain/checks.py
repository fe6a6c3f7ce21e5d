"""Is a deferred transaction still needed? The chain's own answer, read before sending.

Belongs here: ``still_needed``, which reads what the contracts hold now for one of the
core's ``ContractSend*`` effects and says whether sending it can still change anything
(docs/spec.md §14, O-5): an update when the chain already holds a proof of the partner
with a nonce at least ours, or the channel is no longer closed in that generation; a
secret registration when the secret is registered already; an unlock when the contract
retains nothing for those locks; a close, withdraw or cooperative settle when the channel
is no longer open (or the withdrawn total is reached). Each answer comes with a reason
for the event log. Reads are ``eth_call`` at the latest block.

Does not belong here: deciding what to send (the core), sending (``transactions``), the
order of sending (the node's schedule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from web3 import Web3

from offchain.chain.artifacts import load_artifact
from offchain.chain.calls import ContractEffect
from offchain.chain.errors import ChainError
from offchain.chain.inputs import ChannelDirectory
from offchain.chain.rpc import Endpoint
from offchain.protocol.locks import locksroot, secrethash_of
from offchain.protocol.transitions import (
    ContractSendClose,
    ContractSendCoopSettle,
    ContractSendSecretRegister,
    ContractSendUnlock,
    ContractSendUpdate,
    ContractSendWithdraw,
)
from offchain.protocol.types import Address

STATE_OPEN: Final = 1
STATE_CLOSED: Final = 2


@dataclass(frozen=True, slots=True)
class Needed:
    """Whether the effect's transaction can still change anything, and why (for the log)."""

    needed: bool
    reason: str


def _contract(endpoint: Endpoint, artifact: str, address: Address) -> Any:
    return endpoint.w3.eth.contract(
        address=Web3.to_checksum_address(address),
        abi=load_artifact(artifact).abi_list(),
        decode_tuples=True,
    )


def _checksum(address: Address) -> str:
    return Web3.to_checksum_address(address)


async def _channel(endpoint: Endpoint, network: Address, own: Address, partner: Address) -> Any:
    functions = _contract(endpoint, "token_network", network).functions
    return await endpoint.call(
        "eth_call", functions.get_channel(_checksum(own), _checksum(partner)).call()
    )


async def _participant(
    endpoint: Endpoint, network: Address, participant: Address, partner: Address
) -> Any:
    functions = _contract(endpoint, "token_network", network).functions
    return await endpoint.call(
        "eth_call", functions.get_participant(_checksum(participant), _checksum(partner)).call()
    )


async def still_needed(
    effect: ContractEffect,
    endpoint: Endpoint,
    own: Address,
    secret_registry: Address,
    directory: ChannelDirectory,
    generation: int | None = None,
) -> Needed:
    """Whether sending ``effect`` now can still change anything on chain.

    ``generation``: the channel's generation as the node knows it (an update or close of
    an earlier opening is never needed once the pair reopened). Raises
    ``ChainUnavailable`` when the endpoint does not answer, ``ChainError`` when the
    question cannot be asked yet (an unlock of a channel never seen settled).
    """
    match effect:
        case ContractSendUpdate():
            channel = await _channel(endpoint, effect.token_network, own, effect.partner)
            if int(channel.state) != STATE_CLOSED:
                return Needed(False, "the channel is no longer closed on chain")
            if generation is not None and int(channel.generation) != generation:
                return Needed(False, f"the chain's channel is generation {channel.generation}")
            side = await _participant(endpoint, effect.token_network, effect.partner, own)
            if int(side.nonce) >= effect.proof.nonce:
                return Needed(
                    False,
                    f"the chain holds the partner's proof {side.nonce} >= {effect.proof.nonce}",
                )
            return Needed(True, f"the chain holds the partner's proof {side.nonce} only")
        case ContractSendSecretRegister():
            registry = _contract(endpoint, "secret_registry", secret_registry).functions
            secrethash = secrethash_of(effect.secret)
            at = await endpoint.call("eth_call", registry.get_secret_reveal_time(secrethash).call())
            if int(at) != 0:
                return Needed(False, f"the secret is registered (at {int(at)})")
            return Needed(True, "the secret is not registered")
        case ContractSendUnlock():
            record = directory.find(effect.token_network, own, effect.partner)
            if record is None or record.settled_generation is None:
                raise ChainError("unlock: the channel was never seen settled on chain")
            receiver, sender = (effect.partner, own) if effect.ours else (own, effect.partner)
            functions = _contract(endpoint, "token_network", effect.token_network).functions
            retained = await endpoint.call(
                "eth_call",
                functions.get_unlock_amount(
                    _checksum(receiver),
                    _checksum(sender),
                    record.settled_generation,
                    locksroot(effect.locks),
                ).call(),
            )
            if int(retained) == 0:
                return Needed(False, "the contract retains nothing for these locks")
            return Needed(True, f"the contract retains {int(retained)}")
        case ContractSendClose() | ContractSendCoopSettle():
            channel = await _channel(endpoint, effect.token_network, own, effect.partner)
            if int(channel.state) != STATE_OPEN:
                return Needed(False, "the channel is not open on chain")
            if generation is not None and int(channel.generation) != generation:
                return Needed(False, f"the chain's channel is generation {channel.generation}")
            return Needed(True, "the channel is open")
        case ContractSendWithdraw():
            channel = await _channel(endpoint, effect.token_network, own, effect.partner)
            if int(channel.state) != STATE_OPEN:
                return Needed(False, "the channel is not open on chain")
            side = await _participant(endpoint, effect.token_network, own, effect.partner)
            if int(side.withdrawn) >= effect.withdraw.total_withdraw:
                return Needed(False, f"the chain's total withdrawn is {int(side.withdrawn)}")
            return Needed(True, "the withdraw is not on chain")
