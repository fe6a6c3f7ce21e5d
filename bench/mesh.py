"""Figures of the mesh relay: real relay processes on loopback, and the simulator's.

Belongs here: ``measure()``, which `bench.run` merges into bench/results.json:

- ``mesh.p50_latency_ms_3relays_loopback`` and ``mesh.messages_per_s_3relays_loopback``:
  five processes on 127.0.0.1 joined in a line by TCP links, sender - r1 - r2 - r3 -
  receiver. The three relays are the real command (``python -m mesh_relay``); the sender
  and the receiver are ``worker`` processes of this module, each a ``MeshRuntime`` with
  a TCP adapter, exactly what an application embeds. Payloads of 64 bytes, routed MTU
  1,200 (``--mtu`` to change); every node tuned as an IP relay would be (``RATE``,
  ``HOP_WINDOW``), every other setting the default. Latency: one message at a time
  (the next leaves when the sender has the end-to-end ack), one way, from ``send`` at
  the sender to the delivery at the receiver, both read on CLOCK_MONOTONIC (one clock
  for every process of a Linux host); the median of ``LATENCY_MESSAGES``. Throughput:
  ``THROUGHPUT_MESSAGES`` messages sent with up to ``WINDOW`` unacknowledged, divided by
  the time from the first send to the last delivery.
- ``mesh.delivery_ratio_1000_nodes``: the simulator's 1,000-node bench
  (``mesh_relay.sim.delivery_ratio_1000_nodes``, docs/mesh.md §12).
- ``mesh.overhead_bytes_per_frame``: header and envelope bytes of a one-frame 64-byte
  message (``mesh_relay.sim.overhead_bytes_per_frame``).
- ``mesh.envelope_us_per_message``: CPU µs of the end-to-end envelope alone for one
  64-byte message between two nodes that have talked before, in one process on one core:
  the message id, sealing and the expected ack at the origin, opening and the ack at the
  destination, the ack's check at the origin (``envelope_figure``; docs/mesh.md §15).

``python -m bench.mesh`` prints the figures (``--skip-sim`` for the loopback ones alone,
``--profile DIR`` writes a cProfile of every process into DIR).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mesh_relay import sim
from mesh_relay.config import MeshConfig
from mesh_relay.effects import Deliver, EventExpired
from mesh_relay.envelope import ack_tag, message_id, open_envelope, seal, verify_ack
from mesh_relay.identity import Identity
from mesh_relay.runtime import AppEvent, MeshRuntime, Outcome
from mesh_relay.tcp import TcpLinks

LATENCY_MESSAGES = 300
THROUGHPUT_MESSAGES = 20_000
WINDOW = 512
PAYLOAD = 64
LIFETIME = 120.0
RATE = 64 << 20
"""Per-neighbour rate limit for the bench (bytes/s): the default, 256 KiB/s, suits a
phone's radio neighbours and would cap a loopback relay at about 800 frames/s; a relay
on a LAN or a server sets its own, as the bench does here."""
HOP_WINDOW = 64
"""Frames in flight per neighbour: the default, 16, suits radio; on IP a larger window
means larger batches per socket read and about 13 % less CPU per message here."""
MESH_FLAGS = [
    f"--mesh=rate_bytes_per_s={RATE}",
    f"--mesh=rate_burst_bytes={2 * RATE}",
    f"--mesh=hop_window={HOP_WINDOW}",
]


def bench_config(mtu: int, pending: int = 1024) -> MeshConfig:
    """The workers' config: the relays get the same through ``MESH_FLAGS``."""
    return MeshConfig(
        routed_mtu=mtu,
        rate_bytes_per_s=RATE,
        rate_burst_bytes=2 * RATE,
        max_pending_messages=pending,
        hop_window=HOP_WINDOW,
    )


ROOT = Path(__file__).resolve().parents[1]


# -- worker processes (sender and receiver) ------------------------------------------------


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def _receiver(args: argparse.Namespace) -> None:
    tcp = TcpLinks(("127.0.0.1", 0), [], args.mtu)
    runtime = MeshRuntime(bench_config(args.mtu), os.urandom(32), [tcp])
    await runtime.start()
    assert tcp.local_address is not None
    latencies: list[int] = []
    counts = {"count": 0, "last_ns": 0}

    def on_event(event: AppEvent) -> None:
        # A listener, not a queue: the time taken is when the application gets it.
        if isinstance(event, Deliver):
            now_ns = time.monotonic_ns()
            if event.payload[0] == 0:
                latencies.append(now_ns - int.from_bytes(event.payload[1:9], "big"))
            else:
                counts["count"] += 1
                counts["last_ns"] = now_ns

    runtime.listen(on_event)
    _emit({"ready": True, "address": runtime.address.hex(), "tcp": tcp.local_address[1]})
    stdin = await _stdin_lines()
    await stdin.readline()
    _emit({"latencies_ns": latencies, **counts})
    await runtime.stop()


def _payload(kind: int) -> bytes:
    return bytes((kind,)) + time.monotonic_ns().to_bytes(8, "big") + bytes(PAYLOAD - 9)


async def _sender(args: argparse.Namespace) -> None:
    tcp = TcpLinks(None, [("127.0.0.1", args.peer)], args.mtu)
    config = bench_config(args.mtu, pending=max(1024, 2 * args.window))
    runtime = MeshRuntime(config, os.urandom(32), [tcp])
    await runtime.start()
    target = bytes.fromhex(args.to)
    while target not in runtime.node.routing.destinations():
        await asyncio.sleep(0.01)
    # Warm-up: caches, the first connections' buffers.
    for _ in range(20):
        await runtime.outcome(runtime.send(target, _payload(0), LIFETIME))
    _emit({"route": True})
    stdin = await _stdin_lines()
    await stdin.readline()  # the receiver has reset its counters
    for _ in range(args.latency):
        outcome = await runtime.outcome(runtime.send(target, _payload(0), LIFETIME))
        assert outcome is Outcome.DELIVERED, outcome
    _emit({"latency_done": True})
    await stdin.readline()  # the driver has read every process's CPU time
    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    state = {"sent": 0, "resolved": 0, "expired": 0, "scheduled": 0}

    def top_up() -> None:
        state["scheduled"] = 0
        while state["sent"] < args.count and state["sent"] - state["resolved"] < args.window:
            runtime.send(target, _payload(1), LIFETIME)
            state["sent"] += 1

    def on_event(event: AppEvent) -> None:
        if isinstance(event, Deliver):
            return
        state["resolved"] += 1
        if isinstance(event, EventExpired):
            state["expired"] += 1
        if state["resolved"] >= args.count and not finished.done():
            finished.set_result(None)
        elif not state["scheduled"]:
            # Send from the loop, not from inside the runtime's effect loop.
            state["scheduled"] = 1
            loop.call_soon(top_up)

    start_ns = time.monotonic_ns()
    runtime.listen(on_event)
    top_up()
    await finished
    _emit({"start_ns": start_ns, "end_ns": time.monotonic_ns(), "expired": state["expired"]})
    await stdin.readline()
    await runtime.stop()


def worker(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mesh worker")
    parser.add_argument("role", choices=("sender", "receiver"))
    parser.add_argument("--mtu", type=int, default=1200)
    parser.add_argument("--peer", type=int, default=0)
    parser.add_argument("--to", default="")
    parser.add_argument("--latency", type=int, default=LATENCY_MESSAGES)
    parser.add_argument("--count", type=int, default=THROUGHPUT_MESSAGES)
    parser.add_argument("--window", type=int, default=WINDOW)
    args = parser.parse_args(argv)
    asyncio.run(_receiver(args) if args.role == "receiver" else _sender(args))


# -- the driver ---------------------------------------------------------------------------


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[str]

    def line(self) -> dict[str, Any]:
        assert self.popen.stdout is not None
        text = self.popen.stdout.readline()
        if not text:
            raise RuntimeError(f"{self.name} exited ({self.popen.wait()})")
        result: dict[str, Any] = json.loads(text)
        return result

    def tell(self, text: str = "go") -> None:
        stdin: IO[str] | None = self.popen.stdin
        assert stdin is not None
        stdin.write(text + "\n")
        stdin.flush()


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU time of a process so far, in seconds (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _python(profile: Path | None, name: str) -> list[str]:
    if profile is None:
        return [sys.executable]
    return [sys.executable, "-m", "cProfile", "-o", str(profile / f"{name}.prof")]


def _spawn(name: str, argv: list[str], log: IO[str]) -> _Proc:
    popen = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    return _Proc(name, popen)


def loopback_figures(
    mtu: int = 1200,
    latency: int = LATENCY_MESSAGES,
    count: int = THROUGHPUT_MESSAGES,
    window: int = WINDOW,
    profile: Path | None = None,
    verbose: bool = False,
) -> dict[str, float]:
    """Run the five processes once; the two loopback figures."""
    procs: list[_Proc] = []
    finished = False
    with tempfile.TemporaryDirectory(prefix="bench-mesh-") as tmp:
        log = (Path(tmp) / "stderr.log").open("w")
        try:
            receiver = _spawn(
                "receiver",
                [
                    *_python(profile, "receiver"),
                    "-m",
                    "bench.mesh",
                    "worker",
                    "receiver",
                    f"--mtu={mtu}",
                ],
                log,
            )
            procs.append(receiver)
            ready = receiver.line()
            port = int(ready["tcp"])
            for name in ("r3", "r2", "r1"):
                relay = _spawn(
                    name,
                    [
                        *_python(profile, name),
                        "-m",
                        "mesh_relay",
                        "--no-udp",
                        "--tcp-listen=127.0.0.1:0",
                        f"--tcp-peer=127.0.0.1:{port}",
                        f"--mtu={mtu}",
                        f"--data-dir={tmp}/{name}",
                        "--log-level=warning",
                        *MESH_FLAGS,
                    ],
                    log,
                )
                procs.append(relay)
                port = int(relay.line()["tcp"].rsplit(":", 1)[1])
            sender = _spawn(
                "sender",
                [
                    *_python(profile, "sender"),
                    "-m",
                    "bench.mesh",
                    "worker",
                    "sender",
                    f"--mtu={mtu}",
                    f"--peer={port}",
                    f"--to={ready['address']}",
                    f"--latency={latency}",
                    f"--count={count}",
                    f"--window={window}",
                ],
                log,
            )
            procs.append(sender)
            sender.line()  # route found, warm-up done
            sender.tell()
            sender.line()  # latency phase done
            cpu_before = {p.name: _cpu_seconds(p.popen.pid) for p in procs}
            sender.tell()
            timing = sender.line()
            cpu = {
                p.name: tuple(
                    after - before
                    for after, before in zip(
                        _cpu_seconds(p.popen.pid), cpu_before[p.name], strict=True
                    )
                )
                for p in procs
            }
            receiver.tell("report")
            report = receiver.line()
            sender.tell()
            finished = True
        finally:
            for proc in procs:
                # Workers stop on their next line of input; relays on SIGTERM (their
                # graceful stop). Both write their profile on the way out.
                if proc.popen.stdin is not None:
                    proc.popen.stdin.close()
                if not finished or proc.name in ("r1", "r2", "r3"):
                    proc.popen.terminate()
            for proc in procs:
                try:
                    proc.popen.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.popen.kill()
            log.close()
        if timing["expired"]:
            raise RuntimeError(f"{timing['expired']} messages expired on loopback")
        latencies = report["latencies_ns"]
        seconds = (report["last_ns"] - timing["start_ns"]) / 1e9
        if verbose:
            per = 1e6 / report["count"]
            print(
                f"p50 latency {statistics.median(latencies) / 1e6:.3f} ms; "
                f"{report['count']} messages in {seconds:.2f} s; CPU "
                "µs per message (user+system): "
                + ", ".join(f"{n} {u * per:.0f}+{k * per:.0f}" for n, (u, k) in cpu.items()),
                file=sys.stderr,
            )
    return {
        "mesh.p50_latency_ms_3relays_loopback": round(statistics.median(latencies) / 1e6, 3),
        "mesh.messages_per_s_3relays_loopback": round(report["count"] / seconds),
    }


def simulator_figures() -> dict[str, float]:
    return {
        "mesh.delivery_ratio_1000_nodes": sim.delivery_ratio_1000_nodes(),
        "mesh.overhead_bytes_per_frame": sim.overhead_bytes_per_frame(),
    }


def envelope_figure(messages: int = 3000, runs: int = 5) -> dict[str, float]:
    """CPU µs per message of the envelope's whole round (see the module docstring), the
    median of ``runs`` runs of ``messages`` distinct messages after a warm-up (the first
    message between two nodes also pays one ECDH and one key check at each end)."""
    origin, destination = Identity((11).to_bytes(32, "big")), Identity((12).to_bytes(32, "big"))
    payload, expiry_ms = bytes(PAYLOAD), 1_700_000_060_000

    def one(index: int) -> None:
        mid = message_id(
            origin.address, destination.address, expiry_ms, index.to_bytes(16, "big"), payload
        )
        body = seal(origin, destination.public_key, mid, destination.address, expiry_ms, payload)
        expected = ack_tag(origin, destination.public_key, mid, origin.address, destination.address)
        opened = open_envelope(destination, body, mid, origin.address, expiry_ms)
        tag = ack_tag(destination, opened.origin_key, mid, origin.address, destination.address)
        if opened.payload != payload or not verify_ack(tag, expected):
            raise RuntimeError("the envelope round failed")

    for index in range(200):
        one(index)
    per_run = []
    for run in range(runs):
        started = time.process_time()
        for index in range(messages):
            one(1_000 + run * messages + index)
        per_run.append((time.process_time() - started) / messages * 1e6)
    return {"mesh.envelope_us_per_message": round(statistics.median(per_run), 1)}


def measure(skip_sim: bool = False, runs: int = 3) -> dict[str, float]:
    """The five figures; the loopback ones are the medians of ``runs`` runs (each run's
    figures and CPU costs are printed to stderr)."""
    results = [loopback_figures(verbose=True) for _ in range(runs)]
    figures = {name: statistics.median(result[name] for result in results) for name in results[0]}
    figures.update(envelope_figure())
    if not skip_sim:
        figures.update(simulator_figures())
    return figures


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        worker(argv[1:])
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.mesh", description=__doc__)
    parser.add_argument("--skip-sim", action="store_true", help="loopback figures only")
    parser.add_argument("--mtu", type=int, default=1200)
    parser.add_argument("--count", type=int, default=THROUGHPUT_MESSAGES)
    parser.add_argument("--window", type=int, default=WINDOW)
    parser.add_argument("--profile", type=Path, help="write a cProfile per process here")
    args = parser.parse_args(argv)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    figures = loopback_figures(
        args.mtu, count=args.count, window=args.window, profile=args.profile, verbose=True
    )
    figures.update(envelope_figure())
    if not args.skip_sim:
        figures.update(simulator_figures())
    for name, value in figures.items():
        print(f"{name:48s} {value:>12,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
