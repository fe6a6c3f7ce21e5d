# pragma version ~=0.4.3
"""
@title SmartMesh test token
@notice A standard ERC-20 token with a public faucet `mint`, for
        development networks and tests ONLY. It must never be deployed on a
        real network: anybody can mint any amount.
@custom:security None on purpose: `mint` is open to everybody. Otherwise
        standard semantics: `transferFrom` spends the allowance unless it is
        `max_value(uint256)` (infinite approval); `approve` overwrites, so
        the usual approve front-running race exists, as in every ERC-20;
        transfers to the zero address revert.
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
    @notice Moves `amount` tokens from the caller to `to`.
    @param to The receiver.
    @param amount The number of tokens.
    @return bool Always True; failures revert.
    """
    self._transfer(msg.sender, to, amount)
    return True


@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    """
    @notice Moves `amount` tokens from `owner` to `to`, spending the
            caller's allowance.
    @param owner The account the tokens are taken from.
    @param to The receiver.
    @param amount The number of tokens.
    @return bool Always True; failures revert.
    """
    self._spend_allowance(owner, msg.sender, amount)
    self._transfer(owner, to, amount)
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    """
    @notice Sets `spender`'s allowance over the caller's tokens to `amount`.
    @param spender The account allowed to spend.
    @param amount The allowance; `max_value(uint256)` never decreases.
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
    assert to != empty(address), "test_token: mint to the zero address"
    self.totalSupply += amount
    self.balanceOf[to] += amount
    log Transfer(sender=empty(address), receiver=to, value=amount)


@internal
def _transfer(owner: address, to: address, amount: uint256):
    """
    @dev Moves `amount` tokens from `owner` to `to`.
    @param owner The account the tokens are taken from.
    @param to The receiver.
    @param amount The number of tokens.
    """
    assert to != empty(address), "test_token: transfer to the zero address"
    assert self.balanceOf[owner] >= amount, "test_token: insufficient balance"
    self.balanceOf[owner] -= amount
    self.balanceOf[to] += amount
    log Transfer(sender=owner, receiver=to, value=amount)


@internal
def _spend_allowance(owner: address, spender: address, amount: uint256):
    """
    @dev Spends `amount` of `spender`'s allowance over `owner`'s tokens,
         unless the allowance is infinite.
    @param owner The account whose tokens are spent.
    @param spender The account spending them.
    @param amount The number of tokens.
    """
    allowed: uint256 = self.allowance[owner][spender]
    if allowed == max_value(uint256):
        return
    assert allowed >= amount, "test_token: insufficient allowance"
    self.allowance[owner][spender] = allowed - amount
