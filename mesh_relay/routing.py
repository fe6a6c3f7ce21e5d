"""Distance-vector routing with sequence numbers and Babel's feasibility condition.

Belongs here: the route table of one node and the rules that keep it loop-free (RFC 8966
§2-3, simplified for a mesh of equal nodes announcing one address each):

- every node originates its own address with a seqno it alone can sign (the signature
  covers (address, seqno), so a relay cannot invent a route to someone else or a fresher
  seqno); metrics are added hop by hop (each link's cost; 1 = hop count);
- each destination has a feasibility distance FD = (seqno, metric) of the best route this
  node has advertised; an update (s, m) from a neighbour is feasible only if s > FD.seqno
  or (s == FD.seqno and m < FD.metric). Selecting only feasible routes keeps the
  successor graph acyclic at every instant, not only after convergence;
- a node that loses its last feasible route retracts it and asks the originator (SEQNO
  request, forwarded toward it) for a higher seqno, which makes every route feasible again;
- changes go out as triggered updates (``take_changed``), everything as a slow periodic
  dump (``dump``); a route not refreshed for ``route_hold`` expires.

Unfeasible updates from neighbours whose route is not stored are not stored: they could
only become usable with a new seqno, which arrives as a new update anyway. This keeps a
1,000-node table to a few routes per destination.

Does not belong here: frames on the wire (``node`` turns adverts and requests into
frames), neighbour discovery (``neighbours``), forwarding of data (``store``, ``node``).
"""

from __future__ import annotations

import functools

from mesh_relay.config import LinkAddr, MeshConfig
from mesh_relay.errors import EnvelopeError
from mesh_relay.frames import (
    METRIC_INFINITY,
    UINT32_MAX,
    RouteAdvert,
    RouteEntry,
    SeqnoRequest,
    route_digest,
)
from mesh_relay.identity import SIGNATURE_LENGTH, Address, Identity, recover

NeighbourKey = tuple[str, LinkAddr]
"""(link id, link address): one neighbour as seen on one link."""

_NO_SIGNATURE = bytes(SIGNATURE_LENGTH)
"""Retractions carry no signature: they only withdraw the sender's own route."""
_NEVER = float("inf")
_UNKNOWN_REQUEST_HOPS = 3
"""Reach of a request for a destination never heard of: neighbours and theirs."""


@functools.lru_cache(maxsize=1 << 15)
def _route_signer(destination: bytes, seqno: int, signature: bytes) -> Address | str:
    """The address that signed (destination, seqno), or why the signature is bad.

    Memoised (a pure function): the same advert reaches a node from every neighbour,
    and all nodes of a simulation share one process.
    """
    try:
        signer, _ = recover(route_digest(destination, seqno), signature)
    except EnvelopeError as exc:
        return f"route advert: {exc}"
    return signer


class Route:
    """A route to one destination through one neighbour."""

    __slots__ = ("advertised", "expires", "metric", "neighbour", "seqno", "signature")

    def __init__(
        self,
        neighbour: NeighbourKey,
        seqno: int,
        advertised: int,
        metric: int,
        signature: bytes,
        expires: float,
    ) -> None:
        self.neighbour = neighbour
        self.seqno = seqno
        self.advertised = advertised
        self.metric = metric
        self.signature = signature
        self.expires = expires


class Destination:
    """Routes to one destination, the selected one, and the feasibility distance."""

    __slots__ = (
        "fd_metric",
        "fd_seqno",
        "forget_at",
        "key_seqno",
        "key_signature",
        "last_request",
        "routes",
        "sel_metric",
        "sel_seqno",
        "selected",
    )

    def __init__(self) -> None:
        self.routes: dict[NeighbourKey, Route] = {}
        self.selected: Route | None = None
        self.sel_seqno = -1
        """Seqno and metric of ``selected`` when it was last (re)selected: routes are
        updated in place, so this is what tells whether the selection changed."""
        self.sel_metric = METRIC_INFINITY
        self.key_seqno = -1
        """A verified (seqno, signature) of the destination, kept while no route is: the
        public key for sealing messages that wait for a route."""
        self.key_signature = _NO_SIGNATURE
        self.fd_seqno = -1
        self.fd_metric = METRIC_INFINITY
        self.forget_at = _NEVER
        self.last_request = -_NEVER

    def feasible(self, seqno: int, advertised: int) -> bool:
        """Babel's condition: newer seqno, or same seqno and strictly smaller metric."""
        fd_seqno = self.fd_seqno
        return (
            fd_seqno < 0 or seqno > fd_seqno or (seqno == fd_seqno and advertised < self.fd_metric)
        )


class RoutingTable:
    """The routes of one node. Inputs are method calls; outputs accumulate in the outboxes
    ``changed`` (destinations to advertise), ``rerouted`` (destinations whose next hop is
    new, to pump queued data), ``requests`` (seqno requests to send: to one neighbour, or
    to all when the target is None) and ``invalid`` (reasons of rejected adverts); the
    node drains them after each input."""

    def __init__(self, identity: Identity, config: MeshConfig) -> None:
        self._identity = identity
        self._config = config
        self.me = identity.address
        self.seqno = 0
        self.self_signature = _NO_SIGNATURE
        self._last_bump = -_NEVER
        self._dests: dict[Address, Destination] = {}
        self._forwarded_requests: dict[tuple[Address, int], float] = {}
        self._unknown_requests: dict[Address, float] = {}
        # Ordered (dicts, not sets): iteration order must not depend on hash seeds, so a
        # simulation is a pure function of its seed.
        self.changed: dict[Address, None] = {}
        self.rerouted: dict[Address, None] = {}
        self.requests: list[tuple[SeqnoRequest, NeighbourKey | None]] = []
        self.invalid: list[str] = []
        self.rejected_full = 0

    # -- own seqno ------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Take a seqno from the clock, so a restarted node is ahead of its old adverts."""
        if self.seqno == 0:
            self.seqno = min(UINT32_MAX, max(1, int(now)))
            self._sign_self()
            self.changed[self.me] = None

    def _sign_self(self) -> None:
        self.self_signature = self._identity.sign(route_digest(self.me, self.seqno))

    def restore_seqno(self, seqno: int) -> None:
        """Never go below a seqno this node advertised before a restart."""
        if seqno >= self.seqno:
            self.seqno = min(UINT32_MAX, seqno + 1)
            self._sign_self()
            self.changed[self.me] = None

    def bump_seqno(self, now: float) -> None:
        """Advertise a higher own seqno: it makes every route to us feasible again."""
        if self.seqno >= UINT32_MAX:  # pragma: no cover -- in the year 2106
            return
        self.seqno = min(UINT32_MAX, max(self.seqno + 1, int(now)))
        self._last_bump = now
        self._sign_self()
        self.changed[self.me] = None

    # -- inputs ---------------------------------------------------------------------------

    def receive_routes(
        self, neighbour: NeighbourKey, cost: int, entries: tuple[RouteEntry, ...], now: float
    ) -> None:
        """Process a ROUTES frame from ``neighbour`` (link cost ``cost``)."""
        dests = self._dests
        me = self.me
        expires = now + self._config.route_hold
        for destination, seqno, advertised, signature in entries:
            if destination == me:
                self._heard_self(seqno, advertised, signature, now)
                continue
            dest = dests.get(destination)
            metric = advertised + cost
            if metric >= METRIC_INFINITY:
                if dest is not None and dest.routes.pop(neighbour, None) is not None:
                    self._reselect(destination, dest, now)
                continue
            if dest is None:
                if len(dests) >= self._config.max_destinations:
                    self.rejected_full += 1
                    continue
                if not self._verified(destination, seqno, signature, None):
                    continue
                # A destination heard of for the first time: its one route is selected
                # (no FD yet, so feasible); done inline, it is half of all the work of
                # a new mesh's convergence.
                dest = Destination()
                dests[destination] = dest
                first = Route(neighbour, seqno, advertised, metric, signature, expires)
                dest.routes[neighbour] = first
                dest.selected = first
                dest.fd_seqno = dest.sel_seqno = dest.key_seqno = seqno
                dest.fd_metric = dest.sel_metric = metric
                dest.key_signature = signature
                self.changed[destination] = None
                self.rerouted[destination] = None
                continue
            route = dest.routes.get(neighbour)
            if route is None:
                # Feasibility inlined (the hot path of a large mesh).
                fd_seqno = dest.fd_seqno
                if not (
                    fd_seqno < 0
                    or seqno > fd_seqno
                    or (seqno == fd_seqno and advertised < dest.fd_metric)
                ):
                    if dest.selected is None:
                        # Starving while a neighbour has a path: ask for a fresher seqno.
                        self._request(destination, dest, neighbour, now)
                    continue
                selected = dest.selected
                if not (
                    selected is not None
                    and selected.seqno == seqno
                    and selected.signature == signature
                ) and not self._verified(destination, seqno, signature, dest):
                    continue
                dest.routes[neighbour] = Route(
                    neighbour, seqno, advertised, metric, signature, expires
                )
                if selected is None or metric < selected.metric:
                    self._reselect(destination, dest, now)
                continue
            if route.seqno == seqno and route.advertised == advertised:
                route.expires = expires
                if route.signature == signature:
                    continue
            if not (seqno == route.seqno and signature == route.signature) and not (
                self._verified(destination, seqno, signature, dest)
            ):
                continue
            route.seqno = seqno
            route.advertised = advertised
            route.metric = metric
            route.signature = signature
            route.expires = expires
            self._reselect(destination, dest, now)

    def receive_request(self, neighbour: NeighbourKey, request: SeqnoRequest, now: float) -> None:
        """Answer, or forward toward the originator, a request for a fresher seqno."""
        destination = request.destination
        if destination == self.me:
            if (
                request.seqno > self.seqno
                and now - self._last_bump >= self._config.seqno_request_interval
            ):
                self.bump_seqno(now)
            else:
                self.changed[self.me] = None
            return
        dest = self._dests.get(destination)
        if dest is not None and dest.selected is not None and dest.selected.seqno >= request.seqno:
            self.changed[destination] = None
            return
        if request.hop_limit <= 1:
            return
        if dest is None:
            # We never heard of it either (adverts lost on the way): ask our neighbours in
            # turn; the hop limit of such requests is small (``request_route``).
            if self._remember_forward(destination, request.seqno, now):
                self.requests.append(
                    (SeqnoRequest(destination, request.seqno, request.hop_limit - 1), None)
                )
            return
        # Forward toward the originator along our best route (selected, else the best
        # stored one, feasible or not), never back to the asker, and never by flooding:
        # a node with no route drops the request (RFC 8966 §3.8.1.2).
        candidates = [r for r in dest.routes.values() if r.neighbour != neighbour]
        if not candidates:
            return
        if not self._remember_forward(destination, request.seqno, now):
            return
        selected = dest.selected
        if selected is not None and selected.neighbour != neighbour:
            target = selected.neighbour
        else:
            target = min(candidates, key=lambda r: r.metric).neighbour
        self.requests.append(
            (SeqnoRequest(destination, request.seqno, request.hop_limit - 1), target)
        )

    def neighbour_lost(self, neighbour: NeighbourKey, now: float) -> None:
        """Drop every route through ``neighbour``."""
        for destination, dest in list(self._dests.items()):
            if dest.routes.pop(neighbour, None) is not None:
                self._reselect(destination, dest, now)

    def expire(self, now: float) -> None:
        """Drop routes not refreshed in time and forget destinations long unreachable."""
        for destination, dest in list(self._dests.items()):
            stale = [key for key, route in dest.routes.items() if route.expires <= now]
            for key in stale:
                del dest.routes[key]
            if stale:
                self._reselect(destination, dest, now)
            if not dest.routes and dest.forget_at <= now:
                del self._dests[destination]
        self._gc_requests(now)

    def request_route(self, destination: Address, now: float) -> None:
        """Ask the neighbours for a route to ``destination`` (data is waiting for one).

        For a destination never heard of (its adverts were all lost on the way here), a
        request for seqno 0 makes any neighbour with a route advertise it at once rather
        than at its next periodic dump.
        """
        dest = self._dests.get(destination)
        if dest is not None:
            if dest.selected is None:
                self._request(destination, dest, None, now)
            return
        last = self._unknown_requests.get(destination)
        if last is not None and now - last < self._config.seqno_request_interval:
            return
        if len(self._unknown_requests) >= self._config.max_neighbours:
            self._unknown_requests.clear()
        self._unknown_requests[destination] = now
        self.requests.append((SeqnoRequest(destination, 0, _UNKNOWN_REQUEST_HOPS), None))

    # -- outputs --------------------------------------------------------------------------

    def take_changed(self) -> list[RouteAdvert]:
        """Adverts for every destination changed since the last call (retractions too)."""
        adverts: list[RouteAdvert] = []
        for destination in self.changed:
            if destination == self.me:
                adverts.append(RouteAdvert(self.me, self.seqno, 0, self.self_signature))
                continue
            dest = self._dests.get(destination)
            if dest is None:
                continue
            selected = dest.selected
            if selected is not None:
                adverts.append(
                    RouteAdvert(destination, selected.seqno, selected.metric, selected.signature)
                )
            elif dest.fd_seqno >= 0:
                adverts.append(
                    RouteAdvert(destination, dest.fd_seqno, METRIC_INFINITY, _NO_SIGNATURE)
                )
        self.changed.clear()
        return adverts

    def dump(self) -> list[RouteAdvert]:
        """Every selected route and our own: the periodic full update."""
        adverts = [RouteAdvert(self.me, self.seqno, 0, self.self_signature)]
        for destination, dest in self._dests.items():
            selected = dest.selected
            if selected is not None:
                adverts.append(
                    RouteAdvert(destination, selected.seqno, selected.metric, selected.signature)
                )
        return adverts

    def next_hop(self, destination: Address) -> NeighbourKey | None:
        """The neighbour to send to, or None when no feasible route exists."""
        dest = self._dests.get(destination)
        if dest is None or dest.selected is None:
            return None
        return dest.selected.neighbour

    def has_route_from(self, destination: Address, neighbour: NeighbourKey, seqno: int) -> bool:
        """True when ``neighbour`` gave us a route to ``destination`` with seqno >= ``seqno``."""
        dest = self._dests.get(destination)
        if dest is None:
            return False
        route = dest.routes.get(neighbour)
        return route is not None and route.seqno >= seqno

    def public_key(self, destination: Address) -> bytes | None:
        """The destination's public key, recovered from its signed route advert (the last
        one selected, so it outlives the route for as long as the destination is known)."""
        dest = self._dests.get(destination)
        if dest is None or dest.key_seqno < 0:
            return None
        try:
            _, key = recover(route_digest(destination, dest.key_seqno), dest.key_signature)
        except EnvelopeError:  # pragma: no cover -- verified when stored
            return None
        return key

    def route(self, destination: Address) -> tuple[NeighbourKey, int, int] | None:
        """(next hop, seqno, metric) of the selected route, for inspection and tests."""
        dest = self._dests.get(destination)
        if dest is None or dest.selected is None:
            return None
        selected = dest.selected
        return selected.neighbour, selected.seqno, selected.metric

    def feasibility_distance(self, destination: Address) -> tuple[int, int] | None:
        """(seqno, metric) of the FD, or None when the destination is unknown."""
        dest = self._dests.get(destination)
        if dest is None or dest.fd_seqno < 0:
            return None
        return dest.fd_seqno, dest.fd_metric

    def destinations(self) -> list[Address]:
        """Every destination with a selected route."""
        return [d for d, dest in self._dests.items() if dest.selected is not None]

    def __len__(self) -> int:
        return len(self._dests)

    # -- internals ------------------------------------------------------------------------

    def _heard_self(self, seqno: int, advertised: int, signature: bytes, now: float) -> None:
        # An advert of our own address with a seqno we do not remember using (a restart
        # with the clock set back): jump past it, or our adverts stay unfeasible.
        if seqno <= self.seqno or advertised >= METRIC_INFINITY:
            return
        if self._verified(self.me, seqno, signature, None):
            self.restore_seqno(seqno)

    def _verified(
        self, destination: Address, seqno: int, signature: bytes, dest: Destination | None
    ) -> bool:
        if dest is not None:
            for route in dest.routes.values():
                if route.seqno == seqno and route.signature == signature:
                    return True
        signer = _route_signer(destination, seqno, signature)
        if isinstance(signer, str):
            self.invalid.append(signer)
            return False
        if signer != destination:
            self.invalid.append("route advert not signed by its destination")
            return False
        return True

    def _reselect(self, destination: Address, dest: Destination, now: float) -> None:
        old = dest.selected
        old_neighbour = old.neighbour if old is not None else None
        old_state = (dest.sel_seqno, dest.sel_metric)
        best: Route | None = None
        for route in dest.routes.values():
            if route.expires <= now or not dest.feasible(route.seqno, route.advertised):
                continue
            if (
                best is None
                or route.metric < best.metric
                or (route.metric == best.metric and route is old)
            ):
                best = route
        dest.selected = best
        if best is not None:
            if best.seqno > dest.fd_seqno:
                dest.fd_seqno = best.seqno
                dest.fd_metric = best.metric
            elif best.seqno == dest.fd_seqno and best.metric < dest.fd_metric:
                dest.fd_metric = best.metric
            dest.forget_at = _NEVER
            if old_neighbour != best.neighbour:
                self.rerouted[destination] = None
                self.changed[destination] = None
            elif old_state != (best.seqno, best.metric):
                self.changed[destination] = None
            dest.sel_seqno = best.seqno
            dest.sel_metric = best.metric
            dest.key_seqno = best.seqno
            dest.key_signature = best.signature
        elif old is not None:
            dest.sel_seqno = -1
            dest.sel_metric = METRIC_INFINITY
            dest.forget_at = now + self._config.source_hold
            self.changed[destination] = None
            self._request(destination, dest, None, now)

    def _request(
        self, destination: Address, dest: Destination, target: NeighbourKey | None, now: float
    ) -> None:
        if now - dest.last_request < self._config.seqno_request_interval:
            return
        dest.last_request = now
        seqno = min(UINT32_MAX, dest.fd_seqno + 1) if dest.fd_seqno >= 0 else 0
        # Unicast to a neighbour that has a (for us unfeasible) path, otherwise to every
        # neighbour once; whoever has a route forwards it toward the originator
        # (``receive_request``), whoever has none drops it: no flooding.
        self.requests.append(
            (SeqnoRequest(destination, seqno, self._config.seqno_request_hops), target)
        )

    def _remember_forward(self, destination: Address, seqno: int, now: float) -> bool:
        # Duplicate suppression of forwarded requests: once per (destination, seqno) and
        # interval; False when already forwarded or when the bounded memory is full.
        key = (destination, seqno)
        if self._forwarded_requests.get(key, -_NEVER) > now:
            return False
        if len(self._forwarded_requests) >= 4 * self._config.max_neighbours:
            self._gc_requests(now)
            if len(self._forwarded_requests) >= 4 * self._config.max_neighbours:
                return False
        self._forwarded_requests[key] = now + self._config.seqno_request_interval
        return True

    def _gc_requests(self, now: float) -> None:
        for key in [k for k, until in self._forwarded_requests.items() if until <= now]:
            del self._forwarded_requests[key]
