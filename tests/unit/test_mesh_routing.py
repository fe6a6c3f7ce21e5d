"""mesh_relay.routing: feasibility, selection, loop-freedom examples, retractions,
seqno requests, expiry and bounds."""

from __future__ import annotations

from mesh_relay.config import MeshConfig
from mesh_relay.frames import METRIC_INFINITY, SeqnoRequest, route_digest
from mesh_relay.identity import Identity
from mesh_relay.routing import NeighbourKey, RoutingTable

CONFIG = MeshConfig()
NOW = 1_700_000_000.0
ME = Identity((21).to_bytes(32, "big"))
DEST = Identity((22).to_bytes(32, "big"))
OTHER = Identity((23).to_bytes(32, "big"))
N1: NeighbourKey = ("radio", 1)
N2: NeighbourKey = ("radio", 2)
N3: NeighbourKey = ("radio", 3)


def advert(identity: Identity, seqno: int, metric: int) -> tuple[bytes, int, int, bytes]:
    return (identity.address, seqno, metric, identity.sign(route_digest(identity.address, seqno)))


def table(config: MeshConfig = CONFIG) -> RoutingTable:
    routes = RoutingTable(ME, config)
    routes.start(NOW)
    routes.take_changed()
    return routes


def test_start__seqno_from_clock_and_signed_self_route() -> None:
    routes = RoutingTable(ME, CONFIG)
    routes.start(NOW)
    assert routes.seqno == int(NOW)
    [own] = routes.take_changed()
    assert own == (ME.address, int(NOW), 0, routes.self_signature)
    assert routes.take_changed() == []


def test_new_route__selected_with_link_cost_and_fd() -> None:
    routes = table()
    routes.receive_routes(N1, 2, (advert(DEST, 5, 3),), NOW)
    assert routes.route(DEST.address) == (N1, 5, 5)
    assert routes.feasibility_distance(DEST.address) == (5, 5)
    assert routes.next_hop(DEST.address) == N1
    assert routes.public_key(DEST.address) == DEST.public_key
    assert list(routes.changed) == [DEST.address] and list(routes.rerouted) == [DEST.address]
    [entry] = routes.take_changed()
    assert entry[:3] == (DEST.address, 5, 5)


def test_better_route__switches_and_fd_tightens() -> None:
    routes = table()
    routes.receive_routes(N1, 1, (advert(DEST, 5, 4),), NOW)
    routes.receive_routes(N2, 1, (advert(DEST, 5, 1),), NOW)
    assert routes.route(DEST.address) == (N2, 5, 2)
    assert routes.feasibility_distance(DEST.address) == (5, 2)


def test_equal_metric__keeps_the_current_route() -> None:
    routes = table()
    routes.receive_routes(N1, 1, (advert(DEST, 5, 2),), NOW)
    routes.receive_routes(N2, 1, (advert(DEST, 5, 1),), NOW)
    routes.receive_routes(N3, 1, (advert(DEST, 5, 1),), NOW)
    assert routes.next_hop(DEST.address) == N2


def test_feasibility__same_seqno_needs_strictly_smaller_metric() -> None:
    routes = table()
    routes.receive_routes(N1, 1, (advert(DEST, 5, 2),), NOW)  # FD = (5, 3)
    routes.receive_routes(N2, 1, (advert(DEST, 5, 3),), NOW)  # 3 < 3 is false
    routes.receive_routes(N3, 1, (advert(DEST, 4, 0),), NOW)  # older seqno
    routes.neighbour_lost(N1, NOW)
    # Neither the equal-metric nor the older-seqno route may replace it: both could loop.
    assert routes.route(DEST.address) is None
    routes.receive_routes(N2, 1, (advert(DEST, 6, 9),), NOW)  # newer seqno: feasible
    assert routes.route(DEST.address) == (N2, 6, 10)


def test_count_to_infinity__chain_a_b_c__b_never_routes_back_through_a() -> None:
    # A - B - C, destination C. B (this table) has C at 1; A hears it from B at 2.
    routes = table()
    c = DEST
    routes.receive_routes(N1, 1, (advert(c, 5, 0),), NOW)  # N1 is C itself
    assert routes.route(c.address) == (N1, 5, 1)
    routes.neighbour_lost(N1, NOW)  # C vanishes
    routes.take_changed()
    routes.requests.clear()
    # A still advertises its stale route (via B!) at metric 2: unfeasible for B.
    routes.receive_routes(N2, 1, (advert(c, 5, 2),), NOW + 3)
    assert routes.route(c.address) is None
    # B asks A for a fresher seqno instead, which A forwards toward C.
    [(request, target)] = routes.requests
    assert request == SeqnoRequest(c.address, 6, CONFIG.seqno_request_hops) and target == N2
    # C reappears behind A with seqno 6: now feasible.
    routes.receive_routes(N2, 1, (advert(c, 6, 1),), NOW + 4)
    assert routes.route(c.address) == (N2, 6, 2)


def test_lost_route__retraction_advertised_and_request_broadcast() -> None:
    routes = table()
    routes.receive_routes(N1, 1, (advert(DEST, 5, 1),), NOW)
    routes.take_changed()
    routes.neighbour_lost(N1, NOW + 1)
    [entry] = routes.take_changed()
    assert entry[:3] == (DEST.address, 5, METRIC_INFINITY)
    [(request, target)] = routes.requests
    assert request.seqno == 6 and target is None


def test_lost_route__switches_to_a_feasible_alternate_without_request() -> None:
    routes = table()
    routes.receive_routes(N1, 1, (advert(DEST, 5, 1),), NOW)  # FD (5, 2)
    routes.receive_routes(N2, 1, (advert(DEST, 5, 1),), NOW)  # feasible (1 < 2), stored
    routes.neighbour_lost(N1, NOW + 1)
    assert routes.route(DEST.address) == (N2, 5, 2)
    assert routes.requests == []


def test_retraction__from_the_selected_neighbour__removes_its_route() -> None:
    routes = table()
    routes.receive_routes(N1, 1, (advert(DEST, 5, 1),), NOW)
    routes.receive_routes(N1, 1, ((DEST.address, 5, METRIC_INFINITY, bytes(65)),), NOW)
    assert routes.route(DEST.address) is None


def test_metric_overflow__treated_as_unreachable() -> None:
    routes = table()
    routes.receive_routes(N1, 1, (advert(DEST, 5, METRIC_INFINITY - 1),), NOW)
    assert routes.route(DEST.address) is None


def test_worse_metric_from_selected_neighbour__unfeasible_route_dropped() -> None:
    routes = table()
    routes.receive_routes(N1, 1, (advert(DEST, 5, 1),), NOW)  # FD (5, 2)
    routes.receive_routes(N1, 1, (advert(DEST, 5, 4),), NOW + 1)  # 4 >= 2: unfeasible
    assert routes.route(DEST.address) is None


def test_forged_advert__rejected_with_a_reason() -> None:
    routes = table()
    forged = (DEST.address, 5, 1, OTHER.sign(route_digest(DEST.address, 5)))
    routes.receive_routes(N1, 1, (forged,), NOW)
    assert routes.route(DEST.address) is None
    assert routes.invalid == ["route advert not signed by its destination"]
    routes.invalid.clear()
    routes.receive_routes(N1, 1, ((DEST.address, 5, 1, b"\x00" * 65),), NOW)
    assert routes.invalid and routes.invalid[0].startswith("route advert:")


def test_forged_seqno__signature_of_another_seqno_rejected() -> None:
    routes = table()
    _, _, _, signature = advert(DEST, 5, 1)
    routes.receive_routes(N1, 1, ((DEST.address, 6, 1, signature),), NOW)
    assert routes.route(DEST.address) is None and routes.invalid


def test_refresh__same_advert_extends_expiry_without_change() -> None:
    routes = table()
    routes.receive_routes(N1, 1, (advert(DEST, 5, 1),), NOW)
    routes.take_changed()
    routes.receive_routes(N1, 1, (advert(DEST, 5, 1),), NOW + 100)
    assert routes.take_changed() == []
    routes.expire(NOW + CONFIG.route_hold + 50)
    assert routes.route(DEST.address) is not None
    routes.expire(NOW + 100 + CONFIG.route_hold)
    assert routes.route(DEST.address) is None


def test_expire__forgets_the_destination_after_source_hold() -> None:
    routes = table()
    routes.receive_routes(N1, 1, (advert(DEST, 5, 1),), NOW)
    routes.expire(NOW + CONFIG.route_hold)
    assert routes.feasibility_distance(DEST.address) == (5, 2)
    routes.expire(NOW + CONFIG.route_hold + CONFIG.source_hold)
    assert routes.feasibility_distance(DEST.address) is None and len(routes) == 0


def test_request_for_me__newer_seqno_bumps_older_just_readvertises() -> None:
    routes = table()
    seqno = routes.seqno
    routes.receive_request(N1, SeqnoRequest(ME.address, seqno, 4), NOW)
    assert routes.seqno == seqno and ME.address in routes.changed
    routes.take_changed()
    routes.receive_request(N1, SeqnoRequest(ME.address, seqno + 1, 4), NOW)
    assert routes.seqno == seqno + 1
    [own] = routes.take_changed()
    assert own[1] == seqno + 1 and own[3] == ME.sign(route_digest(ME.address, seqno + 1))


def test_request_for_me__bumps_are_rate_limited() -> None:
    routes = table()
    seqno = routes.seqno
    routes.receive_request(N1, SeqnoRequest(ME.address, seqno + 1, 4), NOW)
    routes.receive_request(N1, SeqnoRequest(ME.address, seqno + 2, 4), NOW + 0.1)
    assert routes.seqno == seqno + 1
    # Later bumps follow the clock, so a restarted node is never behind its old seqnos.
    routes.receive_request(N1, SeqnoRequest(ME.address, seqno + 2, 4), NOW + 60)
    assert routes.seqno == int(NOW + 60)


def test_request__answered_by_a_node_with_a_fresh_enough_route() -> None:
    routes = table()
    routes.receive_routes(N1, 1, (advert(DEST, 5, 1),), NOW)
    routes.take_changed()
    routes.receive_request(N2, SeqnoRequest(DEST.address, 5, 4), NOW)
    assert list(routes.changed) == [DEST.address] and routes.requests == []


def test_request__forwarded_toward_the_originator_once() -> None:
    routes = table()
    routes.receive_routes(N1, 1, (advert(DEST, 5, 1),), NOW)
    routes.receive_request(N2, SeqnoRequest(DEST.address, 6, 4), NOW)
    routes.receive_request(N3, SeqnoRequest(DEST.address, 6, 4), NOW)
    assert routes.requests == [(SeqnoRequest(DEST.address, 6, 3), N1)]


def test_request__not_forwarded_back_nor_without_hops_nor_without_route() -> None:
    routes = table()
    routes.receive_routes(N1, 1, (advert(DEST, 5, 1),), NOW)
    routes.receive_request(N1, SeqnoRequest(DEST.address, 6, 4), NOW)  # from the next hop
    routes.receive_request(N2, SeqnoRequest(DEST.address, 7, 1), NOW)  # no hop left
    assert routes.requests == []


def test_request__for_an_unknown_destination__asks_neighbours_within_the_hop_limit() -> None:
    routes = table()
    routes.request_route(DEST.address, NOW)
    routes.request_route(DEST.address, NOW + 0.1)  # rate-limited
    [(request, target)] = routes.requests
    assert request == SeqnoRequest(DEST.address, 0, 3) and target is None
    routes.requests.clear()
    routes.receive_request(N2, SeqnoRequest(OTHER.address, 0, 3), NOW)
    routes.receive_request(N3, SeqnoRequest(OTHER.address, 0, 3), NOW)
    assert routes.requests == [(SeqnoRequest(OTHER.address, 0, 2), None)]


def test_heard_own_route_with_a_higher_seqno__jumps_past_it() -> None:
    routes = table()
    future = routes.seqno + 10
    routes.receive_routes(N1, 1, (advert(ME, future, 3),), NOW)
    assert routes.seqno == future + 1
    routes.receive_routes(N1, 1, (advert(ME, future, 3),), NOW)
    assert routes.seqno == future + 1


def test_max_destinations__new_ones_refused() -> None:
    routes = table(MeshConfig(max_destinations=1))
    routes.receive_routes(N1, 1, (advert(DEST, 5, 1), advert(OTHER, 5, 1)), NOW)
    assert routes.route(DEST.address) is not None and routes.route(OTHER.address) is None
    assert routes.rejected_full == 1


def test_dump__self_and_every_selected_route() -> None:
    routes = table()
    routes.receive_routes(N1, 1, (advert(DEST, 5, 1), advert(OTHER, 7, 2)), NOW)
    dump = routes.dump()
    assert [d[:3] for d in dump] == [
        (ME.address, routes.seqno, 0),
        (DEST.address, 5, 2),
        (OTHER.address, 7, 3),
    ]
    assert sorted(routes.destinations()) == sorted([DEST.address, OTHER.address])
    assert routes.has_route_from(DEST.address, N1, 5)
    assert not routes.has_route_from(DEST.address, N1, 6)
    assert not routes.has_route_from(DEST.address, N2, 5)
