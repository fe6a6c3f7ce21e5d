"""``smartmesh relay`` / ``python -m mesh_relay``: run a standalone relay node.

Belongs here: the relay command's arguments, its TOML config file (``tomllib``; flags
override the file, the file overrides the defaults), turning settings into adapters and a
``MeshRuntime``, logging, the "ready" line, and the graceful stop on SIGTERM or SIGINT
(links closed, final snapshot written, exit status 0). docs/operator.md ("Running a
relay") is the operator's guide; docs/mesh.md §14 the design.

Config file (every key optional; paths relative to the file's folder)::

    data_dir = "/var/lib/smartmesh-relay"   # key_file and snapshot default inside it
    key_file = "relay.key"                  # 64 hex digits; created (0600) if missing
    snapshot = "relay.snapshot"
    snapshot_interval = 1.0                 # seconds between writes of a changed store
    log_level = "info"
    stats_interval = 60.0                   # seconds between counter lines in the log
    mtu = 1200                              # routed MTU and default link MTU
    control = "relay.sock"                  # Unix path or loopback HOST:PORT

    [udp]                                   # or [[udp]] for several sockets
    listen = "0.0.0.0:7777"
    beacons = ["255.255.255.255:7777"]      # broadcast or multicast HOST:PORT
    mtu = 1200

    [tcp]
    listen = "0.0.0.0:7778"
    peers = ["relay.example.org:7778"]

    [mesh]                                  # any MeshConfig field
    hello_interval = 10.0

Output: logs on stderr; one JSON line on stdout once the relay listens
(``{"event": "ready", "address": ..., "udp": [...], "tcp": ..., "control": ...}``), so a
supervisor or a test learns the ports it bound.

Does not belong here: the node (``runtime``), sockets (``udp``, ``tcp``), the control
protocol (``control``). ``offchain/cli.py`` registers this as ``smartmesh relay``; this
module imports nothing from ``offchain``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from mesh_relay.config import MeshConfig
from mesh_relay.control import ControlServer, parse_control_address
from mesh_relay.errors import ConfigError, MeshUnrecoverableError
from mesh_relay.identity import Identity
from mesh_relay.links import Impaired, LinkAdapter
from mesh_relay.persistence import load_or_create_key
from mesh_relay.runtime import MeshRuntime
from mesh_relay.tcp import TcpLinks
from mesh_relay.udp import UdpLink

log = logging.getLogger("mesh_relay")

Endpoint = tuple[str, int]

DEFAULT_UDP_PORT = 7777
_LOG_LEVELS = ("debug", "info", "warning", "error")
_MESH_FIELDS = {f.name: f for f in dataclasses.fields(MeshConfig)}


@dataclass(slots=True)
class UdpSettings:
    listen: Endpoint
    beacons: list[Endpoint]
    mtu: int | None = None


@dataclass(slots=True)
class TcpSettings:
    listen: Endpoint | None
    peers: list[Endpoint]
    mtu: int | None = None


@dataclass(slots=True)
class RelaySettings:
    """Everything a relay needs, after the file and the flags are merged and checked."""

    key_file: Path
    snapshot: Path | None
    snapshot_interval: float = 1.0
    log_level: str = "info"
    stats_interval: float = 60.0
    mtu: int = 1200
    control: str | None = None
    udp: list[UdpSettings] = field(default_factory=list)
    tcp: TcpSettings | None = None
    mesh: dict[str, Any] = field(default_factory=dict)
    impair_loss: float = 0.0
    impair_delay: float = 0.0
    impair_jitter: float = 0.0

    def mesh_config(self) -> MeshConfig:
        """The core's config: ``routed_mtu`` from ``mtu`` unless ``[mesh]`` sets it."""
        values = {"routed_mtu": self.mtu, **self.mesh}
        return MeshConfig(**values)


# -- parsing ------------------------------------------------------------------------------


def parse_endpoint(value: str, what: str, default_host: str = "0.0.0.0") -> Endpoint:
    """``HOST:PORT``, ``[IPv6]:PORT``, ``:PORT`` or ``PORT``; ``ConfigError`` otherwise."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what}: expected HOST:PORT, got {value!r}")
    host, sep, port_text = value.rpartition(":")
    if not sep:
        host, port_text = default_host, value
    host = host.strip("[]") or default_host
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{what}: port of {value!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{what}: port {port} out of range")
    return host, port


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The relay's flags (shared by ``smartmesh relay`` and ``python -m mesh_relay``)."""
    parser.add_argument("--config", type=Path, help="TOML config file (flags override it)")
    parser.add_argument("--data-dir", type=Path, help="folder of the key and snapshot files")
    parser.add_argument("--key-file", type=Path, help="private key file (created if missing)")
    parser.add_argument("--snapshot", type=Path, help="snapshot file of the pending store")
    parser.add_argument(
        "--snapshot-interval", type=float, help="seconds between writes (default 1)"
    )
    parser.add_argument("--log-level", choices=_LOG_LEVELS, help="default info")
    parser.add_argument("--stats-interval", type=float, help="seconds between stats lines")
    parser.add_argument(
        "--mtu", type=int, help="routed MTU and default link MTU in bytes (default 1200)"
    )
    parser.add_argument("--control", help="control socket: a Unix path or loopback HOST:PORT")
    parser.add_argument("--udp-listen", metavar="HOST:PORT", help="UDP socket (default :7777)")
    parser.add_argument(
        "--udp-beacon",
        metavar="HOST:PORT",
        action="append",
        help="broadcast or multicast address for beacons (repeatable)",
    )
    parser.add_argument("--no-udp", action="store_true", help="no UDP link")
    parser.add_argument("--tcp-listen", metavar="HOST:PORT", help="accept relays over TCP")
    parser.add_argument(
        "--tcp-peer", metavar="HOST:PORT", action="append", help="dial this relay (repeatable)"
    )
    parser.add_argument(
        "--mesh",
        metavar="NAME=VALUE",
        action="append",
        help="set a MeshConfig field, e.g. hello_interval=2 (repeatable)",
    )
    parser.add_argument("--impair-loss", type=float, help="testing: drop this share of frames")
    parser.add_argument("--impair-delay", type=float, help="testing: delay frames (seconds)")
    parser.add_argument("--impair-jitter", type=float, help="testing: extra random delay")
    parser.add_argument(
        "--print-address", action="store_true", help="print the node address and exit"
    )


def load_settings(args: argparse.Namespace) -> RelaySettings:
    """Merge defaults, the config file and the flags; check everything."""
    file: dict[str, Any] = {}
    base = Path.cwd()
    if args.config is not None:
        try:
            file = tomllib.loads(args.config.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read {args.config}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{args.config}: {exc}") from None
        base = args.config.resolve().parent
    known = {
        "data_dir",
        "key_file",
        "snapshot",
        "snapshot_interval",
        "log_level",
        "stats_interval",
        "mtu",
        "control",
        "udp",
        "tcp",
        "mesh",
    }
    unknown = set(file) - known
    if unknown:
        raise ConfigError(f"unknown config keys: {', '.join(sorted(unknown))}")

    def path_of(flag: Path | None, key: str, default: Path) -> Path:
        if flag is not None:
            return flag
        if key in file:
            return base / str(_typed(file[key], str, key))
        return default

    data_dir = path_of(args.data_dir, "data_dir", Path("relay-data"))
    settings = RelaySettings(
        key_file=path_of(args.key_file, "key_file", data_dir / "relay.key"),
        snapshot=path_of(args.snapshot, "snapshot", data_dir / "relay.snapshot"),
    )
    settings.snapshot_interval = _pick(args.snapshot_interval, file, "snapshot_interval", 1.0)
    settings.stats_interval = _pick(args.stats_interval, file, "stats_interval", 60.0)
    settings.log_level = str(_pick(args.log_level, file, "log_level", "info")).lower()
    settings.mtu = int(_pick(args.mtu, file, "mtu", 1200))
    control = args.control if args.control is not None else file.get("control")
    if control is not None:
        control = _typed(control, str, "control")
        settings.control = control if ":" in control else str(base / control)
        parse_control_address(settings.control)
    settings.udp = _udp_settings(args, file)
    settings.tcp = _tcp_settings(args, file)
    settings.mesh = _mesh_settings(args, file)
    settings.impair_loss = args.impair_loss or 0.0
    settings.impair_delay = args.impair_delay or 0.0
    settings.impair_jitter = args.impair_jitter or 0.0
    _check(settings)
    return settings


def _pick(flag: Any, file: dict[str, Any], key: str, default: Any) -> Any:
    if flag is not None:
        return flag
    if key in file:
        return _typed(file[key], type(default), key)
    return default


def _typed(value: Any, kind: type, key: str) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ConfigError(f"{key}: expected {kind.__name__}, got {value!r}")
    return value


def _udp_settings(args: argparse.Namespace, file: dict[str, Any]) -> list[UdpSettings]:
    if args.no_udp:
        return []
    if args.udp_listen is not None or args.udp_beacon is not None:
        listen = parse_endpoint(args.udp_listen or f":{DEFAULT_UDP_PORT}", "--udp-listen")
        beacons = [parse_endpoint(b, "--udp-beacon") for b in args.udp_beacon or ()]
        return [UdpSettings(listen, beacons)]
    tables = file.get("udp")
    if tables is None:
        if file.get("tcp") is not None or args.tcp_listen or args.tcp_peer:
            return []  # TCP only, as configured
        # Nothing configured at all: the LAN default, one relay per host.
        port = DEFAULT_UDP_PORT
        return [UdpSettings(("0.0.0.0", port), [("255.255.255.255", port)])]
    if isinstance(tables, dict):
        tables = [tables]
    if not isinstance(tables, list):
        raise ConfigError("udp: a table or an array of tables")
    result = []
    for table in tables:
        if not isinstance(table, dict) or set(table) - {"listen", "beacons", "mtu"}:
            raise ConfigError("udp: keys are listen, beacons, mtu")
        listen = parse_endpoint(table.get("listen", f":{DEFAULT_UDP_PORT}"), "udp.listen")
        beacon_texts = table.get("beacons", [])
        if not isinstance(beacon_texts, list):
            raise ConfigError("udp.beacons: a list of HOST:PORT")
        mtu = table.get("mtu")
        result.append(
            UdpSettings(
                listen,
                [parse_endpoint(b, "udp.beacons") for b in beacon_texts],
                None if mtu is None else _typed(mtu, int, "udp.mtu"),
            )
        )
    return result


def _tcp_settings(args: argparse.Namespace, file: dict[str, Any]) -> TcpSettings | None:
    table = file.get("tcp", {})
    if not isinstance(table, dict) or set(table) - {"listen", "peers", "mtu"}:
        raise ConfigError("tcp: a table with keys listen, peers, mtu")
    listen_text = args.tcp_listen if args.tcp_listen is not None else table.get("listen")
    peers_text = args.tcp_peer if args.tcp_peer is not None else table.get("peers", [])
    if not isinstance(peers_text, list):
        raise ConfigError("tcp.peers: a list of HOST:PORT")
    if listen_text is None and not peers_text:
        return None
    listen = None if listen_text is None else parse_endpoint(listen_text, "tcp listen")
    peers = [parse_endpoint(p, "tcp peer", default_host="127.0.0.1") for p in peers_text]
    mtu = table.get("mtu")
    return TcpSettings(listen, peers, None if mtu is None else _typed(mtu, int, "tcp.mtu"))


def _mesh_settings(args: argparse.Namespace, file: dict[str, Any]) -> dict[str, Any]:
    table = file.get("mesh", {})
    if not isinstance(table, dict):
        raise ConfigError("mesh: a table of MeshConfig fields")
    values: dict[str, Any] = {}
    for name, value in table.items():
        values[name] = _mesh_value(name, value)
    for item in args.mesh or ():
        name, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--mesh {item!r}: expected NAME=VALUE")
        try:
            parsed: Any = int(text)
        except ValueError:
            try:
                parsed = float(text)
            except ValueError:
                raise ConfigError(f"--mesh {name}: {text!r} is not a number") from None
        values[name] = _mesh_value(name, parsed)
    return values


def _mesh_value(name: str, value: Any) -> Any:
    known = _MESH_FIELDS.get(name)
    if known is None:
        raise ConfigError(f"mesh: no MeshConfig field named {name!r}")
    default = known.default
    return _typed(value, type(default), f"mesh.{name}")


def _check(settings: RelaySettings) -> None:
    if settings.log_level not in _LOG_LEVELS:
        raise ConfigError(f"log_level: one of {', '.join(_LOG_LEVELS)}")
    if settings.snapshot_interval <= 0 or settings.stats_interval <= 0:
        raise ConfigError("snapshot_interval and stats_interval must be positive")
    if not settings.udp and settings.tcp is None:
        raise ConfigError("no link: configure UDP, TCP, or both")
    if not 0.0 <= settings.impair_loss < 1.0:
        raise ConfigError("--impair-loss must be within [0, 1)")
    if settings.impair_delay < 0 or settings.impair_jitter < 0:
        raise ConfigError("--impair-delay and --impair-jitter must not be negative")
    config = settings.mesh_config()  # raises ConfigError on bad values
    for udp in settings.udp:
        _link_mtu(udp.mtu, settings, config)
    if settings.tcp is not None:
        _link_mtu(settings.tcp.mtu, settings, config)


def _link_mtu(mtu: int | None, settings: RelaySettings, config: MeshConfig) -> int:
    value = settings.mtu if mtu is None else mtu
    if value < config.routed_mtu:
        raise ConfigError(
            f"a link MTU of {value} is below the routed MTU {config.routed_mtu}: "
            "relays never re-fragment, so every link must carry a routed frame"
        )
    return value


# -- running ------------------------------------------------------------------------------


def build_adapters(settings: RelaySettings) -> list[LinkAdapter]:
    """The adapters the settings ask for, impaired if asked (testing)."""
    config = settings.mesh_config()
    adapters: list[LinkAdapter] = []
    for index, udp in enumerate(settings.udp):
        link_id = "udp" if len(settings.udp) == 1 else f"udp{index}"
        adapters.append(
            UdpLink(link_id, udp.listen, udp.beacons, _link_mtu(udp.mtu, settings, config))
        )
    if settings.tcp is not None:
        tcp = settings.tcp
        adapters.append(TcpLinks(tcp.listen, tcp.peers, _link_mtu(tcp.mtu, settings, config)))
    if settings.impair_loss or settings.impair_delay or settings.impair_jitter:
        adapters = [
            Impaired(
                adapter,
                settings.impair_loss,
                settings.impair_delay,
                settings.impair_jitter,
                seed=index,
            )
            for index, adapter in enumerate(adapters)
        ]
    return adapters


def _ready_line(runtime: MeshRuntime, control: ControlServer | None) -> dict[str, object]:
    udp: list[str] = []
    tcp: str | None = None
    for adapter in runtime.adapters:
        inner = adapter.inner if isinstance(adapter, Impaired) else adapter
        if isinstance(inner, UdpLink):
            udp.append("{}:{}".format(*inner.local_address))
        elif isinstance(inner, TcpLinks) and inner.local_address is not None:
            tcp = "{}:{}".format(*inner.local_address)
    return {
        "event": "ready",
        "address": "0x" + runtime.address.hex(),
        "udp": udp,
        "tcp": tcp,
        "control": control.bound if control is not None else None,
        "restored": {"pending": runtime.restored[0], "custody": runtime.restored[1]},
    }


async def _log_stats(runtime: MeshRuntime, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        node = runtime.node
        stats = node.stats
        log.info(
            "neighbours %d, destinations %d, pending %d, custody %d; frames in %d out %d, "
            "delivered %d, relayed %d, invalid %d",
            len(node.neighbour_addresses()),
            len(node.routing.destinations()),
            node.pending_count(),
            node.custody_count(),
            stats.get("frames_in", 0),
            stats.get("frames_out", 0),
            stats.get("delivered", 0),
            stats.get("relay_accepted", 0),
            stats.get("invalid_frames", 0),
        )


async def run_relay(settings: RelaySettings, out: TextIO | None = None) -> int:
    """Run until SIGTERM or SIGINT; 0 after a graceful stop, 1 if it cannot start."""
    out = out or sys.stdout
    key, created = load_or_create_key(settings.key_file)
    if created:
        log.info("created key file %s", settings.key_file)
    runtime = MeshRuntime(
        settings.mesh_config(),
        key,
        build_adapters(settings),
        snapshot=settings.snapshot,
        snapshot_interval=settings.snapshot_interval,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await runtime.start()
    except (ConfigError, MeshUnrecoverableError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    control: ControlServer | None = None
    stats_task: asyncio.Task[None] | None = None
    try:
        if settings.control is not None:
            control = ControlServer(runtime, parse_control_address(settings.control))
            try:
                await control.start()
            except OSError as exc:
                log.error("cannot open the control socket %s: %s", settings.control, exc)
                return 1
        ready = _ready_line(runtime, control)
        log.info("relay %s running: %s", ready["address"], json.dumps(ready))
        out.write(json.dumps(ready) + "\n")
        out.flush()
        stats_task = asyncio.create_task(_log_stats(runtime, settings.stats_interval))
        await stop.wait()
        log.info("stopping")
    finally:
        if stats_task is not None:
            stats_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stats_task
        if control is not None:
            await control.close()
        await runtime.stop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("stopped")
    return 0


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run the relay for parsed ``args`` (``parser`` reports configuration errors)."""
    try:
        settings = load_settings(args)
    except ConfigError as exc:
        parser.error(str(exc))
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.print_address:
        try:
            key, _ = load_or_create_key(settings.key_file)
        except ConfigError as exc:
            parser.error(str(exc))
        print("0x" + Identity(key).address.hex())
        return 0
    try:
        return asyncio.run(run_relay(settings))
    except ConfigError as exc:  # a key file that cannot be read or created
        log.error("%s", exc)
        return 1


def build_parser(prog: str = "python -m mesh_relay") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Run a SmartMesh relay node (docs/operator.md)."
    )
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    return run(parser.parse_args(argv), parser)
