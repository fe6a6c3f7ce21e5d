"""The exception taxonomy of ``mesh_relay``; no other module of the package defines one.

``MeshError`` is the base of everything this package raises on purpose. Three kinds, as
DESIGN.md asks:

- validation (``MeshValidationError`` and its children): bad input at an edge. A frame
  that does not decode raises ``FrameDecodeError`` and nothing else; a local caller's bad
  argument (a payload too large, an expiry in the past) raises ``MeshValidationError``.
- recoverable (``MeshRecoverableError``): the input was fine but the node cannot take it
  now (``QueueFull``); the caller may retry later.
- unrecoverable (``MeshUnrecoverableError``): stored state is unusable
  (``SnapshotError`` for a corrupt pending-store snapshot).

Inside ``MeshNode`` a peer's bad input never raises: it becomes ``EventInvalidFrame``
(with a reason) and a counter, and the node's state is unchanged. Any other exception
escaping this package is a bug of ours.
"""

from __future__ import annotations


class MeshError(Exception):
    """Base of every exception raised on purpose by ``mesh_relay``."""


class MeshValidationError(MeshError, ValueError):
    """Input at an edge that violates a range, length or format rule."""


class FrameDecodeError(MeshValidationError):
    """Bytes that are not a well-formed frame (or routing entry) of this version."""


class EnvelopeError(MeshValidationError):
    """An end-to-end envelope or acknowledgement that does not verify or decrypt."""


class ConfigError(MeshValidationError):
    """A ``MeshConfig`` or ``Link`` whose values are out of range or inconsistent."""


class MeshRecoverableError(MeshError):
    """The node cannot take this input now; retrying later may succeed."""


class QueueFull(MeshRecoverableError):  # noqa: N818 -- the name reads as the condition
    """A bounded queue (pending messages, custody) has no room for this message."""


class MeshUnrecoverableError(MeshError):
    """Stored state cannot be used; the operator must intervene."""


class SnapshotError(MeshUnrecoverableError):
    """A pending-store snapshot that is truncated, of another version, or inconsistent."""
