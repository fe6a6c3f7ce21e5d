"""Drive a running node API through every endpoint and check it against its own document.

Belongs here: ``CheckedClient``, an HTTP client whose every response goes through
``OpenApiChecker`` (the unit tests use it too), and ``check_conformance(base_url, setup)``,
which fetches the served OpenAPI document, validates it, and walks one channel's life
(open, deposit, withdraw, pay, close, settle) plus the reads, the error paths the API edge
owns (malformed JSON, wrong content type, oversized body, unknown fields, bad addresses,
out-of-range amounts, unknown paths and methods, auth) and checks that no request changed
state when it was refused. It ends by asserting that every operation of the document was
seen. It works against any node: the in-memory one here, the real node in integration
tests (``ConformanceSetup`` says which token and partner to use and how to get past the
settle window).

Not here: the node's business rules beyond what every node must do (for those, the unit
tests of the node), starting servers (``tests/lib/api_server.py``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from offchain.api.convert import checksum_address
from offchain.api.openapi import API_PREFIX
from tests.lib.openapi_check import OpenApiChecker

_NO_BODY = object()


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    data: Any

    @property
    def code(self) -> str | None:
        """The error code of an error answer."""
        if isinstance(self.data, dict) and isinstance(self.data.get("error"), dict):
            code = self.data["error"].get("code")
            return code if isinstance(code, str) else None
        return None

    @property
    def message(self) -> str:
        """The message of an error answer ("" for any other answer)."""
        if isinstance(self.data, dict) and isinstance(self.data.get("error"), dict):
            return str(self.data["error"].get("message", ""))
        return ""


class CheckedClient:
    """Requests under ``/api/v1`` whose answers must conform to ``checker``'s document."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        checker: OpenApiChecker,
        api_token: str | None = None,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.checker = checker
        self.api_token = api_token

    async def request(
        self,
        method: str,
        path: str,
        body: object = _NO_BODY,
        *,
        raw: bytes | None = None,
        content_type: str | None = "application/json",
        headers: Mapping[str, str] | None = None,
        auth: bool = True,
        expect: int | set[int] | None = None,
    ) -> Answer:
        """Send ``method API_PREFIX+path`` (``body`` as JSON, or ``raw`` bytes) and check.

        ``expect``: the status (or statuses) the caller requires, beyond conformance.
        """
        sent = dict(headers or {})
        if auth and self.api_token is not None:
            sent.setdefault("Authorization", f"Bearer {self.api_token}")
        data: bytes | None = raw
        if body is not _NO_BODY:
            data = json.dumps(body).encode()
        if data is not None and content_type is not None:
            sent.setdefault("Content-Type", content_type)
        full = API_PREFIX + path
        async with self.session.request(
            method, self.base_url + full, data=data, headers=sent
        ) as response:
            payload = await response.read()
            answer_headers = dict(response.headers)
            status = response.status
        decoded = self.checker.check(method, full, status, answer_headers, payload)
        answer = Answer(status, answer_headers, decoded)
        wanted = {expect} if isinstance(expect, int) else expect
        if wanted is not None and status not in wanted:
            raise AssertionError(f"{method} {full}: {status} {decoded}, expected {sorted(wanted)}")
        return answer

    async def get(self, path: str, **kwargs: Any) -> Answer:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, body: object = _NO_BODY, **kwargs: Any) -> Answer:
        return await self.request("POST", path, body, **kwargs)


async def fetch_checker(
    session: aiohttp.ClientSession, base_url: str, api_token: str | None = None
) -> OpenApiChecker:
    """The served document, validated, as a checker (the document's own answer checked)."""
    headers = {"Authorization": f"Bearer {api_token}"} if api_token else {}
    url = base_url.rstrip("/") + API_PREFIX + "/openapi.json"
    async with session.get(url, headers=headers) as response:
        assert response.status == 200, f"GET {url}: {response.status}"
        body = await response.read()
        answer_headers = dict(response.headers)
    checker = OpenApiChecker(json.loads(body))
    checker.check("GET", API_PREFIX + "/openapi.json", 200, answer_headers, body)
    return checker


@dataclass(frozen=True, slots=True)
class ConformanceSetup:
    """What the run may do on the node under test."""

    token: bytes
    """A token the node follows; the node holds at least ``deposit + 2`` of it on chain."""
    partner: bytes
    """A node with which no channel in ``token`` is open; it is online, so a direct
    payment to it goes through."""
    deposit: int = 10
    settle_window: int | None = None
    api_token: str | None = None
    withdraw: bool = True
    """Whether the partner answers (co-signs) a withdraw request."""
    before_settle: Callable[[], Awaitable[None]] | None = None
    """Gets the node past the settle window (e.g. moves anvil's clock); without it, only
    the refusal to settle early is checked."""


async def check_conformance(base_url: str, setup: ConformanceSetup) -> OpenApiChecker:
    """Exercise every endpoint of the API at ``base_url``; raise AssertionError on a fault.

    Returns the checker, whose ``seen`` tells which statuses each operation answered.
    """
    async with aiohttp.ClientSession() as session:
        checker = await fetch_checker(session, base_url, setup.api_token)
        api = CheckedClient(session, base_url, checker, setup.api_token)
        await _auth(api, setup)
        await _reads(api, setup)
        await _refusals(api, setup)
        channel = await _channel_life_until_pay(api, setup)
        await _payments(api, setup)
        await _close_and_settle(api, setup, channel)
        missing = checker.missing()
        assert not missing, f"operations never exercised: {missing}"
        return checker


def _hex(address: bytes) -> str:
    return checksum_address(address)


def _break_checksum(address: str) -> str | None:
    """``address`` with one letter's case flipped, when that leaves it in mixed case."""
    digits = address[2:]
    for i, c in enumerate(digits):
        if c.isalpha():
            flipped = digits[:i] + c.swapcase() + digits[i + 1 :]
            if flipped not in (flipped.lower(), flipped.upper()):
                return "0x" + flipped
    return None


async def _auth(api: CheckedClient, setup: ConformanceSetup) -> None:
    if setup.api_token is None:
        return
    answer = await api.get("/status", auth=False, expect=401)
    assert answer.code == "unauthorized" and "WWW-Authenticate" in answer.headers
    await api.get("/status", auth=False, headers={"Authorization": "Bearer wrong"}, expect=401)
    await api.get("/openapi.json", auth=False, expect=401)


async def _reads(api: CheckedClient, setup: ConformanceSetup) -> None:
    status = (await api.get("/status", expect=200)).data
    assert status["address"] == checksum_address(bytes.fromhex(status["address"][2:]))
    tokens = (await api.get("/tokens", expect=200)).data["tokens"]
    assert _hex(setup.token) in [t["token"] for t in tokens], "the setup's token is unknown"
    await api.get("/channels", expect=200)
    await api.get(f"/channels?token={_hex(setup.token)}", expect=200)
    await api.get(f"/channels?token={_hex(setup.token).lower()}", expect=200)
    await api.get("/pending", expect=200)
    await api.get(f"/pending?token={_hex(setup.token)}", expect=200)
    deadlines = (await api.get("/deadlines", expect=200)).data["deadlines"]
    timed = [d["deadline"] for d in deadlines if d["deadline"] is not None]
    assert timed == sorted(timed), "deadlines must come earliest first"
    events = (await api.get("/events", expect=200)).data
    assert all(e["seq"] > 0 for e in events["events"])
    later = (await api.get(f"/events?since={events['next_since']}&limit=5", expect=200)).data
    assert all(e["seq"] > events["next_since"] for e in later["events"])
    await api.get("/payments?limit=5&offset=0&direction=sent&status=succeeded", expect=200)


async def _refusals(api: CheckedClient, setup: ConformanceSetup) -> None:
    """Input the API edge must refuse, and no refusal may change anything."""
    token, partner = _hex(setup.token), _hex(setup.partner)
    before = (await api.get(f"/channels?token={token}", expect=200)).data
    good = {"token": token, "partner": partner, "deposit": str(setup.deposit)}
    bad_checksum = _break_checksum(partner)
    cases: list[tuple[object, int]] = [
        ({**good, "deposit": setup.deposit}, 400),  # a JSON number: precision is lost
        ({**good, "deposit": "-1"}, 400),
        ({**good, "deposit": str(2**256)}, 400),
        ({**good, "deposit": "1e3"}, 400),
        ({**good, "deposit": "007"}, 400),
        ({**good, "partner": "0x" + "00" * 20}, 400),
        ({**good, "partner": partner[:-1]}, 400),
        ({**good, "partner": "0x" + "zz" * 20}, 400),
        ({**good, "colour": "blue"}, 400),
        ({**good, "settle_window": "3600"}, 400),
        ({**good, "settle_window": True}, 400),
        ({**good, "settle_window": 0}, 400),
        ({"token": token, "partner": partner}, 400),
        ([good], 400),
        ("open", 400),
        (None, 400),
    ]
    if bad_checksum is not None:
        cases.append(({**good, "partner": bad_checksum}, 400))
    for body, status in cases:
        answer = await api.post("/channels", body, expect=status)
        assert answer.code == "invalid_argument", (body, answer.data)
    raw_cases: list[tuple[bytes, str | None, int, str]] = [
        (b'{"token": ', "application/json", 400, "invalid_argument"),
        (b"\xff\xfe{}", "application/json", 400, "invalid_argument"),
        (b'{"a": 1, "a": 2}', "application/json", 400, "invalid_argument"),
        (b'{"deposit": NaN}', "application/json", 400, "invalid_argument"),
        (b"[" * 5000 + b"]" * 5000, "application/json", 400, "invalid_argument"),
        (json.dumps(good).encode(), "text/plain", 415, "unsupported_media_type"),
        (
            json.dumps(good).encode(),
            "application/x-www-form-urlencoded",
            415,
            "unsupported_media_type",
        ),
        (b'{"pad": "' + b"x" * (65 * 1024) + b'"}', "application/json", 413, "payload_too_large"),
    ]
    for raw, content_type, status, code in raw_cases:
        answer = await api.request(
            "POST", "/channels", raw=raw, content_type=content_type, expect=status
        )
        assert answer.code == code, (raw[:40], answer.data)
    # Paths, methods and query strings.
    for path, status in [
        ("/nothing-here", 404),
        (f"/channels/{token}/0x1234", 400),
        (f"/channels/{token}/{partner}?verbose=1", 400),
        ("/status?x=1", 400),
        ("/deadlines?token=1", 400),
        ("/payments/abc", 400),
        ("/payments/-1", 400),
        (f"/payments/{2**64}", 400),
        ("/payments?limit=0", 400),
        ("/payments?limit=5&limit=6", 400),
        ("/payments?direction=sideways", 400),
        ("/events?since=-1", 400),
        ("/payments/1/wait?timeout=nan", 400),
        ("/payments/1/wait?timeout=601", 400),
        ("/payments/1?direction=sideways", 400),
        ("/payments/1?payer=0x1234", 400),
        (f"/payments/1?payer={partner}&direction=sent", 400),
        ("/payments/1/wait?partner=0x1234", 400),
    ]:
        await api.get(path, expect=status)
    await api.request("DELETE", "/channels", expect=405)
    await api.request("PUT", "/status", expect=405)
    await api.post(f"/channels/{token}/{partner}/deposit", {"total_deposit": 5}, expect=400)
    await api.post(f"/channels/{token}/{partner}/close", {"cooperative": "yes"}, expect=400)
    await api.post(f"/channels/{token}/{partner}/settle", {"now": True}, expect=400)
    await api.post("/payments", {"token": token, "target": partner, "amount": 1}, expect=400)
    await api.post(
        "/payments", {"token": token, "target": partner, "amount": "1", "wait": -1}, expect=400
    )
    after = (await api.get(f"/channels?token={token}", expect=200)).data
    assert after == before, "a refused request changed the channels"


async def _channel_life_until_pay(api: CheckedClient, setup: ConformanceSetup) -> dict[str, Any]:
    token, partner = _hex(setup.token), _hex(setup.partner)
    path = f"/channels/{token}/{partner}"
    existing = await api.get(path, expect={200, 404})
    assert existing.status == 404 or existing.data["status"] == "settled", (
        "the setup's partner already has a live channel in the token"
    )
    await api.post(path + "/deposit", {"total_deposit": "1"}, expect={404, 409})
    body: dict[str, object] = {
        "token": token.lower(),
        "partner": partner.lower(),
        "deposit": str(setup.deposit),
    }
    if setup.settle_window is not None:
        body["settle_window"] = setup.settle_window
    opened = await api.post("/channels", body, expect=201)
    assert opened.headers["Location"] == "/api/v1" + path, opened.headers
    channel = opened.data
    assert channel["status"] == "open" and channel["our_deposit"] == str(setup.deposit)
    assert (await api.get(path, expect=200)).data == channel
    assert channel in (await api.get(f"/channels?token={token}", expect=200)).data["channels"]
    await api.post("/channels", body, expect=409)

    total = setup.deposit + 2
    raised = (await api.post(path + "/deposit", {"total_deposit": str(total)}, expect=200)).data
    assert raised["our_deposit"] == str(total)
    again = await api.post(path + "/deposit", {"total_deposit": str(total)}, expect=200)
    assert again.data["our_deposit"] == str(total), "the same total must be a no-op"
    await api.post(path + "/deposit", {"total_deposit": "0"}, expect=409)
    # More than we hold (409), or past the token network's per-participant limit (400).
    await api.post(path + "/deposit", {"total_deposit": str(2**256 - 1)}, expect={400, 409})
    if setup.withdraw:
        drawn = (await api.post(path + "/withdraw", {"total_withdraw": "1"}, expect=200)).data
        assert drawn["our_withdrawn"] == "1"
        await api.post(path + "/withdraw", {"total_withdraw": str(total * 10)}, expect=409)
    else:
        await api.post(path + "/withdraw", {"total_withdraw": "-1"}, expect=400)
    await api.post(path + "/settle", expect=409)  # open: nothing to settle
    return channel


async def _payments(api: CheckedClient, setup: ConformanceSetup) -> None:
    token, partner = _hex(setup.token), _hex(setup.partner)
    started = await api.post(
        "/payments",
        {"token": token, "target": partner, "amount": "1", "direct": True, "wait": 30},
        expect={200, 202},
    )
    payment = started.data
    payment_id = payment["payment_id"]
    # The URL of a payment we sent names its direction: ids are unique per payer only, so
    # a payment received later with the same id must not make it ambiguous.
    location = started.headers["Location"]
    assert location == f"/api/v1/payments/{payment_id}?direction=sent", location
    assert payment["direction"] == "sent" and payment["amount"] == "1"
    assert payment["partner"] == partner and payment["payer"] is None
    followed = (await api.get(location.removeprefix("/api/v1"), expect=200)).data
    assert followed == (await api.get(f"/payments/{payment_id}", expect=200)).data
    assert followed["payment_id"] == payment_id
    await api.get(f"/payments/{payment_id}?partner={partner}", expect=200)
    await api.get(f"/payments/{payment_id}?direction=received", expect=404)
    await api.get(f"/payments/{payment_id}?payer={partner}", expect=404)
    waited = await api.get(
        f"/payments/{payment_id}/wait?timeout=5&direction=sent", expect={200, 504}
    )
    if waited.status == 200:
        assert waited.data["status"] in ("succeeded", "failed")
    listed = await api.get(
        f"/payments?direction=sent&token={token}&partner={partner}&limit=1000", expect=200
    )
    assert payment_id in [p["payment_id"] for p in listed.data["payments"]]
    await api.post(
        "/payments",
        {"token": token, "target": partner, "amount": "1", "payment_id": payment_id},
        expect=409,
    )
    unknown = str((int(payment_id) + 1) % 2**64)
    await api.get(f"/payments/{unknown}", expect=404)
    await api.get(f"/payments/{unknown}/wait?timeout=0", expect=404)
    started = await api.post(
        "/payments", {"token": token, "target": partner, "amount": "1"}, expect={200, 202}
    )
    assert started.headers["Location"].endswith(f"/{started.data['payment_id']}?direction=sent")


async def _close_and_settle(
    api: CheckedClient, setup: ConformanceSetup, channel: dict[str, Any]
) -> None:
    token, partner = _hex(setup.token), _hex(setup.partner)
    path = f"/channels/{token}/{partner}"
    await api.post(path + "/settle", {}, expect=409)  # still open
    closed = await api.post(path + "/close", {"cooperative": False}, expect=200)
    assert closed.data["status"] in ("closed", "settleable")
    assert closed.data["settle_deadline"] is not None
    assert closed.data["channel_id"] == channel["channel_id"]
    await api.post(path + "/close", expect=409)
    await api.post(path + "/deposit", {"total_deposit": "100"}, expect=409)
    if closed.data["status"] == "closed":
        await api.post(path + "/settle", expect=409)
    if setup.before_settle is not None:
        await setup.before_settle()
        settled = await api.post(path + "/settle", raw=b"", expect=200)
        assert settled.data["status"] == "settled"
        # Settling a settled channel again: a conflict, or (a node that settles by itself
        # once the window is over, so that the user's settle may come second) the settled
        # channel as it is.
        again = await api.post(path + "/settle", expect={200, 409})
        assert again.status == 409 or again.data == settled.data
