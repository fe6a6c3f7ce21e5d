# pragma version ~=0.4.3
"""
@title SmartMesh token network registry
@notice Creates one token network per ERC-20 token, each a minimal-proxy clone
        (EIP-1167) of one token network implementation, initialized in the same
        transaction with its settle-window bounds and deposit limits.
@dev    Clones cost about 50,000 gas of creation plus their initial storage; a
        blueprint copy of the implementation's code would cost over two million
        (200 gas per byte of code); docs/contracts.md gives the measurement.
@custom:security
        - One network per token, first come: the settle-window bounds of every
          network lie within this registry's floor and ceiling, so no creator can
          squat a token with windows too short for offline participants to react.
        - The implementation initializes itself at deployment (it can never be
          initialized by anyone), and a clone is initialized in the creating
          transaction, so nobody can front-run a clone's initialization.
        - The clones hold no code of their own: a bug fixed in a new
          implementation needs a new registry; networks are never upgraded
          behind their users.
"""

from ethereum.ercs import IERC20
from .interfaces import ITokenNetwork

secret_registry: public(immutable(address))
token_network_implementation: public(immutable(address))
settle_window_floor: public(immutable(uint256))
settle_window_ceiling: public(immutable(uint256))
token_to_token_network: public(HashMap[address, address])

event TokenNetworkCreated:
    token: indexed(address)
    token_network: indexed(address)
    settle_window_min: uint256
    settle_window_max: uint256
    participant_deposit_limit: uint256
    network_deposit_limit: uint256


@deploy
def __init__(
    _secret_registry: address,
    _implementation: address,
    _settle_window_floor: uint256,
    _settle_window_ceiling: uint256,
):
    """
    @notice Sets the secret registry, the token network implementation and the
            bounds every network's settle windows must lie within.
    @param _secret_registry The secret registry all networks use.
    @param _implementation A deployed `token_network.vy` (self-locked).
    @param _settle_window_floor Smallest settle window any network may allow (seconds).
    @param _settle_window_ceiling Largest settle window any network may allow (seconds).
    """
    assert _secret_registry.is_contract, "registry: secret registry is not a contract"
    assert _implementation.is_contract, "registry: implementation is not a contract"
    assert staticcall ITokenNetwork(_implementation).secret_registry() == _secret_registry, "registry: implementation uses another secret registry"
    assert _settle_window_floor > 0, "registry: zero settle window floor"
    assert _settle_window_floor <= _settle_window_ceiling, "registry: bad settle window bounds"
    secret_registry = _secret_registry
    token_network_implementation = _implementation
    settle_window_floor = _settle_window_floor
    settle_window_ceiling = _settle_window_ceiling


@external
def create_token_network(
    token: address,
    settle_window_min: uint256,
    settle_window_max: uint256,
    participant_deposit_limit: uint256,
    network_deposit_limit: uint256,
) -> address:
    """
    @notice Creates the token network of `token`; anyone may call, once per token.
    @param token An ERC-20 token contract.
    @param settle_window_min Smallest settle window channels may choose (seconds).
    @param settle_window_max Largest settle window channels may choose (seconds).
    @param participant_deposit_limit Cap on one participant's total deposit (< 2**127).
    @param network_deposit_limit Cap on the tokens the network may hold.
    @return The new token network's address.
    """
    assert token.is_contract, "registry: token is not a contract"
    assert self.token_to_token_network[token] == empty(address), "registry: token already has a network"
    assert settle_window_min >= settle_window_floor, "registry: settle window below floor"
    assert settle_window_max <= settle_window_ceiling, "registry: settle window above ceiling"
    assert settle_window_min <= settle_window_max, "registry: bad settle window bounds"
    # A call that reverts or returns garbage here means `token` is not an ERC-20.
    supply: uint256 = staticcall IERC20(token).totalSupply()

    token_network: address = create_minimal_proxy_to(token_network_implementation)
    self.token_to_token_network[token] = token_network
    extcall ITokenNetwork(token_network).initialize(
        token, settle_window_min, settle_window_max,
        participant_deposit_limit, network_deposit_limit,
    )
    log TokenNetworkCreated(
        token=token, token_network=token_network,
        settle_window_min=settle_window_min, settle_window_max=settle_window_max,
        participant_deposit_limit=participant_deposit_limit, network_deposit_limit=network_deposit_limit,
    )
    return token_network
