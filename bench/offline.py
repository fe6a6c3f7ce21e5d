"""`offline.*`: paying while every node is blind, and the wave of deferred submissions
when the chain comes back (docs/offline.md).

Belongs here: the two offline figures of issue 6 and the set-ups that make them, on a
fresh anvil with real node processes (scripts.nodes, placed on a ``scripts.netns``
island whose chain uplinks the bench cuts):

- ``offline.mediated_3hop_payments_per_s``: as ``node.mediated_3hop_payments_per_s``
  (bench/node.py: A pays D across B and C, every payment persisted, ``CONCURRENCY``
  requests in flight through the HTTP API, each waiting until its payment succeeded), but
  all four nodes blind (their chain uplinks cut once the channels are open and a route is
  known) and every mesh link losing 10 % of its frames (the node's testing-only
  ``mesh_impair_loss``, seeded). Settle windows are a day and locks expire after the
  default 600 s, so the offline window refuses nothing during the run; a failed payment
  is counted, with its reason, and printed.
- ``offline.submission_wave_s``: one node N (a real node process) with ``WAVE`` channels,
  each opened and funded by a partner that then paid N off chain — once while N saw the
  chain, once more while it was blind — and closed the channel on chain while N was
  blind. A closer cannot put its own balance proof on chain, so after each close the
  chain holds nothing of what that partner paid N: every one of N's deferred
  ``update_non_closing_balance_proof`` transactions is needed, the wave N must get on
  chain before the settle windows end. The figure: seconds from the moment N's chain
  uplink is restored to the moment the last of those updates is mined (read from the
  chain's ``NonClosingBalanceProofUpdated`` logs; anvil needs one confirmation). It
  includes the time N takes to notice the chain is back (its follower retries a silent
  endpoint at least every 10 s), which is printed apart, with the first update and the
  moment N's own schedule is empty. Every update is checked on chain: submitted by N,
  carrying the partner's latest nonce and balance hash.

The wave's partners are light but real where it matters to N: each is a protocol core
(``NodeRuntime`` with its own SQLite store) and a mesh runtime of its own linked to N by
TCP, all in this process; it learns its channel from the chain's own logs (decoded and
turned into inputs by ``offchain.chain``, as a follower would), signs real balance
proofs that N receives over the mesh, and closes through its core's ``ContractSendClose``
(sent as a signed transaction from its key). The partners stop before N's chain comes
back: the wave is N's alone.

Does not belong here: the node (what is measured), the island (scripts.netns), the
merge into results.json (bench/run.py). ``python -m bench.offline`` runs both figures
alone; ``--profile DIR`` runs the blind nodes of the first under cProfile.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import os
import secrets
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from web3 import Web3

from bench.node import CONCURRENCY
from mesh_relay.runtime import MeshRuntime
from mesh_relay.tcp import TcpLinks
from offchain.api.client import ApiClient
from offchain.chain import calls
from offchain.chain.events import ContractKind, NonClosingUpdatedLog, decode_log, topic0_of
from offchain.chain.inputs import ChannelDirectory, inputs_for
from offchain.node.config import NodeConfig
from offchain.node.gossip import ANNOUNCEMENT_TAG
from offchain.node.runtime import NodeRuntime
from offchain.node.store import ContractSend, Store
from offchain.node.transport import MeshTransport, WorkKey
from offchain.protocol.transitions import ActionCloseChannel, ContractSendClose
from offchain.protocol.types import Address, Timestamp, TokenAmount
from offchain.watch.wire import WATCH_TAG
from scripts.deployer import Web3Sender
from scripts.netns import Island, Kind, island
from scripts.nodes import NodeProcess
from tests.lib.chain_env import ONE, ChainEnv, Party, chain_env
from tests.lib.node_net import NAMES, NodeNet, until_async

MEDIATED: Final = 2_000
"""Payments of the blind 3-hop run (as many as bench/node.py's online run)."""
LOSS: Final = 0.1
"""Share of the frames each mesh link loses."""
WAVE: Final = 100
"""Channels of the submission wave."""
SETTLE_WINDOW: Final = 86_400
"""Of every channel: a day, far beyond a run, so the offline window refuses nothing."""
DEPOSIT: Final = 10_000 * ONE
WAVE_DEPOSIT: Final = TokenAmount(10 * ONE)
PAID_ONLINE: Final = 1 * ONE
PAID_BLIND: Final = 2 * ONE
SYNC: Final = os.environ.get("SMARTMESH_BENCH_SYNC", "FULL")
ISLAND: Final[Kind] = "netns" if os.environ.get("SMARTMESH_BENCH_ISLAND") == "netns" else "loopback"
"""Where the blind nodes live: on loopback (as bench/node.py's, so the figures compare)
unless SMARTMESH_BENCH_ISLAND=netns asks for network namespaces (root)."""
WAIT: Final = 120.0


# -- results ---------------------------------------------------------------------------------


@dataclass
class MediatedRun:
    """The blind 3-hop run: what was asked, what succeeded, why the rest failed."""

    payments: int
    elapsed: float
    failed: Counter[str] = field(default_factory=Counter)
    """Failed payments by reason."""

    cpu_ms: dict[str, float] = field(default_factory=dict)
    """CPU milliseconds per payment of each process (the nodes, this client, anvil)."""
    others_busy: float = 0.0
    """Cores busy meanwhile with anything else on the machine."""

    @property
    def succeeded(self) -> int:
        return self.payments - sum(self.failed.values())

    @property
    def per_s(self) -> float:
        return self.succeeded / self.elapsed


@dataclass
class WaveRun:
    """The submission wave: seconds from the uplink restored to each milestone."""

    channels: int
    reachable_s: float
    """N reports the chain reachable again."""
    first_s: float
    """The first update is mined."""
    last_s: float
    """The last update is mined: the figure."""
    drained_s: float
    """N's schedule holds no update any more (each confirmed by N's sender)."""
    landed: int
    """Channels whose partner proof on chain is the partner's latest, put there by N."""
    problems: list[str] = field(default_factory=list)
    """Events of N that should not happen in a wave (failed or unnecessary submissions)."""


# -- helpers ---------------------------------------------------------------------------------


async def _eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float) -> None:
    try:
        await until_async(check, timeout)
    except TimeoutError:
        raise RuntimeError(f"bench: {what} did not happen within {timeout:.0f} s") from None


async def _blind(client: ApiClient) -> bool:
    return not (await client.status())["chain_reachable"]


async def _reachable(client: ApiClient) -> bool:
    status = await client.status()
    return bool(status["chain_reachable"] and status["synced"])


async def _all_events(client: ApiClient) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    since = 0
    while True:
        page = await client.events(since=since, limit=1000)
        if not page["events"]:
            return found
        found += page["events"]
        since = page["next_since"]


_TICKS: Final = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0


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
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / _TICKS  # all but idle and iowait


# -- offline.mediated_3hop_payments_per_s ----------------------------------------------------


async def _warm_up(net: NodeNet) -> None:
    a = await net.client(0)
    result: dict[str, Any] = {}
    for _ in range(80):  # until the capacity announcements have reached A (over lossy links)
        result = await a.pay(net.token, net.address(3), 1, wait=30)
        if result["status"] == "succeeded":
            return
        await asyncio.sleep(0.25)
    raise RuntimeError(f"bench: no route A -> D: {result}")


async def _pay_blind(net: NodeNet, payments: int, concurrency: int) -> MediatedRun:
    token, target = net.token, net.address(3)
    queue = iter(range(payments))
    failed: Counter[str] = Counter()

    async def worker() -> None:
        async with net.nodes[0].client() as client:
            for _ in queue:
                result = await client.pay(token, target, 1, wait=60)
                if result["status"] != "succeeded":
                    failed[str(result.get("reason") or result["status"])] += 1

    pids = {node.name: node.process.pid for node in net.nodes if node.process is not None}
    pids["client"] = os.getpid()
    pids["anvil"] = net.env.anvil.process.pid
    cpu_before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
    busy_before = _machine_busy_seconds()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    spent = {name: _cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    others = max(_machine_busy_seconds() - busy_before - sum(spent.values()), 0.0)
    cpu_ms = {name: seconds * 1000 / payments for name, seconds in spent.items()}
    return MediatedRun(payments, elapsed, failed, cpu_ms, others / elapsed)


async def _mediated(
    net: NodeNet, isle: Island, payments: int, concurrency: int, blind: bool
) -> MediatedRun:
    await net.open_line(DEPOSIT)
    await _warm_up(net)
    if blind:
        for index in range(len(net.nodes)):
            isle.cut_chain(index)
        for index in range(len(net.nodes)):
            client = await net.client(index)
            await _eventually(functools.partial(_blind, client), f"node {NAMES[index]} blind", WAIT)
    run = await _pay_blind(net, payments, concurrency)
    for index in range(len(net.nodes)):  # still blind: the figure is the blind one
        if blind and not await _blind(await net.client(index)):
            raise RuntimeError(f"bench: node {NAMES[index]} saw the chain during the run")
    await net.close_clients()
    return run


def measure_mediated(
    directory: Path,
    payments: int = MEDIATED,
    concurrency: int = CONCURRENCY,
    kind: Kind = ISLAND,
    profile: Path | None = None,
    *,
    loss: float = LOSS,
    blind: bool = True,
) -> MediatedRun:
    """A pays D across B and C, all four blind, every mesh link lossy (module docstring)."""
    settings: dict[str, dict[str, Any]] = {
        "node": {"sync": SYNC},
        "protocol": {"fee_flat": 0, "settle_window": SETTLE_WINDOW},
        "mesh": {"impair_loss": loss},
    }
    with chain_env(directory) as env, island(4, env.url, kind) as isle:
        parties = env.parties(*[f"offline-{NAMES[i]}" for i in range(4)], tokens=100_000 * ONE)
        nodes = [
            isle.node(
                i,
                NAMES[i],
                who.key,
                directory / NAMES[i],
                env.manifest,
                dial=[i - 1] if i else [],
                settings=settings,
            )
            for i, who in enumerate(parties)
        ]
        environ = None
        try:
            for node in nodes:
                if profile is not None:
                    environ = {"SMARTMESH_PROFILE": str(profile / f"{node.name}.prof")}
                node.start(environ)
            net = NodeNet(env, parties, nodes, directory)
            return asyncio.run(_mediated(net, isle, payments, concurrency, blind))
        finally:
            for node in nodes:
                node.stop()


# -- offline.submission_wave_s ---------------------------------------------------------------


@dataclass
class _Partner:
    """One partner of N: a protocol core, its store, a mesh runtime linked to N."""

    party: Party
    store: Store
    runtime: NodeRuntime
    mesh: MeshRuntime
    transport: MeshTransport
    closes: list[tuple[WorkKey, ContractSend]] = field(default_factory=list)

    async def stop(self) -> None:
        await self.runtime.stop()
        self.transport.stop()
        await self.mesh.stop()
        self.store.close()


async def _start_partner(
    directory: Path, party: Party, chain_id: int, n_mesh: tuple[str, int]
) -> _Partner:
    store = Store.open(directory / f"partner-{party.raw.hex()}.sqlite3", synchronous="NORMAL")
    runtime = NodeRuntime(party.key, chain_id, store)
    # The mesh settings of a node with the defaults: the routed MTU must match N's.
    mesh_config = dataclasses.replace(NodeConfig().mesh_config(), app_acks=True)
    mesh = MeshRuntime(mesh_config, party.key, [TcpLinks(None, [n_mesh], 1200)])
    partner: _Partner

    def on_message(origin: bytes, payload: bytes, message_id: bytes) -> None:
        if payload and payload[0] in (ANNOUNCEMENT_TAG, WATCH_TAG):
            partner.transport.acknowledge(origin, message_id)  # N's gossip: not needed here
            return
        runtime.receive_payload(origin, payload, message_id)

    transport = MeshTransport(mesh, on_message, runtime.work_done)
    partner = _Partner(party, store, runtime, mesh, transport)

    def chain_submit(key: WorkKey, effect: ContractSend) -> None:
        partner.closes.append((key, effect))

    await mesh.start()
    transport.start()
    await runtime.start(transport, chain_submit)
    return partner


def _open_channels(env: ChainEnv, partners: Sequence[Party], n: Party) -> None:
    """Each partner opens a channel with N and deposits, by its own transaction."""
    for who in partners:
        call = calls.open_channel_with_deposit(env.network, n.raw, SETTLE_WINDOW, WAVE_DEPOSIT)
        Web3Sender(env.w3, who.hex_key).send_transaction(_tx(call))


def _tx(call: calls.ContractCall) -> dict[str, Any]:
    return {"to": Web3.to_checksum_address(call.to), "data": call.data, "value": call.value}


def _feed_partners(env: ChainEnv, partners: dict[Address, _Partner]) -> list[Awaitable[Any]]:
    """Give each partner's core the inputs of its channel's logs, as a follower would."""
    directory = ChannelDirectory()
    raws = env.w3.eth.get_logs(
        {"address": Web3.to_checksum_address(env.network), "fromBlock": 0, "toBlock": "latest"}
    )
    stamps: dict[int, int] = {}
    committed: list[Awaitable[Any]] = []
    for raw in raws:
        block = int(raw["blockNumber"])
        if block not in stamps:
            stamps[block] = int(env.w3.eth.get_block(block)["timestamp"])
        log = decode_log(dict(raw), ContractKind.TOKEN_NETWORK, stamps[block])
        if log is None:
            continue
        directory.apply(log)
        for address, partner in partners.items():
            for chain_input in inputs_for(log, address, directory):
                committed.append(partner.runtime.submit(chain_input))
    return committed


async def _updates(env: ChainEnv, since: int, n: Party) -> list[NonClosingUpdatedLog]:
    """The ``NonClosingBalanceProofUpdated`` logs mined since block ``since`` naming N."""
    topic = "0x" + topic0_of(ContractKind.TOKEN_NETWORK, "NonClosingBalanceProofUpdated").hex()
    raws = await asyncio.to_thread(
        env.w3.eth.get_logs,
        {
            "address": Web3.to_checksum_address(env.network),
            "fromBlock": since,
            "toBlock": "latest",
            "topics": [topic],
        },
    )
    found = []
    for raw in raws:
        log = decode_log(dict(raw), ContractKind.TOKEN_NETWORK, 0)
        if isinstance(log, NonClosingUpdatedLog) and log.submitter == n.raw:
            found.append(log)
    return found


async def _wave(
    env: ChainEnv, isle: Island, node: NodeProcess, n: Party, payers: list[Party], directory: Path
) -> WaveRun:
    token = "0x" + env.token.hex()
    n_address = "0x" + n.raw.hex()
    async with node.client() as api:
        await _eventually(lambda: _reachable(api), "N synced", WAIT)
        host, port = node.mesh_host, node.tcp_port
        partners: dict[Address, _Partner] = {}
        for who in payers:
            partners[who.raw] = await _start_partner(
                directory / "partners", who, env.deployment.chain_id, (host, port)
            )
        try:
            await asyncio.gather(*_feed_partners(env, partners))
            network = env.network

            async def n_knows_all() -> bool:
                channels = await api.channels(token)
                funded = [c for c in channels if int(c["partner_deposit"]) >= WAVE_DEPOSIT]
                return len(funded) >= len(payers)

            await _eventually(n_knows_all, "N to see every channel", WAIT)

            async def pay_all(amount: int) -> None:
                committed = []
                for partner in partners.values():
                    pid = secrets.randbits(63) + 1
                    committed.append(partner.runtime.pay_direct(network, n.raw, pid, amount))
                await asyncio.gather(*committed)

                async def delivered() -> bool:
                    return all(p.transport.backlog() == 0 for p in partners.values())

                await _eventually(delivered, "the partners' payments to reach N", WAIT)

            await pay_all(PAID_ONLINE)
            # N's view of the chain, then its uplink cut: it goes blind.
            isle.cut_chain(0)
            await _eventually(lambda: _blind(api), "N blind", WAIT)
            await pay_all(PAID_BLIND)
            received = await api.payments(direction="received", limit=1000)
            if len(received) < 2 * len(payers):
                raise RuntimeError(f"bench: N received {len(received)} of {2 * len(payers)}")
            # Every partner closes while N is blind: its core's close, by its own key.
            now = Timestamp(int(time.time()))
            await asyncio.gather(
                *(
                    p.runtime.submit(ActionCloseChannel(now, network, n.raw))
                    for p in partners.values()
                )
            )
            expected: dict[Address, tuple[int, bytes]] = {}
            for address, partner in partners.items():
                ((key, effect),) = partner.closes
                assert isinstance(effect, ContractSendClose)
                call = calls.for_effect(
                    effect, address, env.deployment.secret_registry, ChannelDirectory()
                )
                await asyncio.to_thread(
                    Web3Sender(env.w3, partner.party.hex_key).send_transaction, _tx(call)
                )
                partner.runtime.work_done(key)
                ours = partner.runtime.state.channels[(network, n.raw)].our
                expected[address] = (int(ours.nonce), bytes(ours.balance_hash))
        finally:
            for partner in partners.values():
                await partner.stop()
        if not await _blind(api):
            raise RuntimeError("bench: N saw the chain while its partners closed")
        since = env.head()  # the last close: updates come after it
        events_before = len(await _all_events(api))
        # The chain comes back.
        isle.restore_chain(0)
        started = time.perf_counter()
        reachable = first = last = drained = None
        updates: list[NonClosingUpdatedLog] = []
        deadline = started + WAIT
        while last is None or drained is None or reachable is None:
            now_s = time.perf_counter() - started
            if time.perf_counter() > deadline:
                raise RuntimeError(
                    f"bench: {len(updates)} of {len(payers)} updates after {WAIT:.0f} s"
                )
            if reachable is None and await _reachable(api):
                reachable = now_s
            if last is None:
                updates = await _updates(env, since, n)
                if updates and first is None:
                    first = now_s
                if len(updates) >= len(payers):
                    last = now_s
            if drained is None and reachable is not None:
                pending = [d for d in await api.deadlines() if d["pending"]]
                if not pending and last is not None:
                    drained = time.perf_counter() - started
            await asyncio.sleep(0.1)
        assert first is not None
        # Each update on chain: by N, the partner's latest proof.
        token_network = env.contract("token_network", network).functions
        landed = 0
        for address, (nonce, balance_hash) in expected.items():
            side = token_network.get_participant(
                Web3.to_checksum_address(address), Web3.to_checksum_address(n_address)
            ).call()
            if int(side.nonce) == nonce and bytes(side.balance_hash) == balance_hash:
                landed += 1
        events = (await _all_events(api))[events_before:]
        problems = [
            f"{e['kind']}: {e['data']}"
            for e in events
            if e["kind"] in ("transaction_failed", "submission_unnecessary", "schedule_failed")
        ]
        return WaveRun(len(payers), reachable, first, last, drained, landed, problems)


def measure_wave(directory: Path, channels: int = WAVE, kind: Kind = ISLAND) -> WaveRun:
    """The wave of ``channels`` updates when N's chain comes back (module docstring)."""
    with chain_env(directory) as env, island(1, env.url, kind) as isle:
        n, *payers = env.parties(
            "wave-N", *[f"wave-partner-{i}" for i in range(channels)], tokens=100 * ONE
        )
        node = isle.node(0, "N", n.key, directory / "N", env.manifest, settings={
            "node": {"sync": SYNC},
            "protocol": {"settle_window": SETTLE_WINDOW},
        })  # fmt: skip
        _open_channels(env, payers, n)
        node.start()
        try:
            return asyncio.run(_wave(env, isle, node, n, payers, directory))
        finally:
            node.stop()


# -- the figures -----------------------------------------------------------------------------


def report_mediated(run: MediatedRun) -> str:
    lines = [
        f"  blind 3-hop: {run.succeeded} of {run.payments} succeeded in {run.elapsed:.1f} s "
        f"({run.per_s:.1f}/s), mesh loss {LOSS:.0%} per link"
    ]
    if run.cpu_ms:
        lines.append(
            "  CPU ms per payment: "
            + ", ".join(f"{name} {ms:.2f}" for name, ms in run.cpu_ms.items())
            + f"; total {sum(run.cpu_ms.values()):.2f}"
            + f" (wall {run.elapsed * 1000 / run.payments:.2f})"
            + f"; cores busy with anything else {run.others_busy:.2f}"
        )
    if run.failed:
        reasons = ", ".join(f"{reason}: {count}" for reason, count in run.failed.most_common())
        lines.append(f"  warning: {sum(run.failed.values())} failed ({reasons})")
    return "\n".join(lines)


def report_wave(run: WaveRun) -> str:
    lines = [
        f"  wave of {run.channels} updates after the chain came back: N saw it at "
        f"{run.reachable_s:.1f} s, first mined at {run.first_s:.1f} s, last at "
        f"{run.last_s:.1f} s, N's schedule empty at {run.drained_s:.1f} s; "
        f"{run.landed} of {run.channels} correct on chain"
    ]
    lines += [f"  warning: {problem}" for problem in run.problems]
    return "\n".join(lines)


def measure(mediated: int = MEDIATED, channels: int = WAVE) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="smartmesh-bench-offline-") as tmp:
        blind = measure_mediated(Path(tmp) / "mediated", mediated)
        print(report_mediated(blind))
        wave = measure_wave(Path(tmp) / "wave", channels)
        print(report_wave(wave))
    if wave.landed != wave.channels:
        raise RuntimeError(f"bench: only {wave.landed} of {wave.channels} updates are right")
    return {
        "offline.mediated_3hop_payments_per_s": round(blind.per_s, 1),
        "offline.submission_wave_s": round(wave.last_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.offline", description=__doc__)
    parser.add_argument("--payments", type=int, default=MEDIATED)
    parser.add_argument("--channels", type=int, default=WAVE)
    parser.add_argument("--only", choices=("mediated", "wave"))
    parser.add_argument("--profile", type=Path, help="cProfile the blind nodes into DIR")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="smartmesh-bench-offline-") as tmp:
        if args.only != "wave":
            if args.profile is not None:
                args.profile.mkdir(parents=True, exist_ok=True)
            blind = measure_mediated(Path(tmp) / "mediated", args.payments, profile=args.profile)
            print(report_mediated(blind))
        if args.only != "mediated":
            print(report_wave(measure_wave(Path(tmp) / "wave", args.channels)))


if __name__ == "__main__":
    main()
