"""Compile the contracts the node needs and write them to offchain/chain/artifacts/.

Belongs here: the one definition of how a shipped artifact is built (which contracts,
which compiler settings, which fields), used by `make artifacts` and by
tests/unit/test_artifacts.py, which compiles afresh and compares. Run it after any change
to contracts/: `make artifacts` (or `python -m scripts.build_artifacts`).

Does not belong here: deployment (scripts/deployer.py) or loading the artifacts at run
time (offchain/chain/artifacts.py, which must not import vyper).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import vyper
from vyper.compiler import compile_from_file_input
from vyper.compiler.input_bundle import FilesystemInputBundle
from vyper.compiler.settings import OptimizationLevel, Settings

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = ROOT / "contracts"
ARTIFACTS = ROOT / "offchain" / "chain" / "artifacts"

# Artifact name -> source path under contracts/. The names are those of
# offchain.chain.artifacts.ARTIFACT_NAMES.
SOURCES = {
    "secret_registry": "secret_registry.vy",
    "token_network": "token_network.vy",
    "token_network_registry": "token_network_registry.vy",
    "test_token": "test/test_token.vy",
}
COMPILER = f"vyper-{vyper.__version__.split('+')[0]}"
EXPECTED_COMPILER = "vyper-0.4.3"
# Pinned rather than left to the compiler's default, so that a compiler upgrade can not
# silently change the target fork. Prague is live on mainnet and the public testnets
# since May 2025 and is what anvil runs by default.
EVM_VERSION = "prague"
OPTIMIZE = OptimizationLevel.GAS
_OUTPUTS = ["abi", "bytecode", "bytecode_runtime", "layout", "integrity"]


def compile_contract(name: str) -> dict[str, Any]:
    """Compile contracts/<SOURCES[name]> and return the artifact as a JSON-ready dict.

    The source is loaded through a filesystem input bundle rooted at contracts/, so the
    relative interface imports (`from .interfaces import ...`) resolve as ape resolves them.
    """
    if COMPILER != EXPECTED_COMPILER:
        raise RuntimeError(f"artifacts are built with {EXPECTED_COMPILER}, found {COMPILER}")
    relative = SOURCES[name]
    bundle = FilesystemInputBundle([CONTRACTS])
    file_input = bundle.load_file(relative)
    settings = Settings(optimize=OPTIMIZE, evm_version=EVM_VERSION)
    out = compile_from_file_input(
        file_input, input_bundle=bundle, settings=settings, output_formats=_OUTPUTS
    )
    code_layout = out["layout"].get("code_layout") or {}
    immutables_size = sum(int(entry["length"]) for entry in code_layout.values())
    source = (CONTRACTS / relative).read_bytes()
    return {
        "contract": name,
        "compiler": COMPILER,
        "source": f"contracts/{relative}",
        "source_sha256": hashlib.sha256(source).hexdigest(),
        # vyper's integrity hash covers the source and every file it imports.
        "integrity": out["integrity"],
        "evm_version": EVM_VERSION,
        "optimize": OPTIMIZE.name.lower(),
        "abi": out["abi"],
        "bytecode": out["bytecode"],
        "runtime_bytecode": out["bytecode_runtime"],
        "immutables_size": immutables_size,
    }


def render(artifact: dict[str, Any]) -> str:
    """The exact text written to an artifact file (stable, so rebuilds give no diff)."""
    return json.dumps(artifact, indent=1, sort_keys=True) + "\n"


def build(names: list[str], out_dir: Path = ARTIFACTS) -> list[Path]:
    """Compile `names` and write `<out_dir>/<name>.json`; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        path = out_dir / f"{name}.json"
        path.write_text(render(compile_contract(name)), encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"any of {', '.join(SOURCES)} (default: all)")
    parser.add_argument("--out", type=Path, default=ARTIFACTS, help="output folder")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(SOURCES))
    if unknown:
        parser.error(f"unknown contract(s): {', '.join(unknown)}")
    for path in build(args.names or list(SOURCES), args.out):
        artifact = json.loads(path.read_text())
        size = len(artifact["runtime_bytecode"]) // 2 - 1
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        print(f"wrote {shown}  runtime {size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
