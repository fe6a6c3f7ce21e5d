"""The `smartmesh` command line: argument parsing and printing only.

Belongs here: subcommands that call into the packages and print results: `contracts`,
`relay` (a standalone mesh relay, whose flags and logic live in `mesh_relay.cli`), and the
commands that drive a running node through its HTTP API (`status`, `channel`, `pay`,
`payments`, in `offchain.cli_client`). Each subcommand stays a thin shell over a service.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from mesh_relay import cli as relay_cli
from offchain import cli_client
from offchain.chain.artifacts import ARTIFACT_NAMES, load_artifact


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
    cli_client.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = args.handler
    result: int = handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
