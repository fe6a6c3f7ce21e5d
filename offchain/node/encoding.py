"""A stable, self-describing encoding of the core's values for the node's database.

Belongs here: ``encode``/``decode`` between the protocol core's frozen values (inputs,
effects, states, messages) and JSON bytes, and ``REGISTRY``, the classes it may create.

Why not pickle: a database outlives the code that wrote it. Values here are written by
class and field *name*, so a later release can add a field (its default fills old rows),
and a schema migration can rename or convert fields by editing plain JSON, without
closing a single channel (Raiden forced exactly that on its users). And decoding can
only ever build the registered protocol classes, never run arbitrary code.

The format (JSON): ``None``, booleans, integers (any size) and strings as themselves,
except that bytes are ``"0x…"`` hex and a string that starts with ``0x`` or ``$`` is
``{"$s": …}``; tuples are lists; ``{"$fs": […]}`` a frozenset (sorted, so equal sets
encode alike); ``{"$m": [[k, v], …]}`` a mapping (insertion order kept: the core iterates
its maps, so replay needs the same order); ``{"$e": Class, "v": value}`` an enum;
``{"$": Class, field: value, …}`` a dataclass (its init fields); a ``ChannelGraph`` is
its edges only (the indexes are rebuilt).

Does not belong here: SQL (``store``), the wire codec of messages (``protocol.codec``).
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Callable, Mapping
from typing import Any, Final

from offchain.protocol import (
    channel,
    cooperative,
    fees,
    locks,
    messages,
    routes,
    state,
    transitions,
)
from offchain.protocol.routes import ChannelGraph


class EncodingError(ValueError):
    """Stored bytes that do not decode into registered classes: a corrupt or foreign row."""


def _registry() -> dict[str, type]:
    found: dict[str, type] = {}
    for module in (channel, cooperative, fees, locks, messages, routes, state, transitions):
        for name, value in vars(module).items():
            if not isinstance(value, type) or value.__module__ != module.__name__:
                continue
            if not (dataclasses.is_dataclass(value) or issubclass(value, enum.Enum)):
                continue
            if name.startswith("_"):
                continue
            other = found.setdefault(name, value)
            assert other is value, f"two protocol classes named {name}"
    return found


REGISTRY: Final[dict[str, type]] = _registry()
"""Class name -> class, for every public dataclass and enum of the protocol core."""

_FIELDS: dict[type, tuple[str, ...]] = {}


def _init_fields(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls) if f.init)
    return names


def to_tree(value: Any) -> Any:
    """``value`` as a JSON-ready tree (see the module docstring)."""
    encoder = _ENCODERS.get(type(value))
    if encoder is None:
        encoder = _ENCODERS[type(value)] = _encoder_for(type(value))
    return encoder(value)


# One encoder per exact type, chosen once: the node encodes every input it logs and its
# whole state at each snapshot, and walking the chain of isinstance checks for every
# field of every value was most of the cost.
_ENCODERS: dict[type, Callable[[Any], Any]] = {}


def _encoder_for(cls: type) -> Callable[[Any], Any]:
    if cls is type(None) or cls is bool:
        return _same
    if issubclass(cls, enum.Enum):  # before int: an IntEnum is an int too
        name = cls.__name__
        return lambda value: {"$e": name, "v": to_tree(value.value)}
    if issubclass(cls, int):
        return _same
    if issubclass(cls, bytes):
        return _hex
    if issubclass(cls, str):
        return _string
    if issubclass(cls, tuple | list):
        return _sequence
    if issubclass(cls, ChannelGraph):
        return _graph
    if dataclasses.is_dataclass(cls):
        return _dataclass_encoder(cls)
    if issubclass(cls, frozenset | set):
        return _set
    if issubclass(cls, Mapping):
        return _mapping
    raise TypeError(f"cannot encode {cls.__name__}")


def _same(value: Any) -> Any:
    return value


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def _string(value: str) -> Any:
    return {"$s": value} if value.startswith(("0x", "$")) else value


def _sequence(value: tuple[Any, ...] | list[Any]) -> list[Any]:
    return [to_tree(item) for item in value]


def _graph(value: ChannelGraph) -> dict[str, Any]:
    return {"$": "ChannelGraph", "edges": [to_tree(edge) for edge in value.edges]}


def _dataclass_encoder(cls: type) -> Callable[[Any], dict[str, Any]]:
    name, fields = cls.__name__, _init_fields(cls)

    def encode_dataclass(value: Any) -> dict[str, Any]:
        tree: dict[str, Any] = {"$": name}
        for field in fields:
            tree[field] = to_tree(getattr(value, field))
        return tree

    return encode_dataclass


def _set(value: frozenset[Any] | set[Any]) -> dict[str, Any]:
    items = [to_tree(item) for item in value]
    items.sort(key=lambda item: json.dumps(item, sort_keys=True))
    return {"$fs": items}


def _mapping(value: Mapping[Any, Any]) -> dict[str, Any]:
    return {"$m": [[to_tree(k), to_tree(v)] for k, v in value.items()]}


def from_tree(tree: Any) -> Any:
    """The value ``to_tree`` turned into ``tree``; ``EncodingError`` when it is not one."""
    if tree is None or isinstance(tree, bool | int):
        return tree
    if isinstance(tree, str):
        if tree.startswith("0x"):
            try:
                return bytes.fromhex(tree[2:])
            except ValueError as exc:
                raise EncodingError(f"bad hex {tree[:20]!r}") from exc
        return tree
    if isinstance(tree, list):
        return tuple(from_tree(item) for item in tree)
    if not isinstance(tree, dict):
        raise EncodingError(f"unexpected JSON value {type(tree).__name__}")
    if "$s" in tree:
        text = tree["$s"]
        if not isinstance(text, str):
            raise EncodingError("bad string")
        return text
    if "$fs" in tree:
        return frozenset(from_tree(item) for item in _list(tree["$fs"]))
    if "$m" in tree:
        pairs = _list(tree["$m"])
        result: dict[Any, Any] = {}
        for pair in pairs:
            if not isinstance(pair, list) or len(pair) != 2:
                raise EncodingError("bad mapping entry")
            result[from_tree(pair[0])] = from_tree(pair[1])
        return result
    if "$e" in tree:
        cls = _class(tree["$e"])
        if not issubclass(cls, enum.Enum):
            raise EncodingError(f"{cls.__name__} is not an enum")
        try:
            return cls(from_tree(tree.get("v")))
        except ValueError as exc:
            raise EncodingError(str(exc)) from exc
    if "$" in tree:
        cls = _class(tree["$"])
        if cls is ChannelGraph:
            edges = from_tree(tree.get("edges", []))
            return ChannelGraph.from_edges(edges)
        if not dataclasses.is_dataclass(cls):
            raise EncodingError(f"{cls.__name__} is not a dataclass")
        known = _init_fields(cls)
        unknown = set(tree) - set(known) - {"$"}
        if unknown:
            raise EncodingError(f"{cls.__name__} has no fields {sorted(unknown)}")
        kwargs = {name: from_tree(tree[name]) for name in known if name in tree}
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise EncodingError(f"cannot build {cls.__name__}: {exc}") from exc
    raise EncodingError("untagged JSON object")


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise EncodingError("expected a list")
    return value


def _class(name: Any) -> type:
    cls = REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        raise EncodingError(f"unknown class {name!r}")
    return cls


def encode(value: Any) -> bytes:
    """``value`` as compact JSON bytes."""
    return dumps(to_tree(value)).encode()


_JSON: Final = json.JSONEncoder(separators=(",", ":"))
dumps: Final = _JSON.encode
"""A tree as compact JSON text (one encoder for all: ``json.dumps`` with arguments builds
a new one per call)."""


def decode(data: bytes) -> Any:
    """The value ``encode`` wrote into ``data``; ``EncodingError`` for anything else."""
    try:
        tree = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EncodingError(f"not JSON: {exc}") from exc
    return from_tree(tree)
