"""Three hosts in network namespaces joined by veth pairs: a - b - c, relays found by UDP
broadcast on each segment, with loss and delay; a link goes down and comes back.

Runs only as root where ``ip netns`` works; skipped cleanly otherwise. The test creates
its namespaces (unique names) and deletes them in ``finally``, which also destroys the
veth pairs inside them; the addresses (10.199.1.0/24, 10.199.2.0/24) exist only inside
those namespaces. Loss and delay come from ``tc netem`` when the kernel has it, and from
the relays' own impairment wrapper (``--impair-loss``/``--impair-delay``) when it does
not (DESIGN.md §5: these machines' kernels lack netem).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lib.relays import RelayProcess

pytestmark = pytest.mark.netns

PORT = 7777
NETEM = ["root", "netem", "delay", "10ms", "3ms", "loss", "10%"]
FAST = [
    "--mesh=hello_interval=2",
    "--mesh=neighbour_timeout=7",
    "--mesh=hello_tolerance=6",
    "--mesh=hop_rto=0.2",
    "--mesh=hop_rto_max=1",
]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=20)


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no ip command (iproute2)"
    probe = f"smp{uuid.uuid4().hex[:8]}"
    try:
        _ip("netns", "add", probe)
    except (subprocess.CalledProcessError, OSError) as exc:
        return f"ip netns does not work here: {exc}"
    _ip("netns", "del", probe, check=False)
    return None


class Hosts:
    """Namespaces a, b, c; veth a<->b (10.199.1.0/24) and b<->c (10.199.2.0/24)."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.ns = {name: f"smt{tag}{name}" for name in "abc"}
        self.created: list[str] = []
        self.netem = False

    def exec(self, host: str, *args: str, check: bool = True) -> None:
        _ip("netns", "exec", self.ns[host], *args, check=check)

    def build(self) -> None:
        for name in self.ns.values():
            _ip("netns", "add", name)
            self.created.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
        a, b, c = self.ns["a"], self.ns["b"], self.ns["c"]
        _ip("link", "add", "va", "netns", a, "type", "veth", "peer", "name", "vb1", "netns", b)
        _ip("link", "add", "vb2", "netns", b, "type", "veth", "peer", "name", "vc", "netns", c)
        for host, dev, address in [
            ("a", "va", "10.199.1.1/24"),
            ("b", "vb1", "10.199.1.2/24"),
            ("b", "vb2", "10.199.2.2/24"),
            ("c", "vc", "10.199.2.3/24"),
        ]:
            _ip("-n", self.ns[host], "addr", "add", address, "brd", "+", "dev", dev)
            _ip("-n", self.ns[host], "link", "set", dev, "up")
        # Loss and delay on every interface, if this kernel has netem.
        added = [
            subprocess.run(
                ["ip", "netns", "exec", self.ns[host], "tc", "qdisc", "add", "dev", dev, *NETEM],
                capture_output=True,
                check=False,
                timeout=20,
            ).returncode
            == 0
            for host, dev in [("a", "va"), ("b", "vb1"), ("b", "vb2"), ("c", "vc")]
        ]
        self.netem = all(added)

    def remove(self) -> None:
        for name in self.created:
            _ip("netns", "del", name, check=False)
        self.created.clear()


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    reason = _skip_reason()
    if reason is not None:
        pytest.skip(reason)
    built = Hosts()
    try:
        built.build()
        yield built
    finally:
        built.remove()
        leftover = _ip("netns", "list", check=False).stdout
        assert not any(name in leftover for name in built.ns.values())


def test_three_hosts_over_veth_with_loss_and_a_link_outage(hosts: Hosts) -> None:
    impair = [] if hosts.netem else ["--impair-loss=0.1", "--impair-delay=0.01"]
    base = Path(tempfile.mkdtemp(prefix="mesh-ns-"))
    relays: list[RelayProcess] = []
    try:
        beacons = {
            "a": ["10.199.1.255"],
            "b": ["10.199.1.255", "10.199.2.255"],
            "c": ["10.199.2.255"],
        }
        for host in "abc":
            args = [
                f"--udp-listen=0.0.0.0:{PORT}",
                *(f"--udp-beacon={address}:{PORT}" for address in beacons[host]),
                "--mtu=210",
                *FAST,
                *impair,
            ]
            relays.append(RelayProcess(host, base, args, netns=hosts.ns[host]))
        a, b, c = relays
        a.control.wait_for(lambda s: c.address in s["destinations"], 30.0)
        c.control.wait_for(lambda s: a.address in s["destinations"], 30.0)
        assert sorted(b.control.status()["neighbours"]) == sorted([a.address, c.address])

        # 64-byte payloads take two frames at 210 bytes; every one arrives once.
        ids = {a.control.send(c.address, os.urandom(64), lifetime=120) for _ in range(10)}
        delivered = _events(c, "deliver", len(ids), 60.0)
        assert sorted(e["id"] for e in delivered) == sorted(ids)
        assert {e["id"] for e in _events(a, "delivered", len(ids), 60.0)} == ids

        # The b - c link goes down: the message waits at b and goes when it is back.
        hosts.exec("b", "ip", "link", "set", "vb2", "down")
        later = a.control.send(c.address, b"sent during the outage", lifetime=120)
        b.control.wait_for(lambda s: s["custody"] >= 1, 30.0)
        time.sleep(1.0)
        hosts.exec("b", "ip", "link", "set", "vb2", "up")
        [after] = _events(c, "deliver", 1, 60.0)
        assert after["id"] == later
        assert bytes.fromhex(after["payload"]) == b"sent during the outage"
        assert _events(a, "delivered", 1, 60.0)[0]["id"] == later
        lost = 0
        for relay in relays:
            stats = relay.control.status()["stats"]
            assert stats.get("runtime.core_errors", 0) == 0
            lost += sum(v for k, v in stats.items() if k.endswith("impaired_lost"))
        assert hosts.netem or lost > 0  # the loss was real
    finally:
        for relay in relays:
            relay.stop(signal.SIGTERM)
        shutil.rmtree(base, ignore_errors=True)


def _events(relay: RelayProcess, kind: str, count: int, timeout: float) -> list[dict[str, str]]:
    found: list[dict[str, str]] = []
    deadline = time.monotonic() + timeout
    while len(found) < count:
        left = deadline - time.monotonic()
        event = relay.control.event(max(left, 0.0)) if left > 0 else None
        if event is None:
            raise TimeoutError(f"{relay.name}: {len(found)} of {count} {kind} events")
        if event["event"] == kind:
            found.append(event)
    return found
