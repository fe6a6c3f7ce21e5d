"""Entry point of `make bench`: measure, print the comparison, merge into bench/results.json.

Belongs here: starting a fresh anvil (scripts.anvil), running the gas scenario of
``bench.gas`` on it, printing the table (ours, Raiden's, target, ratio, OK/OVER) and, for
each operation over its target, where its gas goes; the protocol core (``bench.protocol``,
``bench.transfers``), route search (``bench.routing``), mesh relay (``bench.mesh``),
payment node (``bench.node``) and offline (``bench.offline``: blind nodes over lossy
links, the wave of deferred submissions) figures; then merging the figures into bench/results.json,
one flat JSON object of metric name -> number whose keys other benches may share (theirs
are kept). ``--only NAME`` (repeatable) runs some benches alone. ``--record`` also
rewrites gas.json, the figures the regression test holds the contracts to: use it when a
change of gas is intended.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench import gas, mesh, node, offline, protocol, routing, transfers
from scripts.anvil import Anvil

RESULTS = Path(__file__).resolve().with_name("results.json")
BENCHES = ("gas", "protocol", "routing", "mesh", "node", "offline")


def merge_results(path: Path, figures: dict[str, int | float]) -> dict[str, object]:
    """Write ``figures`` into the JSON object at ``path``, keeping its other keys."""
    merged: dict[str, object] = {}
    if path.exists():
        loaded = json.loads(path.read_text())
        if not isinstance(loaded, dict):
            raise SystemExit(f"{path}: not a JSON object; remove it or fix it")
        merged.update(loaded)
    merged.update(figures)
    path.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
    return merged


def _recorded(path: Path, name: str) -> float | None:
    """A figure of an earlier run in ``path``, if there is one."""
    if not path.exists():
        return None
    value = json.loads(path.read_text()).get(name)
    return float(value) if isinstance(value, int | float) else None


def record_gas_json(figures: dict[str, int]) -> None:
    """Rewrite gas.json with the twelve operations' measured gas."""
    recorded = {name: figures[name] for name in gas.OPERATIONS}
    gas.GAS_JSON.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON file to merge into")
    parser.add_argument("--record", action="store_true", help="also rewrite gas.json")
    parser.add_argument(
        "--no-breakdown", action="store_true", help="skip the traces of operations over target"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=BENCHES,
        help="run only this bench (repeatable; default: all)",
    )
    args = parser.parse_args(argv)
    selected = set(args.only or BENCHES)
    if args.record and "gas" not in selected:
        parser.error("--record needs the gas bench")
    figures: dict[str, int | float] = {}
    if "gas" in selected:
        figures.update(_gas(args))
    if "protocol" in selected:
        core = protocol.measure() | transfers.measure()
        print("\nProtocol core (no I/O, one core)\n")
        print("\n".join(f"{name:48s} {value:>12,}" for name, value in core.items()))
        figures.update(core)
    if "routing" in selected:
        routes = routing.measure()
        print("\n".join(f"{name:48s} {value:>12,}" for name, value in routes.items()))
        figures.update(routes)
    if "mesh" in selected:
        print("\nMesh relay (five processes on loopback; the simulator)\n")
        relay = mesh.measure()
        print("\n".join(f"{name:48s} {value:>12,}" for name, value in relay.items()))
        figures.update(relay)
    if "node" in selected:
        print("\nPayment nodes (four processes on loopback, anvil, SQLite synchronous=FULL)\n")
        nodes = node.measure()
        print("\n".join(f"{name:48s} {value:>12,}" for name, value in nodes.items()))
        figures.update(nodes)
    if "offline" in selected:
        print("\nOffline (blind nodes, 10 % loss on every mesh link; a wave of 100 updates)\n")
        blind = offline.measure()
        print("\n".join(f"{name:48s} {value:>12,}" for name, value in blind.items()))
        online = figures.get("node.mediated_3hop_payments_per_s") or _recorded(
            args.results, "node.mediated_3hop_payments_per_s"
        )
        if online:
            ratio = blind["offline.mediated_3hop_payments_per_s"] / online
            print(f"  blind over online 3-hop payments: {ratio:.2f} (target 0.5; online {online})")
        figures.update(blind)
    merge_results(args.results, figures)
    print(f"\nmerged {len(figures)} figures into {args.results}")
    return 0


def _gas(args: argparse.Namespace) -> dict[str, int]:
    """The gas scenario on a fresh anvil: the table, the breakdowns, ``--record``."""
    with Anvil.start() as node:
        run = gas.measure(node.url)
        print("Gas on anvil (scenario of raiden-contracts' gas test; see docs/gas.md)\n")
        print("\n".join(gas.table(run.gas, gas.METRICS)))
        over = gas.over_target(run.gas)
        if over:
            print(f"\n{len(over)} operation(s) over target:")
            for name, excess in over.items():
                print(f"  {name}: {run.gas[name]:,} > {gas.TARGETS[name]:,} by {excess:,}")
        if over and not args.no_breakdown:
            names = gas.names_of(run)
            for name in over:
                print(f"\n{name}")
                found = gas.breakdown(node.url, run.tx_hashes[name], names)
                print("\n".join("  " + line for line in found.lines()))
    if args.record:
        record_gas_json(run.gas)
        print(f"recorded the twelve operations in {gas.GAS_JSON}")
    return dict(run.gas)


if __name__ == "__main__":
    sys.exit(main())
