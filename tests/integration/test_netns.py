"""The island scenario's base: three real node processes in a line A-B-C on a real anvil,
each in a network namespace of its own on a bridged mesh LAN (``scripts.netns``), and the
same test on loopback. Channels open online; then the chain is cut off for A and B: their
status says so, and a direct payment (A to B) and mediated ones (A to C, C to A, through
blind B) still go over the mesh. The chain comes back and the statuses recover.

Namespaces need root and ``ip netns``; that case is skipped, with the reason, elsewhere.
The namespaces and links the test made are gone afterwards (asserted). The loopback case
runs everywhere: its cut closes (or silences) the node's own forwarder to anvil.

Also here, without anvil: what each kind of cut does to a connection (refused or
unreachable at once, or silence), and that an island leaves nothing behind: not when the
code inside it fails, not when a run died without cleaning up (the next one removes its
namespaces, and never those of a live run).

In namespaces, A's chain is cut silently (the far end of its uplink goes down: its
requests time out) and B's at once (its own uplink goes down: network unreachable), so
both ways the field fails are seen by a real node.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest

from offchain.api.client import ApiClient
from scripts import netns as netns_module
from tests.lib.chain_env import ONE
from tests.lib.netns import (
    Island,
    IslandError,
    Kind,
    NetnsIsland,
    cleanup_stale,
    island,
    island_net,
    leftovers,
    unavailable_reason,
)
from tests.lib.node_net import NodeNet, until_async

T = TypeVar("T")

FEE = 10**15
"""B's flat fee per payment it forwards."""
FEE_AT_B = {1: {"protocol": {"fee_flat": FEE}}}
LOSSY = {"mesh": {"impair_loss": 0.1}}
"""Every node loses 10% of its outgoing mesh frames (the mesh retransmits)."""
DEPOSIT = 100 * ONE
WAIT = 30.0
"""Seconds a mesh or chain step may take (payments take milliseconds)."""
BLIND_WAIT = 120.0
"""Seconds until a cut or a repair shows in the status: a silent cut shows once a request
in flight times out (the node's RPC timeout, 20 s); a repair once the follower asks again
after its backoff (doubling up to 60 s)."""


@pytest.fixture(
    params=[pytest.param("netns", marks=pytest.mark.netns), pytest.param("loopback")],
)
def kind(request: pytest.FixtureRequest) -> Kind:
    kind: Kind = request.param
    if kind == "netns":
        reason = unavailable_reason()
        if reason is not None:
            pytest.skip(f"network namespaces unavailable: {reason}")
    return kind


def drive(net: NodeNet, body: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        try:
            return await body()
        finally:
            await net.close_clients()

    return asyncio.run(main())


async def pay_until_routed(
    client: ApiClient, token: str, target: str, amount: int, fee: int
) -> dict[str, Any]:
    """Pay until a route with B's announced fee is found (announcements spread first)."""
    deadline = time.monotonic() + WAIT
    while True:
        payment = await client.pay(token, target, amount, wait=WAIT)
        if payment["status"] == "succeeded" and int(payment["fee"]) == fee:
            return payment
        assert time.monotonic() < deadline, f"no route in time: {payment}"
        await asyncio.sleep(0.3)


async def reachable(net: NodeNet, index: int) -> bool:
    status = await (await net.client(index)).status()
    return bool(status["chain_reachable"])


async def balance(net: NodeNet, index: int, partner: int) -> int:
    view = await (await net.client(index)).channel(net.token, net.address(partner))
    return int(view["our_balance"])


def check_isolation(isle: NetnsIsland, anvil_url: str) -> None:
    """A node's namespace reaches its own forwarder and the mesh LAN, nothing else of the
    host: not anvil on the host's loopback, not another node's uplink."""
    anvil_port = urlsplit(anvil_url).port
    assert anvil_port is not None
    own, other = (urlsplit(p.rpc_url) for p in isle.places[:2])
    assert isle.reaches(0, str(own.hostname), int(own.port or 0)) == "connected"
    assert isle.reaches(0, isle.places[1].mesh_host, isle.places[1].mesh_port) == "connected"
    assert isle.reaches(0, "127.0.0.1", anvil_port) == "ECONNREFUSED"  # its own loopback
    assert isle.reaches(0, str(other.hostname), int(other.port or 0)) == "ENETUNREACH"


@pytest.mark.anvil
def test_island__chain_cut_for_two_nodes__payments_go_on_over_the_mesh(
    tmp_path: Path, kind: Kind
) -> None:
    made: list[str] = []
    with island_net(tmp_path, 3, kind, settings=LOSSY, node_settings=FEE_AT_B) as (
        net,
        isle,
    ):
        if isinstance(isle, NetnsIsland):
            made = list(isle.created)
            check_isolation(isle, net.env.url)
        drive(net, lambda: scenario(net, isle))
    assert not set(made) & set(leftovers()), "namespaces or links left behind"


async def scenario(net: NodeNet, isle: Island) -> None:
    a, b, c = [await net.client(i) for i in range(3)]
    await net.open_line(DEPOSIT)
    await pay_until_routed(a, net.token, net.address(2), ONE, FEE)
    await pay_until_routed(c, net.token, net.address(0), ONE, FEE)
    assert all([await reachable(net, i) for i in range(3)])

    isle.cut_chain(0, silent=True)
    isle.cut_chain(1)
    await until_async(lambda: _blind(net, 0), BLIND_WAIT)
    await until_async(lambda: _blind(net, 1), BLIND_WAIT)
    assert await reachable(net, 2)  # C still sees the chain
    blind_since = (await a.status())["blind_since"]
    assert blind_since is not None

    before = {(i, j): await balance(net, i, j) for i, j in ((0, 1), (1, 0), (1, 2), (2, 1))}
    direct = await a.pay(net.token, net.address(1), 2 * ONE, direct=True, wait=WAIT)
    assert direct["status"] == "succeeded", direct
    mediated = await a.pay(net.token, net.address(2), 3 * ONE, wait=WAIT)
    assert (mediated["status"], int(mediated["fee"])) == ("succeeded", FEE), mediated
    back = await c.pay(net.token, net.address(0), 5 * ONE, wait=WAIT)
    assert (back["status"], int(back["fee"])) == ("succeeded", FEE), back

    # Every step shows in both ends' views of the channels (the proofs they now hold).
    a_to_b = 2 * ONE + 3 * ONE + FEE - (5 * ONE)
    b_to_c = 3 * ONE - (5 * ONE + FEE)
    await until_async(lambda: _balance_is(net, 0, 1, before[(0, 1)] - a_to_b), WAIT)
    await until_async(lambda: _balance_is(net, 1, 0, before[(1, 0)] + a_to_b), WAIT)
    await until_async(lambda: _balance_is(net, 1, 2, before[(1, 2)] - b_to_c), WAIT)
    await until_async(lambda: _balance_is(net, 2, 1, before[(2, 1)] + b_to_c), WAIT)
    assert not await _blind_any_change(net, b)

    isle.restore_chain(0)
    isle.restore_chain(1)
    await until_async(lambda: reachable(net, 0), BLIND_WAIT)
    await until_async(lambda: reachable(net, 1), BLIND_WAIT)
    status = await b.status()
    assert status["blind_since"] is None
    await until_async(lambda: _synced(net, 1), WAIT)


async def _blind(net: NodeNet, index: int) -> bool:
    return not await reachable(net, index)


async def _balance_is(net: NodeNet, index: int, partner: int, expected: int) -> bool:
    return await balance(net, index, partner) == expected


async def _synced(net: NodeNet, index: int) -> bool:
    return bool((await (await net.client(index)).status())["synced"])


async def _blind_any_change(net: NodeNet, client: ApiClient) -> bool:
    """Whether B, blind, saw its chain view move (it must not: it has no chain)."""
    first = (await client.status())["latest_block"]
    net.env.mine()
    await asyncio.sleep(1.0)
    return bool((await client.status())["latest_block"] != first)


# -- the harness itself -------------------------------------------------------------------------


@pytest.fixture
def echo() -> Iterator[str]:
    """A TCP echo server on loopback standing in for anvil; its URL."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=_echo, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        server.close()


def _echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(4096):
            conn.sendall(data)


def chain_path(isle: Island, index: int, timeout: float = 3.0) -> str:
    """What node ``index`` gets when it dials its chain URL: ``connected`` (and, on
    loopback, its bytes echoed through the forwarder), an errno name, or TimeoutError."""
    url = urlsplit(isle.places[index].rpc_url)
    host, port = str(url.hostname), int(url.port or 0)
    if isinstance(isle, NetnsIsland):
        return isle.reaches(index, host, port, timeout)
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(b"ping")
            return "connected" if conn.recv(4) == b"ping" else "closed"
    except TimeoutError:
        return "TimeoutError"
    except OSError as exc:
        return os.strerror(exc.errno or 0) if exc.errno else type(exc).__name__


def test_cut_chain__each_kind_of_cut__fails_as_in_the_field_then_restores(
    echo: str, kind: Kind
) -> None:
    with island(2, echo, kind) as isle:
        assert isle.kind == kind
        assert [chain_path(isle, i) for i in range(2)] == ["connected", "connected"]

        isle.cut_chain(0)
        at_once = "ENETUNREACH" if kind == "netns" else os.strerror(111)  # refused
        assert chain_path(isle, 0) == at_once
        assert isle.chain_cut(0) and not isle.chain_cut(1)
        assert chain_path(isle, 1) == "connected"  # only node 0 is cut

        isle.cut_chain(0, silent=True)
        assert chain_path(isle, 0, timeout=1.0) == "TimeoutError"

        isle.restore_chain(0)
        assert not isle.chain_cut(0)
        assert chain_path(isle, 0) == "connected"


@pytest.mark.netns
def test_island__code_inside_fails__nothing_left_behind(echo: str) -> None:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"network namespaces unavailable: {reason}")
    made: list[str] = []
    with pytest.raises(RuntimeError, match="inside"), island(2, echo, "netns") as isle:
        assert isinstance(isle, NetnsIsland)
        made = list(isle.created)
        isle.cut_chain(1, silent=True)
        raise RuntimeError("a failure inside the island")
    assert len(made) == 1 + 2 * 3  # the LAN's namespace; per node one and two uplinks
    assert not set(made) & set(leftovers())
    with pytest.raises(IslandError, match="1 to 250"):
        island(0, echo, "netns")


@pytest.mark.netns
def test_cleanup_stale__a_dead_runs_namespace__removed_a_live_runs_kept(echo: str) -> None:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"network namespaces unavailable: {reason}")
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"smx-{dead.pid}-0-n0"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        with island(1, echo, "netns") as isle:  # cleans up on its way in
            assert isinstance(isle, NetnsIsland)
            assert stale not in leftovers()
            assert isle.namespaces[0] in leftovers()
            assert cleanup_stale() == []  # our own run is alive: kept
            assert chain_path(isle, 0) == "connected"
    finally:
        subprocess.run(["ip", "netns", "del", stale], check=False, capture_output=True)


def test_island_auto__namespaces_unavailable__falls_back_to_loopback(
    echo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(netns_module, "unavailable_reason", lambda: "network namespaces need root")
    with island(1, echo) as isle:
        assert isle.kind == "loopback"
        assert chain_path(isle, 0) == "connected"
    with pytest.raises(IslandError, match="need root"):
        island(1, echo, "netns")
