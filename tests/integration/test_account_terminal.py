"""`smartmesh account` at a real terminal: passwords asked without echo, twice for a new
key, and a key file's own password asked apart from the new one.

Each test runs the command in a child process whose stdin, stdout and stderr are a
pseudo-terminal, types into it as a person would, and reads what the terminal shows.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from eth_account import Account as EthAccount

from offchain.node import keystore

KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
ROOT = Path(__file__).resolve().parents[2]


class Terminal:
    """A child process on a pseudo-terminal."""

    def __init__(self, *argv: str) -> None:
        self.master, slave = pty.openpty()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTMESH_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "offchain.cli", *argv],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            cwd=ROOT,
            env=env,
        )
        os.close(slave)
        self.shown = b""

    def expect(self, text: str, timeout: float = 60.0) -> None:
        # A guard against a hung child, not a measurement.
        deadline = time.monotonic() + timeout
        while text.encode() not in self.shown:
            ready, _, _ = select.select([self.master], [], [], deadline - time.monotonic())
            assert ready, f"no {text!r} on the terminal; it shows {self.shown!r}"
            self.shown += os.read(self.master, 4096)

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def finish(self) -> tuple[int, str]:
        status = self.process.wait(timeout=60)
        while select.select([self.master], [], [], 0.2)[0]:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            self.shown += chunk
        os.close(self.master)
        return status, self.shown.decode()


def test_new_account_asks_twice_without_echo(tmp_path: Path) -> None:
    terminal = Terminal("account", "new", "--keystore", str(tmp_path), "--lightkdf")
    terminal.expect("Password for the new key: ")
    terminal.type("typed at the terminal")
    terminal.expect("Repeat the password: ")
    terminal.type("typed at the terminal")
    status, shown = terminal.finish()
    assert status == 0, shown
    assert "typed at the terminal" not in shown  # no echo
    [account] = keystore.list_accounts(tmp_path)
    assert account.checksum in shown
    assert keystore.load_key(None, tmp_path, "typed at the terminal")


def test_new_account_refuses_two_different_passwords(tmp_path: Path) -> None:
    terminal = Terminal("account", "new", "--keystore", str(tmp_path / "ks"), "--lightkdf")
    terminal.expect("Password for the new key: ")
    terminal.type("one")
    terminal.expect("Repeat the password: ")
    terminal.type("two")
    status, shown = terminal.finish()
    assert status == 1 and "the two passwords differ" in shown
    assert not (tmp_path / "ks").exists()


def test_import_asks_the_key_files_own_password(tmp_path: Path) -> None:
    source = tmp_path / "ape.json"
    document = EthAccount.encrypt(KEY, "the file's password", kdf="scrypt", iterations=2**14)
    source.write_text(json.dumps(document))
    source.chmod(0o600)
    target = tmp_path / "ks"
    terminal = Terminal("account", "import", str(source), "--keystore", str(target), "--lightkdf")
    terminal.expect(f"Password of {source}: ")
    terminal.type("the file's password")
    terminal.expect("Password for the imported key: ")
    terminal.type("the new password")
    terminal.expect("Repeat the password: ")
    terminal.type("the new password")
    status, shown = terminal.finish()
    assert status == 0, shown
    assert keystore.load_key(None, target, "the new password") == KEY


def test_import_asks_for_the_key_itself(tmp_path: Path) -> None:
    terminal = Terminal("account", "import", "--keystore", str(tmp_path), "--lightkdf")
    terminal.expect("Private key (64 hex digits): ")
    terminal.type(KEY.hex())
    terminal.expect("Password for the imported key: ")
    terminal.type("pw")
    terminal.expect("Repeat the password: ")
    terminal.type("pw")
    status, shown = terminal.finish()
    assert status == 0, shown
    assert KEY.hex() not in shown
    assert keystore.load_key(None, tmp_path, "pw") == KEY
