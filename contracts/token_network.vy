# pragma version ~=0.4.3
# pragma nonreentrancy off
"""
@title SmartMesh token network
@notice Payment channels of one ERC-20 token between pairs of participants:
        open, deposit, withdraw while open, cooperative settle, close with the
        partner's balance proof, update by the non-closer or its delegate, settle
        after the window, and unlock of pending locks whose secret was revealed
        in time. Every clone of this implementation serves one token; the
        registry creates and initializes clones.
@dev    Storage is packed because storage writes are most of a channel's gas.
        The core word holds, while open, state, generation, settle window and both
        total withdraws (92 bits each); once closed, state, generation, settle
        deadline, closer and both nonces, the withdraws having moved to their own
        word. Deposits share one word (128 bits each). `initialize` caps the
        participant deposit limit below 2**91, so D1 + D2 and every total withdraw
        fit 92 bits.
@custom:security
        - Replay: every signature is EIP-712 over a domain naming chain id and
          this clone's address; every struct names the channel id and its
          generation, which rises on each reopening of the pair. Withdraw totals
          and nonces are monotonic, so a replayed signature never applies twice.
        - Malleability: only low-s signatures with v in {27, 28} are accepted and
          the zero address never counts as a signer.
        - Reentrancy: every mutating entry point holds the contract-wide lock,
          and state is written before any token call (checks-effects-interactions).
        - Tokens: incoming transfers are checked by balance difference; a token
          that takes a fee or lies about a transfer is refused at deposit, so the
          contract's balance always covers what it owes. Rebasing tokens are not
          supported.
        - Griefing windows: the non-closer (or its delegate) has the whole settle
          window to submit the closer's newer proof; settle never reverts for a
          reachable state (saturating payouts); unlock is open to anyone and can
          only pay the rightful parties.
        - Delegation: a delegate can submit only the exact proof the participant
          authorized, and is paid at most its named reward, never more than the
          participant's settled share.
"""

from ethereum.ercs import IERC20
from .interfaces import ISecretRegistry

# ---------------------------------------------------------------------------
# Constants

# Channel states kept in the low byte of the core word. NONE is also "settled":
# the generation survives in the word so that a reopening gets a fresh one.
STATE_NONE: constant(uint256) = 0
STATE_OPENED: constant(uint256) = 1
STATE_CLOSED: constant(uint256) = 2

# Bit layout of the core word. Both states: state 0..7, generation 8..39.
# Open: settle window 40..71, withdraw1 72..163, withdraw2 164..255; keeping the
# withdraws here saves a fresh storage slot (20,000 gas) on the first withdraw.
# Closed: deadline 40..103, closer 104..111, nonce1 112..175, nonce2 176..239.
GEN_SHIFT: constant(uint256) = 8
SETTLE_SHIFT: constant(uint256) = 40
WITHDRAW1_SHIFT: constant(uint256) = 72
WITHDRAW2_SHIFT: constant(uint256) = 164
CLOSER_SHIFT: constant(uint256) = 104
NONCE1_SHIFT: constant(uint256) = 112
NONCE2_SHIFT: constant(uint256) = 176
MASK8: constant(uint256) = 255
MASK32: constant(uint256) = 4294967295
MASK64: constant(uint256) = 18446744073709551615
MASK92: constant(uint256) = 4951760157141521099596496895
MASK128: constant(uint256) = 340282366920938463463374607431768211455
MASK160: constant(uint256) = 1461501637330902918203684832716283019655932542975

# Participant deposit limits stay below 2**91 so that D1 + D2, and therefore any
# total withdraw (at most D1 + D2), fits the 92-bit fields of the open core word.
MAX_PARTICIPANT_DEPOSIT_LIMIT: constant(uint256) = 2475880078570760549798248447
# Delegation rewards are packed beside the delegate's address in 96 bits.
MAX_REWARD: constant(uint256) = 79228162514264337593543950335

# Cap on pending locks per direction; unlock of that many stays far below a
# block's gas limit (about 2,300 gas per lock).
MAX_PENDING_LOCKS: constant(uint256) = 256
LOCK_SIZE: constant(uint256) = 96
MAX_LOCKS_BYTES: constant(uint256) = 24576

# secp256k1 group order / 2: signatures with a higher s are malleable twins.
HALF_N: constant(uint256) = 57896044618658097711785492504343953926418782139537452191302581570759080747168

EIP712_DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
NAME_HASH: constant(bytes32) = keccak256("SmartMesh TokenNetwork")
VERSION_HASH: constant(bytes32) = keccak256("1")
BALANCE_PROOF_TYPEHASH: constant(bytes32) = keccak256(
    "BalanceProof(bytes32 channelId,uint32 generation,uint64 nonce,bytes32 balanceHash,bytes32 additionalHash)"
)
CLOSE_TYPEHASH: constant(bytes32) = keccak256(
    "Close(bytes32 channelId,uint32 generation,uint64 nonce,bytes32 balanceHash,bytes32 additionalHash)"
)
DELEGATION_TYPEHASH: constant(bytes32) = keccak256(
    "Delegation(bytes32 channelId,uint32 generation,uint64 nonce,bytes32 balanceHash,address delegate,uint256 reward)"
)
WITHDRAW_TYPEHASH: constant(bytes32) = keccak256(
    "Withdraw(bytes32 channelId,uint32 generation,address participant,uint256 totalWithdraw,uint64 expiration)"
)
COOPERATIVE_SETTLE_TYPEHASH: constant(bytes32) = keccak256(
    "CooperativeSettle(bytes32 channelId,uint32 generation,uint256 totalWithdraw1,uint256 totalWithdraw2,uint64 expiration)"
)

# ---------------------------------------------------------------------------
# Types

struct Core:
    state: uint256
    generation: uint256
    settle: uint256  # the settle window while open, the settle deadline once closed
    closer: uint256  # 0 none, 1 participant1, 2 participant2 (closed only)
    nonce1: uint256  # closed only
    nonce2: uint256  # closed only
    withdraw1: uint256  # open only; in _withdraws once closed
    withdraw2: uint256  # open only

struct ChannelInfo:
    channel_id: bytes32
    participant1: address
    participant2: address
    state: uint256
    generation: uint256
    settle_window_or_deadline: uint256
    closer: address

struct ParticipantInfo:
    deposit: uint256
    withdrawn: uint256
    nonce: uint256
    balance_hash: bytes32
    delegate: address
    reward: uint256

struct Pair:
    participant1: address
    participant2: address
    channel_id: bytes32

# ---------------------------------------------------------------------------
# Events

event ChannelOpened:
    channel_id: indexed(bytes32)
    participant1: indexed(address)
    participant2: indexed(address)
    generation: uint256
    settle_window: uint256

event ChannelNewDeposit:
    channel_id: indexed(bytes32)
    participant: indexed(address)
    total_deposit: uint256

event ChannelWithdraw:
    channel_id: indexed(bytes32)
    participant: indexed(address)
    total_withdraw: uint256

event ChannelClosed:
    channel_id: indexed(bytes32)
    closing_participant: indexed(address)
    nonce: uint256
    balance_hash: bytes32

event NonClosingBalanceProofUpdated:
    channel_id: indexed(bytes32)
    closing_participant: indexed(address)
    nonce: uint256
    balance_hash: bytes32
    submitter: address

event ChannelSettled:
    channel_id: indexed(bytes32)
    generation: uint256
    participant1_amount: uint256
    participant2_amount: uint256
    participant1_locked: uint256
    participant2_locked: uint256

event DelegateRewarded:
    channel_id: indexed(bytes32)
    participant: indexed(address)
    delegate: indexed(address)
    reward: uint256

event ChannelCooperativeSettled:
    channel_id: indexed(bytes32)
    generation: uint256
    participant1_amount: uint256
    participant2_amount: uint256

event ChannelUnlocked:
    channel_id: indexed(bytes32)
    receiver: indexed(address)
    sender: indexed(address)
    locksroot: bytes32
    unlocked_amount: uint256
    returned_amount: uint256

# ---------------------------------------------------------------------------
# Storage

token: public(IERC20)
# The same for every clone: it lives in the implementation's code, not in storage.
secret_registry: public(immutable(ISecretRegistry))
settle_window_min: public(uint256)
settle_window_max: public(uint256)
participant_deposit_limit: public(uint256)
network_deposit_limit: public(uint256)
_initialized: bool

_channels: HashMap[bytes32, uint256]  # packed Core
_deposits: HashMap[bytes32, uint256]  # participant1 low 128 bits, participant2 high
_withdraws: HashMap[bytes32, uint256]  # same layout, written at close
_balance_hashes: HashMap[bytes32, HashMap[uint256, bytes32]]  # [channel][index 0|1]
_delegations: HashMap[bytes32, HashMap[uint256, uint256]]  # delegate | reward << 160
_unlocks: HashMap[bytes32, uint256]  # unlock key -> tokens retained for those locks


@deploy
def __init__(_secret_registry: ISecretRegistry):
    """
    @notice Sets the secret registry every clone uses, and locks the implementation
            itself: only clones are initialized.
    @param _secret_registry The secret registry.
    """
    assert _secret_registry.address.is_contract, "token_network: secret registry is not a contract"
    secret_registry = _secret_registry
    self._initialized = True


@external
def initialize(
    token: IERC20,
    settle_window_min: uint256,
    settle_window_max: uint256,
    participant_deposit_limit: uint256,
    network_deposit_limit: uint256,
):
    """
    @notice Sets up a fresh clone; the registry calls it in the creating transaction.
    @param token The ERC-20 token of this network.
    @param settle_window_min Smallest settle window (seconds) a channel may choose.
    @param settle_window_max Largest settle window (seconds).
    @param participant_deposit_limit Cap on one participant's total deposit.
    @param network_deposit_limit Cap on the tokens this network may hold.
    """
    assert not self._initialized, "token_network: already initialized"
    assert token.address != empty(address), "token_network: zero token"
    assert settle_window_min > 0, "token_network: zero settle window"
    assert settle_window_min <= settle_window_max, "token_network: bad settle window bounds"
    assert settle_window_max <= MASK32, "token_network: settle window too long"
    assert participant_deposit_limit > 0, "token_network: zero deposit limit"
    assert participant_deposit_limit <= MAX_PARTICIPANT_DEPOSIT_LIMIT, "token_network: deposit limit too high"
    assert participant_deposit_limit <= network_deposit_limit, "token_network: bad deposit limits"
    self._initialized = True
    self.token = token
    self.settle_window_min = settle_window_min
    self.settle_window_max = settle_window_max
    self.participant_deposit_limit = participant_deposit_limit
    self.network_deposit_limit = network_deposit_limit


# ---------------------------------------------------------------------------
# Channel lifecycle


@external
@nonreentrant
def open_channel(partner: address, settle_window: uint256) -> bytes32:
    """
    @notice Opens a channel between the caller and `partner`.
    @param partner The other participant.
    @param settle_window Seconds between close and settle, within the network's bounds.
    @return The channel id.
    """
    pair: Pair = self._open(msg.sender, partner, settle_window)
    return pair.channel_id


@external
@nonreentrant
def open_channel_with_deposit(partner: address, settle_window: uint256, total_deposit: uint256) -> bytes32:
    """
    @notice Opens a channel and deposits the caller's first tokens in one transaction.
    @param partner The other participant.
    @param settle_window Seconds between close and settle.
    @param total_deposit The caller's total deposit; tokens are pulled from the caller.
    @return The channel id.
    """
    pair: Pair = self._open(msg.sender, partner, settle_window)
    self._deposit(pair, msg.sender, total_deposit)
    return pair.channel_id


@external
@nonreentrant
def set_total_deposit(participant: address, partner: address, total_deposit: uint256):
    """
    @notice Raises `participant`'s total deposit; the difference is pulled from the caller.
    @dev Total-amount semantics make a retried transaction harmless.
    @param participant Whose deposit rises.
    @param partner The other participant of the channel.
    @param total_deposit The new total, strictly above the current one.
    """
    pair: Pair = self._pair(participant, partner)
    core: Core = self._core(pair.channel_id)
    assert core.state == STATE_OPENED, "token_network: channel not open"
    self._deposit(pair, participant, total_deposit)


@external
@nonreentrant
def set_total_withdraw(
    participant: address,
    partner: address,
    total_withdraw: uint256,
    expiration: uint256,
    participant_signature: Bytes[65],
    partner_signature: Bytes[65],
):
    """
    @notice Pays `participant` out of an open channel, with both participants' consent.
    @param participant Who receives the tokens.
    @param partner The other participant.
    @param total_withdraw The participant's new total withdraw, strictly above the current.
    @param expiration Last second (inclusive) at which the signatures are valid.
    @param participant_signature `Withdraw` signed by the participant.
    @param partner_signature The same `Withdraw` signed by the partner.
    """
    pair: Pair = self._pair(participant, partner)
    core: Core = self._core(pair.channel_id)
    assert core.state == STATE_OPENED, "token_network: channel not open"
    assert block.timestamp <= expiration, "token_network: withdraw expired"

    is_first: bool = participant == pair.participant1
    current: uint256 = core.withdraw2
    other: uint256 = core.withdraw1
    if is_first:
        current = core.withdraw1
        other = core.withdraw2
    assert total_withdraw > current, "token_network: total withdraw must rise"
    deposits: uint256 = self._deposits[pair.channel_id]
    # D1 + D2 < 2**92, so a total that passes this check fits its 92-bit field.
    assert total_withdraw <= (deposits & MASK128) + (deposits >> 128) - other, "token_network: withdraw exceeds deposits"

    digest: bytes32 = self._digest(keccak256(abi_encode(
        WITHDRAW_TYPEHASH, pair.channel_id, core.generation, participant, total_withdraw, expiration
    )))
    assert self._recover(digest, participant_signature) == participant, "token_network: invalid participant signature"
    assert self._recover(digest, partner_signature) == partner, "token_network: invalid partner signature"

    if is_first:
        core.withdraw1 = total_withdraw
    else:
        core.withdraw2 = total_withdraw
    self._channels[pair.channel_id] = self._pack(core)
    log ChannelWithdraw(channel_id=pair.channel_id, participant=participant, total_withdraw=total_withdraw)
    self._push(participant, total_withdraw - current)


@external
@nonreentrant
def cooperative_settle(
    participant: address,
    partner: address,
    participant_total_withdraw: uint256,
    partner_total_withdraw: uint256,
    expiration: uint256,
    participant_signature: Bytes[65],
    partner_signature: Bytes[65],
):
    """
    @notice Closes and settles an open channel at once, as both participants signed.
    @dev The signed amounts are final total withdraws (what each participant takes out
         of the channel over its whole life); each is paid its total minus what it has
         already withdrawn. They must add up to both deposits, so no pending lock can be
         left behind. Total-amount semantics make the signatures immune to later
         changes: a withdraw is deducted from the payout, a deposit breaks the sum.
    @param participant One participant.
    @param partner The other participant.
    @param participant_total_withdraw `participant`'s final total withdraw.
    @param partner_total_withdraw `partner`'s final total withdraw.
    @param expiration Last second (inclusive) at which the signatures are valid.
    @param participant_signature `CooperativeSettle` signed by `participant`.
    @param partner_signature The same struct signed by `partner`.
    """
    pair: Pair = self._pair(participant, partner)
    core: Core = self._core(pair.channel_id)
    assert core.state == STATE_OPENED, "token_network: channel not open"
    assert block.timestamp <= expiration, "token_network: cooperative settle expired"

    total1: uint256 = participant_total_withdraw
    total2: uint256 = partner_total_withdraw
    if participant != pair.participant1:
        total1 = partner_total_withdraw
        total2 = participant_total_withdraw
    assert total1 >= core.withdraw1 and total2 >= core.withdraw2, "token_network: total withdraw below withdrawn"
    deposits: uint256 = self._deposits[pair.channel_id]
    assert total1 + total2 == (deposits & MASK128) + (deposits >> 128), "token_network: payouts must add up to the channel total"

    digest: bytes32 = self._digest(keccak256(abi_encode(
        COOPERATIVE_SETTLE_TYPEHASH, pair.channel_id, core.generation, total1, total2, expiration
    )))
    assert self._recover(digest, participant_signature) == participant, "token_network: invalid participant signature"
    assert self._recover(digest, partner_signature) == partner, "token_network: invalid partner signature"

    self._clear(pair.channel_id, core.generation, False)
    log ChannelCooperativeSettled(
        channel_id=pair.channel_id, generation=core.generation,
        participant1_amount=total1 - core.withdraw1, participant2_amount=total2 - core.withdraw2,
    )
    self._push(pair.participant1, total1 - core.withdraw1)
    self._push(pair.participant2, total2 - core.withdraw2)


@external
@nonreentrant
def close_channel(
    closing_participant: address,
    non_closing_participant: address,
    nonce: uint256,
    balance_hash: bytes32,
    additional_hash: bytes32,
    non_closing_signature: Bytes[65],
    closing_signature: Bytes[65],
):
    """
    @notice Closes an open channel with the non-closing participant's latest balance proof.
    @dev The closing participant calls it, or anyone holding the closer's `Close`
         signature for exactly this proof. Nonce 0 with a zero balance hash closes
         without a proof (the closer received nothing).
    @param closing_participant Who closes.
    @param non_closing_participant Its partner, the signer of the balance proof.
    @param nonce The proof's nonce (0 = no proof).
    @param balance_hash keccak256(abi.encode(transferred, locked, locksroot)).
    @param additional_hash Binds the off-chain message that carried the proof.
    @param non_closing_signature `BalanceProof` signed by the non-closing participant.
    @param closing_signature `Close` signed by the closer; ignored when the closer calls.
    """
    pair: Pair = self._pair(closing_participant, non_closing_participant)
    core: Core = self._core(pair.channel_id)
    assert core.state == STATE_OPENED, "token_network: channel not open"
    assert nonce <= MASK64, "token_network: nonce too large"

    if msg.sender != closing_participant:
        close_digest: bytes32 = self._digest(keccak256(abi_encode(
            CLOSE_TYPEHASH, pair.channel_id, core.generation, nonce, balance_hash, additional_hash
        )))
        assert self._recover(close_digest, closing_signature) == closing_participant, "token_network: invalid closing signature"

    if nonce == 0:
        assert balance_hash == empty(bytes32), "token_network: proof without nonce"
    else:
        proof_digest: bytes32 = self._balance_proof_digest(pair.channel_id, core.generation, nonce, balance_hash, additional_hash)
        assert self._recover(proof_digest, non_closing_signature) == non_closing_participant, "token_network: invalid balance proof signature"

    non_closer_is_first: bool = non_closing_participant == pair.participant1
    if core.withdraw1 != 0 or core.withdraw2 != 0:
        self._withdraws[pair.channel_id] = core.withdraw1 | (core.withdraw2 << 128)
        core.withdraw1 = 0
        core.withdraw2 = 0
    core.state = STATE_CLOSED
    core.settle = block.timestamp + core.settle
    if non_closer_is_first:
        core.closer = 2
        core.nonce1 = nonce
    else:
        core.closer = 1
        core.nonce2 = nonce
    self._channels[pair.channel_id] = self._pack(core)
    if balance_hash != empty(bytes32):
        self._balance_hashes[pair.channel_id][self._index(non_closer_is_first)] = balance_hash
    log ChannelClosed(channel_id=pair.channel_id, closing_participant=closing_participant, nonce=nonce, balance_hash=balance_hash)


@external
@nonreentrant
def update_non_closing_balance_proof(
    closing_participant: address,
    non_closing_participant: address,
    nonce: uint256,
    balance_hash: bytes32,
    additional_hash: bytes32,
    closing_signature: Bytes[65],
    delegate: address,
    reward: uint256,
    non_closing_signature: Bytes[65],
):
    """
    @notice Submits the closer's newer balance proof for the non-closing participant.
    @dev The non-closing participant calls it itself (delegate, reward and its
         signature are then ignored), or a third party does with the non-closer's
         `Delegation` naming exactly this proof and either that party or the zero
         address as delegate. The delegation's reward is paid at settle out of the
         non-closer's share, capped by that share. A later update replaces the
         delegation; an update by the non-closer itself clears it.
    @param closing_participant Who closed; the signer of the balance proof.
    @param non_closing_participant Whose update this is.
    @param nonce The proof's nonce, above any nonce of the closer's proofs seen so far.
    @param balance_hash keccak256(abi.encode(transferred, locked, locksroot)).
    @param additional_hash Binds the off-chain message that carried the proof.
    @param closing_signature `BalanceProof` signed by the closing participant.
    @param delegate The delegate named in the delegation (zero: anyone).
    @param reward The reward named in the delegation.
    @param non_closing_signature `Delegation` signed by the non-closing participant.
    """
    pair: Pair = self._pair(closing_participant, non_closing_participant)
    core: Core = self._core(pair.channel_id)
    assert core.state == STATE_CLOSED, "token_network: channel not closed"
    assert block.timestamp <= core.settle, "token_network: settle window over"
    closer_is_first: bool = closing_participant == pair.participant1
    if closer_is_first:
        assert core.closer == 1, "token_network: not the closing participant"
        assert nonce > core.nonce1, "token_network: proof not newer"
    else:
        assert core.closer == 2, "token_network: not the closing participant"
        assert nonce > core.nonce2, "token_network: proof not newer"
    assert nonce <= MASK64, "token_network: nonce too large"

    proof_digest: bytes32 = self._balance_proof_digest(pair.channel_id, core.generation, nonce, balance_hash, additional_hash)
    assert self._recover(proof_digest, closing_signature) == closing_participant, "token_network: invalid balance proof signature"

    non_closer_index: uint256 = self._index(not closer_is_first)
    if msg.sender == non_closing_participant:
        if self._delegations[pair.channel_id][non_closer_index] != 0:
            self._delegations[pair.channel_id][non_closer_index] = 0
    else:
        assert delegate == msg.sender or delegate == empty(address), "token_network: not the named delegate"
        assert reward <= MAX_REWARD, "token_network: reward too large"
        delegation_digest: bytes32 = self._digest(keccak256(abi_encode(
            DELEGATION_TYPEHASH, pair.channel_id, core.generation, nonce, balance_hash, delegate, reward
        )))
        assert self._recover(delegation_digest, non_closing_signature) == non_closing_participant, "token_network: invalid delegation signature"
        self._delegations[pair.channel_id][non_closer_index] = convert(msg.sender, uint256) | (reward << 160)

    if closer_is_first:
        core.nonce1 = nonce
    else:
        core.nonce2 = nonce
    self._channels[pair.channel_id] = self._pack(core)
    self._balance_hashes[pair.channel_id][self._index(closer_is_first)] = balance_hash
    log NonClosingBalanceProofUpdated(
        channel_id=pair.channel_id, closing_participant=closing_participant,
        nonce=nonce, balance_hash=balance_hash, submitter=msg.sender,
    )


@external
@nonreentrant
def settle_channel(
    participant: address,
    participant_transferred: uint256,
    participant_locked: uint256,
    participant_locksroot: bytes32,
    partner: address,
    partner_transferred: uint256,
    partner_locked: uint256,
    partner_locksroot: bytes32,
):
    """
    @notice Pays out a closed channel once its settle window is over; anyone may call.
    @dev Arguments are each participant's (transferred, locked, locksroot) as in its
         latest proof on chain (all zero where none was submitted). Payouts follow
         docs/spec.md section 4 with saturating arithmetic, so this never reverts for
         a reachable state; tokens retained for pending locks wait for `unlock`.
    @param participant One participant.
    @param participant_transferred Its transferred amount.
    @param participant_locked Its locked amount.
    @param participant_locksroot Its locksroot.
    @param partner The other participant.
    @param partner_transferred Its transferred amount.
    @param partner_locked Its locked amount.
    @param partner_locksroot Its locksroot.
    """
    pair: Pair = self._pair(participant, partner)
    core: Core = self._core(pair.channel_id)
    assert core.state == STATE_CLOSED, "token_network: channel not closed"
    assert block.timestamp > core.settle, "token_network: settle window not over"

    t1: uint256 = participant_transferred
    l1: uint256 = participant_locked
    r1: bytes32 = participant_locksroot
    t2: uint256 = partner_transferred
    l2: uint256 = partner_locked
    r2: bytes32 = partner_locksroot
    if participant != pair.participant1:
        t1 = partner_transferred
        l1 = partner_locked
        r1 = partner_locksroot
        t2 = participant_transferred
        l2 = participant_locked
        r2 = participant_locksroot
    self._check_balance(pair.channel_id, 0, t1, l1, r1)
    self._check_balance(pair.channel_id, 1, t2, l2, r2)

    deposits: uint256 = self._deposits[pair.channel_id]
    withdraws: uint256 = self._withdraws[pair.channel_id]
    s1: uint256 = 0
    s2: uint256 = 0
    sl1: uint256 = 0
    sl2: uint256 = 0
    s1, s2, sl1, sl2 = self._payouts(
        deposits & MASK128, withdraws & MASK128, t1, l1,
        deposits >> 128, withdraws >> 128, t2, l2,
    )
    delegation1: uint256 = self._delegations[pair.channel_id][0]
    delegation2: uint256 = self._delegations[pair.channel_id][1]
    reward1: uint256 = min(delegation1 >> 160, s1)
    reward2: uint256 = min(delegation2 >> 160, s2)

    self._clear(pair.channel_id, core.generation, withdraws != 0)
    self._balance_hashes[pair.channel_id][0] = empty(bytes32)
    self._balance_hashes[pair.channel_id][1] = empty(bytes32)
    if delegation1 != 0:
        self._delegations[pair.channel_id][0] = 0
    if delegation2 != 0:
        self._delegations[pair.channel_id][1] = 0
    if sl1 > 0:
        self._unlocks[self._unlock_key(pair.channel_id, core.generation, pair.participant1, r1)] = sl1
    if sl2 > 0:
        self._unlocks[self._unlock_key(pair.channel_id, core.generation, pair.participant2, r2)] = sl2

    log ChannelSettled(
        channel_id=pair.channel_id, generation=core.generation,
        participant1_amount=s1 - reward1, participant2_amount=s2 - reward2,
        participant1_locked=sl1, participant2_locked=sl2,
    )
    self._pay_reward(pair.channel_id, pair.participant1, delegation1, reward1)
    self._pay_reward(pair.channel_id, pair.participant2, delegation2, reward2)
    self._push(pair.participant1, s1 - reward1)
    self._push(pair.participant2, s2 - reward2)


@external
@nonreentrant
def unlock(receiver: address, sender: address, generation: uint256, locks: Bytes[MAX_LOCKS_BYTES]):
    """
    @notice Pays out the tokens a settled channel retained for `sender`'s pending locks.
    @dev A lock goes to `receiver` when its secret was registered at or before the
         lock's expiration; the rest returns to `sender`. Anyone may call; each set of
         locks unlocks once.
    @param receiver The participant the locks were sent to.
    @param sender The participant who sent the locks.
    @param generation The channel generation that was settled.
    @param locks The pending locks exactly as in the locksroot: 96 bytes each,
           expiration ‖ amount ‖ secrethash, in creation order.
    """
    pair: Pair = self._pair(receiver, sender)
    # An empty list is allowed: a proof may lock tokens under the empty locksroot,
    # and those tokens must still be able to return to their sender.
    assert len(locks) % LOCK_SIZE == 0, "token_network: malformed locks"
    locksroot: bytes32 = keccak256(locks)
    key: bytes32 = self._unlock_key(pair.channel_id, generation, sender, locksroot)
    retained: uint256 = self._unlocks[key]
    assert retained > 0, "token_network: nothing to unlock"

    # One lookup per lock: a batch view would cost more in memory growth than the
    # calls it saves.
    claimable: uint256 = 0
    for i: uint256 in range(len(locks) // LOCK_SIZE, bound=MAX_PENDING_LOCKS):
        offset: uint256 = i * LOCK_SIZE
        revealed: uint256 = staticcall secret_registry.secrethash_to_timestamp(extract32(locks, offset + 64))
        if revealed != 0 and revealed <= convert(extract32(locks, offset), uint256):
            claimable = self._sat_add(claimable, convert(extract32(locks, offset + 32), uint256))

    to_receiver: uint256 = min(claimable, retained)
    to_sender: uint256 = retained - to_receiver
    self._unlocks[key] = 0
    log ChannelUnlocked(
        channel_id=pair.channel_id, receiver=receiver, sender=sender,
        locksroot=locksroot, unlocked_amount=to_receiver, returned_amount=to_sender,
    )
    self._push(receiver, to_receiver)
    self._push(sender, to_sender)


# ---------------------------------------------------------------------------
# Views


@external
@pure
def channel_id(participant: address, partner: address) -> bytes32:
    """
    @notice The channel id of a pair: keccak256(abi.encode(lower, higher)).
    @param participant One address.
    @param partner The other address.
    @return The channel id.
    """
    return self._pair(participant, partner).channel_id


@external
@view
def domain_separator() -> bytes32:
    """
    @notice The EIP-712 domain separator of this token network.
    @return The separator.
    """
    return self._domain_separator()


@external
@view
def get_channel(participant: address, partner: address) -> ChannelInfo:
    """
    @notice The channel of a pair.
    @param participant One participant.
    @param partner The other participant.
    @return Its id, ordered participants, state (0 none or settled, 1 open, 2 closed),
            generation, settle window (open) or deadline (closed) and closer.
    """
    pair: Pair = self._pair(participant, partner)
    core: Core = self._core(pair.channel_id)
    closer: address = empty(address)
    if core.closer == 1:
        closer = pair.participant1
    elif core.closer == 2:
        closer = pair.participant2
    return ChannelInfo(
        channel_id=pair.channel_id,
        participant1=pair.participant1,
        participant2=pair.participant2,
        state=core.state,
        generation=core.generation,
        settle_window_or_deadline=core.settle,
        closer=closer,
    )


@external
@view
def get_participant(participant: address, partner: address) -> ParticipantInfo:
    """
    @notice One participant's side of a channel.
    @param participant The participant.
    @param partner Its partner.
    @return Total deposit, total withdraw, nonce and balance hash of its proof on
            chain (after close), and the delegate and reward recorded for it.
    """
    pair: Pair = self._pair(participant, partner)
    core: Core = self._core(pair.channel_id)
    is_first: bool = participant == pair.participant1
    index: uint256 = self._index(is_first)
    nonce: uint256 = core.nonce2
    if is_first:
        nonce = core.nonce1
    delegation: uint256 = self._delegations[pair.channel_id][index]
    return ParticipantInfo(
        deposit=self._half(self._deposits[pair.channel_id], is_first),
        withdrawn=self._withdrawn(pair.channel_id, core, is_first),
        nonce=nonce,
        balance_hash=self._balance_hashes[pair.channel_id][index],
        delegate=convert(convert(delegation & MASK160, uint160), address),
        reward=delegation >> 160,
    )


@external
@view
def get_unlock_amount(receiver: address, sender: address, generation: uint256, locksroot: bytes32) -> uint256:
    """
    @notice Tokens a settled channel still retains for `sender`'s locks with `locksroot`.
    @param receiver The participant the locks were sent to.
    @param sender The participant who sent them.
    @param generation The settled generation.
    @param locksroot The locksroot of the sender's last proof.
    @return The retained amount (0 once unlocked).
    """
    pair: Pair = self._pair(receiver, sender)
    return self._unlocks[self._unlock_key(pair.channel_id, generation, sender, locksroot)]


# ---------------------------------------------------------------------------
# Internals


@internal
def _open(participant: address, partner: address, settle_window: uint256) -> Pair:
    """
    @notice Opens the pair's channel with a fresh generation; reverts if it exists.
    """
    assert partner != empty(address), "token_network: zero partner"
    assert partner != participant, "token_network: channel with oneself"
    assert settle_window >= self.settle_window_min, "token_network: settle window too short"
    assert settle_window <= self.settle_window_max, "token_network: settle window too long"
    pair: Pair = self._pair(participant, partner)
    core: Core = self._core(pair.channel_id)
    assert core.state == STATE_NONE, "token_network: channel exists"
    assert core.generation < MASK32, "token_network: generation exhausted"
    generation: uint256 = core.generation + 1
    self._channels[pair.channel_id] = self._pack(Core(
        state=STATE_OPENED, generation=generation, settle=settle_window, closer=0, nonce1=0, nonce2=0,
        withdraw1=0, withdraw2=0,
    ))
    log ChannelOpened(
        channel_id=pair.channel_id, participant1=pair.participant1, participant2=pair.participant2,
        generation=generation, settle_window=settle_window,
    )
    return pair


@internal
def _deposit(pair: Pair, participant: address, total_deposit: uint256):
    """
    @notice Raises a participant's total deposit and pulls the difference from the caller.
    """
    is_first: bool = participant == pair.participant1
    deposits: uint256 = self._deposits[pair.channel_id]
    current: uint256 = self._half(deposits, is_first)
    assert total_deposit > current, "token_network: total deposit must rise"
    assert total_deposit <= self.participant_deposit_limit, "token_network: participant deposit limit"
    self._deposits[pair.channel_id] = self._with_half(deposits, is_first, total_deposit)
    log ChannelNewDeposit(channel_id=pair.channel_id, participant=participant, total_deposit=total_deposit)
    held: uint256 = self._pull(msg.sender, total_deposit - current)
    assert held <= self.network_deposit_limit, "token_network: network deposit limit"


@internal
def _pull(source: address, amount: uint256) -> uint256:
    """
    @notice Pulls `amount` from `source`; returns the network's token balance afterwards.
    """
    # Balance difference, not the token's word: a fee-taking or lying token would
    # otherwise credit tokens the contract never received.
    before: uint256 = staticcall self.token.balanceOf(self)
    assert extcall self.token.transferFrom(source, self, amount, default_return_value=True), "token_network: transferFrom failed"
    after: uint256 = staticcall self.token.balanceOf(self)
    assert after >= before and after - before == amount, "token_network: token delivered a different amount"
    return after


@internal
def _push(recipient: address, amount: uint256):
    """
    @notice Pays `amount` to `recipient`; tokens without a return value are accepted.
    """
    if amount == 0:
        return
    assert extcall self.token.transfer(recipient, amount, default_return_value=True), "token_network: transfer failed"


@internal
def _pay_reward(channel_id: bytes32, participant: address, delegation: uint256, reward: uint256):
    """
    @notice Pays a delegate its capped reward out of the participant's share.
    """
    if reward == 0:
        return
    delegate: address = convert(convert(delegation & MASK160, uint160), address)
    log DelegateRewarded(channel_id=channel_id, participant=participant, delegate=delegate, reward=reward)
    self._push(delegate, reward)


@internal
def _clear(channel_id: bytes32, generation: uint256, withdraws_stored: bool):
    """
    @notice Ends a channel: zeroes its amounts, keeps its generation.
    """
    # Keep the generation so that a reopening of the pair gets a new one; zeroing
    # the amount words refunds gas and starts the next opening from nothing.
    self._channels[channel_id] = generation << GEN_SHIFT
    self._deposits[channel_id] = 0
    if withdraws_stored:
        self._withdraws[channel_id] = 0


@internal
@view
def _check_balance(channel_id: bytes32, index: uint256, transferred: uint256, locked: uint256, locksroot: bytes32):
    """
    @notice Checks (T, L, LR) against the balance hash on chain for a participant.
    """
    stored: bytes32 = self._balance_hashes[channel_id][index]
    if stored == empty(bytes32):
        assert transferred == 0 and locked == 0, "token_network: balance data without a proof"
    else:
        assert keccak256(abi_encode(transferred, locked, locksroot)) == stored, "token_network: balance data does not match the proof"


@internal
@pure
def _payouts(
    d1: uint256, w1: uint256, t1: uint256, l1: uint256,
    d2: uint256, w2: uint256, t2: uint256, l2: uint256,
) -> (uint256, uint256, uint256, uint256):
    """
    @notice Settlement payouts (S1, S2, SL1, SL2) for the participants in the given order.
    """
    # docs/spec.md section 4. TAD cannot underflow: withdraws are checked against
    # deposits. Every other step saturates so that no proof can make settle revert.
    if self._sat_add(t1, l1) > self._sat_add(t2, l2):
        s2: uint256 = 0
        s1: uint256 = 0
        sl2: uint256 = 0
        sl1: uint256 = 0
        s2, s1, sl2, sl1 = self._payouts_ordered(d2, w2, t2, l2, d1, w1, t1, l1)
        return s1, s2, sl1, sl2
    return self._payouts_ordered(d1, w1, t1, l1, d2, w2, t2, l2)


@internal
@pure
def _payouts_ordered(
    d1: uint256, w1: uint256, t1: uint256, l1: uint256,
    d2: uint256, w2: uint256, t2: uint256, l2: uint256,
) -> (uint256, uint256, uint256, uint256):
    """
    @notice The payouts for participants ordered so that T1 + L1 <= T2 + L2.
    """
    # Raiden's rule for participants ordered so that T1 + L1 <= T2 + L2.
    tad: uint256 = d1 + d2 - w1 - w2
    rmax1: uint256 = min(tad, self._sat_sub(self._sat_add(self._sat_sub(self._sat_add(t2, l2), self._sat_add(t1, l1)), d1), w1))
    rmax2: uint256 = tad - rmax1
    sl2: uint256 = min(rmax1, l2)
    sl1: uint256 = min(rmax2, l1)
    return rmax1 - sl2, rmax2 - sl1, sl1, sl2


@internal
@pure
def _sat_add(a: uint256, b: uint256) -> uint256:
    """
    @notice a + b, capped at 2**256 - 1.
    """
    if a > max_value(uint256) - b:
        return max_value(uint256)
    # Safe: the branch above excludes overflow.
    return unsafe_add(a, b)


@internal
@pure
def _sat_sub(a: uint256, b: uint256) -> uint256:
    """
    @notice a - b, floored at 0.
    """
    if a <= b:
        return 0
    # Safe: a > b.
    return unsafe_sub(a, b)


@internal
@pure
def _pair(a: address, b: address) -> Pair:
    """
    @notice The ordered participants of a pair and its channel id.
    """
    low: address = a
    high: address = b
    if convert(a, uint256) > convert(b, uint256):
        low = b
        high = a
    return Pair(participant1=low, participant2=high, channel_id=keccak256(abi_encode(low, high)))


@internal
@pure
def _index(is_first: bool) -> uint256:
    """
    @notice Storage index of a participant: 0 for participant1, 1 for participant2.
    """
    if is_first:
        return 0
    return 1


@internal
@pure
def _half(word: uint256, is_first: bool) -> uint256:
    """
    @notice Participant 1's (low) or participant 2's (high) 128-bit half of a packed word.
    """
    if is_first:
        return word & MASK128
    return word >> 128


@internal
@pure
def _with_half(word: uint256, is_first: bool, amount: uint256) -> uint256:
    """
    @notice A packed word with one participant's half replaced.
    """
    if is_first:
        return (word & (MASK128 << 128)) | amount
    return (word & MASK128) | (amount << 128)


@internal
@view
def _core(channel_id: bytes32) -> Core:
    """
    @notice Unpacks a channel's core word (layout depends on the state).
    """
    word: uint256 = self._channels[channel_id]
    state: uint256 = word & MASK8
    if state == STATE_CLOSED:
        return Core(
            state=state,
            generation=(word >> GEN_SHIFT) & MASK32,
            settle=(word >> SETTLE_SHIFT) & MASK64,
            closer=(word >> CLOSER_SHIFT) & MASK8,
            nonce1=(word >> NONCE1_SHIFT) & MASK64,
            nonce2=(word >> NONCE2_SHIFT) & MASK64,
            withdraw1=0,
            withdraw2=0,
        )
    return Core(
        state=state,
        generation=(word >> GEN_SHIFT) & MASK32,
        settle=(word >> SETTLE_SHIFT) & MASK32,
        closer=0,
        nonce1=0,
        nonce2=0,
        withdraw1=(word >> WITHDRAW1_SHIFT) & MASK92,
        withdraw2=word >> WITHDRAW2_SHIFT,
    )


@internal
@pure
def _pack(core: Core) -> uint256:
    """
    @notice Packs a channel's core word (layout depends on the state).
    """
    word: uint256 = core.state | (core.generation << GEN_SHIFT) | (core.settle << SETTLE_SHIFT)
    if core.state == STATE_CLOSED:
        return word | (core.closer << CLOSER_SHIFT) | (core.nonce1 << NONCE1_SHIFT) | (core.nonce2 << NONCE2_SHIFT)
    return word | (core.withdraw1 << WITHDRAW1_SHIFT) | (core.withdraw2 << WITHDRAW2_SHIFT)


@internal
@view
def _withdrawn(channel_id: bytes32, core: Core, is_first: bool) -> uint256:
    """
    @notice A participant's total withdraw: in the core word while open, in its own word once closed.
    """
    if core.state == STATE_CLOSED:
        return self._half(self._withdraws[channel_id], is_first)
    if is_first:
        return core.withdraw1
    return core.withdraw2


@internal
@pure
def _unlock_key(channel_id: bytes32, generation: uint256, sender: address, locksroot: bytes32) -> bytes32:
    """
    @notice Storage key of the tokens retained for one sender's locks after settle.
    """
    return keccak256(abi_encode(channel_id, generation, sender, locksroot))


@internal
@view
def _domain_separator() -> bytes32:
    """
    @notice The EIP-712 domain separator.
    """
    # Computed, not cached: a chain split changes chain.id and must void old signatures.
    return keccak256(abi_encode(EIP712_DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, chain.id, self))


@internal
@view
def _digest(struct_hash: bytes32) -> bytes32:
    """
    @notice The EIP-712 digest of a struct hash in this network's domain.
    """
    return keccak256(concat(b"\x19\x01", self._domain_separator(), struct_hash))


@internal
@view
def _balance_proof_digest(
    channel_id: bytes32, generation: uint256, nonce: uint256, balance_hash: bytes32, additional_hash: bytes32
) -> bytes32:
    """
    @notice The EIP-712 digest of a BalanceProof.
    """
    return self._digest(keccak256(abi_encode(
        BALANCE_PROOF_TYPEHASH, channel_id, generation, nonce, balance_hash, additional_hash
    )))


@internal
@pure
def _recover(digest: bytes32, signature: Bytes[65]) -> address:
    """
    @notice The signer of `digest`; reverts on malformed, high-s or unrecoverable signatures.
    """
    assert len(signature) == 65, "token_network: bad signature length"
    r: uint256 = convert(extract32(signature, 0), uint256)
    s: uint256 = convert(extract32(signature, 32), uint256)
    v: uint256 = convert(slice(signature, 64, 1), uint256)
    assert v == 27 or v == 28, "token_network: bad signature v"
    assert s != 0 and s <= HALF_N, "token_network: high-s signature"
    signer: address = ecrecover(digest, v, r, s)
    assert signer != empty(address), "token_network: invalid signature"
    return signer
