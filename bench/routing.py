"""Route-query latency of `offchain.protocol.routes` on a large random channel graph.

Belongs here: building a seeded random graph of 15,000 nodes and 60,000 channels shaped
like a payment network, and timing route queries on it with `time.perf_counter`.
`bench.run` merges `measure()` into bench/results.json; ``python -m bench.routing``
prints the figures. The randomness is a seeded `random.Random`, here and never inside
`offchain`.

The graph: preferential attachment (each new node opens four channels to nodes picked in
proportion to their channel count, so a few hubs hold hundreds of channels while most
nodes hold four or five, as in Lightning's graph); capacities log-normal around 10**8
base units, a third funded by one side only; fee schedules like Lightning's (a quarter
with no flat fee, the rest a small one; a median proportional fee of 400 ppm) and one in
five with an imbalance term of 10-50% of its proportional fee. The queries: a random payer
and target, an amount log-normal around 10**6 (1% of a median channel), the defaults of
`find_routes` (k=3, eight hops at most, no fee budget).
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from dataclasses import dataclass

from offchain.protocol.fees import FeeSchedule
from offchain.protocol.routes import ChannelEdge, ChannelGraph, find_routes
from offchain.protocol.types import Address, TokenAmount

NODES = 15_000
CHANNELS = 60_000
QUERIES = 200
SEED = 20_240_601


@dataclass(frozen=True, slots=True)
class Query:
    source: Address
    target: Address
    amount: int


def _schedule(rng: random.Random) -> FeeSchedule:
    flat = 0 if rng.random() < 0.25 else int(rng.lognormvariate(5.0, 1.0))  # median ~150
    proportional = min(int(rng.lognormvariate(6.0, 0.8)), 1_000_000)  # median ~400 ppm
    imbalance = 0
    if rng.random() < 0.2:
        imbalance = int(proportional * rng.uniform(0.1, 0.5))
    return FeeSchedule(flat, proportional, imbalance)


def _capacities(rng: random.Random) -> tuple[int, int]:
    total = int(rng.lognormvariate(18.4, 1.5))  # median ~10**8 base units
    shape = rng.random()
    if shape < 0.25:  # funded by its opener only, nothing sent back yet
        return total, 0
    if shape < 0.35:
        return 0, total
    own = rng.randint(0, total)
    return own, total - own


def build_edges(
    rng: random.Random, nodes: int = NODES, channels: int = CHANNELS
) -> tuple[list[Address], list[ChannelEdge]]:
    """The channels of a preferential-attachment graph, with random capacities and fees."""
    addresses = [Address(rng.randbytes(20)) for _ in range(nodes)]
    per_node = channels // nodes
    pairs: set[tuple[int, int]] = set()
    ends: list[int] = []  # every channel end once: a uniform pick from it is by degree
    seeds = per_node + 1
    for a in range(seeds):
        for b in range(a + 1, seeds):
            pairs.add((a, b))
            ends += (a, b)
    for new in range(seeds, nodes):
        chosen: set[int] = set()
        while len(chosen) < per_node:
            chosen.add(rng.choice(ends))
        for old in sorted(chosen):
            pairs.add((old, new))
            ends += (old, new)
    while len(pairs) < channels:
        a, b = sorted(rng.sample(range(nodes), 2))
        pairs.add((a, b))
    edges = []
    for a, b in sorted(pairs):
        cap_ab, cap_ba = _capacities(rng)
        edges.append(
            ChannelEdge(
                addresses[a],
                addresses[b],
                TokenAmount(cap_ab),
                TokenAmount(cap_ba),
                _schedule(rng),
                _schedule(rng),
            )
        )
    return addresses, edges


def build_queries(rng: random.Random, addresses: list[Address], count: int) -> list[Query]:
    """Random payer and target; an amount log-normal around 10**6."""
    queries = []
    for _ in range(count):
        source, target = rng.sample(addresses, 2)
        queries.append(Query(source, target, max(1, int(rng.lognormvariate(13.8, 1.2)))))
    return queries


def _percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def measure(seed: int = SEED, queries: int = QUERIES) -> dict[str, float]:
    """Build the graph, time `queries` route queries, return the figures.

    p50 and p95 of one `find_routes` call (k=3) in milliseconds; the seconds to build the
    `ChannelGraph` from its edges; the share of queries that found a route and the mean
    number of candidates they returned.
    """
    rng = random.Random(seed)
    addresses, edges = build_edges(rng)
    gc.collect()
    start = time.perf_counter()
    graph = ChannelGraph.from_edges(edges)
    build_s = time.perf_counter() - start
    times: list[float] = []
    found = candidates = 0
    for query in build_queries(rng, addresses, queries):
        start = time.perf_counter()
        result = find_routes(graph, query.source, query.target, query.amount)
        times.append((time.perf_counter() - start) * 1000.0)
        found += result.best is not None
        candidates += len(result.routes)
    times.sort()
    return {
        "routing.p50_ms_15k_nodes": round(statistics.median(times), 3),
        "routing.p95_ms_15k_nodes": round(_percentile(times, 0.95), 3),
        "routing.graph_build_s_15k_nodes": round(build_s, 3),
        "routing.found_share_15k_nodes": round(found / len(times), 3),
        "routing.candidates_mean_15k_nodes": round(candidates / max(found, 1), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.routing", description=__doc__)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--queries", type=int, default=QUERIES)
    args = parser.parse_args(argv)
    figures = measure(args.seed, args.queries)
    print("\n".join(f"{name:40s} {value:>10}" for name, value in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
