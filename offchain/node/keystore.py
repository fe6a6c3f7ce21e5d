"""The node's account keys: Ethereum keystore v3 files, as geth and ape write them.

Belongs here: creating, importing, listing and opening encrypted key files in a keystore
directory; finding the password (a file, ``SMARTMESH_PASSWORD``, or a prompt on a
terminal); the address helpers the keystore's edge needs (EIP-55 checksums).

Format and choices (docs/operator.md §12, "Keys"):

- A key file is the Web3 Secret Storage JSON, version 3 (``aes-128-ctr``, a keccak256 MAC,
  ``scrypt`` or ``pbkdf2`` with ``hmac-sha256``), so geth, ape and any wallet open ours and
  we open theirs. New files use scrypt with geth's standard parameters (n = 2**18, r = 8,
  p = 1: about a second and 256 MiB to try one password); ``light=True`` uses n = 2**14
  (geth's ``--lightkdf``) for tests and throwaway accounts.
- A file is named as geth names it, ``UTC--<ISO time with '-' for ':'>--<address>``; it is
  written to a hidden temporary file (mode 0600), synced, read back and decrypted (as geth
  does: a file we cannot open again must never replace nothing), then renamed into place.
  The directory is created with mode 0700.
- Opening a file checks its shape first (a clear ``MalformedKeystore`` rather than a
  ``KeyError`` deep in a library), bounds the KDF's cost (a crafted file must not make the
  node spend gigabytes or hours), and checks that the key matches the address the file
  names. A key file or directory other users can read raises an ``InsecurePermissions``
  warning; it still opens.
- Keys come back as ``SecretKey``, a ``bytes`` whose ``repr`` and ``str`` hide it, so a
  stray log line or traceback never prints one. Passwords are never logged, and no error
  message contains a password or a key.

Does not belong here: signing (``offchain.protocol.crypto``), the command line
(``offchain.cli``), where the keystore is configured (``offchain.node.config``).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import re
import secrets
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, NamedTuple, TypeGuard

from offchain.node.errors import (
    AccountExists,
    AccountNotFound,
    AmbiguousAccount,
    InsecurePermissions,
    InvalidKey,
    KeystoreError,
    KeystoreNotFound,
    MalformedKeystore,
    NodeValidationError,
    PasswordError,
    WrongPassword,
)
from offchain.protocol.crypto import SECP256K1_N, address_from_private_key, keccak256

log = logging.getLogger(__name__)

DEFAULT_SCRYPT_N: Final = 2**18
"""geth's standard scrypt cost: about 1 s and 256 MiB per password tried."""
LIGHT_SCRYPT_N: Final = 2**14
"""geth's ``--lightkdf``: for tests and throwaway accounts only."""
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1

MAX_SCRYPT_MEMORY: Final = 2**31
"""Largest scrypt memory (128 * n * r bytes) we agree to spend opening a file: 8x geth's
standard. A file asking for more is refused as malformed, not allowed to exhaust memory."""
MAX_PBKDF2_ROUNDS: Final = 2**24
"""Largest PBKDF2 round count we run (16 x eth-account's default of 10**6)."""
MAX_KEYFILE_BYTES: Final = 64 * 1024
"""A keystore file is about 500 bytes; anything this large is not one."""

PASSWORD_ENV: Final = "SMARTMESH_PASSWORD"
KEYSTORE_ENV: Final = "SMARTMESH_KEYSTORE"
DEFAULT_KEYSTORE: Final = Path("~/.smartmesh/keystore")

_ADDRESS_RE: Final = re.compile(r"0x[0-9a-fA-F]{40}")
_HEX_KEY_RE: Final = re.compile(r"(0[xX])?[0-9a-fA-F]{64}")
_KEYISH_RE: Final = re.compile(r"0[xX]\w*|[0-9a-fA-F]+|\w{60,}")


class SecretKey(bytes):
    """A 32-byte private key: ``bytes`` everywhere, but ``repr`` and ``str`` never show it.

    ``key.hex()`` still gives the digits: asking for them is deliberate, printing an
    object by accident is not.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "SecretKey(<hidden>)"

    __str__ = __repr__


class Account(NamedTuple):
    """One key file of a keystore: its account's 20-byte address and the file."""

    address: bytes
    path: Path

    @property
    def checksum(self) -> str:
        """The address in EIP-55 form."""
        return checksum_address(self.address)

    def __repr__(self) -> str:
        return f"Account(address={self.checksum}, path={str(self.path)!r})"


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file of the keystore directory that is not a keystore v3 file, and why."""

    path: Path
    reason: str


@dataclass(frozen=True, slots=True)
class Scan:
    """What a keystore directory holds: accounts in file-name order (geth's names put the
    oldest first), and the files that are not key files."""

    accounts: tuple[Account, ...]
    skipped: tuple[Skipped, ...]


# -- addresses ----------------------------------------------------------------------------


def checksum_address(address: bytes) -> str:
    """EIP-55: ``0x`` and 40 hex digits, upper case where the hash of the digits says."""
    digits = address.hex()
    digest = keccak256(digits.encode("ascii")).hex()
    return "0x" + "".join(
        c.upper() if int(h, 16) >= 8 else c for c, h in zip(digits, digest[:40], strict=True)
    )


def parse_address(text: str, what: str = "address") -> bytes:
    """20 bytes from ``0x`` and 40 hex digits; a mixed-case text must be a valid EIP-55
    checksum (it catches typos). The zero address is refused."""
    if not isinstance(text, str) or not _ADDRESS_RE.fullmatch(text):
        raise NodeValidationError(f"{what}: expected 0x and 40 hex digits, got {text!r}")
    digits = text[2:]
    address = bytes.fromhex(digits)
    mixed = digits not in (digits.lower(), digits.upper())
    if mixed and checksum_address(address) != text:
        raise NodeValidationError(f"{what}: {text} has a wrong EIP-55 checksum (a typo?)")
    if address == bytes(20):
        raise NodeValidationError(f"{what}: the zero address is not an account")
    return address


def looks_like_private_key(text: str) -> bool:
    """64 hex digits (``0x`` allowed): what a command line must refuse to take as an
    argument, since the shell history and ``ps`` would keep it."""
    return bool(_HEX_KEY_RE.fullmatch(text.strip()))


def looks_like_keyfile(path: Path) -> bool:
    """A readable file that starts like a JSON object (so it is opened as a keystore file,
    not read as a key in hex)."""
    try:
        with Path(path).expanduser().open("rb") as handle:
            return handle.read(64).lstrip().startswith(b"{")
    except OSError:
        return False


def parse_private_key(text: str, where: str = "private key") -> SecretKey:
    """A key from 64 hex digits (``0x`` allowed, surrounding blanks ignored).

    The message of the ``InvalidKey`` it raises never repeats the text.
    """
    text = text.strip()
    if not _HEX_KEY_RE.fullmatch(text):
        raise InvalidKey(f"{where}: expected 64 hex digits")
    return _checked_key(bytes.fromhex(text[-64:]), where)


def _checked_key(raw: bytes, where: str) -> SecretKey:
    if len(raw) != 32 or not 0 < int.from_bytes(raw, "big") < SECP256K1_N:
        raise InvalidKey(f"{where}: a private key is 32 bytes within 1..n-1 of secp256k1")
    return SecretKey(raw)


# -- passwords ----------------------------------------------------------------------------


def read_password(
    password_file: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    confirm: bool = False,
    prompt: Callable[[str], str] | None = None,
    interactive: bool | None = None,
    purpose: str = "Password",
) -> str:
    """The password from, in this order: ``password_file`` (its first line, as geth reads
    it), the environment variable ``SMARTMESH_PASSWORD``, or a prompt when stdin is a
    terminal (twice when ``confirm``). ``PasswordError`` when there is no source.

    ``prompt`` (default ``getpass.getpass``) and ``interactive`` (default: stdin is a
    terminal) exist for callers with their own terminal handling.
    """
    if password_file is not None:
        return _read_password_file(Path(password_file).expanduser())
    env = os.environ if environ is None else environ
    if PASSWORD_ENV in env:
        return env[PASSWORD_ENV]
    if interactive is None:
        interactive = sys.stdin is not None and sys.stdin.isatty()
    if not interactive:
        raise PasswordError(
            f"no password: give --password-file, set {PASSWORD_ENV}, "
            "or run in a terminal to be asked"
        )
    ask = prompt or getpass.getpass
    password = ask(f"{purpose}: ")
    if confirm and ask("Repeat the password: ") != password:
        raise PasswordError("the two passwords differ")
    return password


def _read_password_file(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PasswordError(f"password file {path}: no such file") from None
    except OSError as exc:
        raise PasswordError(f"password file {path}: {exc.strerror}") from None
    _warn_if_exposed(path, 0o077, "password file", "chmod 600")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PasswordError(f"password file {path}: not UTF-8 text") from None
    # geth's rule: the first line is the password; a Windows line end is not part of it.
    return text.split("\n", 1)[0].removesuffix("\r")


def _check_new_password(password: str) -> None:
    if not isinstance(password, str):
        raise PasswordError("a password is text")
    if not password:
        raise PasswordError("empty password: a key file without one protects nothing")


# -- the directory ------------------------------------------------------------------------


def default_keystore(environ: Mapping[str, str] | None = None) -> Path:
    """``SMARTMESH_KEYSTORE`` if set, else ``~/.smartmesh/keystore`` (``~`` expanded)."""
    env = os.environ if environ is None else environ
    value = env.get(KEYSTORE_ENV)
    return Path(value).expanduser() if value else DEFAULT_KEYSTORE.expanduser()


def scan(directory: Path | str) -> Scan:
    """The accounts of ``directory`` and the files skipped (with the reason).

    A directory that does not exist holds nothing. Hidden files (our temporary files among
    them) are ignored without a note; any other file that is not a keystore v3 file is
    skipped with one.
    """
    directory = Path(directory).expanduser()
    if not directory.exists():
        return Scan((), ())
    if not directory.is_dir():
        raise KeystoreNotFound(f"keystore {directory} is not a directory")
    accounts: list[Account] = []
    skipped: list[Skipped] = []
    for path in sorted(directory.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir():
            skipped.append(Skipped(path, "a directory"))
            continue
        try:
            accounts.append(read_account(path))
        except (MalformedKeystore, KeystoreNotFound) as exc:
            skipped.append(Skipped(path, _reason(exc, path)))
    return Scan(tuple(accounts), tuple(skipped))


def list_accounts(directory: Path | str) -> list[Account]:
    """The accounts of ``directory``, oldest file first; other files are skipped, with a
    log note each (``scan`` returns the notes)."""
    result = scan(directory)
    for item in result.skipped:
        log.info("keystore: skipped %s: %s", item.path, item.reason)
    return list(result.accounts)


def find_account(directory: Path | str, which: str | bytes | Path | None = None) -> Account:
    """The key file of ``which``: an address (``0x…`` text or 20 bytes), a key file's path,
    or ``None`` for the keystore's only account.

    ``AccountNotFound`` when no file holds it (or the keystore is empty),
    ``AmbiguousAccount`` when several do (or ``None`` and several accounts),
    ``KeystoreNotFound`` for a path or keystore directory that does not exist.
    """
    directory = Path(directory).expanduser()
    if isinstance(which, Path) or (
        isinstance(which, str) and not _ADDRESS_RE.fullmatch(which.strip())
    ):
        path = Path(which).expanduser()
        if not path.exists():
            hint = " (an address is 0x and 40 hex digits)" if str(which).startswith("0x") else ""
            raise KeystoreNotFound(f"no key file {path}{hint}")
        return read_account(path)
    if not directory.is_dir():
        raise KeystoreNotFound(
            f"no keystore directory {directory} (create an account: smartmesh account new)"
        )
    accounts = list_accounts(directory)
    if which is None:
        if not accounts:
            raise AccountNotFound(
                f"no account in keystore {directory} (smartmesh account new or import)"
            )
        if len({a.address for a in accounts}) > 1:
            names = ", ".join(a.checksum for a in accounts)
            raise AmbiguousAccount(
                f"{len(accounts)} accounts in keystore {directory}: choose one with "
                f"--account ({names})"
            )
        matches = accounts
        label = accounts[0].checksum
    else:
        address = _address_of(which)
        label = checksum_address(address)
        matches = [a for a in accounts if a.address == address]
        if not matches:
            raise AccountNotFound(f"no key file for {label} in keystore {directory}")
    if len(matches) > 1:
        paths = ", ".join(str(a.path) for a in matches)
        raise AmbiguousAccount(
            f"several key files for {label}: {paths}; keep one, or name the file"
        )
    return matches[0]


def _address_of(which: str | bytes) -> bytes:
    if isinstance(which, bytes):
        if len(which) != 20:
            raise AccountNotFound("an address is 20 bytes")
        return which
    try:
        return parse_address(which.strip(), "account")
    except NodeValidationError as exc:
        raise AccountNotFound(str(exc)) from None


def _ensure_directory(directory: Path) -> Path:
    directory = directory.expanduser()
    if directory.exists():
        if not directory.is_dir():
            raise KeystoreError(f"keystore {directory} is not a directory")
        _warn_if_exposed(directory, 0o077, "keystore directory", "chmod 700")
        return directory
    try:
        directory.mkdir(mode=0o700, parents=True)
        directory.chmod(0o700)  # the mode of mkdir is filtered by the umask
    except OSError as exc:
        raise KeystoreError(f"cannot create keystore {directory}: {exc.strerror}") from None
    return directory


def _warn_if_exposed(path: Path, mask: int, what: str, fix: str) -> None:
    if os.name != "posix":
        return
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return
    if mode & mask:
        warnings.warn(
            InsecurePermissions(
                f"{what} {path} is open to other users (mode {mode:03o}); {fix} it"
            ),
            stacklevel=3,
        )


# -- creating and importing ---------------------------------------------------------------


def new_account(directory: Path | str, password: str, *, light: bool = False) -> Account:
    """A new account from a random key (``secrets``), stored encrypted in ``directory``."""
    _check_new_password(password)
    while True:
        raw = secrets.token_bytes(32)
        if 0 < int.from_bytes(raw, "big") < SECP256K1_N:
            break
    return _store(Path(directory), SecretKey(raw), password, light)


def import_key(
    directory: Path | str,
    source: str | bytes | Path,
    password: str,
    *,
    source_password: str | None = None,
    light: bool = False,
) -> Account:
    """Store an existing key in ``directory``, encrypted with ``password``.

    ``source``: the key as 64 hex digits (text) or 32 bytes, or a file: a keystore v3 file
    (geth, ape, a wallet; opened with ``source_password``, by default ``password``) or a
    text file holding the key in hex (geth's ``account import``, a relay's key file). The
    key is encrypted afresh, with this keystore's KDF, in a file of its own.
    ``AccountExists`` if the keystore already holds this account.
    """
    _check_new_password(password)
    key = _key_from_source(source, password if source_password is None else source_password)
    directory = Path(directory).expanduser()
    address = address_from_private_key(key)
    existing = [a for a in scan(directory).accounts if a.address == address]
    if existing:
        raise AccountExists(
            f"{checksum_address(address)} is already in keystore {directory}: {existing[0].path}"
        )
    return _store(directory, key, password, light)


def _key_from_source(source: str | bytes | Path, password: str) -> SecretKey:
    if isinstance(source, bytes):
        return _checked_key(bytes(source), "private key")
    if isinstance(source, str):
        text = source.strip()
        if _HEX_KEY_RE.fullmatch(text):
            return parse_private_key(text)
        if not Path(text).expanduser().exists() and _KEYISH_RE.fullmatch(text):
            # Meant as a key (with a typo?): say so without repeating it, as a path would.
            raise InvalidKey("private key: expected 64 hex digits")
        source = Path(text)
    path = source.expanduser()
    data = _read_small(path, "key file")
    if data.lstrip().startswith(b"{"):  # as looks_like_keyfile
        named, keyfile = _parse_keyfile_any(data, path)
        return _decrypt(keyfile, password, named, path)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        text = ""
    return parse_private_key(text, f"{path}: neither a keystore v3 file nor a hex key;")


def _store(directory: Path, key: SecretKey, password: str, light: bool) -> Account:
    directory = _ensure_directory(directory)
    address = address_from_private_key(key)
    keyfile = _encrypt(key, password, LIGHT_SCRYPT_N if light else DEFAULT_SCRYPT_N)
    data = json.dumps(keyfile, separators=(",", ":")).encode("ascii")
    path = directory / _file_name(address)
    # mkstemp opens with O_EXCL and mode 0600; the leading dot hides it from scans.
    fd, tmp_name = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=directory)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # Read back and open what is on disk before it becomes the account's file.
        stored_address, stored = _parse_keyfile(tmp.read_bytes(), tmp)
        if _decrypt(stored, password, stored_address, tmp) != key:
            raise MalformedKeystore(f"{tmp}: the written file does not hold the key")
        if path.exists():  # two files in one nanosecond: never overwrite a key
            raise AccountExists(f"{path} exists")
        tmp.rename(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(directory)
    return Account(address, path)


def _encrypt(key: SecretKey, password: str, scrypt_n: int) -> dict[str, Any]:
    from eth_account import Account as EthAccount  # noqa: PLC0415 -- 0.4 s, only when used

    keyfile = EthAccount.encrypt(bytes(key), password, kdf="scrypt", iterations=scrypt_n)
    # geth writes the address in lower case; eth-account in mixed case. Either opens
    # everywhere; lower case keeps our files byte-for-byte geth's shape.
    keyfile["address"] = str(keyfile["address"]).lower()
    return keyfile


def _file_name(address: bytes) -> str:
    now = time.time_ns()
    stamp = datetime.fromtimestamp(now // 10**9, tz=UTC)
    return f"UTC--{stamp:%Y-%m-%dT%H-%M-%S}.{now % 10**9:09d}Z--{address.hex()}"


def _fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# -- opening ------------------------------------------------------------------------------


def read_account(path: Path | str) -> Account:
    """The account of one key file, from its shape alone (no password, no decryption)."""
    path = Path(path).expanduser()
    address, _ = _parse_keyfile(_read_small(path, "key file"), path)
    return Account(address, path)


def decrypt_keyfile(path: Path | str, password: str) -> SecretKey:
    """The key in one key file. ``WrongPassword``, ``MalformedKeystore``,
    ``KeystoreNotFound``; an ``InsecurePermissions`` warning if others can read it."""
    path = Path(path).expanduser()
    address, keyfile = _parse_keyfile(_read_small(path, "key file"), path)
    _warn_if_exposed(path, 0o077, "key file", "chmod 600")
    return _decrypt(keyfile, password, address, path)


def load_key(
    path_or_address: str | bytes | Path | None, directory: Path | str, password: str
) -> SecretKey:
    """The private key of an account of ``directory`` (``find_account`` says which)."""
    account = find_account(directory, path_or_address)
    return decrypt_keyfile(account.path, password)


def unlock(
    directory: Path | str,
    which: str | bytes | Path | None,
    password_file: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    prompt: Callable[[str], str] | None = None,
    interactive: bool | None = None,
) -> tuple[Account, SecretKey]:
    """What a node does at start: find the account (``find_account``; before any prompt,
    so a wrong ``--account`` fails at once), get its password (``read_password``, the
    prompt naming the account), and open its file."""
    account = find_account(directory, which)
    password = read_password(
        password_file,
        environ=environ,
        prompt=prompt,
        interactive=interactive,
        purpose=f"Password of {account.checksum}",
    )
    return account, decrypt_keyfile(account.path, password)


def _read_small(path: Path, what: str) -> bytes:
    try:
        if path.stat().st_size > MAX_KEYFILE_BYTES:
            raise MalformedKeystore(f"{path}: too large for a {what}")
        return path.read_bytes()
    except FileNotFoundError:
        raise KeystoreNotFound(f"no {what} {path}") from None
    except IsADirectoryError:
        raise MalformedKeystore(f"{path}: a directory, not a {what}") from None
    except OSError as exc:
        raise KeystoreError(f"cannot read {what} {path}: {exc.strerror}") from None


def _parse_keyfile(data: bytes, path: Path) -> tuple[bytes, dict[str, Any]]:
    """(address, the JSON with lower-case keys) of a keystore v3 file, or
    ``MalformedKeystore`` naming the first thing wrong."""
    address, keyfile = _parse_keyfile_any(data, path)
    if address is None:
        raise MalformedKeystore(f"{path}: not a keystore v3 file: no address")
    return address, keyfile


def _parse_keyfile_any(data: bytes, path: Path) -> tuple[bytes | None, dict[str, Any]]:
    """``_parse_keyfile`` for a file that may leave out its address (the Web3 Secret
    Storage test vectors do; the key then says whose it is)."""

    def bad(reason: str) -> MalformedKeystore:
        return MalformedKeystore(f"{path}: not a keystore v3 file: {reason}")

    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise bad("not JSON") from None
    if not isinstance(document, dict):
        raise bad("not a JSON object")
    keyfile = _lower_keys(document)
    version = keyfile.get("version")
    if version != 3 or isinstance(version, bool):
        raise bad(f"version {version!r}, expected 3")
    address: bytes | None = None
    if "address" in keyfile:
        text = keyfile["address"]
        text = text.lower().removeprefix("0x") if isinstance(text, str) else ""
        if not re.fullmatch(r"[0-9a-f]{40}", text):
            raise bad("the address is not 40 hex digits")
        address = bytes.fromhex(text)
    crypto = keyfile.get("crypto")
    if not isinstance(crypto, dict):
        raise bad("no crypto section")
    if crypto.get("cipher") != "aes-128-ctr":
        raise bad(f"cipher {crypto.get('cipher')!r}, expected 'aes-128-ctr'")
    params = crypto.get("cipherparams")
    # eth-keyfile writes the IV as a number's big-endian bytes without padding: one file
    # in 256 has a 15-byte IV (its decrypt takes it as that number), so accept <= 16.
    iv_length = _hex_length(params.get("iv")) if isinstance(params, dict) else None
    if iv_length is None or not 1 <= iv_length <= 16:
        raise bad("cipherparams.iv is not at most 16 bytes of hex")
    if _hex_length(crypto.get("ciphertext")) != 32:
        raise bad("ciphertext is not 32 bytes of hex")
    if _hex_length(crypto.get("mac")) != 32:
        raise bad("mac is not 32 bytes of hex")
    kdf = crypto.get("kdf")
    kdfparams = crypto.get("kdfparams")
    if not isinstance(kdfparams, dict):
        raise bad("no kdfparams")
    if _hex_length(kdfparams.get("salt")) is None or kdfparams.get("dklen") != 32:
        raise bad("kdfparams need a hex salt and dklen 32")
    if kdf == "scrypt":
        n, r, p = kdfparams.get("n"), kdfparams.get("r"), kdfparams.get("p")
        if not (_is_int(n) and _is_int(r) and _is_int(p)):
            raise bad("scrypt needs integer n, r, p")
        if min(n, r, p) < 1:
            raise bad("scrypt n, r, p must be positive")
        if n < 2 or n & (n - 1):
            raise bad("scrypt n is not a power of two")
        if 128 * n * r > MAX_SCRYPT_MEMORY or p > 16:
            raise bad(f"scrypt cost n={n} r={r} p={p} beyond what a node agrees to spend")
    elif kdf == "pbkdf2":
        rounds = kdfparams.get("c")
        if kdfparams.get("prf") != "hmac-sha256":
            raise bad(f"pbkdf2 prf {kdfparams.get('prf')!r}, expected 'hmac-sha256'")
        if not _is_int(rounds):
            raise bad(f"pbkdf2 rounds {rounds!r} is not an integer")
        if not 1 <= rounds <= MAX_PBKDF2_ROUNDS:
            raise bad(f"pbkdf2 rounds {rounds!r} not within 1..{MAX_PBKDF2_ROUNDS}")
    else:
        raise bad(f"kdf {kdf!r}, expected 'scrypt' or 'pbkdf2'")
    return address, keyfile


def _lower_keys(value: dict[str, Any]) -> dict[str, Any]:
    # geth reads "Crypto" (old Mist files) as "crypto"; so does eth-keyfile.
    return {
        (k.lower() if isinstance(k, str) else k): _lower_keys(v) if isinstance(v, dict) else v
        for k, v in value.items()
    }


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _hex_length(value: object) -> int | None:
    if not isinstance(value, str):
        return None
    text = value.removeprefix("0x")
    if len(text) % 2 or not re.fullmatch(r"[0-9a-fA-F]*", text):
        return None
    return len(text) // 2


def _decrypt(
    keyfile: dict[str, Any], password: str, address: bytes | None, path: Path
) -> SecretKey:
    from eth_account import Account as EthAccount  # noqa: PLC0415 -- 0.4 s, only when used

    if not isinstance(password, str):
        raise PasswordError("a password is text")
    label = "" if address is None else f" {checksum_address(address)}"
    try:
        raw = bytes(EthAccount.decrypt(keyfile, password))
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise WrongPassword(f"wrong password for keystore{label} ({path})") from None
        raise MalformedKeystore(f"{path}: cannot be decrypted: {exc}") from None
    except (KeyError, TypeError, AssertionError) as exc:
        raise MalformedKeystore(f"{path}: cannot be decrypted: {exc!r}") from None
    try:
        key = _checked_key(raw, str(path))
    except InvalidKey as exc:
        raise MalformedKeystore(str(exc)) from None
    holder = address_from_private_key(key)
    if address is not None and holder != address:
        raise MalformedKeystore(
            f"{path}: holds the key of {checksum_address(holder)}, not of{label} it names"
        )
    return key


def _reason(exc: Exception, path: Path) -> str:
    # "…/file: not a keystore v3 file: not JSON" -> "not a keystore v3 file: not JSON"
    return str(exc).removeprefix(f"{path}: ")
