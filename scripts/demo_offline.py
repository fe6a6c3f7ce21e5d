"""`make demo-offline`: the island. Payments without internet, and the proofs to the chain later.

Belongs here: the choreography only, driven through each node's HTTP API as a user would,
on a real anvil with the contracts deployed (scripts.deployer, as `make demo --web3`):

1. six `smartmesh node` processes on an island (scripts.netns: a network namespace per
   node when run as root, whose uplink to the chain is a real link that is set down;
   loopback with a forwarder per node otherwise; the demo prints which): A-B-C-D-E in a
   line of channels, and G, a watcher (`watch = true`) that holds no channel, relays on
   the mesh and keeps its uplink. A-E name G as their delegate (`delegates`);
2. the channels are opened and funded while everyone sees the chain;
3. the chain is cut for all but G, and stays cut for A-E until step 6; A pays E across B,
   C, D (each takes a fee) and E pays back, all blind: the status, the deadlines and E's
   merchant view show it;
4. C cheats: blind, it closes its channel with B through its API while B is blind too,
   counting on B not putting C's payments to it on chain. C's node signs the close
   offline and hands it to G, a gateway of its mesh, which broadcasts it; G, B's
   delegate, then puts B's latest proof from C on chain; B hears of it over the mesh;
5. still blind, A-B, C-D and D-E agree cooperative settles over the mesh; their initiators
   sign the transactions offline and hand them to G too, which broadcasts them. Which
   gateway carried which submission is read from the nodes' events (``gateway_handed``,
   ``gateway_done``) and ``/deadlines`` (``covered_by: gateway``), and matched to the
   chain's logs by transaction hash (the watcher's ``watch_submitted`` events);
6. connectivity returns; what is left is read from the nodes and the chain, never
   assumed: B's own update found unnecessary (G's is there), the transactions G carried
   found on chain (the island accounts' transaction counts moved by those alone), any
   secret registration or unlock. After B-C's settle window (an anvil time jump) B-C
   settles (whoever sends it: the log says) and G is paid its reward;
7. every account's final on-chain balance is checked against what the off-chain payments
   imply (the amounts, each mediator's fee, the delegate's reward): all "ok" and 0 tokens
   created or lost, or the exit code is 1.

A text timeline goes to stdout (times relative to the start; numbered steps; wrapped at
100 columns), and a picture of the mesh, the payment paths, what G carried and the steps
to build/demo-offline.svg.

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
import re
import shutil
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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
"""The token network's logs the demo tells (with the secret registry's ``SecretRevealed``)."""
COLUMNS: Final = 100
"""Width of the text timeline (longer lines are wrapped, hex never broken)."""
WHAT: Final = {
    "close": "close",
    "cooperative_settle": "cooperative settle",
    "update": "update",
    "withdraw": "withdraw",
    "register_secret": "secret registration",
    "unlock": "unlock",
    "transaction": "transaction",
    "ContractSendClose": "close",
    "ContractSendCoopSettle": "cooperative settle",
    "ContractSendUpdate": "update of its partner's proof",
    "ContractSendWithdraw": "withdraw",
    "ContractSendSecretRegister": "secret registration",
    "ContractSendUnlock": "unlock",
}
"""Words for the ``what`` of gateway events, deadlines and ``submission_unnecessary``."""


UNIT: Final = re.compile(r"(\d) (s|TKN)\b")
GLUE: Final = "\x1f"
"""Holds a number to its unit while wrapping (textwrap breaks only at ASCII whitespace)."""


def wrap(text: str, first: str, rest: str = " " * 12) -> str:
    """``text`` after ``first``, in lines of at most ``COLUMNS`` characters."""
    lines = textwrap.wrap(
        UNIT.sub(rf"\1{GLUE}\2", text),
        COLUMNS,
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return "\n".join(lines).replace(GLUE, " ")


def possessive(entries: list[Handoff]) -> str:
    """``C's close; A's, D's, E's cooperative settles``: who handed what, in line order."""
    groups: dict[str, list[str]] = {}
    for entry in entries:
        groups.setdefault(entry.what, []).append(entry.origin)
    parts = []
    for what, origins in groups.items():
        origins.sort(key=lambda name: NAMES.index(name) if name in NAMES else len(NAMES))
        noun = WHAT.get(what, what) + ("s" if len(origins) > 1 else "")
        whose = ", ".join(name + "'s" for name in origins)
        parts.append(f"{whose} {noun}")
    return "; ".join(parts)


def short(tx_hash: str) -> str:
    return f"{tx_hash[:10]}…"


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
        self.wall = time.time()
        self.steps: list[demo_picture.Step] = []

    def since(self, moment: float) -> float:
        """A device time (an event's ``time``) as seconds since the start."""
        return moment - self.wall

    def __call__(self, text: str, where: str | None = None, tone: str = "chain") -> None:
        """Print ``text``; with ``where`` (see ``demo_picture.Step``) it is a numbered step."""
        elapsed = time.monotonic() - self.start
        mark = ""
        if where is not None:
            number = len(self.steps) + 1
            self.steps.append(demo_picture.Step(number, elapsed, text, where, tone))
            mark = f"({number}) "
        print(wrap(mark + text, f"[{elapsed:7.2f} s] ", " " * 14), flush=True)

    def detail(self, text: str) -> None:
        print(wrap(text, " " * 12, " " * 14), flush=True)


@dataclass(frozen=True)
class Landed:
    """One of our contracts' logs, as the demo tells it."""

    name: str
    text: str
    sender: str
    """The name of the account that signed the transaction."""
    tx_hash: str
    """0x, lower case."""
    block: int

    def line(self, carriers: Mapping[str, str]) -> str:
        """``chain: ...``; with who broadcast it when a gateway did (``carriers``: tx hash ->
        the gateway's name, from the nodes' ``gateway_done`` events)."""
        carrier = carriers.get(self.tx_hash)
        via = f", broadcast by {carrier}" if carrier else ""
        return f"chain: {self.name} {self.text} (tx from {self.sender}{via}, block {self.block})"


def handed_tx(data: Mapping[str, Any]) -> str | None:
    """The transaction a hand-off carries (its subject names it), if it is one."""
    subject = str(data.get("subject", ""))
    return "0x" + subject.removeprefix("raw:") if subject.startswith("raw:") else None


@dataclass
class Handoff:
    """One submission a blind node handed to gateways, as its events tell it."""

    origin: str
    kind: str
    """``raw_transaction`` (signed by the node), ``register_secret``, ``unlock``."""
    what: str
    partner: str | None
    tx_hash: str | None
    handed_at: float
    gateways: list[str] = field(default_factory=list)
    """Each gateway it went to, in order."""
    refusals: list[str] = field(default_factory=list)
    status: str | None = None
    """``confirmed``, ``unnecessary`` or ``failed``; None: no outcome heard."""
    gateway: str | None = None
    """The gateway that reported the outcome."""
    done_at: float | None = None
    mined: bool = False
    """Whether the outcome names a mined transaction (for one of the node's own: its nonce
    is spent)."""

    def text(self, timeline: Timeline) -> str:
        partner = f" ({self.partner})" if self.partner else ""
        tx = f", tx {short(self.tx_hash)}" if self.tx_hash else ""
        line = (
            f"{self.origin}: {WHAT.get(self.what, self.what)}{partner}{tx}: to "
            f"{', '.join(self.gateways) or '-'} at {timeline.since(self.handed_at):.1f} s"
        )
        for refusal in self.refusals:
            line += f", refused by {refusal}"
        if self.status is None or self.done_at is None:
            return line + ", no outcome heard yet"
        return f"{line}, {self.status} by {self.gateway} at {timeline.since(self.done_at):.1f} s"


class Chain:
    """The demo's own look at the chain (web3, from the root namespace): funds, balances,
    nonces, our contracts' logs as they land, blocks and time jumps."""

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
        self.secret_registry = Web3.to_checksum_address(
            manifest["contracts"]["SecretRegistry"]["address"]
        )
        self._registry = self.w3.eth.contract(
            address=self.secret_registry, abi=load_artifact("secret_registry").abi_list()
        )
        self._topics = {topic0_of(ContractKind.TOKEN_NETWORK, name): name for name in EVENTS}
        self._topics[topic0_of(ContractKind.SECRET_REGISTRY, "SecretRevealed")] = "SecretRevealed"
        self._next_block = 0

    def name(self, address: str) -> str:
        return self.names.get(address.lower(), address[:10])

    def fund(self, key: bytes, amount: int) -> None:
        address = Web3.to_checksum_address(address_from_private_key(key))
        rpc(self.url, "anvil_setBalance", [address, hex(100 * ONE)])
        Web3Sender(self.w3, key).send(self._tokens.functions.mint(address, amount))

    def balance(self, address: str) -> int:
        return int(self._tokens.functions.balanceOf(Web3.to_checksum_address(address)).call())

    def nonce(self, address: str) -> int:
        """How many transactions the account has had mined."""
        return int(self.w3.eth.get_transaction_count(Web3.to_checksum_address(address)))

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

    def new_logs(self) -> list[Landed]:
        """Our contracts' logs mined since the last call."""
        head = int(self.w3.eth.block_number)
        if head < self._next_block:
            return []
        found = self.w3.eth.get_logs(
            {
                "address": [self.network, self.secret_registry],
                "fromBlock": self._next_block,
                "toBlock": head,
            }
        )
        self._next_block = head + 1
        landed = []
        for entry in found:
            name = self._topics.get(bytes(entry["topics"][0]))
            if name is None:
                continue
            contract = self._registry if name == "SecretRevealed" else self._contract
            args = getattr(contract.events, name)().process_log(entry)["args"]
            tx_hash = "0x" + bytes(entry["transactionHash"]).hex()
            sender = self.name(self.w3.eth.get_transaction(entry["transactionHash"])["from"])
            text = self._describe(name, args)
            landed.append(Landed(name, text, sender, tx_hash, int(entry["blockNumber"])))
        return landed

    def _describe(self, name: str, args: Any) -> str:
        def who(key: str) -> str:
            return self.name(str(args[key]))

        if name == "SecretRevealed":
            return f"secrethash 0x{bytes(args['secrethash']).hex()[:8]}…"
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
            case "ChannelUnlocked":
                return (
                    f"{channel}: {who('receiver')} gets {tkn(args['unlocked_amount'])} of "
                    f"{who('sender')}'s locks"
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
        """The two blind payments, by "first" and "second", as their payers report them."""
        self.views: dict[tuple[str, str], tuple[int, int]] = {}
        """Each channel's balances after the blind payments, as both sides held them."""
        self.closing: dict[str, asyncio.Task[dict[str, Any]]] = {}
        """API calls that answer only once their node sees the chain (a blind close, the
        cooperative settles), by the node that made them."""
        self.cut_at = 0.0
        """When the chain was cut for the island (monotonic)."""
        self.nonces: dict[str, int] = {}
        """Each island account's transaction count on chain when the chain was cut."""
        self.carriers: dict[str, str] = {}
        """Transaction hash -> the gateway that broadcast it (from the watcher's events)."""
        self.carried: list[Handoff] = []
        """What the island handed to gateways while blind (from its nodes' events)."""
        self.landed: list[Landed] = []
        """Every log of our contracts the demo told, in order."""
        self.due: list[str] = []
        """Secret registrations and unlocks the island had due when blind (read, not assumed)."""
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
            await self.close_blind()
            await self.handed_record()
            await self.connectivity_returns()
            await self.settle_after_window()
            return await self.check(before)
        finally:
            if self.ticker is not None:
                self.ticker.cancel()
            for task in self.closing.values():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ApiClientError):
                    await task
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
        self.nonces = {name: self.chain.nonce(self.addresses[name]) for name in LINE}
        for index in range(len(LINE)):
            self.isle.cut_chain(index)
        self.cut_at = time.monotonic()
        for name in LINE:
            await self.until(functools.partial(self.blind, name))
        self.picture.blind = frozenset(LINE)
        how = (
            "chain0 set down in each namespace: Network is unreachable"
            if self.isle.kind == "netns"
            else "forwarders closed: connection refused"
        )
        self.log(
            f"chain cut for A, B, C, D, E ({how}) until connectivity returns; G still sees it",
            where="uplinks",
            tone="blind",
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

        chain.skip_to_now()
        self.picture.attacker = "C"
        self.picture.cheated_channel = ("B", "C")
        self.closing["C"] = asyncio.create_task(
            api["C"].close_channel(chain.token, self.addresses["B"])
        )
        log(
            "C, blind, closes B-C through its API while B is blind too (POST /channels/{token}/"
            "{B}/close: the call answers once C sees the close on chain)",
            where="C",
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

        handed = await self.gateway_event("C", "gateway_handed", "close")
        log(
            f"C's node signed the close offline and handed it to "
            f"{self.chain.name(handed['data']['gateway'])}: {self.handed_text(handed)}",
            where="C>G",
            tone="gateway",
        )
        for item in await api["C"].deadlines():
            if item["what"] == "close":
                log.detail(self.deadline_line("C", item))

        done = await self.gateway_event("C", "gateway_done", "close")
        await self.until(lambda: self.updated(nonce))
        await self.learn_carriers()
        update: Landed | None = None
        for landed in self.new_logs():
            if landed.name == "ChannelClosed":
                log(landed.line(self.carriers), where="B-C", tone="cheat")
            elif landed.name == "NonClosingBalanceProofUpdated":
                update = landed
            else:
                log.detail(landed.line(self.carriers))
        log.detail(f"C, {await self.seeing('C')}, heard: {self.done_text(done)}")
        c_side = chain.participant(self.addresses["C"], self.addresses["B"])
        b_side = chain.participant(self.addresses["B"], self.addresses["C"])
        log(
            f"G, B's delegate, corrected it with B's latest proof from C (nonce "
            f"{c_side.nonce}); the contract recorded the delegation "
            f"({chain.name(b_side.delegate)}, reward {tkn(b_side.reward)}, paid at settle)",
            where="G",
            tone="watch",
        )
        if update is not None:
            log.detail(update.line(self.carriers))
        await self.until(lambda: self.heard_outcome("B"))
        log(
            f"B, {await self.seeing('B')}, heard G's outcome over the mesh: update confirmed",
            where="B",
            tone="watch",
        )

    async def close_blind(self) -> None:
        """Cooperative settles agreed over the mesh while blind; their initiators hand the
        transactions to the gateway (each API call answers once its node sees the settle)."""
        log = self.log
        closers = (("A", "B"), ("D", "C"), ("E", "D"))
        for name, partner in closers:
            self.closing[name] = asyncio.create_task(self.close(name, partner))
        for name, _ in closers:
            await self.until(functools.partial(self.pending, name, "cooperative_settle"))
        log(
            "A-B, C-D, D-E: cooperative settles signed by both sides over the mesh, all blind; "
            "each transaction waits in its initiator's schedule (A, D, E)",
            where="A-B,C-D,D-E",
        )
        handed = {
            name: await self.gateway_event(name, "gateway_handed", "cooperative_settle")
            for name, _ in closers
        }
        gateways = sorted({self.chain.name(e["data"]["gateway"]) for e in handed.values()})
        initiators = [name for name, _ in closers]
        log(
            f"{', '.join(initiators[:-1])} and {initiators[-1]} signed their settle "
            f"transactions offline and handed them to {' and '.join(gateways)}",
            where=",".join(f"{name}>{GATEWAY}" for name, _ in closers),
            tone="gateway",
        )
        for name, event in handed.items():
            log.detail(f"{name}: {self.handed_text(event)}")
        for name, _ in closers:
            for item in await self.api[name].deadlines():
                if item["pending"]:
                    log.detail(self.deadline_line(name, item))

        for name, _ in closers:
            await self.gateway_event(name, "gateway_done", "cooperative_settle")
        landed: list[Landed] = []

        async def all_settled() -> bool:
            landed.extend(self.new_logs())
            return sum(entry.name == "ChannelCooperativeSettled" for entry in landed) >= len(
                closers
            )

        await self.until(all_settled)
        await self.learn_carriers()
        still = [name for name in LINE if await self.blind(name)]
        carriers = sorted({self.carriers[e.tx_hash] for e in landed if e.tx_hash in self.carriers})
        log(
            f"{' and '.join(carriers) or 'nobody'} broadcast them: the three channels settled "
            f"on chain while {', '.join(still) or 'none of A-E'} "
            f"{'is' if len(still) == 1 else 'are'} blind",
            where="chain",
            tone="gateway",
        )
        for entry in landed:
            log.detail(entry.line(self.carriers))

    async def handed_record(self) -> None:
        """What each blind node handed to gateways, read from its events, before the chain
        returns; the picture marks what the gateway carried."""
        log = self.log
        self.carried = [entry for name in LINE for entry in await self.handoffs(name)]
        self.carried.sort(key=lambda entry: entry.handed_at)
        done = [entry for entry in self.carried if entry.status in ("confirmed", "unnecessary")]
        by = sorted({entry.gateway for entry in done if entry.gateway})
        count = (
            f"all {len(done)}"
            if len(done) == len(self.carried)
            else f"{len(done)} of the {len(self.carried)}"
        )
        log(
            f"while A-E were blind, {' and '.join(by) or 'no gateway'} carried {count} "
            f"submissions they handed to gateways: {possessive(done) or 'none'} (from their "
            "gateway_handed / gateway_done events)",
            where=GATEWAY,
            tone="gateway",
        )
        for entry in self.carried:
            log.detail(entry.text(self.log))
            if entry.status in ("confirmed", "unnecessary"):
                label = WHAT.get(entry.what, entry.what).replace("cooperative", "co-op")
                self.picture.carried.append(demo_picture.Carried(entry.origin, label))
        due = []
        for name in LINE:
            for item in await self.api[name].deadlines():
                if item["what"] in ("register_secret", "unlock"):
                    due.append(f"{name}: {WHAT[item['what']]}")
        self.due = due + [
            f"{entry.origin}: {WHAT[entry.what]} handed"
            for entry in self.carried
            if entry.what in ("register_secret", "unlock")
        ]
        for name in NAMES:
            log.detail(await self.status_line(name))

    async def connectivity_returns(self) -> None:
        log, chain = self.log, self.chain
        marks = {name: await self.last_seq(name) for name in LINE}
        for name in LINE:
            self.isle.restore_chain(LINE.index(name))
        log(
            f"connectivity returns for A, B, C, D, E (their chain was cut for "
            f"{time.monotonic() - self.cut_at:.0f} s)",
            where="uplinks",
            tone="sees",
        )
        for name in LINE:
            await self.until(functools.partial(self.synced, name))
        # B sees C's close now: its core decides on its own update, which the schedule
        # sends or finds unnecessary; every schedule empties.
        await self.until(lambda: self.is_closed("B", "C"))
        for name in LINE:
            await self.until(functools.partial(self.nothing_pending, name))
        answers = {}
        for name, task in self.closing.items():
            try:
                answer = await asyncio.wait_for(task, WAIT)
                answers[name] = f"{answer['status']}"
                if answer.get("settle_deadline"):
                    answers[name] += f", settle deadline {answer['settle_deadline']}"
            except ApiClientError as exc:
                answers[name] = f"{exc.code}: {exc.message}"
        self.closing.clear()
        for entry in self.new_logs():
            log(entry.line(self.carriers))

        left: list[str] = []
        for name in LINE:
            for event in await self.events(name, "submission_unnecessary", since=marks[name]):
                what = WHAT.get(event["data"]["what"], event["data"]["what"])
                reason = event["data"]["reason"]
                log(f"{name}'s own {what}: not sent ({reason})")
                left.append(f"{name}'s {what.split(' of ')[0]}, found unnecessary")
            for event in await self.events(name, "transaction_failed", since=marks[name]):
                log(f"{name}'s {event['data']['what']} failed: {event['data']['reason']}")
                left.append(f"{name}'s {event['data']['what']} failed")

        # Each transaction a gateway got mined spent one nonce of its signer: any more
        # means the node sent one itself on return.
        carried = [e for e in self.carried if e.kind == "raw_transaction" and e.mined]
        counted = {name: sum(e.origin == name for e in carried) for name in LINE}
        moved = {name: chain.nonce(self.addresses[name]) - self.nonces[name] for name in LINE}
        own = {name: moved[name] - counted[name] for name in LINE if moved[name] != counted[name]}
        log.detail(
            "transactions mined from each island account since the cut: "
            + ", ".join(f"{name} {moved[name]}" for name in LINE)
            + f" (carried by a gateway: {sum(counted.values())})"
        )
        if own:
            left.append(
                "transactions the island sent itself: "
                + ", ".join(f"{name} {count}" for name, count in own.items())
            )
        if carried:
            by = " and ".join(sorted({e.gateway for e in carried if e.gateway}))
            again = "" if own else ": no island account sent another"
            left.append(
                f"the {len(carried)} transactions {by} carried ({possessive(carried)}), found "
                f"on chain{again}"
            )
        secrets = self.due + [
            f"{e.name} {e.text}"
            for e in self.landed
            if e.name in ("SecretRevealed", "ChannelUnlocked")
        ]
        if secrets:
            left.append("secret registrations and unlocks: " + "; ".join(secrets))
        else:
            left.append("no secret registration or unlock was due")
        log(f"what was left on return: {'; '.join(left)}", where="chain", tone="sees")
        for name, said in answers.items():
            how = "close" if name == "C" else "cooperative settle"
            log.detail(f"{name}'s API call ({how}) answered once it saw the chain: {said}")

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
        for entry in self.new_logs():
            where = "B-C" if entry.name == "ChannelSettled" else None
            log(entry.line(self.carriers), where=where)
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
        limit = item["chain_deadline"]
        when = (
            "no deadline"
            if item["deadline"] is None
            else f"act by {clock(item['deadline'])}, chain limit {limit}"
        )
        return f"{name} /deadlines: {item['what']} ({partner}), {when}, covered by {who}{pending}"

    async def all_events(self, name: str, since: int = 0) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            page = await self.api[name].events(since=since, limit=1000)
            if not page["events"]:
                return found
            found += page["events"]
            since = page["next_since"]

    async def events(self, name: str, kind: str, since: int = 0) -> list[dict[str, Any]]:
        return [event for event in await self.all_events(name, since) if event["kind"] == kind]

    async def last_seq(self, name: str) -> int:
        return max((int(event["seq"]) for event in await self.all_events(name)), default=0)

    async def has_event(self, name: str, kind: str) -> bool:
        return bool(await self.events(name, kind))

    async def gateway_event(self, name: str, kind: str, what: str) -> dict[str, Any]:
        """``name``'s first ``kind`` event (``gateway_handed``, ``gateway_done``) about a
        submission of kind ``what``, once there is one."""
        found: dict[str, Any] = {}

        async def seen() -> bool:
            nonlocal found
            for event in await self.events(name, kind):
                if event["data"].get("what") == what:
                    found = event
                    return True
            return False

        await self.until(seen)
        return found

    def handed_text(self, event: dict[str, Any]) -> str:
        data = event["data"]
        partner = f" with {self.chain.name(data['partner'])}" if data.get("partner") else ""
        tx = handed_tx(data)
        signed = f", tx {short(tx)}" if tx else ""
        what = WHAT.get(data["what"], data["what"])
        return f"gateway_handed ({data['kind']}: {what}{partner}{signed})"

    def done_text(self, event: dict[str, Any]) -> str:
        data = event["data"]
        return (
            f"gateway_done from {self.chain.name(data['gateway'])}: {data['status']} "
            f"({data['text']}), tx {short(data['tx_hash'])}"
        )

    async def handoffs(self, name: str) -> list[Handoff]:
        """What ``name`` handed to gateways, from its ``gateway_*`` events."""
        found: dict[str, Handoff] = {}
        for event in await self.all_events(name):
            kind, data = event["kind"], event["data"]
            if not kind.startswith("gateway_") or "request_id" not in data:
                continue
            entry = found.get(data["request_id"])
            if entry is None:
                partner = self.chain.name(data["partner"]) if data.get("partner") else None
                entry = found[data["request_id"]] = Handoff(
                    name, data["kind"], data["what"], partner, handed_tx(data), event["time"]
                )
            gateway = self.chain.name(data["gateway"]) if data.get("gateway") else None
            match kind:
                case "gateway_handed" if gateway is not None:
                    entry.gateways.append(gateway)
                case "gateway_refused":
                    entry.refusals.append(f"{gateway}: {data.get('reason')}")
                case "gateway_done" | "gateway_failed":
                    entry.status = data.get("status") or "failed"
                    entry.gateway, entry.done_at = gateway, event["time"]
                    if int(data.get("tx_hash") or "0x0", 16):  # mined: its hash
                        entry.tx_hash, entry.mined = data["tx_hash"], True
        return list(found.values())

    async def learn_carriers(self) -> None:
        """Which transactions the watcher broadcast (its ``watch_submitted`` events)."""
        for event in await self.events(GATEWAY, "watch_submitted"):
            if event["data"].get("action") == "broadcast":
                self.carriers[event["data"]["tx_hash"].lower()] = GATEWAY

    def new_logs(self) -> list[Landed]:
        found = self.chain.new_logs()
        self.landed += found
        return found

    async def seeing(self, name: str) -> str:
        status = await self.api[name].status()
        if status["chain_reachable"]:
            return "seeing the chain"
        return f"still blind (chain_reachable {status['chain_reachable']})"

    async def is_closed(self, name: str, partner: str) -> bool:
        channel = await self.api[name].channel(self.chain.token, self.addresses[partner])
        return bool(channel["status"] != "open")

    async def nothing_pending(self, name: str) -> bool:
        return not any(item["pending"] for item in await self.api[name].deadlines())

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
            wrap(
                f"contracts deployed (token {chain.token}, token network {chain.network})",
                f"anvil {node.url}: ",
                "  ",
            )
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
