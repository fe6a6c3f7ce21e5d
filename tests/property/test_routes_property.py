"""Property test of offchain.protocol.routes: the fast search against brute force.

On small random channel graphs (random capacities both ways, random fee schedules with
imbalance terms, random exclusions, penalties, fee budgets and hop limits), every simple
path from payer to target is enumerated and priced with `fees.hop_amounts`, the public
fee arithmetic, independently of the search's inlined copy. The fast search must return
a route exactly as cheap (cost, then hops) as the cheapest enumerated one, every route it
returns must be feasible and priced as brute force prices it, and when there is none the
reason must be the one brute force gives.

A second generator plants a loop that pays (a mediator earning rebates on two channels,
so that passing it twice costs less than passing once): there the cheapest walk is not a
route, and the exact search over simple routes must find what brute force finds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from offchain.protocol.fees import (
    MAX_IMBALANCE_PPM,
    ChannelBalance,
    FeeSchedule,
    MediatorHop,
    hop_amounts,
)
from offchain.protocol.routes import (
    ChannelEdge,
    ChannelGraph,
    EdgeKey,
    NoRouteReason,
    Route,
    find_routes,
)
from offchain.protocol.types import Address, TokenAmount

NODES = [Address(bytes([n + 1]) * 20) for n in range(7)]


@dataclass(frozen=True)
class Case:
    edges: tuple[ChannelEdge, ...]
    source: Address
    target: Address
    amount: int
    exclude_nodes: tuple[Address, ...]
    exclude_edges: tuple[EdgeKey, ...]
    penalties: Mapping[Address | EdgeKey, int]
    max_fee: int | None
    max_hops: int


schedules = st.builds(
    FeeSchedule,
    flat=st.integers(0, 4),
    proportional_ppm=st.sampled_from([0, 0, 1, 9_999, 100_000, 350_000, 1_000_000]),
    imbalance_ppm=st.sampled_from([0, 0, 1, 50_000, 200_000, 499_999, 500_000]),
)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    size = draw(st.integers(3, 7))
    nodes = NODES[:size]
    pairs = [(a, b) for i, a in enumerate(nodes) for b in nodes[i + 1 :]]
    chosen = [pair for pair in pairs if draw(st.integers(0, 9)) < 6]
    capacity = st.integers(0, 150).map(TokenAmount)
    edges = tuple(
        ChannelEdge(a, b, draw(capacity), draw(capacity), draw(schedules), draw(schedules))
        for a, b in chosen
    )
    source, target = draw(st.permutations(nodes))[:2]
    directions = [(e.a, e.b) for e in edges] + [(e.b, e.a) for e in edges]
    # The direct channel, when there is one, is often excluded: routes with mediators are
    # what the search is for.
    excluded = [(source, target)] if draw(st.booleans()) else []
    if directions:
        excluded += draw(st.lists(st.sampled_from(directions), max_size=2))
    penalty_keys: list[Address | EdgeKey] = [*nodes, *directions]
    return Case(
        edges=edges,
        source=source,
        target=target,
        amount=draw(st.integers(1, 40)),
        exclude_nodes=tuple(draw(st.lists(st.sampled_from(nodes), max_size=1))),
        exclude_edges=tuple(excluded),
        penalties=draw(st.dictionaries(st.sampled_from(penalty_keys), st.integers(0, 9)))
        if draw(st.booleans())
        else {},
        max_fee=draw(st.none() | st.none() | st.integers(0, 30)),
        max_hops=draw(st.integers(1, 6)),
    )


@st.composite
def looped_cases(draw: st.DrawFn) -> Case:
    """S-X-Y-Z-X-T, X steep on X-Y (it holds most) and Z-X (Z holds most), plus noise."""
    s, x, y, z, t, e1, e2 = NODES
    steep = FeeSchedule(imbalance_ppm=draw(st.sampled_from([MAX_IMBALANCE_PPM, 400_000])))

    def small() -> FeeSchedule:
        return FeeSchedule(flat=draw(st.integers(0, 2)))

    def capacity(low: int, high: int) -> TokenAmount:
        return TokenAmount(draw(st.integers(low, high)))

    x_to_t = FeeSchedule(flat=draw(st.integers(0, 20)))
    edges = [
        ChannelEdge(s, x, capacity(50, 150), capacity(0, 150), small(), small()),
        ChannelEdge(x, y, capacity(60, 150), capacity(0, 20), steep, small()),
        ChannelEdge(y, z, capacity(50, 150), capacity(0, 150), small(), small()),
        ChannelEdge(z, x, capacity(50, 150), capacity(0, 20), small(), steep),
        ChannelEdge(x, t, capacity(50, 150), capacity(0, 150), x_to_t, small()),
    ]
    for a, b in [(s, e1), (e1, t), (y, e2), (e2, t), (s, z), (e1, e2)]:
        if draw(st.booleans()):
            edges.append(
                ChannelEdge(
                    a, b, capacity(0, 150), capacity(0, 150), draw(schedules), draw(schedules)
                )
            )
    return Case(
        edges=tuple(edges),
        source=s,
        target=t,
        amount=draw(st.integers(20, 50)),
        exclude_nodes=(),
        exclude_edges=(),
        penalties={},
        max_fee=None,
        max_hops=draw(st.integers(3, 7)),
    )


def _channels(case: Case) -> dict[EdgeKey, tuple[int, FeeSchedule]]:
    """(payer, payee) -> (payer's capacity towards payee, payer's schedule)."""
    known: dict[EdgeKey, tuple[int, FeeSchedule]] = {}
    for e in case.edges:
        known[(e.a, e.b)] = (e.capacity_ab, e.schedule_ab)
        known[(e.b, e.a)] = (e.capacity_ba, e.schedule_ba)
    return known


def _simple_paths(case: Case, limit: int) -> list[list[Address]]:
    channels = _channels(case)
    found: list[list[Address]] = []

    def extend(path: list[Address]) -> None:
        if path[-1] == case.target:
            found.append(path)
            return
        if len(path) - 1 >= limit:
            return
        for a, b in channels:
            if a == path[-1] and b not in path:
                extend([*path, b])

    extend([case.source])
    return found


def _price(case: Case, path: list[Address]) -> tuple[tuple[TokenAmount, ...], int] | None:
    """Brute force: the amounts along `path` (fees.hop_amounts) and its penalty, or None."""
    channels = _channels(case)
    hops = []
    for previous, mediator, following in zip(path, path[1:], path[2:], strict=False):
        hops.append(
            MediatorHop(
                schedule_in=channels[(mediator, previous)][1],
                schedule_out=channels[(mediator, following)][1],
                balance_in=ChannelBalance(
                    TokenAmount(channels[(mediator, previous)][0]),
                    TokenAmount(channels[(previous, mediator)][0]),
                ),
                balance_out=ChannelBalance(
                    TokenAmount(channels[(mediator, following)][0]),
                    TokenAmount(channels[(following, mediator)][0]),
                ),
            )
        )
    if channels[(path[-2], path[-1])][0] < case.amount:
        return None
    amounts = hop_amounts(case.amount, hops)
    if amounts is None or amounts[0] > channels[(path[0], path[1])][0]:
        return None
    penalty = sum(case.penalties.get(node, 0) for node in path[1:-1])
    penalty += sum(case.penalties.get(key, 0) for key in pairwise(path))
    return amounts, penalty


def _allowed(case: Case, path: list[Address]) -> bool:
    if any(node in case.exclude_nodes for node in path[1:-1]):
        return False
    return not any(key in case.exclude_edges for key in pairwise(path))


def _brute_force(case: Case, with_budget: bool = True) -> list[tuple[int, int]]:
    """(cost, hops) of every feasible allowed simple path, sorted."""
    priced = []
    for path in _simple_paths(case, case.max_hops):
        if not _allowed(case, path):
            continue
        price = _price(case, path)
        if price is None:
            continue
        amounts, penalty = price
        fee = amounts[0] - case.amount
        if with_budget and case.max_fee is not None and fee > case.max_fee:
            continue
        priced.append((fee + penalty, len(path) - 1))
    return sorted(priced)


def _check_route(case: Case, route: Route) -> None:
    path = list(route.nodes)
    assert path[0] == case.source and path[-1] == case.target
    assert len(set(path)) == len(path), "routes are simple"
    assert route.hops <= case.max_hops
    assert _allowed(case, path)
    price = _price(case, path)
    assert price is not None, "every channel carries what crosses it"
    amounts, penalty = price
    assert route.amounts == amounts
    assert route.fee == amounts[0] - case.amount
    assert route.penalty == penalty
    if case.max_fee is not None:
        assert route.fee <= case.max_fee


def _check(case: Case) -> None:
    graph = ChannelGraph.from_edges(case.edges)
    result = find_routes(
        graph,
        case.source,
        case.target,
        case.amount,
        k=3,
        exclude_nodes=case.exclude_nodes,
        exclude_edges=case.exclude_edges,
        penalties=case.penalties,
        max_fee=case.max_fee,
        max_hops=case.max_hops,
    )
    expected = _brute_force(case)
    for route in result.routes:
        _check_route(case, route)
    costs = [(route.cost, route.hops) for route in result.routes]
    assert costs == sorted(costs)
    assert len({route.nodes for route in result.routes}) == len(result.routes)
    if expected:
        assert result.reason is None
        assert costs[0] == expected[0]
        return
    assert result.routes == ()
    if case.max_fee is not None and _brute_force(case, with_budget=False):
        assert result.reason is NoRouteReason.FEE_TOO_HIGH
    elif any(_allowed(case, path) for path in _simple_paths(case, case.max_hops)):
        assert result.reason is NoRouteReason.CAPACITY
    else:
        assert result.reason is NoRouteReason.NO_ROUTE


# Cheap examples (a few ms): many more than the CI profile's default, more again in fuzz.
@settings(max_examples=max(300, settings.default.max_examples))
@given(cases())
def test_best_route_matches_brute_force(case: Case) -> None:
    _check(case)


@settings(max_examples=max(200, settings.default.max_examples))
@given(looped_cases())
def test_loops_that_pay__best_simple_route_matches_brute_force(case: Case) -> None:
    _check(case)
