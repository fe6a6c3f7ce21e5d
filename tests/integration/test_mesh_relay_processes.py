"""Relay processes on loopback: a message crosses three relays; store and forward survives
a restart; SIGTERM stops a relay gracefully.

Five real processes on 127.0.0.1, each with its own ports, data folder and control
socket, joined in a line: sender - r1 - r2 - r3 - receiver. Each dials the next one
toward the receiver over TCP, except the first and last hops, which are UDP segments
found by broadcast beacons on 127.255.255.255 (one beacon port per segment), so both
media and discovery are crossed. The sender and the receiver are relays too, used as
applications through their control sockets (docs/mesh.md §14).
"""

from __future__ import annotations

import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lib.relays import RelayProcess


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Line:
    """sender - r1 - r2 - r3 - receiver, started from the receiver's end."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.segment_a = _free_udp_port()  # sender <-> r1
        self.segment_b = _free_udp_port()  # r3 <-> receiver
        self.procs: dict[str, RelayProcess] = {}
        self.tcp_ports: dict[str, int] = {}

    def udp(self, segment: int) -> list[str]:
        return ["--udp-listen=127.0.0.1:0", f"--udp-beacon=127.255.255.255:{segment}"]

    def start(self, name: str, **kwargs: object) -> RelayProcess:
        listen = f"--tcp-listen=127.0.0.1:{self.tcp_ports.get(name, 0)}"
        args: list[str]
        if name == "receiver":
            args = self.udp(self.segment_b)
        elif name == "r3":
            args = [*self.udp(self.segment_b), listen]
        elif name == "r2":
            args = [listen, f"--tcp-peer=127.0.0.1:{self.tcp_ports['r3']}"]
        elif name == "r1":
            args = [*self.udp(self.segment_a), f"--tcp-peer=127.0.0.1:{self.tcp_ports['r2']}"]
        else:
            args = self.udp(self.segment_a)
        proc = RelayProcess(name, self.base, args, **kwargs)  # type: ignore[arg-type]
        self.procs[name] = proc
        if proc.ready["tcp"]:
            self.tcp_ports[name] = proc.tcp_port
        return proc

    def start_all(self) -> None:
        # r1 runs through the console script, so `smartmesh relay` is what is tested there.
        for name in ("receiver", "r3", "r2", "r1", "sender"):
            self.start(name, console_script=name == "r1")

    def wait_route(self, timeout: float = 20.0) -> None:
        receiver = self.procs["receiver"].address
        sender = self.procs["sender"].address
        self.procs["sender"].control.wait_for(lambda s: receiver in s["destinations"], timeout)
        self.procs["receiver"].control.wait_for(lambda s: sender in s["destinations"], timeout)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.proc.poll() is None:
                proc.stop(signal.SIGKILL)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # Unix socket paths must stay under 108 bytes; pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="mesh-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def line(short_dir: Path) -> Iterator[Line]:
    line = Line(short_dir)
    try:
        yield line
    finally:
        line.stop_all()


def _no_more_deliveries(control: object, seconds: float) -> list[dict[str, object]]:
    events = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        event = control.event(left)  # type: ignore[attr-defined]
        if event is None:
            break
        events.append(event)
    return [e for e in events if e["event"] == "deliver"]


def test_message_crosses_three_relay_processes_exactly_once(line: Line) -> None:
    line.start_all()
    line.wait_route()
    sender, receiver = line.procs["sender"], line.procs["receiver"]
    payload = b"across three relays " * 20  # 400 bytes: one frame at the 1,200-byte MTU
    message_id = sender.control.send(receiver.address, payload, lifetime=120)

    delivered = receiver.control.event(15.0)
    assert delivered is not None
    assert delivered == {
        "event": "deliver",
        "from": sender.address,
        "id": message_id,
        "payload": payload.hex(),
    }
    outcome = sender.control.event(15.0)
    assert outcome == {"event": "delivered", "id": message_id}
    assert _no_more_deliveries(receiver.control, 1.0) == []
    assert receiver.control.status()["stats"]["delivered"] == 1
    for name in ("r1", "r2", "r3"):
        stats = line.procs[name].control.status()["stats"]
        assert stats.get("relay_accepted", 0) >= 2, name  # the message and its e2e ack
        assert stats.get("delivered", 0) == 0, name
        assert stats.get("runtime.core_errors", 0) == 0, name


def test_stored_message_is_delivered_after_the_relay_holding_it_restarts(line: Line) -> None:
    line.start_all()
    line.wait_route()
    sender, receiver, r3 = line.procs["sender"], line.procs["receiver"], line.procs["r3"]
    receiver_address = receiver.address
    # Freeze the receiver: r3 gets the message and keeps custody (no hop ack comes).
    receiver.send_signal(signal.SIGSTOP)
    payload = b"held by r3 across its restart"
    # Lifetime 600 s: the sender's own end-to-end retry would come after 60 s, so a
    # delivery within this test can only come from r3's stored copy.
    message_id = sender.control.send(receiver_address, payload, lifetime=600)
    r3.control.wait_for(lambda s: s["custody"] >= 1, 15.0)
    line.procs["r2"].control.wait_for(lambda s: s["custody"] == 0, 15.0)

    assert r3.stop(signal.SIGTERM) == 0
    log = r3.log()
    assert "final snapshot" in log and "1 frames in custody" in log
    assert (r3.data / "relay.snapshot").exists()
    assert receiver.stop(signal.SIGKILL) != 0  # the frozen receiver never saw the message

    receiver = line.start("receiver")
    assert receiver.address == receiver_address  # same key file
    r3 = line.start("r3")
    assert r3.ready["restored"] == {"pending": 0, "custody": 1}

    delivered = receiver.control.event(20.0)
    assert delivered is not None
    assert (delivered["event"], delivered["id"]) == ("deliver", message_id)
    assert bytes.fromhex(str(delivered["payload"])) == payload
    outcome = sender.control.event(20.0)
    assert outcome == {"event": "delivered", "id": message_id}
    assert sender.control.status()["stats"].get("e2e_retries", 0) == 0
    assert _no_more_deliveries(receiver.control, 1.0) == []


def test_sigterm_and_sigint_stop_a_relay_gracefully(short_dir: Path) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        relay = RelayProcess(f"r{signum}", short_dir, ["--no-udp", "--tcp-listen=127.0.0.1:0"])
        relay.control.send("0x" + "11" * 20, b"waits for a node that never comes")
        assert relay.stop(signum) == 0
        log = relay.log()
        assert "stopping" in log and log.rstrip().endswith("stopped")
        assert "final snapshot" in log and "1 own messages" in log
        assert not relay.control_path.exists()  # the control socket is removed
        assert (relay.data / "relay.snapshot").stat().st_size > 21
        assert not [p for p in relay.data.iterdir() if p.name.endswith(".tmp")]
