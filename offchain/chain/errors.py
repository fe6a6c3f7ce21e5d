"""The exception taxonomy of ``offchain.chain``; no other module of the package defines one.

``ChainError`` is the base of everything this package raises on purpose. The kinds, by
what the caller does about them (DESIGN.md §3, convention 5):

- recoverable, retry later: ``ChainUnavailable`` (the endpoint is dead, times out or
  answers garbage); nothing was lost and the same call may be made again.
- needs a human: ``ReorgTooDeep`` (the chain rewrote blocks the node had already applied);
  ``StoreError`` (the database cannot be used as the package needs it); ``ArtifactError``
  (the package was built without its compiled contracts).
- validation, at the edges: ``DeploymentError`` and its kinds (a manifest missing,
  malformed, for another chain, or naming addresses without the contracts), and
  ``OutboxConflict`` (an idempotency key reused for a different transaction).
- ``TransactionFailed``: a transaction reverted (at estimation, when nothing was sent, or
  on chain), or was dropped; ``reason`` says which and why.

Does not belong here: errors of the protocol core (``offchain.protocol.errors``) or of the
node's runtime.
"""

from __future__ import annotations


class ChainError(Exception):
    """Base of every exception raised on purpose by ``offchain.chain``."""


class ChainUnavailable(ChainError):  # noqa: N818 -- the name reads as the condition
    """The JSON-RPC endpoint did not answer (refused, timed out) or answered nonsense.

    Recoverable: nothing changed; the caller retries later, with backoff.
    """


class ReorgTooDeep(ChainError):  # noqa: N818 -- the name reads as the condition
    """The chain replaced blocks the follower had already processed (deeper than its
    confirmation depth): inputs derived from them may be wrong. Never absorbed silently.

    ``block``: the processed block whose hash no longer matches; ``common_ancestor``: the
    highest block both chains share among those remembered (None: beyond memory).
    """

    def __init__(
        self, block: int, expected: bytes, found: bytes | None, common_ancestor: int | None
    ) -> None:
        self.block = block
        self.expected = expected
        self.found = found
        self.common_ancestor = common_ancestor
        where = (
            f"common ancestor {common_ancestor}"
            if common_ancestor is not None
            else "no common ancestor among the remembered blocks"
        )
        found_text = found.hex() if found is not None else "missing"
        super().__init__(
            f"reorg deeper than the confirmation depth: block {block} was "
            f"0x{expected.hex()}, is now {found_text}; {where}"
        )


class StoreError(ChainError):
    """The database cannot be used as needed (e.g. called inside someone's transaction)."""


class ArtifactError(ChainError):
    """An artifact is missing or malformed: the package was built without `make artifacts`."""


class DeploymentError(ChainError):
    """A deployment manifest, or the chain it is checked against, is not usable."""


class ManifestMissing(DeploymentError):  # noqa: N818 -- the name reads as the condition
    """No manifest file where one was expected."""


class ManifestMalformed(DeploymentError):  # noqa: N818 -- the name reads as the condition
    """The manifest is not valid JSON or lacks a field, or a field has the wrong shape."""


class ChainIdMismatch(DeploymentError):  # noqa: N818 -- the name reads as the condition
    """The endpoint serves another chain than the manifest (or the node) was made for."""

    def __init__(self, expected: int, found: int) -> None:
        self.expected = expected
        self.found = found
        super().__init__(f"the endpoint serves chain {found}, expected chain {expected}")


class CodeMissing(DeploymentError):  # noqa: N818 -- the name reads as the condition
    """No contract (or not the expected one) at an address the manifest names."""


class OutboxConflict(ChainError):  # noqa: N818 -- the name reads as the condition
    """An idempotency key already names a different transaction, or an unknown dependency."""


class TransactionFailed(ChainError):  # noqa: N818 -- the name reads as the condition
    """A transaction will not take effect.

    ``reason``: the revert reason (``"token_network: channel not open"``) or why it was
    dropped; ``tx_hash``: the transaction that reverted on chain (None when it failed at
    estimation, before anything was sent); ``dropped``: its nonce was used by another
    transaction, so none of its attempts can ever be mined.
    """

    def __init__(
        self, key: str, reason: str, tx_hash: bytes | None = None, dropped: bool = False
    ) -> None:
        self.key = key
        self.reason = reason
        self.tx_hash = tx_hash
        self.dropped = dropped
        where = f" in 0x{tx_hash.hex()}" if tx_hash is not None else ""
        super().__init__(f"transaction {key!r} failed{where}: {reason}")
