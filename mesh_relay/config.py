"""Configuration of a mesh node and the one abstraction of a link.

Belongs here: ``MeshConfig`` (every timer, bound and limit of the core, with defaults
chosen for phones on Wi-Fi or long-range radio; docs/mesh.md gives the reasons) and
``Link`` (what the core knows of a link: its id, MTU, whether it can broadcast, its cost
in the routing metric, and for non-broadcast links the peers to greet). Both validate
themselves and raise ``ConfigError``.

Does not belong here: reading config files or flags (the CLI phase), anything about
sockets (adapters implement links outside the core).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from mesh_relay.envelope import ENVELOPE_OVERHEAD
from mesh_relay.errors import ConfigError
from mesh_relay.frames import (
    E2E_ACK_LENGTH,
    HELLO_LENGTH,
    METRIC_INFINITY,
    ROUTE_ENTRY_LENGTH,
    ROUTED_HEADER_LENGTH,
    ROUTES_HEADER_LENGTH,
)

MIN_MTU = 140
"""Every single-frame message (an e2e ack, a hello, one route) must fit, with a little
room. It was computed from the v1 e2e ack (134 bytes); the v2 ack is 85 bytes, and the
floor stays where it was so that settings valid before stay valid, and invalid ones
invalid, across the upgrade."""
assert max(E2E_ACK_LENGTH, HELLO_LENGTH, ROUTES_HEADER_LENGTH + ROUTE_ENTRY_LENGTH) + 6 <= MIN_MTU
MAX_MTU = 65_507
MAX_FRAGMENTS = 255

LinkAddr = Hashable
"""A neighbour's address on one link (an (ip, port) pair, a MAC): opaque to the core."""


@dataclass(frozen=True, slots=True)
class Link:
    """A link as the core sees it. Adapters (UDP, TCP, radio) implement it outside.

    ``broadcast``: one frame sent to ``BROADCAST`` reaches every neighbour on the link (a
    LAN, a radio channel, or a point-to-point link whose only neighbour is the far end).
    Otherwise the core greets each of ``peers`` and each known neighbour by unicast.
    ``cost``: what one hop over this link adds to a route's metric (1 = hop count).
    """

    link_id: str
    mtu: int
    broadcast: bool = True
    cost: int = 1
    peers: tuple[LinkAddr, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.link_id, str) or not self.link_id:
            raise ConfigError("link_id must be a non-empty string")
        if not MIN_MTU <= self.mtu <= MAX_MTU:
            raise ConfigError(f"link MTU must be within {MIN_MTU}..{MAX_MTU}")
        if not 1 <= self.cost <= 255:
            raise ConfigError("link cost must be within 1..255")


@dataclass(frozen=True, slots=True)
class MeshConfig:
    """Timers (seconds), bounds and limits of one node. Defaults suit a phone mesh."""

    routed_mtu: int = 210
    """Size of DATA and E2E_ACK frames, the same on every hop: relays never re-fragment,
    so it must not exceed the smallest link MTU of the mesh (210 fits long-range radio)."""
    max_payload: int = 16_384
    hello_interval: float = 10.0
    neighbour_timeout: float = 35.0
    hello_tolerance: float = 30.0
    """How far a hello's timestamp may be from our clock (skew plus latency)."""
    update_interval: float = 60.0
    """Period of the full route dump; routes change by triggered updates in between."""
    route_hold: float = 210.0
    """A route not refreshed for this long expires (3.5 update intervals, as in Babel)."""
    source_hold: float = 600.0
    """How long a feasibility distance outlives the last route to its destination."""
    triggered_delay: float = 0.1
    """Changes within this delay travel in one triggered update."""
    seqno_request_interval: float = 2.0
    seqno_request_hops: int = 16
    hop_rto: float = 0.5
    """Hop retransmission timeout towards a neighbour whose round trip is not measured yet.
    Once it is (from hop acks of frames sent once: Karn's rule), the timeout is the
    measured one, as TCP's (RFC 6298): smoothed round trip + 4 x its variation, within
    ``hop_rto_min`` .. ``hop_rto_max``. It doubles with each retry of a frame."""
    hop_rto_min: float = 0.05
    """Floor of a measured hop timeout: a link answering in a millisecond (loopback, a LAN)
    still waits this long before it sends a frame again."""
    hop_rto_max: float = 8.0
    hop_window: int = 16
    """DATA frames in flight to one neighbour before the rest wait for acks."""
    hop_limit: int = 64
    e2e_retry: float = 60.0
    """First end-to-end retransmission by the origin; doubles after each."""
    ack_grace: float = 60.0
    """The origin waits this long after a message's expiry for its e2e ack before it
    reports ``EventExpired``; destinations deliver only before the expiry."""
    max_lifetime: float = 86_400.0
    max_pending_messages: int = 1_024
    max_custody_frames: int = 4_096
    max_custody_bytes: int = 2 * 1024 * 1024
    max_reassemblies: int = 64
    max_reassembly_bytes: int = 1024 * 1024
    reassembly_timeout: float = 120.0
    max_seen: int = 65_536
    relay_dedup_window: float = 60.0
    max_relay_dedup: int = 16_384
    reack_interval: float = 1.0
    max_neighbours: int = 256
    max_destinations: int = 10_000
    rate_bytes_per_s: float = 256 * 1024
    rate_burst_bytes: float = 512 * 1024
    max_rate_buckets: int = 1_024
    max_accounting_pairs: int = 65_536
    app_acks: bool = False
    """When true, the destination's end-to-end ack waits for the application: a delivered
    payload is acknowledged only when the application calls ``acknowledge`` (after it has
    persisted what the payload made it do), so a crash in between loses nothing: the
    origin retransmits and the payload is delivered again. A payload delivered and not
    yet acknowledged is not delivered a second time by the same process."""

    def __post_init__(self) -> None:
        if not MIN_MTU <= self.routed_mtu <= MAX_MTU:
            raise ConfigError(f"routed_mtu must be within {MIN_MTU}..{MAX_MTU}")
        if self.max_payload < 1:
            raise ConfigError("max_payload must be positive")
        if self.max_fragments > MAX_FRAGMENTS:
            raise ConfigError("max_payload needs more than 255 fragments at this routed_mtu")
        positive = (
            "hello_interval",
            "neighbour_timeout",
            "hello_tolerance",
            "update_interval",
            "route_hold",
            "source_hold",
            "seqno_request_interval",
            "hop_rto",
            "hop_rto_min",
            "hop_rto_max",
            "e2e_retry",
            "ack_grace",
            "max_lifetime",
            "reassembly_timeout",
            "relay_dedup_window",
            "reack_interval",
            "rate_bytes_per_s",
            "rate_burst_bytes",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive")
        if self.triggered_delay < 0:
            raise ConfigError("triggered_delay must not be negative")
        if self.hello_tolerance >= self.neighbour_timeout:
            # Otherwise a replayed hello could revive a neighbour that timed out.
            raise ConfigError("hello_tolerance must be shorter than neighbour_timeout")
        if self.neighbour_timeout <= self.hello_interval:
            raise ConfigError("neighbour_timeout must exceed hello_interval")
        if self.route_hold <= self.update_interval:
            raise ConfigError("route_hold must exceed update_interval")
        if self.hop_rto_max < max(self.hop_rto, self.hop_rto_min):
            raise ConfigError("hop_rto_max must be at least hop_rto and hop_rto_min")
        if self.rate_burst_bytes < self.routed_mtu + 64:
            raise ConfigError("rate_burst_bytes must admit at least one frame")
        counts = (
            "hop_window",
            "hop_limit",
            "max_pending_messages",
            "max_custody_frames",
            "max_custody_bytes",
            "max_reassemblies",
            "max_reassembly_bytes",
            "max_seen",
            "max_relay_dedup",
            "max_neighbours",
            "max_destinations",
            "max_rate_buckets",
            "seqno_request_hops",
            "max_accounting_pairs",
        )
        for name in counts:
            if not getattr(self, name) >= 1:
                raise ConfigError(f"{name} must be at least 1")
        if self.hop_limit > 255 or self.seqno_request_hops > 255:
            raise ConfigError("hop limits must fit one byte")
        if self.max_destinations >= METRIC_INFINITY:
            raise ConfigError("max_destinations too large")

    @property
    def chunk_size(self) -> int:
        """Bytes of sealed body per DATA frame."""
        return self.routed_mtu - ROUTED_HEADER_LENGTH

    @property
    def max_fragments(self) -> int:
        """Fragments of the largest allowed payload."""
        return -(-(self.max_payload + ENVELOPE_OVERHEAD) // self.chunk_size)
