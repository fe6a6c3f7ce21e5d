"""``ApiClient``: every method against the API over the in-memory node."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from aiohttp.test_utils import TestServer

from offchain.api.app import make_app
from offchain.api.client import ApiClient, ApiClientError
from offchain.api.convert import checksum_address
from tests.lib.api_server import PARTNER, TOKEN, memory_service

T = checksum_address(TOKEN)
P = checksum_address(PARTNER)


def test_client__every_method() -> None:
    async def main() -> None:
        service = memory_service(payment_delay=None)
        async with (
            TestServer(make_app(service, token="client-token"), host="127.0.0.1") as server,
            ApiClient(str(server.make_url("")), "client-token") as api,
        ):
            assert (await api.status())["version"] == "memory"
            assert (await api.tokens())[0]["token"] == T
            opened = await api.open_channel(T, P, 100, settle_window=1200)
            assert opened["settle_window"] == 1200
            assert (await api.deposit(T, P, 110))["our_deposit"] == "110"
            assert (await api.withdraw(T, P, 10))["our_withdrawn"] == "10"
            assert await api.channels(T) == [await api.channel(T, P)]
            secret = "0x" + "42" * 32
            payment = await api.pay(T, P, 5, max_fee=0, payment_id=9, secret=secret, wait=0)
            assert payment["status"] == "pending" and payment["payment_id"] == "9"
            assert payment["secrethash"] == "0x" + hashlib.sha256(bytes([0x42]) * 32).hexdigest()
            assert (await api.pending(T))[0]["payment_id"] == "9"
            with pytest.raises(ApiClientError) as timeout:
                await api.wait_payment(9, 0)
            assert (timeout.value.code, timeout.value.status) == ("timeout", 504)
            service.finish_payment(9)
            assert (await api.wait_payment("9", 5, direction="sent"))["status"] == "succeeded"
            assert (await api.payment(9))["status"] == "succeeded"
            service.receive(TOKEN, PARTNER, 2, payment_id=9)  # the partner chose our id
            with pytest.raises(ApiClientError) as ambiguous:
                await api.payment(9)
            assert (ambiguous.value.code, ambiguous.value.status) == ("ambiguous", 409)
            assert (await api.payment(9, direction="sent"))["amount"] == "5"
            assert (await api.payment(9, payer=P))["amount"] == "2"
            assert (await api.payment(9, direction="received", partner=P))["amount"] == "2"
            assert (await api.wait_payment(9, 0, payer=P))["direction"] == "received"
            assert [p["payment_id"] for p in await api.payments(direction="sent", limit=5)] == ["9"]
            events = await api.events(since=0, limit=2)
            assert len(events["events"]) == 2 and events["next_since"] == 2
            assert (await api.close_channel(T, P))["status"] == "closed"
            service.advance(10**6)
            assert (await api.settle(T, P))["status"] == "settled"
            with pytest.raises(ApiClientError) as missing:
                await api.payment(10)
            assert (missing.value.code, missing.value.status) == ("not_found", 404)

    asyncio.run(main())


def test_client__outside_async_with_is_a_usage_error() -> None:
    with pytest.raises(RuntimeError, match="async with"):
        asyncio.run(ApiClient().status())
