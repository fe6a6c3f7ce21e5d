"""Routes over a channel graph: which channels a payment crosses and what every hop carries.

Belongs here: `ChannelGraph`, built once from `ChannelEdge`s (both directions' capacities and
fee schedules, as the caller knows them); `find_routes`, up to k candidate routes from a
payer to a target for an amount, with exclusions, penalties, a fee budget and a hop limit;
and `NoRouteReason`, why there is none. The graph and the penalties are data: how the node
learns channels, capacities and fees, and what failed recently, is the node's business.
A graph never changes once built, so `find_routes` remembers its answers per graph.

Does not belong here: fee arithmetic (`fees`; the search inlines its kernel in the hot
loop, and the tests hold the two to the same results), sending or retrying payments, I/O,
clocks, randomness.

How the search works:

- Backwards from the target, exact. A mediator's fee depends on the amount it forwards,
  known exactly only from the target backwards, so the search starts at the target with
  `amount` and walks channels against their direction, adding each mediator's exact fee
  (`fees`). A channel direction is used only when its capacity covers what must cross it
  there: the amount plus every fee downstream.
- Labels. A label at node u stands for a partial route from u to the target: `a`, what u
  forwards; `q`, `a` plus u's outgoing fee term; `p`, the penalties so far; `h`, the
  channels so far. Everything upstream of u depends on u's outgoing channel only through
  `a` and `q` (`fees.received_amount_raw` is monotone in both), so a label no worse in all
  four dominates another at the same node, whatever channel each leaves by; a node keeps
  its non-dominated labels (almost always one).
- Order: A*, bidirectional. A forward search from the payer (`_Bounds`) grows in turn with
  the backward one, doing as many relaxations, and gives every node a lower bound of the
  cost between the payer and it: each mediator charged the least fee it could take for
  any amount the route may carry, plus the penalties; a node it has not reached yet is at
  least its radius away. A label's key is its cost, plus the least fee its node can take
  as a mediator, plus that bound. Every key is a lower bound of every completion, so the
  first route to reach the payer is the cheapest in cost (fee plus penalties), then hops.
  Routes completed early along the forward search's tree give upper bounds that prune
  labels and forward states that could only cost more. On a 15,000-node graph a query
  touches a few hundred nodes instead of most of the graph (bench/routing.py).
- Simple routes. That optimum is over walks; when it visits no node twice it is also the
  optimum over simple routes. A rebate can make a loop pay (a mediator that passes twice
  may earn two rebates where one pass costs a fee); then an exact search over simple
  routes runs instead, whose labels also carry their nodes and dominate only labels whose
  nodes include theirs. It is exponential in the worst case, so it has a label budget;
  past it, a search that only forbids revisits answers, and may miss the cheapest route
  (only in this case, which needs rebates larger than fees along a loop).
- k candidates, from the same search: the cheapest route; then, cheapest first, routes the
  search completed on its way (along the forward search's tree, or by going on for at most
  `EXTRA_POPS` more labels when those are too few) that are simple and share at most half
  of their channels with every candidate before them. Not Yen's k shortest paths (mostly
  near-copies of the first, for a search per spur node) nor a new search per candidate
  with the channels used so far penalised (each explores well past the optimum): the
  alternatives cost little beyond the first search, and a retry after a failed hop rarely
  meets it again. There may be fewer than k; after a failure the caller passes what failed
  as a penalty or an exclusion and asks again.
- No route. When there is none, the reason is the first that holds: a route exists
  without the fee budget (`FEE_TOO_HIGH`); a path exists ignoring capacities and fees
  (`CAPACITY`); otherwise `NO_ROUTE` (no path within the hop limit avoiding the
  exclusions).

Penalties are extra cost in token base units, charged for a mediator node or a channel
direction on the route (payer and target are on every route and never charged). Channel
exclusions and penalties are per direction, ``(payer, payee)``. Routes are ranked by cost,
fee plus penalties (the fee alone when no penalty applies), then by hops.
"""

from __future__ import annotations

import enum
import weakref
from bisect import insort
from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from heapq import heappop, heappush
from itertools import pairwise
from typing import Final

from offchain.protocol.errors import ValidationError
from offchain.protocol.fees import (
    PPM,
    FeeSchedule,
    incoming_part_min,
    outgoing_part,
    outgoing_part_min,
    received_amount_raw,
)
from offchain.protocol.types import (
    ADDRESS_LENGTH,
    UINT256_MAX,
    Address,
    TokenAmount,
    check_uint,
)

DEFAULT_MAX_HOPS: Final = 8
"""Channels in a route at most, by default. Each hop adds a lock-expiry margin and a mesh
round trip; eight spans the diameter of random graphs far larger than ours."""

MAX_HOPS: Final = 64
"""The largest hop limit a query may set (hops live in 8 bits of a heap entry)."""

MAX_K: Final = 16
"""The most candidate routes one query may ask for."""

EXTRA_POPS: Final = 64
"""Labels one search may still expand after the cheapest route, for the other candidates."""

COMPLETION_TRIALS: Final = 32
"""Routes one search completes along the forward tree (upper bounds and candidates)."""

EXACT_LABEL_BUDGET: Final = 200_000
"""Labels the exact search over simple routes may create before it gives up."""

EdgeKey = tuple[Address, Address]
"""A channel direction, ``(payer, payee)``."""

_NO_LIMIT: Final = UINT256_MAX * 4
"""An amount cap no channel can reach: no fee budget."""

_INFINITY: Final = 1 << 512
"""Larger than every cost."""

# Heap entries of the backward search are ints: ``key << 40 | hops << 32 | label id``.
_HOPS_SHIFT: Final = 32
_KEY_SHIFT: Final = 40
_ID_MASK: Final = (1 << _HOPS_SHIFT) - 1
_HOPS_MASK: Final = 0xFF


class NoRouteReason(enum.Enum):
    """Why `find_routes` found nothing; the first that holds, in this order."""

    FEE_TOO_HIGH = "fee_too_high"
    """Routes that can carry the amount exist, but every one costs more than `max_fee`."""
    CAPACITY = "capacity"
    """Paths exist, but none whose channels can carry the amount plus the fees downstream."""
    NO_ROUTE = "no_route"
    """No path within the hop limit that avoids the exclusions, or an unknown node."""


@dataclass(frozen=True, slots=True)
class ChannelEdge:
    """One channel between `a` and `b`, as the caller knows it.

    `capacity_ab`: what `a` can send to `b` now. `schedule_ab`: `a`'s fee schedule for
    its side of the channel, charged when `a` forwards over it (flat, proportional,
    imbalance) and when `a` receives over it (imbalance). Likewise for `b`.
    """

    a: Address
    b: Address
    capacity_ab: TokenAmount
    capacity_ba: TokenAmount
    schedule_ab: FeeSchedule = field(default_factory=FeeSchedule)
    schedule_ba: FeeSchedule = field(default_factory=FeeSchedule)

    def __post_init__(self) -> None:
        for name, end in (("a", self.a), ("b", self.b)):
            if not isinstance(end, bytes) or len(end) != ADDRESS_LENGTH:
                raise ValidationError(f"channel end {name} must be 20 bytes")
        if self.a == self.b:
            raise ValidationError("a channel needs two distinct ends")
        check_uint(self.capacity_ab, UINT256_MAX, "capacity a->b")
        check_uint(self.capacity_ba, UINT256_MAX, "capacity b->a")
        if not isinstance(self.schedule_ab, FeeSchedule) or not isinstance(
            self.schedule_ba, FeeSchedule
        ):
            raise ValidationError("fee schedules must be FeeSchedule")


# A channel direction w -> u in u's `incoming`: (w, direction id, capacity w->u, w's flat,
# w's proportional ppm, w's imbalance ppm, total capacity of the channel, u's imbalance
# ppm, u's own capacity u->w). In w's `outgoing` the same fields describe it, with u first.
_Direction = tuple[int, int, int, int, int, int, int, int, int]


@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class ChannelGraph:
    """The channels of one token network as tuples of ints, built once, queried often.

    Build it with `from_edges`. Node ids and channel-direction ids are internal; the
    public functions speak addresses. Rebuild it when capacities or fees change: a graph
    is never changed after it is built, which is what lets `find_routes` remember its
    answers per graph.
    """

    addresses: tuple[Address, ...]
    index: Mapping[Address, int]
    incoming: tuple[tuple[_Direction, ...], ...]
    """Per node u, the directions w -> u: the backward search walks these."""
    outgoing: tuple[tuple[_Direction, ...], ...]
    """Per node u, the directions u -> v (v first): the forward search walks these."""
    direction_ids: Mapping[EdgeKey, int]
    """``(payer, payee)`` -> direction id; ``2*i`` is a -> b of the i-th edge."""
    by_direction: tuple[_Direction, ...]
    """Per direction id, its record in its head's `incoming`."""
    steepest: tuple[int, ...]
    """Per node, the steepest rebate it may give for what it receives, in ppm: over its
    channels, ``imbalance_ppm * max(0, T - 2*own) / T`` rounded up (no rebate on a channel
    where it holds half or more). Its incoming fee term for receiving r is at least
    ``-steepest * r / 10**6``: the least fee the search can count on from it."""
    typical_flat: int
    """The 90th percentile of the flat fees: the search's first guess of what fees cost."""
    edges: tuple[ChannelEdge, ...]

    @classmethod
    def from_edges(cls, edges: Iterable[ChannelEdge]) -> ChannelGraph:
        """Index the nodes and lay out every channel direction as a tuple of ints.

        Raises `ValidationError` for two channels between the same two nodes (a token
        network has at most one).
        """
        edge_list = tuple(edges)
        index: dict[Address, int] = {}
        for edge in edge_list:
            index.setdefault(edge.a, len(index))
            index.setdefault(edge.b, len(index))
        incoming: list[list[_Direction]] = [[] for _ in index]
        outgoing: list[list[_Direction]] = [[] for _ in index]
        by_direction: list[_Direction] = []
        direction_ids: dict[EdgeKey, int] = {}
        flats: list[int] = []
        for number, edge in enumerate(edge_list):
            if (edge.a, edge.b) in direction_ids:
                raise ValidationError("two channels between the same two nodes")
            a, b = index[edge.a], index[edge.b]
            ab, ba = 2 * number, 2 * number + 1
            direction_ids[(edge.a, edge.b)] = ab
            direction_ids[(edge.b, edge.a)] = ba
            cap_ab, cap_ba = int(edge.capacity_ab), int(edge.capacity_ba)
            total = cap_ab + cap_ba
            sab, sba = edge.schedule_ab, edge.schedule_ba
            flats += (sab.flat, sba.flat)
            fees_ab = (sab.flat, sab.proportional_ppm, sab.imbalance_ppm)
            fees_ba = (sba.flat, sba.proportional_ppm, sba.imbalance_ppm)
            into_b = (a, ab, cap_ab, *fees_ab, total, sba.imbalance_ppm, cap_ba)
            into_a = (b, ba, cap_ba, *fees_ba, total, sab.imbalance_ppm, cap_ab)
            incoming[b].append(into_b)
            incoming[a].append(into_a)
            outgoing[a].append((b, *into_b[1:]))
            outgoing[b].append((a, *into_a[1:]))
            by_direction += (into_b, into_a)
        flats.sort()
        return cls(
            addresses=tuple(index),
            index=index,
            incoming=tuple(map(tuple, incoming)),
            outgoing=tuple(map(tuple, outgoing)),
            direction_ids=direction_ids,
            by_direction=tuple(by_direction),
            steepest=tuple(max((_rebate_rate(d) for d in into), default=0) for into in incoming),
            typical_flat=flats[len(flats) * 9 // 10] if flats else 0,
            edges=edge_list,
        )

    def __len__(self) -> int:
        return len(self.addresses)


def _rebate_rate(direction: _Direction) -> int:
    """The steepest rebate, in ppm, the head of `direction` gives for receiving over it.

    The incoming term for r is ``imb * r * (r + 2*own - T) / (10**6 * T)``, at least
    ``-r * imb * max(0, T - 2*own) / (10**6 * T)``.
    """
    imbalance, total, own = direction[7], direction[6], direction[8]
    if not imbalance or not total or 2 * own >= total:
        return 0
    return -(-imbalance * (total - 2 * own) // total)


@dataclass(frozen=True, slots=True)
class Route:
    """A candidate route: its nodes from payer to target and what each channel carries.

    `amounts[i]` crosses the channel ``nodes[i] -> nodes[i+1]``: `amounts[0]` is what the
    payer sends (the target amount plus every fee), `amounts[-1]` the target amount, and
    each mediator keeps exactly its `fees.mediation_fee`. `fee` is the sum of the
    mediators' fees; `penalty` the sum of the caller's penalties met on the route.
    """

    nodes: tuple[Address, ...]
    amounts: tuple[TokenAmount, ...]
    fee: TokenAmount
    penalty: int

    @property
    def amount(self) -> TokenAmount:
        """What the payer sends on its first channel, fees included."""
        return self.amounts[0]

    @property
    def hops(self) -> int:
        """Channels crossed."""
        return len(self.amounts)

    @property
    def cost(self) -> int:
        """What routes are ranked by: fee plus penalties."""
        return self.fee + self.penalty


@dataclass(frozen=True, slots=True)
class RouteQueryResult:
    """Up to k routes, cheapest first; `reason` says why when there are none."""

    routes: tuple[Route, ...]
    reason: NoRouteReason | None = None

    @property
    def best(self) -> Route | None:
        """The cheapest route, if any."""
        return self.routes[0] if self.routes else None


@dataclass(frozen=True, slots=True)
class _Query:
    source: int
    target: int
    amount: int
    amount_cap: int
    """No channel may carry more: amount + max_fee, or `_NO_LIMIT`."""
    max_hops: int
    banned_nodes: frozenset[int]
    """Excluded nodes and the target (which never mediates)."""
    banned_directions: frozenset[int]
    node_penalty: Mapping[int, int]
    direction_penalty: Mapping[int, int]


class _Bounds:
    """Lower bounds of the cost from the payer to each node: the forward search.

    Dijkstra from the payer that charges each mediator the least fee it could take for
    any amount from the query's amount up to `amount_cap` (`fees.outgoing_part_min`,
    `fees.incoming_part_min`), plus the penalties: its distances never exceed what a route
    costs up to there. Its states are channel directions w -> u, so that u's fee pairs
    the incoming term of the channel it really arrived by with the outgoing term of each
    channel it may leave by; at u, a later arrival is kept only when its incoming term is
    lower than every earlier one's. It grows on demand, in turn with the backward search.
    Heap entries are ints, ``distance << 32 | direction id``.
    """

    __slots__ = (
        "amount_cap",
        "arrival",
        "graph",
        "heap",
        "least_term",
        "query",
        "radius",
        "span_high",
        "tentative",
        "terms",
        "upper",
        "via",
    )

    def __init__(self, graph: ChannelGraph, query: _Query, amount_cap: int) -> None:
        self.graph, self.query, self.amount_cap = graph, query, amount_cap
        self.span_high = None if amount_cap >= _NO_LIMIT else amount_cap
        self.arrival: dict[int, int] = {query.source: 0}
        """The least distance of each settled node."""
        self.via: dict[int, int] = {}
        """The direction each settled node was first reached by: the forward tree."""
        self.least_term: dict[int, int] = {}
        self.tentative: dict[int, int] = {}
        self.terms: dict[int, int] = {}  # least incoming term at a direction's head, if not 0
        self.heap: list[int] = []
        self.upper = _INFINITY
        """Amount plus the cost of a known route: no state beyond it is worth queueing."""
        amount = query.amount
        for v, did, cap, *_, total, vimb, vown in graph.outgoing[query.source]:
            if cap < amount or v in query.banned_nodes or did in query.banned_directions:
                continue
            weight = query.direction_penalty.get(did, 0)
            if vimb:
                self.terms[did] = incoming_part_min(vimb, amount, self.span_high, vown, total)
            self.tentative[did] = weight
            heappush(self.heap, weight << 32 | did)
        self.radius = self.heap[0] >> 32 if self.heap else _INFINITY
        """No unsettled node is nearer (`_INFINITY`: the rest is unreachable)."""

    def settle(self) -> tuple[int, int]:
        """Settle the nearest direction: (the node reached for the first time or -1,
        the relaxations done)."""
        query, graph, heap, upper = self.query, self.graph, self.heap, self.upper
        amount, span_high, source = query.amount, self.span_high, query.source
        banned, banned_directions = query.banned_nodes, query.banned_directions
        node_penalty, direction_penalty = query.node_penalty, query.direction_penalty
        least_term, tentative, terms = self.least_term, self.tentative, self.terms
        ppm = PPM
        first, work = -1, 0
        by_direction = graph.by_direction
        while heap:
            entry = heappop(heap)
            distance, did = entry >> 32, entry & 0xFFFFFFFF
            u = by_direction[did ^ 1][0]  # the head of did is the tail of its reverse
            term = terms.get(did, 0)
            least = least_term.get(u)
            edges_out = graph.outgoing[u]
            if least is None:
                self.arrival[u] = distance
                self.via[u] = did
                first = u
            elif least <= term:
                continue
            least_term[u] = term
            extra = distance + node_penalty.get(u, 0) if node_penalty else distance
            if extra + amount > upper:
                break  # every state from here would cost more than a known route
            work = len(edges_out)
            for v, vdid, cap, flat, prop, imb, total, vimb, vown in edges_out:
                if cap < amount or v in banned or v == source:
                    continue
                if imb and total:
                    fee = term + outgoing_part_min(flat, prop, imb, amount, span_high, cap, total)
                else:
                    fee = term + flat - (-amount * prop // ppm)
                weight = extra + fee if fee > 0 else extra
                if direction_penalty:
                    weight += direction_penalty.get(vdid, 0)
                if weight < tentative.get(vdid, _INFINITY) and weight + amount <= upper:
                    if banned_directions and vdid in banned_directions:
                        continue
                    tentative[vdid] = weight
                    if vimb and vdid not in terms:
                        terms[vdid] = incoming_part_min(vimb, amount, span_high, vown, total)
                    heappush(heap, weight << 32 | vdid)
            break
        self.radius = heap[0] >> 32 if heap else _INFINITY
        return first, work


@dataclass(slots=True)
class _Labels:
    """The labels of one backward search as parallel lists of ints; a label id indexes them.

    Ints only, so that a label allocates no container in the hot loop.
    """

    forwarded: list[int]  # a
    with_out: list[int]  # q
    penalty: list[int]  # p
    hops: list[int]  # h
    estimate: list[int]  # a lower bound of any completion, before the forward bound
    node: list[int]
    parent: list[int]  # the label downstream; -1 next to the target
    same_node: list[int]  # the previous label at the same node; -1 for none


def _complete(
    graph: ChannelGraph,
    query: _Query,
    bounds: _Bounds,
    node: int,
    forwarded: int,
    with_out: int,
    penalty: int,
    hops: int,
    amount_cap: int,
) -> int:
    """Amount plus cost of a partial route at `node` completed along the forward tree.

    `_INFINITY` when the completion breaks a rule (a capacity, the cap, the hop limit).
    Otherwise a walk's exact cost, hence at least the optimum: an upper bound.
    """
    source, node_penalty, direction_penalty = (
        query.source,
        query.node_penalty,
        query.direction_penalty,
    )
    while True:
        payer, did, cap, flat, prop, imb, total, uimb, uown = graph.by_direction[bounds.via[node]]
        penalty += node_penalty.get(node, 0) + direction_penalty.get(did, 0)
        received = received_amount_raw(forwarded, with_out, uimb, uown, total)
        hops += 1
        if received is None or received > cap or received > amount_cap or hops > query.max_hops:
            return _INFINITY
        if payer == source:
            return received + penalty
        with_out = received + outgoing_part(flat, prop, imb, received, cap, total)
        forwarded, node = received, payer


def _search(
    graph: ChannelGraph, query: _Query, amount_cap: int, bounds: _Bounds, want: int
) -> tuple[_Labels, list[int], list[tuple[int, int, int]]] | None:
    """The cheapest walk (module docstring) whose channels carry at most `amount_cap`.

    `bounds` must be for a cap at least `amount_cap`; it grows in turn with this search.
    Labels at nodes it has not reached wait in a heap of their own ordered by cost alone
    (their bound is the radius, the same for all) and move to the ready heap when their
    node is reached, so no label is queued twice.

    Returns the labels, the payer's labels of the routes kept (the cheapest walk first,
    then up to `want` - 1 diverse simple ones) and the routes completed along the forward
    tree, as (amount plus cost, node, label of the next node); None when there is no walk.
    With `want` above 1, labels are pruned only when they cost more than the want-th
    cheapest route known, so that alternatives survive.
    """
    source, amount = query.source, query.amount
    max_hops = query.max_hops
    banned, banned_directions = query.banned_nodes, query.banned_directions
    node_penalty, direction_penalty = query.node_penalty, query.direction_penalty
    incoming, steepest, arrival = graph.incoming, graph.steepest, bounds.arrival
    most_received = amount_cap if amount_cap < _NO_LIMIT else _INFINITY
    ppm, key_shift, hops_shift, id_mask = PPM, _KEY_SHIFT, _HOPS_SHIFT, _ID_MASK
    hops_mask = _HOPS_MASK

    labels = _Labels([], [], [], [], [], [], [], [])
    la, lq, lp, lh = labels.forwarded, labels.with_out, labels.penalty, labels.hops
    le, ln, lpar, lsame = labels.estimate, labels.node, labels.parent, labels.same_node
    at_node: dict[int, int] = {}  # node -> its latest label
    ready: list[int] = []  # key: estimate + the node's settled bound
    waiting: list[int] = []  # key: estimate (the bound is the radius, the same for all)
    # Amount plus cost of the routes known, sorted; `upper`, the want-th of them: a label
    # that costs more cannot be among the routes wanted.
    known: list[int] = []
    upper = _INFINITY
    trials = COMPLETION_TRIALS
    found: list[int] = []  # the payer's labels popped and kept
    found_pairs: list[set[tuple[int, int]]] = []
    pops, stop = 0, _INFINITY
    meetings: list[tuple[int, int, int]] = []
    work = 0  # forward relaxations minus backward ones: the two searches take turns

    # Hops from the payer, up to 2 (3 means more): a label that cannot reach the payer
    # within the hop limit is not kept. `last_hop[u]`: the payer's channel into u.
    near = {source: 0}
    last_hop: dict[int, tuple[_Direction, ...]] = {}
    for v, did, cap, *_ in graph.outgoing[source]:
        if cap >= amount and v not in banned and did not in banned_directions:
            near[v] = 1
            last_hop[v] = (graph.by_direction[did],)
    for v in list(last_hop):
        for x, _did, cap, *_ in graph.outgoing[v]:
            if x not in near and cap >= amount and x not in banned:
                near[x] = 2

    # The channels into the target carry exactly `amount`.
    for w, did, cap, flat, prop, imb, total, _uimb, _uown in incoming[query.target]:
        if cap < amount or w in banned or did in banned_directions or near.get(w, 3) >= max_hops:
            continue
        pen = direction_penalty.get(did, 0)
        q = amount if w == source else amount + outgoing_part(flat, prop, imb, amount, cap, total)
        estimate = amount + pen
        if w != source:
            fee = q - amount - (steepest[w] * most_received // ppm + 1 if steepest[w] else 0)
            estimate += (fee if fee > 0 else 0) + node_penalty.get(w, 0)
        label = len(la)
        la.append(amount)
        lq.append(q)
        lp.append(pen)
        lh.append(1)
        le.append(estimate)
        ln.append(w)
        lpar.append(-1)
        lsame.append(at_node.get(w, -1))
        at_node[w] = label
        if w in arrival:
            heappush(ready, (estimate + arrival[w]) << key_shift | 1 << hops_shift | label)
        else:
            heappush(waiting, estimate << key_shift | 1 << hops_shift | label)

    while ready or waiting:
        if work <= 0 and bounds.radius < _INFINITY:
            # The forward search's turn.
            reached, relaxed = bounds.settle()
            work += relaxed
            label = at_node.get(reached, -1)
            if label >= 0:
                distance = arrival[reached]
                while label >= 0:
                    key = le[label] + distance
                    heappush(ready, key << key_shift | lh[label] << hops_shift | label)
                    label = lsame[label]
            continue

        while waiting and ln[waiting[0] & id_mask] in arrival:
            heappop(waiting)  # moved to `ready` when the forward search reached its node
        radius = bounds.radius
        # Whole entries compare (key, then hops): a tie in cost goes to fewer hops.
        if ready and (not waiting or ready[0] <= waiting[0] + (radius << key_shift)):
            entry = heappop(ready)
        elif waiting and radius < _INFINITY:
            entry = heappop(waiting)
        else:
            break
        current = entry & id_mask
        u = ln[current]
        if u == source:
            # The first is the cheapest walk. When more are wanted, the search goes on a
            # little (`EXTRA_POPS`) for simple ones sharing at most half their channels
            # with each kept before.
            nodes = [ln[label] for label in _chain(labels, current)] + [query.target]
            pairs = set(pairwise(nodes))
            if not found:
                stop = pops + EXTRA_POPS
                if (
                    want > 1
                    and _diverse_meetings(graph, bounds, labels, meetings, pairs) >= want - 1
                ):
                    return labels, [current], meetings
            elif not _diverse(nodes, max_hops, found_pairs):
                continue
            found.append(current)
            found_pairs.append(pairs)
            if len(found) >= want:
                return labels, found, meetings
            continue
        pops += 1
        if pops > stop:
            return labels, found, meetings
        h = (entry >> hops_shift) & hops_mask
        a, q, p = la[current], lq[current], lp[current]
        if node_penalty:
            p += node_penalty.get(u, 0)
        h2 = h + 1
        hop_bits = h2 << hops_shift
        floor = a + p  # no label from here costs less than this plus its node's bound
        # On the last hop allowed, only the payer's own channel into u can finish.
        edges_in = incoming[u] if h2 < max_hops else last_hop.get(u, ())
        work -= len(edges_in)
        deep = h2 + 3 > max_hops  # only then can the hops left to the payer matter
        for w, did, cap, flat, prop, imb, total, uimb, uown in edges_in:
            if w in banned or (deep and h2 + near.get(w, 3) > max_hops):
                continue
            bound = arrival.get(w)
            if floor + (radius if bound is None else bound) > upper:
                continue
            # What u must receive over w -> u: a plus its fee (fees.received_amount_raw).
            if uimb and total:
                r = received_amount_raw(a, q, uimb, uown, total)
                if r is None:
                    continue
            else:
                r = q if q > a else a
            if r > cap or r > amount_cap or (banned_directions and did in banned_directions):
                continue
            p2 = p + direction_penalty.get(did, 0) if direction_penalty else p
            estimate = r + p2
            if w == source:
                q2 = r
                key = estimate
                if key > upper:
                    continue
                insort(known, key)
                if len(known) >= want:
                    upper = bounds.upper = known[want - 1]
            else:
                # What w adds on the way out (fees.outgoing_part), then the least fee w
                # can take as a mediator whatever channel it is paid by.
                if imb and total:
                    num = r * (prop * total + imb * (r - 2 * cap + total))
                    q2 = r + flat - (-num // (ppm * total))
                else:
                    q2 = r + flat - (-r * prop // ppm)
                fee = q2 - r
                if steepest[w]:
                    fee -= steepest[w] * most_received // ppm + 1
                if fee > 0:
                    estimate += fee
                if node_penalty:
                    estimate += node_penalty.get(w, 0)
                key = estimate + (radius if bound is None else bound)
                if bound is not None and trials and key < upper:
                    # w is on the forward tree: complete the route along it. The exact
                    # cost bounds the optimum, and the route is a candidate.
                    trials -= 1
                    completed = _complete(graph, query, bounds, w, r, q2, p2, h2, amount_cap)
                    if completed < upper:
                        meetings.append((completed, w, current))
                        insort(known, completed)
                        if len(known) >= want:
                            upper = bounds.upper = known[want - 1]
                if key > upper:
                    continue
                other = at_node.get(w, -1)
                while other >= 0:
                    if la[other] <= r and lq[other] <= q2 and lp[other] <= p2 and lh[other] <= h2:
                        break
                    other = lsame[other]
                if other >= 0:
                    continue  # dominated
            label = len(la)
            la.append(r)
            lq.append(q2)
            lp.append(p2)
            lh.append(h2)
            le.append(estimate)
            ln.append(w)
            lpar.append(current)
            lsame.append(at_node.get(w, -1))
            at_node[w] = label
            if bound is None:
                heappush(waiting, estimate << key_shift | hop_bits | label)
            else:
                heappush(ready, (estimate + bound) << key_shift | hop_bits | label)
    return (labels, found, meetings) if found else None


def _meeting_nodes(
    graph: ChannelGraph, bounds: _Bounds, labels: _Labels, node: int, successor: int
) -> list[int]:
    """The nodes of a route completed along the forward tree at `node`."""
    nodes = _forward_path(graph, bounds, node)
    nodes += [labels.node[label] for label in _chain(labels, successor)]
    return [*nodes, bounds.query.target]


def _diverse(nodes: list[int], max_hops: int, chosen: list[set[tuple[int, int]]]) -> bool:
    """Simple, within the hop limit, sharing at most half its channels with each chosen."""
    pairs = set(pairwise(nodes))
    return (
        len(set(nodes)) == len(nodes)
        and len(pairs) <= max_hops
        and all(2 * len(pairs & earlier) <= len(pairs) for earlier in chosen)
    )


def _diverse_meetings(
    graph: ChannelGraph,
    bounds: _Bounds,
    labels: _Labels,
    meetings: list[tuple[int, int, int]],
    first: set[tuple[int, int]],
) -> int:
    """How many of the completed routes could follow the first as candidates."""
    chosen = [first]
    for _cost, node, successor in sorted(meetings):
        nodes = _meeting_nodes(graph, bounds, labels, node, successor)
        if _diverse(nodes, bounds.query.max_hops, chosen):
            chosen.append(set(pairwise(nodes)))
    return len(chosen) - 1


def _chain(labels: _Labels, label: int) -> list[int]:
    """The labels from `label` down to the one next to the target."""
    chain = []
    while label >= 0:
        chain.append(label)
        label = labels.parent[label]
    return chain


def _forward_path(graph: ChannelGraph, bounds: _Bounds, node: int) -> list[int]:
    """The forward tree's nodes from the payer to `node`."""
    path = [node]
    while node != bounds.query.source:
        node = graph.by_direction[bounds.via[node]][0]
        path.append(node)
    path.reverse()
    return path


def _evaluate(graph: ChannelGraph, query: _Query, nodes: list[int]) -> list[int] | None:
    """The amount crossing each channel of the route `nodes`, or None if a channel cannot
    carry it or it breaks the fee budget: the search's arithmetic, route by route."""
    addresses = graph.addresses
    directions = [
        graph.by_direction[graph.direction_ids[(addresses[a], addresses[b])]]
        for a, b in pairwise(nodes)
    ]
    amount = query.amount
    if directions[-1][2] < amount:
        return None
    amounts = [amount]
    for into, out in zip(directions[-2::-1], directions[:0:-1], strict=True):
        _, _, cap_out, flat, prop, imb, total_out, _, _ = out
        _, _, cap_in, _, _, _, total_in, uimb, uown = into
        with_out = amount + outgoing_part(flat, prop, imb, amount, cap_out, total_out)
        received = received_amount_raw(amount, with_out, uimb, uown, total_in)
        if received is None or received > cap_in or received > query.amount_cap:
            return None
        amounts.append(received)
        amount = received
    amounts.reverse()
    return amounts


# A label of the simple-route search: (a, q, p, h, node, parent, direction, nodes as bits).
_SimpleLabel = tuple[int, int, int, int, int, "_SimpleLabel | None", int, int]


def _simple_search(
    graph: ChannelGraph, query: _Query, exact: bool
) -> tuple[list[int], list[int]] | None | bool:
    """The cheapest simple route: exact (node sets in dominance), or forbidding revisits.

    Plain backward Dijkstra on tuples, for the rare queries whose cheapest walk loops.
    None when there is no simple route; False when the exact search gives up, past
    `EXACT_LABEL_BUDGET` labels.
    """
    source, target, amount = query.source, query.target, query.amount
    banned, banned_directions = query.banned_nodes, query.banned_directions
    start: _SimpleLabel = (amount, amount, 0, 0, target, None, -1, 1 << target)
    labels: dict[int, list[_SimpleLabel]] = {}
    heap: list[tuple[int, int, int, _SimpleLabel]] = [(amount, 0, 0, start)]
    created = 0
    while heap:
        _key, h, _seq, label = heappop(heap)
        a, q, p, _h, u, _parent, _did, nodes = label
        if u == source:
            route_nodes, amounts = [], []
            current: _SimpleLabel | None = label
            while current is not None and current[6] >= 0:
                route_nodes.append(current[4])
                amounts.append(current[0])
                current = current[5]
            return [*route_nodes, target], amounts
        if h >= query.max_hops:
            continue
        if u != target:
            p += query.node_penalty.get(u, 0)
        for w, did, cap, flat, prop, imb, total, uimb, uown in graph.incoming[u]:
            if w in banned or nodes >> w & 1 or did in banned_directions:
                continue
            if u == target:
                r: int | None = amount
            else:
                r = received_amount_raw(a, q, uimb, uown, total)
            if r is None or r > cap or r > query.amount_cap:
                continue
            p2 = p + query.direction_penalty.get(did, 0)
            q2 = r if w == source else r + outgoing_part(flat, prop, imb, r, cap, total)
            new: _SimpleLabel = (r, q2, p2, h + 1, w, label, did, nodes | 1 << w)
            kept = labels.setdefault(w, [])
            if w != source and any(
                o[0] <= r
                and o[1] <= q2
                and o[2] <= p2
                and o[3] <= h + 1
                and (not exact or o[7] & ~new[7] == 0)
                for o in kept
            ):
                continue
            kept.append(new)
            created += 1
            if exact and created > EXACT_LABEL_BUDGET:
                return False
            heappush(heap, (r + p2, h + 1, created, new))
    return None


def _candidates(graph: ChannelGraph, query: _Query, want: int) -> list[tuple[list[int], list[int]]]:
    """Up to `want` simple routes, the cheapest first, as (nodes from the payer, amounts).

    The search caps the amount any channel may carry, which keeps its forward bounds
    tight: first at the amount plus a guess of the fees; when the cheapest route found
    costs more than that guess (a route above the cap might be cheaper), once more with
    the cap at the amount plus that cost, which is then exact.
    """
    amount = query.amount
    span = amount // 16 + graph.typical_flat * query.max_hops
    bounds: _Bounds | None = None
    while True:
        cap = min(query.amount_cap, amount + span)
        if bounds is None or bounds.amount_cap < cap:
            bounds = _Bounds(graph, query, cap)
        searched = _search(graph, query, cap, bounds, want)
        if searched is not None:
            labels, payers, meetings = searched
            cost = labels.forwarded[payers[0]] + labels.penalty[payers[0]] - amount
            if cost <= span or cap == query.amount_cap:
                break
            span = cost
        elif cap == query.amount_cap:
            return []
        else:
            span = query.amount_cap - amount
    routes: list[tuple[list[int], list[int]]] = []
    pool: list[tuple[int, list[int], list[int] | None]] = []  # (cost, nodes, amounts)
    for rank, payer in enumerate(payers):
        chain = _chain(labels, payer)
        nodes = [labels.node[label] for label in chain] + [query.target]
        amounts = [labels.forwarded[label] for label in chain]
        if rank:
            pool.append((amounts[0] + labels.penalty[payer], nodes, amounts))
        elif len(set(nodes)) == len(nodes):
            routes.append((nodes, amounts))
        else:
            simple = _simple_search(graph, query, exact=True)
            if simple is False:
                simple = _simple_search(graph, query, exact=False)
            if isinstance(simple, tuple):
                routes.append(simple)
    for completed, node, successor in meetings:
        pool.append((completed, _meeting_nodes(graph, bounds, labels, node, successor), None))
    pool.sort(key=lambda candidate: (candidate[0], len(candidate[1])))
    chosen = [set(pairwise(route[0])) for route in routes]
    for _cost, nodes, known_amounts in pool:
        if len(routes) >= want:
            break
        if not _diverse(nodes, query.max_hops, chosen):
            continue
        priced = known_amounts or _evaluate(graph, query, nodes)
        if priced is not None:
            routes.append((nodes, priced))
            chosen.append(set(pairwise(nodes)))
    return routes


def _connected(graph: ChannelGraph, query: _Query) -> bool:
    """Is there a path payer -> target within the hop limit, avoiding the exclusions?"""
    depth = {query.target: 0}
    frontier: deque[int] = deque([query.target])
    while frontier:
        u = frontier.popleft()
        if depth[u] >= query.max_hops:
            continue
        for w, did, *_ in graph.incoming[u]:
            if did in query.banned_directions:
                continue
            if w == query.source:
                return True
            if w not in depth and w not in query.banned_nodes:
                depth[w] = depth[u] + 1
                frontier.append(w)
    return False


def _reason(graph: ChannelGraph, query: _Query) -> NoRouteReason:
    if query.amount_cap < _NO_LIMIT and _candidates(graph, replace(query, amount_cap=_NO_LIMIT), 1):
        return NoRouteReason.FEE_TOO_HIGH
    if _connected(graph, query):
        return NoRouteReason.CAPACITY
    return NoRouteReason.NO_ROUTE


def _route(graph: ChannelGraph, query: _Query, nodes: list[int], amounts: list[int]) -> Route:
    penalty = sum(query.node_penalty.get(node, 0) for node in nodes[1:-1])
    for a, b in pairwise(nodes):
        did = graph.direction_ids[(graph.addresses[a], graph.addresses[b])]
        penalty += query.direction_penalty.get(did, 0)
    return Route(
        nodes=tuple(graph.addresses[node] for node in nodes),
        amounts=tuple(TokenAmount(amount) for amount in amounts),
        fee=TokenAmount(amounts[0] - query.amount),
        penalty=penalty,
    )


MEMO_SIZE: Final = 256
"""Answers `find_routes` remembers per graph (the oldest is forgotten first)."""

# Per graph, the answers to the queries asked of it. A graph is immutable and the search
# is a pure function of the graph and the query, so an equal query gets the same answer;
# nodes ask the same one again and again (every payment of an amount to a target, as
# payer and as each mediator, until the graph is rebuilt). Weak keys: the answers go with
# their graph, and they are never part of a node's state (nothing to persist).
_MEMOS: weakref.WeakKeyDictionary[ChannelGraph, dict[tuple[object, ...], RouteQueryResult]] = (
    weakref.WeakKeyDictionary()
)


def find_routes(
    graph: ChannelGraph,
    source: Address,
    target: Address,
    amount: int,
    k: int = 3,
    *,
    exclude_nodes: Collection[Address] = (),
    exclude_edges: Collection[EdgeKey] = (),
    penalties: Mapping[Address | EdgeKey, int] | None = None,
    max_fee: int | None = None,
    max_hops: int = DEFAULT_MAX_HOPS,
) -> RouteQueryResult:
    """Up to `k` simple routes that deliver exactly `amount` to `target`, cheapest first.

    Every route's channels can carry, in their direction, what must cross them; its fee
    is at most `max_fee` (no budget when None); it has at most `max_hops` channels; its
    mediators avoid `exclude_nodes` and its channels `exclude_edges` (``(payer, payee)``
    directions). `penalties` maps a node or a channel direction to an extra cost in base
    units (what failed recently). Routes are ranked by cost (fee plus penalties), then
    hops; the first is the cheapest there is. With no route, `reason` says why.

    Raises `ValidationError` for a query that makes no sense: an amount that is not
    positive, a payer paying itself, `k` or `max_hops` out of range, a negative penalty
    or fee budget.
    """
    check_uint(amount, UINT256_MAX, "amount")
    if amount == 0:
        raise ValidationError("amount must be positive")
    if source == target:
        raise ValidationError("source and target must differ")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ValidationError(f"k must be 1..{MAX_K}, got {k!r}")
    check_uint(max_hops, MAX_HOPS, "max_hops")
    if max_hops == 0:
        raise ValidationError("max_hops must be at least 1")
    if max_fee is not None:
        check_uint(max_fee, UINT256_MAX, "max_fee")
    index, ids = graph.index, graph.direction_ids
    node_penalty: dict[int, int] = {}
    direction_penalty: dict[int, int] = {}
    for key, value in (penalties or {}).items():
        check_uint(value, UINT256_MAX, "penalty")
        if value and isinstance(key, tuple) and key in ids:
            direction_penalty[ids[key]] = value
        elif value and isinstance(key, bytes) and key in index:
            node_penalty[index[key]] = value
    if source not in index or target not in index:
        return RouteQueryResult((), NoRouteReason.NO_ROUTE)
    # After every check above, so that a query that must raise never meets a memo entry
    # (True == 1 as a key; the amount check refuses it).
    memo_key = (
        source,
        target,
        amount,
        k,
        frozenset(exclude_nodes),
        frozenset(exclude_edges),
        frozenset(penalties.items()) if penalties else None,
        max_fee,
        max_hops,
    )
    memo = _MEMOS.setdefault(graph, {})
    known = memo.get(memo_key)
    if known is not None:
        return known
    result = _find_routes(
        graph,
        source,
        target,
        amount,
        k,
        exclude_nodes,
        exclude_edges,
        node_penalty,
        direction_penalty,
        max_fee,
        max_hops,
    )
    if len(memo) >= MEMO_SIZE:
        del memo[next(iter(memo))]
    memo[memo_key] = result
    return result


def _find_routes(
    graph: ChannelGraph,
    source: Address,
    target: Address,
    amount: int,
    k: int,
    exclude_nodes: Collection[Address],
    exclude_edges: Collection[EdgeKey],
    node_penalty: dict[int, int],
    direction_penalty: dict[int, int],
    max_fee: int | None,
    max_hops: int,
) -> RouteQueryResult:
    index, ids = graph.index, graph.direction_ids
    banned = {index[node] for node in exclude_nodes if node in index} - {index[source]}
    query = _Query(
        source=index[source],
        target=index[target],
        amount=amount,
        amount_cap=_NO_LIMIT if max_fee is None else amount + max_fee,
        max_hops=max_hops,
        banned_nodes=frozenset(banned | {index[target]}),
        banned_directions=frozenset(ids[key] for key in exclude_edges if key in ids),
        node_penalty=node_penalty,
        direction_penalty=direction_penalty,
    )
    found = _candidates(graph, query, k)
    if not found:
        return RouteQueryResult((), _reason(graph, query))
    routes = sorted(
        (_route(graph, query, nodes, amounts) for nodes, amounts in found),
        key=lambda route: (route.cost, route.hops),
    )
    return RouteQueryResult(tuple(routes))
