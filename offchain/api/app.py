"""The aiohttp application of the node's HTTP API: routes, handlers, guards.

Belongs here: ``make_app``, one thin handler per operation of the OpenAPI document (parse
the request with ``schemas``, call the ``NodeService``, answer with ``convert``), reading
a JSON body (size limit, content type, strict decoding), and the two guards every request
passes: the bearer token (constant-time compare) and, without a token, the Host header
check that keeps a web page from reaching the API through DNS rebinding.

Does not belong here: how the node does anything (the service), the encoding of values
(``convert``), the document (``openapi``), listening on a socket (``server``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from offchain.api import convert, openapi, schemas
from offchain.api.errors import (
    JSON_CONTENT_TYPE,
    MAX_BODY,
    Handler,
    error_middleware,
    invalid,
)
from offchain.node.service import (
    ErrorCode,
    NodeService,
    PaymentDirection,
    PaymentStatus,
    ServiceError,
)

log = logging.getLogger("offchain.api")

SERVICE: Final = web.AppKey("service", NodeService)
TOKEN_DIGEST: Final = web.AppKey("token_digest", bytes)

_LOCAL_HOST_NAMES: Final = frozenset({"localhost", "localhost."})


def _json(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(data, separators=(",", ":")),
        content_type=JSON_CONTENT_TYPE,
        headers=headers,
    )


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("a key appears twice in one object")
    return result


async def read_json(request: web.Request) -> object:
    """The request's JSON body, or ``None`` when it has none.

    Strict: UTF-8, ``application/json``, no duplicate keys, no NaN or Infinity, at most
    ``MAX_BODY`` bytes (aiohttp's ``client_max_size`` enforces it while reading, also for
    chunked bodies).
    """
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ServiceError(
            ErrorCode.PAYLOAD_TOO_LARGE, f"request body over the limit of {MAX_BODY} bytes"
        )
    try:
        raw = await request.read()
    except ConnectionResetError:  # the client left half-way: nobody reads the answer
        raise invalid("the connection was lost while reading the body") from None
    if not raw.strip():
        return None
    if request.content_type != JSON_CONTENT_TYPE:
        raise ServiceError(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"the body must be {JSON_CONTENT_TYPE}, not {request.content_type[:60]!r}",
        )
    if (request.charset or "utf-8").lower() != "utf-8":
        raise ServiceError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, "the body must be UTF-8")
    try:
        return json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant,
        )
    except UnicodeDecodeError:
        raise invalid("the body is not valid UTF-8") from None
    except RecursionError:
        raise invalid("the body nests too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError, our hooks, int digit limits
        raise invalid(f"malformed JSON: {str(exc)[:120]}") from None


def _service(request: web.Request) -> NodeService:
    return request.app[SERVICE]


def _channel_path(request: web.Request) -> tuple[bytes, bytes]:
    info = request.match_info
    return (
        schemas.parse_path("token", schemas.ADDRESS, info["token"]),
        schemas.parse_path("partner", schemas.ADDRESS, info["partner"]),
    )


def _payment_id(request: web.Request) -> int:
    return schemas.parse_path("payment_id", schemas.PAYMENT_ID, request.match_info["payment_id"])


def _no_query(request: web.Request) -> None:
    schemas.parse_query(schemas.NoQuery, request.query)


def channel_url(token: bytes, partner: bytes) -> str:
    return (
        f"{openapi.API_PREFIX}/channels/"
        f"{convert.checksum_address(token)}/{convert.checksum_address(partner)}"
    )


def payment_url(payment_id: int) -> str:
    """The URL of a payment we sent: it names the direction, so a payment received later
    under the same id (ids are unique per payer only) never makes it ambiguous."""
    return f"{openapi.API_PREFIX}/payments/{payment_id}?direction=sent"


# Handlers, in the order of the document.


async def get_openapi(request: web.Request) -> web.Response:
    _no_query(request)
    return web.Response(body=openapi.document_bytes(), content_type=JSON_CONTENT_TYPE)


async def get_status(request: web.Request) -> web.Response:
    _no_query(request)
    return _json(convert.status_json(_service(request).status()))


async def list_tokens(request: web.Request) -> web.Response:
    _no_query(request)
    tokens = _service(request).tokens()
    return _json({"tokens": [convert.token_json(t) for t in tokens]})


async def list_channels(request: web.Request) -> web.Response:
    query = schemas.parse_query(schemas.TokenQuery, request.query)
    channels = _service(request).channels(query.token)
    return _json({"channels": [convert.channel_json(c) for c in channels]})


async def open_channel(request: web.Request) -> web.Response:
    _no_query(request)
    body = schemas.parse_body(schemas.OpenChannelRequest, await read_json(request))
    if body.partner == body.token:
        raise invalid("partner: must not be the token's address")
    channel = await _service(request).open_channel(
        body.token, body.partner, body.deposit, body.settle_window
    )
    location = channel_url(channel.token, channel.partner)
    return _json(convert.channel_json(channel), 201, {"Location": location})


async def get_channel(request: web.Request) -> web.Response:
    _no_query(request)
    token, partner = _channel_path(request)
    return _json(convert.channel_json(_service(request).channel(token, partner)))


async def deposit(request: web.Request) -> web.Response:
    _no_query(request)
    token, partner = _channel_path(request)
    body = schemas.parse_body(schemas.DepositRequest, await read_json(request))
    channel = await _service(request).deposit(token, partner, body.total_deposit)
    return _json(convert.channel_json(channel))


async def withdraw(request: web.Request) -> web.Response:
    _no_query(request)
    token, partner = _channel_path(request)
    body = schemas.parse_body(schemas.WithdrawRequest, await read_json(request))
    channel = await _service(request).withdraw(token, partner, body.total_withdraw)
    return _json(convert.channel_json(channel))


async def close(request: web.Request) -> web.Response:
    _no_query(request)
    token, partner = _channel_path(request)
    body = schemas.parse_body(schemas.CloseRequest, await read_json(request))
    channel = await _service(request).close(token, partner, body.cooperative)
    return _json(convert.channel_json(channel))


async def settle(request: web.Request) -> web.Response:
    _no_query(request)
    token, partner = _channel_path(request)
    schemas.parse_body(schemas.SettleRequest, await read_json(request))
    channel = await _service(request).settle(token, partner)
    return _json(convert.channel_json(channel))


async def list_payments(request: web.Request) -> web.Response:
    query = schemas.parse_query(schemas.PaymentsQuery, request.query)
    payments = _service(request).payments(
        direction=query.direction,
        status=query.status,
        token=query.token,
        partner=query.partner,
        limit=query.limit,
        offset=query.offset,
    )
    return _json({"payments": [convert.payment_json(p) for p in payments]})


async def pay(request: web.Request) -> web.Response:
    _no_query(request)
    body = schemas.parse_body(schemas.PaymentRequest, await read_json(request))
    service = _service(request)
    payment = await service.pay(
        body.token,
        body.target,
        body.amount,
        max_fee=body.max_fee,
        payment_id=body.payment_id,
        secret=body.secret,
        secrethash=body.secrethash,
        direct=body.direct,
    )
    if body.wait is not None and payment.status is PaymentStatus.PENDING:
        # From here on the payment exists: answer with it whatever the wait gives, so a
        # client that retries on errors never starts a second payment by mistake.
        sent = PaymentDirection.SENT
        try:
            payment = await service.wait_payment(payment.payment_id, body.wait, direction=sent)
        except ServiceError as exc:
            if exc.code is not ErrorCode.TIMEOUT:
                log.warning("waiting for payment %d: %s", payment.payment_id, exc.message)
            try:
                payment = service.payment(payment.payment_id, direction=sent)
            except ServiceError:
                log.warning("payment %d vanished while waiting", payment.payment_id)
    status = 202 if payment.status is PaymentStatus.PENDING else 200
    headers = {"Location": payment_url(payment.payment_id)}
    return _json(convert.payment_json(payment), status, headers)


async def get_payment(request: web.Request) -> web.Response:
    query = schemas.parse_query(schemas.PaymentQuery, request.query)
    payment = _service(request).payment(
        _payment_id(request), direction=query.direction, payer=query.payer, partner=query.partner
    )
    return _json(convert.payment_json(payment))


async def wait_payment(request: web.Request) -> web.Response:
    query = schemas.parse_query(schemas.WaitQuery, request.query)
    payment = await _service(request).wait_payment(
        _payment_id(request),
        query.timeout,
        direction=query.direction,
        payer=query.payer,
        partner=query.partner,
    )
    return _json(convert.payment_json(payment))


async def list_pending(request: web.Request) -> web.Response:
    query = schemas.parse_query(schemas.TokenQuery, request.query)
    pending = _service(request).pending_transfers(query.token)
    return _json({"pending": [convert.pending_json(p) for p in pending]})


async def list_deadlines(request: web.Request) -> web.Response:
    _no_query(request)
    deadlines = _service(request).deadlines()
    return _json({"deadlines": [convert.deadline_json(d) for d in deadlines]})


async def list_events(request: web.Request) -> web.Response:
    query = schemas.parse_query(schemas.EventsQuery, request.query)
    events = _service(request).events(since=query.since, limit=query.limit)
    next_since = events[-1].seq if events else query.since
    return _json({"events": [convert.event_json(e) for e in events], "next_since": next_since})


ROUTES: Final[tuple[tuple[str, str, Callable[[web.Request], Awaitable[web.Response]]], ...]] = (
    ("GET", openapi.DOCUMENT_PATH, get_openapi),
    ("GET", "/status", get_status),
    ("GET", "/tokens", list_tokens),
    ("GET", "/channels", list_channels),
    ("POST", "/channels", open_channel),
    ("GET", "/channels/{token}/{partner}", get_channel),
    ("POST", "/channels/{token}/{partner}/deposit", deposit),
    ("POST", "/channels/{token}/{partner}/withdraw", withdraw),
    ("POST", "/channels/{token}/{partner}/close", close),
    ("POST", "/channels/{token}/{partner}/settle", settle),
    ("GET", "/payments", list_payments),
    ("POST", "/payments", pay),
    ("GET", "/payments/{payment_id}", get_payment),
    ("GET", "/payments/{payment_id}/wait", wait_payment),
    ("GET", "/pending", list_pending),
    ("GET", "/deadlines", list_deadlines),
    ("GET", "/events", list_events),
)
"""Every operation: method, path under ``/api/v1`` (as in the document), handler."""


def _is_local_host(host: str) -> bool:
    """Whether a Host header names this machine by a loopback name or address."""
    if host.startswith("["):  # [::1]:5001
        name = host[1 : host.find("]")] if "]" in host else host
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name.lower() in _LOCAL_HOST_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _bearer(request: web.Request) -> bytes | None:
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer" or not credentials:
        return None
    return credentials.strip().encode("utf-8", "surrogateescape")


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request: the bearer token when one is set, a local Host name otherwise."""
    token_digest = request.app[TOKEN_DIGEST]
    host = request.headers.get("Host")
    if token_digest:
        given = _bearer(request)
        # Compare digests: compare_digest's time does not depend on where the first
        # difference is, and equal lengths keep the token's length from showing either.
        if given is None or not hmac.compare_digest(hashlib.sha256(given).digest(), token_digest):
            raise ServiceError(ErrorCode.UNAUTHORIZED, "missing or wrong bearer token")
    elif host is not None and not _is_local_host(host):
        # Without a token the API only listens on loopback; a browser that reached it
        # through a rebound DNS name still sends that name, and is turned away. (A request
        # without Host is no browser's: browsers always send one.)
        raise ServiceError(
            ErrorCode.UNAUTHORIZED,
            "requests without an API token must name a loopback host (localhost, 127.0.0.1)",
        )
    return await handler(request)


def make_app(service: NodeService, *, token: str | None) -> web.Application:
    """The API application over ``service``; with ``token``, every request must carry it.

    ``token`` must be printable ASCII without spaces (it travels in an HTTP header).
    """
    if token is not None and (not token or not token.isascii() or not token.isprintable()):
        raise ValueError("the API token must be non-empty printable ASCII")
    if token is not None and " " in token:
        raise ValueError("the API token must not contain spaces")
    app = web.Application(
        middlewares=[error_middleware, guard_middleware], client_max_size=MAX_BODY
    )
    app[SERVICE] = service
    app[TOKEN_DIGEST] = hashlib.sha256(token.encode("ascii")).digest() if token else b""
    for method, path, handler in ROUTES:
        app.router.add_route(method, openapi.API_PREFIX + path, handler)
    return app
