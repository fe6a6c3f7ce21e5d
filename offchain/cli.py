"""The `smartmesh` command line: argument parsing and printing only.

Belongs here: subcommands that call into the packages and print results: `contracts`,
`relay` (a standalone mesh relay, whose flags and logic live in `mesh_relay.cli`),
`account new|import|list` (over `offchain.node.keystore`), `config sample|show` (over
`offchain.node.config`), and the commands that drive a running node through its HTTP API
(`status`, `channel`, `pay`, `payments`, in `offchain.cli_client`). Later issues add
`node`; each subcommand stays a thin shell over a service. A refusal of the packages
(`NodeError`) prints one line on stderr and exits with status 1; a usage error exits with
2, as argparse does.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from mesh_relay import cli as relay_cli
from offchain import cli_client
from offchain.chain.artifacts import ARTIFACT_NAMES, load_artifact
from offchain.node import config as node_config
from offchain.node import keystore
from offchain.node.errors import InvalidKey, NodeError, WrongPassword


def _version() -> str:
    try:
        return version("smartmesh")
    except PackageNotFoundError:  # running from a source tree without `pip install -e .`
        return "0+unknown"


def _cmd_contracts(_: argparse.Namespace) -> int:
    rows = {}
    for name in ARTIFACT_NAMES:
        artifact = load_artifact(name)
        rows[name] = {
            "compiler": artifact.compiler,
            "runtime_bytes": len(artifact.runtime_bytecode),
            "abi_sha256": artifact.abi_sha256,
            "source_sha256": artifact.source_sha256,
        }
    print(json.dumps(rows, indent=2))
    return 0


def _keystore_of(args: argparse.Namespace) -> Path:
    given: Path | None = args.keystore
    return given.expanduser() if given is not None else keystore.default_keystore()


def _cmd_account_new(args: argparse.Namespace) -> int:
    password = keystore.read_password(
        args.password_file, confirm=True, purpose="Password for the new key"
    )
    account = keystore.new_account(_keystore_of(args), password, light=args.lightkdf)
    print(f"{account.checksum} {account.path}")
    return 0


def _import_source(text: str | None) -> str | Path:
    if text is None:
        if not sys.stdin.isatty():
            raise InvalidKey("no SOURCE: give a key file, or '-' and the key in hex on stdin")
        return getpass.getpass("Private key (64 hex digits): ")
    if text == "-":
        return sys.stdin.readline()
    if keystore.looks_like_private_key(text) and not Path(text).exists():
        raise InvalidKey(
            "a private key on the command line stays in the shell history and shows in "
            "ps: put it in a file, or pass '-' and write it to stdin, or leave SOURCE "
            "out to be asked"
        )
    return Path(text)


def _cmd_account_import(args: argparse.Namespace) -> int:
    source = _import_source(args.source)
    source_password = None
    if args.keyfile_password_file is not None:
        source_password = keystore.read_password(args.keyfile_password_file)
    elif (
        isinstance(source, Path)
        and keystore.looks_like_keyfile(source)
        and args.password_file is None
        and keystore.PASSWORD_ENV not in os.environ
        and sys.stdin.isatty()
    ):
        # At a terminal, ask for the file's own password; elsewhere it is the new one.
        source_password = getpass.getpass(f"Password of {source}: ")
    password = keystore.read_password(
        args.password_file, confirm=True, purpose="Password for the imported key"
    )
    try:
        account = keystore.import_key(
            _keystore_of(args),
            source,
            password,
            source_password=source_password,
            light=args.lightkdf,
        )
    except WrongPassword as exc:
        if source_password is not None:
            raise
        raise WrongPassword(f"{exc} (its own password: --keyfile-password-file)") from None
    print(f"{account.checksum} {account.path}")
    return 0


def _cmd_account_list(args: argparse.Namespace) -> int:
    directory = _keystore_of(args)
    found = keystore.scan(directory)
    for item in found.skipped:
        print(f"note: skipped {item.path}: {item.reason}", file=sys.stderr)
    if not found.accounts:
        print(f"no accounts in {directory}", file=sys.stderr)
    for account in found.accounts:
        print(f"{account.checksum} {account.path}")
    return 0


def _add_account_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--keystore",
        type=Path,
        metavar="DIR",
        help=f"keystore directory (default {keystore.DEFAULT_KEYSTORE}) [{keystore.KEYSTORE_ENV}]",
    )
    secret = argparse.ArgumentParser(add_help=False)
    secret.add_argument(
        "--password-file",
        type=Path,
        metavar="PATH",
        help=f"file whose first line is the password (else {keystore.PASSWORD_ENV}, "
        "else asked on the terminal)",
    )
    secret.add_argument(
        "--lightkdf",
        action="store_true",
        help="cheap key derivation (scrypt n=2**14): for tests and throwaway keys only",
    )
    account = commands.add_parser(
        "account",
        help="the node's keys: encrypted key files (keystore v3, as geth and ape write them)",
        description="Create, import and list the node's keys (docs/operator.md §12).",
    )
    sub = account.add_subparsers(dest="account_command", required=True)
    new = sub.add_parser("new", parents=[where, secret], help="create a key from randomness")
    new.set_defaults(handler=_cmd_account_new)
    imported = sub.add_parser(
        "import",
        parents=[where, secret],
        help="store an existing key (a keystore file, or a key in hex)",
    )
    imported.add_argument(
        "source",
        nargs="?",
        metavar="SOURCE",
        help="a keystore v3 file (geth, ape) or a file holding the key in hex; '-' reads "
        "the key in hex from stdin; left out, the key is asked for on the terminal",
    )
    imported.add_argument(
        "--keyfile-password-file",
        type=Path,
        metavar="PATH",
        help="password of a keystore SOURCE (default: the same as the new password)",
    )
    imported.set_defaults(handler=_cmd_account_import)
    listed = sub.add_parser("list", parents=[where], help="list the keystore's accounts")
    listed.set_defaults(handler=_cmd_account_list)


def _cmd_config_sample(_: argparse.Namespace) -> int:
    print(node_config.sample_toml(), end="")
    return 0


def _cmd_config_show(args: argparse.Namespace) -> int:
    config, sources = node_config.resolve(args)
    header = "# The settings in force, each with its source; secrets hidden."
    print(node_config.render_toml(config, sources=sources, header=header), end="")
    return 0


def _add_config_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = commands.add_parser(
        "config",
        help="the payment node's settings (node.toml, flags, SMARTMESH_* variables)",
        description="The payment node's settings (docs/node.example.toml).",
    )
    sub = config.add_subparsers(dest="config_command", required=True)
    sample = sub.add_parser("sample", help="print a node.toml with every setting's default")
    sample.set_defaults(handler=_cmd_config_sample)
    show = sub.add_parser(
        "show", help="check the settings and print those in force, with where each came from"
    )
    node_config.add_arguments(show)
    show.set_defaults(handler=_cmd_config_show)


def _cmd_node(args: argparse.Namespace) -> int:
    from offchain.node import main as node_main  # noqa: PLC0415 -- heavy: web3, aiohttp

    return node_main.run(args, node_config.load(args))


def _add_node_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    node = commands.add_parser(
        "node",
        help="run a payment node (channels, payments, mediation; HTTP API)",
        description="Run a SmartMesh payment node (docs/operator.md).",
    )
    node_config.add_arguments(node)
    node.set_defaults(handler=_cmd_node)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smartmesh", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"smartmesh {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    contracts = commands.add_parser(
        "contracts", help="show the compiled contracts this package ships"
    )
    contracts.set_defaults(handler=_cmd_contracts)
    relay = commands.add_parser(
        "relay",
        help="run a mesh relay node (UDP discovery, TCP peers, store and forward)",
        description="Run a SmartMesh relay node (docs/operator.md, 'Running a relay').",
    )
    relay_cli.add_arguments(relay)
    relay.set_defaults(handler=lambda args: relay_cli.run(args, relay))
    _add_account_commands(commands)
    _add_config_commands(commands)
    _add_node_command(commands)
    cli_client.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = args.handler
    try:
        result: int = handler(args)
    except NodeError as exc:
        print(f"smartmesh {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
