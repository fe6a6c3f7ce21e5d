# pragma version ~=0.4.3
"""
@title SmartMesh no-return test token
@notice A USDT-like token: `transfer`, `transferFrom` and `approve` return
        no data at all (not even a bool) and revert on failure. For
        development networks and tests ONLY (it checks that the token
        network accepts empty return data as success). It must never be
        deployed on a real network: anybody can mint any amount.
@custom:security None on purpose: `mint` is open to everybody. Does not
        implement `IERC20` because the return types differ; otherwise the
        semantics are standard (infinite approval never decreases,
        transfers to the zero address revert).
"""


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
def transfer(to: address, amount: uint256):
    """
    @notice Moves `amount` tokens from the caller to `to`; returns nothing.
    @param to The receiver.
    @param amount The number of tokens.
    """
    self._transfer(msg.sender, to, amount)


@external
def transferFrom(owner: address, to: address, amount: uint256):
    """
    @notice Moves `amount` tokens from `owner` to `to`, spending the
            caller's allowance; returns nothing.
    @param owner The account the tokens are taken from.
    @param to The receiver.
    @param amount The number of tokens.
    """
    self._spend_allowance(owner, msg.sender, amount)
    self._transfer(owner, to, amount)


@external
def approve(spender: address, amount: uint256):
    """
    @notice Sets `spender`'s allowance over the caller's tokens to
            `amount`; returns nothing.
    @param spender The account allowed to spend.
    @param amount The allowance; `max_value(uint256)` never decreases.
    """
    self.allowance[msg.sender][spender] = amount
    log Approval(owner=msg.sender, spender=spender, value=amount)


@external
def mint(to: address, amount: uint256):
    """
    @notice Creates `amount` new tokens for `to`. Anybody may call it: this
            is a faucet for development networks.
    @param to The receiver of the new tokens.
    @param amount The number of tokens to create.
    """
    assert to != empty(address), "no_return_token: mint to the zero address"
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
    assert to != empty(address), "no_return_token: transfer to the zero address"
    assert self.balanceOf[owner] >= amount, "no_return_token: insufficient balance"
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
    assert allowed >= amount, "no_return_token: insufficient allowance"
    self.allowance[owner][spender] = allowed - amount
