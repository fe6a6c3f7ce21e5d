"""Two views (A's and B's) of one channel, with fixed keys, for the protocol-core tests."""

from __future__ import annotations

from offchain.protocol.channel import ChannelState, EndState
from offchain.protocol.crypto import address_from_private_key, keccak256, sha256
from offchain.protocol.locks import Lock
from offchain.protocol.types import (
    Address,
    Generation,
    PrivateKey,
    Secret,
    SecretHash,
    Timestamp,
    TokenAmount,
)

KEY_A = PrivateKey(keccak256(b"channel test a"))
KEY_B = PrivateKey(keccak256(b"channel test b"))
A = address_from_private_key(KEY_A)
B = address_from_private_key(KEY_B)
NETWORK = Address(b"\x77" * 20)
NOW = Timestamp(1_700_000_000)
SETTLE = 3600
REVEAL = 60


def views(deposit_a: int = 100, deposit_b: int = 50) -> tuple[ChannelState, ChannelState]:
    end_a = EndState(A, deposit=TokenAmount(deposit_a))
    end_b = EndState(B, deposit=TokenAmount(deposit_b))

    def view(our: EndState, partner: EndState) -> ChannelState:
        return ChannelState(1, NETWORK, Generation(1), SETTLE, REVEAL, our, partner)

    return view(end_a, end_b), view(end_b, end_a)


def secret(n: int) -> tuple[Secret, SecretHash]:
    value = Secret(keccak256(b"secret" + bytes([n])))
    return value, SecretHash(sha256(value))


def lock(n: int, amount: int = 10, expiration: int = NOW + 600) -> Lock:
    return Lock(Timestamp(expiration), TokenAmount(amount), secret(n)[1])
