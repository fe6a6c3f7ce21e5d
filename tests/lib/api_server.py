"""The API over a ``MemoryNodeService``, served on loopback from a thread of its own.

Belongs here: ``checked_client``, the API on aiohttp's ``TestServer`` in the test's own
loop with a ``CheckedClient``; ``ServedApi``, for tests whose client side blocks (the CLI,
schemathesis): the server's event loop runs in a background thread, ``call`` runs a
function inside it (the memory service is not thread-safe), and ``close`` stops it.
Also the tokens and addresses the API tests share (``TOKEN``, ``PARTNER``, ...).

Not here: assertions (``tests/lib/openapi_check.py`` and the tests).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

from aiohttp.test_utils import TestClient, TestServer

from offchain.api.app import make_app
from offchain.api.openapi import openapi_document
from offchain.api.server import ApiServer, serve
from offchain.node.service import NodeService, TokenInfo
from tests.lib.api_conformance import CheckedClient
from tests.lib.memory_service import MemoryNodeService
from tests.lib.openapi_check import OpenApiChecker

T = TypeVar("T")


def address(n: int) -> bytes:
    return n.to_bytes(20, "big")


NODE = bytes.fromhex("5aaeb6053f3e94c9b9a09f33669435e7ef1beaed")
TOKEN = bytes.fromhex("fb6916095ca1df60bb79ce92ce3ea74c37c5d359")
TOKEN_NETWORK = bytes.fromhex("dbf03b407c01e7cd3cbea99509d93f8dddc8c6fb")
OTHER_TOKEN = bytes.fromhex("d1220a0cf47c7b9be7a2e6ba89f429762e7b9adb")
PARTNER = bytes.fromhex("52908400098527886e0f7030069857d2e4169ee7")
MEDIATOR = bytes.fromhex("8617e340b3d01fa5f11f306f4090fd50e238070d")
FAR_TARGET = bytes.fromhex("de709f2102306220921060314715629080e2fb77")


def memory_service(**kwargs: object) -> MemoryNodeService:
    """A node that follows two tokens, with plenty of both on chain."""
    tokens = [
        TokenInfo(TOKEN, TOKEN_NETWORK, "TTT", 18),
        TokenInfo(OTHER_TOKEN, address(0xBEEF), "OTH", 6),
    ]
    return MemoryNodeService(NODE, tokens, **kwargs)  # type: ignore[arg-type]


class ServedApi:
    """``serve(service)`` on 127.0.0.1 and a free port, in a daemon thread's event loop."""

    def __init__(self, service: MemoryNodeService, token: str | None = None) -> None:
        self.service = service
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._server: ApiServer = self.run(serve(service, "127.0.0.1", 0, token))
        self.url = self._server.url

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` in the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def call(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Run ``fn(*args, **kwargs)`` in the server's loop and return its result."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return future.result(timeout=30)

    def close(self) -> None:
        self.run(self._server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        self.loop.close()

    def __enter__(self) -> ServedApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.asynccontextmanager
async def checked_client(
    service: NodeService, token: str | None = None
) -> AsyncIterator[CheckedClient]:
    """The API over ``service`` on aiohttp's test server (a real loopback socket), and a
    client that checks every answer against the OpenAPI document."""
    app = make_app(service, token=token)
    async with TestServer(app, host="127.0.0.1") as server, TestClient(server) as client:
        checker = OpenApiChecker(openapi_document())
        yield CheckedClient(client.session, str(server.make_url("")), checker, token)
