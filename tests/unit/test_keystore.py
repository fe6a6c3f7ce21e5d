"""offchain.node.keystore and `smartmesh account`: keystore v3 files as geth and ape write
them, opened and written for real (scrypt and pbkdf2, files on disk, modes checked).

New keys use the light KDF (n = 2**14) except in the one test that checks the default.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account as EthAccount

from offchain import cli
from offchain.node import keystore
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
from offchain.protocol.crypto import address_from_private_key

PASSWORD = "correct horse battery staple"
KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
KEY_ADDRESS = address_from_private_key(KEY)

# The Web3 Secret Storage definition's PBKDF2 test vector, as keythereum and Mist wrote it
# ("Crypto" capitalised, an address without 0x).
VECTOR_PASSWORD = "testpassword"
VECTOR_SECRET = bytes.fromhex("7a28b5ba57c53603b0b07b56bba752f7784bf506fa95edc395f5cf6c7514fe9d")
VECTOR_ADDRESS = "0x008AeEda4D805471dF9b2A5B0f38A0C3bCBA786b"
VECTOR: dict[str, Any] = {
    "address": "008aeeda4d805471df9b2a5b0f38a0c3bcba786b",
    "Crypto": {
        "cipher": "aes-128-ctr",
        "cipherparams": {"iv": "6087dab2f9fdbbfaddc31a909735c1e6"},
        "ciphertext": "5318b4d5bcd28de64ee5559e671353e16f075ecae9f99c7a79a38af5f869aa46",
        "kdf": "pbkdf2",
        "kdfparams": {
            "c": 262144,
            "dklen": 32,
            "prf": "hmac-sha256",
            "salt": "ae3cd4e7013836a3df6bd7241b12db061dbe2c6785853cce422d148a624ce0bd",
        },
        "mac": "517ead924a9d0dc3124507e3393d175ce3ff7c1e96529c6c555ce9e51205e9b2",
    },
    "id": "3198bc9c-6672-5ab3-d995-4942343ae5b6",
    "version": 3,
}

GETH_NAME = re.compile(r"UTC--\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{9}Z--[0-9a-f]{40}")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_json(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document))
    path.chmod(0o600)
    return path


def eth_account_file(path: Path, kdf: str, iterations: int, password: str = PASSWORD) -> Path:
    """A key file as ape (eth-account) writes it."""
    document = EthAccount.encrypt(KEY, password, kdf=kdf, iterations=iterations)
    return write_json(path, document)


# -- creating, listing, loading -----------------------------------------------------------


def test_new_account_round_trip(tmp_path: Path) -> None:
    directory = tmp_path / "home" / "keystore"
    account = keystore.new_account(directory, PASSWORD, light=True)

    assert account.path.parent == directory
    assert GETH_NAME.fullmatch(account.path.name)
    assert account.path.name.endswith(account.address.hex())
    assert mode(directory) == 0o700
    assert mode(account.path) == 0o600
    assert sorted(p.name for p in directory.iterdir()) == [account.path.name]  # no temp file

    document = json.loads(account.path.read_text())
    assert document["version"] == 3
    assert document["address"] == account.address.hex()  # lower case, as geth writes it
    crypto = document["crypto"]
    assert crypto["cipher"] == "aes-128-ctr"
    assert crypto["kdf"] == "scrypt"
    assert {k: crypto["kdfparams"][k] for k in ("n", "r", "p", "dklen")} == {
        "n": keystore.LIGHT_SCRYPT_N,
        "r": 8,
        "p": 1,
        "dklen": 32,
    }

    assert keystore.list_accounts(directory) == [account]
    key = keystore.load_key(None, directory, PASSWORD)
    assert address_from_private_key(key) == account.address
    # Every way of naming the account opens the same key.
    for which in (
        account.checksum,
        "0x" + account.address.hex(),
        account.address,
        account.path,
        str(account.path),
    ):
        assert keystore.load_key(which, directory, PASSWORD) == key
    # eth-account (ape's library) opens our file too.
    assert bytes(EthAccount.decrypt(account.path.read_text(), PASSWORD)) == key


def test_new_account_uses_geths_standard_scrypt_cost_by_default(tmp_path: Path) -> None:
    account = keystore.new_account(tmp_path, PASSWORD)
    params = json.loads(account.path.read_text())["crypto"]["kdfparams"]
    assert (params["n"], params["r"], params["p"]) == (2**18, 8, 1)


def test_keys_never_show_in_repr_str_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keystore.import_key(tmp_path, KEY.hex(), PASSWORD, light=True)
    key = keystore.load_key(None, tmp_path, PASSWORD)
    assert key == KEY and isinstance(key, bytes)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("key %s %r %s", key, key, [key])
    shown = " ".join((repr(key), str(key), f"{key}", caplog.text))
    assert KEY.hex() not in shown and "<hidden>" in shown
    assert KEY.hex() not in repr(keystore.list_accounts(tmp_path))


def test_several_accounts_must_be_named(tmp_path: Path) -> None:
    first = keystore.new_account(tmp_path, PASSWORD, light=True)
    second = keystore.new_account(tmp_path, PASSWORD, light=True)
    assert keystore.list_accounts(tmp_path) == [first, second]  # oldest first
    with pytest.raises(AmbiguousAccount, match="2 accounts") as raised:
        keystore.find_account(tmp_path)
    assert first.checksum in str(raised.value) and second.checksum in str(raised.value)
    assert keystore.find_account(tmp_path, second.checksum) == second


def test_two_files_of_one_account_are_ambiguous(tmp_path: Path) -> None:
    account = keystore.import_key(tmp_path, KEY.hex(), PASSWORD, light=True)
    copy = tmp_path / ("UTC--2000-01-01T00-00-00.000000000Z--" + account.address.hex())
    copy.write_bytes(account.path.read_bytes())
    copy.chmod(0o600)
    for which in (None, account.checksum):
        with pytest.raises(AmbiguousAccount, match="several key files"):
            keystore.load_key(which, tmp_path, PASSWORD)
    assert keystore.load_key(copy, tmp_path, PASSWORD) == KEY  # a file named is no question


def test_missing_keystore_unknown_and_absent_accounts(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    assert keystore.list_accounts(missing) == []
    with pytest.raises(KeystoreNotFound, match="no keystore directory"):
        keystore.load_key(None, missing, PASSWORD)
    with pytest.raises(KeystoreNotFound, match="no key file"):
        keystore.load_key(tmp_path / "UTC--x", tmp_path, PASSWORD)
    with pytest.raises(AccountNotFound, match="no account in keystore"):
        keystore.load_key(None, tmp_path, PASSWORD)
    keystore.new_account(tmp_path, PASSWORD, light=True)
    with pytest.raises(AccountNotFound, match=f"no key file for {VECTOR_ADDRESS}"):
        keystore.load_key(VECTOR_ADDRESS, tmp_path, PASSWORD)
    with pytest.raises(AccountNotFound, match="wrong EIP-55 checksum"):
        keystore.load_key("0x" + VECTOR_ADDRESS[2:].swapcase(), tmp_path, PASSWORD)


def test_wrong_password(tmp_path: Path) -> None:
    account = keystore.new_account(tmp_path, PASSWORD, light=True)
    with pytest.raises(WrongPassword) as raised:
        keystore.load_key(None, tmp_path, "Tr0ub4dor&3")
    message = str(raised.value)
    assert message.startswith(f"wrong password for keystore {account.checksum}")
    assert "Tr0ub4dor" not in message and PASSWORD not in message
    assert isinstance(raised.value, KeystoreError | ValueError)


# -- files other tools wrote --------------------------------------------------------------


def test_web3_secret_storage_test_vector(tmp_path: Path) -> None:
    """The definition's own vector: a file none of our code wrote."""
    path = write_json(tmp_path / "UTC--2016-03-22T12-57-55.920751759Z--008aee", VECTOR)
    [account] = keystore.list_accounts(tmp_path)
    assert account.checksum == VECTOR_ADDRESS
    assert keystore.load_key(VECTOR_ADDRESS, tmp_path, VECTOR_PASSWORD) == VECTOR_SECRET
    assert keystore.decrypt_keyfile(path, VECTOR_PASSWORD) == VECTOR_SECRET


def test_import_a_file_without_address_reencrypts_it(tmp_path: Path) -> None:
    source = {k: v for k, v in VECTOR.items() if k != "address"}
    path = write_json(tmp_path / "vector.json", source)
    target = tmp_path / "keystore"
    account = keystore.import_key(
        target, path, PASSWORD, source_password=VECTOR_PASSWORD, light=True
    )
    assert account.checksum == VECTOR_ADDRESS
    assert keystore.load_key(None, target, PASSWORD) == VECTOR_SECRET
    with pytest.raises(WrongPassword):  # the new file has the new password only
        keystore.load_key(None, target, VECTOR_PASSWORD)


@pytest.mark.parametrize(("kdf", "iterations"), [("scrypt", 2**14), ("pbkdf2", 4096)])
def test_ape_and_geth_style_files_open_in_place(tmp_path: Path, kdf: str, iterations: int) -> None:
    name = "UTC--2024-05-01T10-00-00.000000000Z--" + KEY_ADDRESS.hex()
    eth_account_file(tmp_path / name, kdf, iterations)
    [account] = keystore.list_accounts(tmp_path)
    assert account.address == KEY_ADDRESS
    assert keystore.load_key(None, tmp_path, PASSWORD) == KEY


@pytest.mark.parametrize(("kdf", "iterations"), [("scrypt", 2**14), ("pbkdf2", 4096)])
def test_import_keyfile(tmp_path: Path, kdf: str, iterations: int) -> None:
    source = eth_account_file(tmp_path / "ape.json", kdf, iterations, password="old password")
    target = tmp_path / "keystore"
    with pytest.raises(WrongPassword):
        keystore.import_key(target, source, PASSWORD, light=True)  # not the file's password
    assert not target.exists()  # a refusal changes nothing
    account = keystore.import_key(
        target, source, PASSWORD, source_password="old password", light=True
    )
    assert account.address == KEY_ADDRESS
    assert keystore.load_key(KEY_ADDRESS, target, PASSWORD) == KEY


def test_import_hex_bytes_and_hex_file(tmp_path: Path) -> None:
    for number, source in enumerate(
        ["0x" + KEY.hex(), KEY.hex().upper() + "\n", KEY, tmp_path / "relay.key"]
    ):
        (tmp_path / "relay.key").write_text(KEY.hex() + "\n")  # a relay's key file
        directory = tmp_path / f"ks{number}"
        account = keystore.import_key(directory, source, PASSWORD, light=True)
        assert account.address == KEY_ADDRESS
        assert keystore.load_key(None, directory, PASSWORD) == KEY


def test_import_twice_is_refused(tmp_path: Path) -> None:
    first = keystore.import_key(tmp_path, KEY.hex(), PASSWORD, light=True)
    before = sorted(tmp_path.iterdir())
    with pytest.raises(AccountExists, match=str(first.path)):
        keystore.import_key(tmp_path, KEY, PASSWORD, light=True)
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.parametrize(
    "source",
    ["0x1234", "00" * 32, "ff" * 32, "0x" + "zz" * 32, b"\x01" * 31],
)
def test_import_refuses_what_is_not_a_key(tmp_path: Path, source: str | bytes) -> None:
    with pytest.raises(InvalidKey) as raised:
        keystore.import_key(tmp_path / "ks", source, PASSWORD, light=True)
    if isinstance(source, str) and len(source) > 8:
        assert source not in str(raised.value)  # a key, even a wrong one, is not echoed
    assert not (tmp_path / "ks").exists()


def test_import_of_a_file_that_is_neither(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("my key is somewhere else\n")
    with pytest.raises(InvalidKey, match="neither a keystore v3 file nor a hex key"):
        keystore.import_key(tmp_path / "ks", path, PASSWORD)
    with pytest.raises(KeystoreNotFound):
        keystore.import_key(tmp_path / "ks", tmp_path / "absent.json", PASSWORD)


def test_empty_password_is_refused_for_new_keys(tmp_path: Path) -> None:
    with pytest.raises(PasswordError, match="empty password"):
        keystore.new_account(tmp_path / "ks", "")
    with pytest.raises(PasswordError, match="empty password"):
        keystore.import_key(tmp_path / "ks", KEY, "")
    assert not (tmp_path / "ks").exists()


# -- malformed files ----------------------------------------------------------------------


def _valid() -> dict[str, Any]:
    return json.loads(json.dumps(VECTOR))


def _crypto(change: dict[str, Any]) -> dict[str, Any]:
    document = _valid()
    document["Crypto"].update(change)
    return document


def _kdfparams(change: dict[str, Any]) -> dict[str, Any]:
    document = _valid()
    document["Crypto"]["kdfparams"].update(change)
    return document


SCRYPT = {"kdf": "scrypt", "kdfparams": {"n": 2**14, "r": 8, "p": 1, "dklen": 32, "salt": "00"}}

MALFORMED: list[tuple[str, object, str]] = [
    ("text", "hello", "not JSON"),
    ("truncated", json.dumps(VECTOR)[:100], "not JSON"),
    ("array", [VECTOR], "not a JSON object"),
    ("version 4", {**_valid(), "version": 4}, "version 4"),
    ("version text", {**_valid(), "version": "3"}, "version '3'"),
    ("no crypto", {"address": VECTOR["address"], "version": 3}, "no crypto"),
    ("bad address", {**_valid(), "address": "0x1234"}, "address is not 40 hex"),
    ("no address", {k: v for k, v in VECTOR.items() if k != "address"}, "no address"),
    ("cipher", _crypto({"cipher": "aes-256-gcm"}), "cipher 'aes-256-gcm'"),
    ("short mac", _crypto({"mac": "abcd"}), "mac is not 32 bytes"),
    ("iv", _crypto({"cipherparams": {"iv": "xyz"}}), "iv is not at most 16 bytes"),
    ("kdf", _crypto({"kdf": "argon2"}), "kdf 'argon2'"),
    ("prf", _kdfparams({"prf": "hmac-sha512"}), "prf 'hmac-sha512'"),
    ("rounds", _kdfparams({"c": 2**40}), "rounds"),
    ("dklen", _kdfparams({"dklen": 16}), "dklen 32"),
    ("scrypt n", _crypto({**SCRYPT, "kdfparams": {**SCRYPT["kdfparams"], "n": 1000}}), "power"),
    (
        "scrypt cost",
        _crypto({**SCRYPT, "kdfparams": {**SCRYPT["kdfparams"], "n": 2**24, "r": 8}}),
        "beyond what a node agrees to spend",
    ),
]


@pytest.mark.parametrize(("case", "content", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_files_are_named_and_skipped(
    tmp_path: Path, case: str, content: object, reason: str
) -> None:
    path = tmp_path / "UTC--2020-01-01T00-00-00.000000000Z--malformed"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    path.chmod(0o600)
    with pytest.raises(MalformedKeystore, match=re.escape(reason)) as raised:
        keystore.load_key(path, tmp_path, VECTOR_PASSWORD)
    assert str(path) in str(raised.value)
    found = keystore.scan(tmp_path)
    assert found.accounts == ()
    assert [s.path for s in found.skipped] == [path]
    assert reason in found.skipped[0].reason


def test_a_file_naming_another_account_is_malformed(tmp_path: Path) -> None:
    document = _valid()
    document["address"] = KEY_ADDRESS.hex()
    path = write_json(tmp_path / "swapped", document)
    with pytest.raises(MalformedKeystore, match=f"holds the key of {VECTOR_ADDRESS}"):
        keystore.load_key(path, tmp_path, VECTOR_PASSWORD)


def test_a_tampered_ciphertext_fails_its_mac(tmp_path: Path) -> None:
    document = _valid()
    text = document["Crypto"]["ciphertext"]
    document["Crypto"]["ciphertext"] = ("0" if text[0] != "0" else "1") + text[1:]
    path = write_json(tmp_path / "tampered", document)
    # The MAC cannot tell a wrong password from a changed file; geth says the same.
    with pytest.raises(WrongPassword):
        keystore.load_key(path, tmp_path, VECTOR_PASSWORD)


def test_listing_skips_other_files_with_a_note(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    account = keystore.new_account(tmp_path, PASSWORD, light=True)
    (tmp_path / "README").write_text("keys live here\n")
    (tmp_path / ".hidden.tmp").write_text("{}")
    (tmp_path / "backup").mkdir()
    (tmp_path / "huge").write_bytes(b"{" + b" " * keystore.MAX_KEYFILE_BYTES + b"}")
    with caplog.at_level(logging.INFO, logger="offchain.node.keystore"):
        assert keystore.list_accounts(tmp_path) == [account]
    skipped = {s.path.name: s.reason for s in keystore.scan(tmp_path).skipped}
    assert skipped == {
        "README": "not a keystore v3 file: not JSON",
        "backup": "a directory",
        "huge": "too large for a key file",
    }
    assert "README" in caplog.text and ".hidden" not in caplog.text


# -- permissions --------------------------------------------------------------------------


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_files_others_can_read_raise_a_warning(tmp_path: Path) -> None:
    account = keystore.new_account(tmp_path, PASSWORD, light=True)
    account.path.chmod(0o644)
    with pytest.warns(InsecurePermissions, match="chmod 600"):
        assert keystore.load_key(None, tmp_path, PASSWORD)
    tmp_path.chmod(0o755)
    with pytest.warns(InsecurePermissions, match="keystore directory .* chmod 700"):
        keystore.new_account(tmp_path, PASSWORD, light=True)


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_private_files_raise_no_warning(tmp_path: Path, recwarn: pytest.WarningsRecorder) -> None:
    keystore.new_account(tmp_path / "ks", PASSWORD, light=True)
    keystore.load_key(None, tmp_path / "ks", PASSWORD)
    assert not [w for w in recwarn if issubclass(w.category, InsecurePermissions)]


# -- passwords ----------------------------------------------------------------------------


def test_password_sources_in_order(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_bytes("pässword with spaces \r\nsecond line\n".encode())
    path.chmod(0o600)
    env = {keystore.PASSWORD_ENV: "from the environment"}
    assert keystore.read_password(path, environ=env) == "pässword with spaces "
    assert keystore.read_password(None, environ=env) == "from the environment"
    asked: list[str] = []

    def prompt(text: str) -> str:
        asked.append(text)
        return "typed"

    assert keystore.read_password(None, environ={}, prompt=prompt, interactive=True) == "typed"
    assert keystore.read_password(None, environ={}, prompt=prompt, interactive=True, confirm=True)
    assert len(asked) == 3
    with pytest.raises(PasswordError, match="no password: give --password-file"):
        keystore.read_password(None, environ={}, interactive=False)


def test_password_mistakes(tmp_path: Path) -> None:
    answers = iter(["one", "two"])
    with pytest.raises(PasswordError, match="differ"):
        keystore.read_password(
            None, environ={}, prompt=lambda _: next(answers), interactive=True, confirm=True
        )
    with pytest.raises(PasswordError, match="no such file"):
        keystore.read_password(tmp_path / "absent", environ={})
    bad = tmp_path / "latin1"
    bad.write_bytes(b"\xe9t\xe9\n")
    bad.chmod(0o600)
    with pytest.raises(PasswordError, match="not UTF-8"):
        keystore.read_password(bad)
    shared = tmp_path / "shared"
    shared.write_text("pw\n")
    shared.chmod(0o644)
    with pytest.warns(InsecurePermissions, match="password file"):
        assert keystore.read_password(shared) == "pw"


def test_unlock_finds_the_account_before_asking(tmp_path: Path) -> None:
    account = keystore.new_account(tmp_path, PASSWORD, light=True)
    asked: list[str] = []

    def prompt(text: str) -> str:
        asked.append(text)
        return PASSWORD

    found, key = keystore.unlock(tmp_path, None, environ={}, prompt=prompt, interactive=True)
    assert found == account and address_from_private_key(key) == account.address
    assert asked == [f"Password of {account.checksum}: "]
    with pytest.raises(AccountNotFound):
        keystore.unlock(tmp_path, VECTOR_ADDRESS, environ={}, prompt=prompt, interactive=True)
    assert len(asked) == 1  # no password asked for an account that is not there
    env = {keystore.PASSWORD_ENV: "wrong"}
    with pytest.raises(WrongPassword):
        keystore.unlock(tmp_path, account.address, environ=env)


def test_parse_address() -> None:
    raw = bytes.fromhex(VECTOR_ADDRESS[2:])
    assert keystore.parse_address(VECTOR_ADDRESS) == raw
    assert keystore.parse_address(VECTOR_ADDRESS.lower()) == raw
    assert keystore.parse_address("0x" + VECTOR_ADDRESS[2:].upper()) == raw
    assert keystore.checksum_address(raw) == VECTOR_ADDRESS
    for bad in (
        "0x1234",
        VECTOR_ADDRESS[2:],
        "0x" + "00" * 20,
        "0x" + VECTOR_ADDRESS[2:].swapcase(),
    ):
        with pytest.raises(NodeValidationError):
            keystore.parse_address(bad)


def test_default_keystore(tmp_path: Path) -> None:
    assert keystore.default_keystore({keystore.KEYSTORE_ENV: str(tmp_path)}) == tmp_path
    assert keystore.default_keystore({}) == Path.home() / ".smartmesh" / "keystore"


# -- smartmesh account --------------------------------------------------------------------


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_new_and_list(
    tmp_path: Path, password_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ks = tmp_path / "ks"
    status, out, _ = run(
        capsys, "account", "new", "--keystore", ks, "--password-file", password_file, "--lightkdf"
    )
    assert status == 0
    address, path = out.split()
    assert keystore.list_accounts(ks) == [
        keystore.Account(keystore.parse_address(address), Path(path))
    ]
    assert keystore.load_key(address, ks, PASSWORD)

    (ks / "notes.txt").write_text("not a key")
    status, out, err = run(capsys, "account", "list", "--keystore", ks)
    assert (status, out) == (0, f"{address} {path}\n")
    assert "note: skipped" in err and "notes.txt" in err


def test_cli_uses_environment_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(keystore.KEYSTORE_ENV, str(tmp_path / "ks"))
    monkeypatch.setenv(keystore.PASSWORD_ENV, PASSWORD)
    status, out, _ = run(capsys, "account", "new", "--lightkdf")
    assert status == 0
    [account] = keystore.list_accounts(tmp_path / "ks")
    assert out == f"{account.checksum} {account.path}\n"
    assert keystore.load_key(None, tmp_path / "ks", PASSWORD)


def test_cli_import_keyfile_and_hex(
    tmp_path: Path, password_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ks = tmp_path / "ks"
    source = write_json(tmp_path / "vector.json", VECTOR)
    vector_password = tmp_path / "vector-password"
    vector_password.write_text(VECTOR_PASSWORD)
    vector_password.chmod(0o600)
    common = ("--keystore", ks, "--password-file", password_file, "--lightkdf")

    status, _, err = run(capsys, "account", "import", source, *common)
    assert status == 1
    assert "wrong password for keystore" in err and "--keyfile-password-file" in err
    assert not ks.exists()

    status, out, _ = run(
        capsys, "account", "import", source, *common, "--keyfile-password-file", vector_password
    )
    assert status == 0 and out.startswith(VECTOR_ADDRESS + " ")

    hex_file = tmp_path / "key.hex"
    hex_file.write_text("0x" + KEY.hex() + "\n")
    status, out, _ = run(capsys, "account", "import", hex_file, *common)
    assert status == 0 and out.startswith(keystore.checksum_address(KEY_ADDRESS))
    assert keystore.load_key(KEY_ADDRESS, ks, PASSWORD) == KEY

    status, _, err = run(capsys, "account", "import", hex_file, *common)
    assert status == 1 and "already in keystore" in err


def test_cli_import_from_stdin(
    tmp_path: Path,
    password_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(KEY.hex() + "\n"))
    status, out, _ = run(
        capsys,
        "account",
        "import",
        "-",
        "--keystore",
        tmp_path,
        "--password-file",
        password_file,
        "--lightkdf",
    )
    assert status == 0 and out.startswith(keystore.checksum_address(KEY_ADDRESS))


def test_cli_refuses_a_key_on_the_command_line(
    tmp_path: Path, password_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    where = ("--keystore", tmp_path / "ks", "--password-file", password_file)
    status, out, err = run(capsys, "account", "import", KEY.hex(), *where)
    assert (status, out) == (1, "")
    assert "shell history" in err and KEY.hex() not in err
    assert not (tmp_path / "ks").exists()


def test_cli_without_a_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(keystore.PASSWORD_ENV, raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal
    status, _, err = run(capsys, "account", "new", "--keystore", tmp_path / "ks")
    assert status == 1
    assert err.startswith("smartmesh account: error: no password")
    assert not (tmp_path / "ks").exists()


def test_cli_list_of_an_empty_keystore(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "account", "list", "--keystore", tmp_path / "none")
    assert (status, out) == (0, "")
    assert "no accounts in" in err


def test_a_keyfile_with_a_15_byte_iv__opens(tmp_path: Path) -> None:
    # eth-keyfile writes the IV as an unpadded number: one file in 256 has 15 bytes.
    from eth_keyfile import create_keyfile_json  # noqa: PLC0415

    for _ in range(20_000):
        made = create_keyfile_json(KEY, b"pw", kdf="pbkdf2", iterations=2)
        if len(made["crypto"]["cipherparams"]["iv"]) < 32:
            break
    else:
        pytest.skip("no short IV drawn")
    path = tmp_path / "short-iv.json"
    path.write_text(json.dumps(made))
    path.chmod(0o600)
    assert keystore.decrypt_keyfile(path, "pw") == KEY
