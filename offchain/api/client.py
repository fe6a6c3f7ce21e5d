"""An async HTTP client of the node's API, for the CLI and for Python programs.

Belongs here: ``ApiClient``, one method per operation, taking addresses as hex strings
and amounts as ints (sent as decimal strings) and returning the decoded JSON of the
answer; and ``ApiClientError``, raised for every error answer (with its stable ``code``)
and for a node that cannot be reached (code ``unreachable``). No timeout on a request's
total time: chain operations answer once their transaction is confirmed, which can take
minutes; connecting is bounded.

Does not belong here: printing (``offchain.cli_client``), checks of the input (the server
does them and answers ``invalid_argument``), the server side (``app``).
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any, Final

import aiohttp

from offchain.api.openapi import API_PREFIX

DEFAULT_API_URL: Final = "http://127.0.0.1:5001"
CONNECT_TIMEOUT: Final = 10.0


class ApiClientError(Exception):
    """An error answer of the API (``code`` as in the error body), or no answer at all."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def _amount(value: int) -> str:
    return str(value)


class ApiClient:
    """Use as ``async with ApiClient(url, token) as api: await api.status()``."""

    def __init__(self, base_url: str = DEFAULT_API_URL, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ApiClient:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT)
        self._session = aiohttp.ClientSession(timeout=timeout, headers=self._headers)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        body: dict[str, object] | None = None,
        query: dict[str, object] | None = None,
    ) -> tuple[int, Any]:
        """Send ``method /api/v1{path}``; return the status and decoded body of a success."""
        if self._session is None:
            raise RuntimeError("use ApiClient inside `async with`")
        params = {k: _query_text(v) for k, v in (query or {}).items() if v is not None}
        url = self.base_url + API_PREFIX + path
        try:
            async with self._session.request(method, url, json=body, params=params) as response:
                text = await response.text()
                status = response.status
        except aiohttp.ClientError as exc:
            raise ApiClientError(
                "unreachable", f"cannot reach the node's API at {self.base_url}: {exc}"
            ) from None
        try:
            data = json.loads(text)
        except ValueError:
            raise ApiClientError(
                f"http_{status}", f"the answer is not JSON: {text[:200]!r}", status
            ) from None
        if status >= 400:
            error = data.get("error", {}) if isinstance(data, dict) else {}
            raise ApiClientError(
                str(error.get("code", f"http_{status}")), str(error.get("message", text)), status
            )
        return status, data

    async def _get(self, path: str, **query: object) -> dict[str, Any]:
        return _object((await self.request("GET", path, query=query))[1])

    async def _post(self, path: str, body: dict[str, object] | None = None) -> dict[str, Any]:
        return _object((await self.request("POST", path, body))[1])

    async def status(self) -> dict[str, Any]:
        return await self._get("/status")

    async def tokens(self) -> list[dict[str, Any]]:
        return list((await self._get("/tokens"))["tokens"])

    async def channels(self, token: str | None = None) -> list[dict[str, Any]]:
        return list((await self._get("/channels", token=token))["channels"])

    async def channel(self, token: str, partner: str) -> dict[str, Any]:
        return await self._get(f"/channels/{token}/{partner}")

    async def open_channel(
        self, token: str, partner: str, deposit: int, settle_window: int | None = None
    ) -> dict[str, Any]:
        body: dict[str, object] = {"token": token, "partner": partner, "deposit": _amount(deposit)}
        if settle_window is not None:
            body["settle_window"] = settle_window
        return await self._post("/channels", body)

    async def deposit(self, token: str, partner: str, total_deposit: int) -> dict[str, Any]:
        body: dict[str, object] = {"total_deposit": _amount(total_deposit)}
        return await self._post(f"/channels/{token}/{partner}/deposit", body)

    async def withdraw(self, token: str, partner: str, total_withdraw: int) -> dict[str, Any]:
        body: dict[str, object] = {"total_withdraw": _amount(total_withdraw)}
        return await self._post(f"/channels/{token}/{partner}/withdraw", body)

    async def close_channel(
        self, token: str, partner: str, cooperative: bool = False
    ) -> dict[str, Any]:
        body: dict[str, object] = {"cooperative": cooperative}
        return await self._post(f"/channels/{token}/{partner}/close", body)

    async def settle(self, token: str, partner: str) -> dict[str, Any]:
        return await self._post(f"/channels/{token}/{partner}/settle")

    async def pay(
        self,
        token: str,
        target: str,
        amount: int,
        *,
        max_fee: int | None = None,
        payment_id: int | None = None,
        secret: str | None = None,
        secrethash: str | None = None,
        direct: bool = False,
        wait: float | None = None,
    ) -> dict[str, Any]:
        """Start a payment; with ``wait``, answer once it is finished or ``wait`` ran out.

        The answer is the payment; its ``status`` says whether it is still pending.
        """
        body: dict[str, object] = {"token": token, "target": target, "amount": _amount(amount)}
        optional: dict[str, object | None] = {
            "max_fee": None if max_fee is None else _amount(max_fee),
            "payment_id": None if payment_id is None else str(payment_id),
            "secret": secret,
            "secrethash": secrethash,
            "direct": direct or None,
            "wait": wait,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return await self._post("/payments", body)

    async def payment(
        self,
        payment_id: int | str,
        *,
        direction: str | None = None,
        payer: str | None = None,
        partner: str | None = None,
    ) -> dict[str, Any]:
        """One payment; ``direction``, ``payer``, ``partner`` pick one when the id names
        several (ids are unique per payer only: a 409 ``ambiguous`` says so)."""
        return await self._get(
            f"/payments/{payment_id}", direction=direction, payer=payer, partner=partner
        )

    async def wait_payment(
        self,
        payment_id: int | str,
        timeout: float,
        *,
        direction: str | None = None,
        payer: str | None = None,
        partner: str | None = None,
    ) -> dict[str, Any]:
        return await self._get(
            f"/payments/{payment_id}/wait",
            timeout=timeout,
            direction=direction,
            payer=payer,
            partner=partner,
        )

    async def payments(
        self,
        *,
        direction: str | None = None,
        status: str | None = None,
        token: str | None = None,
        partner: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[dict[str, Any]]:
        answer = await self._get(
            "/payments",
            direction=direction,
            status=status,
            token=token,
            partner=partner,
            limit=limit,
            offset=offset,
        )
        return list(answer["payments"])

    async def pending(self, token: str | None = None) -> list[dict[str, Any]]:
        return list((await self._get("/pending", token=token))["pending"])

    async def events(self, since: int = 0, limit: int = 100) -> dict[str, Any]:
        return await self._get("/events", since=since, limit=limit)

    async def deadlines(self) -> list[dict[str, Any]]:
        return list((await self._get("/deadlines"))["deadlines"])


def _object(data: object) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ApiClientError("bad_answer", f"expected a JSON object, got {type(data).__name__}")
    return data


def _query_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
