"""The HTTP API over the in-memory node: every answer checked against the OpenAPI document.

Each test runs the API on aiohttp's test server (a real loopback socket) with a
``CheckedClient``, so besides what a test asserts, every status, header and body it sees
must conform to the document.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from offchain.api.app import make_app
from offchain.api.convert import checksum_address
from offchain.node.service import NodeStatus
from tests.lib.api_conformance import CheckedClient, ConformanceSetup, check_conformance
from tests.lib.api_server import (
    FAR_TARGET,
    MEDIATOR,
    NODE,
    OTHER_TOKEN,
    PARTNER,
    TOKEN,
    checked_client,
    memory_service,
)
from tests.lib.memory_service import MemoryNodeService

T = checksum_address(TOKEN)
P = checksum_address(PARTNER)
CHANNEL = f"/channels/{T}/{P}"

Body = Callable[[CheckedClient, MemoryNodeService], Awaitable[None]]


def run(body: Body, service: MemoryNodeService | None = None, token: str | None = None) -> None:
    """Run ``body`` against the API over ``service`` (a fresh memory node by default)."""

    async def main() -> None:
        node = service if service is not None else memory_service()
        async with checked_client(node, token) as api:
            await body(api, node)

    asyncio.run(main())


async def open_channel(api: CheckedClient, deposit: int = 100) -> dict[str, object]:
    body = {"token": T, "partner": P, "deposit": str(deposit)}
    answer = await api.post("/channels", body, expect=201)
    return answer.data  # type: ignore[no-any-return]


# The conformance walk, as the integration tests will run it against the real node.


@pytest.mark.parametrize("api_token", [None, "0123456789abcdef-token"])
def test_conformance__memory_node_passes_every_endpoint(api_token: str | None) -> None:
    async def main() -> None:
        service = memory_service()

        async def past_settle_window() -> None:
            service.advance(10**6)

        setup = ConformanceSetup(
            TOKEN, PARTNER, api_token=api_token, before_settle=past_settle_window
        )
        async with checked_client(service, api_token) as api:
            checker = await check_conformance(api.base_url, setup)
        assert checker.seen["POST /channels/{token}/{partner}/settle"] >= {200, 409}

    asyncio.run(main())


# Reads.


def test_status__reports_the_node() -> None:
    async def body(api: CheckedClient, node: MemoryNodeService) -> None:
        status = (await api.get("/status", expect=200)).data
        assert status["address"] == checksum_address(NODE)
        assert status["chain_reachable"] is True and status["blind_since"] is None
        node.chain_reachable = False
        status = (await api.get("/status", expect=200)).data
        assert status["chain_reachable"] is False and isinstance(status["blind_since"], float)

    run(body)


def test_status__blind__shows_how_long_and_the_next_deadline() -> None:
    async def body(api: CheckedClient, node: MemoryNodeService) -> None:
        await open_channel(api)
        node.partner_deposit(TOKEN, PARTNER, 50)
        node.receive(TOKEN, PARTNER, 5)
        status = (await api.get("/status", expect=200)).data
        assert status["blind_for_s"] is None and status["next_deadline"] is None
        node.go_blind()
        node.advance(42)
        status = (await api.get("/status", expect=200)).data
        assert status["chain_reachable"] is False
        assert status["blind_for_s"] == pytest.approx(42, abs=1)
        assert status["next_deadline_what"] == "update_horizon"
        assert isinstance(status["next_deadline"], float)

    run(body)


def test_deadlines__list_the_horizon_of_a_channel_holding_received_value() -> None:
    async def body(api: CheckedClient, node: MemoryNodeService) -> None:
        assert (await api.get("/deadlines", expect=200)).data == {"deadlines": []}
        await open_channel(api)
        node.partner_deposit(TOKEN, PARTNER, 50)
        node.receive(TOKEN, PARTNER, 5)
        (item,) = (await api.get("/deadlines", expect=200)).data["deadlines"]
        assert (item["what"], item["partner"], item["covered_by"]) == ("update_horizon", P, "self")
        assert item["amount"] == "5" and item["nonce"] == "5" and item["delegate"] is None
        assert "delegate" in item["text"]

    run(body)


def test_payment__received_while_blind__carries_its_risk() -> None:
    async def body(api: CheckedClient, node: MemoryNodeService) -> None:
        await open_channel(api)
        node.partner_deposit(TOKEN, PARTNER, 50)
        online = node.receive(TOKEN, PARTNER, 5)
        node.go_blind()
        blind = node.receive(TOKEN, PARTNER, 7)
        seen = (await api.get(f"/payments/{online.payment_id}", expect=200)).data
        assert seen["risk"] is None
        seen = (await api.get(f"/payments/{blind.payment_id}", expect=200)).data
        risk = seen["risk"]
        assert risk["covered_by"] == "self" and risk["within_window"] is True
        assert risk["deadline"] < risk["chain_deadline"]
        listed = (await api.get("/payments?direction=received", expect=200)).data["payments"]
        assert [p["risk"] is None for p in listed] == [False, True]

    run(body)


def test_tokens__lists_the_followed_tokens() -> None:
    async def body(api: CheckedClient, node: MemoryNodeService) -> None:
        tokens = (await api.get("/tokens", expect=200)).data["tokens"]
        assert [t["token"] for t in tokens] == [T, checksum_address(OTHER_TOKEN)]
        assert tokens[0]["symbol"] == "TTT" and tokens[0]["decimals"] == 18

    run(body)


# Channels.


def test_open__answers_201_with_location_and_the_channel() -> None:
    async def body(api: CheckedClient, node: MemoryNodeService) -> None:
        answer = await api.post(
            "/channels",
            {
                "token": T.lower(),
                "partner": P.upper().replace("0X", "0x"),
                "deposit": "100",
                "settle_window": 7200,
            },
            expect=201,
        )
        assert answer.headers["Location"] == f"/api/v1{CHANNEL}"
        channel = answer.data
        assert channel["partner"] == P and channel["token"] == T
        assert channel["status"] == "open" and channel["settle_window"] == 7200
        assert channel["our_deposit"] == "100" and channel["spendable"] == "100"
        assert (await api.get(CHANNEL, expect=200)).data == channel
        listed = (await api.get(f"/channels?token={T}", expect=200)).data["channels"]
        assert listed == [channel]
        other = checksum_address(OTHER_TOKEN)
        assert (await api.get(f"/channels?token={other}", expect=200)).data["channels"] == []

    run(body)


def test_open__refusals_change_nothing() -> None:
    async def body(api: CheckedClient, node: MemoryNodeService) -> None:
        base = {"token": T, "partner": P}
        too_much = str(node.chain_balance[TOKEN] + 1)
        answer = await api.post("/channels", {**base, "deposit": too_much}, expect=409)
        assert answer.code == "insufficient_funds"
        unknown = checksum_address(FAR_TARGET)
        answer = await api.post("/channels", {**base, "token": unknown, "deposit": "1"}, expect=404)
        assert answer.code == "not_found"
        answer = await api.post(
            "/channels", {**base, "deposit": "1", "settle_window": 5}, expect=400
        )
        assert "settle_window" in answer.data["error"]["message"]
        await api.post("/channels", {**base, "partner": T, "deposit": "1"}, expect=400)
        node.chain_reachable = False
        answer = await api.post("/channels", {**base, "deposit": "1"}, expect=503)
        assert answer.code == "chain_unavailable"
        node.chain_reachable = True
        node.fail_next_transaction = "token_network: out of gas"
        answer = await api.post("/channels", {**base, "deposit": "1"}, expect=502)
        assert answer.code == "transaction_failed"
        assert "out of gas" in answer.data["error"]["message"]
        assert (await api.get("/channels", expect=200)).data["channels"] == []
        await api.get(CHANNEL, expect=404)
        await open_channel(api)

    run(body)


def test_deposit_and_withdraw__total_amount_semantics() -> None:
    async def body(api: CheckedClient, node: MemoryNodeService) -> None:
        await open_channel(api, 100)
        chain_before = node.chain_balance[TOKEN]
        raised = await api.post(f"{CHANNEL}/deposit", {"total_deposit": "150"}, expect=200)
        assert raised.data["our_deposit"] == "150"
        assert node.chain_balance[TOKEN] == chain_before - 50
        same = await api.post(f"{CHANNEL}/deposit", {"total_deposit": "150"}, expect=200)
        assert same.data == raised.data and node.chain_balance[TOKEN] == chain_before - 50
        lower = await api.post(f"{CHANNEL}/deposit", {"total_deposit": "149"}, expect=409)
        assert lower.code == "conflict"
        drawn = await api.post(f"{CHANNEL}/withdraw", {"total_withdraw": "30"}, expect=200)
        assert drawn.data["our_withdrawn"] == "30" and drawn.data["our_balance"] == "120"
        over = await api.post(f"{CHANNEL}/withdraw", {"total_withdraw": "151"}, expect=409)
        assert over.code == "insufficient_funds"
        missing = f"/channels/{T}/{checksum_address(MEDIATOR)}/deposit"
        assert (await api.post(missing, {"total_deposit": "1"}, expect=404)).code == "not_found"

    run(body)


def test_close_and_settle__unilateral_then_after_the_window() -> None:
    async def body(api: CheckedClient, node: MemoryNodeService) -> None:
        await open_channel(api, 100)
        closed = (await api.post(f"{CHANNEL}/close", expect=200)).data
        assert closed["status"] == "closed"
        assert closed["settle_deadline"] >= int(node.now()) + 3600 - 1
        early = await api.post(f"{CHANNEL}/settle", expect=409)
        assert "settle window" in early.data["error"]["message"]
        node.advance(3601)
        assert (await api.get(CHANNEL, expect=200)).data["status"] == "settleable"
        settled = (await api.post(f"{CHANNEL}/settle", {}, expect=200)).data
        assert settled["status"] == "settled"
        # A settled channel can be opened again: a new generation.
        again = await open_channel(api, 5)
        assert again["generation"] == 2 and again["channel_id"] != closed["channel_id"]

    run(body)


def test_close__cooperative_settles_at_once() -> None:
    async def body(api: CheckedClient, node: MemoryNodeService) -> None:
        await open_channel(api, 100)
        before = node.chain_balance[TOKEN]
        closed = await api.post(f"{CHANNEL}/close", {"cooperative": True}, expect=200)
        assert closed.data["status"] == "settled"
        assert node.chain_balance[TOKEN] == before + 100

    run(body)


def test_chain_operations__wait_for_confirmation() -> None:
    async def body(api: CheckedClient, node: MemoryNodeService) -> None:
        await open_channel(api, 100)
        node.hold_chain()
        request = asyncio.create_task(
            api.post(f"{CHANNEL}/deposit", {"total_deposit": "120"}, expect=200)
        )
        while node.chain_waiters == 0:
            await asyncio.sleep(0.01)
        assert not request.done()
        assert (await api.get(CHANNEL, expect=200)).data["our_deposit"] == "100"
        node.release_chain()
        assert (await request).data["our_deposit"] == "120"

    run(body)


# Payments.


def test_pay__answers_202_at_once_then_the_payment_finishes() -> None:
    async def body(api: CheckedClient, node: MemoryNodeService) -> None:
        await open_channel(api, 100)
        answer = await api.post("/payments", {"token": T, "target": P, "amount": "7"}, expect=202)
        payment = answer.data
        assert payment["status"] == "pending" and payment["finished_at"] is None
        path = f"/payments/{payment['payment_id']}"
        assert answer.headers["Location"] == f"/api/v1{path}?direction=sent"
        assert (await api.get(path, expect=200)).data == payment
        assert (await api.get(CHANNEL, expect=200)).data["our_locked"] == "7"
        pending = (await api.get("/pending", expect=200)).data["pending"]
        assert [p["payment_id"] for p in pending] == [payment["payment_id"]]
        assert pending[0]["role"] == "initiator" and pending[0]["partner"] == P
        timeout = await api.get(f"{path}/wait?timeout=0", expect=504)
        assert timeout.code == "timeout"
        waiting = asyncio.create_task(api.get(f"{path}/wait?timeout=60", expect=200))
        await asyncio.sleep(0)
        node.finish_payment(int(payment["payment_id"]))
        done = (await waiting).data
        assert done["status"] == "succeeded" and done["finished_at"] is not None
        assert (await api.get("/pending", expect=200)).data["pending"] == []
        channel = (await api.get(CHANNEL, expect=200)).data
        assert channel["our_balance"] == "93" and channel["partner_balance"] == "7"

    run(body, memory_service(payment_delay=None))


def test_pay__wait_answers_200_when_finished_and_202_when_the_wait_runs_out() -> None:
    async def body(api: CheckedClient, node: MemoryNodeService) -> None:
        await open_channel(api, 100)
        order = {"token": T, "target": P, "amount": "5", "wait": 0}
        still = await api.post("/payments", order, expect=202)
        assert still.data["status"] == "pending"
        node.payment_delay = 0.0
        done = await api.post("/payments", {**order, "wait": 60}, expect=200)
        assert done.data["status"] == "succeeded"
        assert done.headers["Location"].endswith(f"/{done.data['payment_id']}?direction=sent")

    run(body, memory_service(payment_delay=None))


def test_pay__direct_is_final_at_once() -> None:
    async def body(api: CheckedClient, node: MemoryNodeService) -> None:
        await open_channel(api, 100)
        order = {"token": T, "target": P, "amount": "5", "direct": True}
        answer = await api.post("/payments", order, expect=200)
        assert answer.data["status"] == "succeeded" and answer.data["fee"] == "0"
        far = {**order, "target": checksum_address(FAR_TARGET)}
        assert (await api.post("/payments", far, expect=409)).code == "no_route"
        broke = {**order, "amount": "1000"}
        assert (await api.post("/payments", broke, expect=409)).code == "insufficient_funds"
        secret = {**order, "secret": "0x" + "11" * 32}
        await api.post("/payments", secret, expect=400)

    run(body)


def test_pay__mediated_route_fee_and_fee_budget() -> None:
    async def body(api: CheckedClient, node: MemoryNodeService) -> None:
        mediator = checksum_address(MEDIATOR)
        await api.post("/channels", {"token": T, "partner": mediator, "deposit": "50"}, expect=201)
        node.add_route(TOKEN, FAR_TARGET, via=MEDIATOR, fee=3)
        order = {"token": T, "target": checksum_address(FAR_TARGET), "amount": "10"}
        refused = await api.post("/payments", {**order, "max_fee": "2"}, expect=409)
        assert refused.code == "no_route"
        paid = await api.post("/payments", {**order, "max_fee": "3", "wait": 60}, expect=200)
        assert paid.data["fee"] == "3" and paid.data["partner"] == order["target"]
        channel = (await api.get(f"/channels/{T}/{mediator}", expect=200)).data
        assert channel["our_balance"] == "37"

    run(body)


def test_pay__payer_secret_ids_and_conflicts() -> None:
    async def body(api: CheckedClient, node: MemoryNodeService) -> None:
        await open_channel(api, 100)
        big_id = str(2**64 - 5)  # beyond 2**53: exact only as a string
        order = {
            "token": T,
            "target": P,
            "amount": "1",
            "payment_id": big_id,
            "secret": "0x" + "ab" * 32,
        }
        answer = await api.post("/payments", order, expect=202)
        assert answer.data["payment_id"] == big_id
        assert answer.data["secrethash"] == (
            "0x" + __import__("hashlib").sha256(bytes([0xAB]) * 32).hexdigest()
        )
        taken = await api.post("/payments", {**order, "secret": "0x" + "cd" * 32}, expect=409)
        assert taken.code == "conflict"
        mismatch = {**order, "payment_id": "1", "secrethash": "0x" + "00" * 32}
        assert (await api.post("/payments", mismatch, expect=400)).code == "invalid_argument"
        zero = {"token": T, "target": P, "amount": "0"}
        await api.post("/payments", zero, expect=400)
        await api.post(
            "/payments", {**zero, "amount": "1", "target": checksum_address(NODE)}, expect=400
        )

    run(body, memory_service(payment_delay=None))


def test_payments__filters_limit_and_offset() -> None:
    async def body(api: CheckedClient, node: MemoryNodeService) -> None:
        await open_channel(api, 100)
        node.partner_deposit(TOKEN, PARTNER, 40)
        sent = []
        for amount in ("1", "2", "3"):
            answer = await api.post(
                "/payments",
                {"token": T, "target": P, "amount": amount, "direct": True},
                expect=200,
            )
            sent.append(answer.data["payment_id"])
        received = node.receive(TOKEN, PARTNER, 4)

        async def ids(query: str) -> list[str]:
            answer = await api.get(f"/payments{query}", expect=200)
            return [p["payment_id"] for p in answer.data["payments"]]

        everything = await ids("")
        assert everything == [str(received.payment_id), *reversed(sent)]
        assert await ids("?direction=received") == [str(received.payment_id)]
        assert await ids("?direction=sent&limit=2") == [sent[2], sent[1]]
        assert await ids("?direction=sent&limit=2&offset=2") == [sent[0]]
        assert await ids("?status=pending") == []
        assert await ids(f"?partner={P}&token={T}") == everything
        assert await ids(f"?token={checksum_address(OTHER_TOKEN)}") == []
        got = (await api.get(f"/payments/{received.payment_id}", expect=200)).data
        assert got["direction"] == "received" and got["amount"] == "4" and got["fee"] == "0"

    run(body)


def test_payment__one_id_sent_and_received__ambiguous_until_named() -> None:
    # Payment ids are chosen by each payer: the partner (then a customer paying through
    # it) used the id of a payment we sent. A lookup by id alone that names several
    # payments is a 409 `ambiguous`, never a guess; `direction`, `payer` and `partner`
    # pick one, and the URL of our payment names its direction from the start.
    far = checksum_address(FAR_TARGET)

    async def body(api: CheckedClient, node: MemoryNodeService) -> None:
        await open_channel(api, 100)
        node.partner_deposit(TOKEN, PARTNER, 50)
        order = {"token": T, "target": P, "amount": "5", "direct": True, "payment_id": "42"}
        sent = await api.post("/payments", order, expect=200)
        ours = sent.headers["Location"].removeprefix("/api/v1")
        assert (await api.get("/payments/42", expect=200)).data == sent.data  # one: found
        node.receive(TOKEN, PARTNER, 4, payment_id=42)
        both = await api.get("/payments/42", expect=409)
        assert both.code == "ambiguous" and "direction=sent or direction=received" in (both.message)
        assert (await api.get("/payments/42/wait?timeout=0", expect=409)).code == "ambiguous"
        assert (await api.get(ours, expect=200)).data == sent.data
        received = (await api.get("/payments/42?direction=received", expect=200)).data
        assert (received["direction"], received["amount"], received["payer"]) == (
            "received",
            "4",
            P,
        )
        assert (await api.get(f"/payments/42?payer={P}", expect=200)).data == received
        waited = await api.get("/payments/42/wait?timeout=0&direction=received", expect=200)
        assert waited.data == received  # a received payment is finished at once

        node.receive(TOKEN, PARTNER, 3, payment_id=42, payer=FAR_TARGET)  # through P
        many = await api.get("/payments/42?direction=received", expect=409)
        assert many.code == "ambiguous" and "payer=" in many.message
        await api.get(f"/payments/42?direction=received&partner={P}", expect=409)
        theirs = (await api.get(f"/payments/42?payer={far}", expect=200)).data
        assert (theirs["amount"], theirs["partner"], theirs["payer"]) == ("3", P, far)
        missing = await api.get(f"/payments/42?payer={checksum_address(MEDIATOR)}", expect=404)
        assert missing.code == "not_found" and "payer=0x" in missing.message
        assert (await api.get(f"/payments/42?direction=sent&partner={P}", expect=200)).data == (
            sent.data
        )
        listed = (await api.get("/payments?direction=received", expect=200)).data["payments"]
        assert sorted(p["amount"] for p in listed if p["payment_id"] == "42") == ["3", "4"]

    run(body)


def test_events__since_limit_and_next_since() -> None:
    async def body(api: CheckedClient, node: MemoryNodeService) -> None:
        first = (await api.get("/events", expect=200)).data
        assert first == {"events": [], "next_since": 0}
        await open_channel(api, 100)
        await api.post(f"{CHANNEL}/deposit", {"total_deposit": "120"}, expect=200)
        await api.post(f"{CHANNEL}/close", expect=200)
        page = (await api.get("/events?limit=2", expect=200)).data
        assert [e["kind"] for e in page["events"]] == ["channel_opened", "channel_deposit"]
        assert page["next_since"] == page["events"][-1]["seq"]
        rest = (await api.get(f"/events?since={page['next_since']}", expect=200)).data
        assert [e["kind"] for e in rest["events"]] == ["channel_closed"]
        tail = (await api.get(f"/events?since={rest['next_since']}", expect=200)).data
        assert tail == {"events": [], "next_since": rest["next_since"]}

    run(body)


# Failures of our own, bodies, auth.


class _Broken(MemoryNodeService):
    def status(self) -> NodeStatus:
        raise RuntimeError("a bug with a secret in its message")


def test_unexpected_exception__is_500_internal_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def body(api: CheckedClient, node: MemoryNodeService) -> None:
        with caplog.at_level(logging.ERROR, logger="offchain.api"):
            answer = await api.get("/status", expect=500)
        assert answer.code == "internal"
        assert "secret" not in answer.data["error"]["message"]
        assert any(r.exc_info and "GET /api/v1/status" in r.getMessage() for r in caplog.records)
        await api.get("/tokens", expect=200)  # the server goes on

    run(body, _Broken(NODE, memory_service().tokens()))


def test_body__chunked_over_the_limit_is_413() -> None:
    async def body(api: CheckedClient, node: MemoryNodeService) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"token": "'
            for _ in range(80):
                yield b"x" * 1024
            yield b'"}'

        async with api.session.post(
            api.base_url + "/api/v1/channels",
            data=chunks(),
            headers={"Content-Type": "application/json"},
        ) as response:
            payload = await response.read()
            status, headers = response.status, dict(response.headers)
        data = api.checker.check("POST", "/api/v1/channels", status, headers, payload)
        assert status == 413 and data["error"]["code"] == "payload_too_large"
        await api.post(f"{CHANNEL}/settle", raw=b"   ", content_type="text/plain", expect=404)

    run(body)


def test_auth__token_required_on_every_request() -> None:
    async def body(api: CheckedClient, node: MemoryNodeService) -> None:
        for path in ("/status", "/openapi.json", "/nothing-here"):
            answer = await api.get(path, auth=False, expect=401)
            assert answer.code == "unauthorized"
            assert answer.headers["WWW-Authenticate"] == "Bearer"
        for header in ("Bearer wrong", "Basic c2VjcmV0", "Bearer", "s3cret-token-value"):
            await api.get("/status", auth=False, headers={"Authorization": header}, expect=401)
        await api.get(
            "/status",
            auth=False,
            headers={"Authorization": "bearer s3cret-token-value"},
            expect=200,
        )
        await api.get("/status", expect=200)
        # With a token, any Host name is fine (the token is the guard).
        await api.get("/status", headers={"Host": "node.example"}, expect=200)

    run(body, token="s3cret-token-value")


def test_host_guard__without_a_token_only_loopback_names() -> None:
    async def body(api: CheckedClient, node: MemoryNodeService) -> None:
        for host in ("attacker.example", "attacker.example:5001", "10.1.2.3", "[fe80::1]:80"):
            answer = await api.get("/status", headers={"Host": host}, expect=401)
            assert "loopback" in answer.data["error"]["message"]
        for host in ("localhost:5001", "127.0.0.1", "127.0.0.1:80", "[::1]:5001", "LOCALHOST"):
            await api.get("/status", headers={"Host": host}, expect=200)

    run(body)


@pytest.mark.parametrize("token", ["", "two words", "naïve", "tab\there"])
def test_make_app__refuses_unusable_tokens(token: str) -> None:
    with pytest.raises(ValueError):
        make_app(memory_service(), token=token)
