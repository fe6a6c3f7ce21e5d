"""What each message's signature covers, and how to sign and check it.

Belongs here: the digest of a message in its token network's EIP-712 domain, for the four
kinds of `messages.Signing`, and `sign` / `signer_of` over them (the `*_with_body_hash`
variants also give the body hash they used: a balance proof's additional hash, which the
channel stores). Balance-proof messages need the balance hash of the sender's new (T, L,
locksroot), which only the channel knows, so it is a parameter; everything else is
derived from the message itself.

Does not belong here: whether a signer is the right one for a channel (`channel`), or
the byte encoding (`codec`, used for the body hash).
"""

from __future__ import annotations

import functools
from typing import Final, TypeVar

from offchain.protocol import codec, eip712, frozen
from offchain.protocol.crypto import keccak256, recover, sign_digest
from offchain.protocol.errors import ValidationError
from offchain.protocol.locks import channel_id
from offchain.protocol.messages import (
    CoopSettleRequest,
    CoopSettleResponse,
    Message,
    Signing,
    WithdrawConfirmation,
    WithdrawExpired,
    WithdrawRequest,
)
from offchain.protocol.types import AdditionalHash, Address, BalanceHash, PrivateKey, Signature

MESSAGE_TYPE: Final = b"Message(bytes32 bodyHash)"
MESSAGE_TYPEHASH: Final = keccak256(MESSAGE_TYPE)
PLACEHOLDER_SIGNATURE: Final = Signature(bytes(65))
"""Put in a message before it is signed; `sign` replaces it."""

M = TypeVar("M", bound=Message)


def body_hash(message: Message) -> bytes:
    """keccak256 of the message's body (its encoding without the signature)."""
    return _body_and_hash(message)[1]


def _body_and_hash(message: Message) -> tuple[bytes, bytes]:
    try:
        return _cached_body_and_hash(message)
    except TypeError:  # an unhashable field value: let the codec say what is wrong
        body = codec.encode_body(message)
        return body, keccak256(body)


@functools.lru_cache(maxsize=4096)
def _cached_body_and_hash(message: Message) -> tuple[bytes, bytes]:
    # A message's body is hashed when it is signed, when the signature is checked and when
    # the proof is stored, on both sides: hashing the frozen message is cheaper than
    # encoding it again. Equal messages have equal bodies, so the cache is exact. The body
    # is kept too, for `sign`.
    body = codec.encode_body(message)
    return body, keccak256(body)


@functools.lru_cache(maxsize=256)
def _domain(chain_id: int, token_network: Address) -> eip712.Domain:
    # One per token network a node uses; its separator is a keccak we need not redo.
    return eip712.Domain(chain_id=chain_id, verifying_contract=token_network)


def digest(
    message: Message,
    chain_id: int,
    sender: Address,
    partner: Address,
    balance_hash: BalanceHash | None = None,
) -> bytes:
    """The 32-byte digest the sender of `message` signs.

    `sender` and `partner` are the channel's two ends (they name the channel id);
    `balance_hash` is required for balance-proof messages and ignored otherwise.
    """
    return _digest_and_body(message, chain_id, sender, partner, balance_hash)[0]


def _digest_and_body(
    message: Message,
    chain_id: int,
    sender: Address,
    partner: Address,
    balance_hash: BalanceHash | None,
) -> tuple[bytes, tuple[bytes, bytes] | None]:
    """`digest`, and the message's (body, body hash) when the digest covers them.

    Returned so that the signer and the checker of a message look its body up once: each
    lookup hashes the whole frozen message.
    """
    domain = _domain(chain_id, message.token_network)
    match message.SIGNING:
        case Signing.BALANCE_PROOF:
            if balance_hash is None:
                raise ValidationError("a balance-proof message needs its balance hash")
            cid = channel_id(sender, partner)  # checked before the body, as ever
            body = _body_and_hash(message)
            struct: eip712.SignedStruct = eip712.BalanceProof(
                channel_id=cid,
                generation=message.generation,  # type: ignore[union-attr]
                nonce=message.nonce,  # type: ignore[union-attr]
                balance_hash=balance_hash,
                additional_hash=AdditionalHash(body[1]),
            )
            return eip712.digest(domain, struct), body
        case Signing.WITHDRAW:
            assert isinstance(message, WithdrawRequest | WithdrawConfirmation | WithdrawExpired)
            struct = eip712.Withdraw(
                channel_id=channel_id(sender, partner),
                generation=message.generation,
                participant=message.participant,
                total_withdraw=message.total_withdraw,
                expiration=message.expiration,
            )
        case Signing.COOPERATIVE_SETTLE:
            assert isinstance(message, CoopSettleRequest | CoopSettleResponse)
            struct = eip712.CooperativeSettle(
                channel_id=channel_id(sender, partner),
                generation=message.generation,
                total_withdraw1=message.total_withdraw1,
                total_withdraw2=message.total_withdraw2,
                expiration=message.expiration,
            )
        case Signing.MESSAGE:
            body = _body_and_hash(message)
            inner = keccak256(MESSAGE_TYPEHASH + body[1])
            return keccak256(b"\x19\x01" + domain.separator + inner), body
    return eip712.digest(domain, struct), None


def sign(
    key: PrivateKey,
    message: M,
    chain_id: int,
    sender: Address,
    partner: Address,
    balance_hash: BalanceHash | None = None,
) -> M:
    """`message` with its signature made by `key` (the sender's)."""
    return sign_with_body_hash(key, message, chain_id, sender, partner, balance_hash)[0]


def sign_with_body_hash(
    key: PrivateKey,
    message: M,
    chain_id: int,
    sender: Address,
    partner: Address,
    balance_hash: BalanceHash | None = None,
) -> tuple[M, bytes | None]:
    """`sign`, and the message's body hash if the signature covers it (a balance proof's
    additional hash), None if not (withdraw and cooperative-settle messages)."""
    signed_digest, body = _digest_and_body(message, chain_id, sender, partner, balance_hash)
    signed = frozen.replace(message, signature=sign_digest(key, signed_digest))
    if body is None:
        return signed, None
    # The body leaves the signature out: the signed copy's is the one just hashed, which
    # the codec then need not encode again for the wire.
    codec.remember_body(signed, body[0])
    return signed, body[1]


def signer_of(
    message: Message,
    chain_id: int,
    sender: Address,
    partner: Address,
    balance_hash: BalanceHash | None = None,
) -> Address:
    """Who signed `message`; raises `InvalidSignature` if it is malformed.

    The caller compares the result with the expected signer: a signature over anything
    else (another channel, balance, chain) recovers some other address.
    """
    return signer_with_body_hash(message, chain_id, sender, partner, balance_hash)[0]


def signer_with_body_hash(
    message: Message,
    chain_id: int,
    sender: Address,
    partner: Address,
    balance_hash: BalanceHash | None = None,
) -> tuple[Address, bytes | None]:
    """`signer_of`, and the message's body hash if the signature covers it (a balance
    proof's additional hash), None if not."""
    signed_digest, body = _digest_and_body(message, chain_id, sender, partner, balance_hash)
    return recover(signed_digest, message.signature), None if body is None else body[1]
