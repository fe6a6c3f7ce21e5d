"""Gas of every token network operation, measured on a real anvil with Raiden's scenario.

Belongs here: compiling the contracts from source (the vyper Python API), deploying them
on an anvil node through web3 with locally signed transactions, replaying the scenario of
raiden-contracts' own gas test (described in REFERENCE.md section 2) and reading each
measured transaction's ``gasUsed`` from its receipt; Raiden's figures and our targets;
and ``breakdown``, which replays a transaction with anvil's default struct logger and
says where its gas went. Nothing is hard-coded but the inputs.

The scenario, step by step (every amount as in Raiden's test, so the two are comparable):

* deploy the secret registry, the token network implementation and the registry, then
  create the token network of a fresh test token (and, for comparison only, a network
  made from an ERC-5202 blueprint by ``bench/blueprint_factory.vy``);
* open A-B, then C-D: ``open_channel`` is the second channel of the network;
* A deposits 20, then B deposits 10: ``set_total_deposit`` is B's, the first deposit of a
  participant into a network that already holds tokens. As Raiden's helpers do, every
  depositor holds exactly its deposit and approves exactly that amount;
* A withdraws 5 of its 20 (both signatures): ``set_total_withdraw``;
* E opens E-F depositing 20: ``open_channel_with_deposit``;
* G-H, G deposits 20, both settle cooperatively for 10 each: ``cooperative_settle``;
* the secrets of the locks that will be unlocked are registered before they expire; the
  last registration (a fresh secret) is ``register_secret``;
* A closes with B's proof (nonce 3, transferred 5, 1 pending lock of 3): ``close_channel``;
  B, the non-closer, submits A's proof itself (nonce 5, transferred 10, 6 pending locks of
  1, 1, 2, 3 with registered secrets and 2, 1 expired): ``update_non_closing_balance_proof``;
* after the settle window (``evm_increaseTime`` + ``evm_mine``) anyone settles A-B with locks
  pending both ways: ``settle_channel``; then ``unlock_1`` (B's one lock, to A) and
  ``unlock_6`` (A's six locks: four to B, two back to A).

Extras, informational: a third party closes P-Q with P's ``Close`` signature, and a
delegate updates for Q with Q's ``Delegation`` naming a reward; the deployment of each
contract; and the blueprint alternative to clones.

Every value that reaches calldata is a constant (expirations included), and accounts come
from fixed keys, so the same code gives the same gas on every run: the regression test
(tests/integration/test_gas.py) compares against gas.json exactly.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import vyper
from eth_account import Account
from web3 import Web3
from web3.contract import Contract

from offchain.protocol import eip712
from offchain.protocol.crypto import keccak256, sha256
from offchain.protocol.locks import Lock, balance_hash, encode_locks, locksroot
from scripts.anvil import DEV_PRIVATE_KEYS, rpc

ROOT: Final = Path(__file__).resolve().parents[1]
CONTRACTS: Final = ROOT / "contracts"
BLUEPRINT_FACTORY: Final = Path(__file__).resolve().with_name("blueprint_factory.vy")
GAS_JSON: Final = ROOT / "gas.json"

# Raiden 0.50.2's shipped bytecode, measured on anvil 1.7.1 (default hardfork) with the
# scenario of raiden-contracts' gas test: REFERENCE.md, section 2, the gas table.
RAIDEN_GAS: Final[dict[str, int]] = {
    "gas.create_token_network": 3_531_520,
    "gas.open_channel": 86_430,
    "gas.open_channel_with_deposit": 142_692,
    "gas.set_total_deposit": 76_406,
    "gas.set_total_withdraw": 115_057,
    "gas.cooperative_settle": 167_439,
    "gas.close_channel": 137_712,
    "gas.update_non_closing_balance_proof": 90_516,
    "gas.settle_channel": 173_784,
    "gas.unlock_1": 59_037,
    "gas.unlock_6": 83_852,
    "gas.register_secret": 46_193,
}
RAIDEN_EXTRAS: Final[dict[str, int]] = {"gas.deploy_registry": 4_409_192}
"""Raiden's figures (same table) for extras, shown without a target."""

OPERATIONS: Final[tuple[str, ...]] = tuple(RAIDEN_GAS)
"""The twelve operations compared with Raiden, in the order of REFERENCE.md's table."""

# Same table, last column: 0.75 x Raiden rounded down, except creating a token network
# (under 400,000) and registering a secret, held at Raiden's figure because 0.75 x would be
# below the EVM floor of the operation (21,000 base + 22,100 for a new storage slot).
TARGETS: Final[dict[str, int]] = {
    **{name: gas * 3 // 4 for name, gas in RAIDEN_GAS.items()},
    "gas.create_token_network": 400_000,
    "gas.register_secret": 46_193,
}

EXTRAS: Final[tuple[str, ...]] = (
    "gas.update_non_closing_balance_proof_delegated",
    "gas.close_channel_third_party",
    "gas.deploy_secret_registry",
    "gas.deploy_token_network_implementation",
    "gas.deploy_registry",
    "gas.create_token_network_blueprint",
)
METRICS: Final[tuple[str, ...]] = OPERATIONS + EXTRAS

# Deployment parameters (seconds and token units).
SETTLE_FLOOR: Final = 60
SETTLE_CEILING: Final = 365 * 24 * 3600
SETTLE_WINDOW_MIN: Final = 600
SETTLE_WINDOW_MAX: Final = 30 * 24 * 3600
SETTLE_WINDOW: Final = 600
PARTICIPANT_LIMIT: Final = 10**27
NETWORK_LIMIT: Final = 10**30
# Constant timestamps, so that calldata and signatures (hence gas) never depend on the
# clock: FAR_FUTURE (year 2096) for signature and live-lock expirations, LONG_AGO (2001)
# for the locks that expired unrevealed.
FAR_FUTURE: Final = 4_000_000_000
LONG_AGO: Final = 1_000_000_000
ADDITIONAL_HASH: Final = keccak256(b"smartmesh gas bench: the message that carried the proof")
ZERO_ADDRESS: Final = "0x" + "00" * 20
ETHER: Final = 10**18

_SELF_LOCK = re.compile(r"(@deploy\s+def __init__\([^)]*\):.*?)self\._initialized = True", re.S)


# ---------------------------------------------------------------------------------------
# Compilation


@dataclass(frozen=True)
class Artifact:
    """What deployment needs: the ABI and the deploy bytecode (hex, 0x-prefixed)."""

    abi: list[dict[str, Any]]
    bytecode: str


def compile_source(source: str, path: Path, blueprint: bool = False) -> Artifact:
    """Compile vyper ``source`` as if it were the file ``path`` (relative imports resolve).

    With ``blueprint`` the bytecode is that of an ERC-5202 blueprint of the contract.
    """
    kind = "blueprint_bytecode" if blueprint else "bytecode"
    out = vyper.compile_code(
        source, contract_path=path.name, resolved_path=path, output_formats=["abi", kind]
    )
    return Artifact(abi=out["abi"], bytecode=out[kind])


@functools.cache
def compile_contract(path: Path) -> Artifact:
    """Compile the vyper file at ``path`` (cached per process)."""
    return compile_source(path.read_text(), path)


@functools.cache
def compile_initializable_blueprint() -> Artifact:
    """A blueprint of the token network whose constructor does not lock it.

    The shipped implementation sets ``_initialized`` in its constructor so that nobody can
    ever initialize the implementation itself; a copy made from a blueprint runs that
    constructor too, and could then never be initialized. The blueprint alternative needs
    copies that ``initialize`` can set up, so this variant drops that one statement:
    everything else (code size, initialize's work) is the shipped contract.
    """
    path = CONTRACTS / "token_network.vy"
    source, count = _SELF_LOCK.subn(r"\1pass", path.read_text())
    if count != 1:
        raise RuntimeError("token_network.vy: cannot find the constructor's self-lock to drop")
    artifact = compile_source(source, path, blueprint=True)
    # A blueprint's deployment runs no constructor: its arguments come with each copy.
    abi = [entry for entry in artifact.abi if entry.get("type") != "constructor"]
    return Artifact(abi=abi, bytecode=artifact.bytecode)


# ---------------------------------------------------------------------------------------
# The chain


@dataclass(frozen=True)
class Party:
    """An account of the scenario: its key and address."""

    name: str
    key: bytes
    address: str

    @property
    def raw(self) -> bytes:
        return bytes.fromhex(self.address[2:])


@dataclass(frozen=True)
class Sent:
    """A mined, successful transaction."""

    tx_hash: str
    gas_used: int
    contract_address: str | None


class Chain:
    """web3 over one anvil node: fixed-key accounts, locally signed transactions."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 120}))
        self.chain_id = int(self.w3.eth.chain_id)
        self._nonces: dict[str, int] = {}

    def rpc(self, method: str, params: list[object] | None = None) -> Any:
        return rpc(self.url, method, params, timeout=120)

    def party(self, name: str) -> Party:
        """The account called ``name``: a key derived from the name, given 1,000 ether."""
        key = keccak256(b"smartmesh gas bench account " + name.encode())
        address = Account.from_key(key).address
        self.rpc("anvil_setBalance", [address, hex(1000 * ETHER)])
        return Party(name, key, address)

    def dev_party(self, index: int) -> Party:
        """One of anvil's funded development accounts."""
        key = bytes.fromhex(DEV_PRIVATE_KEYS[index][2:])
        return Party(f"dev{index}", key, Account.from_key(key).address)

    def transact(self, sender: Party, build: Any) -> Sent:
        """Send ``build`` (a contract function call or constructor) from ``sender``, signed
        locally, and wait for its receipt; raise if it reverted."""
        nonce = self._nonces.get(sender.address)
        if nonce is None:
            nonce = self.w3.eth.get_transaction_count(sender.address)  # type: ignore[arg-type]
        tx = build.build_transaction(
            {
                "from": sender.address,
                "nonce": nonce,
                "chainId": self.chain_id,
                "gasPrice": self.w3.eth.gas_price,
            }
        )
        signed = Account.sign_transaction(tx, sender.key)
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60, poll_latency=0.02)
        self._nonces[sender.address] = nonce + 1
        if receipt["status"] != 1:
            raise RuntimeError(f"transaction {tx_hash.hex()} by {sender.name} reverted")
        address = receipt.get("contractAddress")
        return Sent("0x" + bytes(tx_hash).hex(), int(receipt["gasUsed"]), address)

    def deploy(self, sender: Party, artifact: Artifact, *args: Any) -> tuple[Contract, Sent]:
        """Deploy ``artifact`` with constructor ``args``; return the contract and the tx."""
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        sent = self.transact(sender, factory.constructor(*args))
        assert sent.contract_address is not None
        return self.w3.eth.contract(
            address=Web3.to_checksum_address(sent.contract_address), abi=artifact.abi
        ), sent

    def advance_time(self, seconds: int) -> None:
        """Move the clock ``seconds`` forward and mine a block there."""
        self.rpc("evm_increaseTime", [seconds])
        self.rpc("evm_mine")


# ---------------------------------------------------------------------------------------
# Balance proofs


@dataclass(frozen=True)
class Proof:
    """A balance proof as its sender signed it, with the locks it commits to."""

    nonce: int
    transferred: int
    locks: tuple[Lock, ...]
    signature: bytes

    @property
    def locked(self) -> int:
        return sum(lock.amount for lock in self.locks)

    @property
    def locksroot(self) -> bytes:
        return locksroot(self.locks)

    @property
    def balance_hash(self) -> bytes:
        return balance_hash(self.transferred, self.locked, self.locksroot)


def secret(label: str) -> bytes:
    """A deterministic 32-byte secret."""
    return keccak256(b"smartmesh gas bench secret " + label.encode())


def make_locks(label: str, live: Sequence[int], expired: Sequence[int]) -> tuple[Lock, ...]:
    """Locks of the given amounts: ``live`` ones first (their secrets are ``secret(label-i)``,
    registered in time), then ``expired`` ones whose secrets are never revealed."""
    locks = [
        Lock(expiration=FAR_FUTURE, amount=amount, secrethash=sha256(secret(f"{label}-{i}")))
        for i, amount in enumerate(live)
    ]
    locks += [
        Lock(expiration=LONG_AGO, amount=amount, secrethash=sha256(secret(f"{label}-x{i}")))
        for i, amount in enumerate(expired)
    ]
    return tuple(locks)


# ---------------------------------------------------------------------------------------
# The scenario


@dataclass
class GasRun:
    """The figures of one run: gas per metric and the transaction each was read from."""

    gas: dict[str, int] = field(default_factory=dict)
    tx_hashes: dict[str, str] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)

    def record(self, name: str, sent: Sent) -> None:
        self.gas[name] = sent.gas_used
        self.tx_hashes[name] = sent.tx_hash


class _Scenario:
    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.run = GasRun()
        self.deployer = chain.dev_party(0)

    # --- deployment ----------------------------------------------------------------

    def deploy(self) -> None:
        chain, run, deployer = self.chain, self.run, self.deployer
        self.secret_registry, sent = chain.deploy(
            deployer, compile_contract(CONTRACTS / "secret_registry.vy")
        )
        run.record("gas.deploy_secret_registry", sent)
        implementation, sent = chain.deploy(
            deployer, compile_contract(CONTRACTS / "token_network.vy"), self.secret_registry.address
        )
        run.record("gas.deploy_token_network_implementation", sent)
        self.registry, sent = chain.deploy(
            deployer,
            compile_contract(CONTRACTS / "token_network_registry.vy"),
            self.secret_registry.address,
            implementation.address,
            SETTLE_FLOOR,
            SETTLE_CEILING,
        )
        run.record("gas.deploy_registry", sent)
        self.token, _ = chain.deploy(
            deployer, compile_contract(CONTRACTS / "test" / "test_token.vy"), "Gas Token", "GAS", 18
        )
        run.record(
            "gas.create_token_network",
            chain.transact(
                deployer, self.registry.functions.create_token_network(*self._network_args())
            ),
        )
        address = self.registry.functions.token_to_token_network(self.token.address).call()
        self.network = chain.w3.eth.contract(
            address=address, abi=compile_contract(CONTRACTS / "token_network.vy").abi
        )
        self.domain = eip712.Domain(chain.chain_id, bytes.fromhex(address[2:]))
        run.addresses.update(
            secret_registry=self.secret_registry.address,
            implementation=implementation.address,
            registry=self.registry.address,
            token=self.token.address,
            token_network=address,
        )

    def deploy_blueprint_alternative(self) -> None:
        chain, deployer = self.chain, self.deployer
        blueprint, _ = chain.deploy(deployer, compile_initializable_blueprint())
        factory, _ = chain.deploy(
            deployer,
            compile_contract(BLUEPRINT_FACTORY),
            blueprint.address,
            self.secret_registry.address,
        )
        self.run.record(
            "gas.create_token_network_blueprint",
            chain.transact(deployer, factory.functions.create_token_network(*self._network_args())),
        )
        copy = factory.functions.token_to_token_network(self.token.address).call()
        abi = compile_contract(CONTRACTS / "token_network.vy").abi
        # The copy must be a working, initialized token network, not an empty shell.
        assert chain.w3.eth.contract(address=copy, abi=abi).functions.token().call() == (
            self.token.address
        )

    def _network_args(self) -> tuple[Any, ...]:
        return (
            self.token.address,
            SETTLE_WINDOW_MIN,
            SETTLE_WINDOW_MAX,
            PARTICIPANT_LIMIT,
            NETWORK_LIMIT,
        )

    # --- helpers -------------------------------------------------------------------

    @property
    def fn(self) -> Any:
        return self.network.functions

    def fund(self, party: Party, amount: int) -> None:
        """Give ``party`` exactly ``amount`` tokens and approve exactly that (as Raiden's
        ``assign_tokens`` does before every deposit)."""
        self.chain.transact(self.deployer, self.token.functions.mint(party.address, amount))
        self.chain.transact(party, self.token.functions.approve(self.network.address, amount))

    def open(self, a: Party, b: Party) -> Sent:
        return self.chain.transact(a, self.fn.open_channel(b.address, SETTLE_WINDOW))

    def deposit(self, participant: Party, partner: Party, total: int) -> Sent:
        self.fund(participant, total)
        call = self.fn.set_total_deposit(participant.address, partner.address, total)
        return self.chain.transact(participant, call)

    def channel_id(self, a: Party, b: Party) -> bytes:
        return bytes(self.fn.channel_id(a.address, b.address).call())

    def generation(self, a: Party, b: Party) -> int:
        return int(self.fn.get_channel(a.address, b.address).call()[4])

    def sign(self, signer: Party, struct: eip712.SignedStruct) -> bytes:
        return bytes(eip712.sign(signer.key, self.domain, struct))

    def proof(
        self, signer: Party, partner: Party, nonce: int, transferred: int, locks: tuple[Lock, ...]
    ) -> Proof:
        unsigned = Proof(nonce, transferred, locks, b"")
        struct = eip712.BalanceProof(
            channel_id=self.channel_id(signer, partner),
            generation=self.generation(signer, partner),
            nonce=nonce,
            balance_hash=unsigned.balance_hash,
            additional_hash=ADDITIONAL_HASH,
        )
        return Proof(nonce, transferred, locks, self.sign(signer, struct))

    def register_secrets(self, sender: Party, label: str, count: int) -> Sent:
        sent: Sent | None = None
        for i in range(count):
            call = self.secret_registry.functions.register_secret(secret(f"{label}-{i}"))
            sent = self.chain.transact(sender, call)
        assert sent is not None
        return sent

    def close(self, sender: Party, closer: Party, partner: Party, proof: Proof) -> Sent:
        closing_signature = b""
        if sender != closer:
            closing_signature = self.sign(
                closer,
                eip712.Close(
                    channel_id=self.channel_id(closer, partner),
                    generation=self.generation(closer, partner),
                    nonce=proof.nonce,
                    balance_hash=proof.balance_hash,
                    additional_hash=ADDITIONAL_HASH,
                ),
            )
        call = self.fn.close_channel(
            closer.address,
            partner.address,
            proof.nonce,
            proof.balance_hash,
            ADDITIONAL_HASH,
            proof.signature,
            closing_signature,
        )
        return self.chain.transact(sender, call)

    def update(
        self, sender: Party, closer: Party, non_closer: Party, proof: Proof, reward: int = 0
    ) -> Sent:
        delegate, delegation_signature = ZERO_ADDRESS, b""
        if sender != non_closer:
            delegate = sender.address
            delegation_signature = self.sign(
                non_closer,
                eip712.Delegation(
                    channel_id=self.channel_id(closer, non_closer),
                    generation=self.generation(closer, non_closer),
                    nonce=proof.nonce,
                    balance_hash=proof.balance_hash,
                    delegate=sender.raw,
                    reward=reward,
                ),
            )
        call = self.fn.update_non_closing_balance_proof(
            closer.address,
            non_closer.address,
            proof.nonce,
            proof.balance_hash,
            ADDITIONAL_HASH,
            proof.signature,
            delegate,
            reward,
            delegation_signature,
        )
        return self.chain.transact(sender, call)

    def balance(self, party: Party) -> int:
        return int(self.token.functions.balanceOf(party.address).call())

    # --- the operations ------------------------------------------------------------

    def channel_cycle(self) -> None:
        chain, run, fn = self.chain, self.run, self.fn
        a, b, c, d = (chain.party(name) for name in "ABCD")

        self.open(a, b)
        run.record("gas.open_channel", self.open(c, d))

        self.deposit(a, b, 20)
        run.record("gas.set_total_deposit", self.deposit(b, a, 10))

        generation = self.generation(a, b)
        struct = eip712.Withdraw(
            channel_id=self.channel_id(a, b),
            generation=generation,
            participant=a.raw,
            total_withdraw=5,
            expiration=FAR_FUTURE,
        )
        call = fn.set_total_withdraw(
            a.address, b.address, 5, FAR_FUTURE, self.sign(a, struct), self.sign(b, struct)
        )
        run.record("gas.set_total_withdraw", chain.transact(a, call))
        assert self.balance(a) == 5

        # A's proof: 6 locks (1, 1, 2, 3 revealed in time, 2, 1 expired); B's: 1 lock of 3.
        locks_a = make_locks("A", [1, 1, 2, 3], [2, 1])
        locks_b = make_locks("B", [3], [])
        proof_a = self.proof(a, b, nonce=5, transferred=10, locks=locks_a)
        proof_b = self.proof(b, a, nonce=3, transferred=5, locks=locks_b)

        self.register_secrets(a, "A", 4)
        run.record("gas.register_secret", self.register_secrets(a, "B", 1))

        run.record("gas.close_channel", self.close(a, a, b, proof_b))
        run.record("gas.update_non_closing_balance_proof", self.update(b, a, b, proof_a))

        self.delegated_pair()

        chain.advance_time(SETTLE_WINDOW + 1)
        call = fn.settle_channel(
            b.address,
            proof_b.transferred,
            proof_b.locked,
            proof_b.locksroot,
            a.address,
            proof_a.transferred,
            proof_a.locked,
            proof_a.locksroot,
        )
        run.record("gas.settle_channel", chain.transact(a, call))
        # D_A 20, W_A 5, T_A 10, L_A 10; D_B 10, T_B 5, L_B 3: B is paid 12, A nothing,
        # and 10 (A's locks) and 3 (B's lock) wait for unlock.
        assert (self.balance(a), self.balance(b)) == (5, 12)
        retained_a = fn.get_unlock_amount(b.address, a.address, generation, proof_a.locksroot)
        retained_b = fn.get_unlock_amount(a.address, b.address, generation, proof_b.locksroot)
        assert (retained_a.call(), retained_b.call()) == (10, 3)

        call = fn.unlock(a.address, b.address, generation, encode_locks(locks_b))
        run.record("gas.unlock_1", chain.transact(a, call))
        assert self.balance(a) == 8
        call = fn.unlock(b.address, a.address, generation, encode_locks(locks_a))
        run.record("gas.unlock_6", chain.transact(b, call))
        assert (self.balance(a), self.balance(b)) == (11, 19)

    def delegated_pair(self) -> None:
        """P-Q: a third party closes for P; a delegate updates for Q, for a reward."""
        chain, run = self.chain, self.run
        p, q, closer_agent, delegate = (chain.party(name) for name in ("P", "Q", "T", "M"))
        self.open(p, q)
        self.deposit(p, q, 20)
        self.deposit(q, p, 10)
        proof_p = self.proof(
            p, q, nonce=5, transferred=10, locks=make_locks("P", [1, 1, 2, 3], [2, 1])
        )
        proof_q = self.proof(q, p, nonce=3, transferred=5, locks=make_locks("Q", [3], []))
        run.record("gas.close_channel_third_party", self.close(closer_agent, p, q, proof_q))
        run.record(
            "gas.update_non_closing_balance_proof_delegated",
            self.update(delegate, p, q, proof_p, reward=1),
        )

    def open_with_deposit(self) -> None:
        e, f = self.chain.party("E"), self.chain.party("F")
        self.fund(e, 20)
        call = self.fn.open_channel_with_deposit(f.address, SETTLE_WINDOW, 20)
        self.run.record("gas.open_channel_with_deposit", self.chain.transact(e, call))

    def cooperative_settle(self) -> None:
        g, h = self.chain.party("G"), self.chain.party("H")
        self.open(g, h)
        self.deposit(g, h, 20)
        struct = eip712.CooperativeSettle(
            channel_id=self.channel_id(g, h),
            generation=self.generation(g, h),
            total_withdraw1=10,  # equal totals: the order of the pair does not matter
            total_withdraw2=10,
            expiration=FAR_FUTURE,
        )
        call = self.fn.cooperative_settle(
            g.address, h.address, 10, 10, FAR_FUTURE, self.sign(g, struct), self.sign(h, struct)
        )
        self.run.record("gas.cooperative_settle", self.chain.transact(g, call))
        assert (self.balance(g), self.balance(h)) == (10, 10)


def measure(url: str) -> GasRun:
    """Run the whole scenario on the (fresh) anvil at ``url`` and return its figures.

    Deterministic for a fresh node: the same contracts give the same gas on every run.
    """
    scenario = _Scenario(Chain(url))
    scenario.deploy()
    scenario.deploy_blueprint_alternative()
    scenario.channel_cycle()
    scenario.open_with_deposit()
    scenario.cooperative_settle()
    run = scenario.run
    missing = set(METRICS) - set(run.gas)
    assert not missing, f"scenario did not measure {sorted(missing)}"
    run.gas = {name: run.gas[name] for name in METRICS}
    return run


# ---------------------------------------------------------------------------------------
# Where the gas goes


PRECOMPILES: Final = {1: "ecrecover", 2: "sha256", 3: "ripemd160", 4: "identity"}
CALLS: Final = frozenset({"CALL", "STATICCALL", "DELEGATECALL", "CALLCODE"})
CREATES: Final = frozenset({"CREATE", "CREATE2"})


@dataclass
class Frame:
    """Execution gas spent in one contract (all of its frames in the transaction)."""

    name: str
    by_op: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    count: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    sstores: list[int] = field(default_factory=list)
    memory_bytes: int = 0  # highest memory offset touched in any one frame of this contract

    @property
    def total(self) -> int:
        return sum(self.by_op.values())

    @property
    def memory_gas(self) -> int:
        """What growing memory to ``memory_bytes`` costs (3 per word + words**2 / 512),
        already counted in the opcodes that touched it."""
        words = (self.memory_bytes + 31) // 32
        return 3 * words + words * words // 512


@dataclass
class Breakdown:
    """gasUsed = intrinsic + execution - refund (or the EIP-7623 calldata floor)."""

    gas_used: int
    intrinsic: int
    calldata: int
    calldata_floor: int
    execution: int
    refund: int
    frames: dict[str, Frame]

    def lines(self) -> list[str]:
        """A human-readable account, one line per item."""
        out = [
            f"gasUsed {self.gas_used:,} = 21,000 base + {self.calldata:,} calldata"
            f" + {self.execution:,} execution - {self.refund:,} refund"
            + (f" (calldata floor {self.calldata_floor:,})" if self.calldata_floor else "")
        ]
        for frame in self.frames.values():
            out.append(f"  {frame.name}: {frame.total:,} execution gas")
            groups = _group_ops(frame)
            for label, gas, count in groups:
                out.append(f"    {label:<28} {count:>4} x  {gas:>8,}")
            others = sorted(
                ((op, gas) for op, gas in frame.by_op.items() if _group_of(op) == _OTHER),
                key=lambda item: -item[1],
            )[:6]
            if others:
                detail = ", ".join(f"{op} {frame.count[op]} x {gas:,}" for op, gas in others)
                out.append(f"      of which: {detail}")
            if frame.memory_bytes:
                grown = f"memory grown to {frame.memory_bytes:,} bytes"
                out.append(f"    ({grown}: {frame.memory_gas:,} gas of the above)")
            if frame.sstores:
                tally: dict[int, int] = defaultdict(int)
                for cost in frame.sstores:
                    tally[cost] += 1
                detail = ", ".join(
                    f"{n} x {cost:,}" for cost, n in sorted(tally.items(), reverse=True)
                )
                out.append(f"    SSTOREs by cost: {detail}")
        return out


_OTHER: Final = "other (stack, memory, jumps)"
_NAMED_OPS: Final = {
    "SSTORE": "SSTORE",
    "SLOAD": "SLOAD",
    "TSTORE": "TSTORE/TLOAD (lock)",
    "TLOAD": "TSTORE/TLOAD (lock)",
    "KECCAK256": "KECCAK256",
    "SHA3": "KECCAK256",
    "LOG0": "LOG",
    "LOG1": "LOG",
    "LOG2": "LOG",
    "LOG3": "LOG",
    "LOG4": "LOG",
}


def _group_of(op: str) -> str:
    if op.startswith(("call:", "create")):
        return op
    return _NAMED_OPS.get(op, _OTHER)


def _group_ops(frame: Frame) -> list[tuple[str, int, int]]:
    groups: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for op, gas in frame.by_op.items():
        label = _group_of(op)
        groups[label][0] += gas
        groups[label][1] += frame.count[op]
    return sorted(((k, v[0], v[1]) for k, v in groups.items()), key=lambda g: -g[1])


# Where each memory-touching opcode's (offset, size) sit on the stack, counted from the top.
_MEMORY_ARGS: Final[dict[str, tuple[int, int | None]]] = {
    "MLOAD": (0, None),
    "MSTORE": (0, None),
    "MSTORE8": (0, None),
    "KECCAK256": (0, 1),
    "SHA3": (0, 1),
    "CALLDATACOPY": (0, 2),
    "CODECOPY": (0, 2),
    "RETURNDATACOPY": (0, 2),
    "EXTCODECOPY": (1, 3),
    "MCOPY": (0, 2),
    "RETURN": (0, 1),
    "REVERT": (0, 1),
    "LOG0": (0, 1),
    "LOG1": (0, 1),
    "LOG2": (0, 1),
    "LOG3": (0, 1),
    "LOG4": (0, 1),
    "CREATE": (1, 2),
    "CREATE2": (1, 2),
}
_CALL_MEMORY_ARGS: Final[dict[str, tuple[tuple[int, int], tuple[int, int]]]] = {
    "CALL": ((3, 4), (5, 6)),
    "CALLCODE": ((3, 4), (5, 6)),
    "STATICCALL": ((2, 3), (4, 5)),
    "DELEGATECALL": ((2, 3), (4, 5)),
}


def _memory_end(op: str, stack: Sequence[str]) -> int:
    """The end of the memory region ``op`` touches (0 if none)."""

    def arg(index: int) -> int:
        return int(stack[-1 - index], 16)

    def region(offset: int, size: int | None) -> int:
        length = 32 if size is None else arg(size)
        if op == "MSTORE8":
            length = 1
        return arg(offset) + length if length else 0

    if op in _MEMORY_ARGS:
        offset, size = _MEMORY_ARGS[op]
        end = region(offset, size)
        if op == "MCOPY" and arg(2):
            end = max(end, arg(1) + arg(2))
        return end
    if op in _CALL_MEMORY_ARGS:
        return max(region(*pair) for pair in _CALL_MEMORY_ARGS[op])
    return 0


def _calldata_cost(data: bytes) -> tuple[int, int]:
    zeros = data.count(0)
    nonzeros = len(data) - zeros
    return 4 * zeros + 16 * nonzeros, 21_000 + 10 * (zeros + 4 * nonzeros)


def breakdown(url: str, tx_hash: str, names: dict[str, str] | None = None) -> Breakdown:
    """Replay ``tx_hash`` with anvil's default struct logger and account for its gas.

    Each step's cost is the drop of the gas counter to the next step of the same frame; a
    call's own cost (address access, memory, value, precompile work) is that drop minus
    what its callee spent, which is accounted to the callee. ``names`` maps addresses
    (any case) to readable names.
    """
    chain = Chain(url)
    names = {k.lower(): v for k, v in (names or {}).items()}
    tx = chain.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
    receipt = chain.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
    # anvil keeps no steps of mined transactions unless started with --steps-tracing, so
    # replay the transaction on the state before it: automine gives each its own block.
    call = {
        "from": tx["from"],
        "to": tx["to"],
        "data": "0x" + bytes(tx["input"]).hex(),
        "gas": hex(tx["gas"]),
        "gasPrice": hex(tx["gasPrice"]),
    }
    options = {"disableStorage": True, "disableMemory": True, "enableReturnData": False}
    trace = chain.rpc("debug_traceCall", [call, hex(int(tx["blockNumber"]) - 1), options])
    steps: list[dict[str, Any]] = trace["structLogs"]
    if int(trace["gas"]) != int(receipt["gasUsed"]):
        raise RuntimeError(
            f"{tx_hash}: the replay used {trace['gas']} gas, the receipt says {receipt['gasUsed']}"
        )
    calldata, floor = _calldata_cost(bytes(tx["input"]))
    top = str(tx["to"] or receipt["contractAddress"]).lower()

    cost = _step_costs(steps)
    child = [0] * len(steps)
    parent_of: list[int | None] = [None] * len(steps)
    last_at_depth: dict[int, int] = {}
    for i, step in enumerate(steps):
        depth = step["depth"]
        if depth > 1:
            parent = last_at_depth[depth - 1]
            parent_of[i] = parent
            child[parent] += cost[i]
        last_at_depth[depth] = i

    frames: dict[str, Frame] = {}
    frame_of_depth: dict[int, str] = {1: top}
    memory_end: dict[int, int] = {}

    def frame(address: str) -> Frame:
        if address not in frames:
            frames[address] = Frame(names.get(address, address))
        return frames[address]

    for i, step in enumerate(steps):
        depth, op = step["depth"], step["op"]
        if depth > 1 and steps[i - 1]["depth"] == depth - 1:
            caller = steps[i - 1]
            if caller["op"] in CALLS:
                frame_of_depth[depth] = "0x" + f"{int(caller['stack'][-2], 16):040x}"
            else:
                frame_of_depth[depth] = f"created by {frame_of_depth[depth - 1]}"
            memory_end[depth] = 0
        own = cost[i] - child[i]
        target = frame(frame_of_depth[depth])
        key = op
        if op in CALLS:
            callee = int(step["stack"][-2], 16)
            address = "0x" + f"{callee:040x}"
            key = f"call:{PRECOMPILES.get(callee) or names.get(address, address)}"
        elif op in CREATES:
            key = "create (code deposit)"
        target.by_op[key] += own
        target.count[key] += 1
        end = _memory_end(op, step["stack"])
        memory_end[depth] = max(memory_end.get(depth, 0), end)
        target.memory_bytes = max(target.memory_bytes, memory_end[depth])
        if op == "SSTORE":
            target.sstores.append(own)

    execution = sum(cost[i] for i, s in enumerate(steps) if s["depth"] == 1)
    intrinsic = 21_000 + calldata
    gas_used = int(receipt["gasUsed"])
    # When the EIP-7623 floor applies, gasUsed says nothing about the refund.
    floor_applies = gas_used == floor and gas_used > intrinsic + execution
    refund = 0 if floor_applies else intrinsic + execution - gas_used
    return Breakdown(
        gas_used=gas_used,
        intrinsic=intrinsic,
        calldata=calldata,
        calldata_floor=floor if floor_applies else 0,
        execution=execution,
        refund=refund,
        frames={k: frames[k] for k in sorted(frames, key=lambda a: -frames[a].total)},
    )


def _step_costs(steps: Sequence[dict[str, Any]]) -> list[int]:
    """Gas each step took, its callee's execution included for a call or create."""
    cost = [0] * len(steps)
    open_at_depth: dict[int, int] = {}
    for i, step in enumerate(steps):
        depth = step["depth"]
        # Frames deeper than this step have ended: their last step costs its own gasCost.
        for deeper in [d for d in open_at_depth if d > depth]:
            last = open_at_depth.pop(deeper)
            cost[last] = int(steps[last]["gasCost"])
        if depth in open_at_depth:
            previous = open_at_depth[depth]
            cost[previous] = int(steps[previous]["gas"]) - int(step["gas"])
        open_at_depth[depth] = i
    for last in open_at_depth.values():
        cost[last] = int(steps[last]["gasCost"])
    return cost


def names_of(run: GasRun) -> dict[str, str]:
    """Readable names of the scenario's contracts, for ``breakdown``."""
    return {address: name for name, address in run.addresses.items()}


def over_target(gas: dict[str, int]) -> dict[str, int]:
    """Operations above their target, with the excess."""
    return {
        name: gas[name] - TARGETS[name]
        for name in OPERATIONS
        if name in gas and gas[name] > TARGETS[name]
    }


def table(gas: dict[str, int], names: Iterable[str] = OPERATIONS) -> list[str]:
    """Rows ``operation | ours | Raiden | target | ratio | verdict`` as text lines."""
    header = f"{'operation':<46} {'ours':>10} {'Raiden':>10} {'target':>10} {'ratio':>6}  verdict"
    lines = [header, "-" * len(header)]
    for name in names:
        ours = gas[name]
        raiden = RAIDEN_GAS.get(name)
        if raiden is None:
            info = RAIDEN_EXTRAS.get(name)
            them, ratio = (f"{info:,}", f"{ours / info:.3f}") if info else ("-", "-")
            lines.append(f"{name:<46} {ours:>10,} {them:>10} {'-':>10} {ratio:>6}  (extra)")
            continue
        verdict = "OK" if ours <= TARGETS[name] else "OVER"
        lines.append(
            f"{name:<46} {ours:>10,} {raiden:>10,} {TARGETS[name]:>10,}"
            f" {ours / raiden:>6.3f}  {verdict}"
        )
    return lines
