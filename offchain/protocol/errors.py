"""The exception taxonomy of ``offchain.protocol``; no other module defines exceptions.

``ProtocolError`` is the base of everything this package raises on purpose.
``ValidationError`` means bad input at an edge (a value out of range, a byte string of
the wrong length); it is also a ``ValueError`` so generic callers can catch it.
``InvalidSignature`` is the validation error for a signature that is malformed, not
canonical (high-s, bad v) or not recoverable.

Inside the pure core a peer's bad input becomes an event, never an exception; these
exceptions are for the constructors and decoders at the boundary. Any other exception
escaping this package is a bug of ours.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of every exception raised on purpose by ``offchain.protocol``."""


class ValidationError(ProtocolError, ValueError):
    """Input at an edge that violates a range, length or format rule."""


class InvalidSignature(ValidationError):  # noqa: N818 -- the name reads as the condition
    """A signature that is malformed, non-canonical or does not recover a signer."""
