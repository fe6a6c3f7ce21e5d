"""`ape run deploy`: deploy the SmartMesh contracts to the network ape is connected to.

    ape run deploy --network ethereum:local:foundry                # anvil, first test account
    ape run deploy --network ethereum:sepolia:node --account me    # a keystore account

Belongs here: the ape side of a deployment only: the command line, choosing and
unlocking the account (ape's first test account on development chains, otherwise
`--account <alias>` from ape's encrypted keystore, whose passphrase is prompted for, or
read from APE_ACCOUNTS_<alias>_PASSPHRASE), and an `ApeSender` that sends through that
account. What is deployed, in which order, how an earlier deployment is found and reused,
and the manifest `deployments/<chain_id>.json`, all live in scripts/deployer.py, shared
with `make demo` and the tests. The contracts are the shipped artifacts
(offchain/chain/artifacts, rebuilt by `make artifacts`), so what is deployed is exactly
what the node was built against. No private key is ever read from the repository.

To deploy on an anvil started outside ape, point ape-foundry at it:
APE_FOUNDRY_HOST=http://127.0.0.1:8545 (otherwise ape-foundry starts, and at exit stops,
an anvil of its own). docs/operator.md walks through a testnet deployment.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from ape import Contract, accounts
from ape.api import AccountAPI, ProviderAPI
from ape.cli import ConnectedProviderCommand
from ape.contracts import ContractContainer
from ape_accounts import KeyfileAccount
from ethpm_types import ContractType

from offchain.chain.artifacts import Artifact
from scripts.deployer import (
    DEFAULT_NETWORK_DEPOSIT_LIMIT,
    DEFAULT_PARTICIPANT_DEPOSIT_LIMIT,
    DEPLOYMENTS,
    DEV_CHAIN_IDS,
    MAINNET_CHAIN_ID,
    DeployConfig,
    DeployError,
    Receipt,
    deploy,
    manifest_path,
)


def _contract_type(artifact: Artifact) -> ContractType:
    return ContractType.model_validate(
        {
            "contractName": artifact.contract,
            "abi": artifact.abi_list(),
            "deploymentBytecode": {"bytecode": "0x" + artifact.bytecode.hex()},
            "runtimeBytecode": {"bytecode": "0x" + artifact.runtime_bytecode.hex()},
        }
    )


class ApeSender:
    """A `scripts.deployer.Sender` that signs and sends with an ape account."""

    def __init__(self, account: AccountAPI, provider: ProviderAPI, confirm: bool) -> None:
        self.account = account
        self.provider = provider
        self.confirm = confirm
        self._unlocked = False

    def _before_first_transaction(self, what: str) -> None:
        """Ask once, and unlock once, right before the first transaction: a run that
        reuses everything sends nothing and so needs neither consent nor passphrase."""
        if self._unlocked:
            return
        if self.confirm:
            click.confirm(f"First transaction: {what}. Send this and the rest?", abort=True)
        if isinstance(self.account, KeyfileAccount):
            # One passphrase prompt (or APE_ACCOUNTS_<alias>_PASSPHRASE) for the whole
            # deployment instead of a prompt per transaction; `close` locks it again.
            self.account.set_autosign(True)
        self._unlocked = True

    def close(self) -> None:
        if self._unlocked and isinstance(self.account, KeyfileAccount):
            self.account.set_autosign(False)
        self._unlocked = False

    @property
    def address(self) -> str:
        return str(self.account.address)

    def deploy(self, artifact: Artifact, args: Sequence[Any]) -> Receipt:
        self._before_first_transaction(f"deploy {artifact.contract}")
        instance = self.account.deploy(ContractContainer(_contract_type(artifact)), *args)
        receipt = self.provider.get_receipt(instance.txn_hash)
        return Receipt(
            tx_hash=str(receipt.txn_hash),
            block=int(receipt.block_number),
            gas_used=int(receipt.gas_used),
            contract_address=str(instance.address),
        )

    def transact(
        self, address: str, artifact: Artifact, function: str, args: Sequence[Any]
    ) -> Receipt:
        self._before_first_transaction(f"{artifact.contract}.{function} at {address}")
        contract = Contract(address, contract_type=_contract_type(artifact))
        receipt = getattr(contract, function)(*args, sender=self.account)
        return Receipt(
            tx_hash=str(receipt.txn_hash),
            block=int(receipt.block_number),
            gas_used=int(receipt.gas_used),
        )


def _pick_account(alias: str | None, chain_id: int) -> AccountAPI:
    if alias:
        return accounts.load(alias)
    if chain_id in DEV_CHAIN_IDS:
        return accounts.test_accounts[0]
    raise click.UsageError(
        f"chain {chain_id} is not a development chain: name the deploying account with "
        "--account <alias> (see `ape accounts list`; add one with `ape accounts import`)"
    )


@click.command(cls=ConnectedProviderCommand, short_help="Deploy the SmartMesh contracts")
@click.option("--account", "alias", help="ape account alias (default on dev chains: test #0)")
@click.option("--settle-window-floor", type=click.IntRange(min=1), help="registry floor, s")
@click.option("--settle-window-ceiling", type=click.IntRange(min=1), help="registry ceiling, s")
@click.option(
    "--test-token/--no-test-token",
    default=None,
    help="deploy a faucet TestToken and its network (default: on chains 31337 and 1337 only)",
)
@click.option("--token", "tokens", multiple=True, help="an ERC-20 that gets a token network")
@click.option("--settle-window-min", type=click.IntRange(min=1), help="of new token networks")
@click.option("--settle-window-max", type=click.IntRange(min=1), help="of new token networks")
@click.option(
    "--participant-deposit-limit",
    type=click.IntRange(min=1),
    default=DEFAULT_PARTICIPANT_DEPOSIT_LIMIT,
    show_default=True,
)
@click.option(
    "--network-deposit-limit",
    type=click.IntRange(min=1),
    default=DEFAULT_NETWORK_DEPOSIT_LIMIT,
    show_default=True,
)
@click.option(
    "--deployments-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEPLOYMENTS,
    show_default=True,
    help="where <chain_id>.json is read and written",
)
@click.option("--yes", "-y", is_flag=True, help="do not ask for confirmation")
def cli(
    provider: ProviderAPI,
    alias: str | None,
    settle_window_floor: int | None,
    settle_window_ceiling: int | None,
    test_token: bool | None,
    tokens: tuple[str, ...],
    settle_window_min: int | None,
    settle_window_max: int | None,
    participant_deposit_limit: int,
    network_deposit_limit: int,
    deployments_dir: Path,
    yes: bool,
) -> None:
    """Deploy (or find already deployed) SecretRegistry, the TokenNetwork implementation
    and the TokenNetworkRegistry; on development chains also a TestToken and its network.
    Writes deployments/<chain_id>.json."""
    chain_id = int(provider.chain_id)
    account = _pick_account(alias, chain_id)
    config = DeployConfig(
        settle_window_floor=settle_window_floor,
        settle_window_ceiling=settle_window_ceiling,
        test_token=test_token,
        tokens=tokens,
        settle_window_min=settle_window_min,
        settle_window_max=settle_window_max,
        participant_deposit_limit=participant_deposit_limit,
        network_deposit_limit=network_deposit_limit,
    )
    path = manifest_path(chain_id, deployments_dir)
    click.echo(
        f"network  {provider.network.ecosystem.name}:{provider.network.name}:"
        f"{provider.name} (chain id {chain_id})"
    )
    click.echo(f"account  {account.address}  balance {account.balance / 10**18:.6f} ETH")
    click.echo(f"manifest {path}")
    if chain_id == MAINNET_CHAIN_ID:
        click.secho("This is Ethereum MAINNET: every transaction costs real ether.", fg="red")
    # On development chains nothing is at stake: no questions there.
    sender = ApeSender(account, provider, confirm=chain_id not in DEV_CHAIN_IDS and not yes)
    try:
        result = deploy(provider.web3, sender, config, path, click.echo)
    except DeployError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        sender.close()
    verb = "written" if result.changed else "unchanged (everything reused)"
    click.echo(f"manifest {result.path} {verb}")
