"""Files of a relay on disk: its private key and its pending-store snapshot.

Belongs here: reading a key file (64 hex digits, optional ``0x``) or creating one with
fresh randomness and mode 0600; writing a snapshot atomically (a temporary file in the
same folder, fsync, rename over the old one, fsync of the folder), so a crash at any
instant leaves either the old snapshot or the new one, never a torn file; and a lock file
beside the snapshot, so two relays never share one store (each would resend the other's
messages and forget what the other delivered).

Does not belong here: what a snapshot contains (``store``), when to write one
(``runtime``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from mesh_relay.errors import ConfigError, MeshUnrecoverableError
from mesh_relay.identity import SECP256K1_N


def load_or_create_key(path: Path) -> tuple[bytes, bool]:
    """The 32-byte private key in ``path``, created if missing; True when created."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return _create_key(path), True
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read key file {path}: {exc}") from exc
    return parse_key(text, str(path)), False


def parse_key(text: str, where: str = "key") -> bytes:
    """A private key from 64 hex digits (``0x`` allowed); ``ConfigError`` otherwise."""
    digits = text[2:] if text.startswith(("0x", "0X")) else text
    try:
        key = bytes.fromhex(digits)
    except ValueError:
        raise ConfigError(f"{where}: not hex") from None
    if len(key) != 32 or not 0 < int.from_bytes(key, "big") < SECP256K1_N:
        raise ConfigError(f"{where}: a private key is 32 bytes within 1..n-1")
    return key


def _create_key(path: Path) -> bytes:
    while True:
        key = os.urandom(32)
        if 0 < int.from_bytes(key, "big") < SECP256K1_N:
            break
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two relays started at once with the same path must not both write one.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return parse_key(path.read_text(encoding="ascii").strip(), str(path))
    except OSError as exc:
        raise ConfigError(f"cannot create key file {path}: {exc}") from exc
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key.hex() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return key


class SnapshotFile:
    """One snapshot path, held under an exclusive lock while the relay runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")
        self._lock_fd: int | None = None

    def lock(self) -> None:
        """Take the lock file; ``ConfigError`` if another process holds it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot open lock file {self._lock_path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ConfigError(
                f"{self.path} is in use by another relay (lock {self._lock_path})"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def load(self) -> bytes | None:
        """The last snapshot written, or None when there is none yet."""
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise MeshUnrecoverableError(f"cannot read snapshot {self.path}: {exc}") from exc

    def save(self, data: bytes) -> None:
        """Replace the snapshot atomically and durably (may run in a worker thread)."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise MeshUnrecoverableError(f"cannot write snapshot {self.path}: {exc}") from exc
