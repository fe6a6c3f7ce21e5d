"""`make demo-offline`: the island. Payments without internet, and the proofs to the chain later.

Belongs here: the choreography only, driven through each node's HTTP API as a user would,
on a real anvil with the contracts deployed (scripts.deployer, as `make demo --web3`):

1. six `smartmesh node` processes on an island (scripts.netns: a network namespace per
   node when run as root, whose uplink to the chain is a real link that is set down;
   loopback with a forwarder per node otherwise; the demo prints which): A-B-C-D-E in a
   line of channels, and G, a watcher (`watch = true`) that holds no channel, relays on
   the mesh and keeps its uplink. A-E name G as their delegate (`delegates`);
2. the channels are opened and funded while everyone sees the chain;
3. the chain is cut for all but G; A pays E across B, C, D (each takes a fee) and E pays
   back, all blind: the status, the deadlines and E's merchant view show it;
4. C cheats: it gets an uplink of its own back (an attacker with its own link: on main a
   blind node's own transactions cannot go through a gateway yet) and closes its channel
   with B while B is blind, counting on B not putting C's payments to it on chain. G, B's
   delegate, puts C's newest proof on chain in time; B hears of it over the mesh;
5. while still blind, A-B, C-D and D-E agree cooperative closes over the mesh; the
   transactions wait in the nodes' schedules. Connectivity returns and they land; B's own
   update is found unnecessary (G's is there). After B-C's settle window (an anvil time
   jump, once the update is mined) B-C settles and G is paid its reward;
6. every account's final on-chain balance is checked against what the off-chain payments
   imply (the amounts, each mediator's fee, the delegate's reward): all "ok" and 0 tokens
   created or lost, or the exit code is 1.

A text timeline goes to stdout (times relative to the start; numbered steps), and a
picture of the mesh, the payment paths and the steps to build/demo-offline.svg.

Does not belong here: anything a node does (the node), the island (scripts.netns), the
drawing (scripts.demo_picture).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import json
import shutil
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

from web3 import Web3

from offchain.api.client import ApiClient, ApiClientError
from offchain.chain.artifacts import load_artifact
from offchain.chain.events import ContractKind, topic0_of
from offchain.protocol.crypto import address_from_private_key, keccak256
from scripts import demo_picture
from scripts.anvil import DEV_PRIVATE_KEYS, Anvil, rpc
from scripts.deployer import TEST_TOKEN, Web3Sender, deploy
from scripts.netns import Island, island, unavailable_reason
from scripts.nodes import NodeProcess

ROOT: Final = Path(__file__).resolve().parents[1]
ONE: Final = 10**18
LINE: Final = "ABCDE"
GATEWAY: Final = "G"
NAMES: Final = (*LINE, GATEWAY)
PAIRS: Final = list(itertools.pairwise(LINE))
FEES: Final = {"fee_flat": ONE // 100, "fee_proportional_ppm": 1_000}  # 0.01 TKN + 0.1 %
DEPOSIT: Final = 100 * ONE
FUNDS: Final = 1_000 * ONE
FIRST: Final = 10 * ONE  # A -> E
SECOND: Final = 4 * ONE  # E -> A
REWARD: Final = ONE // 20  # offered to the delegate per update: 0.05 TKN
SETTLE_WINDOW: Final = 3_600  # the token network's minimum; the time jump passes it
WAIT: Final = 60.0
BLOCK_TIME: Final = 2.0
LEARNING: Final = ("capacity", "no_route", "fee_too_high")
"""Failures of a payment sent before the payer's graph holds every capacity and fee (the
announcements are still on their way): tried again, a few times only: a lock refused on
the way is given back by a lock the other way, and both stay pending (capacity held on
each side) until they expire."""
ATTEMPTS: Final = 4
EVENTS: Final = (
    "ChannelClosed",
    "NonClosingBalanceProofUpdated",
    "ChannelSettled",
    "ChannelCooperativeSettled",
    "DelegateRewarded",
    "ChannelUnlocked",
)


def tkn(amount: int | str, digits: int = 4) -> str:
    return f"{int(amount) / ONE:,.{digits}f} TKN"


def key_of(name: str) -> bytes:
    """A demo account per node (anvil has five dev keys, the deployer uses the first): a
    key derived from the node's name, given ether by anvil_setBalance."""
    return keccak256(f"smartmesh island demo {name}".encode())


def clock(deadline: float | None) -> str:
    """A device time as the user's clock shows it, and how far ahead it is."""
    if deadline is None:
        return "no deadline"
    shown = time.strftime("%H:%M:%S", time.localtime(deadline))
    return f"{shown} (in {deadline - time.time():,.0f} s)"


class Timeline:
    """Prints ``[  t s] text`` lines; a numbered step also goes to the picture."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.steps: list[demo_picture.Step] = []

    def __call__(self, text: str, where: str | None = None, tone: str = "chain") -> None:
        """Print ``text``; with ``where`` (see ``demo_picture.Step``) it is a numbered step."""
        elapsed = time.monotonic() - self.start
        mark = ""
        if where is not None:
            number = len(self.steps) + 1
            self.steps.append(demo_picture.Step(number, elapsed, text, where, tone))
            mark = f"({number}) "
        print(f"[{elapsed:7.2f} s] {mark}{text}", flush=True)

    def detail(self, text: str) -> None:
        print(f"{'':12}{text}", flush=True)


class Chain:
    """The demo's own look at the chain (web3, from the root namespace): funds, balances,
    the token network's logs as they land, blocks and time jumps."""

    def __init__(self, url: str, manifest: dict[str, Any], token: str) -> None:
        self.url = url
        self.w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}))
        self.token = Web3.to_checksum_address(token)
        self.network = Web3.to_checksum_address(manifest["token_networks"][token])
        self.names: dict[str, str] = {}
        """Lower-case 0x address -> node name."""
        self.channels: dict[bytes, tuple[str, str]] = {}
        """Channel id -> names of its participant1 and participant2 (the contract's order,
        which its settle amounts follow)."""
        self._tokens = self.w3.eth.contract(
            address=self.token, abi=load_artifact("test_token").abi_list()
        )
        self._contract = self.w3.eth.contract(
            address=self.network,
            abi=load_artifact("token_network").abi_list(),
            decode_tuples=True,
        )
        self._topics = {topic0_of(ContractKind.TOKEN_NETWORK, name): name for name in EVENTS}
        self._next_block = 0

    def name(self, address: str) -> str:
        return self.names.get(address.lower(), address[:10])

    def fund(self, key: bytes, amount: int) -> None:
        address = Web3.to_checksum_address(address_from_private_key(key))
        rpc(self.url, "anvil_setBalance", [address, hex(100 * ONE)])
        Web3Sender(self.w3, key).send(self._tokens.functions.mint(address, amount))

    def balance(self, address: str) -> int:
        return int(self._tokens.functions.balanceOf(Web3.to_checksum_address(address)).call())

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def mine(self) -> int:
        """A new block; its timestamp."""
        rpc(self.url, "evm_mine", [])
        return self.now()

    async def tick(self, every: float) -> None:
        """A block every ``every`` seconds, as a live chain makes them (anvil mines only
        when a transaction comes): the watcher's view of the chain moves on while the
        island's stands still."""
        while True:
            await asyncio.sleep(every)
            await asyncio.to_thread(rpc, self.url, "evm_mine", [])

    def jump(self, seconds: int) -> None:
        rpc(self.url, "evm_increaseTime", [seconds])
        rpc(self.url, "evm_mine", [])

    def participant(self, who: str, partner: str) -> Any:
        """``get_participant``: deposit, withdrawn, nonce, balance_hash, delegate, reward."""
        checksum = Web3.to_checksum_address
        return self._contract.functions.get_participant(checksum(who), checksum(partner)).call()

    def learn_channel(self, one: str, other: str) -> None:
        checksum = Web3.to_checksum_address
        info = self._contract.functions.get_channel(checksum(one), checksum(other)).call()
        pair = (self.name(info.participant1), self.name(info.participant2))
        self.channels[bytes(info.channel_id)] = pair

    def skip_to_now(self) -> None:
        """``new_logs`` starts after the newest block."""
        self._next_block = int(self.w3.eth.block_number) + 1

    def new_logs(self) -> list[str]:
        """The token network's logs mined since the last call, one line each."""
        head = int(self.w3.eth.block_number)
        if head < self._next_block:
            return []
        found = self.w3.eth.get_logs(
            {"address": self.network, "fromBlock": self._next_block, "toBlock": head}
        )
        self._next_block = head + 1
        lines = []
        for entry in found:
            name = self._topics.get(bytes(entry["topics"][0]))
            if name is None:
                continue
            args = getattr(self._contract.events, name)().process_log(entry)["args"]
            sender = self.name(self.w3.eth.get_transaction(entry["transactionHash"])["from"])
            block = entry["blockNumber"]
            lines.append(f"{name} {self._describe(name, args)} (tx from {sender}, block {block})")
        return lines

    def _describe(self, name: str, args: Any) -> str:
        def who(key: str) -> str:
            return self.name(str(args[key]))

        first, second = self.channels.get(bytes(args["channel_id"]), ("?", "?"))
        channel = "-".join(sorted((first, second)))
        match name:
            case "ChannelClosed":
                closer = who("closing_participant")
                partner = second if closer == first else first
                return f"{channel} by {closer}, with {partner}'s proof nonce {args['nonce']}"
            case "NonClosingBalanceProofUpdated":
                return (
                    f"{channel}: {who('closing_participant')}'s proof nonce "
                    f"{args['nonce']} put on chain by {who('submitter')}"
                )
            case "ChannelSettled" | "ChannelCooperativeSettled":
                return (
                    f"{channel}: {first} gets {tkn(args['participant1_amount'])}, "
                    f"{second} {tkn(args['participant2_amount'])}"
                )
            case "DelegateRewarded":
                return (
                    f"{channel}: {tkn(args['reward'])} to {who('delegate')} "
                    f"(out of {who('participant')}'s share)"
                )
            case _:
                return channel


class Demo:
    """The story, told through the nodes' APIs (``run``)."""

    def __init__(
        self, chain: Chain, manifest: Path, isle: Island, work: Path, log_level: str = "info"
    ) -> None:
        self.chain = chain
        self.isle = isle
        self.log = Timeline()
        self.api: dict[str, ApiClient] = {}
        self.addresses = {n: "0x" + address_from_private_key(key_of(n)).hex() for n in NAMES}
        chain.names.update({address: name for name, address in self.addresses.items()})
        self.ticker: asyncio.Task[None] | None = None
        self.payments: dict[str, dict[str, Any]] = {}
        self.view = 0
        """The chain time of the last block the island saw before the cut."""
        self.views: dict[tuple[str, str], tuple[int, int]] = {}
        """Each channel's balances after the blind payments, as both sides held them."""
        """The two blind payments, by "first" and "second", as their payers report them."""
        self.picture = demo_picture.Picture(
            line=tuple(LINE),
            gateway=GATEWAY,
            caption=self.island_caption(),
            title="SmartMesh island demo: payments without internet, proofs to the chain later",
        )
        delegate = Web3.to_checksum_address(self.addresses[GATEWAY])
        self.nodes: dict[str, NodeProcess] = {}
        for index, name in enumerate(NAMES):
            if name == GATEWAY:
                node_table: dict[str, Any] = {"watch": True}
                dial = list(range(len(LINE)))  # on the island's LAN with every node
            else:
                node_table = {"delegates": [delegate], "delegate_reward": REWARD}
                dial = [index - 1] if index else []  # the mesh along the line, too
            settings: dict[str, dict[str, Any]] = {"node": {**node_table, "log_level": log_level}}
            if name in LINE[1:-1]:
                settings["protocol"] = dict(FEES)
            self.nodes[name] = isle.node(
                index, name, key_of(name), work / name, manifest, dial=dial, settings=settings
            )

    def island_caption(self) -> str:
        if self.isle.kind == "netns":
            return (
                "network namespaces (run as root): each node in a namespace of its own on a "
                "bridged LAN; its uplink to the chain is a veth pair, set down to cut it"
            )
        reason = unavailable_reason() or "asked for"
        return (
            f"loopback ({reason}): each node reaches the chain through a forwarder of its "
            "own, closed to cut it"
        )

    async def run(self) -> bool:
        """Start the nodes, tell the story, stop them; whether every balance checked out."""
        for name in NAMES:
            self.chain.fund(key_of(name), FUNDS)
        self.log(f"minted {tkn(FUNDS)} to each of six accounts (A-E, and G)")
        self.log(f"island: {self.island_caption()}")
        with ThreadPoolExecutor(len(NAMES)) as pool:
            list(pool.map(lambda node: node.start(), self.nodes.values()))
        try:
            for name, node in self.nodes.items():
                role = (
                    "watcher (watch = true), keeps its uplink"
                    if name == GATEWAY
                    else f"delegates: G, reward {tkn(REWARD)}"
                )
                self.log(f"node {name} up: {node.address} ({role})")
                self.api[name] = await node.client().__aenter__()
            before = {name: self.chain.balance(self.addresses[name]) for name in NAMES}
            await self.online()
            await self.blackout()
            await self.pay_blind()
            await self.cheat()
            closing = await self.close_blind()
            await self.connectivity_returns(closing)
            await self.settle_after_window()
            return await self.check(before)
        finally:
            if self.ticker is not None:
                self.ticker.cancel()
            for client in self.api.values():
                await client.close()
            for node in self.nodes.values():
                node.stop()

    # -- the story ------------------------------------------------------------------------

    async def online(self) -> None:
        api, chain = self.api, self.chain
        for left, right in PAIRS:
            await api[left].open_channel(chain.token, self.addresses[right], DEPOSIT)
            await self.until(functools.partial(self.has_channel, right, left))
            await api[right].deposit(chain.token, self.addresses[left], DEPOSIT)
            chain.learn_channel(self.addresses[left], self.addresses[right])
        self.log(
            f"channels A-B, B-C, C-D, D-E open, {tkn(DEPOSIT)} deposited by each side",
            where="chain",
        )
        self.view = chain.mine()
        for name in NAMES:
            await self.until(functools.partial(self.viewed, name, self.view))
        await asyncio.sleep(2.0)  # the capacity announcements go round

    async def blackout(self) -> None:
        for index in range(len(LINE)):
            self.isle.cut_chain(index)
        for name in LINE:
            await self.until(functools.partial(self.blind, name))
        self.picture.blind = frozenset(LINE)
        how = (
            "chain0 set down in each namespace: Network is unreachable"
            if self.isle.kind == "netns"
            else "forwarders closed: connection refused"
        )
        self.log(
            f"chain cut for A, B, C, D, E ({how}); G still sees it", where="uplinks", tone="blind"
        )
        # The chain goes on without the island: the watcher's view moves past the island's,
        # and its acknowledgements extend the blind nodes' windows (docs/offline.md §2).
        self.chain.mine()
        self.ticker = asyncio.create_task(self.chain.tick(BLOCK_TIME))
        await self.until(lambda: self.viewed(GATEWAY, self.view + 1))

    async def pay_blind(self) -> None:
        log = self.log
        paid = await self.pay("A", "E", FIRST)
        self.payments["first"] = paid
        label = f"A → E {FIRST // ONE} TKN (fees {tkn(paid['fee'], 4)})"
        self.picture.paths.append(demo_picture.Path(tuple(LINE), label))
        log(
            f"A -> E {tkn(FIRST)} blind, relayed by B, C, D: {paid['status']}, fee "
            f"{tkn(paid['fee'], 6)}",
            where="path1",
            tone="path1",
        )
        log.detail("fees taken: " + self.fees_text(await self.fees(paid["payment_id"])))
        await self.merchant_view(paid)

        back = await self.pay("E", "A", SECOND)
        self.payments["second"] = back
        label = f"E → A {SECOND // ONE} TKN (fees {tkn(back['fee'], 4)})"
        self.picture.paths.append(demo_picture.Path(tuple(reversed(LINE)), label))
        log(
            f"E -> A {tkn(SECOND)} blind, relayed by D, C, B: {back['status']}, fee "
            f"{tkn(back['fee'], 6)}",
            where="path2",
            tone="path2",
        )
        log.detail("fees taken: " + self.fees_text(await self.fees(back["payment_id"])))

        await self.until(self.locks_drained)
        self.views = await self.channel_views()
        for (left, right), (ours, theirs) in self.views.items():
            self.picture.channel_labels[(left, right)] = (
                f"{left} {ours / ONE:.2f} · {right} {theirs / ONE:.2f}"
            )
            log.detail(
                f"channel {left}-{right} off chain: {left} {tkn(ours)}, {right} {tkn(theirs)}"
            )
        for name in NAMES:
            log.detail(await self.status_line(name))

    async def merchant_view(self, paid: dict[str, Any]) -> None:
        """E's view of the payment it received while blind: its risk, before and after the
        delegate acknowledged the proof that holds it."""
        found: dict[str, Any] = {}

        async def arrived() -> bool:
            nonlocal found
            for payment in await self.api["E"].payments(direction="received", limit=100):
                if payment["payment_id"] == paid["payment_id"]:
                    found = payment
                    return True
            return False

        await self.until(arrived)
        risk = found["risk"]
        self.log(
            f"E (merchant, blind) sees the payment: {found['status']}, "
            f"{tkn(found['amount'])}; risk: proof nonce {risk['nonce']} must reach the "
            f"chain by {clock(risk['deadline'])}, covered by {risk['covered_by']}",
            where="E",
            tone="path1",
        )

        async def covered() -> bool:
            return await arrived() and found["risk"]["covered_by"] == "delegate"

        await self.until(covered)
        risk = found["risk"]
        named = f" {self.chain.name(risk['delegate'])}" if risk["delegate"] else ""
        self.log(
            f"G acknowledged E's proof, with its own newer view of the chain: now covered "
            f"by delegate{named}, deadline {clock(risk['deadline'])}, within window "
            f"{risk['within_window']}",
            where="G",
            tone="watch",
        )
        for item in await self.api["E"].deadlines():
            self.log.detail(self.deadline_line("E", item))

    async def cheat(self) -> None:
        log, api, chain = self.log, self.api, self.chain
        horizon = await self.delegated("B", "C")
        stake, nonce = int(horizon["amount"]), int(horizon["nonce"])
        log(
            f"B's delegate G holds C's latest proof to B (nonce {nonce}, {tkn(stake)} for B); "
            f"B's horizon {clock(horizon['deadline'])}, covered by {horizon['covered_by']}",
            where="G",
            tone="watch",
        )
        for item in await api["B"].deadlines():
            log.detail(self.deadline_line("B", item))

        self.isle.restore_chain(LINE.index("C"))
        self.picture.attacker = "C"
        await self.until(lambda: self.synced("C"))
        log(
            "C gets its own uplink back (an attacker with its own link: on main a blind node's "
            "own transactions cannot go through a gateway yet)",
            where="C",
            tone="cheat",
        )
        chain.skip_to_now()
        closed = await api["C"].close_channel(chain.token, self.addresses["B"])
        self.picture.cheated_channel = ("B", "C")
        log(
            f"C closes B-C while B is blind: {closed['status']}, settle deadline "
            f"{closed['settle_deadline']} (chain time)",
            where="B-C",
            tone="cheat",
        )
        log.detail(
            "the close puts B's proof to C on chain (C's node takes B's newest: an older "
            "one would only cost C); what it leaves out is C's own proof to B"
        )
        log.detail(
            f"C's payments to B ({tkn(stake)}, nonce {nonce}) count only if B or its "
            "delegate puts that proof on chain by the settle deadline"
        )
        log.detail(
            f"if nobody does, settle ignores them: C keeps the {tkn(stake)} it paid B "
            "for E -> A, and B, who paid A, loses them"
        )

        await self.until(lambda: self.updated(nonce))
        for line in chain.new_logs():
            log.detail(f"chain: {line}")
        c_side = chain.participant(self.addresses["C"], self.addresses["B"])
        b_side = chain.participant(self.addresses["B"], self.addresses["C"])
        log(
            f"G, B's delegate, put C's proof nonce {c_side.nonce} on chain for B; the contract "
            f"recorded the delegation ({chain.name(b_side.delegate)}, reward "
            f"{tkn(b_side.reward)}, paid at settle)",
            where="G",
            tone="watch",
        )
        await self.until(lambda: self.heard_outcome("B"))
        status = await api["B"].status()
        log(
            f"B, still blind (chain_reachable {status['chain_reachable']}), heard G's outcome "
            "over the mesh: update confirmed",
            where="B",
            tone="watch",
        )

    async def close_blind(self) -> list[asyncio.Task[dict[str, Any]]]:
        """Cooperative closes agreed over the mesh while blind: each answer comes once its
        transaction is confirmed, so they run on while the story goes on."""
        closers = (("A", "B"), ("D", "C"), ("E", "D"))
        closing = [asyncio.create_task(self.close(name, partner)) for name, partner in closers]
        for name, _ in closers:
            await self.until(functools.partial(self.pending, name, "cooperative_settle"))
        self.log(
            "A-B, C-D, D-E: cooperative settles signed by both sides over the mesh; the "
            "transactions wait in A's, D's and E's schedules",
            where="A-B,C-D,D-E",
        )
        for name, _ in closers:
            for item in await self.api[name].deadlines():
                if item["pending"]:
                    self.log.detail(self.deadline_line(name, item))
        return closing

    async def connectivity_returns(self, closing: list[asyncio.Task[dict[str, Any]]]) -> None:
        log = self.log
        for name in "ABDE":
            self.isle.restore_chain(LINE.index(name))
        log("connectivity returns for A, B, D, E", where="uplinks", tone="sees")
        landed, deadline = 0, time.monotonic() + WAIT
        while landed < len(closing):
            if time.monotonic() > deadline:
                raise TimeoutError("the deferred cooperative settles did not land")
            await asyncio.sleep(0.2)
            for line in self.chain.new_logs():
                landed += line.startswith("ChannelCooperativeSettled")
                log(f"chain: {line}")
        for task in closing:
            with contextlib.suppress(ApiClientError):  # settled is all that counts
                await task
        await self.until(lambda: self.has_event("B", "submission_unnecessary"))
        for event in await self.events("B", "submission_unnecessary"):
            log(f"B's own update of C's proof: not sent ({event['data']['reason']})")
        log(
            "the delayed submissions landed: 3 cooperative settles; B's update found "
            "unnecessary; no secret registration or unlock was due (every lock was unlocked "
            "off chain)",
            where="chain",
        )

    async def settle_after_window(self) -> None:
        log, chain = self.log, self.chain
        nonce = chain.participant(self.addresses["C"], self.addresses["B"]).nonce
        log.detail(
            f"B-C: the update is mined (C's proof nonce {nonce} on chain): the settle "
            "window may pass"
        )
        chain.jump(SETTLE_WINDOW + 100)
        log(f"anvil: {SETTLE_WINDOW + 100} s pass (B-C's settle window)")
        await self.until(lambda: self.settled("B", "C"))
        await self.until(lambda: self.has_event(GATEWAY, "watch_reward"))
        for line in chain.new_logs():
            log(f"chain: {line}", where="B-C" if line.startswith("ChannelSettled") else None)
        for event in await self.events(GATEWAY, "watch_reward"):
            log(
                f"G's reward, recorded from the DelegateRewarded log: "
                f"{tkn(event['data']['reward'])}",
                where="G",
                tone="watch",
            )

    async def check(self, before: dict[str, int]) -> bool:
        """Every account's on-chain change against what the payments imply; the channel
        balances the nodes held must imply the same."""
        implied = await self.implied()
        from_channels = self.from_channels()
        print("\nfinal on-chain balances (TKN):")
        print(f"  {'node':<6}{'before':>16}{'after':>16}{'change':>14}{'expected':>14}")
        ok = implied == from_channels
        for name in NAMES:
            after = self.chain.balance(self.addresses[name])
            change = after - before[name]
            good = change == implied[name]
            ok &= good
            print(
                f"  {name:<6}{before[name] / ONE:>16,.4f}{after / ONE:>16,.4f}"
                f"{change / ONE:>+14.4f}{implied[name] / ONE:>+14.4f}"
                f"  {'ok' if good else 'MISMATCH'}"
            )
        total = sum(implied.values())
        print(f"  tokens created or lost: {total} (must be 0)")
        if implied != from_channels:
            print(f"  the channel balances imply otherwise: {from_channels}")
        ok &= total == 0
        self.log(f"balances checked: {'every account ok' if ok else 'MISMATCH'}", where="chain")
        return ok

    async def implied(self) -> dict[str, int]:
        """What the two payments imply for each account: the payers pay amount and fees,
        the payees get the amounts, each mediator its fees; B pays G the reward (G's update
        is the one that stands at settle)."""
        first, second = self.payments["first"], self.payments["second"]
        change = dict.fromkeys(NAMES, 0)
        change["A"] += -FIRST - int(first["fee"]) + SECOND
        change["E"] += FIRST - SECOND - int(second["fee"])
        for payment in (first, second):
            for name, fee in (await self.fees(payment["payment_id"])).items():
                change[name] += fee
        change["B"] -= REWARD
        change[GATEWAY] += REWARD
        return change

    def from_channels(self) -> dict[str, int]:
        """The same from the channel balances the nodes held after the payments: each side
        gets its balance back instead of its deposit."""
        change = dict.fromkeys(NAMES, 0)
        for (left, right), (ours, theirs) in self.views.items():
            change[left] += ours - DEPOSIT
            change[right] += theirs - DEPOSIT
        change["B"] -= REWARD
        change[GATEWAY] += REWARD
        return change

    # -- acting and reading through the API ---------------------------------------------------

    async def pay(self, payer: str, payee: str, amount: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for _ in range(ATTEMPTS):
            result = await self.api[payer].pay(
                self.chain.token, self.addresses[payee], amount, wait=WAIT
            )
            if result["status"] != "failed" or result["reason"] not in LEARNING:
                break
            await asyncio.sleep(1.0)
        if result.get("status") != "succeeded":
            raise RuntimeError(f"{payer} -> {payee} did not succeed: {result}")
        return result

    async def close(self, name: str, partner: str) -> dict[str, Any]:
        return await self.api[name].close_channel(
            self.chain.token, self.addresses[partner], cooperative=True
        )

    async def channel_views(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(left's balance, right's balance) of each channel, as both sides agree."""
        views = {}
        for left, right in PAIRS:
            mine = await self.api[left].channel(self.chain.token, self.addresses[right])
            theirs = await self.api[right].channel(self.chain.token, self.addresses[left])
            seen = (int(mine["our_balance"]), int(mine["partner_balance"]))
            if seen != (int(theirs["partner_balance"]), int(theirs["our_balance"])):
                raise RuntimeError(f"{left} and {right} disagree: {mine} {theirs}")
            views[(left, right)] = seen
        return views

    async def fees(self, payment_id: str) -> dict[str, int]:
        """Each mediator's fee for one payment, from its ``mediated`` events."""
        fees = {}
        for name in LINE[1:-1]:
            for event in await self.events(name, "mediated"):
                if event["data"]["payment_id"] == payment_id:
                    fees[name] = int(event["data"]["fee"])
        return fees

    @staticmethod
    def fees_text(fees: dict[str, int]) -> str:
        return ", ".join(f"{name} {tkn(fee, 6)}" for name, fee in fees.items())

    async def status_line(self, name: str) -> str:
        status = await self.api[name].status()
        if status["chain_reachable"]:
            seen = f"sees the chain (block {status['latest_block']})"
        else:
            seen = f"blind for {status['blind_for_s']:.1f} s, view time {status['view_time']}"
        upcoming = ""
        if status["next_deadline"] is not None:
            upcoming = (
                f"; next deadline: {status['next_deadline_what']} {clock(status['next_deadline'])}"
            )
        return f"{name} /status: {seen}{upcoming}"

    async def delegated(self, name: str, partner: str) -> dict[str, Any]:
        """``name``'s update horizon for ``partner`` once a delegate covers it."""
        found: dict[str, Any] = {}

        async def covered() -> bool:
            nonlocal found
            for item in await self.api[name].deadlines():
                if item["what"] == "update_horizon" and (
                    item["partner"].lower() == self.addresses[partner]
                ):
                    found = item
                    return bool(item["covered_by"] == "delegate")
            return False

        await self.until(covered)
        return found

    def deadline_line(self, name: str, item: dict[str, Any]) -> str:
        partner = self.chain.name(item["partner"]) if item["partner"] else "-"
        who = item["covered_by"]
        if item["delegate"]:
            who += f" ({self.chain.name(item['delegate'])})"
        pending = ", transaction waiting" if item["pending"] else ""
        return (
            f"{name} /deadlines: {item['what']} ({partner}), act by "
            f"{clock(item['deadline'])}, chain limit {item['chain_deadline']}, covered by "
            f"{who}{pending}"
        )

    async def events(self, name: str, kind: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        since = 0
        while True:
            page = await self.api[name].events(since=since, limit=1000)
            if not page["events"]:
                return [event for event in found if event["kind"] == kind]
            found += page["events"]
            since = page["next_since"]

    async def has_event(self, name: str, kind: str) -> bool:
        return bool(await self.events(name, kind))

    async def heard_outcome(self, name: str) -> bool:
        return any(
            e["data"]["action"] == "update" and e["data"]["status"] == "confirmed"
            for e in await self.events(name, "watch_outcome")
        )

    async def updated(self, nonce: int) -> bool:
        """Whether C's proof with ``nonce`` (or newer) is on chain for B-C."""
        return bool(self.chain.participant(self.addresses["C"], self.addresses["B"]).nonce >= nonce)

    async def pending(self, name: str, what: str) -> bool:
        return any(d["what"] == what and d["pending"] for d in await self.api[name].deadlines())

    async def has_channel(self, name: str, partner: str) -> bool:
        channels = await self.api[name].channels(self.chain.token)
        return any(ch["partner"].lower() == self.addresses[partner] for ch in channels)

    async def viewed(self, name: str, view: int) -> bool:
        status = await self.api[name].status()
        return bool(status["chain_reachable"] and (status["view_time"] or 0) >= view)

    async def blind(self, name: str) -> bool:
        return not (await self.api[name].status())["chain_reachable"]

    async def synced(self, name: str) -> bool:
        status = await self.api[name].status()
        return bool(status["chain_reachable"] and status["synced"])

    async def settled(self, left: str, right: str) -> bool:
        channel = await self.api[left].channel(self.chain.token, self.addresses[right])
        return bool(channel["status"] == "settled")

    async def locks_drained(self) -> bool:
        """No lock pending but given-back pairs (a refused lock and the lock that returns
        it, which cancel out until they expire)."""
        for client in self.api.values():
            pending = [p["secrethash"] + p["partner"] for p in await client.pending()]
            if any(pending.count(lock) != 2 for lock in pending):
                return False
        return True

    async def until(self, check: Callable[[], Awaitable[bool]], timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while not await check():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the demo waited {timeout:.0f} s in vain for {check}")
            await asyncio.sleep(0.1)


@contextlib.contextmanager
def deployed(work: Path) -> Iterator[tuple[Anvil, Chain, Path]]:
    """A fresh anvil with every contract deployed (scripts.deployer, in process)."""
    with Anvil.start() as node:
        w3 = Web3(Web3.HTTPProvider(node.url))
        manifest = work / "31337.json"
        result = deploy(w3, Web3Sender(w3, DEV_PRIVATE_KEYS[0]), path=manifest, log=lambda _: None)
        chain = Chain(node.url, json.loads(manifest.read_text()), result.address(TEST_TOKEN))
        yield node, chain, manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--island",
        choices=("auto", "netns", "loopback"),
        default="auto",
        help="network namespaces (root), loopback, or the best available",
    )
    parser.add_argument(
        "--svg",
        type=Path,
        default=ROOT / "build" / "demo-offline.svg",
        help="where the picture goes (default: build/demo-offline.svg)",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=ROOT / ".demo" / "offline",
        help="the nodes' folders and logs (emptied first)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning"),
        help="the nodes' log level",
    )
    args = parser.parse_args(argv)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    started = time.monotonic()
    ok = False
    with deployed(args.work) as (node, chain, manifest):
        print(
            f"anvil {node.url}: contracts deployed (token {chain.token}, token network "
            f"{chain.network})"
        )
        with island(len(NAMES), chain.url, args.island) as isle:
            demo = Demo(chain, manifest, isle, args.work, args.log_level)
            try:
                ok = asyncio.run(demo.run())
            finally:
                demo.picture.steps = list(demo.log.steps)
                args.svg.parent.mkdir(parents=True, exist_ok=True)
                args.svg.write_text(demo_picture.render(demo.picture), encoding="utf-8")
    print(
        f"\n{'every balance checks out' if ok else 'BALANCES DO NOT MATCH'} "
        f"({time.monotonic() - started:.0f} s in all)"
    )
    print(f"picture: {args.svg}")
    print(f"node logs: {args.work}/*/node.log")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
