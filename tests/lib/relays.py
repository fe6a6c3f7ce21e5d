"""Relay processes for the mesh integration tests: start, read the ready line, control, stop.

Belongs here: ``RelayProcess`` (one ``python -m mesh_relay`` or ``smartmesh relay``
process, optionally inside a network namespace, with its data folder, log file and
control socket) and ``Control``, a small blocking client of the relay's JSON-lines
control socket (docs/mesh.md §14). Tests are synchronous, so this client is too; the
asyncio ``mesh_relay.control.ControlClient`` is tested in-process elsewhere. No
assertions about behaviour live here, only waiting with deadlines.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SMARTMESH = Path(sys.executable).with_name("smartmesh")


class Control:
    """A blocking JSON-lines client of a relay's control socket (a Unix path)."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        self._sock.connect(str(path))
        self._buffer = b""
        self.events: deque[dict[str, Any]] = deque()

    def close(self) -> None:
        self._sock.close()

    def _line(self, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._sock.settimeout(left)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                return None
            if not chunk:
                raise ConnectionError("control socket closed")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message

    def request(self, **request: Any) -> dict[str, Any]:
        self._sock.sendall(json.dumps(request).encode() + b"\n")
        while True:
            message = self._line(10.0)
            if message is None:
                raise TimeoutError(f"no reply to {request}")
            if "event" in message:
                self.events.append(message)
            else:
                return message

    def send(self, to: str, payload: bytes, lifetime: float = 300.0) -> str:
        reply = self.request(op="send", to=to, payload=payload.hex(), lifetime=lifetime)
        if not reply.get("ok"):
            raise RuntimeError(reply)
        return str(reply["id"])

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.request(op="status")["status"]
        return status

    def event(self, timeout: float) -> dict[str, Any] | None:
        """The next event, or None when none comes within ``timeout`` seconds."""
        if self.events:
            return self.events.popleft()
        return self._line(timeout)

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any]:
        """Poll ``status`` until ``predicate`` holds; the status that satisfied it."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if predicate(status):
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not reached; last status {status}")
            time.sleep(0.05)


class RelayProcess:
    """One relay process; ``ready`` is its parsed ready line."""

    def __init__(
        self,
        name: str,
        base: Path,
        args: list[str],
        netns: str | None = None,
        console_script: bool = False,
        log_level: str = "debug",
    ) -> None:
        self.name = name
        self.data = base / name
        self.data.mkdir(parents=True, exist_ok=True)
        self.control_path = self.data / "ctl.sock"
        self.log_path = self.data / "relay.log"
        command = (
            [str(SMARTMESH), "relay"] if console_script else [sys.executable, "-m", "mesh_relay"]
        )
        argv = [
            *command,
            f"--data-dir={self.data}",
            f"--control={self.control_path}",
            f"--log-level={log_level}",
            *args,
        ]
        if netns is not None:
            argv = ["ip", "netns", "exec", netns, *argv]
        self._log = self.log_path.open("a")
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        self.ready = self._read_ready(30.0)
        self.address: str = self.ready["address"]
        self._control: Control | None = None

    def _read_ready(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        readable, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if readable else b""
        if not line:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"relay {self.name} did not start:\n{self.log()}")
        ready: dict[str, Any] = json.loads(line)
        return ready

    @property
    def tcp_port(self) -> int:
        return int(self.ready["tcp"].rsplit(":", 1)[1])

    @property
    def control(self) -> Control:
        if self._control is None:
            self._control = Control(self.control_path)
        return self._control

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def send_signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal the process and wait for it; its exit status."""
        if self._control is not None:
            self._control.close()
            self._control = None
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        return code
