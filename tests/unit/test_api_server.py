"""``serve``: loopback by default, never beyond it without a token, the port it bound."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from offchain.api.server import InsecureBindError, is_loopback, serve
from tests.lib.api_server import ServedApi, memory_service


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost"])
def test_is_loopback__true(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.0.0.1", "192.0.2.7", "node.example"])
def test_is_loopback__false(host: str) -> None:
    assert not is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "node.example"])
def test_serve__refuses_beyond_loopback_without_a_token(host: str) -> None:
    async def main() -> None:
        with pytest.raises(InsecureBindError, match="without an API token"):
            await serve(memory_service(), host, 0, None)
        with pytest.raises(InsecureBindError):
            await serve(memory_service(), host, 0, "")

    asyncio.run(main())


def test_serve__loopback_with_a_token_on_a_free_port() -> None:
    async def main() -> None:
        async with await serve(memory_service(), "127.0.0.1", 0, "tok-123") as server:
            assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}"
            async with aiohttp.ClientSession() as session:
                url = server.url + "/api/v1/status"
                async with session.get(url) as response:
                    assert response.status == 401
                headers = {"Authorization": "Bearer tok-123"}
                async with session.get(url, headers=headers) as response:
                    assert response.status == 200

    asyncio.run(main())


def test_served_api__runs_in_its_own_thread() -> None:
    with ServedApi(memory_service()) as served:
        assert served.call(lambda: served.service.status().version) == "memory"

        async def fetch() -> int:
            async with (
                aiohttp.ClientSession() as session,
                session.get(served.url + "/api/v1/tokens") as response,
            ):
                return response.status

        assert asyncio.run(fetch()) == 200
