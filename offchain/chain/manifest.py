"""The deployment a node follows: read from the manifest ``scripts/deployer.py`` writes.

Belongs here: ``Deployment`` (chain id, registry, secret registry, token -> token network,
the block to start following from), ``parse_deployment`` / ``load_deployment`` (shape
checks, each failure a ``DeploymentError`` kind naming the field), and
``verify_deployment``, which checks a deployment against an endpoint: the chain id, and
that the contracts are really there (the shipped code at the registry and the secret
registry, and the registry's own mapping for each token network).

Does not belong here: writing manifests (``scripts/deployer.py``), token networks learned
from the chain after the manifest was written (``sync`` follows the registry for those).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from eth_typing import ChecksumAddress
from web3 import Web3

from offchain.chain.artifacts import load_artifact
from offchain.chain.errors import (
    ChainIdMismatch,
    CodeMissing,
    DeploymentError,
    ManifestMalformed,
    ManifestMissing,
)
from offchain.chain.rpc import Endpoint
from offchain.protocol.types import Address

REGISTRY = "TokenNetworkRegistry"
SECRET_REGISTRY = "SecretRegistry"


@dataclass(frozen=True, slots=True)
class Deployment:
    """The contracts of one deployment; addresses are 20 raw bytes.

    ``token_networks``: token -> its token network, as the manifest lists them.
    ``start_block``: the lowest deployment block of the followed contracts: no log of
    theirs can be older.
    """

    chain_id: int
    registry: Address
    secret_registry: Address
    token_networks: Mapping[Address, Address]
    start_block: int

    def network_of(self, token: Address) -> Address | None:
        return self.token_networks.get(token)


def _address(value: object, field: str) -> Address:
    if not isinstance(value, str) or not Web3.is_address(value):
        raise ManifestMalformed(f"manifest: {field} is not an address: {value!r}")
    # A mixed-case address must carry a valid EIP-55 checksum: it catches typos.
    if value[2:] not in (value[2:].lower(), value[2:].upper()) and not Web3.is_checksum_address(
        value
    ):
        raise ManifestMalformed(f"manifest: {field} has a wrong checksum: {value}")
    return Address(bytes.fromhex(value[2:]))


def _block(value: object, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ManifestMalformed(f"manifest: {field} is not a block number: {value!r}")
    return value


def _object(value: object, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ManifestMalformed(f"manifest: {field} is missing or not an object")
    return value


def parse_deployment(data: object) -> Deployment:
    """The ``Deployment`` of a decoded manifest; ``ManifestMalformed`` names what is wrong."""
    manifest = _object(data, "the manifest")
    chain_id = manifest.get("chain_id")
    if not isinstance(chain_id, int) or isinstance(chain_id, bool) or chain_id <= 0:
        raise ManifestMalformed(f"manifest: chain_id is not a positive integer: {chain_id!r}")
    contracts = _object(manifest.get("contracts"), "contracts")
    entries = {
        name: _object(contracts.get(name), f"contracts.{name}")
        for name in (REGISTRY, SECRET_REGISTRY)
    }
    registry = _address(entries[REGISTRY].get("address"), f"contracts.{REGISTRY}.address")
    secret_registry = _address(
        entries[SECRET_REGISTRY].get("address"), f"contracts.{SECRET_REGISTRY}.address"
    )
    blocks = [
        _block(entry.get("block"), f"contracts.{name}.block") for name, entry in entries.items()
    ]
    owner = manifest.get("token_networks_registry")
    if owner is not None and _address(owner, "token_networks_registry") != registry:
        raise ManifestMalformed("manifest: token_networks belong to another registry")
    networks: dict[Address, Address] = {}
    for token, network in _object(manifest.get("token_networks", {}), "token_networks").items():
        networks[_address(token, "token_networks key")] = _address(
            network, f"token_networks[{token}]"
        )
    if len(set(networks.values())) != len(networks):
        raise ManifestMalformed("manifest: two tokens share one token network")
    details = _object(manifest.get("token_network_deployments", {}), "token_network_deployments")
    for token, entry in details.items():
        block = _object(entry, f"token_network_deployments[{token}]").get("block")
        # None: a network someone else created; its block is unknown but after the registry's.
        if block is not None:
            blocks.append(_block(block, f"token_network_deployments[{token}].block"))
    return Deployment(
        chain_id=chain_id,
        registry=registry,
        secret_registry=secret_registry,
        token_networks=MappingProxyType(networks),
        start_block=min(blocks),
    )


def load_deployment(path: Path | str) -> Deployment:
    """Read and parse the manifest at ``path``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ManifestMissing(f"no deployment manifest at {path}") from exc
    except OSError as exc:
        raise ManifestMissing(f"cannot read the deployment manifest {path}: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestMalformed(f"{path}: not valid JSON: {exc}") from exc
    return parse_deployment(data)


def _checksum(address: Address) -> ChecksumAddress:
    return Web3.to_checksum_address(address)


async def verify_deployment(endpoint: Endpoint, deployment: Deployment) -> None:
    """Check ``deployment`` against the chain behind ``endpoint``.

    ``ChainIdMismatch`` for another chain; ``CodeMissing`` when an address holds no code
    or not the shipped contract (a reset dev chain, a wrong manifest); ``DeploymentError``
    when the registry maps a token to another network than the manifest says.
    ``ChainUnavailable`` if the endpoint does not answer.
    """
    w3 = endpoint.w3
    found = await endpoint.call("eth_chainId", w3.eth.chain_id)
    if found != deployment.chain_id:
        raise ChainIdMismatch(deployment.chain_id, found)
    for name, address, artifact in (
        (REGISTRY, deployment.registry, "token_network_registry"),
        (SECRET_REGISTRY, deployment.secret_registry, "secret_registry"),
    ):
        code = bytes(await endpoint.call("eth_getCode", w3.eth.get_code(_checksum(address))))
        if not code:
            raise CodeMissing(f"no code at the {name} {_checksum(address)}: wrong chain or reset?")
        if not load_artifact(artifact).matches_code(code):
            raise CodeMissing(f"the code at the {name} {_checksum(address)} is not {artifact}")
    registry = w3.eth.contract(
        address=_checksum(deployment.registry),
        abi=load_artifact("token_network_registry").abi_list(),
    )
    for token, network in deployment.token_networks.items():
        code = bytes(await endpoint.call("eth_getCode", w3.eth.get_code(_checksum(network))))
        if not code:
            raise CodeMissing(f"no code at the token network {_checksum(network)}")
        mapped = await endpoint.call(
            "eth_call", registry.functions.token_to_token_network(_checksum(token)).call()
        )
        if bytes.fromhex(str(mapped)[2:]) != network:
            raise DeploymentError(
                f"the registry maps token {_checksum(token)} to {mapped}, "
                f"not to {_checksum(network)}"
            )
