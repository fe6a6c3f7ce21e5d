# pragma version ~=0.4.3
"""
@title SmartMesh fee-on-transfer test token
@notice An ERC-20 token whose `transfer` and `transferFrom` burn 1% of the
        amount: the receiver gets `amount - amount // 100`. For development
        networks and tests ONLY (it checks that the token network credits
        what it received, not what it asked for). It must never be deployed
        on a real network: anybody can mint any amount.
@custom:security None on purpose: `mint` is open to everybody. The sender
        is debited the full `amount`; the fee is burned (the total supply
        falls by it) and logged as a `Transfer` to the zero address.
        `transferFrom` spends the full `amount` of allowance unless it is
        `max_value(uint256)`.
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


# @dev The fee is `amount // _FEE_DIVISOR`, i.e. 1%, rounded down.
_FEE_DIVISOR: constant(uint256) = 100


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
    @notice Debits `amount` from the caller and credits `to` with
            `amount - amount // 100`; the rest is burned.
    @param to The receiver.
    @param amount The number of tokens debited.
    @return bool Always True; failures revert.
    """
    self._transfer(msg.sender, to, amount)
    return True


@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    """
    @notice Debits `amount` from `owner`, spending the caller's allowance,
            and credits `to` with `amount - amount // 100`; the rest is
            burned.
    @param owner The account the tokens are taken from.
    @param to The receiver.
    @param amount The number of tokens debited.
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
    @notice Creates `amount` new tokens for `to`, without fee. Anybody may
            call it: this is a faucet for development networks.
    @param to The receiver of the new tokens.
    @param amount The number of tokens to create.
    """
    assert to != empty(address), "fee_token: mint to the zero address"
    self.totalSupply += amount
    self.balanceOf[to] += amount
    log Transfer(sender=empty(address), receiver=to, value=amount)


@internal
def _transfer(owner: address, to: address, amount: uint256):
    """
    @dev Debits `amount` from `owner`, credits `to` with 99% of it and
         burns the 1% fee.
    @param owner The account the tokens are taken from.
    @param to The receiver.
    @param amount The number of tokens debited.
    """
    assert to != empty(address), "fee_token: transfer to the zero address"
    assert self.balanceOf[owner] >= amount, "fee_token: insufficient balance"
    fee: uint256 = amount // _FEE_DIVISOR
    received: uint256 = amount - fee
    self.balanceOf[owner] -= amount
    self.balanceOf[to] += received
    self.totalSupply -= fee
    log Transfer(sender=owner, receiver=to, value=received)
    if fee != 0:
        log Transfer(sender=owner, receiver=empty(address), value=fee)


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
    assert allowed >= amount, "fee_token: insufficient allowance"
    self.allowance[owner][spender] = allowed - amount
