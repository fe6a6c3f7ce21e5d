"""What each request may carry and what each response holds, as one source for both the
input checks and the OpenAPI document.

Belongs here: the value kinds of the API (address, amount, payment id, ...), each with its
JSON Schema and its parsers from JSON and from query or path text; the request bodies and
query strings as frozen dataclasses whose fields name their kind, so that ``parse_body``
and ``parse_query`` check a request and ``request_schema`` describes it from the same
definition (unknown fields, missing fields and wrong types are all 400s); and the JSON
Schemas of the response objects (``COMPONENTS``), which ``convert`` must produce (the
tests validate every response they see against them).

Does not belong here: the encoding of one value (``convert``), the paths and operations
(``openapi``), HTTP (``app``).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from multidict import MultiMapping

from offchain.api import convert
from offchain.api.errors import invalid
from offchain.node.service import (
    ChannelStatus,
    Coverage,
    ErrorCode,
    PaymentDirection,
    PaymentStatus,
)

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)
R = TypeVar("R")

MAX_WAIT: Final = 600.0
"""Longest wait a request may ask for, in seconds (``wait`` and ``timeout``)."""
DEFAULT_WAIT_TIMEOUT: Final = 30.0
MAX_LIMIT: Final = 1000
"""Most items one list request returns."""
DEFAULT_LIMIT: Final = 100
INT63_MAX: Final = 2**63 - 1  # SQLite's integer range, for offsets and event sequence numbers
UINT32_MAX: Final = 2**32 - 1

_QUERY_INTEGER_RE: Final = re.compile(r"[0-9]{1,20}")
_QUERY_NUMBER_RE: Final = re.compile(r"[0-9]{1,20}(\.[0-9]{0,20})?([eE][-+]?[0-9]{1,3})?")


def ref(name: str) -> dict[str, object]:
    return {"$ref": f"#/components/schemas/{name}"}


@dataclass(frozen=True, slots=True)
class Kind(Generic[T]):
    """A kind of request value: its JSON Schema and how to read it from JSON or from text.

    Readers raise ``ValueError`` with a reason; the callers add the field's name.
    """

    schema: Mapping[str, object]
    from_json: Callable[[object], T]
    from_text: Callable[[str], T]


def _string_reader(parse: Callable[[str], T]) -> Callable[[object], T]:
    def read(value: object) -> T:
        if not isinstance(value, str):
            raise ValueError("must be a string")
        return parse(value)

    return read


def _string_kind(component: str, parse: Callable[[str], T]) -> Kind[T]:
    return Kind(ref(component), _string_reader(parse), parse)


ADDRESS: Final = _string_kind("Address", convert.parse_address)
AMOUNT: Final = _string_kind("Amount", convert.parse_amount)
PAYMENT_ID: Final = _string_kind("PaymentId", convert.parse_uint64)
BYTES32: Final = _string_kind("Bytes32", convert.parse_bytes32)


def _bool_from_json(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _bool_from_text(text: str) -> bool:
    if text not in ("true", "false"):
        raise ValueError("must be true or false")
    return text == "true"


BOOLEAN: Final = Kind({"type": "boolean"}, _bool_from_json, _bool_from_text)


def integer(minimum: int, maximum: int) -> Kind[int]:
    """A whole number in ``[minimum, maximum]`` (a JSON number with no fraction)."""
    reason = f"must be an integer from {minimum} to {maximum}"

    def check(value: int) -> int:
        if not minimum <= value <= maximum:
            raise ValueError(reason)
        return value

    def from_json(value: object) -> int:
        # bool is an int in Python but not in JSON; 3.0 is an integer in JSON Schema.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(reason)
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(reason)
            value = int(value)
        return check(value)

    def from_text(text: str) -> int:
        if _QUERY_INTEGER_RE.fullmatch(text) is None:
            raise ValueError(reason)
        return check(int(text))

    schema = {"type": "integer", "minimum": minimum, "maximum": maximum}
    return Kind(schema, from_json, from_text)


def seconds(maximum: float) -> Kind[float]:
    """A duration in seconds, ``0`` to ``maximum``, fractions allowed."""
    reason = f"must be a number of seconds from 0 to {maximum:g}"

    def check(value: float) -> float:
        if not (math.isfinite(value) and 0 <= value <= maximum):
            raise ValueError(reason)
        return value

    def from_json(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(reason)
        return check(float(value))

    def from_text(text: str) -> float:
        if _QUERY_NUMBER_RE.fullmatch(text) is None:
            raise ValueError(reason)
        return check(float(text))

    return Kind({"type": "number", "minimum": 0, "maximum": maximum}, from_json, from_text)


def one_of(cls: type[E]) -> Kind[E]:
    """One of an enum's values, by value."""
    values = [member.value for member in cls]
    reason = "must be one of " + ", ".join(values)

    def from_text(text: str) -> E:
        for member in cls:
            if member.value == text:
                return member
        raise ValueError(reason)

    def from_json(value: object) -> E:
        if not isinstance(value, str):
            raise ValueError(reason)
        return from_text(value)

    return Kind({"type": "string", "enum": values}, from_json, from_text)


DIRECTION: Final = one_of(PaymentDirection)
PAYMENT_STATUS: Final = one_of(PaymentStatus)


def arg(kind: Kind[Any], doc: str, default: object = dataclasses.MISSING) -> Any:
    """A request field: its kind and description; no default means required."""
    metadata = {"kind": kind, "doc": doc}
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


# Request bodies. The class name is the component's name in the OpenAPI document.


@dataclass(frozen=True, slots=True)
class OpenChannelRequest:
    token: bytes = arg(ADDRESS, "The token's contract address (one of `GET /tokens`).")
    partner: bytes = arg(ADDRESS, "The node to open the channel with.")
    deposit: int = arg(AMOUNT, "Our first deposit, in base units (may be 0).")
    settle_window: int | None = arg(
        integer(1, UINT32_MAX),
        "Seconds between close and settle; the node's default when absent. The token "
        "network's bounds apply.",
        None,
    )


@dataclass(frozen=True, slots=True)
class DepositRequest:
    total_deposit: int = arg(
        AMOUNT, "Our new total deposit (not the increase); the current total is a no-op."
    )


@dataclass(frozen=True, slots=True)
class WithdrawRequest:
    total_withdraw: int = arg(
        AMOUNT, "Our new total withdrawn amount (not the increase); the current total is a no-op."
    )


@dataclass(frozen=True, slots=True)
class CloseRequest:
    cooperative: bool = arg(
        BOOLEAN,
        "Settle at once with the partner's signature instead of closing and waiting for "
        "the settle window.",
        False,
    )


@dataclass(frozen=True, slots=True)
class SettleRequest:
    """Settle takes no arguments; an empty body or `{}`."""


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    token: bytes = arg(ADDRESS, "The token to pay in.")
    target: bytes = arg(ADDRESS, "The node to pay.")
    amount: int = arg(AMOUNT, "What the target receives, in base units.")
    max_fee: int | None = arg(
        AMOUNT,
        "Most mediation fees we pay on top of `amount`; the node's default when absent.",
        None,
    )
    payment_id: int | None = arg(
        PAYMENT_ID, "Our id for the payment (unique among ours); drawn at random when absent.", None
    )
    secret: bytes | None = arg(
        BYTES32, "The payment's secret, when the payer supplies it; random when absent.", None
    )
    secrethash: bytes | None = arg(
        BYTES32,
        "sha256 of a secret someone else holds (pay on delivery, swaps); the payment "
        "finishes when the target learns it.",
        None,
    )
    direct: bool = arg(
        BOOLEAN, "A direct transfer to a channel partner: no lock, final at once.", False
    )
    wait: float | None = arg(
        seconds(MAX_WAIT),
        "Answer when the payment is finished, or after this many seconds (then 202 with "
        "the payment still pending); at once when absent.",
        None,
    )


# Query strings.


@dataclass(frozen=True, slots=True)
class NoQuery:
    """Operations without query parameters refuse any."""


@dataclass(frozen=True, slots=True)
class TokenQuery:
    token: bytes | None = arg(ADDRESS, "Only this token.", None)


@dataclass(frozen=True, slots=True)
class PaymentsQuery:
    # `arg` returns a dataclasses.field, which ruff cannot see for enum annotations.
    direction: PaymentDirection | None = arg(DIRECTION, "Only these.", None)  # noqa: RUF009
    status: PaymentStatus | None = arg(PAYMENT_STATUS, "Only these.", None)  # noqa: RUF009
    token: bytes | None = arg(ADDRESS, "Only this token.", None)
    partner: bytes | None = arg(
        ADDRESS, "Only with this `partner` (the target, or the partner that paid us).", None
    )
    limit: int = arg(integer(1, MAX_LIMIT), "Most payments to return.", DEFAULT_LIMIT)
    offset: int = arg(integer(0, INT63_MAX), "Payments to skip, newest first.", 0)


@dataclass(frozen=True, slots=True)
class PaymentQuery:
    """Which payment of an id: ids are chosen by each payer, so one id may name a payment
    we sent and others we received. Needed only when it does (409 `ambiguous`)."""

    direction: PaymentDirection | None = arg(  # noqa: RUF009
        DIRECTION, "The payment we sent with this id, or one we received.", None
    )
    payer: bytes | None = arg(
        ADDRESS,
        "A received payment's initiator (its `payer`), for an id that several payers "
        "used; implies `direction=received`.",
        None,
    )
    partner: bytes | None = arg(
        ADDRESS,
        "The payment's `partner`: its target when sent, the partner that paid us when received.",
        None,
    )


@dataclass(frozen=True, slots=True)
class WaitQuery(PaymentQuery):
    timeout: float = arg(
        seconds(MAX_WAIT), "Seconds to wait before answering 504 timeout.", DEFAULT_WAIT_TIMEOUT
    )


@dataclass(frozen=True, slots=True)
class EventsQuery:
    since: int = arg(integer(0, INT63_MAX), "Only events with a larger `seq`.", 0)
    limit: int = arg(integer(1, MAX_LIMIT), "Most events to return.", DEFAULT_LIMIT)


def _describe(f: dataclasses.Field[Any]) -> tuple[Kind[Any], str]:
    return f.metadata["kind"], f.metadata["doc"]


def _field_schema(f: dataclasses.Field[Any]) -> dict[str, object]:
    kind, doc = _describe(f)
    schema: dict[str, object] = {**kind.schema, "description": doc}
    if f.default is not dataclasses.MISSING and f.default is not None:
        schema["default"] = f.default
    return schema


def request_schema(cls: type[Any]) -> dict[str, object]:
    """The JSON Schema of a request body class: closed (``additionalProperties: false``)."""
    fields = dataclasses.fields(cls)
    schema: dict[str, object] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {f.name: _field_schema(f) for f in fields},
    }
    required = [f.name for f in fields if f.default is dataclasses.MISSING]
    if required:
        schema["required"] = required
    if cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "("):
        schema["description"] = cls.__doc__
    return schema


def query_parameters(cls: type[Any]) -> list[dict[str, object]]:
    """The OpenAPI ``parameters`` of a query class."""
    return [
        {"name": f.name, "in": "query", "required": False, "schema": _field_schema(f)}
        for f in dataclasses.fields(cls)
    ]


def _name(name: str) -> str:
    # A caller's unknown key can be anything, up to the body limit: quote and cut it.
    text = repr(name)
    return text if len(text) <= 40 else text[:37] + "..."


def _read(f: dataclasses.Field[Any], value: object, *, text: bool) -> Any:
    kind, _ = _describe(f)
    try:
        return kind.from_text(value) if text and isinstance(value, str) else kind.from_json(value)
    except ValueError as exc:
        raise invalid(f"{f.name}: {exc}") from None


def parse_body(cls: type[R], data: object) -> R:
    """Check a decoded JSON body against ``cls`` and build it; 400 on any mismatch.

    ``None`` (no body) stands for ``{}``, so that operations whose fields are all optional
    take an empty body.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise invalid("the body must be a JSON object")
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    known = {f.name for f in fields}
    unknown = sorted(key for key in data if key not in known)
    if unknown:
        raise invalid("unknown field(s): " + ", ".join(_name(key) for key in unknown[:5]))
    values: dict[str, Any] = {}
    for f in fields:
        if f.name in data:
            values[f.name] = _read(f, data[f.name], text=False)
        elif f.default is dataclasses.MISSING:
            raise invalid(f"{f.name}: required")
    return cls(**values)


def parse_query(cls: type[R], query: MultiMapping[str]) -> R:
    """Check a query string against ``cls`` and build it; unknown or repeated names are 400."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, text in query.items():  # items(), not keys(): those hide repeated names
        if key not in fields:
            raise invalid(f"unknown query parameter {_name(key)}")
        if key in values:
            raise invalid(f"query parameter {key} given more than once")
        values[key] = _read(fields[key], text, text=True)
    return cls(**values)


def parse_path(name: str, kind: Kind[T], text: str) -> T:
    try:
        return kind.from_text(text)
    except ValueError as exc:
        raise invalid(f"{name}: {exc}") from None


# Response objects and shared scalars.


def _closed(properties: dict[str, object], description: str) -> dict[str, object]:
    """An object that has every listed property and no other."""
    return {
        "type": "object",
        "description": description,
        "additionalProperties": False,
        "required": list(properties),
        "properties": properties,
    }


def _nullable(schema: Mapping[str, object]) -> dict[str, object]:
    return {"anyOf": [dict(schema), {"type": "null"}]}


_UNIX_TIME: Final = {"type": "number", "description": "Unix time in seconds."}
_BLOCK: Final = {"type": "integer", "minimum": 0}
_COUNT: Final = {"type": "integer", "minimum": 0}

SCALARS: Final[dict[str, dict[str, object]]] = {
    "Address": {
        "type": "string",
        "pattern": "^0x[0-9a-fA-F]{40}$",
        "description": "A 20-byte address. Answers carry it EIP-55 checksummed; requests may "
        "send it in lower or upper case, or mixed case with a valid checksum. Never the "
        "zero address.",
        "examples": ["0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"],
    },
    "Amount": {
        "type": "string",
        "pattern": "^(0|[1-9][0-9]*)$",
        "maxLength": len(str(convert.UINT256_MAX)),
        "description": "An amount in the token's base units as a decimal string, 0 to "
        "2^256 - 1 (JSON numbers are refused: they lose precision in many clients).",
        "examples": ["1000000000000000000"],
    },
    "PaymentId": {
        "type": "string",
        "pattern": "^(0|[1-9][0-9]*)$",
        "maxLength": len(str(convert.UINT64_MAX)),
        "description": "A payment id, an unsigned 64-bit integer as a decimal string.",
        "examples": ["8167235108371264003"],
    },
    "Bytes32": {
        "type": "string",
        "pattern": "^0x[0-9a-fA-F]{64}$",
        "description": "32 bytes as 0x and 64 hex digits.",
    },
    "Nonce": {
        "type": "string",
        "pattern": "^(0|[1-9][0-9]*)$",
        "maxLength": len(str(convert.UINT64_MAX)),
        "description": "A balance proof's nonce, an unsigned 64-bit integer as a decimal "
        "string (0: no proof).",
    },
}

_COVERAGE: Final = {
    "type": "string",
    "enum": [c.value for c in Coverage],
    "description": "Who puts it on chain in time: `self` (this node must reach the chain, "
    "or hand the proofs to a delegate, before the deadline), `delegate` (a delegate that "
    "holds our latest proof and sees the chain) or `gateway` (while blind, the node handed "
    "it to a gateway of its mesh, named in `delegate`; it still counts the deadline as its "
    "own until the chain shows it done).",
}
_DEADLINE_WHAT: Final = [
    "update_horizon",
    "register_secret",
    "update",
    "unlock",
    "close",
    "withdraw",
    "cooperative_settle",
]

RESPONSES: Final[dict[str, dict[str, object]]] = {
    "Status": _closed(
        {
            "address": ref("Address"),
            "chain_id": {"type": "integer", "minimum": 1},
            "synced": {
                "type": "boolean",
                "description": "The node has applied every confirmed block it has seen.",
            },
            "chain_reachable": {"type": "boolean"},
            "latest_block": {**_BLOCK, "description": "Newest block seen (0: never reached)."},
            "confirmed_block": {**_BLOCK, "description": "Newest block whose logs are applied."},
            "blind_since": _nullable(_UNIX_TIME),
            "peers": {**_COUNT, "description": "Mesh neighbours with a link up."},
            "version": {"type": "string"},
            "blind_for_s": _nullable(
                {
                    "type": "number",
                    "minimum": 0,
                    "description": "Seconds since the chain was last seen (null: it is seen).",
                }
            ),
            "view_time": _nullable(
                {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Chain time (block timestamp) up to which every log of "
                    "the node's contracts is applied.",
                }
            ),
            "next_deadline": _nullable(
                {
                    **_UNIX_TIME,
                    "description": "Unix time (device clock) of the earliest deadline that "
                    "matters now (see `GET /deadlines`): while blind, any; else an unconfirmed "
                    "transaction's.",
                }
            ),
            "next_deadline_what": _nullable(
                {"type": "string", "enum": _DEADLINE_WHAT, "description": "What it is for."}
            ),
        },
        "The node's health: chain sync (and how long it has been blind), mesh links.",
    ),
    "Token": _closed(
        {
            "token": ref("Address"),
            "token_network": ref("Address"),
            "symbol": {"type": "string"},
            "decimals": {"type": "integer", "minimum": 0, "maximum": 255},
        },
        "A token with a token network the node follows.",
    ),
    "Channel": _closed(
        {
            "token": ref("Address"),
            "token_network": ref("Address"),
            "partner": ref("Address"),
            "channel_id": ref("Bytes32"),
            "generation": {**_COUNT, "description": "How often this pair has opened a channel."},
            "status": {"type": "string", "enum": [s.value for s in ChannelStatus]},
            "settle_window": {**_COUNT, "description": "Seconds."},
            "settle_deadline": _nullable(
                {"type": "integer", "description": "Unix time settle is possible, once closed."}
            ),
            "our_deposit": ref("Amount"),
            "partner_deposit": ref("Amount"),
            "our_withdrawn": ref("Amount"),
            "partner_withdrawn": ref("Amount"),
            "our_balance": ref("Amount"),
            "partner_balance": ref("Amount"),
            "our_locked": ref("Amount"),
            "partner_locked": ref("Amount"),
            "spendable": ref("Amount"),
        },
        "One channel with a partner in one token, and our view of its balances.",
    ),
    "Payment": _closed(
        {
            "payment_id": ref("PaymentId"),
            "direction": {"type": "string", "enum": [d.value for d in PaymentDirection]},
            "token": ref("Address"),
            "partner": {
                **ref("Address"),
                "description": "The target of a sent payment; for a received one, the "
                "partner that paid us (the payer of a direct transfer, the last mediator "
                "of a mediated one).",
            },
            "amount": ref("Amount"),
            "fee": {**ref("Amount"), "description": "Mediation fees paid (0 when received)."},
            "status": {"type": "string", "enum": [s.value for s in PaymentStatus]},
            "reason": _nullable(
                {
                    "type": "string",
                    "description": "Why it failed; on a received payment, `offline_window` "
                    "when it came while the node was blind and outside its safety window.",
                }
            ),
            "failed_hop": _nullable(ref("Address")),
            "secrethash": ref("Bytes32"),
            "created_at": _UNIX_TIME,
            "finished_at": _nullable(_UNIX_TIME),
            "payer": _nullable(
                {
                    **ref("Address"),
                    "description": "Who started a received payment, when the node knows it "
                    "(a direct transfer; a mediated payment whose initiator sent the secret "
                    "ahead); null for sent payments and unknown payers. Payment ids are "
                    "unique per payer: (payer, payment_id) names a received payment.",
                }
            ),
            "risk": _nullable(ref("PaymentRisk")),
        },
        "A payment we sent or received.",
    ),
    "PaymentRisk": _closed(
        {
            "nonce": {
                **ref("Nonce"),
                "description": "The payer's balance proof the node holds (it includes the "
                "payment).",
            },
            "deadline": _nullable(
                {
                    **_UNIX_TIME,
                    "description": "Unix time (device clock) by which that proof must be sent "
                    "to the chain, or handed to a delegate.",
                }
            ),
            "chain_deadline": _nullable(
                {"type": "integer", "description": "The chain's own limit (block time)."}
            ),
            "covered_by": _COVERAGE,
            "delegate": _nullable(ref("Address")),
            "within_window": {
                "type": "boolean",
                "description": "Received while the safety window was open; false: do not "
                "treat it as paid until its proof is on chain.",
            },
        },
        "Merchant view of a payment received while the node was blind (null once safe: the "
        "node has seen the chain since, and nothing of that channel waits to be sent).",
    ),
    "Deadline": _closed(
        {
            "what": {
                "type": "string",
                "enum": _DEADLINE_WHAT,
                "description": "`update_horizon`: if the partner closes with an older proof, "
                "its latest must reach the chain by then; `register_secret`: a lock's secret; "
                "`update`: the partner closed; the others: our own transactions.",
            },
            "token": ref("Address"),
            "partner": _nullable(ref("Address")),
            "deadline": _nullable(
                {**_UNIX_TIME, "description": "Unix time (device clock) to act by."}
            ),
            "chain_deadline": _nullable(
                {"type": "integer", "description": "The chain's own limit (block time)."}
            ),
            "covered_by": _COVERAGE,
            "delegate": _nullable(ref("Address")),
            "nonce": {**ref("Nonce"), "description": "The partner's proof at stake."},
            "amount": {**ref("Amount"), "description": "The value at stake."},
            "secrethash": _nullable(ref("Bytes32")),
            "pending": {
                "type": "boolean",
                "description": "A transaction is scheduled for it (sent in deadline order "
                "whenever the chain is reachable).",
            },
            "text": {"type": "string", "description": "What to do, for people."},
        },
        "Something the node must get on chain, and by when.",
    ),
    "PendingTransfer": _closed(
        {
            "token": ref("Address"),
            "partner": ref("Address"),
            "direction": {"type": "string", "enum": [d.value for d in PaymentDirection]},
            "payment_id": ref("PaymentId"),
            "amount": ref("Amount"),
            "secrethash": ref("Bytes32"),
            "expiration": {"type": "integer", "description": "Unix time the lock expires."},
            "role": {"type": "string", "enum": ["initiator", "mediator", "target"]},
        },
        "A hash-time lock still pending in one of our channels.",
    ),
    "Event": _closed(
        {
            "seq": {"type": "integer", "minimum": 0},
            "time": _UNIX_TIME,
            "kind": {"type": "string", "examples": ["payment_succeeded", "channel_closed"]},
            "data": {
                "type": "object",
                "description": "The event's details: addresses as hex, amounts as decimal strings.",
            },
        },
        "One entry of the node's event log.",
    ),
    "Error": _closed(
        {
            "error": _closed(
                {
                    "code": {"type": "string", "enum": [c.value for c in ErrorCode]},
                    "message": {"type": "string"},
                },
                "A stable code and a human message.",
            )
        },
        "Every error the API answers.",
    ),
}


def _list_of(key: str, item: str, description: str) -> dict[str, object]:
    return _closed({key: {"type": "array", "items": ref(item)}}, description)


LISTS: Final[dict[str, dict[str, object]]] = {
    "TokenList": _list_of("tokens", "Token", "The tokens the node follows."),
    "ChannelList": _list_of("channels", "Channel", "Channels, settled ones included."),
    "PaymentList": _list_of("payments", "Payment", "Payments, newest first."),
    "PendingList": _list_of("pending", "PendingTransfer", "Locks pending in our channels."),
    "DeadlineList": _list_of("deadlines", "Deadline", "Deadlines, earliest first."),
    "EventList": _closed(
        {
            "events": {"type": "array", "items": ref("Event")},
            "next_since": {
                "type": "integer",
                "minimum": 0,
                "description": "The `since` to ask next: the last `seq` returned.",
            },
        },
        "Events in order of `seq`.",
    ),
}

REQUEST_BODIES: Final = (
    OpenChannelRequest,
    DepositRequest,
    WithdrawRequest,
    CloseRequest,
    SettleRequest,
    PaymentRequest,
)


def components() -> dict[str, dict[str, object]]:
    """Every schema of ``components/schemas``: scalars, requests, responses and lists."""
    return {
        **SCALARS,
        **{cls.__name__: request_schema(cls) for cls in REQUEST_BODIES},
        **RESPONSES,
        **LISTS,
    }
