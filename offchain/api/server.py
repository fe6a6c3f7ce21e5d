"""Listening on a socket: ``serve`` starts the API on an address and returns a handle.

Belongs here: the rule that the API listens on loopback (127.0.0.1) unless it has a bearer
token, and the life of the aiohttp runner (start, the port actually bound, stop). The node
runtime calls ``serve`` inside its own event loop.

Does not belong here: routes and checks (``app``), the node.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Final

from aiohttp import web

from offchain.api.app import make_app
from offchain.node.service import NodeService

log = logging.getLogger("offchain.api")

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 5001
SHUTDOWN_GRACE: Final = 2.0
"""Seconds ``ApiServer.close`` lets requests in progress finish before it cancels them."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost`` (no name is resolved)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class InsecureBindError(ValueError):
    """Refusal to listen beyond loopback without an API token."""


@dataclass(slots=True)
class ApiServer:
    """A running API: ``url`` to reach it, ``close()`` to stop it."""

    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def close(self) -> None:
        await self.runner.cleanup()

    async def __aenter__(self) -> ApiServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def serve(
    service: NodeService,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
) -> ApiServer:
    """Start the API over ``service`` on ``host:port`` (port 0: any free port).

    Raises ``InsecureBindError`` for an address other than loopback without ``token``:
    anyone who reaches such an address could move the node's funds.
    """
    if not is_loopback(host) and not token:
        raise InsecureBindError(
            f"refusing to serve the API on {host!r} without an API token; "
            "set one, or listen on 127.0.0.1"
        )
    # handler_cancellation stays off: a chain transaction a handler started must not stop
    # half-way because the HTTP client went away. At shutdown, though, a handler still
    # waiting (for a transaction, or a payment with `wait`) is cancelled after
    # SHUTDOWN_GRACE, not aiohttp's 60 s: a node told to stop must stop (supervisors kill
    # it otherwise, before its final snapshot), and what the handler waited for is in the
    # node's store and goes on after the restart.
    runner = web.AppRunner(
        make_app(service, token=token), access_log=None, shutdown_timeout=SHUTDOWN_GRACE
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    # With port 0 the kernel picks the port: the runner's socket names it.
    bound_port = int(runner.addresses[0][1]) if runner.addresses else port
    api = ApiServer(runner, host.strip("[]"), bound_port)
    log.info("API listening on %s%s", api.url, "" if token else " (no token: loopback only)")
    return api
