# pragma version ~=0.4.3
"""
@title SmartMesh secret registry
@notice Records the moment (`block.timestamp`, in seconds) at which the
        preimage of a `secrethash = sha256(secret)` was first revealed on
        chain. Token networks read the reveal time to decide whether a
        hash-time lock was unlocked before it expired.
@custom:security Anyone may register any secret, for any secrethash; that is
        the point: a reveal is a public fact, not a claim by the sender.
        - Replay: a second registration of the same secret is a no-op that
          returns False, so the first (earliest) reveal time can never be
          moved later, or earlier, by anybody.
        - Malleability: the key is `sha256(secret)` of a fixed 32-byte
          secret, so there is exactly one preimage encoding per key.
        - Zero secret: rejected (returns False) so that the all-zero secret,
          which a buggy client could use by default, never counts as
          revealed.
        - Griefing window: a reveal counts only if its block's timestamp is
          before the lock's expiration; a participant who waits until the
          last block risks being censored or reordered by the block
          producer. Clients must register well before expiration.
        - Reentrancy: no external calls are made (`sha256` is a
          precompile), so no lock is needed.
"""


from .interfaces import ISecretRegistry

implements: ISecretRegistry


event SecretRevealed:
    secrethash: indexed(bytes32)
    secret: bytes32


# @dev Bound of the batch functions, chosen so that a full batch of fresh
# registrations (~23k gas each) fits well inside a 30M-gas block.
_MAX_BATCH: constant(uint256) = 256


# @dev Reveal time (`block.timestamp`) per secrethash; 0 means never revealed.
secrethash_to_timestamp: public(HashMap[bytes32, uint256])


@external
def register_secret(secret: bytes32) -> bool:
    """
    @notice Registers `secret` and records the current block timestamp as
            the reveal time of `sha256(secret)`.
    @dev Returns False instead of reverting so that several parties racing
         to reveal the same secret do not waste a failed transaction's gas
         on a revert, and so that the batch variant can continue.
    @param secret The 32-byte preimage.
    @return bool True if the secret was newly registered, False if it is
            zero or its secrethash was already registered.
    """
    return self._register_secret(secret)


@external
def register_secret_batch(secrets: DynArray[bytes32, _MAX_BATCH]) -> bool:
    """
    @notice Registers every secret of `secrets`, in order.
    @dev A zero or already registered secret does not stop the batch: the
         others are still registered.
    @param secrets The 32-byte preimages, at most 256.
    @return bool True only if every secret was newly registered.
    """
    completed: bool = True
    for secret: bytes32 in secrets:
        if not self._register_secret(secret):
            completed = False
    return completed


@view
@external
def get_secret_reveal_time(secrethash: bytes32) -> uint256:
    """
    @notice Returns the time at which the preimage of `secrethash` was
            revealed.
    @param secrethash The sha256 hash of the secret.
    @return uint256 The `block.timestamp` of the registration, 0 if never.
    """
    return self.secrethash_to_timestamp[secrethash]


@view
@external
def get_secret_reveal_times(
    secrethashes: DynArray[bytes32, _MAX_BATCH]
) -> DynArray[uint256, _MAX_BATCH]:
    """
    @notice Returns the reveal times of many secrethashes in one call.
    @dev Used by a token network when it unlocks many locks at once.
    @param secrethashes The sha256 hashes of the secrets, at most 256.
    @return DynArray The reveal time of each secrethash, in the same order;
            0 for one never revealed.
    """
    times: DynArray[uint256, _MAX_BATCH] = []
    for secrethash: bytes32 in secrethashes:
        times.append(self.secrethash_to_timestamp[secrethash])
    return times


@internal
def _register_secret(secret: bytes32) -> bool:
    """
    @dev Registers `secret` unless it is zero or already registered.
    @param secret The 32-byte preimage.
    @return bool True if newly registered.
    """
    if secret == empty(bytes32):
        return False
    secrethash: bytes32 = sha256(secret)
    if self.secrethash_to_timestamp[secrethash] != 0:
        return False
    self.secrethash_to_timestamp[secrethash] = block.timestamp
    log SecretRevealed(secrethash=secrethash, secret=secret)
    return True
