"""One whole channel lifecycle on a real anvil node, through web3, checked against the oracle.

A opens a channel with B depositing, B deposits too; they pay each other off chain with
balance proofs signed by offchain.protocol.eip712 (A's last proof carries two pending
locks); A closes with B's proof; B is away, so C, a delegate holding B's signed
Delegation, submits A's newer proof for a reward; the secret of one lock is registered on
the secret registry, the other lock expires; the chain's clock jumps past the settle
window; anyone settles and unlocks. After each step every token balance on chain (A, B,
C and the token network) is compared with what offchain.protocol.settlement predicts.

Everything real: contracts deployed by scripts.deployer from the shipped artifacts,
transactions signed locally with anvil's dev keys and mined by anvil.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from web3 import Web3
from web3.contract import Contract

from offchain.chain.artifacts import load_artifact
from offchain.protocol import eip712
from offchain.protocol.crypto import address_from_private_key, keccak256, sha256
from offchain.protocol.locks import Lock, balance_hash, channel_id, encode_locks, locksroot
from offchain.protocol.settlement import (
    ParticipantTotals,
    apply_reward,
    settlement_payout,
    unlock_split,
)
from offchain.protocol.types import (
    AdditionalHash,
    Address,
    BalanceHash,
    ChannelId,
    Generation,
    Nonce,
    SecretHash,
    Timestamp,
    TokenAmount,
)
from scripts.anvil import DEV_PRIVATE_KEYS
from scripts.deployer import TEST_TOKEN, DeployResult, Receipt, Web3Sender

pytestmark = pytest.mark.anvil

ONE = 10**18
DEPOSIT_A = 100 * ONE
DEPOSIT_B = 50 * ONE
REWARD = 2 * ONE
NO_PROOF = bytes(32)


@dataclass(frozen=True)
class Party:
    """A dev account of anvil: its key, checksummed address and raw 20 bytes."""

    name: str
    key: str
    address: str
    raw: Address


def party(name: str, index: int) -> Party:
    key = DEV_PRIVATE_KEYS[index]
    raw = address_from_private_key(bytes.fromhex(key[2:]))
    return Party(name, key, Web3.to_checksum_address(raw), raw)


@dataclass(frozen=True)
class SignedProof:
    """A balance proof as the partner holds it: the values, its locks and the signature."""

    nonce: int
    transferred: int
    locks: tuple[Lock, ...]
    additional_hash: bytes
    balance_hash: bytes
    signature: bytes

    @property
    def locked(self) -> int:
        return sum(lock.amount for lock in self.locks)

    def settle_args(self) -> tuple[int, int, bytes]:
        return self.transferred, self.locked, locksroot(self.locks)


class Lifecycle:
    """The contracts of the deployment and small helpers to act and to read balances."""

    def __init__(self, w3: Web3, deployed: DeployResult) -> None:
        self.w3 = w3
        token = deployed.address(TEST_TOKEN)
        self.token = self.contract("test_token", token)
        self.network = self.contract("token_network", deployed.token_networks[token])
        self.secret_registry = self.contract("secret_registry", deployed.address("SecretRegistry"))
        self.domain = eip712.Domain(
            chain_id=w3.eth.chain_id,
            verifying_contract=Address(bytes.fromhex(self.network.address[2:])),
        )

    def contract(self, artifact: str, address: str) -> Contract:
        return self.w3.eth.contract(
            address=Web3.to_checksum_address(address),
            abi=load_artifact(artifact).abi_list(),
            decode_tuples=True,
        )

    def send(self, who: Party, function: Any) -> Receipt:
        return Web3Sender(self.w3, who.key).send(function)

    def balances(self, *parties: Party) -> dict[str, int]:
        found = {p.name: int(self.token.functions.balanceOf(p.address).call()) for p in parties}
        found["network"] = int(self.token.functions.balanceOf(self.network.address).call())
        return found

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def proof(
        self,
        signer: Party,
        partner: Party,
        generation: int,
        nonce: int,
        transferred: int,
        locks: tuple[Lock, ...] = (),
    ) -> SignedProof:
        """`signer`'s balance proof towards `partner`, signed with the oracle's EIP-712."""
        locked = sum(lock.amount for lock in locks)
        bh = balance_hash(TokenAmount(transferred), TokenAmount(locked), locksroot(locks))
        additional = keccak256(b"message %d from %s" % (nonce, signer.name.encode()))
        struct = eip712.BalanceProof(
            channel_id=channel_id(signer.raw, partner.raw),
            generation=Generation(generation),
            nonce=Nonce(nonce),
            balance_hash=bh,
            additional_hash=AdditionalHash(additional),
        )
        signature = eip712.sign(bytes.fromhex(signer.key[2:]), self.domain, struct)
        return SignedProof(nonce, transferred, locks, additional, bh, signature)


def test_lifecycle__delegate_updates__payouts_match_the_oracle(
    w3: Web3, deployed: DeployResult
) -> None:
    chain = Lifecycle(w3, deployed)
    a, b, c = party("A", 1), party("B", 2), party("C", 3)
    network = chain.network.functions
    window = int(network.settle_window_min().call())

    # --- funding: the test token is a faucet ----------------------------------------------
    for who in (a, b):
        chain.send(who, chain.token.functions.mint(who.address, 1000 * ONE))
        chain.send(who, chain.token.functions.approve(chain.network.address, 2**256 - 1))
    start = chain.balances(a, b, c)

    # --- open with deposit, partner deposit -----------------------------------------------
    chain.send(a, network.open_channel_with_deposit(b.address, window, DEPOSIT_A))
    chain.send(b, network.set_total_deposit(b.address, a.address, DEPOSIT_B))
    info = network.get_channel(a.address, b.address).call()
    assert info.state == 1
    assert bytes(info.channel_id) == channel_id(a.raw, b.raw)
    generation = int(info.generation)
    assert chain.balances(a, b, c) == {
        "A": start["A"] - DEPOSIT_A,
        "B": start["B"] - DEPOSIT_B,
        "C": start["C"],
        "network": start["network"] + DEPOSIT_A + DEPOSIT_B,
    }

    # --- off-chain payments ---------------------------------------------------------------
    secret_paid = b"\x5e" * 32
    secret_kept = b"\x7a" * 32
    expiration = chain.now() + window // 2
    lock_paid = Lock(Timestamp(expiration), TokenAmount(5 * ONE), SecretHash(sha256(secret_paid)))
    lock_expired = Lock(
        Timestamp(expiration), TokenAmount(3 * ONE), SecretHash(sha256(secret_kept))
    )
    a_to_b = [
        chain.proof(a, b, generation, nonce=1, transferred=10 * ONE),
        chain.proof(
            a, b, generation, nonce=2, transferred=30 * ONE, locks=(lock_paid, lock_expired)
        ),
    ]
    b_to_a = chain.proof(b, a, generation, nonce=1, transferred=7 * ONE)
    a_latest = a_to_b[-1]

    # --- A closes with B's proof ----------------------------------------------------------
    chain.send(
        a,
        network.close_channel(
            a.address,
            b.address,
            b_to_a.nonce,
            b_to_a.balance_hash,
            b_to_a.additional_hash,
            b_to_a.signature,
            b"",
        ),
    )
    closed = network.get_channel(a.address, b.address).call()
    assert closed.state == 2
    assert closed.closer == a.address

    # --- C, B's delegate, submits A's newest proof for a reward ---------------------------
    delegation = eip712.Delegation(
        channel_id=ChannelId(channel_id(b.raw, a.raw)),
        generation=Generation(generation),
        nonce=Nonce(a_latest.nonce),
        balance_hash=BalanceHash(a_latest.balance_hash),
        delegate=c.raw,
        reward=TokenAmount(REWARD),
    )
    delegation_sig = eip712.sign(bytes.fromhex(b.key[2:]), chain.domain, delegation)
    chain.send(
        c,
        network.update_non_closing_balance_proof(
            a.address,
            b.address,
            a_latest.nonce,
            a_latest.balance_hash,
            a_latest.additional_hash,
            a_latest.signature,
            c.address,
            REWARD,
            delegation_sig,
        ),
    )
    recorded = network.get_participant(b.address, a.address).call()
    assert (recorded.delegate, int(recorded.reward)) == (c.address, REWARD)
    assert bytes(network.get_participant(a.address, b.address).call().balance_hash) == (
        a_latest.balance_hash
    )

    # --- the secret of one lock is revealed on chain, in time -----------------------------
    reveal = chain.send(b, chain.secret_registry.functions.register_secret(secret_paid))
    revealed_at = int(w3.eth.get_block(reveal.block)["timestamp"])
    assert revealed_at <= expiration
    assert (
        chain.secret_registry.functions.get_secret_reveal_time(sha256(secret_paid)).call()
        == revealed_at
    )

    # --- time travel past the settle window -----------------------------------------------
    before_settle = chain.balances(a, b, c)
    w3.provider.make_request("evm_increaseTime", [window + 1])
    w3.provider.make_request("evm_mine", [])
    assert chain.now() > int(closed.settle_window_or_deadline)

    # --- settle (anyone may: C does) ------------------------------------------------------
    ta, la, ra = a_latest.settle_args()
    tb, lb, rb = b_to_a.settle_args()
    chain.send(c, network.settle_channel(a.address, ta, la, ra, b.address, tb, lb, rb))
    expected = settlement_payout(
        ParticipantTotals(TokenAmount(DEPOSIT_A), TokenAmount(0), TokenAmount(ta), TokenAmount(la)),
        ParticipantTotals(TokenAmount(DEPOSIT_B), TokenAmount(0), TokenAmount(tb), TokenAmount(lb)),
    )
    assert expected.total == DEPOSIT_A + DEPOSIT_B
    b_gets, c_gets = apply_reward(expected.payout2, TokenAmount(REWARD))
    assert c_gets == REWARD
    after_settle = chain.balances(a, b, c)
    assert after_settle == {
        "A": before_settle["A"] + expected.payout1,
        "B": before_settle["B"] + b_gets,
        "C": before_settle["C"] + c_gets,
        "network": before_settle["network"] - expected.payout1 - expected.payout2,
    }
    # What stays in the network is exactly what the locks still hold.
    assert after_settle["network"] - start["network"] == (
        expected.locked_retained1 + expected.locked_retained2
    )
    assert expected.locked_retained1 == la
    assert network.get_channel(a.address, b.address).call().state == 0
    retained = int(network.get_unlock_amount(b.address, a.address, generation, ra).call())
    assert retained == expected.locked_retained1

    # --- unlock A's locks: the revealed one to B, the expired one back to A ---------------
    chain.send(
        c, network.unlock(b.address, a.address, generation, encode_locks([lock_paid, lock_expired]))
    )
    to_b, to_a = unlock_split(
        [lock_paid, lock_expired],
        {SecretHash(sha256(secret_paid)): revealed_at},
        TokenAmount(expected.locked_retained1),
    )
    assert (to_b, to_a) == (lock_paid.amount, lock_expired.amount)
    final = chain.balances(a, b, c)
    assert final == {
        "A": after_settle["A"] + to_a,
        "B": after_settle["B"] + to_b,
        "C": after_settle["C"],
        "network": after_settle["network"] - to_a - to_b,
    }
    assert final["network"] == start["network"]
    assert int(network.get_unlock_amount(b.address, a.address, generation, ra).call()) == 0

    # --- conservation over the whole life of the channel ----------------------------------
    assert sum(final.values()) == sum(start.values())
    assert final["A"] - start["A"] == -DEPOSIT_A + expected.payout1 + to_a
    assert final["B"] - start["B"] == -DEPOSIT_B + b_gets + to_b
    assert final["C"] - start["C"] == REWARD
