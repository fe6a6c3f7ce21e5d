"""The node's exceptions (DESIGN.md §3, convention 5).

Taxonomy: ``NodeError`` is the base. Unrecoverable: ``StoreError`` (a corrupt or foreign
database, a schema newer than the code), ``StoreLockedError`` (another process holds the
database). Service-level refusals are ``offchain.node.service.ServiceError`` (with a stable
code, for the API); chain errors live in ``offchain.chain.errors``.
"""

from __future__ import annotations


class NodeError(Exception):
    """Base of the node's own errors."""


class StoreError(NodeError):
    """The database cannot be used: corrupt, foreign, or newer than this release."""


class StoreLockedError(StoreError):
    """Another process has the database open."""
