"""Start and stop a real anvil node (from tools/node_modules) on a free loopback port.

Belongs here: process management of anvil for `make demo`, `make bench` and the
integration tests. Nothing here talks JSON-RPC beyond waiting until the node answers.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[1]
ANVIL_BIN = ROOT / "tools" / "node_modules" / ".bin" / "anvil"
# anvil's default mnemonic ("test test ... junk") gives these well-known dev keys; they
# never hold value anywhere and are only used on the node this module starts.
DEV_PRIVATE_KEYS = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
)


class AnvilError(RuntimeError):
    """anvil is missing, did not start, or did not answer in time."""


def anvil_path() -> str:
    if ANVIL_BIN.exists():
        return str(ANVIL_BIN)
    found = shutil.which("anvil")
    if found is None:
        raise AnvilError("anvil not found: run `make install` (installs it from the npm registry)")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rpc(url: str, method: str, params: list[object] | None = None, timeout: float = 5.0) -> object:
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
    ).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        reply = json.loads(response.read())
    if "error" in reply:
        raise AnvilError(f"{method}: {reply['error']}")
    return reply["result"]


@dataclass
class Anvil:
    """A running anvil; use as a context manager or call stop()."""

    port: int
    process: subprocess.Popen[bytes]
    chain_id: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls,
        port: int | None = None,
        chain_id: int = 31337,
        block_time: int | None = None,
        log_path: Path | None = None,
    ) -> Anvil:
        port = port or free_port()
        args = [
            anvil_path(),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--chain-id",
            str(chain_id),
            "--accounts",
            str(len(DEV_PRIVATE_KEYS)),
        ]
        if block_time is not None:
            args += ["--block-time", str(block_time)]
        log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
        process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        node = cls(port=port, process=process, chain_id=chain_id)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AnvilError(f"anvil exited with code {process.returncode}")
            try:
                rpc(node.url, "eth_chainId", timeout=1)
                return node
            except OSError:
                time.sleep(0.05)
        node.stop()
        raise AnvilError("anvil did not answer within 20 s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Anvil:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


if __name__ == "__main__":  # manual use: python -m scripts.anvil
    node = Anvil.start(port=int(os.environ.get("ANVIL_PORT", "8545")))
    print(f"anvil at {node.url} (chain id {node.chain_id}); Ctrl-C stops it")
    try:
        node.process.wait()
    except KeyboardInterrupt:
        node.stop()
