"""The exception taxonomy of ``offchain.watch``; no other module of it defines exceptions.

``WatchError`` is the base of everything this package raises on purpose. ``WireError``
(a ``ValidationError``, so also a ``ValueError``) is the one validation error: bytes that
are not a well-formed 0xA2 payload, or a value that cannot be encoded. A request that is
well formed but unacceptable (a stale nonce, a forged signature) is not an exception: the
rules answer it with a ``Reason``.
"""

from __future__ import annotations

from offchain.protocol.errors import ValidationError


class WatchError(Exception):
    """Base of every exception raised on purpose by ``offchain.watch``."""


class WireError(WatchError, ValidationError):
    """Bytes that do not decode to a 0xA2 payload, or a field out of its range."""
