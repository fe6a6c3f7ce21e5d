# pragma version ~=0.4.3
"""
@title SmartMesh lying test token
@notice An ERC-20 token whose `transfer` and `transferFrom` return True but
        move nothing: no balance, allowance or supply changes and no event.
        For development networks and tests ONLY (it checks that the token
        network measures its balance instead of trusting the return value).
        It must never be deployed on a real network.
@custom:security Deliberately broken: every transfer is a lie. `mint` and
        `approve` work normally (and `mint` is open to everybody) so that a
        test fails only because of the lie.
"""


from ethereum.ercs import IERC20
from ethereum.ercs import IERC20Detailed

implements: IERC20
implements: IERC20Detailed


event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256


event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256


name: public(String[64])
symbol: public(String[32])
decimals: public(uint8)
totalSupply: public(uint256)
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])


@deploy
def __init__(name_: String[64], symbol_: String[32], decimals_: uint8):
    """
    @notice Sets the token's metadata; the supply starts at zero.
    @param name_ The token's name.
    @param symbol_ The token's symbol.
    @param decimals_ The token's number of decimals.
    """
    self.name = name_
    self.symbol = symbol_
    self.decimals = decimals_


@external
def transfer(to: address, amount: uint256) -> bool:
    """
    @notice Pretends to move `amount` tokens from the caller to `to`.
    @param to Ignored.
    @param amount Ignored.
    @return bool Always True, although nothing moved.
    """
    return True


@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    """
    @notice Pretends to move `amount` tokens from `owner` to `to`.
    @param owner Ignored.
    @param to Ignored.
    @param amount Ignored.
    @return bool Always True, although nothing moved.
    """
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    """
    @notice Sets `spender`'s allowance over the caller's tokens to `amount`.
    @param spender The account allowed to spend.
    @param amount The allowance.
    @return bool Always True.
    """
    self.allowance[msg.sender][spender] = amount
    log Approval(owner=msg.sender, spender=spender, value=amount)
    return True


@external
def mint(to: address, amount: uint256):
    """
    @notice Creates `amount` new tokens for `to`. Anybody may call it: this
            is a faucet for development networks.
    @param to The receiver of the new tokens.
    @param amount The number of tokens to create.
    """
    assert to != empty(address), "lying_token: mint to the zero address"
    self.totalSupply += amount
    self.balanceOf[to] += amount
    log Transfer(sender=empty(address), receiver=to, value=amount)
