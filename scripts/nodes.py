"""Run real `smartmesh node` processes: for the demo, the benches and the tests.

Belongs here: ``NodeProcess`` — one node's folder (keystore with its key, password file,
``node.toml``), its process started the way an operator starts it (``smartmesh node
--config node.toml``), the JSON "ready" line it prints, and stopping it gently (SIGTERM)
or not (SIGKILL, as ``kill -9``). Mesh links are TCP (each node listens and dials the
peers it is given), on loopback unless told otherwise; UDP discovery is off so that runs
are repeatable.

Off loopback (the island of ``scripts.netns``): the process runs in a network namespace
(``ip netns exec NAME``), its mesh link listens on ``mesh_host`` and dials peers given as
``"HOST:PORT"``, and its API listens on ``api_host``; an API off loopback requires a
bearer token (``api_token``, made up here if not given, written to a 0600 file), which
``client()`` sends.

Does not belong here: what the nodes are asked to do (the callers, through the API).
"""

from __future__ import annotations

import json
import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offchain.api.client import ApiClient
from offchain.node import keystore

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "demo password, not a secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class NodeProcess:
    """One node: its folder, settings and (while running) its process."""

    name: str
    key: bytes
    directory: Path
    rpc_url: str
    deployment: Path
    peers: Sequence[int | str] = field(default_factory=list)
    """Mesh peers to dial: a port on loopback, or ``"HOST:PORT"``."""
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    api_port: int = field(default_factory=free_port)
    tcp_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    ready: dict[str, Any] = field(default_factory=dict)
    netns: str | None = None
    """Network namespace to run the process in (``None``: the caller's)."""
    mesh_host: str = "127.0.0.1"
    """Address the mesh link listens on (``tcp_port``)."""
    api_host: str = "127.0.0.1"
    api_token: str | None = None
    """Bearer token of the API; made up when ``api_host`` is not loopback."""

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        store = self.directory / "keystore"
        if not keystore.list_accounts(store):
            keystore.import_key(store, self.key, PASSWORD, light=True)
        (self.directory / "password").write_text(PASSWORD)
        (self.directory / "password").chmod(0o600)
        if self.api_token is None and self.api_host not in ("127.0.0.1", "localhost", "::1"):
            self.api_token = secrets.token_urlsafe(24)
        if self.api_token is not None:
            token_file = self.directory / "api-token"
            token_file.touch(0o600)
            token_file.write_text(self.api_token + "\n")

    @property
    def address(self) -> str:
        return str(self.ready.get("address", ""))

    @property
    def api(self) -> str:
        host = f"[{self.api_host}]" if ":" in self.api_host else self.api_host
        return f"http://{host}:{self.api_port}"

    def client(self) -> ApiClient:
        """An API client of this node, with its token (use it as ``async with``)."""
        return ApiClient(self.api, self.api_token)

    @property
    def log_path(self) -> Path:
        return self.directory / "node.log"

    def write_config(self) -> Path:
        tables: dict[str, dict[str, Any]] = {
            "node": {"data_dir": str(self.directory / "data"), "sync": "NORMAL"},
            "keys": {
                "keystore": str(self.directory / "keystore"),
                "password_file": str(self.directory / "password"),
            },
            "chain": {
                "rpc_url": self.rpc_url,
                "deployment": str(self.deployment),
                "poll_interval": 0.2,
                # anvil mines only on transactions: an idle test chain has old blocks, which
                # a node counts as a stale endpoint after chain_max_block_age (120 s by
                # default) and goes blind. Here blindness comes from a dead endpoint only
                # (tests cut it with a proxy); docs/offline.md §1.
                "chain_max_block_age": 86_400,
            },
            "api": {"host": self.api_host, "port": self.api_port},
            "mesh": {
                "udp": False,
                "tcp_listen": f"{self.mesh_host}:{self.tcp_port}",
                "peers": [
                    peer if isinstance(peer, str) else f"127.0.0.1:{peer}" for peer in self.peers
                ],
            },
            "protocol": {"settle_window": 3_600},
        }
        if self.api_token is not None:
            tables["api"]["token_file"] = str(self.directory / "api-token")
        for table, values in self.settings.items():
            tables.setdefault(table, {}).update(values)
        lines = []
        for table, values in tables.items():
            lines.append(f"[{table}]")
            lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
            lines.append("")
        path = self.directory / "node.toml"
        path.write_text("\n".join(lines))
        return path

    def start(self, env: dict[str, str] | None = None, timeout: float = 60.0) -> dict[str, Any]:
        """Start the process and wait for its ready line."""
        config = self.write_config()
        environ = dict(os.environ)
        environ.pop("SMARTMESH_FAILPOINT", None)
        environ.update(env or {})
        log = self.log_path.open("ab")
        command = [sys.executable, "-m", "offchain.cli", "node", "--config", str(config)]
        if self.netns is not None:
            # `ip netns exec` execs the command: the process keeps its pid, so signals
            # reach the node itself.
            command = ["ip", "netns", "exec", self.netns, *command]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=ROOT,
            env=environ,
        )
        log.close()
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.process.poll() is not None:
                self.kill()
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"node {self.name} did not start:\n{tail}")
            readable, _, _ = select.select([self.process.stdout], [], [], min(left, 0.5))
            if readable:
                chunk = os.read(self.process.stdout.fileno(), 4096)
                if not chunk:
                    continue
                line += chunk
        self.ready = json.loads(line.decode().splitlines()[0])
        return self.ready

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as ``kill -9``: no chance to save anything."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not stop in time. Its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def wait_exit(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)
