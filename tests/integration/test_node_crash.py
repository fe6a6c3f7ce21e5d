"""Crash safety of a mediated payment: ``kill -9`` at every persistence point, in each role.

A line A-B-C of real ``smartmesh node`` processes on a private anvil (``node_net``), a
channel with deposits on both sides between neighbours. For one role R (A the initiator,
B the mediator, C the target), and N = 1, 2, ...: R runs with
``SMARTMESH_FAILPOINT=after_commit:N:on_sigusr1``; once every node is idle the test arms
it (SIGUSR1, so the commits of R's own start and of earlier cases do not count), A pays C,
and R exits with 137 right after its N-th commit, before that commit's effects run (no
message sent, no delivery acknowledged, no answer given), exactly as a ``kill -9`` there
would leave it. R is started again (still unarmed) and the test checks what the crash
must not break:
- the payment ends at A: succeeded, or failed with a reason and then no token moved;
- C received exactly the amount if and only if A says succeeded;
- both ends of every channel agree (balances mirror, deposits mirror), the tokens in each
  channel are conserved, every lock is gone after a while, and every channel stays open:
  the API says so and the chain saw no ChannelClosed;
- no node logged an error (a replay that raised, the core refusing an input) but R's
  failpoint;
- a payment back, C to A, succeeds afterwards.
The loop ends at the first N at which R no longer dies: its persistence points for one
payment are the cases before (messages, and what they cause: graph updates, the tick
that forgets the finished payment).

``make fuzz`` (marker ``fuzz``) walks every persistence point of every role, up to the
first N the role survives; the default run takes the commits of the payment's own inputs,
which every run has (``MESSAGE_COMMITS``: the first, the last and those between), and
leaves the graph updates and the tick that follow them to ``make fuzz``.

The initiator's API answers a payment only once it is committed: dying at that commit,
it has told the caller nothing (the POST gets no answer), and a payment it did answer is
never lost.

Idle means: no node's input log grew for ``QUIET`` seconds (read from the node's SQLite
file, read-only; longer than the 1 s tick, so the tick that forgets a finished payment is
seen). Short protocol timeouts bound the wait for locks of a failed payment to expire.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from offchain.api.client import ApiClient, ApiClientError
from offchain.chain.events import ContractKind, topic0_of
from scripts.nodes import NodeProcess
from tests.lib.chain_env import ONE
from tests.lib.node_net import NodeNet, node_net, until_async

pytestmark = pytest.mark.anvil

DEPOSIT = 100 * ONE
AMOUNT = ONE
QUIET = 1.5
"""Seconds without a commit on any node that count as idle (the tick runs every 1 s)."""
MAX_POINTS = 16
"""More commits than any role makes for one payment: the loop fails rather than run on."""
SETTINGS: dict[str, dict[str, Any]] = {
    # A failed payment's locks expire within a minute, not the default ten.
    "protocol": {"reveal_timeout": 15, "hop_margin": 5, "lock_timeout": 60, "clock_tolerance": 2}
}
LOCK_DRAIN = 60 + 2 + 20  # lock_timeout + clock_tolerance + delivery of the LockExpired

ROLES = {"initiator": 0, "mediator": 1, "target": 2}
MESSAGE_COMMITS = {"initiator": 2, "mediator": 3, "target": 2}
"""Commits every run has, of the payment's own inputs: the initiator's ActionPay and the
SecretReveal that lets it unlock; the mediator's LockedTransfer, SecretReveal and Unlock;
the target's PaymentSecret and LockedTransfer (one commit when they come together, two
otherwise) and Unlock. Graph updates and ticks come on top, in numbers that vary."""


def _armed(n: int) -> dict[str, str]:
    return {"SMARTMESH_FAILPOINT": f"after_commit:{n}:on_sigusr1"}


def _last_seq(node: NodeProcess) -> int:
    """The node's last logged input (0 before its database exists)."""
    path = node.directory / "data" / "node.sqlite3"
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute(
            "SELECT MAX(COALESCE((SELECT MAX(seq) FROM inputs), 0),"
            " COALESCE((SELECT MAX(seq) FROM snapshots), 0))"
        ).fetchone()
        return int(row[0])
    finally:
        conn.close()


@dataclass
class Outcome:
    """One case: did R die at the armed commit, and how the payment ended."""

    crashed: bool
    answered: bool
    """Whether POST /payments answered (only the initiator's crash can cut it off)."""
    status: str
    reason: str | None = None


@dataclass
class CrashLine:
    """The line A-B-C and the checks run after every case."""

    net: NodeNet
    clients: dict[int, ApiClient] = field(default_factory=dict)
    seen_logs: dict[int, int] = field(default_factory=dict)

    async def api(self, index: int) -> ApiClient:
        client = self.clients.get(index)
        if client is None:
            client = await ApiClient(self.net.nodes[index].api).__aenter__()
            self.clients[index] = client
        return client

    async def forget_api(self, index: int) -> None:
        client = self.clients.pop(index, None)
        if client is not None:
            await client.close()

    async def close(self) -> None:
        for index in list(self.clients):
            await self.forget_api(index)

    def index_of(self, address: str) -> int:
        return [n.address.lower() for n in self.net.nodes].index(address.lower())

    # -- waiting --------------------------------------------------------------------------

    async def quiet(self, seconds: float = QUIET, timeout: float = 60.0) -> None:
        """Until no live node committed anything for ``seconds``."""
        deadline = time.monotonic() + timeout
        last = [-1] * len(self.net.nodes)
        since = time.monotonic()
        while True:
            now_seqs = [_last_seq(n) if n.running() else -1 for n in self.net.nodes]
            if now_seqs != last:
                last, since = now_seqs, time.monotonic()
            elif time.monotonic() - since >= seconds:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the nodes never went idle: {now_seqs}")
            await asyncio.sleep(0.05)

    async def restart(self, index: int, env: dict[str, str] | None = None) -> None:
        await self.forget_api(index)
        node = self.net.nodes[index]
        if node.running():
            node.stop()
        await asyncio.to_thread(node.start, env)

    async def arm(self, index: int) -> None:
        """SIGUSR1, then wait until the node says the failpoint is armed."""
        node = self.net.nodes[index]
        assert node.process is not None
        log = node.log_path
        before = log.read_text(errors="replace").count("failpoint armed")
        node.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while log.read_text(errors="replace").count("failpoint armed") == before:
            assert time.monotonic() < deadline, "the failpoint was never armed"
            await asyncio.sleep(0.02)

    # -- reading ----------------------------------------------------------------------------

    async def views(self) -> dict[tuple[int, int], dict[str, Any]]:
        """(node, partner) -> the node's view of that channel, as GET /channels gives it."""
        found: dict[tuple[int, int], dict[str, Any]] = {}
        for index in range(len(self.net.nodes)):
            for channel in await (await self.api(index)).channels(self.net.token):
                found[(index, self.index_of(channel["partner"]))] = channel
        return found

    async def drained(self) -> bool:
        views = await self.views()
        return all(int(c["our_locked"]) == 0 == int(c["partner_locked"]) for c in views.values())

    async def received(self, index: int, payment_id: int) -> list[int]:
        """Amounts node ``index`` received under ``payment_id``."""
        payments = await (await self.api(index)).payments(direction="received", limit=1000)
        return [int(p["amount"]) for p in payments if int(p["payment_id"]) == payment_id]

    def closed_on_chain(self) -> list[Any]:
        env = self.net.env
        return list(
            env.w3.eth.get_logs(
                {
                    "address": Web3.to_checksum_address(env.network),
                    "fromBlock": 0,
                    "toBlock": "latest",
                    "topics": ["0x" + topic0_of(ContractKind.TOKEN_NETWORK, "ChannelClosed").hex()],
                }
            )
        )

    # -- checks -----------------------------------------------------------------------------

    async def check_channels(self) -> dict[tuple[int, int], dict[str, Any]]:
        """Both ends agree, tokens are conserved, no lock is left, every channel is open."""
        await until_async(self.drained, LOCK_DRAIN)
        views = await self.views()
        assert len(views) == 2 * (len(self.net.nodes) - 1), views.keys()
        for (i, j), ours in views.items():
            theirs = views[(j, i)]
            where = f"channel {'ABC'[i]}-{'ABC'[j]}"
            assert ours["status"] == "open", (where, ours)
            assert ours["our_balance"] == theirs["partner_balance"], (where, ours, theirs)
            assert ours["partner_balance"] == theirs["our_balance"], (where, ours, theirs)
            assert ours["our_deposit"] == theirs["partner_deposit"] == str(DEPOSIT), where
            assert ours["our_withdrawn"] == theirs["partner_withdrawn"] == "0", where
            total = int(ours["our_balance"]) + int(ours["partner_balance"])
            assert total == 2 * DEPOSIT, (where, ours)
        assert self.closed_on_chain() == []
        return views

    def check_logs(self, crashes: dict[int, int]) -> None:
        """No node logged an error or a traceback, but the failpoints that fired."""
        for index, node in enumerate(self.net.nodes):
            text = node.log_path.read_text(errors="replace")
            fresh = text[self.seen_logs.get(index, 0) :]
            self.seen_logs[index] = len(text)
            errors = [line for line in fresh.splitlines() if " ERROR " in line]
            fired = [line for line in errors if "failpoint after_commit" in line]
            assert len(fired) == crashes.get(index, 0), fired
            assert "Traceback" not in fresh and len(errors) == len(fired), errors

    # -- one case ---------------------------------------------------------------------------

    async def case(self, role: int, n: int) -> Outcome:
        """R (running unarmed with the after_commit:N failpoint) armed, then A pays C."""
        node = self.net.nodes[role]
        await self.quiet()
        before = await self.check_channels()
        await self.arm(role)
        payment_id = secrets.randbits(62) + 1
        answered = True
        try:
            await (await self.api(0)).pay(
                self.net.token, self.net.address(2), AMOUNT, payment_id=payment_id
            )
        except ApiClientError as exc:
            # Only the initiator's own crash may cut the answer off.
            assert role == 0 and exc.code == "unreachable", exc
            answered = False
        crashed = await self._crashed(node)
        # Started again unarmed (the failpoint waits for the next SIGUSR1); one that
        # survived is still armed: a restart disarms it.
        await self.restart(role, _armed(n + 1))
        outcome = await self._payment_outcome(payment_id, crashed, answered)
        after = await self.check_channels()
        self._check_moved(before, after, outcome, await self.received(2, payment_id))
        self.check_logs({role: 1} if crashed else {})
        await self._pay_back()
        return outcome

    async def _crashed(self, node: NodeProcess) -> bool:
        """Whether R died at its armed commit; False once every node, R alive among them,
        has been idle for ``QUIET`` seconds (the payment and what follows it are over)."""
        assert node.process is not None
        idle = asyncio.create_task(self.quiet())
        try:
            while node.process.poll() is None:
                if idle.done():
                    idle.result()  # the TimeoutError of nodes that never go idle
                    return False
                await asyncio.sleep(0.05)
        finally:
            idle.cancel()
        assert node.process.returncode == 137, f"{node.name} exited with {node.process.returncode}"
        return True

    async def _payment_outcome(self, payment_id: int, crashed: bool, answered: bool) -> Outcome:
        a = await self.api(0)
        try:
            info = await a.wait_payment(payment_id, LOCK_DRAIN)
        except ApiClientError as exc:
            # A payment can vanish only if it was never acknowledged: the initiator died
            # before the ActionPay was committed and before the API answered.
            assert exc.code == "not_found" and not answered, exc
            return Outcome(crashed, answered, "lost")
        assert info["status"] in ("succeeded", "failed"), info
        if info["status"] == "failed":
            assert info["reason"], info
        return Outcome(crashed, answered, info["status"], info["reason"])

    def _check_moved(
        self,
        before: dict[tuple[int, int], dict[str, Any]],
        after: dict[tuple[int, int], dict[str, Any]],
        outcome: Outcome,
        received: list[int],
    ) -> None:
        def moved(i: int, j: int) -> int:
            return int(after[(i, j)]["our_balance"]) - int(before[(i, j)]["our_balance"])

        if outcome.status == "succeeded":
            assert received == [AMOUNT], received
            assert moved(2, 1) == AMOUNT
            paid = -moved(0, 1)
            assert paid >= AMOUNT and moved(1, 0) == paid and moved(1, 2) == -AMOUNT
        else:
            assert received == [], received
            assert all(moved(i, j) == 0 for i, j in after), outcome

    async def _pay_back(self) -> None:
        """C pays A the same amount: the line still works (and balances come back)."""
        c = await self.api(2)
        info = await c.pay(self.net.token, self.net.address(0), AMOUNT, wait=30)
        assert info["status"] == "succeeded", info
        await self.check_channels()


@contextmanager
def crash_line(directory: Path) -> Iterator[CrashLine]:
    with node_net(directory, 3, settings=SETTINGS) as net:
        line = CrashLine(net)

        async def open_line() -> None:
            await net.open_line(DEPOSIT)
            await net.close_clients()

        asyncio.run(open_line())
        try:
            yield line
        finally:
            asyncio.run(line.close())


async def _run_cases(line: CrashLine, role: int, points: list[int] | None) -> list[Outcome]:
    """Cases N = 1, 2, ... until R survives (``points`` None), or the ``points`` given."""
    outcomes: list[Outcome] = []
    try:
        planned = points or list(range(1, MAX_POINTS + 1))
        await line.restart(role, _armed(planned[0]))
        line.check_logs({})
        for index, n in enumerate(planned):
            if index and n != planned[index - 1] + 1:
                await line.restart(role, _armed(n))
            outcome = await line.case(role, n)
            outcomes.append(outcome)
            if points is None and not outcome.crashed:
                return outcomes
        assert points is not None, f"still crashing after {MAX_POINTS} commits"
        return outcomes
    finally:
        await line.close()


def _report(role: str, outcomes: list[Outcome]) -> str:
    return f"{role}: " + ", ".join(
        f"N={n}:{'crash' if o.crashed else 'survived'}/{o.status}"
        for n, o in enumerate(outcomes, 1)
    )


@pytest.mark.fuzz
@pytest.mark.parametrize("role", list(ROLES))
def test_crash_at_every_commit__payment_ends_and_channels_agree(role: str, tmp_path: Path) -> None:
    with crash_line(tmp_path) as line:
        outcomes = asyncio.run(_run_cases(line, ROLES[role], None))
    print(_report(role, outcomes))
    points = sum(o.crashed for o in outcomes)
    assert points >= MESSAGE_COMMITS[role], _report(role, outcomes)
    assert all(o.crashed for o in outcomes[:points]), _report(role, outcomes)


@pytest.mark.parametrize("role", list(ROLES))
def test_crash_at_each_message_commit__payment_ends_and_channels_agree(
    role: str, tmp_path: Path
) -> None:
    points = list(range(1, MESSAGE_COMMITS[role] + 1))
    with crash_line(tmp_path) as line:
        outcomes = asyncio.run(_run_cases(line, ROLES[role], points))
    print(_report(role, outcomes))
    assert all(o.crashed for o in outcomes), _report(role, outcomes)
    assert all(o.status == "succeeded" for o in outcomes), _report(role, outcomes)
    if role == "initiator":
        # The API answers a payment only once it is committed: dying at that commit, the
        # initiator never told the caller anything it could then forget.
        assert not outcomes[0].answered, _report(role, outcomes)
