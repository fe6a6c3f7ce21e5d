"""An island for the offline scenario: nodes on a mesh LAN whose path to the chain can be
cut, one node at a time, for the island test, the offline demo and the benches.

Two kinds, one interface (``Island``), so that the test and the demo are written once:

* ``NetnsIsland`` (root, where ``ip netns`` works; ``available()`` says so). Every node has
  a network namespace of its own (``smx-<pid>-<seq>-n<i>``) with three interfaces:

  - ``mesh0`` (10.231.0.<i+1>/24): a veth into a Linux bridge ``br0`` that lives in a
    namespace of its own (``smx-<pid>-<seq>-mesh``): the island's LAN. The nodes' mesh
    links run over it (TCP, each node listens on its address and dials the peers it is
    told to).
  - ``chain0``: the chain uplink, a veth pair to the root namespace (a /30 of
    10.232.0.0/16; the root end is ``smx<k>c``). A small TCP forwarder in the root
    namespace listens on the root end's address and forwards to anvil, which stays on
    127.0.0.1 in the root namespace: the node's ``rpc_url`` is ``http://<root end>:8545``.
  - ``api0``: the control uplink, a second veth pair to the root namespace (a /30 of
    10.233.0.0/16; root end ``smx<k>a``). The node's HTTP API listens on its end (with a
    bearer token, as the API requires off loopback); the test or the demo reaches it
    from the root namespace.

  Why two uplinks: cutting the chain must be a real cut of the link (the node's RPC then
  fails as in the field, at the socket), while the test keeps watching the node through
  its API. With one uplink, taking it down would blind the test too, and stopping only
  the forwarder would be a refusal by a live host, not a lost link.

  ``cut_chain(i)`` sets the node's ``chain0`` down: its route to the chain disappears,
  new connections fail at once (``Network is unreachable``, as on a device whose radio
  dropped) and a request in flight times out. ``cut_chain(i, silent=True)`` sets the root
  end down instead: the node keeps its interface, address and route, but its frames
  vanish, so every request times out (as behind a Wi-Fi whose upstream is gone; the node
  holds the far end's hardware address as a permanent neighbour entry, so no failed ARP
  gives the cut away after 3 s). ``restore_chain(i)`` sets both ends up (addresses stay
  configured while a link is down).

  What a node can reach: nothing but what the island creates. Its namespace has no
  default route, only the routes of its three connected subnets: the island's LAN, the
  root end of its chain uplink (where only our forwarder listens on our port) and the
  root end of its API uplink. The root namespace does not forward for it (no route back
  is needed: the node never has a route out). 127.0.0.1 inside the namespace is the
  namespace's own loopback, not the host's: anvil is reachable only through the
  forwarder. The addresses 10.231.0.0/24, 10.232.0.0/16 and 10.233.0.0/16 exist only
  on our interfaces; ``unavailable_reason`` refuses to build when the host already routes
  them elsewhere.

  Names carry the creating process's pid: a run that died (SIGKILL, a crash) leaves
  namespaces behind, and the next island removes those whose process is gone
  (``cleanup_stale``), never another live run's. Building and the choice of uplink
  subnets happen under a file lock, so parallel runs (pytest-xdist workers, a demo
  beside a test) never pick the same subnet. ``close`` (also on an exception inside the
  ``with``) kills what still runs inside the namespaces, deletes the root ends of the
  uplinks (which destroys the veth pairs at once) and the namespaces.

* ``LoopbackIsland`` (anyone): every node on 127.0.0.1 with ports of its own; its chain
  goes through a forwarder of its own on loopback. ``cut_chain(i)`` closes that
  forwarder's listening socket and resets its connections (connection refused);
  ``silent=True`` keeps it listening but it answers nothing and forwards nothing, in
  either direction (requests time out). The mesh and the API are untouched.

Also here: ``island()`` (builds the kind asked for, or the best available), ``Island.node`` (a
``scripts.nodes.NodeProcess`` placed on the island), and ``TcpForwarder``.

Does not belong here: what the nodes do (the callers, through the API), mesh loss (the
node's testing-only ``mesh_impair_*`` settings: these kernels have no ``tc netem``),
anvil itself (``scripts.anvil``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import ipaddress
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Final, Literal
from urllib.parse import urlsplit

from scripts.nodes import NodeProcess, free_port

PREFIX: Final = "smx"
"""Every namespace we create is named ``smx-<pid>-...``; root ends of uplinks ``smx<k>?``."""
MESH_NET: Final = ipaddress.ip_network("10.231.0.0/24")
CHAIN_NET: Final = ipaddress.ip_network("10.232.0.0/16")
API_NET: Final = ipaddress.ip_network("10.233.0.0/16")
MESH_PORT: Final = 7778
API_PORT: Final = 5001
RPC_PORT: Final = 8545
MAX_NODES: Final = 250
_SLOTS: Final = CHAIN_NET.num_addresses // 4
_LOCK: Final = Path(tempfile.gettempdir()) / "smx-netns.lock"
_NS_NAME: Final = re.compile(rf"^{PREFIX}-(\d+)-")
_sequence = itertools.count()

Kind = Literal["auto", "netns", "loopback"]


class IslandError(Exception):
    """The island could not be built or changed (an ``ip`` command failed)."""


# -- ip ---------------------------------------------------------------------------------------


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(
            ["ip", *args], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise IslandError(f"ip {' '.join(args)}: {exc}") from None
    if check and done.returncode != 0:
        raise IslandError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def _namespaces() -> list[str]:
    listed = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in listed.splitlines() if line.strip()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_inside(namespace: str) -> None:
    """SIGKILL every process still running in ``namespace`` (only ours run there)."""
    for text in _ip("netns", "pids", namespace, check=False).stdout.split():
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(text), signal.SIGKILL)


@functools.cache
def unavailable_reason() -> str | None:
    """Why network namespaces cannot be used here, or ``None`` when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no ip command (iproute2)"
    for net in (MESH_NET, CHAIN_NET, API_NET):
        routes = _ip("-4", "route", "show", "root", str(net), check=False).stdout
        for line in routes.splitlines():
            device = re.search(r"\bdev (\S+)", line)
            if device is None or not device.group(1).startswith(PREFIX):
                return f"the host already routes {net} ({line.strip()}): not ours to use"
    probe = f"{PREFIX}-{os.getpid()}-probe"
    try:
        _ip("netns", "add", probe)
        try:
            _ip("-n", probe, "link", "add", "br0", "type", "bridge")
            _ip("-n", probe, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        finally:
            _ip("netns", "del", probe, check=False)
    except IslandError as exc:
        return f"ip netns does not work here: {exc}"
    return None


def available() -> bool:
    """Whether ``NetnsIsland`` can be built (root, ``ip``, and a probe namespace works)."""
    return unavailable_reason() is None


def cleanup_stale() -> list[str]:
    """Delete the namespaces of runs whose process is gone (with whatever still runs in
    them; their veth pairs go with them). The names deleted."""
    removed = []
    for name in _namespaces():
        match = _NS_NAME.match(name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        _kill_inside(name)
        _ip("netns", "del", name, check=False)
        removed.append(name)
    return removed


# -- the chain forwarder ----------------------------------------------------------------------


class _LoopThread:
    """An event loop in a daemon thread: the forwarders run there while the caller blocks
    (starting a node waits for its ready line, which waits for the chain)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(20)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class TcpForwarder:
    """Forwards TCP connections from ``listen`` to ``upstream``, byte for byte.

    ``refuse()`` closes the listening socket and aborts every connection (the endpoint is
    gone: connection refused); ``blackhole()`` keeps accepting but forwards nothing either
    way (requests time out); ``start()`` forwards again (on the same address)."""

    def __init__(
        self, loop: _LoopThread, listen: tuple[str, int], upstream: tuple[str, int]
    ) -> None:
        self._loop = loop
        self.listen = listen
        self.upstream = upstream
        self.mode: Literal["forward", "refuse", "blackhole"] = "refuse"
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()

    def start(self) -> None:
        self._loop.call(self._start())

    def refuse(self) -> None:
        self._loop.call(self._refuse())

    def blackhole(self) -> None:
        self._loop.call(self._blackhole())

    async def _start(self) -> None:
        self.mode = "forward"
        if self._server is None:
            host, port = self.listen
            self._server = await asyncio.start_server(self._serve, host, port, reuse_address=True)

    async def _blackhole(self) -> None:
        await self._start()
        self.mode = "blackhole"

    async def _refuse(self) -> None:
        self.mode = "refuse"
        if self._server is not None:
            self._server.close()
            self._server = None
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._transports.add(writer.transport)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            while self.mode == "blackhole":  # hold the connection, answer nothing
                if not await reader.read(65536):
                    return
            if self.mode != "forward":
                return
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                return
            self._transports.add(upstream_writer.transport)
            await asyncio.gather(
                self._pump(reader, upstream_writer), self._pump(upstream_reader, writer)
            )
        finally:
            for one in (writer, upstream_writer):
                if one is not None:
                    self._transports.discard(one.transport)
                    one.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if self.mode == "forward":  # a blackhole swallows what was in flight
                    writer.write(data)
                    await writer.drain()
        # One side is done: end both (a JSON-RPC exchange has nothing half-closed).
        writer.transport.abort()


# -- islands ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    """Where node ``index`` lives on an island: what its ``NodeProcess`` needs."""

    index: int
    netns: str | None
    """The namespace to run it in (``None`` on loopback)."""
    mesh_host: str
    mesh_port: int
    api_host: str
    api_port: int
    rpc_url: str
    """The chain as this node reaches it (through its forwarder)."""

    @property
    def mesh_endpoint(self) -> str:
        return f"{self.mesh_host}:{self.mesh_port}"


class Island:
    """Nodes on a mesh LAN, each with a path to the chain that can be cut (see the module
    docstring). Use as a context manager; ``close`` undoes everything."""

    kind: ClassVar[str]
    places: list[Place]

    def __init__(self) -> None:
        self.places = []
        self._cut: dict[int, bool] = {}  # index -> silent

    def __enter__(self) -> Island:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.places)

    def node(
        self,
        index: int,
        name: str,
        key: bytes,
        directory: Path,
        deployment: Path,
        *,
        dial: Sequence[int] = (),
        settings: dict[str, dict[str, Any]] | None = None,
    ) -> NodeProcess:
        """A node process placed at ``index`` that dials the nodes at ``dial`` over the
        mesh (not started)."""
        place = self.places[index]
        return NodeProcess(
            name,
            key,
            directory,
            place.rpc_url,
            deployment,
            peers=[self.places[i].mesh_endpoint for i in dial],
            settings=settings or {},
            api_port=place.api_port,
            tcp_port=place.mesh_port,
            netns=place.netns,
            mesh_host=place.mesh_host,
            api_host=place.api_host,
        )

    def chain_cut(self, index: int) -> bool:
        return index in self._cut

    def cut_chain(self, index: int, *, silent: bool = False) -> None:
        """Cut node ``index`` off the chain: at once (``silent=False``: its connections fail)
        or silently (its requests time out). The mesh and the API stay up."""
        if index in self._cut:
            self.restore_chain(index)
        self._cut_chain(index, silent)
        self._cut[index] = silent

    def restore_chain(self, index: int) -> None:
        """Give node ``index`` its path to the chain back."""
        silent = self._cut.pop(index, None)
        if silent is not None:
            self._restore_chain(index, silent)

    def close(self) -> None:
        raise NotImplementedError

    def _cut_chain(self, index: int, silent: bool) -> None:
        raise NotImplementedError

    def _restore_chain(self, index: int, silent: bool) -> None:
        raise NotImplementedError


def _upstream(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise IslandError(f"the chain URL needs a host and a port: {url}")
    return parts.hostname, parts.port


class LoopbackIsland(Island):
    """Every node on 127.0.0.1; its chain through a forwarder of its own."""

    kind = "loopback"

    def __init__(self, count: int, upstream: str) -> None:
        super().__init__()
        self._loop = _LoopThread()
        self._forwarders: list[TcpForwarder] = []
        try:
            for index in range(count):
                forwarder = TcpForwarder(
                    self._loop, ("127.0.0.1", free_port()), _upstream(upstream)
                )
                forwarder.start()
                self._forwarders.append(forwarder)
                host, port = forwarder.listen
                self.places.append(
                    Place(
                        index,
                        None,
                        "127.0.0.1",
                        free_port(),
                        "127.0.0.1",
                        free_port(),
                        f"http://{host}:{port}",
                    )
                )
        except BaseException:
            self.close()
            raise

    def _cut_chain(self, index: int, silent: bool) -> None:
        if silent:
            self._forwarders[index].blackhole()
        else:
            self._forwarders[index].refuse()

    def _restore_chain(self, index: int, silent: bool) -> None:
        self._forwarders[index].refuse()  # drops what a blackhole held
        self._forwarders[index].start()

    def close(self) -> None:
        for forwarder in self._forwarders:
            with contextlib.suppress(Exception):
                forwarder.refuse()
        self._forwarders.clear()
        self._loop.close()


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    with _LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _slot_address(net: ipaddress.IPv4Network | ipaddress.IPv6Network, slot: int, host: int) -> str:
    return str(net.network_address + 4 * slot + host)


class NetnsIsland(Island):
    """One namespace per node on a bridged LAN, each with a chain uplink and an API uplink
    to the root namespace (see the module docstring)."""

    kind = "netns"

    def __init__(self, count: int, upstream: str) -> None:
        super().__init__()
        reason = unavailable_reason()
        if reason is not None:
            raise IslandError(reason)
        if not 1 <= count <= MAX_NODES:
            raise IslandError(f"an island has 1 to {MAX_NODES} nodes, not {count}")
        self.tag = f"{PREFIX}-{os.getpid()}-{next(_sequence)}"
        self.mesh_ns = f"{self.tag}-mesh"
        self.namespaces: list[str] = []
        self.root_links: list[str] = []
        self.created: list[str] = []
        """Every namespace and root link this island made (kept after ``close``)."""
        self._slots: list[int] = []
        self._loop = _LoopThread()
        self._forwarders: list[TcpForwarder] = []
        try:
            with _build_lock():
                cleanup_stale()
                self._slots = self._free_slots(count)
                self._build(count)
            for index, slot in enumerate(self._slots):
                listen = (_slot_address(CHAIN_NET, slot, 1), RPC_PORT)
                forwarder = TcpForwarder(self._loop, listen, _upstream(upstream))
                forwarder.start()
                self._forwarders.append(forwarder)
                self.places.append(
                    Place(
                        index,
                        self.node_ns(index),
                        str(MESH_NET.network_address + index + 1),
                        MESH_PORT,
                        _slot_address(API_NET, slot, 2),
                        API_PORT,
                        f"http://{listen[0]}:{RPC_PORT}",
                    )
                )
        except BaseException:
            self.close()
            raise

    def node_ns(self, index: int) -> str:
        return f"{self.tag}-n{index}"

    @staticmethod
    def _free_slots(count: int) -> list[int]:
        """Uplink subnets no interface of the root namespace uses (called under the lock)."""
        used = set()
        listed = _ip("-o", "-4", "addr", "show", check=False).stdout
        for address in re.findall(r"\binet (\S+)/", listed):
            ip = ipaddress.ip_address(address)
            for net in (CHAIN_NET, API_NET):
                if ip in net:
                    used.add((int(ip) - int(net.network_address)) // 4)
        links = _ip("-o", "link", "show", check=False).stdout
        used.update(int(k) for k in re.findall(rf"\d+: {PREFIX}(\d+)[ca][@:]", links))
        free = [slot for slot in range(_SLOTS) if slot not in used][:count]
        if len(free) < count:
            raise IslandError("no free uplink subnets left in 10.232.0.0/16")
        return free

    def _build(self, count: int) -> None:
        mesh = self.mesh_ns
        _ip("netns", "add", mesh)
        self.namespaces.append(mesh)
        self.created.append(mesh)
        _ip("-n", mesh, "link", "set", "lo", "up")
        # No STP on a star of veths: ports forward at once.
        _ip("-n", mesh, "link", "add", "br0", "type", "bridge", "stp_state", "0")
        _ip("-n", mesh, "link", "set", "br0", "up")
        prefix = MESH_NET.prefixlen
        for index, slot in enumerate(self._slots[:count]):
            ns = self.node_ns(index)
            _ip("netns", "add", ns)
            self.namespaces.append(ns)
            self.created.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            # The LAN: a bridge port in the mesh namespace, mesh0 in the node's.
            port = f"p{index}"
            _ip("link", "add", port, "netns", mesh, "type", "veth", "peer", "name", "mesh0",
                "netns", ns)  # fmt: skip
            _ip("-n", mesh, "link", "set", port, "master", "br0", "up")
            mesh_address = MESH_NET.network_address + index + 1
            _ip("-n", ns, "addr", "add", f"{mesh_address}/{prefix}", "dev", "mesh0")
            _ip("-n", ns, "link", "set", "mesh0", "up")
            # The uplinks: created in the root namespace's name, the far end in the node's.
            for net, suffix, inner in ((CHAIN_NET, "c", "chain0"), (API_NET, "a", "api0")):
                outer = f"{PREFIX}{slot}{suffix}"
                _ip("link", "add", outer, "type", "veth", "peer", "name", inner, "netns", ns)
                self.root_links.append(outer)
                self.created.append(outer)
                _ip("addr", "add", f"{_slot_address(net, slot, 1)}/30", "dev", outer)
                _ip("link", "set", outer, "up")
                _ip("-n", ns, "addr", "add", f"{_slot_address(net, slot, 2)}/30", "dev", inner)
                _ip("-n", ns, "link", "set", inner, "up")
                # The far end's hardware address, known for good: with its end down,
                # frames vanish (requests time out) instead of ARP failing after 3 s.
                mac = Path(f"/sys/class/net/{outer}/address").read_text().strip()
                _ip("-n", ns, "neigh", "replace", _slot_address(net, slot, 1), "lladdr", mac,
                    "dev", inner, "nud", "permanent")  # fmt: skip

    def _chain_links(self, index: int) -> tuple[str, str]:
        return f"{PREFIX}{self._slots[index]}c", "chain0"

    def _cut_chain(self, index: int, silent: bool) -> None:
        outer, inner = self._chain_links(index)
        if silent:
            _ip("link", "set", outer, "down")
        else:
            _ip("-n", self.node_ns(index), "link", "set", inner, "down")

    def _restore_chain(self, index: int, silent: bool) -> None:
        outer, inner = self._chain_links(index)
        _ip("link", "set", outer, "up")
        _ip("-n", self.node_ns(index), "link", "set", inner, "up")

    def reaches(self, index: int, host: str, port: int, timeout: float = 2.0) -> str:
        """What a TCP connection from node ``index``'s namespace to ``host:port`` gives:
        ``"connected"``, the error's errno name (``"ECONNREFUSED"``, ``"ENETUNREACH"``) or
        ``"TimeoutError"`` (for tests of the isolation)."""
        probe = (
            "import errno, socket\n"
            "try:\n"
            f"    socket.create_connection(({host!r}, {port}), timeout={timeout}).close()\n"
            "    print('connected')\n"
            "except OSError as exc:\n"
            "    print(errno.errorcode.get(exc.errno or 0, type(exc).__name__))\n"
        )
        done = subprocess.run(
            ["ip", "netns", "exec", self.node_ns(index), sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            timeout=timeout + 20,
            check=True,
        )
        return done.stdout.strip()

    def close(self) -> None:
        for forwarder in self._forwarders:
            with contextlib.suppress(Exception):
                forwarder.refuse()
        self._forwarders.clear()
        self._loop.close()
        for namespace in self.namespaces:
            _kill_inside(namespace)
        # Deleting a root end destroys its pair at once; a namespace's own veths go with
        # it, but the kernel frees a namespace's devices later.
        for link in self.root_links:
            _ip("link", "del", link, check=False)
        for namespace in self.namespaces:
            _ip("netns", "del", namespace, check=False)
        self.root_links.clear()
        self.namespaces.clear()


def leftovers() -> list[str]:
    """Namespaces and root links of ours that exist now (of every run, live or not)."""
    found = [name for name in _namespaces() if _NS_NAME.match(name)]
    links = _ip("-o", "link", "show", check=False).stdout
    found += re.findall(rf"\d+: ({PREFIX}\d+[ca])[@:]", links)
    return found


def island(count: int, upstream: str, kind: Kind = "auto") -> Island:
    """An island of ``count`` nodes whose chain is ``upstream`` (anvil's URL): in network
    namespaces (``"netns"``), on loopback (``"loopback"``), or namespaces when
    ``available()`` (``"auto"``). Use it as ``with island(3, env.url) as isle: ...``."""
    if kind == "auto":
        kind = "netns" if available() else "loopback"
    if kind == "netns":
        return NetnsIsland(count, upstream)
    return LoopbackIsland(count, upstream)
