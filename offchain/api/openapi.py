"""The OpenAPI 3.1 document of the node's HTTP API, built once as a plain dict.

Belongs here: paths, operations, parameters, request bodies and responses, with every
schema taken from ``schemas`` (so the document describes the checks the server runs), and
the security scheme. ``app`` serves it at ``GET /api/v1/openapi.json``; tests validate the
document itself and every response they see against it, and check that its operations are
exactly the server's routes.

Does not belong here: the schemas themselves (``schemas``), handlers (``app``).
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any, Final

from offchain.api import schemas
from offchain.api.errors import HTTP_STATUS
from offchain.node.service import ErrorCode

API_PREFIX: Final = "/api/v1"
DOCUMENT_PATH: Final = "/openapi.json"
API_VERSION: Final = "1.0.0"

_REASONS: Final = {
    400: "Malformed or out-of-range input (`invalid_argument`).",
    401: "Missing or wrong bearer token (`unauthorized`).",
    404: "No such channel, payment or token (`not_found`).",
    405: "Method not allowed on this path (`method_not_allowed`).",
    409: "The state does not allow it (`conflict`, `insufficient_funds`, `no_route`), or a "
    "payment id names several payments (`ambiguous`).",
    413: "Request body over 64 KiB (`payload_too_large`).",
    415: "A body that is not `application/json` (`unsupported_media_type`).",
    500: "Our bug (`internal`); the node log has the details.",
    502: "A transaction reverted or was dropped (`transaction_failed`).",
    503: "The chain's RPC endpoint does not answer (`chain_unavailable`).",
    504: "A wait ran out; the operation goes on (`timeout`).",
}

_ALWAYS: Final = (400, 401, 405, 500)
_WITH_BODY: Final = (413, 415)
_CHAIN: Final = (409, 502, 503, 504)


def _error(status: int) -> dict[str, object]:
    response: dict[str, object] = {
        "description": _REASONS[status],
        "content": {"application/json": {"schema": schemas.ref("Error")}},
    }
    if status == 401:
        response["headers"] = {
            "WWW-Authenticate": {"schema": {"type": "string"}, "description": "`Bearer`."}
        }
    if status == 405:
        response["headers"] = {
            "Allow": {"schema": {"type": "string"}, "description": "The allowed methods."}
        }
    return response


def _ok(description: str, schema_name: str, location: str | None = None) -> dict[str, object]:
    response: dict[str, object] = {
        "description": description,
        "content": {"application/json": {"schema": schemas.ref(schema_name)}},
    }
    if location is not None:
        response["headers"] = {
            "Location": {"required": True, "schema": {"type": "string"}, "description": location}
        }
    return response


def _operation(
    operation_id: str,
    summary: str,
    ok: dict[str, dict[str, object]],
    *,
    errors: tuple[int, ...] = (),
    query: type[Any] = schemas.NoQuery,
    body: type[Any] | None = None,
    body_required: bool = True,
    description: str | None = None,
    tag: str,
) -> dict[str, object]:
    statuses = set(_ALWAYS) | set(errors) | (set(_WITH_BODY) if body is not None else set())
    operation: dict[str, object] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        "responses": {
            **ok,
            **{str(s): _error(s) for s in sorted(statuses)},
            # Any other code the node may raise keeps the same error shape.
            "default": {
                "description": "Any other error.",
                "content": {"application/json": {"schema": schemas.ref("Error")}},
            },
        },
    }
    if description is not None:
        operation["description"] = description
    parameters = schemas.query_parameters(query)
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {
            "required": body_required,
            "content": {"application/json": {"schema": schemas.ref(body.__name__)}},
        }
    return operation


def _path_parameter(name: str, schema_name: str, description: str) -> dict[str, object]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schemas.ref(schema_name),
    }


_CHANNEL_PARAMETERS: Final = [
    _path_parameter("token", "Address", "The token's address."),
    _path_parameter("partner", "Address", "The partner's address."),
]
_PAYMENT_PARAMETERS: Final = [_path_parameter("payment_id", "PaymentId", "The payment's id.")]
_SENT_URL: Final = (
    "The payment's URL: `/api/v1/payments/{payment_id}?direction=sent` (it stays ours if a "
    "payment received later has the same id)."
)
_ONE_PAYMENT: Final = (
    "Payment ids are chosen by each payer, unique per payer only: one id may name the "
    "payment we sent and payments we received. An id that names one payment finds it; one "
    "that names several answers `409 ambiguous` (saying which are there) until `direction`, "
    "and for received ones `payer` or `partner`, pick one."
)


def _channel_action(
    operation_id: str, summary: str, body: type[Any], body_required: bool, description: str
) -> dict[str, object]:
    return {
        "parameters": _CHANNEL_PARAMETERS,
        "post": _operation(
            operation_id,
            summary,
            {"200": _ok("The channel once the transaction is confirmed.", "Channel")},
            errors=(404, *_CHAIN),
            body=body,
            body_required=body_required,
            description=description,
            tag="channels",
        ),
    }


def _paths() -> dict[str, object]:
    return {
        DOCUMENT_PATH: {
            "get": _operation(
                "getOpenApi",
                "This document",
                {
                    "200": {
                        "description": "The OpenAPI 3.1 document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
                tag="node",
            )
        },
        "/status": {
            "get": _operation(
                "getStatus", "The node's health", {"200": _ok("Status.", "Status")}, tag="node"
            )
        },
        "/tokens": {
            "get": _operation(
                "listTokens",
                "Tokens the node follows",
                {"200": _ok("Tokens.", "TokenList")},
                tag="node",
            )
        },
        "/channels": {
            "get": _operation(
                "listChannels",
                "Our channels",
                {"200": _ok("Channels.", "ChannelList")},
                query=schemas.TokenQuery,
                tag="channels",
            ),
            "post": _operation(
                "openChannel",
                "Open a channel and make the first deposit",
                {
                    "201": _ok(
                        "The channel once the open (and deposit) transactions are confirmed.",
                        "Channel",
                        "The channel's URL: `/api/v1/channels/{token}/{partner}`.",
                    )
                },
                errors=(404, *_CHAIN),
                body=schemas.OpenChannelRequest,
                description="Returns once the transactions are confirmed; this can take "
                "minutes. `409 conflict` when a channel with the partner is open already.",
                tag="channels",
            ),
        },
        "/channels/{token}/{partner}": {
            "parameters": _CHANNEL_PARAMETERS,
            "get": _operation(
                "getChannel",
                "One channel",
                {"200": _ok("The newest channel with the partner in the token.", "Channel")},
                errors=(404,),
                tag="channels",
            ),
        },
        "/channels/{token}/{partner}/deposit": _channel_action(
            "deposit",
            "Raise our total deposit",
            schemas.DepositRequest,
            True,
            "Total-amount semantics: asking for the current total again changes nothing.",
        ),
        "/channels/{token}/{partner}/withdraw": _channel_action(
            "withdraw",
            "Raise our total withdrawn amount",
            schemas.WithdrawRequest,
            True,
            "Withdraws with the partner's signature; total-amount semantics.",
        ),
        "/channels/{token}/{partner}/close": _channel_action(
            "close",
            "Close the channel",
            schemas.CloseRequest,
            False,
            "Unilateral by default (then settle after the settle window); `cooperative` "
            "settles at once with the partner's signature, or fails at once with `409 "
            "conflict` and the partner's reason when it will not sign (the channel stays "
            "open).",
        ),
        "/channels/{token}/{partner}/settle": _channel_action(
            "settle",
            "Settle a closed channel",
            schemas.SettleRequest,
            False,
            "`409 conflict` while the settle window runs.",
        ),
        "/payments": {
            "get": _operation(
                "listPayments",
                "Payments sent and received",
                {"200": _ok("Payments, newest first.", "PaymentList")},
                query=schemas.PaymentsQuery,
                tag="payments",
            ),
            "post": _operation(
                "pay",
                "Start a payment",
                {
                    "200": _ok(
                        "The payment, finished (`succeeded` or `failed`).",
                        "Payment",
                        _SENT_URL,
                    ),
                    "202": _ok(
                        "The payment, still pending: at once without `wait`, or when "
                        "`wait` ran out.",
                        "Payment",
                        _SENT_URL,
                    ),
                },
                errors=(404, 409, 503),
                body=schemas.PaymentRequest,
                description="Once a payment has started, the answer is never an error: a "
                "client that retries on an error cannot pay twice by mistake.",
                tag="payments",
            ),
        },
        "/payments/{payment_id}": {
            "parameters": _PAYMENT_PARAMETERS,
            "get": _operation(
                "getPayment",
                "One payment",
                {"200": _ok("The payment.", "Payment")},
                errors=(404, 409),
                query=schemas.PaymentQuery,
                description=_ONE_PAYMENT,
                tag="payments",
            ),
        },
        "/payments/{payment_id}/wait": {
            "parameters": _PAYMENT_PARAMETERS,
            "get": _operation(
                "waitPayment",
                "Wait for a payment to finish",
                {"200": _ok("The finished payment.", "Payment")},
                errors=(404, 409, 504),
                query=schemas.WaitQuery,
                description=_ONE_PAYMENT + " A received payment is finished at once.",
                tag="payments",
            ),
        },
        "/pending": {
            "get": _operation(
                "listPending",
                "Locks pending in our channels",
                {"200": _ok("Pending transfers.", "PendingList")},
                query=schemas.TokenQuery,
                tag="payments",
            )
        },
        "/deadlines": {
            "get": _operation(
                "listDeadlines",
                "What the node must get on chain, and by when",
                {"200": _ok("Deadlines, earliest first (none last).", "DeadlineList")},
                description="The offline safety window (docs/offline.md): per channel whose "
                "partner's proof holds value, the update horizon (computed from now while the "
                "chain is seen); per lock whose secret we know and that is not unlocked, its "
                "registration deadline; every transaction not confirmed yet. Each names who "
                "covers it.",
                tag="node",
            )
        },
        "/events": {
            "get": _operation(
                "listEvents",
                "The node's event log",
                {"200": _ok("Events after `since`.", "EventList")},
                query=schemas.EventsQuery,
                tag="node",
            )
        },
    }


@functools.cache
def _document() -> dict[str, Any]:
    # Every status the document names must be one the error codes can produce.
    assert set(_REASONS) == set(HTTP_STATUS.values()), "a status without an error code"
    codes = ", ".join(f"`{c.value}` ({HTTP_STATUS[c]})" for c in ErrorCode)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "SmartMesh node API",
            "version": API_VERSION,
            "description": "Control one SmartMesh payment node: channels, payments, events.\n\n"
            "Addresses are 0x hex (EIP-55 checksummed in answers), amounts and payment ids "
            "decimal strings, times Unix seconds. Every error is "
            '`{"error": {"code": ..., "message": ...}}` with the code one of ' + codes + ".",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "servers": [{"url": API_PREFIX}],
        "security": [{}, {"bearer": []}],
        "tags": [
            {"name": "node", "description": "Health, tokens, events."},
            {"name": "channels", "description": "Open, fund, withdraw, close, settle."},
            {"name": "payments", "description": "Pay, follow payments, pending locks."},
        ],
        "paths": _paths(),
        "components": {
            "schemas": schemas.components(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Needed on every request when the node has an API token "
                    "(always, when it listens on an address other than loopback).",
                }
            },
        },
    }


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the document (callers may change theirs)."""
    return copy.deepcopy(_document())


def document_bytes() -> bytes:
    """The document as served, encoded once."""
    return _encoded()


@functools.cache
def _encoded() -> bytes:
    return json.dumps(_document(), indent=1).encode()
