"""`node.*`: payments between real node processes on loopback, every payment persisted.

Belongs here: a fresh anvil and deployment, a line of `smartmesh node` processes
(scripts.nodes, the same harness as the demo and the tests; SQLite with
``synchronous=FULL``, the default: every commit is on disk before its effects run), driven
through their HTTP API with keep-alive connections, and four figures:
- ``node.direct_payments_per_s``: A pays its partner B directly, ``DIRECT`` payments with
  up to ``CONCURRENCY`` requests in flight; counted until B has received the last one
  (queued direct payments to one partner share one balance proof);
- ``node.mediated_3hop_payments_per_s``: A pays D across B and C, ``MEDIATED`` payments,
  ``CONCURRENCY`` in flight, each request waiting until its payment succeeded;
- ``node.p50_latency_ms_3hop`` / ``node.p99_latency_ms_3hop``: one payment at a time,
  from the HTTP request to the answer that it succeeded (the secret is back at A).
Everything — anvil, four nodes and this client — shares the machine's cores, so the
figures move with whatever else runs. Printed beside them (not figures of results.json),
to compare changes: the CPU time each process spent per mediated payment (``/proc/PID/
stat`` utime + stime before and after that phase: the four nodes, this client, anvil;
not the nodes' fsync helpers, whose time counts as "anything else"), and how many cores
were busy meanwhile with these processes and with anything else (``/proc/stat``), so
that a run slowed by other work on the machine can be told apart.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from offchain.api.client import ApiClient
from tests.lib.chain_env import ONE
from tests.lib.node_net import NodeNet, node_net, until_async

DIRECT = 10_000
MEDIATED = 2_000
LATENCY_SAMPLES = 300
CONCURRENCY = 128
SYNC = os.environ.get("SMARTMESH_BENCH_SYNC", "FULL")


async def _direct(net: NodeNet) -> float:
    b = await net.client(1)
    token, target = net.token, net.address(1)
    received_before = len(await b.payments(direction="received", limit=1_000))
    queue = iter(range(DIRECT))

    async def worker() -> None:
        async with ApiClient(net.nodes[0].api) as client:
            for _ in queue:
                await client.pay(token, target, 1, direct=True)

    async def all_received() -> bool:
        done = await b.payments(direction="received", limit=1, offset=received_before + DIRECT - 1)
        return bool(done)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    await until_async(all_received, 120)
    elapsed = time.perf_counter() - started
    return DIRECT / elapsed


_TICKS: float = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0


def _cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` so far (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy so far (``/proc/stat``; 0 elsewhere)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    ticks = [int(value) for value in fields]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks[:8]) - idle) / _TICKS


def _cpu_pids(net: NodeNet) -> dict[str, int]:
    pids = {node.name: node.process.pid for node in net.nodes if node.process is not None}
    pids["client"] = os.getpid()
    pids["anvil"] = net.env.anvil.process.pid
    return pids


async def _mediated(net: NodeNet) -> float:
    token, target = net.token, net.address(3)
    queue = iter(range(MEDIATED))
    failed = 0

    async def worker() -> None:
        nonlocal failed
        async with ApiClient(net.nodes[0].api) as client:
            for _ in queue:
                result = await client.pay(token, target, 1, wait=60)
                failed += result["status"] != "succeeded"

    pids = _cpu_pids(net)
    cpu_before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
    busy_before = _machine_busy_seconds()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - started
    others = _machine_busy_seconds() - busy_before
    spent = {
        name: (_cpu_seconds(pid) - cpu_before[name]) * 1000 / MEDIATED for name, pid in pids.items()
    }
    print(
        "  CPU ms per mediated payment: "
        + ", ".join(f"{name} {ms:.2f}" for name, ms in spent.items())
        + f"; total {sum(spent.values()):.2f} (wall {elapsed * 1000 / MEDIATED:.2f} ms)"
    )
    ours = sum(spent.values()) * MEDIATED / 1000
    print(
        f"  cores busy meanwhile: ours {ours / elapsed:.2f}, "
        f"anything else {max(others - ours, 0.0) / elapsed:.2f}"
    )
    if failed:
        print(f"  warning: {failed} of {MEDIATED} mediated payments failed")
    return (MEDIATED - failed) / elapsed


async def _latency(net: NodeNet) -> list[float]:
    a = await net.client(0)
    samples = []
    pids = _cpu_pids(net)
    cpu_before = sum(_cpu_seconds(pid) for pid in pids.values())
    busy_before = _machine_busy_seconds()
    phase_started = time.perf_counter()
    for _ in range(LATENCY_SAMPLES):
        started = time.perf_counter()
        result = await a.pay(net.token, net.address(3), 1, wait=30)
        samples.append((time.perf_counter() - started) * 1000)
        assert result["status"] == "succeeded", result
    elapsed = time.perf_counter() - phase_started
    ours = sum(_cpu_seconds(pid) for pid in pids.values()) - cpu_before
    others = max(_machine_busy_seconds() - busy_before - ours, 0.0)
    print(f"  latency phase: cores busy with anything else {others / elapsed:.2f}")
    return samples


async def _warm_up(net: NodeNet) -> None:
    a = await net.client(0)
    for _ in range(40):  # until the capacity announcements have reached A
        result = await a.pay(net.token, net.address(3), 1, wait=30)
        if result["status"] == "succeeded":
            return
        await asyncio.sleep(0.25)
    raise RuntimeError(f"no route A -> D: {result}")


async def _measure(net: NodeNet) -> dict[str, float]:
    await net.open_line(10_000 * ONE)
    await _warm_up(net)
    latencies = await _latency(net)
    latencies.sort()
    figures = {
        "node.p50_latency_ms_3hop": round(statistics.median(latencies), 2),
        "node.p99_latency_ms_3hop": round(latencies[int(len(latencies) * 0.99) - 1], 2),
        "node.mediated_3hop_payments_per_s": round(await _mediated(net), 1),
        "node.direct_payments_per_s": round(await _direct(net), 1),
    }
    await net.close_clients()
    return figures


def measure() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="smartmesh-bench-") as tmp:
        settings = {"node": {"sync": SYNC}, "protocol": {"fee_flat": 0}}
        with node_net(Path(tmp), 4, tokens=100_000 * ONE, settings=settings) as net:
            return asyncio.run(_measure(net))


def main() -> None:
    for name, value in measure().items():
        print(f"{name:<40}{value:>12}")


if __name__ == "__main__":
    main()
