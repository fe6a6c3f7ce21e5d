"""The node's exceptions (DESIGN.md §3, convention 5).

Taxonomy: ``NodeError`` is the base of everything this package raises on purpose.

- Validation (``NodeValidationError``, also a ``ValueError``): bad input at an edge, which
  changed nothing. ``ConfigError`` names the setting (``setting``) and where its value came
  from (a flag, an environment variable, the file); ``KeystoreError`` and its children are
  the keystore's refusals (wrong password, unknown or ambiguous account, a file that is not
  a keystore). The operator must act; the same call gives the same answer.
- Recoverable (``NodeRecoverableError``): the input was fine but the node cannot act now.
- Unrecoverable (``NodeUnrecoverableError``): stored state is unusable; the operator must
  intervene. ``StoreError`` (a corrupt or foreign database, a schema newer than the code),
  ``StoreLockedError`` (another process holds the database).

``InsecurePermissions`` is a warning (``warnings.warn``), not an error: a key file or a
password file others can read still works, but the operator should know.

Messages never contain a password, a private key or an API token. Service-level refusals
are ``offchain.node.service.ServiceError`` (with a stable code, for the API); chain errors
live in ``offchain.chain.errors``.
"""

from __future__ import annotations


class NodeError(Exception):
    """Base of the node's own errors."""


class NodeValidationError(NodeError, ValueError):
    """Input at an edge (a setting, a file, an argument) that breaks a format or range rule."""


class NodeRecoverableError(NodeError):
    """The node cannot do this now; retrying later may succeed."""


class NodeUnrecoverableError(NodeError):
    """Stored state cannot be used; the operator must intervene."""


class StoreError(NodeUnrecoverableError):
    """The database cannot be used: corrupt, foreign, or newer than this release."""


class StoreLockedError(StoreError):
    """Another process has the database open."""


class ConfigError(NodeValidationError):
    """A setting whose value is malformed, out of range or inconsistent with another.

    ``setting`` is the setting's name (``api_port``) when one setting is to blame.
    """

    def __init__(self, message: str, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class KeystoreError(NodeValidationError):
    """The keystore refused: see the children. The message says what to do."""


class PasswordError(KeystoreError):
    """No password could be had (no file, no variable, no terminal), or it is unusable."""


class WrongPassword(PasswordError):  # noqa: N818 -- the name reads as the condition
    """The password does not open this keystore file (its MAC does not match)."""


class KeystoreNotFound(KeystoreError):  # noqa: N818
    """The keystore directory or the named key file does not exist."""


class AccountNotFound(KeystoreError):  # noqa: N818
    """No key file in the keystore holds the account asked for (or none at all)."""


class AmbiguousAccount(KeystoreError):  # noqa: N818
    """Several accounts (or several files of one account) fit; the caller must choose."""


class AccountExists(KeystoreError):  # noqa: N818
    """An import of an account whose key the keystore already holds."""


class MalformedKeystore(KeystoreError):  # noqa: N818
    """A file that is not an Ethereum keystore v3 this node can open (or is corrupt)."""


class InvalidKey(KeystoreError):  # noqa: N818
    """A private key that is not 32 bytes within 1..n-1 of secp256k1."""


class InsecurePermissions(UserWarning):
    """A key file, keystore directory or password file that other users can read."""
