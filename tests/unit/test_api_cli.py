"""The `smartmesh` API commands against the in-memory node served on loopback.

``offchain.cli.main`` runs in the test's thread, the API in a thread of its own
(``ServedApi``); the progress tests run the real command in a subprocess, on a pipe and
on a pseudo-terminal, while the node holds its chain operations.
"""

from __future__ import annotations

import json
import os
import pty
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from offchain import cli
from offchain.api.convert import checksum_address
from tests.lib.api_server import FAR_TARGET, PARTNER, TOKEN, ServedApi, memory_service

ROOT = Path(__file__).resolve().parents[2]
T = checksum_address(TOKEN)
P = checksum_address(PARTNER)


@pytest.fixture
def served() -> Iterator[ServedApi]:
    with ServedApi(memory_service()) as api:
        yield api


def smartmesh(
    capsys: pytest.CaptureFixture[str], served: ServedApi, *argv: str
) -> tuple[int, str, str]:
    """Run ``smartmesh ARGV --api URL``; return the exit code, stdout and stderr."""
    code = cli.main([*argv, "--api", served.url])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def fields(text: str) -> dict[str, str]:
    """``key  value`` lines as printed for one object."""
    return dict(line.split(maxsplit=1) for line in text.splitlines() if line.strip())


def test_default_api_url__is_the_clients_and_the_servers() -> None:
    from offchain import cli_client  # noqa: PLC0415
    from offchain.api import client, server  # noqa: PLC0415

    assert cli_client.DEFAULT_API_URL == client.DEFAULT_API_URL
    served_at = f"http://{server.DEFAULT_HOST}:{server.DEFAULT_PORT}"
    assert served_at == client.DEFAULT_API_URL


def test_status__fields_and_json(capsys: pytest.CaptureFixture[str], served: ServedApi) -> None:
    code, out, err = smartmesh(capsys, served, "status")
    assert code == 0 and err == ""
    shown = fields(out)
    assert shown["version"] == "memory" and shown["synced"] == "true"
    assert shown["blind_since"] == "-"
    assert shown["blind_for_s"] == "-" and shown["next_deadline"] == "-"
    code, out, _ = smartmesh(capsys, served, "status", "--json")
    assert code == 0 and json.loads(out)["address"] == shown["address"]


def test_deadlines__table_and_json(capsys: pytest.CaptureFixture[str], served: ServedApi) -> None:
    code, out, _ = smartmesh(capsys, served, "deadlines")
    assert code == 0 and out.strip() == "no deadlines"
    code, out, _ = smartmesh(capsys, served, "deadlines", "--json")
    assert code == 0 and json.loads(out) == []


def test_channel__open_deposit_withdraw_list_close_settle(
    capsys: pytest.CaptureFixture[str], served: ServedApi
) -> None:
    code, out, _ = smartmesh(capsys, served, "channel", "open", T, P.lower(), "100")
    assert code == 0
    opened = fields(out)
    assert opened["status"] == "open" and opened["partner"] == P and opened["our_deposit"] == "100"
    code, out, _ = smartmesh(capsys, served, "channel", "deposit", T, P, "150")
    assert code == 0 and fields(out)["our_deposit"] == "150"
    code, out, _ = smartmesh(capsys, served, "channel", "withdraw", T, P, "20", "--json")
    assert code == 0 and json.loads(out)["our_withdrawn"] == "20"
    code, out, _ = smartmesh(capsys, served, "channel", "list")
    header, row = out.splitlines()
    assert header.split() == [
        "TOKEN",
        "PARTNER",
        "STATUS",
        "OUR_DEPOSIT",
        "OUR_BALANCE",
        "SPENDABLE",
    ]
    assert row.split() == [T, P, "open", "150", "130", "130"]
    code, out, _ = smartmesh(capsys, served, "channel", "list", "--token", P)
    assert code == 0 and out.strip() == "no channels"
    code, out, _ = smartmesh(capsys, served, "channel", "close", T, P)
    assert code == 0 and fields(out)["status"] == "closed"
    code, _, err = smartmesh(capsys, served, "channel", "settle", T, P)
    assert code == 1 and err.startswith("error: conflict: the settle window runs until")
    served.call(served.service.advance, 10**6)
    code, out, _ = smartmesh(capsys, served, "channel", "settle", T, P)
    assert code == 0 and fields(out)["status"] == "settled"


def test_channel__cooperative_close(capsys: pytest.CaptureFixture[str], served: ServedApi) -> None:
    assert smartmesh(capsys, served, "channel", "open", T, P, "0")[0] == 0
    code, out, _ = smartmesh(capsys, served, "channel", "close", T, P, "--cooperative")
    assert code == 0 and fields(out)["status"] == "settled"


def test_errors__code_and_message_exit_1(
    capsys: pytest.CaptureFixture[str], served: ServedApi
) -> None:
    too_much = str(10**30)
    code, out, err = smartmesh(capsys, served, "channel", "open", T, P, too_much)
    assert (code, out) == (1, "")
    assert err.startswith("error: insufficient_funds: deposit ")
    code, _, err = smartmesh(capsys, served, "channel", "open", T, "0x1234", "1")
    assert code == 1 and err.startswith("error: invalid_argument: partner: must be an address")
    code, _, err = smartmesh(capsys, served, "channel", "deposit", T, P, "1")
    assert code == 1 and err.startswith("error: not_found: no channel with")
    code, _, err = smartmesh(capsys, served, "channel", "open", T, P, "1", "--settle-window", "9")
    assert code == 1 and err.startswith("error: invalid_argument: settle_window")


@pytest.mark.parametrize("amount", ["-5", "1.5", "1e3", str(2**256), "0x10"])
def test_amounts__must_be_base_unit_integers(
    capsys: pytest.CaptureFixture[str], served: ServedApi, amount: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        smartmesh(capsys, served, "pay", T, P, amount)
    assert exit_.value.code == 2
    assert "not an amount in base units" in capsys.readouterr().err


def test_pay__wait_direct_pending_and_failures(
    capsys: pytest.CaptureFixture[str], served: ServedApi
) -> None:
    assert smartmesh(capsys, served, "channel", "open", T, P, "100")[0] == 0
    code, out, _ = smartmesh(capsys, served, "pay", T, P, "10", "--wait")
    assert code == 0 and fields(out)["status"] == "succeeded" and fields(out)["amount"] == "10"
    code, out, _ = smartmesh(capsys, served, "pay", T, P, "5", "--direct", "--json")
    assert code == 0 and json.loads(out)["status"] == "succeeded"
    served.service.payment_delay = None  # from now on payments stay pending
    code, out, _ = smartmesh(capsys, served, "pay", T, P, "1", "--payment-id", "77")
    assert code == 0 and fields(out)["status"] == "pending"
    code, out, err = smartmesh(capsys, served, "pay", T, P, "1", "--wait", "0")
    assert code == 1 and fields(out)["status"] == "pending"
    assert err.startswith("error: timeout: payment ") and "still pending" in err
    far = checksum_address(FAR_TARGET)
    code, out, err = smartmesh(capsys, served, "pay", T, far, "1")
    assert (code, out) == (1, "") and err.startswith("error: no_route: no route to")
    code, _, err = smartmesh(capsys, served, "pay", T, P, "1", "--payment-id", "77")
    assert code == 1 and err.startswith("error: conflict: payment id 77 is taken")
    served.call(served.service.finish_payment, 77, success=False, reason="expired")
    code, out, _ = smartmesh(capsys, served, "payments", "--status", "failed")
    assert code == 0 and "77" in out and "expired" in out


def test_pay__a_failed_payment_exits_1(
    capsys: pytest.CaptureFixture[str], served: ServedApi
) -> None:
    assert smartmesh(capsys, served, "channel", "open", T, P, "100")[0] == 0
    served.service.payment_failure = "expired"  # payments fail while the CLI waits
    code, out, err = smartmesh(capsys, served, "pay", T, P, "3", "--wait", "60")
    assert code == 1 and fields(out)["status"] == "failed"
    assert err.startswith("error: payment_failed: payment ") and "expired" in err


def test_payments__table_and_filters(capsys: pytest.CaptureFixture[str], served: ServedApi) -> None:
    code, out, _ = smartmesh(capsys, served, "payments")
    assert code == 0 and out.strip() == "no payments"
    assert smartmesh(capsys, served, "channel", "open", T, P, "100")[0] == 0
    for amount in ("1", "2", "3"):
        assert smartmesh(capsys, served, "pay", T, P, amount, "--direct")[0] == 0
    code, out, _ = smartmesh(capsys, served, "payments", "--limit", "2", "--direction", "sent")
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["PAYMENT_ID", "DIRECTION", "STATUS", "AMOUNT"]
    assert [line.split()[3] for line in lines[1:]] == ["3", "2"]
    code, out, _ = smartmesh(capsys, served, "payments", "--offset", "2", "--json")
    assert [p["amount"] for p in json.loads(out)] == ["1"]
    code, _, err = smartmesh(capsys, served, "payments", "--limit", "0")
    assert code == 1 and err.startswith("error: invalid_argument: limit")


def test_api_token__option_and_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with ServedApi(memory_service(), token="cli-token-1") as served:
        monkeypatch.delenv("SMARTMESH_API_TOKEN", raising=False)
        code, _, err = smartmesh(capsys, served, "status")
        assert code == 1 and err.startswith("error: unauthorized: ")
        code, _, err = smartmesh(capsys, served, "status", "--api-token", "wrong")
        assert code == 1 and err.startswith("error: unauthorized: ")
        assert smartmesh(capsys, served, "status", "--api-token", "cli-token-1")[0] == 0
        monkeypatch.setenv("SMARTMESH_API_TOKEN", "cli-token-1")
        assert smartmesh(capsys, served, "status")[0] == 0


def test_unreachable_api__error_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:  # a port nothing listens on once it is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = cli.main(["status", "--api", f"http://127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: unreachable: cannot reach the node's API")


def _smartmesh_process(served: ServedApi, stderr: int) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "offchain.cli", "channel", "open", T, P, "100"]
    return subprocess.Popen(
        [*argv, "--api", served.url], cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr
    )


def test_progress__a_line_with_seconds_while_the_chain_works(served: ServedApi) -> None:
    served.call(served.service.hold_chain)
    process = _smartmesh_process(served, subprocess.PIPE)
    try:
        assert process.stderr is not None
        line = process.stderr.readline().decode()
        assert line.startswith("opening the channel: waiting for the chain... ")
        assert line.rstrip().endswith("s")
        served.call(served.service.release_chain)
        out, _ = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0 and fields(out.decode())["status"] == "open"


def test_progress__a_spinner_on_a_terminal(served: ServedApi) -> None:
    served.call(served.service.hold_chain)
    controller, terminal = pty.openpty()
    process = _smartmesh_process(served, terminal)
    os.close(terminal)
    seen = b""
    try:
        while b"waiting for the chain" not in seen:
            chunk = os.read(controller, 1024)
            assert chunk, "the command closed stderr without progress"
            seen += chunk
        assert seen.startswith(b"\r") and seen[1:2] in b"|/-\\"
        served.call(served.service.release_chain)
        out, _ = process.communicate(timeout=60)
        while True:
            try:
                chunk = os.read(controller, 1024)
            except OSError:  # EIO once the command has exited and closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    finally:
        process.kill()
        process.wait()
        os.close(controller)
    assert process.returncode == 0 and fields(out.decode())["status"] == "open"
    assert seen.endswith(b"\r\x1b[K"), "the spinner line is cleared at the end"
