"""A JSON-RPC relay on loopback between a client under test and a real anvil.

Belongs here: ``RpcProxy``, an aiohttp server that forwards every request to the upstream
node and can play the endpoint's part in failures that anvil itself does not show:
refuse ``eth_getLogs`` over more than N blocks (as public providers do, with their error
code -32005), add logs of its own to a reply (garbage a broken node may send), or go away
(the listening socket closes, connections are refused) and come back on the same port.
It counts requests per method, so tests can tell how a client used the endpoint. It runs
in the test's event loop.

Does not belong here: any fake chain behaviour; real answers always come from the node.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import aiohttp
from aiohttp import web

from scripts.anvil import free_port


class RpcProxy:
    """Forwards to ``upstream``; ``url`` is where clients connect."""

    def __init__(self, upstream: str, port: int | None = None) -> None:
        self.upstream = upstream
        self.port = port or free_port()
        self.calls: Counter[str] = Counter()
        self.log_ranges: list[tuple[int, int]] = []
        self.max_log_range: int | None = None
        self.injected_logs: list[dict[str, Any]] = []
        """Logs added to the next eth_getLogs reply (a lying or buggy endpoint)."""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def up(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        """Close the listening socket and every connection: the endpoint is gone."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def close(self) -> None:
        await self.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> RpcProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        message: Any = json.loads(body)
        method = str(message.get("method")) if isinstance(message, dict) else "batch"
        self.calls[method] += 1
        if method == "eth_getLogs":
            query = message["params"][0]
            first, last = int(query["fromBlock"], 16), int(query["toBlock"], 16)
            self.log_ranges.append((first, last))
            if self.max_log_range is not None and last - first + 1 > self.max_log_range:
                error = {"code": -32005, "message": "query exceeds max block range"}
                reply = {"jsonrpc": "2.0", "id": message.get("id"), "error": error}
                return web.json_response(reply)
        assert self._session is not None
        async with self._session.post(
            self.upstream, data=body, headers={"Content-Type": "application/json"}
        ) as upstream:
            reply_body = await upstream.read()
        if method == "eth_getLogs" and self.injected_logs:
            reply = json.loads(reply_body)
            reply["result"] = [*reply["result"], *self.injected_logs]
            self.injected_logs = []
            return web.json_response(reply)
        return web.Response(body=reply_body, content_type="application/json")
