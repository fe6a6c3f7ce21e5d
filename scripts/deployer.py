"""Deploy the SmartMesh contracts from the shipped artifacts, idempotently, with a manifest.

Belongs here: the deployment logic shared by `ape run deploy` (scripts/deploy.py), the
demo and the integration tests: which contracts, in which order, with which arguments;
how an earlier deployment recorded in `deployments/<chain_id>.json` is recognised and
reused; and the manifest format. Reads go through web3.py; transactions go through a
`Sender`, so the same logic runs with an ape account (keystore, hardware wallet) or with a
local key through web3 (`Web3Sender`, used by the demo and the tests on anvil).

Does not belong here: choosing or unlocking accounts, network selection, command-line
parsing (scripts/deploy.py), or anything the node needs at run time.

Manifest (`deployments/<chain_id>.json`)::

    {"chain_id", "compiler", "deployer", "settle_window_floor", "settle_window_ceiling",
     "created_at", "updated_at",
     "contracts": {name: {"address", "block", "tx_hash", "gas_used", "artifact",
                          "abi_sha256", "runtime_sha256", "constructor_args", "deployer"}},
     "token_networks_registry": the registry the token networks below belong to,
     "token_networks": {token: network},
     "token_network_deployments": {token: {"address", "token_symbol", "block", "tx_hash",
                          "gas_used", "settle_window_min", "settle_window_max",
                          "participant_deposit_limit", "network_deposit_limit"}}}

Names: SecretRegistry, TokenNetworkImplementation, TokenNetworkRegistry, TestToken.
A contract is reused when code is found at its recorded address, that code is the
artifact's runtime bytecode (plus Vyper's immutables section), and every public getter
named like one of its wanted constructor values returns that value (the registry's
secret registry, implementation and settle-window bounds; the implementation's secret
registry; the test token's name, symbol and decimals). Everything else is deployed
afresh, and a new registry gets new token networks. The manifest is rewritten after
every transaction, so an interrupted deployment resumes where it stopped; a run that
reuses everything leaves it untouched.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from eth_abi import encode as abi_encode
from eth_account import Account as EthAccount
from web3 import Web3
from web3.contract.contract import ContractFunction

from offchain.chain.artifacts import COMPILER, Artifact, load_artifact

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENTS = ROOT / "deployments"

DEV_CHAIN_IDS = frozenset({31337, 1337})
"""anvil / hardhat (31337) and geth --dev / ganache (1337): chains where a faucet token is fine."""
MAINNET_CHAIN_ID = 1

# Settle window bounds of the registry (seconds). Every token network's bounds, hence
# every channel's settle window, must lie between them.
#
# Floor, 1 hour: the settle window is the time the non-closer, or any delegate holding
# its signed update, has to put the closer's newest proof on chain. A participant that
# is offline for longer than the window can only be protected by a delegate, so the
# window a channel picks must exceed its participants' longest offline time; that is a
# per-channel choice (the node proposes days for mesh devices). What the registry must
# rule out is a window so short that even an always-online delegate can miss it:
# fee spikes and congested blocks can hold a transaction back for many minutes, and
# 10 minutes is only 50 Ethereum blocks. One hour (300 blocks) is above any delay seen
# outside outages, in line with Raiden's minimum of 500 blocks.
DEFAULT_SETTLE_WINDOW_FLOOR = 3600
# Ceiling, 1 year: a long window locks both deposits for that long after a close, which
# a participant accepts when it deposits; beyond a year the lock-up is a griefing tool
# rather than a safety margin. The contract caps windows at 2**32 - 1 s (136 years).
DEFAULT_SETTLE_WINDOW_CEILING = 365 * 24 * 3600

# Deposit limits of token networks this script creates, in the token's base units:
# 10**27 is a billion tokens with 18 decimals. They bound the loss a contract bug
# could cause while the network is young; the contract caps them below 2**127.
DEFAULT_PARTICIPANT_DEPOSIT_LIMIT = 10**27
DEFAULT_NETWORK_DEPOSIT_LIMIT = 10**30


SECRET_REGISTRY = "SecretRegistry"
IMPLEMENTATION = "TokenNetworkImplementation"
REGISTRY = "TokenNetworkRegistry"
TEST_TOKEN = "TestToken"
TEST_TOKEN_VALUES = {"name": "SmartMesh Test Token", "symbol": "SMTT", "decimals": 18}
ARTIFACT_OF = {
    SECRET_REGISTRY: "secret_registry",
    IMPLEMENTATION: "token_network",
    REGISTRY: "token_network_registry",
    TEST_TOKEN: "test_token",
}

ZERO_ADDRESS = "0x" + "00" * 20
# EIP-1167 minimal proxy runtime code around the implementation address.
_PROXY_PREFIX = bytes.fromhex("363d3d373d3d3d363d73")
_PROXY_SUFFIX = bytes.fromhex("5af43d82803e903d91602b57fd5bf3")


class DeployError(RuntimeError):
    """A deployment transaction failed or the chain is not what the manifest says."""


@dataclass(frozen=True)
class Receipt:
    """What a mined transaction tells the manifest."""

    tx_hash: str
    block: int
    gas_used: int
    contract_address: str | None = None


class Sender(Protocol):
    """Sends the deployment's transactions from one account and waits until they are mined."""

    @property
    def address(self) -> str:
        """The checksummed address of the sending account."""
        ...

    def deploy(self, artifact: Artifact, args: Sequence[Any]) -> Receipt:
        """Create `artifact` with constructor `args`; the receipt names the new address."""
        ...

    def transact(
        self, address: str, artifact: Artifact, function: str, args: Sequence[Any]
    ) -> Receipt:
        """Call `function(*args)` of the contract at `address` in a transaction."""
        ...


class Web3Sender:
    """A `Sender` that signs locally with a private key and sends through web3.py.

    For anvil and tests (the dev keys of scripts.anvil); never give it a key that holds
    value on a public chain: use `ape run deploy --account` there, whose keys stay in
    ape's encrypted keystore.
    """

    def __init__(self, w3: Web3, private_key: str | bytes, timeout: float = 120.0) -> None:
        self.w3 = w3
        self._account = EthAccount.from_key(private_key)
        self.timeout = timeout

    @property
    def address(self) -> str:
        return str(self._account.address)

    def send_transaction(self, tx: dict[str, Any]) -> Receipt:
        """Fill in nonce, gas and fees, sign, send and wait; raise `DeployError` on revert."""
        tx = {**tx, "from": self.address, "chainId": self.w3.eth.chain_id}
        tx.setdefault("nonce", self.w3.eth.get_transaction_count(self.address, "pending"))
        if "gas" not in tx:
            # A margin over the estimate: estimates are exact on anvil, but a public node
            # may estimate against a slightly different state than the block includes.
            tx["gas"] = self.w3.eth.estimate_gas(tx) * 12 // 10
        if "maxFeePerGas" not in tx and "gasPrice" not in tx:
            base_fee = self.w3.eth.get_block("latest").get("baseFeePerGas", 0)
            priority = self.w3.eth.max_priority_fee
            tx["maxPriorityFeePerGas"] = priority
            tx["maxFeePerGas"] = 2 * base_fee + priority
        signed = self._account.sign_transaction(tx)
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.timeout)
        if receipt["status"] != 1:
            raise DeployError(f"transaction {tx_hash.to_0x_hex()} reverted")
        address = receipt.get("contractAddress")
        return Receipt(
            tx_hash=tx_hash.to_0x_hex(),
            block=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            contract_address=str(address) if address else None,
        )

    def send(self, function: ContractFunction, value: int = 0) -> Receipt:
        """Send a bound contract call (`contract.functions.f(args)`) as a transaction."""
        return self.send_transaction(
            function.build_transaction({"from": self.address, "value": value})
        )

    def deploy(self, artifact: Artifact, args: Sequence[Any]) -> Receipt:
        factory = self.w3.eth.contract(abi=artifact.abi_list(), bytecode=artifact.bytecode)
        receipt = self.send_transaction(
            factory.constructor(*args).build_transaction({"from": self.address})
        )
        if receipt.contract_address is None:
            raise DeployError(f"{artifact.contract}: {receipt.tx_hash} created no contract")
        return receipt

    def transact(
        self, address: str, artifact: Artifact, function: str, args: Sequence[Any]
    ) -> Receipt:
        contract = self.w3.eth.contract(
            address=Web3.to_checksum_address(address), abi=artifact.abi_list()
        )
        return self.send(contract.functions[function](*args))


@dataclass(frozen=True)
class DeployConfig:
    """What to deploy. `None` bounds mean: the manifest's, else the defaults above."""

    settle_window_floor: int | None = None
    settle_window_ceiling: int | None = None
    test_token: bool | None = None  # None: on development chains only
    tokens: tuple[str, ...] = ()  # existing ERC-20 tokens that get a token network
    settle_window_min: int | None = None  # of created token networks; None: the floor
    settle_window_max: int | None = None  # None: the ceiling
    participant_deposit_limit: int = DEFAULT_PARTICIPANT_DEPOSIT_LIMIT
    network_deposit_limit: int = DEFAULT_NETWORK_DEPOSIT_LIMIT


@dataclass(frozen=True)
class Step:
    """One line of a deployment's story: a contract deployed, reused or created."""

    name: str
    action: str  # "deployed", "reused" or "created"
    address: str
    block: int | None  # None for a token network someone else created
    gas_used: int | None  # None when reused: no transaction was sent
    tx_hash: str | None


@dataclass
class DeployResult:
    """The manifest as written, where, and what this run did."""

    manifest: dict[str, Any]
    path: Path
    steps: list[Step] = field(default_factory=list)

    @property
    def chain_id(self) -> int:
        return int(self.manifest["chain_id"])

    def address(self, name: str) -> str:
        """The address of contract `name` (SecretRegistry, TokenNetworkRegistry, ...)."""
        return str(self.manifest["contracts"][name]["address"])

    @property
    def token_networks(self) -> dict[str, str]:
        return dict(self.manifest["token_networks"])

    @property
    def changed(self) -> bool:
        return any(step.action != "reused" for step in self.steps)


def manifest_path(chain_id: int, directory: Path = DEPLOYMENTS) -> Path:
    return directory / f"{chain_id}.json"


def load_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest at `path`, or None if there is none."""
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return data


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Write atomically: a crash never leaves half a manifest behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def proxy_code(implementation: str) -> bytes:
    """The runtime code of an EIP-1167 clone of `implementation`."""
    return _PROXY_PREFIX + bytes.fromhex(implementation[2:]) + _PROXY_SUFFIX


def _constructor_inputs(artifact: Artifact) -> list[dict[str, Any]]:
    constructor = next((e for e in artifact.abi if e.get("type") == "constructor"), None)
    return list(constructor["inputs"]) if constructor else []


def constructor_args(artifact: Artifact, values: dict[str, Any]) -> list[Any]:
    """The constructor arguments of `artifact`, looked up in `values` by input name."""
    args = []
    for entry in _constructor_inputs(artifact):
        key = str(entry["name"]).strip("_")
        if key not in values:
            raise DeployError(f"{artifact.contract}: no value for constructor input {key}")
        args.append(values[key])
    return args


def encode_constructor_args(artifact: Artifact, args: Sequence[Any]) -> str:
    """The ABI-encoded constructor arguments (0x hex), as explorers ask for them when
    verifying source: the deployment transaction's input is the bytecode followed by this."""
    types = [str(entry["type"]) for entry in _constructor_inputs(artifact)]
    return "0x" + abi_encode(types, list(args)).hex()


def _normal(value: Any) -> Any:
    """Addresses compared whatever their letter case; other values as they are."""
    if isinstance(value, str) and value.startswith("0x") and len(value) == 42:
        return value.lower()
    return value


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()


_TIMESTAMPS = ("created_at", "updated_at")
_ORDER = (
    "chain_id",
    "compiler",
    "deployer",
    "settle_window_floor",
    "settle_window_ceiling",
    "created_at",
    "updated_at",
    "contracts",
    "token_networks_registry",
    "token_networks",
    "token_network_deployments",
)


def _content(manifest: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in manifest.items() if key not in _TIMESTAMPS}


class _Run:
    """One run of `deploy`: the chain, the sender, the manifest being built."""

    def __init__(self, w3: Web3, sender: Sender, path: Path, log: Callable[[str], None]) -> None:
        self.w3 = w3
        self.sender = sender
        self.path = path
        self.log = log
        self.chain_id = int(w3.eth.chain_id)
        self.old = load_manifest(path) or {}
        if self.old and int(self.old.get("chain_id", -1)) != self.chain_id:
            raise DeployError(
                f"{path} is for chain {self.old.get('chain_id')}, the node is chain {self.chain_id}"
            )
        self.manifest: dict[str, Any] = json.loads(json.dumps(self.old))
        self.steps: list[Step] = []

    # --- reading the chain ------------------------------------------------------------

    def code(self, address: str) -> bytes:
        return bytes(self.w3.eth.get_code(Web3.to_checksum_address(address)))

    def view(self, artifact: str, address: str, function: str, *args: Any) -> Any:
        contract = self.w3.eth.contract(
            address=Web3.to_checksum_address(address), abi=load_artifact(artifact).abi_list()
        )
        return contract.functions[function](*args).call()

    # --- recording --------------------------------------------------------------------

    def save(self, final: bool = False) -> None:
        """Write the manifest; at the end of a run only if its content changed, so that
        a run that reused everything leaves the file byte for byte as it was."""
        if final and self.old and _content(self.manifest) == _content(self.old):
            return
        now = _now()
        self.manifest["created_at"] = self.manifest.get("created_at") or now
        self.manifest["updated_at"] = now
        write_manifest(self.path, self.ordered())

    def ordered(self) -> dict[str, Any]:
        """The manifest with its keys in reading order."""
        ordered = {key: self.manifest[key] for key in _ORDER if key in self.manifest}
        ordered.update({k: v for k, v in self.manifest.items() if k not in ordered})
        return ordered

    def step(
        self,
        name: str,
        action: str,
        address: str,
        block: int | None,
        receipt: Receipt | None = None,
    ) -> None:
        step = Step(
            name,
            action,
            Web3.to_checksum_address(address),
            block,
            receipt.gas_used if receipt else None,
            receipt.tx_hash if receipt else None,
        )
        self.steps.append(step)
        gas = f"gas {step.gas_used:>9,}" if step.gas_used is not None else "no transaction"
        where = f"block {block:>6}" if block is not None else "block      ?"
        self.log(f"  {name:<27} {action:<8} {step.address}  {where}  {gas}")

    # --- contracts --------------------------------------------------------------------

    def mismatches(self, artifact: Artifact, address: str, values: dict[str, Any]) -> list[str]:
        """The wanted values (constructor arguments, immutables) that the contract at
        `address` does not hold, judged by its public getters of the same name."""
        getters = {
            entry["name"]
            for entry in artifact.abi
            if entry.get("type") == "function"
            and not entry.get("inputs")
            and entry.get("stateMutability") in ("view", "pure")
        }
        wrong = []
        for key, wanted in values.items():
            if key in getters:
                found = self.view(artifact.contract, address, key)
                if _normal(found) != _normal(wanted):
                    wrong.append(f"{key} is {found}, wanted {wanted}")
        return wrong

    def reusable(self, name: str, values: dict[str, Any]) -> str | None:
        """The recorded address of `name` if the chain still holds that contract there,
        built from the shipped artifact with the wanted constructor values."""
        entry = self.manifest.get("contracts", {}).get(name)
        if not entry:
            return None
        address = str(entry["address"])
        artifact = load_artifact(ARTIFACT_OF[name])
        code = self.code(address)
        if not code:
            self.log(f"  {name}: no code at {address} (a fresh chain?): deploying again")
            return None
        if not artifact.matches_code(code):
            self.log(
                f"  {name}: the code at {address} is not the shipped artifact: deploying again"
            )
            return None
        wrong = self.mismatches(artifact, address, values)
        if wrong:
            self.log(f"  {name} at {address}: {'; '.join(wrong)}: deploying again")
            return None
        return address

    def ensure(self, name: str, values: dict[str, Any]) -> str:
        """Reuse contract `name` from the manifest, or deploy it.

        `values` maps names to what the contract must be built with: constructor
        arguments are taken from it by the name of each constructor input (leading and
        trailing underscores dropped), so a reordered constructor still gets the right
        values; any entry that is also a getter of the contract is checked on reuse.
        """
        address = self.reusable(name, values)
        if address is not None:
            self.step(name, "reused", address, self.manifest["contracts"][name]["block"])
            return address
        artifact = load_artifact(ARTIFACT_OF[name])
        args = constructor_args(artifact, values)
        receipt = self.sender.deploy(artifact, args)
        if receipt.contract_address is None:
            raise DeployError(f"{name}: {receipt.tx_hash} created no contract")
        address = Web3.to_checksum_address(receipt.contract_address)
        if not artifact.matches_code(self.code(address)):
            raise DeployError(f"{name}: the code deployed at {address} is not the artifact's")
        self.manifest.setdefault("contracts", {})[name] = {
            "address": address,
            "block": receipt.block,
            "tx_hash": receipt.tx_hash,
            "gas_used": receipt.gas_used,
            "artifact": artifact.contract,
            "abi_sha256": artifact.abi_sha256,
            "runtime_sha256": artifact.runtime_sha256,
            "constructor_args": encode_constructor_args(artifact, args),
            "deployer": self.sender.address,
        }
        self.manifest["deployer"] = self.sender.address
        self.step(name, "deployed", address, receipt.block, receipt)
        self.save()
        return address

    def ensure_token_network(
        self,
        token: str,
        registry: str,
        implementation: str,
        window_min: int,
        window_max: int,
        config: DeployConfig,
    ) -> str:
        """Reuse the registry's network of `token`, or create it."""
        token = Web3.to_checksum_address(token)
        networks: dict[str, str] = self.manifest.setdefault("token_networks", {})
        details: dict[str, Any] = self.manifest.setdefault("token_network_deployments", {})
        symbol = self.symbol(token)
        label = f"TokenNetwork({symbol})"
        existing = str(
            self.view("token_network_registry", registry, "token_to_token_network", token)
        )
        if existing != ZERO_ADDRESS:
            if self.code(existing) != proxy_code(implementation):
                raise DeployError(f"the registry maps {token} to {existing}, not a clone")
            if networks.get(token) != existing:
                # Created by someone else (anyone may): adopt it; we hold no receipt.
                networks[token] = existing
                details[token] = {"address": existing, "token_symbol": symbol, "block": None}
            self.step(label, "reused", existing, details[token].get("block"))
            return existing
        args = (
            token,
            window_min,
            window_max,
            config.participant_deposit_limit,
            config.network_deposit_limit,
        )
        receipt = self.sender.transact(
            registry, load_artifact("token_network_registry"), "create_token_network", args
        )
        network = Web3.to_checksum_address(
            self.view("token_network_registry", registry, "token_to_token_network", token)
        )
        networks[token] = network
        details[token] = {
            "address": network,
            "token_symbol": symbol,
            "block": receipt.block,
            "tx_hash": receipt.tx_hash,
            "gas_used": receipt.gas_used,
            "settle_window_min": window_min,
            "settle_window_max": window_max,
            # Strings: JSON readers that parse numbers as doubles would round these.
            "participant_deposit_limit": str(config.participant_deposit_limit),
            "network_deposit_limit": str(config.network_deposit_limit),
        }
        self.step(label, "created", network, receipt.block, receipt)
        self.save()
        return network

    def symbol(self, token: str) -> str:
        try:
            return str(self.view("test_token", token, "symbol"))
        except Exception:  # a token without symbol() is still a token
            return token[:10]


def deploy(
    w3: Web3,
    sender: Sender,
    config: DeployConfig | None = None,
    path: Path | None = None,
    log: Callable[[str], None] = print,
) -> DeployResult:
    """Deploy what `deployments/<chain_id>.json` (or `path`) lacks; reuse the rest.

    Order: SecretRegistry, the TokenNetwork implementation, the TokenNetworkRegistry;
    then, on development chains (or with `config.test_token`), a TestToken and its token
    network; then a token network for each of `config.tokens`.
    """
    config = config or DeployConfig()
    chain_id = int(w3.eth.chain_id)
    path = path or manifest_path(chain_id)
    run = _Run(w3, sender, path, log)
    manifest = run.manifest
    floor = int(
        config.settle_window_floor
        or manifest.get("settle_window_floor")
        or DEFAULT_SETTLE_WINDOW_FLOOR
    )
    ceiling = int(
        config.settle_window_ceiling
        or manifest.get("settle_window_ceiling")
        or DEFAULT_SETTLE_WINDOW_CEILING
    )
    if not 0 < floor <= ceiling < 2**32:
        raise DeployError(
            "settle window bounds must satisfy 0 < floor <= ceiling < 2**32, "
            f"got {floor} and {ceiling}"
        )
    window_min = config.settle_window_min or floor
    window_max = config.settle_window_max or ceiling
    if not floor <= window_min <= window_max <= ceiling:
        raise DeployError(
            f"token network settle windows [{window_min}, {window_max}] must "
            f"lie within the registry's [{floor}, {ceiling}]"
        )
    test_token = chain_id in DEV_CHAIN_IDS if config.test_token is None else config.test_token
    if test_token and chain_id == MAINNET_CHAIN_ID:
        raise DeployError("refusing to deploy the test token (anyone can mint it) on mainnet")

    manifest.update({"chain_id": chain_id, "compiler": COMPILER})
    manifest.setdefault("deployer", sender.address)
    manifest.setdefault("contracts", {})
    log(f"chain {chain_id}, deployer {sender.address}, manifest {path}")

    secret_registry = run.ensure(SECRET_REGISTRY, {})
    implementation = run.ensure(IMPLEMENTATION, {"secret_registry": secret_registry})
    registry = run.ensure(
        REGISTRY,
        {
            "secret_registry": secret_registry,
            "implementation": implementation,
            "token_network_implementation": implementation,
            "settle_window_floor": floor,
            "settle_window_ceiling": ceiling,
        },
    )
    manifest["settle_window_floor"] = floor
    manifest["settle_window_ceiling"] = ceiling
    # Token networks belong to one registry: forget those of a replaced registry.
    if manifest.get("token_networks_registry") != registry:
        manifest["token_networks_registry"] = registry
        manifest["token_networks"] = {}
        manifest["token_network_deployments"] = {}

    tokens = [Web3.to_checksum_address(token) for token in config.tokens]
    if test_token:
        tokens.insert(0, run.ensure(TEST_TOKEN, TEST_TOKEN_VALUES))
    for token in dict.fromkeys(tokens):
        run.ensure_token_network(token, registry, implementation, window_min, window_max, config)
    run.save(final=True)
    return DeployResult(manifest=run.ordered(), path=path, steps=run.steps)
