"""Deployment on a real anvil: idempotent re-runs, the manifest, and `ape run deploy` itself.

scripts.deployer is what `ape run deploy`, `make demo` and the fixtures use; these tests
hold it to its promises: a second run sends no transaction and leaves the manifest byte
for byte as it was; whatever is missing or different on chain is deployed again, and only
that; the manifest names every contract with an address whose code is the shipped
artifact. The last test runs the operator's command, `ape run deploy`, as a subprocess
against the session's anvil and records how long it took (ape's start-up dominates).
"""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path

import pytest
from web3 import Web3

from offchain.chain.artifacts import COMPILER, load_artifact
from scripts.anvil import DEV_PRIVATE_KEYS, Anvil
from scripts.demo import run_ape_deploy
from scripts.deployer import (
    ARTIFACT_OF,
    DEFAULT_SETTLE_WINDOW_CEILING,
    DEFAULT_SETTLE_WINDOW_FLOOR,
    IMPLEMENTATION,
    REGISTRY,
    SECRET_REGISTRY,
    TEST_TOKEN,
    DeployConfig,
    DeployError,
    DeployResult,
    Web3Sender,
    deploy,
    proxy_code,
)

pytestmark = pytest.mark.anvil

CONTRACTS = (SECRET_REGISTRY, IMPLEMENTATION, REGISTRY, TEST_TOKEN)


def _deploy(w3: Web3, path: Path, config: DeployConfig | None = None) -> DeployResult:
    return deploy(w3, Web3Sender(w3, DEV_PRIVATE_KEYS[0]), config, path, log=lambda _: None)


def _actions(result: DeployResult) -> dict[str, str]:
    return {step.name: step.action for step in result.steps}


def test_deploy_twice__second_run__reuses_everything(w3: Web3, tmp_path: Path) -> None:
    path = tmp_path / "31337.json"
    first = _deploy(w3, path)
    assert _actions(first) == {
        SECRET_REGISTRY: "deployed",
        IMPLEMENTATION: "deployed",
        REGISTRY: "deployed",
        TEST_TOKEN: "deployed",
        "TokenNetwork(SMTT)": "created",
    }
    assert all(step.gas_used and step.tx_hash for step in first.steps)
    written = path.read_bytes()
    block = w3.eth.block_number

    second = _deploy(w3, path)
    assert set(_actions(second).values()) == {"reused"}
    assert not second.changed
    assert all(step.gas_used is None and step.tx_hash is None for step in second.steps)
    assert w3.eth.block_number == block, "a run that reuses everything sends no transaction"
    assert path.read_bytes() == written
    assert second.manifest["contracts"] == first.manifest["contracts"]
    assert second.token_networks == first.token_networks


def test_manifest__after_deploy__names_the_shipped_contracts(
    w3: Web3, deployed: DeployResult
) -> None:
    manifest = json.loads(deployed.path.read_text())
    assert manifest == deployed.manifest
    assert manifest["chain_id"] == w3.eth.chain_id == 31337
    assert manifest["compiler"] == COMPILER == "vyper-0.4.3"
    assert manifest["deployer"] == Web3Sender(w3, DEV_PRIVATE_KEYS[0]).address
    assert manifest["settle_window_floor"] == DEFAULT_SETTLE_WINDOW_FLOOR
    assert manifest["settle_window_ceiling"] == DEFAULT_SETTLE_WINDOW_CEILING
    created = datetime.datetime.fromisoformat(manifest["created_at"])
    assert created.tzinfo is not None
    assert set(manifest["contracts"]) == set(CONTRACTS)
    for name, entry in manifest["contracts"].items():
        artifact = load_artifact(ARTIFACT_OF[name])
        assert entry["abi_sha256"] == artifact.abi_sha256
        assert entry["runtime_sha256"] == artifact.runtime_sha256
        assert artifact.matches_code(bytes(w3.eth.get_code(entry["address"])))
        receipt = w3.eth.get_transaction_receipt(entry["tx_hash"])
        assert receipt["contractAddress"] == entry["address"]
        assert receipt["blockNumber"] == entry["block"]
        assert receipt["gasUsed"] == entry["gas_used"]
        sent = bytes(w3.eth.get_transaction(entry["tx_hash"])["input"])
        assert sent == artifact.bytecode + bytes.fromhex(entry["constructor_args"][2:])

    registry = w3.eth.contract(
        address=deployed.address(REGISTRY), abi=load_artifact("token_network_registry").abi_list()
    )
    getters = registry.functions
    assert getters.secret_registry().call() == deployed.address(SECRET_REGISTRY)
    assert getters.token_network_implementation().call() == deployed.address(IMPLEMENTATION)
    assert getters.settle_window_floor().call() == DEFAULT_SETTLE_WINDOW_FLOOR
    assert getters.settle_window_ceiling().call() == DEFAULT_SETTLE_WINDOW_CEILING
    token = deployed.address(TEST_TOKEN)
    assert list(manifest["token_networks"]) == [token]
    network = manifest["token_networks"][token]
    assert getters.token_to_token_network(token).call() == network
    assert bytes(w3.eth.get_code(network)) == proxy_code(deployed.address(IMPLEMENTATION))
    details = manifest["token_network_deployments"][token]
    assert details["address"] == network
    assert details["settle_window_min"] == DEFAULT_SETTLE_WINDOW_FLOOR
    assert w3.eth.get_transaction_receipt(details["tx_hash"])["gasUsed"] == details["gas_used"]


def test_deploy__contract_gone_from_manifest_address__only_it_and_its_network_redeployed(
    w3: Web3, tmp_path: Path
) -> None:
    path = tmp_path / "31337.json"
    first = _deploy(w3, path)
    manifest = json.loads(path.read_text())
    manifest["contracts"][TEST_TOKEN]["address"] = "0x" + "de" * 20  # no code there
    path.write_text(json.dumps(manifest))

    again = _deploy(w3, path)
    assert _actions(again) == {
        SECRET_REGISTRY: "reused",
        IMPLEMENTATION: "reused",
        REGISTRY: "reused",
        TEST_TOKEN: "deployed",
        "TokenNetwork(SMTT)": "created",
    }
    new_token = again.address(TEST_TOKEN)
    assert new_token != first.address(TEST_TOKEN)
    assert new_token in again.token_networks


def test_deploy__other_settle_window_floor__new_registry_same_rest(
    w3: Web3, tmp_path: Path
) -> None:
    path = tmp_path / "31337.json"
    first = _deploy(w3, path)
    again = _deploy(w3, path, DeployConfig(settle_window_floor=2 * DEFAULT_SETTLE_WINDOW_FLOOR))
    assert _actions(again)[REGISTRY] == "deployed"
    assert _actions(again)["TokenNetwork(SMTT)"] == "created"
    for name in (SECRET_REGISTRY, IMPLEMENTATION, TEST_TOKEN):
        assert again.address(name) == first.address(name)
    assert again.manifest["settle_window_floor"] == 2 * DEFAULT_SETTLE_WINDOW_FLOOR
    assert again.token_networks != first.token_networks
    # Without options, a later run keeps the bounds the manifest records.
    assert set(_actions(_deploy(w3, path)).values()) == {"reused"}


def test_deploy__tokens_option__creates_or_adopts_their_networks(w3: Web3, tmp_path: Path) -> None:
    path = tmp_path / "31337.json"
    first = _deploy(w3, path)
    outsider = Web3Sender(w3, DEV_PRIVATE_KEYS[4])
    artifact = load_artifact("test_token")
    fresh = outsider.deploy(artifact, ("Fresh", "FRSH", 6)).contract_address
    taken = outsider.deploy(artifact, ("Taken", "TAKN", 6)).contract_address
    assert fresh and taken
    # Anyone may create a token network: the outsider creates TAKN's before we run.
    outsider.transact(
        first.address(REGISTRY),
        load_artifact("token_network_registry"),
        "create_token_network",
        (taken, 7200, 86400, 10**20, 10**21),
    )

    again = _deploy(w3, path, DeployConfig(tokens=(fresh, taken)))
    actions = _actions(again)
    assert actions["TokenNetwork(FRSH)"] == "created"
    assert actions["TokenNetwork(TAKN)"] == "reused"
    assert actions["TokenNetwork(SMTT)"] == "reused"
    assert set(again.token_networks) == {first.address(TEST_TOKEN), fresh, taken}
    details = again.manifest["token_network_deployments"]
    assert details[fresh]["settle_window_min"] == DEFAULT_SETTLE_WINDOW_FLOOR
    assert details[taken]["block"] is None  # adopted: not our transaction


def test_deploy__manifest_of_another_chain__refused(w3: Web3, tmp_path: Path) -> None:
    path = tmp_path / "31337.json"
    path.write_text(json.dumps({"chain_id": 11155111, "contracts": {}}))
    with pytest.raises(DeployError, match="is for chain 11155111"):
        _deploy(w3, path)


def test_ape_run_deploy__subprocess_on_the_session_anvil__deploys_then_reuses(
    anvil: Anvil, w3: Web3, tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    started = time.monotonic()
    first = run_ape_deploy(anvil.url, tmp_path)
    first_seconds = time.monotonic() - started
    record_property("ape_run_deploy_seconds", round(first_seconds, 2))
    print(f"ape run deploy (deploying): {first_seconds:.1f} s")
    assert first.returncode == 0, first.stdout + first.stderr
    path = tmp_path / "31337.json"
    manifest = json.loads(path.read_text())
    assert set(manifest["contracts"]) == set(CONTRACTS)
    assert manifest["deployer"] == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # ape test #0

    # The web3 path recognises everything ape deployed: one logic, one manifest format.
    via_web3 = _deploy(w3, path)
    assert set(_actions(via_web3).values()) == {"reused"}

    started = time.monotonic()
    second = run_ape_deploy(anvil.url, tmp_path)
    second_seconds = time.monotonic() - started
    record_property("ape_run_deploy_rerun_seconds", round(second_seconds, 2))
    print(f"ape run deploy (reusing): {second_seconds:.1f} s")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "unchanged (everything reused)" in second.stdout
    assert json.loads(path.read_text()) == manifest
