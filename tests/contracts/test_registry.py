"""Unit tests of `contracts/token_network_registry.vy` and of `initialize` of the token network.

What belongs here: the registry's constructor checks, the implementation's constructor (its
secret registry), `create_token_network` (event, mapping, the clone and the parameters it is
initialized with, every revert, including those that come from the clone's `initialize`),
and the proof that neither the implementation nor an initialized clone can be initialized
again. What must not: channel behaviour of a network,
which the other `test_<action>.py` files cover.
"""

from __future__ import annotations

import warnings
from typing import Any

import boa
import pytest

from offchain.protocol import eip712
from tests.lib import harness
from tests.lib.harness import (
    NETWORK_LIMIT,
    PARTICIPANT_LIMIT,
    SETTLE_CEILING,
    SETTLE_FLOOR,
    SETTLE_MAX,
    SETTLE_MIN,
    ZERO_ADDRESS,
    Deployment,
)

# boa casts the EIP-1167 clone to the implementation's ABI and warns that the code differs:
# expected for every clone.
pytestmark = pytest.mark.filterwarnings("ignore:casted bytecode does not match")

# The contract caps participant deposits below 2**91 (withdraws are packed in 92 bits).
MAX_PARTICIPANT_LIMIT = 2**91 - 1
UINT32_MAX = 2**32 - 1
EIP1167_PREFIX = bytes.fromhex("363d3d373d3d3d363d73")
EIP1167_SUFFIX = bytes.fromhex("5af43d82803e903d91602b57fd5bf3")
# Creation code that returns the 45-byte runtime appended to it.
EIP1167_CREATION = bytes.fromhex("3d602d80600a3d3981f3")


def _events(contract: Any, name: str) -> list[Any]:
    # Logs of the contract's LAST call: read them before any other call, a view included.
    return [e for e in contract.get_logs() if type(e).__name__ == name]


def _network_at(address: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return harness.deployer("token_network.vy").at(address)


def _new_token(symbol: str = "T2") -> Any:
    return harness.load("test/test_token.vy", "Second Token", symbol, 18)


def _create(d: Deployment, token: Any, *limits: int) -> Any:
    params = limits or (SETTLE_MIN, SETTLE_MAX, PARTICIPANT_LIMIT, NETWORK_LIMIT)
    return d.registry.create_token_network(token.address, *params)


def _bare_clone(d: Deployment) -> Any:
    """An uninitialized EIP-1167 clone of the implementation, byte for byte what the
    registry deploys, so that `initialize`'s own checks can be reached directly."""
    runtime = EIP1167_PREFIX + harness.raw(d.implementation.address) + EIP1167_SUFFIX
    # A deployer never used before: anchors roll nonces back, so the default sender's next
    # address held other contracts in earlier tests, and boa (which casts every new EIP-1167
    # contract and prints its storage) would decode their stale storage trace as ours.
    deployer = boa.env.generate_address("bare-clone-deployer")
    address, _ = boa.env.deploy_code(sender=deployer, bytecode=EIP1167_CREATION + runtime)
    assert boa.env.get_code(address) == runtime
    return _network_at(str(address))


# --- constructor ---------------------------------------------------------------------------


def test_constructor__valid_arguments__stores_them(d):
    assert d.registry.secret_registry() == d.secret_registry.address
    assert d.registry.token_network_implementation() == d.implementation.address
    assert d.registry.settle_window_floor() == SETTLE_FLOOR
    assert d.registry.settle_window_ceiling() == SETTLE_CEILING


def test_constructor__floor_equal_to_ceiling__is_accepted(d):
    registry = harness.load(
        "token_network_registry.vy", d.secret_registry.address, d.implementation.address, 1, 1
    )
    assert registry.settle_window_floor() == 1
    assert registry.settle_window_ceiling() == 1


def test_constructor__secret_registry_not_a_contract__reverts(d, accounts):
    with boa.reverts("registry: secret registry is not a contract"):
        harness.load(
            "token_network_registry.vy", accounts[5].address, d.implementation.address, 60, 600
        )


def test_constructor__implementation_not_a_contract__reverts(d, accounts):
    with boa.reverts("registry: implementation is not a contract"):
        harness.load(
            "token_network_registry.vy", d.secret_registry.address, accounts[5].address, 60, 600
        )


def test_constructor__zero_floor__reverts(d):
    with boa.reverts("registry: zero settle window floor"):
        harness.load(
            "token_network_registry.vy", d.secret_registry.address, d.implementation.address, 0, 600
        )


def test_constructor__floor_above_ceiling__reverts(d):
    with boa.reverts("registry: bad settle window bounds"):
        harness.load(
            "token_network_registry.vy",
            d.secret_registry.address,
            d.implementation.address,
            601,
            600,
        )


def test_constructor__implementation_bound_to_another_secret_registry__reverts(d):
    other = harness.load("secret_registry.vy")
    with boa.reverts("registry: implementation uses another secret registry"):
        harness.load("token_network_registry.vy", other.address, d.implementation.address, 60, 600)


def test_constructor__implementation_bound_to_the_same_secret_registry__is_accepted(d):
    other = harness.load("secret_registry.vy")
    implementation = harness.load("token_network.vy", other.address)
    registry = harness.load(
        "token_network_registry.vy", other.address, implementation.address, 60, 600
    )
    network = _network_at(registry.create_token_network(_new_token().address, 60, 600, 1, 1))
    assert network.secret_registry() == other.address


# --- the implementation's constructor ----------------------------------------------------------


def test_implementation_constructor__secret_registry_contract__is_stored(d):
    assert d.implementation.secret_registry() == d.secret_registry.address
    assert d.network.secret_registry() == d.secret_registry.address


def test_implementation_constructor__secret_registry_not_a_contract__reverts(accounts):
    with boa.reverts("token_network: secret registry is not a contract"):
        harness.load("token_network.vy", accounts[5].address)


# --- create_token_network: positive -----------------------------------------------------------


def test_create_token_network__new_token__logs_event_and_maps_token(d, accounts):
    token = _new_token()
    with boa.env.prank(accounts[6].address):  # anyone may create
        address = d.registry.create_token_network(token.address, 700, 8000, 1000, 5000)
    (event,) = _events(d.registry, "TokenNetworkCreated")

    assert event.token == token.address
    assert event.token_network == address
    assert (
        event.settle_window_min,
        event.settle_window_max,
        event.participant_deposit_limit,
        event.network_deposit_limit,
    ) == (700, 8000, 1000, 5000)
    assert d.registry.token_to_token_network(token.address) == address


def test_create_token_network__new_token__clone_is_initialized_with_the_parameters(d):
    token = _new_token()
    network = _network_at(_create(d, token, 700, 8000, 1000, 5000))

    assert network.token() == token.address
    assert network.secret_registry() == d.secret_registry.address
    assert network.settle_window_min() == 700
    assert network.settle_window_max() == 8000
    assert network.participant_deposit_limit() == 1000
    assert network.network_deposit_limit() == 5000


def test_create_token_network__new_token__deploys_an_eip1167_clone_of_the_implementation(d):
    address = _create(d, _new_token())
    expected = EIP1167_PREFIX + harness.raw(d.implementation.address) + EIP1167_SUFFIX
    assert boa.env.get_code(address) == expected


def test_create_token_network__two_tokens__get_distinct_networks_and_domains(d):
    first = _network_at(_create(d, _new_token("T2")))
    second = _network_at(_create(d, _new_token("T3")))

    assert first.address != second.address
    assert first.domain_separator() != second.domain_separator()
    # The domain names the clone, never the shared implementation.
    for network in (first, second, d.network):
        domain = eip712.Domain(
            chain_id=boa.env.evm.patch.chain_id, verifying_contract=harness.raw(network.address)
        )
        assert network.domain_separator() == domain.separator


def test_create_token_network__bounds_at_floor_and_ceiling__are_accepted(d):
    network = _network_at(_create(d, _new_token(), SETTLE_FLOOR, SETTLE_CEILING, 1, 1))
    assert network.settle_window_min() == SETTLE_FLOOR
    assert network.settle_window_max() == SETTLE_CEILING


def test_create_token_network__min_equal_to_max__is_accepted(d):
    network = _network_at(_create(d, _new_token(), 900, 900, 10, 10))
    assert (network.settle_window_min(), network.settle_window_max()) == (900, 900)


def test_create_token_network__largest_participant_limit__is_accepted(d):
    network = _network_at(
        _create(d, _new_token(), SETTLE_MIN, SETTLE_MAX, MAX_PARTICIPANT_LIMIT, 2**256 - 1)
    )
    assert network.participant_deposit_limit() == MAX_PARTICIPANT_LIMIT
    assert network.network_deposit_limit() == 2**256 - 1


def test_create_token_network__after_a_failed_attempt__token_can_still_get_a_network(d):
    token = _new_token()
    with boa.reverts("token_network: zero deposit limit"):
        _create(d, token, SETTLE_MIN, SETTLE_MAX, 0, NETWORK_LIMIT)
    assert d.registry.token_to_token_network(token.address) == ZERO_ADDRESS

    address = _create(d, token)
    assert d.registry.token_to_token_network(token.address) == address


# --- create_token_network: reverts of the registry ---------------------------------------------


def test_create_token_network__token_not_a_contract__reverts(d, accounts):
    with boa.reverts("registry: token is not a contract"):
        d.registry.create_token_network(
            accounts[5].address, SETTLE_MIN, SETTLE_MAX, PARTICIPANT_LIMIT, NETWORK_LIMIT
        )


def test_create_token_network__token_already_has_a_network__reverts(d):
    with boa.reverts("registry: token already has a network"):
        _create(d, d.token)
    assert d.registry.token_to_token_network(d.token.address) == d.network.address


def test_create_token_network__min_below_floor__reverts(d):
    with boa.reverts("registry: settle window below floor"):
        _create(d, _new_token(), SETTLE_FLOOR - 1, SETTLE_MAX, 10, 10)


def test_create_token_network__max_above_ceiling__reverts(d):
    with boa.reverts("registry: settle window above ceiling"):
        _create(d, _new_token(), SETTLE_MIN, SETTLE_CEILING + 1, 10, 10)


def test_create_token_network__min_above_max__reverts(d):
    with boa.reverts("registry: bad settle window bounds"):
        _create(d, _new_token(), 901, 900, 10, 10)


def test_create_token_network__contract_without_erc20_interface__reverts(d):
    # The secret registry has no totalSupply: the registry's probe call fails.
    with boa.reverts(compiler="external call failed"):
        _create(d, d.secret_registry)
    assert d.registry.token_to_token_network(d.secret_registry.address) == ZERO_ADDRESS


# --- create_token_network: reverts of the clone's initialize -----------------------------------


def test_create_token_network__zero_participant_limit__reverts(d):
    with boa.reverts("token_network: zero deposit limit"):
        _create(d, _new_token(), SETTLE_MIN, SETTLE_MAX, 0, NETWORK_LIMIT)


def test_create_token_network__participant_limit_above_the_cap__reverts(d):
    with boa.reverts("token_network: deposit limit too high"):
        _create(d, _new_token(), SETTLE_MIN, SETTLE_MAX, MAX_PARTICIPANT_LIMIT + 1, 2**256 - 1)


def test_create_token_network__participant_limit_above_network_limit__reverts(d):
    with boa.reverts("token_network: bad deposit limits"):
        _create(d, _new_token(), SETTLE_MIN, SETTLE_MAX, 1001, 1000)


def test_create_token_network__window_above_uint32__reverts(d):
    # Only a registry whose ceiling exceeds 2**32 - 1 lets the clone's own bound show.
    registry = harness.load(
        "token_network_registry.vy", d.secret_registry.address, d.implementation.address, 60, 2**40
    )
    with boa.reverts("token_network: settle window too long"):
        registry.create_token_network(_new_token().address, 60, UINT32_MAX + 1, 10, 10)

    address = registry.create_token_network(_new_token("T3").address, 60, UINT32_MAX, 10, 10)
    assert _network_at(address).settle_window_max() == UINT32_MAX


# --- initialize --------------------------------------------------------------------------------


def test_initialize__implementation__reverts_already_initialized(d, accounts):
    with boa.env.prank(accounts[5].address), boa.reverts("token_network: already initialized"):
        d.implementation.initialize(d.token.address, SETTLE_MIN, SETTLE_MAX, 10, 10)
    assert d.implementation.token() == ZERO_ADDRESS


def test_initialize__created_clone_again__reverts_already_initialized(d, accounts):
    for caller in (accounts[5].address, d.registry.address):
        with boa.env.prank(caller), boa.reverts("token_network: already initialized"):
            d.network.initialize(_new_token().address, 1, 2, 1, 1)
    assert d.network.token() == d.token.address
    assert d.network.settle_window_min() == SETTLE_MIN


def test_initialize__bare_clone_valid_parameters__stores_them_once(d):
    network = _bare_clone(d)
    network.initialize(d.token.address, 1, UINT32_MAX, 5, 5)

    assert network.token() == d.token.address
    assert network.secret_registry() == d.secret_registry.address  # the implementation's
    assert network.settle_window_min() == 1
    assert network.settle_window_max() == UINT32_MAX
    with boa.reverts("token_network: already initialized"):
        network.initialize(d.token.address, 1, 2, 5, 5)


@pytest.mark.parametrize(
    ("token", "window_min", "window_max", "participant", "network", "reason"),
    [
        (False, 1, 2, 5, 5, "token_network: zero token"),
        (True, 0, 2, 5, 5, "token_network: zero settle window"),
        (True, 3, 2, 5, 5, "token_network: bad settle window bounds"),
        (True, 1, UINT32_MAX + 1, 5, 5, "token_network: settle window too long"),
        (True, 1, 2, 0, 5, "token_network: zero deposit limit"),
        (True, 1, 2, MAX_PARTICIPANT_LIMIT + 1, 2**128, "token_network: deposit limit too high"),
        (True, 1, 2, 6, 5, "token_network: bad deposit limits"),
    ],
)
def test_initialize__bare_clone_invalid_parameter__reverts(
    d, token, window_min, window_max, participant, network, reason
):
    clone = _bare_clone(d)
    with boa.reverts(reason):
        clone.initialize(
            d.token.address if token else ZERO_ADDRESS, window_min, window_max, participant, network
        )
    assert clone.token() == ZERO_ADDRESS
