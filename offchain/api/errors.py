"""How the HTTP API reports failures: one JSON shape, one status per error code.

Belongs here: the map from ``ErrorCode`` to HTTP status, the error body
``{"error": {"code": ..., "message": ...}}``, and the middleware that turns whatever a
handler raises (a ``ServiceError`` from the node or from our own input checks, an aiohttp
HTTP exception such as an unknown path, or an unexpected exception) into that shape. An
unexpected exception is our bug: it is logged with its traceback and answered 500
``internal`` without details, so nothing of the node's insides leaks to a caller.

Does not belong here: deciding what is invalid (``schemas``, ``convert``), authentication
(``app``), or the node's own error taxonomy (``offchain.node.service``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from offchain.node.service import ErrorCode, ServiceError

log = logging.getLogger("offchain.api")

HTTP_STATUS: Final[dict[ErrorCode, int]] = {
    ErrorCode.INVALID_ARGUMENT: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.CONFLICT: 409,
    ErrorCode.AMBIGUOUS: 409,
    ErrorCode.INSUFFICIENT_FUNDS: 409,
    ErrorCode.NO_ROUTE: 409,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.INTERNAL: 500,
    ErrorCode.TRANSACTION_FAILED: 502,
    ErrorCode.CHAIN_UNAVAILABLE: 503,
    ErrorCode.TIMEOUT: 504,
}
"""The HTTP status of each error code; every code has one (a test checks)."""

_FROM_HTTP: Final[dict[int, ErrorCode]] = {
    400: ErrorCode.INVALID_ARGUMENT,
    401: ErrorCode.UNAUTHORIZED,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
}
"""aiohttp's own refusals (router, body reader) and the code we answer them with."""

JSON_CONTENT_TYPE: Final = "application/json"

MAX_BODY: Final = 64 * 1024
"""Largest request body accepted; every request of the API fits in a few hundred bytes."""


def invalid(message: str) -> ServiceError:
    """The error for a malformed or out-of-range request value (400 ``invalid_argument``)."""
    return ServiceError(ErrorCode.INVALID_ARGUMENT, message)


def error_body(code: ErrorCode, message: str) -> dict[str, object]:
    return {"error": {"code": code.value, "message": message}}


def error_response(
    code: ErrorCode, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=HTTP_STATUS[code],
        text=json.dumps(error_body(code, message)),
        content_type=JSON_CONTENT_TYPE,
        headers=headers,
    )


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    code = _FROM_HTTP.get(exc.status)
    if code is None:
        # Another aiohttp refusal (e.g. 431 headers too large): keep its status, say why.
        log.warning("aiohttp answered %s %s with %d", request.method, request.path, exc.status)
        code = ErrorCode.INVALID_ARGUMENT if exc.status < 500 else ErrorCode.INTERNAL
    if code is ErrorCode.NOT_FOUND:
        message = f"no such endpoint: {request.method} {request.path}"
    elif code is ErrorCode.METHOD_NOT_ALLOWED:
        message = f"{request.method} is not allowed on {request.path}"
    elif code is ErrorCode.PAYLOAD_TOO_LARGE:
        message = f"request body over the limit of {MAX_BODY} bytes"
    else:
        message = exc.reason
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    return error_response(code, message, headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every failure as the JSON error shape; never let a traceback out."""
    try:
        return await handler(request)
    except ServiceError as exc:
        headers = {"WWW-Authenticate": "Bearer"} if exc.code is ErrorCode.UNAUTHORIZED else None
        return error_response(exc.code, exc.message, headers)
    except web.HTTPException as exc:
        if exc.status < 400:  # a redirect or a success raised as an exception: not an error
            raise
        return _from_http_exception(request, exc)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(
            ErrorCode.INTERNAL, "internal error in the node's API; the node log has the details"
        )
