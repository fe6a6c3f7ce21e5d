"""`make demo`: start anvil, deploy the way an operator would, then pay across five nodes.

Belongs here: the demo's choreography only. It starts a real anvil on a free port
(scripts.anvil), runs `ape run deploy --network ethereum:local:foundry` against it (the
operator's command, pointed at this anvil with APE_FOUNDRY_HOST), reads the manifest the
deployment wrote and prints every contract with its address, block and the gas of its
transaction, then stops anvil. `--web3` deploys in-process through the same
scripts.deployer logic without ape (what the integration tests do).

Then the payment demo (scripts.demo_payments): five `smartmesh node` processes on that
chain, payments across them with fees, a node killed mid-payment, everything settled and
checked. `--deploy-only` stops after the deployment.

The manifest goes to .demo/deployments/31337.json, not deployments/, so the demo never
overwrites the manifest of an anvil you run yourself.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from web3 import Web3

from scripts import demo_payments
from scripts.anvil import DEV_PRIVATE_KEYS, Anvil
from scripts.deployer import Web3Sender, deploy, manifest_path

ROOT = Path(__file__).resolve().parents[1]
DEMO_DEPLOYMENTS = ROOT / ".demo" / "deployments"


def ape_environment(anvil_url: str) -> dict[str, str]:
    """The environment `ape` needs here: the project's data folder, tools on PATH, and
    ape-foundry pointed at `anvil_url` instead of starting an anvil of its own."""
    env = dict(os.environ)
    env["APE_DATA_FOLDER"] = env.get("APE_DATA_FOLDER") or str(ROOT / ".ape")
    tool_paths = [str(ROOT / ".venv" / "bin"), str(ROOT / "tools" / "node_modules" / ".bin")]
    env["PATH"] = os.pathsep.join([*tool_paths, env.get("PATH", "")])
    env["APE_FOUNDRY_HOST"] = anvil_url
    return env


def ape_executable() -> str:
    candidate = ROOT / ".venv" / "bin" / "ape"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("ape")
    if found is None:
        raise SystemExit("ape not found: run `make install`")
    return found


def run_ape_deploy(
    anvil_url: str, deployments_dir: Path, extra: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `ape run deploy` against the anvil at `anvil_url`; return the finished process."""
    command = [
        ape_executable(),
        "run",
        "deploy",
        "--network",
        "ethereum:local:foundry",
        "--deployments-dir",
        str(deployments_dir),
        *(extra or []),
    ]
    return subprocess.run(
        command,
        cwd=ROOT,
        env=ape_environment(anvil_url),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def describe(manifest: dict[str, Any], path: Path) -> str:
    """A readable table of a manifest: contracts, token networks, gas."""
    lines = [
        f"chain id      {manifest['chain_id']}",
        f"compiler      {manifest['compiler']}",
        f"deployer      {manifest['deployer']}",
        f"settle window floor {manifest['settle_window_floor']} s, "
        f"ceiling {manifest['settle_window_ceiling']} s",
        "",
        f"  {'contract':<28}{'address':<44}{'block':>6}{'gas used':>12}",
    ]
    total = 0
    for name, entry in manifest["contracts"].items():
        gas = int(entry.get("gas_used") or 0)
        total += gas
        lines.append(f"  {name:<28}{entry['address']:<44}{entry['block']:>6}{gas:>12,}")
    for token, entry in manifest.get("token_network_deployments", {}).items():
        gas = int(entry.get("gas_used") or 0)
        total += gas
        label = f"TokenNetwork({entry.get('token_symbol') or token[:10]})"
        block = entry.get("block") or "?"
        lines.append(f"  {label:<28}{entry['address']:<44}{block:>6}{gas:>12,}")
    lines += [
        f"  {'total':<78}{total:>12,}",
        "",
        "token networks (token -> network):",
        *(f"  {token} -> {network}" for token, network in manifest["token_networks"].items()),
        "",
        f"manifest      {path}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--web3", action="store_true", help="deploy without ape, through web3")
    parser.add_argument("--verbose", "-v", action="store_true", help="show ape's output")
    parser.add_argument(
        "--deploy-only", action="store_true", help="stop after the deployment (no payments)"
    )
    args = parser.parse_args(argv)

    DEMO_DEPLOYMENTS.mkdir(parents=True, exist_ok=True)
    with Anvil.start() as node:
        print(f"anvil {node.url} (chain id {node.chain_id}, pid {node.process.pid})")
        path = manifest_path(node.chain_id, DEMO_DEPLOYMENTS)
        # A fresh anvil holds nothing: start from an empty manifest.
        path.unlink(missing_ok=True)
        started = time.monotonic()
        if args.web3:
            print("deploying through web3 (scripts.deployer) ...")
            w3 = Web3(Web3.HTTPProvider(node.url))
            deploy(w3, Web3Sender(w3, DEV_PRIVATE_KEYS[0]), path=path)
        else:
            print(
                "deploying: ape run deploy --network ethereum:local:foundry "
                f"(APE_FOUNDRY_HOST={node.url}) ..."
            )
            done = run_ape_deploy(node.url, DEMO_DEPLOYMENTS)
            if args.verbose or done.returncode != 0:
                print(done.stdout, done.stderr, sep="\n")
            if done.returncode != 0:
                print(f"ape run deploy failed with exit code {done.returncode}", file=sys.stderr)
                return 1
        elapsed = time.monotonic() - started
        manifest = json.loads(path.read_text(encoding="utf-8"))
        print(f"deployed in {elapsed:.1f} s\n")
        print(describe(manifest, path.relative_to(ROOT)))
        ok = True
        if not args.deploy_only:
            print("\n== payments: five nodes A-B-C-D-E, each its own process ==")
            work = ROOT / ".demo" / "nodes"
            shutil.rmtree(work, ignore_errors=True)
            token = next(iter(manifest["token_networks"]))
            ok = demo_payments.run(node.url, path, work, token)
            print(f"\n{'every balance checks out' if ok else 'BALANCES DO NOT MATCH'}; "
                  f"node logs in {work.relative_to(ROOT)}/*/node.log")  # fmt: skip
        print("\nstopping anvil: this chain, and the deployment on it, are gone after the demo.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
