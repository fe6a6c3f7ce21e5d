"""Deployment manifests (as scripts/deployer.py writes them) -> ``Deployment``; bad ones refused.

The chain-side checks (chain id, code at the addresses) run against anvil in
tests/integration/test_chain_follower.py.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from offchain.chain.errors import DeploymentError, ManifestMalformed, ManifestMissing
from offchain.chain.manifest import load_deployment, parse_deployment

REGISTRY = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
SECRETS = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
TOKEN = "0xCf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc9"
NETWORK = "0x75537828f2ce51be7289709686A69CbFDbB714F1"

MANIFEST: dict[str, Any] = {
    "chain_id": 31337,
    "compiler": "vyper-0.4.3",
    "contracts": {
        "SecretRegistry": {"address": SECRETS, "block": 4},
        "TokenNetworkImplementation": {
            "address": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
            "block": 2,
        },
        "TokenNetworkRegistry": {"address": REGISTRY, "block": 3},
    },
    "token_networks_registry": REGISTRY,
    "token_networks": {TOKEN: NETWORK},
    "token_network_deployments": {TOKEN: {"address": NETWORK, "block": 5}},
}


def raw(address: str) -> bytes:
    return bytes.fromhex(address[2:])


_DELETE = object()


def changed(path: tuple[str, ...], value: object) -> dict[str, Any]:
    data = copy.deepcopy(MANIFEST)
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


def test_parse__deployer_manifest__addresses_as_bytes_start_at_lowest_block() -> None:
    deployment = parse_deployment(MANIFEST)
    assert deployment.chain_id == 31337
    assert deployment.registry == raw(REGISTRY)
    assert deployment.secret_registry == raw(SECRETS)
    assert dict(deployment.token_networks) == {raw(TOKEN): raw(NETWORK)}
    assert deployment.network_of(raw(TOKEN)) == raw(NETWORK)
    # The implementation (block 2) emits nothing we follow.
    assert deployment.start_block == 3


def test_parse__network_created_by_someone_else__block_unknown_is_fine() -> None:
    data = changed(("token_network_deployments", TOKEN, "block"), None)
    assert parse_deployment(data).start_block == 3


def test_parse__the_demo_manifest_shape_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "31337.json"
    path.write_text(json.dumps(MANIFEST))
    assert load_deployment(path) == parse_deployment(MANIFEST)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("chain_id",), 0, "chain_id"),
        (("chain_id",), "31337", "chain_id"),
        (("contracts",), _DELETE, "contracts"),
        (("contracts", "TokenNetworkRegistry"), _DELETE, "TokenNetworkRegistry"),
        (("contracts", "SecretRegistry", "address"), "0x1234", "not an address"),
        (("contracts", "SecretRegistry", "address"), SECRETS.replace("F", "f", 1), "checksum"),
        (("contracts", "SecretRegistry", "block"), -1, "block"),
        (("contracts", "SecretRegistry", "block"), True, "block"),
        (("token_networks_registry",), SECRETS, "another registry"),
        (("token_networks",), [], "token_networks"),
        (("token_networks", TOKEN), 7, "not an address"),
        (("token_network_deployments", TOKEN, "block"), "5", "block"),
    ],
)
def test_parse__malformed__names_the_field(
    path: tuple[str, ...], value: object, message: str
) -> None:
    with pytest.raises(ManifestMalformed, match=message):
        parse_deployment(changed(path, value))


def test_parse__two_tokens_one_network__malformed() -> None:
    data = changed(("token_networks", SECRETS), NETWORK)
    with pytest.raises(ManifestMalformed, match="share"):
        parse_deployment(data)


def test_load__missing_file__manifest_missing(tmp_path: Path) -> None:
    with pytest.raises(ManifestMissing):
        load_deployment(tmp_path / "nothing.json")


def test_load__not_json__malformed_and_a_deployment_error(tmp_path: Path) -> None:
    path = tmp_path / "31337.json"
    path.write_text("{not json")
    with pytest.raises(ManifestMalformed) as caught:
        load_deployment(path)
    assert isinstance(caught.value, DeploymentError)


def test_parse__lowercase_addresses_accepted() -> None:
    data = changed(("contracts", "SecretRegistry", "address"), SECRETS.lower())
    assert parse_deployment(data).secret_registry == raw(SECRETS)
