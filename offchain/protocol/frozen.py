"""A faster `dataclasses.replace` for the core's frozen dataclasses.

Belongs here: `replace` only. The core updates frozen states and messages with `replace`
dozens of times per payment; the standard library's version inspects the class's fields
on every call, which showed as the largest Python cost of a mediated payment in the
bench profile. This one looks them up once per class and calls the constructor the same
way (so `__post_init__` checks still run).

Does not belong here: anything else.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")

_FIELDS: dict[type, tuple[tuple[str, ...], frozenset[str]]] = {}


def replace(obj: T, /, **changes: Any) -> T:
    """`obj` with `changes` applied, like `dataclasses.replace` (init fields only)."""
    cls = type(obj)
    known = _FIELDS.get(cls)
    if known is None:
        names = tuple(f.name for f in dataclasses.fields(cls) if f.init)  # type: ignore[arg-type]
        known = _FIELDS[cls] = (names, frozenset(names))
    names, name_set = known
    if not name_set.issuperset(changes):
        unknown = sorted(set(changes) - name_set)
        raise TypeError(f"{cls.__name__} has no fields {unknown}")
    return cls(*[changes[name] if name in changes else getattr(obj, name) for name in names])
