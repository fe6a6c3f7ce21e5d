# pragma version ~=0.4.3
"""
@title Blueprint token network factory (gas bench only; never deployed for real)
@notice The alternative to the registry's minimal-proxy clones that `bench/gas.py`
        measures: each token network is a full copy of the implementation's code,
        created from an ERC-5202 blueprint with `create_from_blueprint`, then
        initialized in the same transaction. It mirrors the registry's
        `create_token_network` (token check, one network per token, event) so that
        the two figures differ only by how the network's code comes to exist.
@custom:security None: a measuring harness. It has no settle-window floor or
        ceiling and nobody should ever use it outside the gas bench.
"""

from ethereum.ercs import IERC20


interface ITokenNetwork:
    def initialize(
        token: address,
        settle_window_min: uint256,
        settle_window_max: uint256,
        participant_deposit_limit: uint256,
        network_deposit_limit: uint256,
    ): nonpayable


blueprint: public(immutable(address))
secret_registry: public(immutable(address))
token_to_token_network: public(HashMap[address, address])


event TokenNetworkCreated:
    token: indexed(address)
    token_network: indexed(address)
    settle_window_min: uint256
    settle_window_max: uint256
    participant_deposit_limit: uint256
    network_deposit_limit: uint256


@deploy
def __init__(_blueprint: address, _secret_registry: address):
    """
    @notice Records the blueprint of the token network and the secret registry.
    @param _blueprint An ERC-5202 blueprint of an initializable token network.
    @param _secret_registry The secret registry every network uses.
    """
    blueprint = _blueprint
    secret_registry = _secret_registry


@external
def create_token_network(
    token: address,
    settle_window_min: uint256,
    settle_window_max: uint256,
    participant_deposit_limit: uint256,
    network_deposit_limit: uint256,
) -> address:
    """
    @notice Creates a full copy of the token network for `token` and initializes it.
    @param token An ERC-20 token contract.
    @param settle_window_min Smallest settle window channels may choose (seconds).
    @param settle_window_max Largest settle window channels may choose (seconds).
    @param participant_deposit_limit Cap on one participant's total deposit.
    @param network_deposit_limit Cap on the tokens the network may hold.
    @return The new token network's address.
    """
    assert token.is_contract, "blueprint_factory: token is not a contract"
    assert self.token_to_token_network[token] == empty(address), "blueprint_factory: exists"
    supply: uint256 = staticcall IERC20(token).totalSupply()

    token_network: address = create_from_blueprint(blueprint, secret_registry)
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
