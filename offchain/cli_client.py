"""The `smartmesh` commands that drive a running node through its HTTP API.

Belongs here: `status`, `deadlines`, `channel open|deposit|withdraw|close|settle|list`,
`pay` and `payments`: their arguments, one ``ApiClient`` call each, and how the answers are printed
(short lines for people, ``--json`` for programs). While a request waits for the chain
(or for a payment to finish), a progress line with the seconds elapsed goes to stderr: a
spinner on a terminal, a plain line every few seconds otherwise. Every failure prints
``error: <code>: <message>`` and exits 1.

Does not belong here: HTTP (``offchain.api.client``), any check the node makes (the API
answers ``invalid_argument``; only the shape of a number is checked here).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, TextIO

if TYPE_CHECKING:
    from offchain.api.client import ApiClient

DEFAULT_API_URL: Final = "http://127.0.0.1:5001"
"""``offchain.api.client.DEFAULT_API_URL`` (a test checks): that module is imported only
when an API command runs, so that `smartmesh relay` does not start slower for aiohttp."""
API_TOKEN_ENV: Final = "SMARTMESH_API_TOKEN"
API_URL_ENV: Final = "SMARTMESH_API"
UINT256_MAX: Final = 2**256 - 1
DEFAULT_PAY_WAIT: Final = 60.0
SPINNER: Final = "|/-\\"
FIRST_LINE_AFTER: Final = 1.0
"""Seconds before the first progress line: quick answers print none."""
LINE_EVERY: Final = 5.0
"""Seconds between progress lines when stderr is not a terminal (logs stay short)."""

Action = Callable[["ApiClient", argparse.Namespace], Awaitable[int]]


class CommandError(Exception):
    """A failure to report as ``error: code: message`` (exit 1)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _amount(text: str) -> int:
    """An amount in base units: a non-negative integer below 2**256."""
    if not text.isascii() or not text.isdigit() or int(text) > UINT256_MAX:
        raise argparse.ArgumentTypeError(f"not an amount in base units: {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= 600:
        raise argparse.ArgumentTypeError("seconds must be from 0 to 600")
    return value


# Output.


def _print_json(data: object) -> None:
    print(json.dumps(data, indent=2))


def _print_fields(data: dict[str, Any]) -> None:
    width = max(map(len, data), default=0)
    for key, value in data.items():
        shown = "-" if value is None else str(value).lower() if isinstance(value, bool) else value
        print(f"{key:<{width}}  {shown}")


def _print_table(rows: list[dict[str, Any]], columns: Sequence[str], empty: str) -> None:
    if not rows:
        print(empty)
        return
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _show(args: argparse.Namespace, data: dict[str, Any]) -> None:
    if args.json:
        _print_json(data)
    else:
        _print_fields(data)


# Progress.


@contextlib.asynccontextmanager
async def _progress(what: str, stream: TextIO | None = None) -> AsyncIterator[None]:
    """Show ``what`` and the seconds elapsed on stderr while the body runs."""
    out = stream if stream is not None else sys.stderr
    tty = out.isatty()
    start = time.monotonic()
    shown = False

    async def tick() -> None:
        nonlocal shown
        await asyncio.sleep(FIRST_LINE_AFTER)
        frame = 0
        while True:
            elapsed = time.monotonic() - start
            if tty:
                out.write(f"\r{SPINNER[frame % len(SPINNER)]} {what}... {elapsed:.0f}s")
                frame += 1
            else:
                out.write(f"{what}... {elapsed:.0f}s\n")
            out.flush()
            shown = True
            await asyncio.sleep(0.1 if tty else LINE_EVERY)

    ticker = asyncio.create_task(tick())
    try:
        yield
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        if tty and shown:
            out.write("\r\033[K")  # clear the spinner line
            out.flush()


# Commands.


def _when(value: object, now: float) -> object:
    """A Unix time for people: UTC, and how far from now."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return value
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(value))
    delta = value - now
    return f"{stamp} ({'in ' if delta >= 0 else ''}{abs(delta):.0f} s{' ago' if delta < 0 else ''})"


async def _status(api: ApiClient, args: argparse.Namespace) -> int:
    status = await api.status()
    if not args.json:
        now = time.time()
        status = {
            **status,
            "blind_since": _when(status.get("blind_since"), now),
            "blind_for_s": None
            if status.get("blind_for_s") is None
            else round(float(status["blind_for_s"])),
            "next_deadline": _when(status.get("next_deadline"), now),
        }
    _show(args, status)
    return 0


async def _deadlines(api: ApiClient, args: argparse.Namespace) -> int:
    deadlines = await api.deadlines()
    if args.json:
        _print_json(deadlines)
        return 0
    now = time.time()
    rows = [{**d, "deadline": _when(d["deadline"], now)} for d in deadlines]
    columns = ("what", "partner", "deadline", "covered_by", "pending", "amount")
    _print_table(rows, columns, "no deadlines")
    return 0


async def _channel_list(api: ApiClient, args: argparse.Namespace) -> int:
    channels = await api.channels(args.token)
    if args.json:
        _print_json(channels)
    else:
        columns = ("token", "partner", "status", "our_deposit", "our_balance", "spendable")
        _print_table(channels, columns, "no channels")
    return 0


def _chain(what: str, call: Callable[[ApiClient, argparse.Namespace], Awaitable[Any]]) -> Action:
    async def action(api: ApiClient, args: argparse.Namespace) -> int:
        async with _progress(f"{what}: waiting for the chain"):
            channel = await call(api, args)
        _show(args, channel)
        return 0

    return action


async def _pay(api: ApiClient, args: argparse.Namespace) -> int:
    label = "waiting for the payment" if args.wait is not None else "starting the payment"
    async with _progress(label):
        payment = await api.pay(
            args.token,
            args.target,
            args.amount,
            max_fee=args.max_fee,
            payment_id=args.payment_id,
            direct=args.direct,
            wait=args.wait,
        )
    _show(args, payment)
    if payment["status"] == "failed":
        reason = payment.get("reason") or "no reason given"
        raise CommandError("payment_failed", f"payment {payment['payment_id']} failed: {reason}")
    if args.wait is not None and payment["status"] == "pending":
        raise CommandError(
            "timeout",
            f"payment {payment['payment_id']} still pending after {args.wait:g}s; it goes on "
            f"(smartmesh payments --status pending)",
        )
    return 0


async def _payments(api: ApiClient, args: argparse.Namespace) -> int:
    payments = await api.payments(
        direction=args.direction,
        status=args.status,
        token=args.token,
        partner=args.partner,
        limit=args.limit,
        offset=args.offset,
    )
    if args.json:
        _print_json(payments)
    else:
        columns = ("payment_id", "direction", "status", "amount", "fee", "partner", "reason")
        _print_table(payments, columns, "no payments")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the parsed command against the API; print failures; return the exit code."""
    from offchain.api.client import ApiClient, ApiClientError  # noqa: PLC0415  (see above)

    action: Action = args.api_action

    async def main() -> int:
        async with ApiClient(args.api, args.api_token) as api:
            return await action(api, args)

    try:
        return asyncio.run(main())
    except (ApiClientError, CommandError) as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # The node goes on with what it started; only our wait is over.
        print("error: interrupted: the node goes on with the request", file=sys.stderr)
        return 1


# Arguments.


def _api_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--api",
        default=os.environ.get(API_URL_ENV, DEFAULT_API_URL),
        metavar="URL",
        help=f"the node's API (default: ${API_URL_ENV} or {DEFAULT_API_URL})",
    )
    options.add_argument(
        "--api-token",
        default=os.environ.get(API_TOKEN_ENV),
        metavar="TOKEN",
        help=f"the API's bearer token (default: ${API_TOKEN_ENV})",
    )
    options.add_argument("--json", action="store_true", help="print the API's JSON answer")
    return options


def _command(
    commands: Any, name: str, action: Action, help_text: str, options: argparse.ArgumentParser
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=help_text, description=help_text, parents=[options]
    )
    parser.set_defaults(handler=run, api_action=action)
    return parser


def _channel_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("token", help="the token's address")
    parser.add_argument("partner", help="the partner's address")


def add_commands(commands: Any) -> None:
    """Add the API commands to ``smartmesh``'s subcommands (an argparse subparsers object)."""
    options = _api_options()
    _command(commands, "status", _status, "show the node's status", options)
    _command(
        commands,
        "deadlines",
        _deadlines,
        "what the node must get on chain, and by when (docs/offline.md)",
        options,
    )

    channel = commands.add_parser("channel", help="open, fund, close and list channels")
    actions = channel.add_subparsers(dest="channel_command", required=True)
    opening = _command(
        actions,
        "open",
        _chain(
            "opening the channel",
            lambda api, a: api.open_channel(a.token, a.partner, a.deposit, a.settle_window),
        ),
        "open a channel and deposit",
        options,
    )
    _channel_arguments(opening)
    opening.add_argument("deposit", type=_amount, help="first deposit in base units (may be 0)")
    opening.add_argument(
        "--settle-window", type=int, metavar="SECONDS", help="the node's default when absent"
    )
    deposit = _command(
        actions,
        "deposit",
        _chain("depositing", lambda api, a: api.deposit(a.token, a.partner, a.total_deposit)),
        "raise our total deposit",
        options,
    )
    _channel_arguments(deposit)
    deposit.add_argument(
        "total_deposit", type=_amount, help="the new TOTAL deposit in base units (not the increase)"
    )
    withdraw = _command(
        actions,
        "withdraw",
        _chain("withdrawing", lambda api, a: api.withdraw(a.token, a.partner, a.total_withdraw)),
        "raise our total withdrawn amount",
        options,
    )
    _channel_arguments(withdraw)
    withdraw.add_argument(
        "total_withdraw", type=_amount, help="the new TOTAL withdrawn in base units"
    )
    close = _command(
        actions,
        "close",
        _chain(
            "closing the channel",
            lambda api, a: api.close_channel(a.token, a.partner, a.cooperative),
        ),
        "close a channel (settle after the settle window)",
        options,
    )
    _channel_arguments(close)
    close.add_argument(
        "--cooperative", action="store_true", help="settle at once with the partner's signature"
    )
    settle = _command(
        actions,
        "settle",
        _chain("settling", lambda api, a: api.settle(a.token, a.partner)),
        "settle a closed channel once its settle window is over",
        options,
    )
    _channel_arguments(settle)
    listing = _command(actions, "list", _channel_list, "list our channels", options)
    listing.add_argument("--token", help="only this token")

    pay = _command(commands, "pay", _pay, "pay AMOUNT of TOKEN to TARGET", options)
    pay.add_argument("token", help="the token's address")
    pay.add_argument("target", help="the address of the node to pay")
    pay.add_argument("amount", type=_amount, help="what the target receives, in base units")
    pay.add_argument("--max-fee", type=_amount, metavar="AMOUNT", help="most fees to pay")
    pay.add_argument("--payment-id", type=int, metavar="ID", help="our id for the payment")
    pay.add_argument("--direct", action="store_true", help="a direct transfer to a channel partner")
    pay.add_argument(
        "--wait",
        type=_seconds,
        nargs="?",
        const=DEFAULT_PAY_WAIT,
        metavar="SECONDS",
        help=f"wait until the payment is finished (at most {DEFAULT_PAY_WAIT:g}s by default)",
    )

    payments = _command(commands, "payments", _payments, "list payments", options)
    payments.add_argument("--direction", choices=("sent", "received"))
    payments.add_argument("--status", choices=("pending", "succeeded", "failed"))
    payments.add_argument("--token", help="only this token")
    payments.add_argument("--partner", help="only with this target or payer")
    payments.add_argument("--limit", type=int, help="most payments to show (API default 100)")
    payments.add_argument("--offset", type=int, help="payments to skip, newest first")
