# pragma version ~=0.4.3
"""
@title SmartMesh reentrant test token
@notice A standard ERC-20 token that, once armed, calls back into a chosen
        contract at the start of its next `transfer` or `transferFrom`. For
        development networks and tests ONLY (it checks the token network's
        reentrancy guard). It must never be deployed on a real network:
        anybody can mint any amount and arm the callback.
@custom:security Deliberately hostile. The callback fires once per `arm`:
        the token disarms itself before calling, so a callback that
        transfers again cannot recurse forever. The callback's failure is
        re-raised with its revert data, so the caller sees the guarded
        target's own revert reason. Otherwise standard ERC-20 semantics.
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


# @dev Largest callback calldata `arm` accepts.
_MAX_PAYLOAD: constant(uint256) = 2048


name: public(String[64])
symbol: public(String[32])
decimals: public(uint8)
totalSupply: public(uint256)
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])

# @dev True while a callback is pending.
armed: public(bool)
# @dev The contract the callback calls.
target: public(address)
# @dev The callback's calldata.
payload: public(Bytes[_MAX_PAYLOAD])


@deploy
def __init__(name_: String[64], symbol_: String[32], decimals_: uint8):
    """
    @notice Sets the token's metadata; the supply starts at zero, disarmed.
    @param name_ The token's name.
    @param symbol_ The token's symbol.
    @param decimals_ The token's number of decimals.
    """
    self.name = name_
    self.symbol = symbol_
    self.decimals = decimals_


@external
def arm(target: address, payload: Bytes[_MAX_PAYLOAD]):
    """
    @notice Makes the next `transfer` or `transferFrom` first call `target`
            with `payload`. Anybody may call it.
    @param target The contract to call back.
    @param payload The calldata of the callback.
    """
    self.armed = True
    self.target = target
    self.payload = payload


@external
def transfer(to: address, amount: uint256) -> bool:
    """
    @notice Fires the pending callback, if any, then moves `amount` tokens
            from the caller to `to`.
    @param to The receiver.
    @param amount The number of tokens.
    @return bool Always True; failures (the callback's too) revert.
    """
    self._reenter()
    self._transfer(msg.sender, to, amount)
    return True


@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    """
    @notice Fires the pending callback, if any, then moves `amount` tokens
            from `owner` to `to`, spending the caller's allowance.
    @param owner The account the tokens are taken from.
    @param to The receiver.
    @param amount The number of tokens.
    @return bool Always True; failures (the callback's too) revert.
    """
    self._reenter()
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
    assert to != empty(address), "reentrant_token: mint to the zero address"
    self.totalSupply += amount
    self.balanceOf[to] += amount
    log Transfer(sender=empty(address), receiver=to, value=amount)


@internal
def _reenter():
    """
    @dev Calls the armed target once. Disarms first so that the callback may
         itself transfer without recursing; `raw_call` reverts with the
         callee's revert data if the callee reverts.
    """
    if not self.armed:
        return
    self.armed = False
    raw_call(self.target, self.payload)


@internal
def _transfer(owner: address, to: address, amount: uint256):
    """
    @dev Moves `amount` tokens from `owner` to `to`.
    @param owner The account the tokens are taken from.
    @param to The receiver.
    @param amount The number of tokens.
    """
    assert to != empty(address), "reentrant_token: transfer to the zero address"
    assert self.balanceOf[owner] >= amount, "reentrant_token: insufficient balance"
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
    assert allowed >= amount, "reentrant_token: insufficient allowance"
    self.allowance[owner][spender] = allowed - amount
