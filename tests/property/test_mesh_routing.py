"""Property: the feasibility condition keeps routing loop-free at every instant.

A handful of real ``RoutingTable``s on a random graph exchange their triggered updates
and dumps with arbitrary losses, links fail and come back, originators bump seqnos,
seqno requests travel, time passes and routes expire; after every step, for every
destination, following next hops from any node never revisits a node (RFC 8966 §2.5).
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from mesh_relay.config import MeshConfig
from mesh_relay.frames import RouteEntry
from mesh_relay.identity import Identity
from mesh_relay.routing import NeighbourKey, RoutingTable
from mesh_relay.sim import private_key_for

CONFIG = MeshConfig(update_interval=5.0, route_hold=17.5, seqno_request_interval=0.5)
MAX_NODES = 7


class RoutingMesh(RuleBasedStateMachine):
    """Route tables joined by links; rules deliver, lose, cut, heal, bump and age."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[RoutingTable] = []
        self.links: set[tuple[int, int]] = set()
        self.all_links: list[tuple[int, int]] = []
        self.now = 1_700_000_000.0

    @initialize(
        count=st.integers(2, MAX_NODES),
        extra=st.lists(st.tuples(st.integers(0, MAX_NODES - 1), st.integers(0, MAX_NODES - 1))),
        parents=st.lists(st.integers(0, MAX_NODES), min_size=MAX_NODES, max_size=MAX_NODES),
    )
    def build(self, count: int, extra: list[tuple[int, int]], parents: list[int]) -> None:
        links = {(parents[i] % i, i) for i in range(1, count)}
        links |= {(min(a, b), max(a, b)) for a, b in extra if a != b and max(a, b) < count}
        self.all_links = sorted(links)
        self.links = set(links)
        for i in range(count):
            table = RoutingTable(Identity(private_key_for(99, i)), CONFIG)
            table.start(self.now)
            self.tables.append(table)

    def _neighbours(self, i: int) -> list[int]:
        return [b if a == i else a for a, b in self.links if i in (a, b)]

    def _deliver(self, sender: int, entries: list[RouteEntry], lost: set[int]) -> None:
        if not entries:
            return
        for j in self._neighbours(sender):
            if j not in lost:
                self.tables[j].receive_routes(("l", sender), 1, tuple(entries), self.now)

    @rule(node=st.integers(0, MAX_NODES - 1), lost=st.sets(st.integers(0, MAX_NODES - 1)))
    def triggered_update(self, node: int, lost: set[int]) -> None:
        node %= len(self.tables)
        self._deliver(node, self.tables[node].take_changed(), lost)

    @rule(node=st.integers(0, MAX_NODES - 1), lost=st.sets(st.integers(0, MAX_NODES - 1)))
    def periodic_dump(self, node: int, lost: set[int]) -> None:
        node %= len(self.tables)
        self._deliver(node, list(self.tables[node].dump()), lost)

    @rule(node=st.integers(0, MAX_NODES - 1))
    def deliver_requests(self, node: int) -> None:
        node %= len(self.tables)
        table = self.tables[node]
        requests, table.requests = table.requests, []
        for request, target in requests:
            targets = self._neighbours(node) if target is None else [target[1]]
            for j in targets:
                if isinstance(j, int) and j in self._neighbours(node):
                    self.tables[j].receive_request(("l", node), request, self.now)

    @rule(index=st.integers(0, 100))
    def cut_link(self, index: int) -> None:
        if not self.links:
            return
        a, b = sorted(self.links)[index % len(self.links)]
        self.links.discard((a, b))
        self.tables[a].neighbour_lost(("l", b), self.now)
        self.tables[b].neighbour_lost(("l", a), self.now)

    @rule(index=st.integers(0, 100))
    def heal_link(self, index: int) -> None:
        if self.all_links:
            self.links.add(self.all_links[index % len(self.all_links)])

    @rule(node=st.integers(0, MAX_NODES - 1))
    def bump_seqno(self, node: int) -> None:
        self.tables[node % len(self.tables)].bump_seqno(self.now)

    @rule(seconds=st.floats(0.0, 30.0))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        for table in self.tables:
            table.expire(self.now)

    @invariant()
    def no_routing_loop(self) -> None:
        index = {t.me: i for i, t in enumerate(self.tables)}
        for destination, target in index.items():
            for start in range(len(self.tables)):
                seen = {start}
                node = start
                while self.tables[node].me != destination:
                    hop: NeighbourKey | None = self.tables[node].next_hop(destination)
                    if hop is None:
                        break
                    node = hop[1]  # type: ignore[assignment]
                    assert node not in seen, f"routing loop toward node {target}"
                    seen.add(node)

    @invariant()
    def next_hops_are_current_neighbours_with_no_self_route(self) -> None:
        for i, table in enumerate(self.tables):
            assert table.next_hop(table.me) is None
            for other in self.tables:
                hop = table.next_hop(other.me)
                if hop is not None:
                    assert (min(i, hop[1]), max(i, hop[1])) in self.links  # type: ignore[type-var]


RoutingMesh.TestCase.settings = settings(
    max_examples=max(200, settings.default.max_examples), stateful_step_count=60
)
TestRoutingLoopFreedom = RoutingMesh.TestCase
