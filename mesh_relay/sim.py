"""A deterministic simulator that drives real ``MeshNode``s over a virtual radio mesh.

Belongs here: the virtual clock and event queue; a radio model (per-link latency, loss
probability, bandwidth and MTU; broadcast reaches every node in range; a transmitter
sends one frame at a time, so links are FIFO); topology changes on a schedule (edges up
and down, partitions and their healing, devices that move, links switched off); seeded
randomness, so a run is a function of its seed; and the statistics tests and benches
read: deliveries, duplicates, outcomes at the sender, latency, bytes on the air, and
whether any frame ever carried a payload in clear or any node but the destination
delivered one. ``delivery_ratio_1000_nodes`` is the bench figure of issue 4.

The nodes are the real core: the simulator only carries their effects out, exactly as an
adapter would, and ticks them when ``next_timer`` asks.

Does not belong here: assertions about what a run should show (the tests own them).
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import cast

from mesh_relay.config import Link, MeshConfig
from mesh_relay.effects import (
    BROADCAST,
    Deliver,
    Effect,
    EventDelivered,
    EventExpired,
    EventInvalidFrame,
    SendFrame,
)
from mesh_relay.envelope import ENVELOPE_OVERHEAD
from mesh_relay.frames import ROUTED_HEADER_LENGTH
from mesh_relay.identity import SECP256K1_N, Address, keccak256
from mesh_relay.node import MeshNode

RADIO = "radio"
"""The id of every simulated node's one link."""

_FRAME = 0
_TICK = 1
_ACTION = 2


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """Properties of one radio edge (the same both ways)."""

    latency: float = 0.005
    loss: float = 0.0
    bandwidth: float = 250_000.0
    """Bytes per second of the sender's transmitter."""


@dataclass(slots=True)
class MessageRecord:
    """What happened to one message the simulation sent."""

    origin: int
    destination: int
    payload: bytes
    sent_at: float
    expiry: float
    deliveries: list[float] = field(default_factory=list)
    delivered_to: list[int] = field(default_factory=list)
    outcome: str | None = None
    outcome_at: float | None = None
    outcomes: int = 0


@dataclass(slots=True)
class SimStats:
    """Totals of a run."""

    frames_sent: int = 0
    bytes_sent: int = 0
    frame_receptions: int = 0
    frames_lost: int = 0
    invalid_events: int = 0
    plaintext_leaks: int = 0
    wrong_deliveries: int = 0
    unknown_deliveries: int = 0
    oversize_frames: int = 0
    bytes_by_type: dict[int, int] = field(default_factory=dict)
    frames_by_type: dict[int, int] = field(default_factory=dict)


def private_key_for(seed: int, index: int) -> bytes:
    """A valid secp256k1 private key, a pure function of (seed, index)."""
    counter = 0
    while True:
        candidate = keccak256(
            b"smartmesh/sim/key"
            + seed.to_bytes(8, "big", signed=True)
            + index.to_bytes(4, "big")
            + counter.to_bytes(4, "big")
        )
        if 0 < int.from_bytes(candidate, "big") < SECP256K1_N:
            return candidate
        counter += 1  # pragma: no cover


class Simulator:
    """Nodes 0..n-1 on one virtual radio channel each; edges say who hears whom."""

    def __init__(
        self,
        count: int,
        config: MeshConfig,
        seed: int = 0,
        mtu: int = 210,
        default_link: LinkSpec | None = None,
        start_time: float = 1_700_000_000.0,
        check_plaintext: bool = True,
    ) -> None:
        self.config = config
        self.rng = random.Random(seed)
        self.now = start_time
        self.start_time = start_time
        self.mtu = mtu
        self.default_link = default_link or LinkSpec()
        self.check_plaintext = check_plaintext
        self.nodes = [
            MeshNode(
                config,
                private_key_for(seed, i),
                keccak256(
                    b"smartmesh/sim/seed"
                    + seed.to_bytes(8, "big", signed=True)
                    + i.to_bytes(4, "big")
                ),
            )
            for i in range(count)
        ]
        self.index_of: dict[Address, int] = {n.address: i for i, n in enumerate(self.nodes)}
        self.edges: list[dict[int, LinkSpec]] = [{} for _ in range(count)]
        self.radio_on = [False] * count
        self.positions: list[tuple[float, float]] = []
        self.radius = 0.0
        self.messages: dict[bytes, MessageRecord] = {}
        self.stats = SimStats()
        self.invalid_reasons: dict[str, int] = {}
        self.resolved = 0
        self.tap: Callable[[int, SendFrame], bool] | None = None
        """Called with every frame a node sends; returning True drops it (tests use it to
        lose, capture or replay chosen frames)."""
        self.log: list[tuple[float, int, Effect]] = []
        """Every effect but ``SendFrame``, with its time and node."""
        self._probes: list[bytes] = []
        self._events: list[tuple[float, int, int, object]] = []
        self._seq = 0
        self._tick_at: list[float | None] = [None] * count
        self._tx_free = [0.0] * count

    # -- topology -------------------------------------------------------------------------

    def connect(self, a: int, b: int, spec: LinkSpec | None = None) -> None:
        """Put ``a`` and ``b`` in radio range of each other, now."""
        if a != b:
            link = spec or self.default_link
            self.edges[a][b] = link
            self.edges[b][a] = link

    def disconnect(self, a: int, b: int) -> None:
        """Take ``a`` and ``b`` out of range of each other, now (neither is told)."""
        self.edges[a].pop(b, None)
        self.edges[b].pop(a, None)

    def power_on(self, nodes: Iterable[int] | None = None) -> None:
        """Bring every node's radio link up (``link_up``), now."""
        for i in range(len(self.nodes)) if nodes is None else nodes:
            self.radio_on[i] = True
            self._effects(i, self.nodes[i].link_up(Link(RADIO, self.mtu), self.now))

    def power_off(self, i: int) -> None:
        """Switch node ``i``'s radio off (``link_down``), now."""
        self.radio_on[i] = False
        self._effects(i, self.nodes[i].link_down(RADIO, self.now))

    def place(self, positions: list[tuple[float, float]], radius: float) -> None:
        """Random geometric graph: nodes within ``radius`` of each other are in range."""
        self.positions = list(positions)
        self.radius = radius
        for i in range(len(self.nodes)):
            for j in list(self.edges[i]):
                self.disconnect(i, j)
        cell = radius
        grid: dict[tuple[int, int], list[int]] = {}
        for i, (x, y) in enumerate(positions):
            grid.setdefault((int(x / cell), int(y / cell)), []).append(i)
        r2 = radius * radius
        for i, (x, y) in enumerate(positions):
            cx, cy = int(x / cell), int(y / cell)
            for dx in (-1, 0, 1):
                for dy in (-1, 0, 1):
                    for j in grid.get((cx + dx, cy + dy), ()):
                        if j > i:
                            px, py = positions[j]
                            if (px - x) ** 2 + (py - y) ** 2 <= r2:
                                self.connect(i, j)

    def move(self, i: int, position: tuple[float, float]) -> None:
        """Move node ``i`` (after ``place``): its edges follow its new range."""
        self.positions[i] = position
        for j in list(self.edges[i]):
            self.disconnect(i, j)
        x, y = position
        for j, (px, py) in enumerate(self.positions):
            if j != i and (px - x) ** 2 + (py - y) ** 2 <= self.radius**2:
                self.connect(i, j)

    def components(self) -> list[list[int]]:
        """Connected components of the current edges, largest first."""
        seen = [False] * len(self.nodes)
        result = []
        for start in range(len(self.nodes)):
            if seen[start]:
                continue
            seen[start] = True
            stack, component = [start], []
            while stack:
                i = stack.pop()
                component.append(i)
                for j in self.edges[i]:
                    if not seen[j]:
                        seen[j] = True
                        stack.append(j)
            result.append(component)
        result.sort(key=len, reverse=True)
        return result

    # -- scheduling -----------------------------------------------------------------------

    def at(self, when: float, action: Callable[[], None]) -> None:
        """Run ``action`` (a topology change, a send) at virtual time ``when``."""
        self._push(when, _ACTION, action)

    def send(self, origin: int, destination: int, payload: bytes, lifetime: float) -> bytes:
        """Node ``origin`` sends ``payload`` to ``destination`` now; returns the message id."""
        node = self.nodes[origin]
        expiry = self.now + lifetime
        message_id = node.send(self.nodes[destination].address, payload, expiry, self.now)
        self.messages[message_id] = MessageRecord(
            origin, destination, payload, self.now, math.floor(expiry * 1000) / 1000
        )
        if self.check_plaintext:
            self._probes.append(payload)
        self._reschedule(origin)
        return message_id

    def run(self, until: float, stop: Callable[[], bool] | None = None) -> None:
        """Process events up to virtual time ``until`` (or until ``stop()`` holds)."""
        events = self._events
        nodes = self.nodes
        while events and events[0][0] <= until:
            when, _, kind, subject = heapq.heappop(events)
            self.now = when
            if kind == _FRAME:
                receivers, sender, data = cast(tuple[list[int], int, bytes], subject)
                for receiver in receivers:
                    if self.radio_on[receiver]:
                        self.stats.frame_receptions += 1
                        self._effects(
                            receiver, nodes[receiver].receive_frame(RADIO, sender, data, when)
                        )
            elif kind == _TICK:
                i = subject
                assert isinstance(i, int)
                if self._tick_at[i] == when:
                    self._tick_at[i] = None
                    self._effects(i, nodes[i].tick(when))
            else:
                assert callable(subject)
                subject()
            if stop is not None and stop():
                return
        self.now = max(self.now, until)

    def all_resolved(self) -> bool:
        """True when every message sent has an outcome at its sender."""
        return self.resolved == len(self.messages)

    # -- internals ------------------------------------------------------------------------

    def _push(self, when: float, kind: int, subject: object) -> None:
        self._seq += 1
        heapq.heappush(self._events, (when, self._seq, kind, subject))

    def _reschedule(self, i: int) -> None:
        wake = self.nodes[i].next_timer
        if wake is None:
            return
        wake = max(wake, self.now)
        current = self._tick_at[i]
        if current is None or wake < current:
            self._tick_at[i] = wake
            self._push(wake, _TICK, i)

    def apply(self, i: int, effects: list[Effect]) -> None:
        """Carry out effects node ``i`` returned outside the simulator's own calls."""
        self._effects(i, effects)

    def inject(self, receiver: int, sender: int, data: bytes) -> list[Effect]:
        """Hand ``data`` to ``receiver`` now as if ``sender`` had sent it; carry out and
        return the effects."""
        effects = self.nodes[receiver].receive_frame(RADIO, sender, data, self.now)
        self._effects(receiver, effects)
        return effects

    def _effects(self, i: int, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, SendFrame):
                if self.tap is None or not self.tap(i, effect):
                    self._transmit(i, effect)
                continue
            self.log.append((self.now, i, effect))
            if isinstance(effect, Deliver):
                self._on_deliver(i, effect)
            elif isinstance(effect, EventDelivered | EventExpired):
                self._on_outcome(i, effect)
            elif isinstance(effect, EventInvalidFrame):
                self.stats.invalid_events += 1
                self.invalid_reasons[effect.reason] = self.invalid_reasons.get(effect.reason, 0) + 1
        self._reschedule(i)

    def _transmit(self, i: int, effect: SendFrame) -> None:
        data = effect.data
        size = len(data)
        stats = self.stats
        stats.frames_sent += 1
        stats.bytes_sent += size
        kind = data[1]
        stats.bytes_by_type[kind] = stats.bytes_by_type.get(kind, 0) + size
        stats.frames_by_type[kind] = stats.frames_by_type.get(kind, 0) + 1
        if size > self.mtu:
            stats.oversize_frames += 1
            return
        if self.check_plaintext:
            for probe in self._probes:
                if probe in data:
                    stats.plaintext_leaks += 1
        if not self.radio_on[i]:
            return
        edges = self.edges[i]
        start = max(self.now, self._tx_free[i])
        if effect.link_addr is BROADCAST:
            receivers = list(edges.items())
        else:
            target = effect.link_addr
            assert isinstance(target, int)
            spec = edges.get(target)
            if spec is None:
                stats.frames_lost += 1
                return
            receivers = [(target, spec)]
        if not receivers:
            return
        airtime = size / receivers[0][1].bandwidth
        self._tx_free[i] = start + airtime
        rng = self.rng
        arrivals: dict[float, list[int]] = {}
        for j, spec in receivers:
            if spec.loss and rng.random() < spec.loss:
                stats.frames_lost += 1
                continue
            arrivals.setdefault(start + airtime + spec.latency, []).append(j)
        # One event per arrival time, not per receiver: a broadcast heard by ten
        # neighbours at the same instant costs one push and one pop of the event queue.
        for when, group in arrivals.items():
            self._push(when, _FRAME, (group, i, data))

    def _on_deliver(self, i: int, effect: Deliver) -> None:
        record = self.messages.get(effect.message_id)
        if record is None:
            self.stats.unknown_deliveries += 1
            return
        if record.destination != i or self.nodes[record.origin].address != effect.origin:
            self.stats.wrong_deliveries += 1
            return
        if effect.payload != record.payload:
            self.stats.wrong_deliveries += 1
            return
        record.deliveries.append(self.now)
        record.delivered_to.append(i)

    def _on_outcome(self, i: int, effect: EventDelivered | EventExpired) -> None:
        record = self.messages.get(effect.message_id)
        if record is None or record.origin != i:
            self.stats.wrong_deliveries += 1
            return
        record.outcomes += 1
        if record.outcome is None:
            self.resolved += 1
            record.outcome = "delivered" if isinstance(effect, EventDelivered) else "expired"
            record.outcome_at = self.now

    # -- summaries ------------------------------------------------------------------------

    def delivery_ratio(self) -> float:
        """Fraction of messages delivered at least once to their destination."""
        if not self.messages:
            return 1.0
        return sum(1 for r in self.messages.values() if r.deliveries) / len(self.messages)

    def latencies(self) -> list[float]:
        """First-delivery latency of every delivered message, in seconds."""
        return sorted(r.deliveries[0] - r.sent_at for r in self.messages.values() if r.deliveries)


def _sender(
    sim: Simulator, origin: int, destination: int, payload: bytes, lifetime: float = 120.0
) -> Callable[[], None]:
    def action() -> None:
        sim.send(origin, destination, payload, lifetime)

    return action


def fast_config(routed_mtu: int = 210) -> MeshConfig:
    """Timers about ten times shorter than the defaults, for quick simulations and tests:
    hellos every second, dumps every 5 s, hop retries from 0.2 s up to 2 s."""
    return MeshConfig(
        routed_mtu=routed_mtu,
        hello_interval=1.0,
        neighbour_timeout=3.5,
        hello_tolerance=3.0,
        update_interval=5.0,
        route_hold=17.5,
        source_hold=60.0,
        seqno_request_interval=0.5,
        hop_rto=0.2,
        hop_rto_max=2.0,
        e2e_retry=15.0,
        ack_grace=40.0,
        relay_dedup_window=10.0,
        reassembly_timeout=30.0,
    )


@dataclass(frozen=True, slots=True)
class Partition:
    """During [start, start + duration) no edge joins ``side`` to the other nodes."""

    start: float
    duration: float
    side: frozenset[int]


@dataclass(frozen=True, slots=True)
class Send:
    """At ``at``, ``origin`` sends ``payload`` to ``destination``, living ``lifetime``."""

    at: float
    origin: int
    destination: int
    payload: bytes
    lifetime: float


@dataclass(frozen=True, slots=True)
class Scenario:
    """A whole simulated run: topology, link quality, partitions, traffic; times are
    seconds after the start."""

    count: int
    edges: tuple[tuple[int, int], ...]
    loss: float = 0.0
    latency: float = 0.005
    mtu: int = 210
    partitions: tuple[Partition, ...] = ()
    sends: tuple[Send, ...] = ()
    seed: int = 0


def run_scenario(scenario: Scenario, config: MeshConfig | None = None) -> Simulator:
    """Run ``scenario`` until every message's outcome is due, and return the simulator."""
    config = config or fast_config(scenario.mtu)
    sim = Simulator(
        scenario.count,
        config,
        seed=scenario.seed,
        mtu=scenario.mtu,
        default_link=LinkSpec(latency=scenario.latency, loss=scenario.loss),
    )
    for a, b in scenario.edges:
        sim.connect(a, b)
    start = sim.start_time
    cuts: dict[tuple[int, int], int] = {}
    for partition in scenario.partitions:
        cut = [(a, b) for a, b in scenario.edges if (a in partition.side) != (b in partition.side)]
        sim.at(start + partition.start, _cutter(sim, cuts, cut, False))
        sim.at(start + partition.start + partition.duration, _cutter(sim, cuts, cut, True))
    last = 0.0
    for send in scenario.sends:
        sim.at(
            start + send.at,
            _sender(sim, send.origin, send.destination, send.payload, send.lifetime),
        )
        last = max(last, send.at + send.lifetime)
    sim.power_on()
    end = start + last + config.ack_grace + 1.0
    sim.run(end, stop=lambda: len(sim.messages) == len(scenario.sends) and sim.all_resolved())
    return sim


def _cutter(
    sim: Simulator, cuts: dict[tuple[int, int], int], cut: list[tuple[int, int]], heal: bool
) -> Callable[[], None]:
    # Partitions may overlap: an edge comes back only when every cut over it has healed.
    def action() -> None:
        for edge in cut:
            count = cuts.get(edge, 0) + (-1 if heal else 1)
            cuts[edge] = count
            if count == 0:
                sim.connect(*edge)
            elif count == 1 and not heal:
                sim.disconnect(*edge)

    return action


def bench_config(routed_mtu: int = 210) -> MeshConfig:
    """Defaults of a phone mesh, with the routed frame size of the bench."""
    return MeshConfig(routed_mtu=routed_mtu)


@dataclass(frozen=True, slots=True)
class ThousandNodeResult:
    """What ``run_1000_nodes`` measured."""

    ratio: float
    messages: int
    nodes_in_component: int
    mean_degree: float
    p50_latency: float
    frames_sent: int
    bytes_sent: int
    data_frames: int
    data_bytes: int


def run_1000_nodes(
    seed: int = 1,
    count: int = 1000,
    messages: int = 1000,
    loss: float = 0.10,
    mean_degree: float = 10.0,
    mtu: int = 1200,
    payload_size: int = 64,
) -> ThousandNodeResult:
    """A random geometric mesh of ``count`` devices with ``loss`` on every frame.

    Nodes are placed uniformly in a unit square and hear each other within a radius
    giving ``mean_degree`` neighbours on average. Messages go between random pairs of the
    largest connected component (no protocol can cross a permanent partition), sent
    after a warm-up of 30 s, spread over 10 s, each living 120 s; the run ends when every
    message is resolved at its sender.
    """
    rng = random.Random(seed)
    sim = Simulator(
        count,
        bench_config(mtu),
        seed=seed,
        mtu=mtu,
        default_link=LinkSpec(latency=0.005, loss=loss, bandwidth=250_000.0),
        check_plaintext=False,
    )
    radius = math.sqrt(mean_degree / (math.pi * (count - 1)))
    sim.place([(rng.random(), rng.random()) for _ in range(count)], radius)
    component = sim.components()[0]
    degree = sum(len(e) for e in sim.edges) / count
    sim.power_on()
    warmup = 20.0
    start = sim.start_time
    for k in range(messages):
        origin, destination = rng.sample(component, 2)
        payload = rng.randbytes(payload_size)
        sim.at(start + warmup + 10.0 * k / messages, _sender(sim, origin, destination, payload))
    sim.run(start + warmup)
    sim.run(
        start + warmup + 10.0 + 180.0 + sim.config.ack_grace,
        stop=lambda: len(sim.messages) == messages and sim.all_resolved(),
    )
    latencies = sim.latencies()
    return ThousandNodeResult(
        ratio=sim.delivery_ratio(),
        messages=len(sim.messages),
        nodes_in_component=len(component),
        mean_degree=degree,
        p50_latency=latencies[len(latencies) // 2] if latencies else math.inf,
        frames_sent=sim.stats.frames_sent,
        bytes_sent=sim.stats.bytes_sent,
        data_frames=sim.stats.frames_by_type.get(4, 0),
        data_bytes=sim.stats.bytes_by_type.get(4, 0),
    )


def overhead_bytes_per_frame(payload_size: int = 64, routed_mtu: int = 1200) -> float:
    """Bytes of a message's DATA frames that are not payload, per frame: the 69-byte routed
    header of every frame plus the envelope (49 bytes) shared by the message's frames."""
    chunk = routed_mtu - ROUTED_HEADER_LENGTH
    frames = -(-(payload_size + ENVELOPE_OVERHEAD) // chunk)
    return (frames * ROUTED_HEADER_LENGTH + ENVELOPE_OVERHEAD) / frames


def delivery_ratio_1000_nodes(seed: int = 1) -> float:
    """The bench figure ``mesh.delivery_ratio_1000_nodes``: fraction delivered."""
    return run_1000_nodes(seed).ratio
