"""The payment node's settings: one frozen ``NodeConfig``, from flags, environment and file.

Belongs here: every setting of a node (its name, TOML table, type, range, default and
one-line help, declared once on the ``NodeConfig`` field), the command-line flags
(``add_arguments``), loading (``load``: flag > environment ``SMARTMESH_<NAME>`` > the
``node.toml`` file > default), validation with errors that name the setting and where its
value came from, the policies that turn settings into what the parts of the node take
(``protocol_settings``, ``confirmations_for``, the mesh links), and the sample file
``docs/node.example.toml`` (``sample_toml``; a test keeps the two equal).

Names: a setting's name is its TOML key, prefixed with the table for ``[api]`` and
``[mesh]`` (``[api] port`` is ``api_port``); its flag is ``--api-port``, its environment
variable ``SMARTMESH_API_PORT``. Lists (``mesh_peers``) take repeated flags or
comma-separated text. An empty text unsets an optional setting. Relative paths in the file
are relative to the file's folder; in a flag or a variable, to the working directory;
``~`` is expanded everywhere.

The file is ``--config`` (or ``SMARTMESH_CONFIG``), else ``~/.smartmesh/node.toml`` when it
exists. An unknown table or key in it is an error (a typo must not silently leave a
default in force); so is a value of the wrong type or out of range.

Style and pieces follow ``mesh_relay.cli`` (the relay's TOML config): endpoints are parsed
by its ``parse_endpoint``, and the links are described by its ``UdpSettings`` and
``TcpSettings``, so the node builds its mesh adapters as a relay does.

Does not belong here: reading keys (``keystore``), opening the database, the chain, the
API or sockets (the runtime does, from a ``NodeConfig``).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import ipaddress
import json
import logging
import math
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from mesh_relay import cli as relay_cli
from mesh_relay.config import MAX_MTU, MIN_MTU, MeshConfig
from mesh_relay.errors import ConfigError as MeshConfigError
from offchain.node.errors import ConfigError, NodeValidationError
from offchain.node.keystore import (
    DEFAULT_KEYSTORE,
    PASSWORD_ENV,
    checksum_address,
    parse_address,
)
from offchain.protocol.fees import MAX_IMBALANCE_PPM, MAX_PROPORTIONAL_PPM, FeeSchedule
from offchain.protocol.state import Settings
from offchain.protocol.types import UINT256_MAX

log = logging.getLogger(__name__)

Endpoint = tuple[str, int]

ENV_PREFIX: Final = "SMARTMESH_"
CONFIG_ENV: Final = "SMARTMESH_CONFIG"
DEFAULT_CONFIG: Final = Path("~/.smartmesh/node.toml")
DEVELOPMENT_CHAIN_IDS: Final = frozenset({31337, 1337})
"""anvil and hardhat (31337), geth --dev and ganache (1337): blocks on demand, no reorgs."""
PUBLIC_CHAIN_CONFIRMATIONS: Final = 5
MIN_API_TOKEN_LENGTH: Final = 16
MAX_SETTLE_WINDOW: Final = 2**32 - 1
"""The contract's limit (``MASK32`` in token_network.vy)."""
MAX_DELEGATE_REWARD: Final = 2**96 - 1
"""The contract's ``MAX_REWARD`` (a reward is packed in 96 bits)."""

_LOG_LEVELS: Final = ("debug", "info", "warning", "error")
TABLES: Final = ("node", "keys", "chain", "api", "mesh", "protocol")
_PREFIXED_TABLES: Final = ("api", "mesh")
NODE_HOP_WINDOW: Final = 64
"""Frames in flight to one mesh neighbour. A payment node's links are TCP or a LAN, not
the radio the mesh's default (16) is sized for: with 16, a few lost frames waiting for
their hop timeout hold the window, and fewer messages share each commit (bench/offline.py:
about a quarter less CPU per mediated payment with 64 and the transport's span of 64)."""
_PROTOCOL_DEFAULTS: Final = Settings()
_FEE_DEFAULTS: Final = FeeSchedule()


def default_confirmations(chain_id: int) -> int:
    """Blocks a log needs before the node acts on it when ``confirmations`` is not set.

    1 (the block itself) on a development chain, whose blocks never reorganise; 5 (about a
    minute on Ethereum) elsewhere: deeper reorganisations are rare since the merge, and
    waiting for finality (two epochs, about 13 minutes) would hold every deposit and close
    that long.
    """
    return 1 if chain_id in DEVELOPMENT_CHAIN_IDS else PUBLIC_CHAIN_CONFIRMATIONS


# -- kinds of values ----------------------------------------------------------------------


class _Bad(Exception):  # noqa: N818 -- internal: why a value is refused, without where
    pass


class _Kind:
    """How one kind of setting is read from TOML and from text, and written as TOML."""

    metavar = "VALUE"

    def from_toml(self, value: object, base: Path) -> Any:
        raise NotImplementedError

    def from_text(self, text: str, base: Path) -> Any:
        return self.from_toml(text, base)

    def render(self, value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)


class _Int(_Kind):
    metavar = "N"

    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi

    def from_toml(self, value: object, base: Path) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _Bad(f"expected an integer, got {value!r}")
        if not self.lo <= value <= self.hi:
            raise _Bad(f"{value} is not within {self.lo}..{self.hi}")
        return value

    def from_text(self, text: str, base: Path) -> int:
        try:
            value = int(text.strip(), 10)
        except ValueError:
            raise _Bad(f"expected an integer, got {text!r}") from None
        return self.from_toml(value, base)

    def render(self, value: Any) -> str:
        return str(value)


class _Float(_Kind):
    metavar = "SECONDS"

    def __init__(self, above: float) -> None:
        self.above = above

    def from_toml(self, value: object, base: Path) -> float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise _Bad(f"expected a number, got {value!r}")
        number = float(value)
        if not math.isfinite(number) or number <= self.above:
            raise _Bad(f"{value} must be a number above {self.above:g}")
        return number

    def from_text(self, text: str, base: Path) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise _Bad(f"expected a number, got {text!r}") from None
        return self.from_toml(value, base)

    def render(self, value: Any) -> str:
        return repr(float(value))


class _Bounded(_Kind):
    """A number within ``lo`` (included) and ``hi`` (excluded)."""

    def __init__(self, lo: float, hi: float, metavar: str) -> None:
        self.lo, self.hi, self.metavar = lo, hi, metavar

    def from_toml(self, value: object, base: Path) -> float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise _Bad(f"expected a number, got {value!r}")
        if not (math.isfinite(value) and self.lo <= value < self.hi):
            raise _Bad(f"{value} is not within [{self.lo:g}, {self.hi:g})")
        return float(value)

    def from_text(self, text: str, base: Path) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise _Bad(f"expected a number, got {text!r}") from None
        return self.from_toml(value, base)

    def render(self, value: Any) -> str:
        return repr(float(value))


class _Bool(_Kind):
    metavar = "BOOL"
    _TEXT: Final = {
        **dict.fromkeys(("1", "true", "yes", "on"), True),
        **dict.fromkeys(("0", "false", "no", "off"), False),
    }

    def from_toml(self, value: object, base: Path) -> bool:
        if not isinstance(value, bool):
            raise _Bad(f"expected true or false, got {value!r}")
        return value

    def from_text(self, text: str, base: Path) -> bool:
        value = self._TEXT.get(text.strip().lower())
        if value is None:
            raise _Bad(f"expected true or false (1/0, yes/no, on/off), got {text!r}")
        return value

    def render(self, value: Any) -> str:
        return "true" if value else "false"


class _Choice(_Kind):
    def __init__(self, choices: tuple[str, ...], upper: bool = False) -> None:
        self.choices = choices
        self.upper = upper
        self.metavar = "|".join(choices)

    def from_toml(self, value: object, base: Path) -> str:
        if not isinstance(value, str):
            raise _Bad(f"expected one of {', '.join(self.choices)}, got {value!r}")
        text = value.strip().upper() if self.upper else value.strip().lower()
        if text not in self.choices:
            raise _Bad(f"expected one of {', '.join(self.choices)}, got {value!r}")
        return text


class _Text(_Kind):
    metavar = "TEXT"

    def __init__(self, min_length: int = 1, secret: bool = False) -> None:
        self.min_length = min_length
        self.secret = secret

    def from_toml(self, value: object, base: Path) -> str:
        if not isinstance(value, str):
            raise _Bad(f"expected text, got {'a ' + type(value).__name__}")
        if len(value) < self.min_length or value != value.strip():
            what = "without surrounding blanks"
            if self.min_length > 1:
                what = f"of at least {self.min_length} characters, " + what
            # A secret's value is never repeated in a message.
            raise _Bad(f"expected text {what}" + ("" if self.secret else f", got {value!r}"))
        return value


class _Host(_Text):
    metavar = "HOST"

    def from_toml(self, value: object, base: Path) -> str:
        host = super().from_toml(value, base)
        if any(c.isspace() for c in host) or "/" in host:
            raise _Bad(f"not a host name or address: {host!r}")
        return host


class _Url(_Kind):
    metavar = "URL"
    schemes = ("http", "https", "ws", "wss")

    def from_toml(self, value: object, base: Path) -> str:
        if not isinstance(value, str):
            raise _Bad(f"expected a URL, got {value!r}")
        parts = urlsplit(value.strip())
        if parts.scheme not in self.schemes or not parts.hostname:
            raise _Bad(f"expected an {'/'.join(self.schemes)} URL, got {redact_url(value)!r}")
        return value.strip()


class _Path(_Kind):
    metavar = "PATH"

    def from_toml(self, value: object, base: Path) -> Path:
        if not isinstance(value, str) or not value.strip():
            raise _Bad(f"expected a path, got {value!r}")
        path = Path(value.strip()).expanduser()
        return path if path.is_absolute() else base / path

    def render(self, value: Any) -> str:
        return json.dumps(str(value), ensure_ascii=False)


class _Endpoint(_Kind):
    metavar = "HOST:PORT"

    def __init__(self, default_host: str = "0.0.0.0") -> None:
        self.default_host = default_host

    def from_toml(self, value: object, base: Path) -> Endpoint:
        if not isinstance(value, str):
            raise _Bad(f"expected HOST:PORT, got {value!r}")
        try:
            return relay_cli.parse_endpoint(value.strip(), "", self.default_host)
        except MeshConfigError as exc:
            raise _Bad(str(exc).removeprefix(": ")) from None

    def render(self, value: Any) -> str:
        return json.dumps(format_endpoint(value))


class _List(_Kind):
    def __init__(self, item: _Kind) -> None:
        self.item = item
        self.metavar = item.metavar

    def from_toml(self, value: object, base: Path) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise _Bad(f"expected a list, got {value!r}")
        return tuple(self.item.from_toml(v, base) for v in value)

    def from_text(self, text: str, base: Path) -> tuple[Any, ...]:
        return tuple(self.item.from_text(v, base) for v in text.split(",") if v.strip())

    def render(self, value: Any) -> str:
        return "[" + ", ".join(self.item.render(v) for v in value) + "]"


class _Address(_Kind):
    metavar = "0xADDRESS"

    def from_toml(self, value: object, base: Path) -> bytes:
        if not isinstance(value, str):
            raise _Bad(f"expected an address, got {value!r}")
        try:
            return parse_address(value.strip(), "")
        except NodeValidationError as exc:
            raise _Bad(str(exc).removeprefix(": ")) from None

    def render(self, value: Any) -> str:
        return json.dumps(checksum_address(value))


class _Optional(_Kind):
    """The inner kind, or ``None`` (the setting unset) for an empty text."""

    def __init__(self, inner: _Kind) -> None:
        self.inner = inner
        self.metavar = inner.metavar

    def from_toml(self, value: object, base: Path) -> Any:
        return None if value == "" else self.inner.from_toml(value, base)

    def from_text(self, text: str, base: Path) -> Any:
        return None if not text.strip() else self.inner.from_text(text, base)

    def render(self, value: Any) -> str:
        return self.inner.render(value)


# -- the settings -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting: where it lives in the file, its flag and variable, its help."""

    name: str
    table: str
    key: str
    help: str
    kind: _Kind
    default: Any
    example: str | None
    """TOML text shown (commented out) in the sample when the default is unset."""
    secret: bool

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


def _meta(
    table: str, help: str, kind: _Kind, *, example: str | None = None, secret: bool = False
) -> dict[str, Any]:
    """A ``NodeConfig`` field's metadata: what makes it a setting."""
    return {"table": table, "help": help, "kind": kind, "example": example, "secret": secret}


_SECONDS_INT = _Int(0, MAX_SETTLE_WINDOW)


@dataclass(frozen=True, slots=True, repr=False)
class NodeConfig:
    """Every setting of a payment node, validated (build it with ``load``).

    Paths are absolute and expanded when ``load`` built it; the dataclass defaults keep
    ``~`` so that the sample file shows them as an operator would write them.
    """

    # [node]
    data_dir: Path = field(
        default=Path("~/.smartmesh/node"),
        metadata=_meta(
            "node",
            "folder of the node's database, lock file and mesh snapshot (one node per folder)",
            _Path(),
        ),
    )
    log_level: str = field(
        default="info",
        metadata=_meta("node", "log level: debug, info, warning or error", _Choice(_LOG_LEVELS)),
    )
    sync: str = field(
        default="FULL",
        metadata=_meta(
            "node",
            "SQLite synchronous mode: FULL loses nothing acknowledged on power loss; NORMAL is "
            "faster and may lose the last inputs (never corrupts)",
            _Choice(("FULL", "NORMAL"), upper=True),
        ),
    )
    snapshot_every: int = field(
        default=1000,
        metadata=_meta(
            "node",
            "inputs between two snapshots of the protocol state (a restart replays fewer)",
            _Int(1, 10**9),
        ),
    )
    deadline_warn_lead: int = field(
        default=300,
        metadata=_meta(
            "node",
            "seconds before each deadline to reach the chain that a deadline_warning is "
            "written (docs/offline.md)",
            _SECONDS_INT,
        ),
    )
    watch: bool = field(
        default=False,
        metadata=_meta(
            "node",
            "also watch others' channels and act on chain for them: delegate and gateway "
            "(docs/operator.md, 'Running a watcher')",
            _Bool(),
        ),
    )
    watch_min_reward: int = field(
        default=0,
        metadata=_meta(
            "node",
            "with watch: the least reward (token base units) a delegation must name",
            _Int(0, MAX_DELEGATE_REWARD),
        ),
    )
    delegates: tuple[bytes, ...] = field(
        default=(),
        metadata=_meta(
            "node",
            "watchers (0x addresses) kept up to date with our partners' newest proofs",
            _List(_Address()),
        ),
    )
    delegate_reward: int = field(
        default=0,
        metadata=_meta(
            "node",
            "reward (token base units) our delegations offer, paid at settle out of our "
            "share only if the delegate's update stands",
            _Int(0, MAX_DELEGATE_REWARD),
        ),
    )
    gateway_patience: float = field(
        default=60.0,
        metadata=_meta(
            "node",
            "while blind: seconds a gateway has to acknowledge a submission handed to it, and "
            "then to report its outcome, before another gateway gets it (docs/offline.md)",
            _Bounded(0.1, 86_400.0, "S"),
        ),
    )
    watch_drop_submissions: bool = field(
        default=False,
        metadata=_meta(
            "node",
            "testing only: with watch, accept every request and never act on any (a gateway "
            "that drops submissions)",
            _Bool(),
        ),
    )
    # [keys]
    keystore: Path = field(
        default=DEFAULT_KEYSTORE,
        metadata=_meta(
            "keys", "keystore directory of encrypted key files (geth's format)", _Path()
        ),
    )
    account: bytes | None = field(
        default=None,
        metadata=_meta(
            "keys",
            "the node's account (0x address); may be left out when the keystore holds one",
            _Optional(_Address()),
            example='"0x0000000000000000000000000000000000000001"',
        ),
    )
    password_file: Path | None = field(
        default=None,
        metadata=_meta(
            "keys",
            f"file whose first line is the keystore password (else {PASSWORD_ENV}, else a prompt)",
            _Optional(_Path()),
            example='"~/.smartmesh/password"',
        ),
    )
    # [chain]
    rpc_url: str = field(
        default="http://127.0.0.1:8545",
        metadata=_meta(
            "chain",
            "Ethereum JSON-RPC endpoint (http, https, ws or wss)",
            _Url(),
            # Providers put the API key in the URL.
            secret=True,
        ),
    )
    deployment: Path | None = field(
        default=None,
        metadata=_meta(
            "chain",
            "deployment manifest written by `ape run deploy` (deployments/<chain id>.json)",
            _Optional(_Path()),
            example='"deployments/11155111.json"',
        ),
    )
    confirmations: int | None = field(
        default=None,
        metadata=_meta(
            "chain",
            "blocks a log needs before the node acts on it (1 = its own block); unset: 1 on "
            f"a development chain (31337, 1337), {PUBLIC_CHAIN_CONFIRMATIONS} elsewhere",
            _Optional(_Int(1, 10_000)),
            example=str(PUBLIC_CHAIN_CONFIRMATIONS),
        ),
    )
    poll_interval: float = field(
        default=2.0,
        metadata=_meta(
            "chain", "seconds between two polls of the endpoint for new blocks", _Float(0.0)
        ),
    )
    log_range: int = field(
        default=1000,
        metadata=_meta(
            "chain",
            "most blocks asked for in one eth_getLogs call (providers cap the range)",
            _Int(1, 1_000_000),
        ),
    )
    chain_timeout: float = field(
        default=20.0,
        metadata=_meta(
            "chain",
            "seconds one JSON-RPC call may take; no answer in time counts as not answering",
            _Float(0.0),
        ),
    )
    chain_max_block_age: int = field(
        default=120,
        metadata=_meta(
            "chain",
            "seconds the newest block may be old (device clock) for the chain to count as "
            "seen; older means the endpoint is stale: the node is blind (docs/offline.md)",
            _Int(1, MAX_SETTLE_WINDOW),
        ),
    )
    # [api]
    api_host: str = field(
        default="127.0.0.1",
        metadata=_meta(
            "api",
            "address the HTTP API listens on (other than loopback only with a token)",
            _Host(),
        ),
    )
    api_port: int = field(
        default=5001,
        metadata=_meta("api", "TCP port of the HTTP API (0: any free port)", _Int(0, 65535)),
    )
    api_token: str | None = field(
        default=None,
        metadata=_meta(
            "api",
            f"bearer token the API requires (at least {MIN_API_TOKEN_LENGTH} characters); "
            "prefer api_token_file or the environment to a flag",
            _Optional(_Text(MIN_API_TOKEN_LENGTH, secret=True)),
            example='"change-me-to-a-long-random-string"',
            secret=True,
        ),
    )
    api_token_file: Path | None = field(
        default=None,
        metadata=_meta(
            "api",
            "file whose first line is the API's bearer token",
            _Optional(_Path()),
            example='"~/.smartmesh/api-token"',
        ),
    )
    # [mesh]
    mesh_udp: bool = field(
        default=True,
        metadata=_meta(
            "mesh", "a UDP link on the LAN, whose neighbours are found by beacons", _Bool()
        ),
    )
    mesh_udp_listen: Endpoint = field(
        default=("0.0.0.0", relay_cli.DEFAULT_UDP_PORT),
        metadata=_meta(
            "mesh", "UDP address of the mesh link (beacons are heard on its port)", _Endpoint()
        ),
    )
    mesh_broadcast: bool = field(
        default=True,
        metadata=_meta("mesh", "send beacons to 255.255.255.255 on the UDP port", _Bool()),
    )
    mesh_multicast: Endpoint | None = field(
        default=None,
        metadata=_meta(
            "mesh",
            "multicast group GROUP:PORT to send beacons to and hear them on",
            _Optional(_Endpoint()),
            example='"239.255.77.77:7777"',
        ),
    )
    mesh_beacons: tuple[Endpoint, ...] = field(
        default=(),
        metadata=_meta(
            "mesh",
            "more beacon addresses HOST:PORT, e.g. a subnet's broadcast address per interface",
            _List(_Endpoint()),
        ),
    )
    mesh_tcp_listen: Endpoint | None = field(
        default=None,
        metadata=_meta(
            "mesh",
            "TCP address HOST:PORT on which other mesh nodes may dial this one",
            _Optional(_Endpoint()),
            example='"0.0.0.0:7778"',
        ),
    )
    mesh_peers: tuple[Endpoint, ...] = field(
        default=(),
        metadata=_meta(
            "mesh",
            "mesh nodes HOST:PORT to dial over TCP (relays that beacons do not reach)",
            _List(_Endpoint(default_host="127.0.0.1")),
        ),
    )
    mesh_mtu: int = field(
        default=1200,
        metadata=_meta(
            "mesh",
            "bytes per routed frame, the same on the whole mesh (210 for long-range radio)",
            _Int(MIN_MTU, MAX_MTU),
        ),
    )
    mesh_rate_kib_per_s: int = field(
        default=8_192,
        metadata=_meta(
            "mesh",
            "KiB/s each neighbour may send us before its frames are dropped (bursts of twice "
            "that); a relay on a radio mesh uses 256, a node paying over fast links needs more",
            _Int(1, 1_048_576),
        ),
    )
    mesh_snapshot_interval: float = field(
        default=1.0,
        metadata=_meta(
            "mesh", "seconds between two writes of the mesh's message store", _Float(0.0)
        ),
    )
    # Testing only: loss and delay on links where the kernel has no `tc netem`.
    mesh_impair_loss: float = field(
        default=0.0,
        metadata=_meta(
            "mesh",
            "testing only: share of outgoing mesh frames to drop (as a lossy radio would)",
            _Bounded(0.0, 1.0, "SHARE"),
        ),
    )
    mesh_impair_delay: float = field(
        default=0.0,
        metadata=_meta(
            "mesh", "testing only: seconds to delay each outgoing mesh frame", _Bounded(0, 60, "S")
        ),
    )
    mesh_impair_jitter: float = field(
        default=0.0,
        metadata=_meta(
            "mesh",
            "testing only: up to this many more seconds of random delay (frames reorder)",
            _Bounded(0, 60, "S"),
        ),
    )
    # [protocol]
    reveal_timeout: int = field(
        default=_PROTOCOL_DEFAULTS.reveal_timeout,
        metadata=_meta(
            "protocol",
            "seconds before a lock's expiry by which its secret must be on chain (spec 11.4)",
            _Int(1, MAX_SETTLE_WINDOW),
        ),
    )
    lock_timeout: int = field(
        default=_PROTOCOL_DEFAULTS.lock_timeout,
        metadata=_meta(
            "protocol",
            "seconds from a payment's start to its locks' expiry",
            _Int(1, MAX_SETTLE_WINDOW),
        ),
    )
    hop_margin: int = field(
        default=_PROTOCOL_DEFAULTS.hop_margin,
        metadata=_meta(
            "protocol",
            "seconds a mediator leaves the hops after it beyond its reveal timeout",
            _SECONDS_INT,
        ),
    )
    clock_tolerance: int = field(
        default=_PROTOCOL_DEFAULTS.clock_tolerance,
        metadata=_meta("protocol", "seconds a partner's clock may be ahead of ours", _SECONDS_INT),
    )
    max_attempts: int = field(
        default=_PROTOCOL_DEFAULTS.max_attempts,
        metadata=_meta("protocol", "routes a payment tries before it fails", _Int(1, 100)),
    )
    submit_margin: int = field(
        default=_PROTOCOL_DEFAULTS.submit_margin,
        metadata=_meta(
            "protocol",
            "seconds a transaction needs to be included once sent: every deadline to reach "
            "the chain is stated that much early",
            _SECONDS_INT,
        ),
    )
    offline_min_lead: int = field(
        default=_PROTOCOL_DEFAULTS.offline_min_lead,
        metadata=_meta(
            "protocol",
            "while blind, seconds that must be left before the earliest deadline to reach "
            "the chain for the node to receive more value from a partner",
            _SECONDS_INT,
        ),
    )
    settle_window: int = field(
        default=3 * 24 * 3600,
        metadata=_meta(
            "protocol",
            "settle window (seconds) of the channels this node opens; within the network's bounds",
            _Int(1, MAX_SETTLE_WINDOW),
        ),
    )
    fee_flat: int = field(
        default=_FEE_DEFAULTS.flat,
        metadata=_meta(
            "protocol", "fee per payment forwarded, in the token's base units", _Int(0, UINT256_MAX)
        ),
    )
    fee_proportional_ppm: int = field(
        default=_FEE_DEFAULTS.proportional_ppm,
        metadata=_meta(
            "protocol",
            "fee in parts per million of the amount forwarded",
            _Int(0, MAX_PROPORTIONAL_PPM),
        ),
    )
    fee_imbalance_ppm: int = field(
        default=_FEE_DEFAULTS.imbalance_ppm,
        metadata=_meta(
            "protocol",
            "steepness of the fee (or rebate) that keeps channels balanced, in ppm",
            _Int(0, MAX_IMBALANCE_PPM),
        ),
    )

    # -- what the parts of the node take --

    def fee_schedule(self) -> FeeSchedule:
        return FeeSchedule(self.fee_flat, self.fee_proportional_ppm, self.fee_imbalance_ppm)

    def protocol_settings(self) -> Settings:
        """The protocol core's ``Settings``."""
        return Settings(
            reveal_timeout=self.reveal_timeout,
            lock_timeout=self.lock_timeout,
            hop_margin=self.hop_margin,
            clock_tolerance=self.clock_tolerance,
            max_attempts=self.max_attempts,
            fees=self.fee_schedule(),
            submit_margin=self.submit_margin,
            offline_min_lead=self.offline_min_lead,
        )

    def confirmations_for(self, chain_id: int) -> int:
        """``confirmations`` if set, else the policy of ``default_confirmations``."""
        if self.confirmations is not None:
            return self.confirmations
        return default_confirmations(chain_id)

    @property
    def database_path(self) -> Path:
        return self.data_dir / "node.sqlite3"

    @property
    def lock_path(self) -> Path:
        """The lock file ``Store.open`` takes beside the database."""
        return self.database_path.with_name(self.database_path.name + ".lock")

    @property
    def mesh_snapshot_path(self) -> Path:
        return self.data_dir / "mesh.snapshot"

    def mesh_config(self) -> MeshConfig:
        rate = float(self.mesh_rate_kib_per_s * 1024)
        return MeshConfig(
            routed_mtu=self.mesh_mtu,
            rate_bytes_per_s=rate,
            rate_burst_bytes=2 * rate,
            hop_window=NODE_HOP_WINDOW,
        )

    def mesh_beacon_addresses(self) -> list[Endpoint]:
        """Where the UDP link sends its beacons, in order, without repeats."""
        beacons: list[Endpoint] = []
        if self.mesh_broadcast:
            beacons.append(("255.255.255.255", self.mesh_udp_listen[1]))
        if self.mesh_multicast is not None:
            beacons.append(self.mesh_multicast)
        beacons.extend(self.mesh_beacons)
        return list(dict.fromkeys(beacons))

    def udp_settings(self) -> list[relay_cli.UdpSettings]:
        """The UDP link as ``mesh_relay.cli.build_adapters`` describes it (none if off)."""
        if not self.mesh_udp:
            return []
        return [relay_cli.UdpSettings(self.mesh_udp_listen, self.mesh_beacon_addresses())]

    def tcp_settings(self) -> relay_cli.TcpSettings | None:
        """The TCP links, or ``None`` when the node neither listens nor dials."""
        if self.mesh_tcp_listen is None and not self.mesh_peers:
            return None
        return relay_cli.TcpSettings(self.mesh_tcp_listen, list(self.mesh_peers))

    def bearer_token(self) -> str | None:
        """The API's token: ``api_token``, or the first line of ``api_token_file`` (read
        now, so a rotated file takes effect on the next call), or ``None``."""
        if self.api_token is not None:
            return self.api_token
        if self.api_token_file is None:
            return None
        try:
            text = self.api_token_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(
                f"api_token_file: cannot read {self.api_token_file}: {reason}", "api_token_file"
            ) from None
        token = text.split("\n", 1)[0].strip()
        if len(token) < MIN_API_TOKEN_LENGTH:
            raise ConfigError(
                f"api_token_file: the token in {self.api_token_file} is shorter than "
                f"{MIN_API_TOKEN_LENGTH} characters",
                "api_token_file",
            )
        return token

    def __repr__(self) -> str:
        items = ", ".join(f"{s.name}={_shown(s, getattr(self, s.name))}" for s in SETTINGS)
        return f"NodeConfig({items})"


def _shown(setting: Setting, value: Any) -> str:
    if value is None:
        return "None"
    if setting.name == "rpc_url":
        return repr(redact_url(value))
    if setting.secret:
        return "'<hidden>'"
    if isinstance(value, bytes):
        return checksum_address(value)
    return repr(value)


def redact_url(url: str) -> str:
    """``url`` with its user, password, path and query hidden: RPC providers put the API
    key there (``https://mainnet.infura.io/v3/<key>``)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    if ":" in host:
        host = f"[{host}]"
    shown = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    hidden = parts.username or parts.password or parts.path.strip("/") or parts.query
    return shown + ("/<hidden>" if hidden else "")


def format_endpoint(endpoint: Endpoint) -> str:
    host, port = endpoint
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


SETTINGS: Final[tuple[Setting, ...]] = tuple(
    Setting(
        name=f.name,
        table=f.metadata["table"],
        key=(
            f.name.removeprefix(f.metadata["table"] + "_")
            if f.metadata["table"] in _PREFIXED_TABLES
            else f.name
        ),
        help=f.metadata["help"],
        kind=f.metadata["kind"],
        default=f.default,
        example=f.metadata["example"],
        secret=f.metadata["secret"],
    )
    for f in dataclasses.fields(NodeConfig)
)
"""Every setting, in the order of the file."""
BY_NAME: Final = {s.name: s for s in SETTINGS}
_BY_TABLE_KEY: Final = {(s.table, s.key): s for s in SETTINGS}


# -- flags --------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config`` and one flag per setting, grouped by table; every default is ``None``
    (unset) so that ``load`` can tell a flag given from one left out."""
    parser.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help=f"settings file (TOML; default {DEFAULT_CONFIG} if it exists) [{CONFIG_ENV}]",
    )
    for table in TABLES:
        group = parser.add_argument_group(f"[{table}] settings")
        for s in SETTINGS:
            if s.table != table:
                continue
            text = f"{s.help} [{s.env}]".replace("%", "%%")
            if isinstance(s.kind, _Bool):
                group.add_argument(
                    s.flag, dest=s.name, action=argparse.BooleanOptionalAction, help=text
                )
            elif isinstance(s.kind, _List):
                group.add_argument(
                    s.flag,
                    dest=s.name,
                    action="append",
                    metavar=s.kind.metavar,
                    help=text + " (repeatable; comma-separated allowed)",
                )
            else:
                group.add_argument(s.flag, dest=s.name, metavar=s.kind.metavar, help=text)


# -- loading ------------------------------------------------------------------------------


def load(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> NodeConfig:
    """The node's settings from ``args`` (parsed with ``add_arguments``), the environment
    (``os.environ`` unless given) and the file, checked. ``ConfigError`` otherwise."""
    return resolve(args, environ)[0]


def resolve(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> tuple[NodeConfig, dict[str, str]]:
    """``load``, and where each value came from: a flag, a variable, ``<file> [table] key``
    or ``default``."""
    env = os.environ if environ is None else environ
    cwd = Path.cwd()
    config_path = _config_path(args, env, cwd)
    from_file = _read_file(config_path) if config_path is not None else {}
    base = config_path.parent if config_path is not None else cwd
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for s in SETTINGS:
        flag = getattr(args, s.name, None)
        source = "default"
        try:
            if flag is not None:
                source = s.flag
                values[s.name] = _from_flag(s, flag, cwd)
            elif s.env in env:
                source = s.env
                values[s.name] = s.kind.from_text(env[s.env], cwd)
            elif s.name in from_file:
                raw, source = from_file[s.name]
                values[s.name] = s.kind.from_toml(raw, base)
            else:
                default = s.default
                values[s.name] = default.expanduser() if isinstance(default, Path) else default
        except _Bad as exc:
            raise ConfigError(f"{s.name}: {exc} (from {source})", s.name) from None
        sources[s.name] = source
    _note_unknown_variables(env)
    config = NodeConfig(**values)
    _check(config, sources)
    return config, sources


def _config_path(args: argparse.Namespace, env: Mapping[str, str], cwd: Path) -> Path | None:
    given: Path | None = getattr(args, "config", None)
    source = "--config"
    if given is None and CONFIG_ENV in env:
        if not env[CONFIG_ENV].strip():
            return None  # set but empty: no file, not even the default one
        given, source = Path(env[CONFIG_ENV].strip()), CONFIG_ENV
    if given is None:
        default = DEFAULT_CONFIG.expanduser()
        return default if default.is_file() else None
    path = given.expanduser()
    path = path if path.is_absolute() else cwd / path
    if not path.is_file():
        raise ConfigError(f"config file {path} (from {source}): no such file", "config")
    return path


def _read_file(path: Path) -> dict[str, tuple[object, str]]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}", "config") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path}: not UTF-8 text", "config") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}", "config") from None
    found: dict[str, tuple[object, str]] = {}
    for table, body in document.items():
        if table not in TABLES:
            if not isinstance(body, dict):
                tables = ", ".join(f"[{t}]" for t in TABLES)
                message = f"{table!r} outside a table; every setting lives in one of {tables}"
            else:
                message = f"unknown table [{table}]{_hint(table, TABLES)}"
            raise ConfigError(f"config file {path}: {message}")
        if not isinstance(body, dict):
            raise ConfigError(f"config file {path}: {table} must be a table ([{table}])")
        for key, value in body.items():
            setting = _BY_TABLE_KEY.get((table, key))
            if setting is None:
                keys = [s.key for s in SETTINGS if s.table == table]
                raise ConfigError(
                    f"config file {path}: unknown setting {key!r} in [{table}]"
                    f"{_hint(key, keys)} (known: {', '.join(keys)})"
                )
            found[setting.name] = (value, f"{path} [{table}] {key}")
    return found


def _hint(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _from_flag(setting: Setting, value: object, cwd: Path) -> Any:
    if isinstance(setting.kind, _Bool):
        return bool(value)
    if isinstance(setting.kind, _List):
        assert isinstance(value, list)
        return tuple(item for text in value for item in setting.kind.from_text(text, cwd))
    assert isinstance(value, str)
    return setting.kind.from_text(value, cwd)


def _note_unknown_variables(env: Mapping[str, str]) -> None:
    # Other tools may own SMARTMESH_* names, so only a near miss of ours is reported: a
    # typo that would otherwise leave a default in force without a word.
    known = {s.env for s in SETTINGS} | {CONFIG_ENV, PASSWORD_ENV}
    for name in env:
        if name.startswith(ENV_PREFIX) and name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.85)
            if close:
                log.warning("ignoring %s: not a setting (did you mean %s?)", name, close[0])


def _check(config: NodeConfig, sources: Mapping[str, str]) -> None:
    """Rules between settings, and the files the settings name."""

    def fail(name: str, message: str) -> ConfigError:
        source = sources.get(name, "default")
        where = "" if source == "default" else f" (from {source})"
        return ConfigError(f"{name}{where}: {message}", name)

    c = config
    if c.clock_tolerance >= c.reveal_timeout:
        raise fail(
            "clock_tolerance",
            f"{c.clock_tolerance} must be below reveal_timeout ({c.reveal_timeout}), which "
            "includes it",
        )
    if c.lock_timeout <= c.reveal_timeout + c.hop_margin:
        raise fail(
            "lock_timeout",
            f"{c.lock_timeout} must exceed reveal_timeout + hop_margin "
            f"({c.reveal_timeout} + {c.hop_margin}): the first hop could not forward",
        )
    if c.lock_timeout >= c.settle_window:
        raise fail(
            "lock_timeout",
            f"{c.lock_timeout} must be below settle_window ({c.settle_window}): a lock must "
            "expire within its channel's settle window",
        )
    window_floor = c.clock_tolerance + c.submit_margin + c.offline_min_lead
    if c.settle_window <= window_floor:
        raise fail(
            "settle_window",
            f"{c.settle_window} must exceed clock_tolerance + submit_margin + "
            f"offline_min_lead ({window_floor}): while blind the node could receive nothing",
        )
    if c.api_token is not None and c.api_token_file is not None:
        raise fail("api_token", "give api_token or api_token_file, not both")
    if c.api_token_file is not None:
        c.bearer_token()  # readable, and long enough
    if not _is_loopback(c.api_host) and c.bearer_token() is None:
        raise fail(
            "api_host",
            f"{c.api_host} is reachable from other machines: set api_token_file (or "
            "api_token) so that the API asks for a token",
        )
    for name in ("password_file", "deployment"):
        path = getattr(c, name)
        if path is not None and not path.is_file():
            raise fail(name, f"{path}: no such file")
    _check_mesh(c, fail)


def _check_mesh(c: NodeConfig, fail: Callable[[str, str], ConfigError]) -> None:
    if c.mesh_multicast is not None and not _is_multicast(c.mesh_multicast[0]):
        raise fail("mesh_multicast", f"{c.mesh_multicast[0]} is not a multicast group")
    if c.mesh_udp:
        if c.mesh_broadcast and c.mesh_udp_listen[1] == 0:
            raise fail(
                "mesh_broadcast",
                "broadcast beacons go to the UDP port, so mesh_udp_listen needs a fixed one",
            )
        if not c.mesh_beacon_addresses():
            raise fail(
                "mesh_udp",
                "the UDP link sends no beacons: enable mesh_broadcast, or set mesh_multicast "
                "or mesh_beacons (or turn mesh_udp off)",
            )
    elif c.mesh_tcp_listen is None and not c.mesh_peers:
        raise fail(
            "mesh_udp",
            "no mesh link: keep mesh_udp on, or set mesh_tcp_listen or mesh_peers",
        )
    try:
        c.mesh_config()
    except MeshConfigError as exc:
        raise fail("mesh_mtu", str(exc)) from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_multicast(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_multicast
    except ValueError:
        return False


# -- the file, written --------------------------------------------------------------------

SAMPLE_HEADER: Final = """\
# A SmartMesh payment node's settings (smartmesh node --config node.toml).
# Generated by `smartmesh config sample`: every setting, with its default. Delete what
# you do not change. Each setting is also a flag and an environment variable, named in
# brackets; a flag wins over the variable, the variable over this file, this file over
# the default. Relative paths are relative to this file's folder.
"""


def render_toml(
    config: NodeConfig | None = None,
    *,
    sources: Mapping[str, str] | None = None,
    header: str = SAMPLE_HEADER,
) -> str:
    """The settings as a TOML file with one help line each: the sample file for
    ``config=None``; otherwise ``config``'s values (secrets hidden, so the text is for
    reading, not for loading), each with the source it came from when ``sources`` is
    given. Unset settings are commented out, with an example."""
    lines = [header.rstrip("\n")] if header else []
    for table in TABLES:
        lines += ["", f"[{table}]"]
        for s in SETTINGS:
            if s.table != table:
                continue
            value = s.default if config is None else getattr(config, s.name)
            lines.append(f"# {s.help} [{s.flag}, {s.env}]")
            if value is None:
                unset = "" if config is None else "  # not set"
                lines.append(f"# {s.key} = {s.example}{unset}")
                continue
            text = s.kind.render(value)
            if config is not None and s.secret:
                text = json.dumps(redact_url(value) if s.name == "rpc_url" else "<hidden>")
            source = (sources or {}).get(s.name, "default")
            note = "" if source == "default" else f"  # from {source}"
            lines.append(f"{s.key} = {text}{note}")
    return "\n".join(lines) + "\n"


def sample_toml() -> str:
    """The text of ``docs/node.example.toml``."""
    return render_toml()
