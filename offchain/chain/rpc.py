"""One JSON-RPC endpoint: the web3 connection, the mapping of failures, liveness.

Belongs here: ``connect`` (an ``AsyncWeb3`` over HTTP with a timeout and without web3's
own retries: the follower and the sender retry with their own backoff, and a hidden
retry loop would only hide a dead endpoint for longer), ``Endpoint.call``, which turns
every way an endpoint can fail to answer into ``ChainUnavailable`` and records when it
last answered, and small readers of JSON-RPC values (hex or int, hex or bytes).

Does not belong here: what is asked (``sync``, ``transactions``, ``manifest``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import ProviderConnectionError, TimeExhausted, Web3RPCError

from offchain.chain.errors import ChainUnavailable

T = TypeVar("T")

DEFAULT_TIMEOUT = 20.0
"""Seconds one request may take: eth_getLogs over a few thousand blocks takes a while on
public endpoints, and a slower answer is better treated as an outage."""

_UNAVAILABLE = (
    aiohttp.ClientError,
    asyncio.TimeoutError,
    TimeoutError,
    OSError,
    ProviderConnectionError,
    TimeExhausted,
    json.JSONDecodeError,
)


def connect(url: str, timeout: float = DEFAULT_TIMEOUT) -> AsyncWeb3[AsyncHTTPProvider]:
    """An ``AsyncWeb3`` on ``url`` (HTTP JSON-RPC).

    Close it with ``await w3.provider.disconnect()``.
    """
    provider = AsyncHTTPProvider(
        url,
        request_kwargs={"timeout": aiohttp.ClientTimeout(total=timeout)},
        exception_retry_configuration=None,
    )
    return AsyncWeb3(provider)


def rpc_error_message(exc: Web3RPCError) -> str:
    """The endpoint's own error message of a JSON-RPC error reply."""
    response = exc.rpc_response
    if isinstance(response, dict):
        error = response.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return str(exc)


class Endpoint:
    """A connection and what it has shown of its liveness.

    ``last_answer``: Unix time of the last reply of any kind (an error reply counts: the
    endpoint is alive); ``last_error``: why the last call got no reply (None after a reply).
    """

    def __init__(self, w3: AsyncWeb3[Any], clock: Callable[[], float] = time.time) -> None:
        self.w3 = w3
        self.clock = clock
        self.last_answer: float | None = None
        self.last_error: str | None = None

    @property
    def reachable(self) -> bool:
        return self.last_answer is not None and self.last_error is None

    async def call(self, what: str, request: Awaitable[T]) -> T:
        """Await ``request`` (a web3 call); ``ChainUnavailable`` if no reply came."""
        try:
            result = await request
        except Web3RPCError:
            self._answered()
            raise
        except _UNAVAILABLE as exc:
            self.last_error = f"{what}: {type(exc).__name__}: {exc}"
            raise ChainUnavailable(self.last_error) from exc
        self._answered()
        return result

    def _answered(self) -> None:
        self.last_answer = self.clock()
        self.last_error = None


def as_int(value: object) -> int:
    """A JSON-RPC quantity: an int, or a 0x-prefixed hex string."""
    if isinstance(value, bool):
        raise ValueError("a quantity is not a bool")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.startswith("0x"):
        return int(value, 16)
    raise ValueError(f"not a quantity: {value!r}")


def as_bytes(value: object) -> bytes:
    """JSON-RPC data: bytes (web3's HexBytes), or a 0x-prefixed hex string."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str) and value.startswith("0x"):
        return bytes.fromhex(value[2:])
    raise ValueError(f"not data: {value!r}")
