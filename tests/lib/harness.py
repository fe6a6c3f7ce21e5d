"""Test harness for the contracts under titanoboa: deploy, sign with the Python oracle, call.

Belongs here: helpers shared by tests/contracts, tests/property and the gas bench that
turn "A closes with B's proof" into a signed contract call. Signing always goes through
`offchain.protocol` (the oracle the node uses), so every call also checks that what
Python signs the contract accepts. No assertions about behaviour live here.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boa

from offchain.protocol import eip712
from offchain.protocol.crypto import address_from_private_key, keccak256
from offchain.protocol.locks import Lock, balance_hash, channel_id, encode_locks, locksroot

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "contracts"
SETTLE_MIN = 600
SETTLE_MAX = 30 * 24 * 3600
SETTLE_WINDOW = 3600
SETTLE_FLOOR = 60
SETTLE_CEILING = 365 * 24 * 3600
PARTICIPANT_LIMIT = 10**27
NETWORK_LIMIT = 10**30
EMPTY_LOCKSROOT = keccak256(b"")
ZERO32 = bytes(32)
ZERO_ADDRESS = "0x" + "00" * 20


@dataclass(frozen=True)
class Account:
    """A test account: a private key and its address (checksummed string and raw bytes)."""

    key: bytes
    raw: bytes

    @property
    def address(self) -> str:
        return _checksum(self.raw)

    def __str__(self) -> str:
        return self.address


def _checksum(raw: bytes) -> str:
    hexaddr = raw.hex()
    digest = keccak256(hexaddr.encode()).hex()
    return "0x" + "".join(
        c.upper() if int(digest[i], 16) >= 8 else c for i, c in enumerate(hexaddr)
    )


def make_account(index: int) -> Account:
    """Deterministic account number `index`, funded with ether in the boa env."""
    key = keccak256(b"smartmesh-test-account-" + index.to_bytes(4, "big"))
    account = Account(key=key, raw=address_from_private_key(key))
    boa.env.set_balance(account.address, 10**21)
    return account


def raw(address: str) -> bytes:
    return bytes.fromhex(address[2:])


@dataclass
class Proof:
    """A balance proof as it travels: its fields, the locks it commits to, and the signature."""

    signer: Account
    nonce: int
    transferred: int
    locked: int
    locks: list[Lock]
    additional_hash: bytes
    signature: bytes
    balance_hash: bytes = field(default=ZERO32)

    @property
    def locksroot(self) -> bytes:
        return locksroot(self.locks)

    def settle_args(self) -> tuple[int, int, bytes]:
        return (self.transferred, self.locked, self.locksroot)


NO_PROOF_LOCKSROOT = ZERO32


@dataclass
class Deployment:
    """Secret registry, implementation, registry, one token and its network."""

    secret_registry: Any
    implementation: Any
    registry: Any
    token: Any
    network: Any

    @property
    def domain(self) -> eip712.Domain:
        return eip712.Domain(
            chain_id=boa.env.evm.patch.chain_id, verifying_contract=raw(self.network.address)
        )

    # --- signing -----------------------------------------------------------------

    def generation(self, a: Account, b: Account) -> int:
        return int(self.network.get_channel(a.address, b.address).generation)

    def cid(self, a: Account, b: Account) -> bytes:
        return channel_id(a.raw, b.raw)

    def proof(
        self,
        signer: Account,
        partner: Account,
        nonce: int,
        transferred: int = 0,
        locks: list[Lock] | None = None,
        locked: int | None = None,
        additional_hash: bytes = b"\x11" * 32,
        generation: int | None = None,
        domain: eip712.Domain | None = None,
    ) -> Proof:
        """`signer`'s balance proof towards `partner` (locked defaults to the locks' sum)."""
        locks = locks or []
        locked = sum(lock.amount for lock in locks) if locked is None else locked
        bh = balance_hash(transferred, locked, locksroot(locks))
        struct = eip712.BalanceProof(
            channel_id=self.cid(signer, partner),
            generation=self.generation(signer, partner) if generation is None else generation,
            nonce=nonce,
            balance_hash=bh,
            additional_hash=additional_hash,
        )
        sig = eip712.sign(signer.key, domain or self.domain, struct)
        return Proof(signer, nonce, transferred, locked, locks, additional_hash, sig, bh)

    def sign_close(self, closer: Account, partner: Account, proof: Proof | None) -> bytes:
        nonce, bh, ah = (
            (proof.nonce, proof.balance_hash, proof.additional_hash)
            if proof
            else (0, ZERO32, ZERO32)
        )
        struct = eip712.Close(
            channel_id=self.cid(closer, partner),
            generation=self.generation(closer, partner),
            nonce=nonce,
            balance_hash=bh,
            additional_hash=ah,
        )
        return eip712.sign(closer.key, self.domain, struct)

    def sign_delegation(
        self,
        non_closer: Account,
        closer: Account,
        proof: Proof,
        delegate: str,
        reward: int,
        generation: int | None = None,
    ) -> bytes:
        struct = eip712.Delegation(
            channel_id=self.cid(non_closer, closer),
            generation=self.generation(non_closer, closer) if generation is None else generation,
            nonce=proof.nonce,
            balance_hash=proof.balance_hash,
            delegate=raw(delegate),
            reward=reward,
        )
        return eip712.sign(non_closer.key, self.domain, struct)

    def sign_withdraw(
        self, signer: Account, participant: Account, partner: Account, total: int, expiration: int
    ) -> bytes:
        struct = eip712.Withdraw(
            channel_id=self.cid(participant, partner),
            generation=self.generation(participant, partner),
            participant=participant.raw,
            total_withdraw=total,
            expiration=expiration,
        )
        return eip712.sign(signer.key, self.domain, struct)

    def sign_coop(
        self, signer: Account, a: Account, b: Account, total_a: int, total_b: int, expiration: int
    ) -> bytes:
        """`signer`'s CooperativeSettle giving `a` and `b` these final total withdraws."""
        first = a.raw < b.raw
        struct = eip712.CooperativeSettle(
            channel_id=self.cid(a, b),
            generation=self.generation(a, b),
            total_withdraw1=total_a if first else total_b,
            total_withdraw2=total_b if first else total_a,
            expiration=expiration,
        )
        return eip712.sign(signer.key, self.domain, struct)

    # --- actions -------------------------------------------------------------------

    def fund(self, account: Account, amount: int) -> None:
        self.token.mint(account.address, amount)
        with boa.env.prank(account.address):
            self.token.approve(self.network.address, 2**256 - 1)

    def open(
        self,
        a: Account,
        b: Account,
        window: int = SETTLE_WINDOW,
        deposit_a: int = 0,
        deposit_b: int = 0,
    ) -> bytes:
        with boa.env.prank(a.address):
            cid = self.network.open_channel(b.address, window)
        if deposit_a:
            self.deposit(a, b, deposit_a)
        if deposit_b:
            self.deposit(b, a, deposit_b)
        return bytes(cid)

    def deposit(self, participant: Account, partner: Account, total: int) -> None:
        with boa.env.prank(participant.address):
            self.network.set_total_deposit(participant.address, partner.address, total)

    def withdraw(
        self, participant: Account, partner: Account, total: int, expiration: int | None = None
    ) -> None:
        expiration = now() + 600 if expiration is None else expiration
        sig_p = self.sign_withdraw(participant, participant, partner, total, expiration)
        sig_q = self.sign_withdraw(partner, participant, partner, total, expiration)
        with boa.env.prank(participant.address):
            self.network.set_total_withdraw(
                participant.address, partner.address, total, expiration, sig_p, sig_q
            )

    def close(
        self, closer: Account, partner: Account, proof: Proof | None, sender: Account | None = None
    ) -> None:
        sender = sender or closer
        closing_sig = b"" if sender is closer else self.sign_close(closer, partner, proof)
        with boa.env.prank(sender.address):
            if proof is None:
                self.network.close_channel(
                    closer.address, partner.address, 0, ZERO32, ZERO32, b"", closing_sig
                )
            else:
                self.network.close_channel(
                    closer.address,
                    partner.address,
                    proof.nonce,
                    proof.balance_hash,
                    proof.additional_hash,
                    proof.signature,
                    closing_sig,
                )

    def update(
        self,
        non_closer: Account,
        closer: Account,
        proof: Proof,
        sender: Account | None = None,
        delegate: str | None = None,
        reward: int = 0,
    ) -> None:
        sender = sender or non_closer
        if sender is non_closer:
            delegate_addr, delegation_sig = ZERO_ADDRESS, b""
        else:
            delegate_addr = sender.address if delegate is None else delegate
            delegation_sig = self.sign_delegation(non_closer, closer, proof, delegate_addr, reward)
        with boa.env.prank(sender.address):
            self.network.update_non_closing_balance_proof(
                closer.address,
                non_closer.address,
                proof.nonce,
                proof.balance_hash,
                proof.additional_hash,
                proof.signature,
                delegate_addr,
                reward,
                delegation_sig,
            )

    def settle(
        self,
        a: Account,
        a_proof: Proof | None,
        b: Account,
        b_proof: Proof | None,
        sender: Account | None = None,
    ) -> None:
        """Settle with `a`'s and `b`'s proofs as they stand on chain (None: no proof)."""
        ta, la, ra = a_proof.settle_args() if a_proof else (0, 0, ZERO32)
        tb, lb, rb = b_proof.settle_args() if b_proof else (0, 0, ZERO32)
        with boa.env.prank((sender or a).address):
            self.network.settle_channel(a.address, ta, la, ra, b.address, tb, lb, rb)

    def unlock(
        self,
        receiver: Account,
        sender: Account,
        generation: int,
        locks: list[Lock],
        caller: Account | None = None,
    ) -> None:
        with boa.env.prank((caller or receiver).address):
            self.network.unlock(receiver.address, sender.address, generation, encode_locks(locks))

    def register_secret(self, secret: bytes) -> None:
        self.secret_registry.register_secret(secret)


def now() -> int:
    return int(boa.env.evm.patch.timestamp)


@functools.cache
def deployer(name: str) -> Any:
    """The compiled contract `contracts/<name>`, compiled once per process."""
    return boa.load_partial(str(CONTRACTS / name))


def load(name: str, *args: Any) -> Any:
    return deployer(name).deploy(*args)


def deploy(token_file: str = "test/test_token.vy") -> Deployment:
    """Deploy everything into the current boa env and create the token's network."""
    secret_registry = load("secret_registry.vy")
    implementation = load("token_network.vy", secret_registry.address)
    registry = load(
        "token_network_registry.vy",
        secret_registry.address,
        implementation.address,
        SETTLE_FLOOR,
        SETTLE_CEILING,
    )
    token = load(token_file, "Test Token", "TT", 18)
    address = registry.create_token_network(
        token.address, SETTLE_MIN, SETTLE_MAX, PARTICIPANT_LIMIT, NETWORK_LIMIT
    )
    with warnings.catch_warnings():
        # The clone's code is the EIP-1167 proxy, not the implementation's: expected.
        warnings.simplefilter("ignore")
        network = deployer("token_network.vy").at(address)
    return Deployment(secret_registry, implementation, registry, token, network)
