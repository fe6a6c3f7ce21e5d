"""The payment part of `make demo`: five node processes pay across a line, one is killed.

Belongs here: the choreography only, driven through each node's HTTP API as a user would:
fund five accounts on the demo's anvil, start five `smartmesh node` processes (A..E, mesh
links along the line), open and fund the channels A-B-C-D-E, pay A -> E and E -> A
across three mediators that charge fees, kill C with `kill -9` in the middle of a payment
(a failpoint stops it right after it stored the incoming lock, before it forwarded it)
and restart it, then close everything (cooperatively, and one channel unilaterally with
the settle window skipped on anvil), and check that every account's final on-chain
balance is exactly what the off-chain payments imply. Prints a timeline as it goes.

Does not belong here: anything a node does (the node), starting anvil and deploying
(scripts.demo).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from web3 import Web3

from offchain.api.client import ApiClient
from offchain.chain.artifacts import load_artifact
from offchain.chain.events import ContractKind, topic0_of
from scripts.anvil import DEV_PRIVATE_KEYS, rpc
from scripts.deployer import Web3Sender
from scripts.nodes import NodeProcess

ONE = 10**18
NAMES = "ABCDE"
FEES = {"fee_flat": ONE // 100, "fee_proportional_ppm": 1_000}  # 0.01 TKN + 0.1 %
DEPOSIT = 100 * ONE
FUNDS = 1_000 * ONE


class Timeline:
    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self, text: str) -> None:
        print(f"[{time.monotonic() - self.start:7.2f} s] {text}", flush=True)


def tkn(amount: int | str) -> str:
    return f"{int(amount) / ONE:,.4f} TKN"


class Demo:
    def __init__(self, anvil_url: str, manifest: Path, work: Path, token: str) -> None:
        self.url = anvil_url
        self.manifest = manifest
        self.work = work
        self.token = token
        self.w3 = Web3(Web3.HTTPProvider(anvil_url))
        self.manifest_data = json.loads(manifest.read_text())
        self.log = Timeline()
        keys = [bytes.fromhex(k[2:]) for k in DEV_PRIVATE_KEYS[:5]]
        self.nodes: list[NodeProcess] = []
        previous: list[int] = []
        for index, key in enumerate(keys):
            settings = {"protocol": dict(FEES)} if 0 < index < 4 else {}
            node = NodeProcess(
                NAMES[index], key, work / NAMES[index], anvil_url, manifest,
                peers=previous, settings=settings,
            )  # fmt: skip
            previous = [node.tcp_port]
            self.nodes.append(node)
        self.keys = keys
        self.clients: list[ApiClient] = []

    # -- chain helpers ----------------------------------------------------------------------

    def _token(self) -> Any:
        return self.w3.eth.contract(
            address=Web3.to_checksum_address(self.token), abi=load_artifact("test_token").abi_list()
        )

    def balance_of(self, address: str) -> int:
        return int(self._token().functions.balanceOf(Web3.to_checksum_address(address)).call())

    def fund(self) -> None:
        for key in self.keys:
            sender = Web3Sender(self.w3, "0x" + key.hex())
            sender.send(self._token().functions.mint(sender.address, FUNDS))

    # -- the story ------------------------------------------------------------------------------

    async def run(self) -> bool:
        log = self.log
        self.fund()
        log(f"minted {tkn(FUNDS)} test tokens to each of five accounts")
        for node in self.nodes:
            node.start()
            log(f"node {node.name} up: {node.address} (API {node.api}, pid {node.process.pid})")  # type: ignore[union-attr]
        self.clients = [await ApiClient(n.api).__aenter__() for n in self.nodes]
        try:
            return await self._story()
        finally:
            for client in self.clients:
                await client.close()
            for node in self.nodes:
                node.stop()

    async def _story(self) -> bool:
        log, c, n = self.log, self.clients, self.nodes
        before = {node.name: self.balance_of(node.address) for node in n}
        for i in range(4):
            await c[i].open_channel(self.token, n[i + 1].address, DEPOSIT)
            await self._until(lambda i=i: self._has_channel(i + 1, i))
            await c[i + 1].deposit(self.token, n[i].address, DEPOSIT)
            log(f"channel {n[i].name}-{n[i + 1].name} open, {tkn(DEPOSIT)} deposited by each")
        await asyncio.sleep(1.0)  # capacity announcements reach every node

        paid = await self._pay(0, 4, 10 * ONE)
        log(f"A -> E {tkn(10 * ONE)}: {paid['status']}, fee {tkn(paid['fee'])} (B, C, D)")
        paid = await self._pay(4, 0, 4 * ONE)
        why = f" ({paid['reason']})" if paid["reason"] else ""
        log(f"E -> A {tkn(4 * ONE)}: {paid['status']}{why}, fee {tkn(paid['fee'])}")

        # kill -9 in the middle of a payment: C dies right after it stores the lock.
        n[2].stop()
        n[2].start(env={"SMARTMESH_FAILPOINT": "after_commit:1"})
        await c[2].close()
        c[2] = await ApiClient(n[2].api).__aenter__()
        log("C restarted with a failpoint: it will die (like kill -9) at its next commit")
        started = await c[0].pay(self.token, n[4].address, 5 * ONE)
        code = n[2].wait_exit(30)
        log(f"A -> E {tkn(5 * ONE)} started; C died mid-payment (exit code {code})")
        n[2].start()
        await c[2].close()
        c[2] = await ApiClient(n[2].api).__aenter__()
        log("C restarted from its database: replays its log, resends what was unfinished")
        done = await c[0].wait_payment(started["payment_id"], 60)
        log(f"the payment in flight: {done['status']}, fee {tkn(done['fee'])}")

        try:
            await self._until(self._locks_drained, 60)
        except TimeoutError:
            for client, node in zip(self.clients, self.nodes, strict=True):
                print(node.name, await client.pending())
            raise
        views = {}
        for i in range(4):
            ch = await c[i].channel(self.token, n[i + 1].address)
            views[i] = ch
            log(f"channel {n[i].name}-{n[i + 1].name}: {n[i].name} {tkn(ch['our_balance'])}, "
                f"{n[i + 1].name} {tkn(ch['partner_balance'])}")  # fmt: skip
        expected = dict.fromkeys(before, 0)
        for i, ch in views.items():
            expected[n[i].name] += int(ch["our_balance"]) - DEPOSIT
            expected[n[i + 1].name] += int(ch["partner_balance"]) - DEPOSIT

        for i in range(3):
            await c[i].close_channel(self.token, n[i + 1].address, cooperative=True)
            log(f"channel {n[i].name}-{n[i + 1].name} settled cooperatively (one transaction)")
        await c[3].close_channel(self.token, n[4].address, cooperative=False)
        log("channel D-E closed unilaterally by D (with E's latest proof)")
        await self._until(self._updated, 60)
        log("E's node saw the close and submitted D's latest proof (update, on chain)")
        rpc(self.url, "evm_increaseTime", [3_700])
        rpc(self.url, "evm_mine", [])
        log("anvil: one hour passes (the settle window)")
        await self._until(lambda: self._settled(3), 60)
        log("channel D-E settled by the nodes once the window was over")

        ok = True
        print("\nfinal on-chain balances (TKN):")
        print(f"  {'node':<6}{'before':>16}{'after':>16}{'change':>14}{'expected':>14}")
        for node in n:
            after = self.balance_of(node.address)
            change = after - before[node.name]
            good = change == expected[node.name]
            ok &= good
            print(f"  {node.name:<6}{before[node.name] / ONE:>16,.4f}{after / ONE:>16,.4f}"
                  f"{change / ONE:>+14.4f}{expected[node.name] / ONE:>+14.4f}"
                  f"  {'ok' if good else 'MISMATCH'}")  # fmt: skip
        total = sum(expected.values())
        print(f"  tokens created or lost: {total} (must be 0)")
        return ok and total == 0

    # -- waiting --------------------------------------------------------------------------------

    async def _pay(self, payer: int, payee: int, amount: int) -> dict[str, Any]:
        for _ in range(20):
            result = await self.clients[payer].pay(
                self.token, self.nodes[payee].address, amount, wait=60
            )
            if result["status"] != "failed" or result["reason"] not in ("capacity", "no_route"):
                return result
            await asyncio.sleep(0.5)  # the graph is still learning the capacities
        return result

    async def _has_channel(self, who: int, partner: int) -> bool:
        channels = await self.clients[who].channels(self.token)
        return any(ch["partner"].lower() == self.nodes[partner].address for ch in channels)

    async def _updated(self) -> bool:
        """Whether the non-closing side's proof is on chain (a NonClosingBalanceProofUpdated
        log of the token network)."""
        network = self.manifest_data["token_networks"][self.token]
        topic = topic0_of(ContractKind.TOKEN_NETWORK, "NonClosingBalanceProofUpdated")
        logs = self.w3.eth.get_logs(
            {"address": Web3.to_checksum_address(network), "topics": [topic], "fromBlock": 0}
        )
        return bool(logs)

    async def _locks_drained(self) -> bool:
        """No lock pending but returned pairs (a lock and its mirror, which cancel out)."""
        for client in self.clients:
            pending = await client.pending()
            hashes = [p["secrethash"] + p["partner"] for p in pending]
            if any(hashes.count(h) != 2 for h in hashes):
                return False
        return True

    async def _settled(self, i: int) -> bool:
        ch = await self.clients[i].channel(self.token, self.nodes[i + 1].address)
        return bool(ch["status"] == "settled")

    async def _until(self, check: Any, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not await check():
            if time.monotonic() > deadline:
                raise TimeoutError("the demo waited too long")
            await asyncio.sleep(0.1)


def run(anvil_url: str, manifest: Path, work: Path, token: str) -> bool:
    return asyncio.run(Demo(anvil_url, manifest, work, token).run())
