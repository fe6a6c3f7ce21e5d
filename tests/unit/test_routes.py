"""Unit tests of offchain.protocol.routes: choosing routes on small hand-made graphs.

Every expected amount is recomputed with `fees.hop_amounts`, the public fee arithmetic,
independently of the search's inlined copy. tests/property/test_routes_property.py holds
the search to brute force on random graphs.
"""

from __future__ import annotations

from itertools import pairwise

import pytest

from offchain.protocol import routes
from offchain.protocol.errors import ValidationError
from offchain.protocol.fees import (
    MAX_IMBALANCE_PPM,
    NO_FEES,
    ChannelBalance,
    FeeSchedule,
    MediatorHop,
    hop_amounts,
)
from offchain.protocol.routes import (
    ChannelEdge,
    ChannelGraph,
    NoRouteReason,
    Route,
    find_routes,
)
from offchain.protocol.types import Address, TokenAmount

A, B, C, D, E, F, S, T = (Address(bytes([n]) * 20) for n in b"ABCDEFST")
UNKNOWN = Address(b"\x99" * 20)
BIG = 10**9


def channel(
    a: Address,
    b: Address,
    ab: int = BIG,
    ba: int = BIG,
    fee_a: FeeSchedule = NO_FEES,
    fee_b: FeeSchedule = NO_FEES,
) -> ChannelEdge:
    return ChannelEdge(a, b, TokenAmount(ab), TokenAmount(ba), fee_a, fee_b)


def flat(fee: int) -> FeeSchedule:
    return FeeSchedule(flat=fee)


def expected_amounts(
    edges: list[ChannelEdge], nodes: tuple[Address, ...], amount: int
) -> tuple[TokenAmount, ...]:
    """`fees.hop_amounts` along `nodes`, from the channels as given."""
    side: dict[tuple[Address, Address], tuple[int, FeeSchedule]] = {}
    for e in edges:
        side[(e.a, e.b)] = (e.capacity_ab, e.schedule_ab)
        side[(e.b, e.a)] = (e.capacity_ba, e.schedule_ba)
    hops = [
        MediatorHop(
            side[(m, p)][1],
            side[(m, n)][1],
            ChannelBalance(TokenAmount(side[(m, p)][0]), TokenAmount(side[(p, m)][0])),
            ChannelBalance(TokenAmount(side[(m, n)][0]), TokenAmount(side[(n, m)][0])),
        )
        for p, m, n in zip(nodes, nodes[1:], nodes[2:], strict=False)
    ]
    amounts = hop_amounts(amount, hops)
    assert amounts is not None
    return amounts


def best(edges: list[ChannelEdge], amount: int = 1000, **options: object) -> Route:
    result = find_routes(ChannelGraph.from_edges(edges), S, T, amount, **options)  # type: ignore[arg-type]
    assert result.reason is None and result.best is not None, result
    route = result.best
    assert route.amounts == expected_amounts(edges, route.nodes, amount)
    return route


def reason(edges: list[ChannelEdge], amount: int = 1000, **options: object) -> NoRouteReason | None:
    result = find_routes(ChannelGraph.from_edges(edges), S, T, amount, **options)  # type: ignore[arg-type]
    assert result.routes == () or result.reason is None
    return result.reason


# --- the cheapest route -------------------------------------------------------------------


def test_direct_channel__no_fee() -> None:
    route = best([channel(S, T), channel(S, A, fee_a=flat(0)), channel(A, T)])
    assert route.nodes == (S, T)
    assert route.amounts == (1000,) and route.fee == 0 and route.hops == 1


def test_cheapest_mediator__chosen() -> None:
    edges = [
        channel(S, A),
        channel(A, T, fee_a=flat(7)),
        channel(S, B),
        channel(B, T, fee_a=flat(3)),
    ]
    route = best(edges)
    assert route.nodes == (S, B, T)
    assert route.fee == 3 and route.amount == 1003


def test_more_hops__when_cheaper() -> None:
    edges = [
        channel(S, A),
        channel(A, T, fee_a=flat(50)),
        channel(A, B, fee_a=flat(1)),
        channel(B, C, fee_a=flat(1)),
        channel(C, T, fee_a=flat(1)),
    ]
    assert best(edges).nodes == (S, A, B, C, T)
    # ... but not beyond the hop limit.
    assert best(edges, max_hops=3).nodes == (S, A, T)


def test_equal_fees__fewer_hops_first() -> None:
    edges = [
        channel(S, A),
        channel(A, B),
        channel(B, T),
        channel(S, C),
        channel(C, T),
    ]
    assert best(edges).nodes == (S, C, T)


def test_proportional_fees__on_the_forwarded_amount() -> None:
    one_percent = FeeSchedule(proportional_ppm=10_000)
    edges = [channel(S, A), channel(A, B, fee_a=one_percent), channel(B, T, fee_a=one_percent)]
    route = best(edges, amount=10_000)
    # B forwards 10,000 and keeps 100; A forwards 10,100 and keeps 101.
    assert route.amounts == (10_201, 10_100, 10_000)
    assert route.fee == 201


def test_fee_depends_on_amount__the_choice_too() -> None:
    edges = [
        channel(S, A),
        channel(A, T, fee_a=FeeSchedule(flat=100)),
        channel(S, B),
        channel(B, T, fee_a=FeeSchedule(proportional_ppm=10_000)),
    ]
    assert best(edges, amount=1_000).nodes == (S, B, T)  # 10 < 100
    assert best(edges, amount=100_000).nodes == (S, A, T)  # 100 < 1000


def test_imbalance__rebate_makes_a_route_cheaper() -> None:
    rebalancing = FeeSchedule(flat=40, imbalance_ppm=MAX_IMBALANCE_PPM)
    edges = [
        channel(S, A),
        channel(A, T, ab=1_000, ba=1_000, fee_a=FeeSchedule(flat=30)),
        channel(S, B),
        # B holds everything on its channel to T: forwarding there moves it back to balance.
        channel(B, T, ab=10_000, ba=0, fee_a=rebalancing),
    ]
    route = best(edges)
    assert route.nodes == (S, B, T)
    assert route.fee < 30


# --- capacity, in the right direction -----------------------------------------------------


def test_capacity__per_direction() -> None:
    # A can receive from S and T can send to A, but A cannot send to T.
    edges = [channel(S, A), channel(A, T, ab=0, ba=BIG)]
    assert reason(edges) is NoRouteReason.CAPACITY
    graph = ChannelGraph.from_edges(edges)
    backwards = find_routes(graph, T, S, 1000)
    assert backwards.best is not None and backwards.best.nodes == (T, A, S)


def test_capacity__covers_the_downstream_fees() -> None:
    # S -> A must carry 1000 plus A's fee of 5: a capacity of exactly 1000 is too little.
    edges = [channel(S, A, ab=1_000), channel(A, T, fee_a=flat(5))]
    assert reason(edges) is NoRouteReason.CAPACITY
    edges.append(channel(S, B, ab=1_005))
    edges.append(channel(B, T, fee_a=flat(5)))
    route = best(edges)
    assert route.nodes == (S, B, T) and route.amount == 1_005


def test_capacity__last_channel_carries_the_amount() -> None:
    edges = [channel(S, A), channel(A, T, ab=999)]
    assert reason(edges) is NoRouteReason.CAPACITY
    assert reason(edges, amount=999) is None


# --- exclusions and penalties -------------------------------------------------------------


def diamond() -> list[ChannelEdge]:
    return [
        channel(S, A),
        channel(A, T, fee_a=flat(1)),
        channel(S, B),
        channel(B, T, fee_a=flat(2)),
        channel(S, C),
        channel(C, T, fee_a=flat(3)),
    ]


def test_exclude_node() -> None:
    assert best(diamond()).nodes == (S, A, T)
    assert best(diamond(), exclude_nodes=[A]).nodes == (S, B, T)
    assert best(diamond(), exclude_nodes=[A, B]).nodes == (S, C, T)
    assert reason(diamond(), exclude_nodes=[A, B, C]) is NoRouteReason.NO_ROUTE
    # Excluding the payer or the target does not make sense and changes nothing.
    assert best(diamond(), exclude_nodes=[S, T, UNKNOWN]).nodes == (S, A, T)


def test_exclude_edge__one_direction() -> None:
    assert best(diamond(), exclude_edges=[(A, T)]).nodes == (S, B, T)
    # The other direction of the same channel does not matter to this payment.
    assert best(diamond(), exclude_edges=[(T, A), (A, S)]).nodes == (S, A, T)
    assert best(diamond(), exclude_edges=[(S, A), (B, T)]).nodes == (S, C, T)


def test_penalties__change_the_choice() -> None:
    route = best(diamond(), penalties={A: 5})
    assert route.nodes == (S, B, T)
    assert route.fee == 2 and route.penalty == 0 and route.cost == 2
    route = best(diamond(), penalties={A: 5, B: 1})
    assert route.nodes == (S, B, T) and route.penalty == 1 and route.cost == 3
    assert best(diamond(), penalties={(S, A): 5, (B, T): 5}).nodes == (S, C, T)
    # A penalty smaller than the fee saved changes nothing.
    assert best(diamond(), penalties={A: 1}).nodes == (S, A, T)
    # Payer and target are on every route: penalties on them are not charged.
    assert best(diamond(), penalties={S: 9, T: 9}).cost == 1


def test_penalties__negative__rejected() -> None:
    with pytest.raises(ValidationError):
        find_routes(ChannelGraph.from_edges(diamond()), S, T, 1000, penalties={A: -1})


# --- no route, and why --------------------------------------------------------------------


def test_no_route__disconnected_or_unknown() -> None:
    edges = [channel(S, A), channel(B, T)]
    assert reason(edges) is NoRouteReason.NO_ROUTE
    graph = ChannelGraph.from_edges(edges)
    assert find_routes(graph, S, UNKNOWN, 1).reason is NoRouteReason.NO_ROUTE
    assert find_routes(graph, UNKNOWN, T, 1).reason is NoRouteReason.NO_ROUTE


def test_no_route__beyond_the_hop_limit() -> None:
    edges = [channel(S, A), channel(A, B), channel(B, T)]
    assert reason(edges, max_hops=2) is NoRouteReason.NO_ROUTE
    assert best(edges, max_hops=3).hops == 3


def test_fee_too_high() -> None:
    assert reason(diamond(), max_fee=0) is NoRouteReason.FEE_TOO_HIGH
    assert best(diamond(), max_fee=1).nodes == (S, A, T)
    assert best(diamond(), exclude_nodes=[A], max_fee=2).nodes == (S, B, T)
    # The budget is on the fee, not on the penalties.
    assert best(diamond(), penalties={A: 100}, max_fee=1).nodes == (S, A, T)


def test_fee_too_high__before_capacity() -> None:
    # A route that can carry it exists but costs too much; another is too small. The
    # reason is the one nearer to success.
    edges = [
        channel(S, A),
        channel(A, T, fee_a=flat(10)),
        channel(S, B, ab=10),
        channel(B, T),
    ]
    assert reason(edges, max_fee=5) is NoRouteReason.FEE_TOO_HIGH


# --- k candidates -------------------------------------------------------------------------


def test_k_candidates__sorted_distinct_and_diverse() -> None:
    result = find_routes(ChannelGraph.from_edges(diamond()), S, T, 1000, k=3)
    assert [route.nodes for route in result.routes] == [(S, A, T), (S, B, T), (S, C, T)]
    assert [route.fee for route in result.routes] == [1, 2, 3]
    one = find_routes(ChannelGraph.from_edges(diamond()), S, T, 1000, k=1)
    assert one.routes == result.routes[:1]


def test_k_candidates__share_at_most_half_their_channels() -> None:
    edges = [
        *diamond(),
        channel(A, D, fee_a=flat(1)),
        channel(D, T, fee_a=flat(1)),
    ]
    result = find_routes(ChannelGraph.from_edges(edges), S, T, 1000, k=4)
    assert result.routes[0].nodes == (S, A, T)
    for first, second in pairwise(result.routes):
        assert (first.cost, first.hops) <= (second.cost, second.hops)
    for i, route in enumerate(result.routes):
        pairs = set(pairwise(route.nodes))
        for earlier in result.routes[:i]:
            assert 2 * len(pairs & set(pairwise(earlier.nodes))) <= len(pairs)


# --- loops that pay -----------------------------------------------------------------------


def test_a_loop_that_pays__the_simple_route_is_returned() -> None:
    """X earns a rebate leaving towards Y and another arriving from Z: S-X-Y-Z-X-T costs
    nothing while S-X-T costs X's flat fee of 10. The cheapest walk is not a route."""
    steep = FeeSchedule(imbalance_ppm=MAX_IMBALANCE_PPM)
    x = A
    edges = [
        channel(S, x, 100, 100),
        channel(x, B, 100, 0, fee_a=steep),
        channel(B, C, 100, 100),
        channel(C, x, 100, 0, fee_b=steep),
        channel(x, T, 100, 100, fee_a=flat(10)),
    ]
    route = best(edges, amount=40)
    assert route.nodes == (S, x, T)
    assert route.fee == 10


def test_a_loop_that_pays__exact_search_over_budget__still_a_simple_route(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(routes, "EXACT_LABEL_BUDGET", 0)
    test_a_loop_that_pays__the_simple_route_is_returned()


# --- input checks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "options"),
    [
        (0, {}),
        (-5, {}),
        (10, {"k": 0}),
        (10, {"k": 17}),
        (10, {"max_hops": 0}),
        (10, {"max_hops": 65}),
        (10, {"max_fee": -1}),
    ],
)
def test_query__out_of_range__rejected(amount: int, options: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        find_routes(ChannelGraph.from_edges(diamond()), S, T, amount, **options)  # type: ignore[arg-type]


def test_query__payer_is_target__rejected() -> None:
    with pytest.raises(ValidationError):
        find_routes(ChannelGraph.from_edges(diamond()), S, S, 10)


def test_graph__bad_edges__rejected() -> None:
    with pytest.raises(ValidationError):
        channel(S, S)
    with pytest.raises(ValidationError):
        ChannelEdge(Address(b"\x01" * 19), T, TokenAmount(1), TokenAmount(1))
    with pytest.raises(ValidationError):
        channel(S, T, ab=-1)
    with pytest.raises(ValidationError):
        ChannelGraph.from_edges([channel(S, T), channel(T, S)])
    graph = ChannelGraph.from_edges(diamond())
    assert len(graph) == 5


# --- the memo of answers per graph --------------------------------------------------------


def test_memo__an_equal_query_gets_the_same_answer() -> None:
    graph = ChannelGraph.from_edges(diamond())
    first = find_routes(graph, S, T, 1000, exclude_nodes=[A])
    assert find_routes(graph, S, T, 1000, exclude_nodes={A}) is first
    assert find_routes(graph, S, T, 1001, exclude_nodes={A}) is not first
    fresh = find_routes(ChannelGraph.from_edges(diamond()), S, T, 1000, exclude_nodes=[A])
    assert fresh == first and fresh is not first


def test_memo__a_query_that_must_raise_still_raises() -> None:
    graph = ChannelGraph.from_edges(diamond())
    find_routes(graph, S, T, 1)
    with pytest.raises(ValidationError):
        find_routes(graph, S, T, True)  # equal to 1 as a key, refused as an amount


def test_memo__bounded_and_gone_with_its_graph() -> None:
    graph = ChannelGraph.from_edges(diamond())
    for amount in range(1, routes.MEMO_SIZE + 10):
        find_routes(graph, S, T, amount)
    assert len(routes._MEMOS[graph]) == routes.MEMO_SIZE
    count = len(routes._MEMOS)
    del graph
    assert len(routes._MEMOS) == count - 1
