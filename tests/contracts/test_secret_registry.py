"""Tests of `contracts/secret_registry.vy` and its interface `ISecretRegistry.vyi`.

What belongs here: the registry's on-chain behaviour (reveal times, the
False returns instead of reverts, events, batch semantics) and the proof that
a contract in `contracts/` can import the interface. What must not: lock
expiry rules, which belong to the token network's tests.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import boa
import pytest
from eth.exceptions import Revert
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
ZERO = b"\x00" * 32
MAX_BATCH = 256


def _secret(i: int) -> bytes:
    # Non-zero, distinct, deterministic secrets.
    return hashlib.sha256(b"smartmesh-test-secret-%d" % i).digest()


def _hash(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


def _revealed(registry) -> list:
    # Logs of the registry's LAST call: read them before any other call, a
    # view included, replaces `registry._computation`.
    return [e for e in registry.get_logs() if type(e).__name__ == "SecretRevealed"]


@pytest.fixture
def registry():
    return boa.load(str(CONTRACTS / "secret_registry.vy"))


# --- register_secret -------------------------------------------------------


def test_register_secret__fresh__returns_true_records_timestamp_and_logs(registry):
    secret = _secret(1)
    now = boa.env.evm.patch.timestamp

    assert registry.register_secret(secret) is True
    logs = _revealed(registry)

    assert registry.secrethash_to_timestamp(_hash(secret)) == now
    assert len(logs) == 1
    assert logs[0].secrethash == _hash(secret)
    assert logs[0].secret == secret
    assert logs[0].address == registry.address


def test_register_secret__already_registered__returns_false_keeps_first_time_no_log(registry):
    secret = _secret(1)
    first = boa.env.evm.patch.timestamp
    registry.register_secret(secret)
    boa.env.time_travel(seconds=600)

    assert registry.register_secret(secret) is False

    assert registry.secrethash_to_timestamp(_hash(secret)) == first
    assert _revealed(registry) == []


def test_register_secret__already_registered_by_someone_else__returns_false(registry):
    secret = _secret(1)
    with boa.env.prank(boa.env.generate_address("alice")):
        assert registry.register_secret(secret) is True
    with boa.env.prank(boa.env.generate_address("mallory")):
        assert registry.register_secret(secret) is False


def test_register_secret__nonzero_secret__is_recorded(registry):
    # Positive twin of the zero-secret case: the smallest non-zero secret counts.
    secret = b"\x00" * 31 + b"\x01"
    assert registry.register_secret(secret) is True
    assert registry.get_secret_reveal_time(_hash(secret)) == boa.env.evm.patch.timestamp


def test_register_secret__zero_secret__returns_false_records_nothing_no_log(registry):
    assert registry.register_secret(ZERO) is False

    assert registry.get_secret_reveal_time(_hash(ZERO)) == 0
    assert _revealed(registry) == []


def test_register_secret__after_time_travel__records_new_timestamp(registry):
    boa.env.time_travel(seconds=3600)
    now = boa.env.evm.patch.timestamp
    registry.register_secret(_secret(7))
    assert registry.get_secret_reveal_time(_hash(_secret(7))) == now


# --- register_secret_batch --------------------------------------------------


def test_register_secret_batch__all_new__returns_true_records_all_and_logs(registry):
    secrets = [_secret(i) for i in range(5)]
    now = boa.env.evm.patch.timestamp

    assert registry.register_secret_batch(secrets) is True
    logs = _revealed(registry)

    for s in secrets:
        assert registry.get_secret_reveal_time(_hash(s)) == now
    assert [e.secret for e in logs] == secrets
    assert [e.secrethash for e in logs] == [_hash(s) for s in secrets]


def test_register_secret_batch__one_already_registered__returns_false_records_the_new(registry):
    old = _secret(0)
    registry.register_secret(old)
    first = boa.env.evm.patch.timestamp
    boa.env.time_travel(seconds=60)
    now = boa.env.evm.patch.timestamp
    new = [_secret(1), _secret(2)]

    assert registry.register_secret_batch([new[0], old, new[1]]) is False
    assert [e.secret for e in _revealed(registry)] == new

    assert registry.get_secret_reveal_time(_hash(old)) == first
    for s in new:
        assert registry.get_secret_reveal_time(_hash(s)) == now


def test_register_secret_batch__zero_secret_inside__returns_false_records_the_others(registry):
    others = [_secret(1), _secret(2)]

    assert registry.register_secret_batch([others[0], ZERO, others[1]]) is False

    assert registry.get_secret_reveal_time(_hash(ZERO)) == 0
    for s in others:
        assert registry.get_secret_reveal_time(_hash(s)) != 0


def test_register_secret_batch__duplicate_inside__returns_false_records_once(registry):
    s = _secret(1)
    assert registry.register_secret_batch([s, s]) is False
    assert len(_revealed(registry)) == 1
    assert registry.get_secret_reveal_time(_hash(s)) == boa.env.evm.patch.timestamp


def test_register_secret_batch__empty__returns_true_records_nothing(registry):
    # Vacuous truth: no secret failed to be newly registered.
    assert registry.register_secret_batch([]) is True
    assert _revealed(registry) == []


def test_register_secret_batch__max_size__returns_true(registry):
    secrets = [_secret(i) for i in range(MAX_BATCH)]
    assert registry.register_secret_batch(secrets) is True
    assert (
        registry.get_secret_reveal_times([_hash(s) for s in secrets])
        == [boa.env.evm.patch.timestamp] * MAX_BATCH
    )


def test_register_secret_batch__over_max_size__reverts(registry):
    # boa refuses to encode an over-long array, so build the calldata by hand.
    secrets = [_secret(i) for i in range(MAX_BATCH + 1)]
    selector = function_signature_to_4byte_selector("register_secret_batch(bytes32[])")
    calldata = selector + encode(["bytes32[]"], [secrets])
    with pytest.raises(Revert):  # the ABI decoder's bound check: no reason string
        boa.env.raw_call(registry.address, data=calldata)
    assert registry.get_secret_reveal_time(_hash(secrets[0])) == 0


# --- views ------------------------------------------------------------------


def test_get_secret_reveal_time__registered__returns_timestamp(registry):
    registry.register_secret(_secret(1))
    assert registry.get_secret_reveal_time(_hash(_secret(1))) == boa.env.evm.patch.timestamp


def test_get_secret_reveal_time__never_registered__returns_zero(registry):
    assert registry.get_secret_reveal_time(_hash(_secret(1))) == 0


def test_get_secret_reveal_time__secret_instead_of_hash__returns_zero(registry):
    # The key is sha256(secret), never the secret itself.
    registry.register_secret(_secret(1))
    assert registry.get_secret_reveal_time(_secret(1)) == 0


def test_get_secret_reveal_times__mixed__returns_times_in_order_zero_for_unknown(registry):
    registry.register_secret(_secret(1))
    t1 = boa.env.evm.patch.timestamp
    boa.env.time_travel(seconds=100)
    registry.register_secret(_secret(2))
    t2 = boa.env.evm.patch.timestamp

    hashes = [_hash(_secret(2)), _hash(_secret(3)), _hash(_secret(1))]
    assert registry.get_secret_reveal_times(hashes) == [t2, 0, t1]


def test_get_secret_reveal_times__empty__returns_empty(registry):
    assert registry.get_secret_reveal_times([]) == []


def test_secrethash_to_timestamp__getter__agrees_with_get_secret_reveal_time(registry):
    registry.register_secret(_secret(1))
    h = _hash(_secret(1))
    assert registry.secrethash_to_timestamp(h) == registry.get_secret_reveal_time(h) != 0


# --- the interface ----------------------------------------------------------

CONSUMER = """
# pragma version ~=0.4.3
from .interfaces import ISecretRegistry

registry: public(ISecretRegistry)

@deploy
def __init__(registry: address):
    self.registry = ISecretRegistry(registry)

@external
def register(secret: bytes32) -> bool:
    return extcall self.registry.register_secret(secret)

@external
def register_batch(secrets: DynArray[bytes32, 256]) -> bool:
    return extcall self.registry.register_secret_batch(secrets)

@view
@external
def reveal_time(secrethash: bytes32) -> uint256:
    return staticcall self.registry.get_secret_reveal_time(secrethash)

@view
@external
def reveal_times(secrethashes: DynArray[bytes32, 256]) -> DynArray[uint256, 256]:
    return staticcall self.registry.get_secret_reveal_times(secrethashes)

@view
@external
def raw_time(secrethash: bytes32) -> uint256:
    return staticcall self.registry.secrethash_to_timestamp(secrethash)
"""


def test_interface__imported_from_contracts_dir__calls_registry(registry):
    # The filename places the consumer inside contracts/, so the relative
    # import resolves exactly as it will for the token network.
    consumer = boa.loads(CONSUMER, registry.address, filename=str(CONTRACTS / "consumer.vy"))
    s = _secret(1)
    now = boa.env.evm.patch.timestamp

    assert consumer.register(s) is True
    assert consumer.register(s) is False
    assert consumer.register_batch([_secret(2)]) is True
    assert consumer.reveal_time(_hash(s)) == now
    assert consumer.raw_time(_hash(s)) == now
    assert consumer.reveal_times([_hash(s), _hash(_secret(9))]) == [now, 0]
