"""mesh_relay: delivery of opaque, authenticated, encrypted payloads between node addresses over a
mesh of devices that relay for each other, with no server and no internet.

It knows nothing of payments (it imports nothing from ``offchain``). Its core is sans-I/O:
``MeshNode`` takes inputs (frames, sends, link changes, time) and returns effects (frames
to send, payloads to deliver, events); adapters own the sockets. docs/mesh.md describes the
frame format, the routing scheme and its costs, and the security properties and limits.

Modules, from the wire inwards: ``frames`` (encoding), ``identity`` (keys, signatures),
``envelope`` (end-to-end encryption and acks), ``fragments``, ``neighbours`` (hellos),
``routing`` (distance vector with feasibility), ``reliability`` (rate limits, backoff),
``store`` (custody, seen-sets, snapshots), ``accounting``, ``config``, ``effects``,
``errors``, ``node`` (the composition) and ``sim`` (the deterministic simulator).

Outside the core, importing asyncio and sockets (so not imported here): ``links`` (the
one link interface and a loss/delay wrapper), ``udp`` and ``tcp`` (the adapters),
``runtime`` (``MeshRuntime``: the asyncio driver and application API), ``persistence``
(key and snapshot files), ``control`` (the local control socket) and ``cli``
(``smartmesh relay`` / ``python -m mesh_relay``).
"""

from mesh_relay.accounting import RelayCount
from mesh_relay.config import Link, LinkAddr, MeshConfig
from mesh_relay.effects import (
    BROADCAST,
    Deliver,
    Effect,
    EventDelivered,
    EventExpired,
    EventInvalidFrame,
    SendFrame,
)
from mesh_relay.errors import (
    ConfigError,
    EnvelopeError,
    FrameDecodeError,
    MeshError,
    MeshRecoverableError,
    MeshUnrecoverableError,
    MeshValidationError,
    QueueFull,
    SnapshotError,
)
from mesh_relay.identity import Address
from mesh_relay.node import MeshNode

__all__ = [
    "BROADCAST",
    "Address",
    "ConfigError",
    "Deliver",
    "Effect",
    "EnvelopeError",
    "EventDelivered",
    "EventExpired",
    "EventInvalidFrame",
    "FrameDecodeError",
    "Link",
    "LinkAddr",
    "MeshConfig",
    "MeshError",
    "MeshNode",
    "MeshRecoverableError",
    "MeshUnrecoverableError",
    "MeshValidationError",
    "QueueFull",
    "RelayCount",
    "SendFrame",
    "SnapshotError",
]
