"""Channel transitions: our balance-proof messages, and every check on the partner's.

Two views of one channel (A's and B's) are kept side by side: what A makes, B receives,
and after each step B's copy of A's end must equal A's own (nonce, amounts, locks, the
signature it can take to the chain).
"""

from __future__ import annotations

import dataclasses

import pytest

from offchain.protocol import channel as ch
from offchain.protocol import signing
from offchain.protocol.channel import ChannelState, Rejected
from offchain.protocol.crypto import keccak256
from offchain.protocol.locks import MAX_PENDING_LOCKS, Lock, balance_hash
from offchain.protocol.messages import (
    MAX_BATCH_PAYMENTS,
    BatchEntry,
    LockedTransfer,
    ReturnReason,
    TransferBatch,
)
from offchain.protocol.signing import PLACEHOLDER_SIGNATURE
from offchain.protocol.types import (
    Generation,
    Nonce,
    PrivateKey,
    SecretHash,
    Timestamp,
    TokenAmount,
)
from tests.lib.channel_views import (
    KEY_A,
    KEY_B,
    NETWORK,
    NOW,
    REVEAL,
    SETTLE,
    A,
    B,
    lock,
    secret,
    views,
)


def ok(result: object) -> tuple[ChannelState, object]:
    assert not isinstance(result, Rejected), result
    assert isinstance(result, tuple)
    return result


def deliver(receiver: ChannelState, message: ch.BalanceProofMessage, **kw: object) -> ChannelState:
    result = ch.receive(receiver, message, NOW, **kw)  # type: ignore[arg-type]
    assert not isinstance(result, Rejected), result
    return result


def same_view(sender: ChannelState, receiver: ChannelState) -> None:
    assert receiver.partner == sender.our


def test_direct_transfer__valid__both_views_agree() -> None:
    a, b = views()
    a, message = ok(ch.make_direct_transfer(a, KEY_A, TokenAmount(30), 1))
    b = deliver(b, message)  # type: ignore[arg-type]
    same_view(a, b)
    assert ch.balance(b.our, b.partner) == 80
    assert ch.spendable(a.our, a.partner) == 70


def test_direct_transfer__over_capacity__rejected_locally() -> None:
    a, _ = views()
    assert ch.make_direct_transfer(a, KEY_A, TokenAmount(101), 1) == Rejected(
        "insufficient capacity"
    )


def test_receive__each_bad_field__rejected_and_state_unchanged() -> None:
    a, b = views()
    _, message = ok(ch.make_direct_transfer(a, KEY_A, TokenAmount(5), 1))
    cases = {
        "wrong token network": dataclasses.replace(message, token_network=b"\x01" * 20),
        "wrong channel generation": dataclasses.replace(message, generation=2),
        "nonce 2 is not 1": dataclasses.replace(message, nonce=2),
        "signature does not match the partner's balance": dataclasses.replace(message, amount=6),
    }
    for reason, bad in cases.items():
        assert ch.receive(b, bad, NOW) == Rejected(reason)  # type: ignore[arg-type]
    high_s = dataclasses.replace(message, signature=message.signature[:32] + b"\xff" * 32 + b"\x1b")  # type: ignore[attr-defined]
    result = ch.receive(b, high_s, NOW)  # type: ignore[arg-type]
    assert isinstance(result, Rejected) and result.reason.startswith("malformed signature")


def test_receive__duplicate_message__rejected_once_applied() -> None:
    a, b = views()
    _, message = ok(ch.make_direct_transfer(a, KEY_A, TokenAmount(5), 1))
    b = deliver(b, message)  # type: ignore[arg-type]
    assert ch.receive(b, message, NOW) == Rejected("nonce 1 is not 2")  # type: ignore[arg-type]


def test_receive__signed_by_a_stranger__rejected() -> None:
    a, b = views()
    stranger_key = PrivateKey(keccak256(b"channel test stranger"))
    _, message = ok(ch.make_direct_transfer(a, stranger_key, TokenAmount(5), 1))
    assert ch.receive(b, message, NOW) == Rejected(  # type: ignore[arg-type]
        "signature does not match the partner's balance"
    )


def test_receive__direct_over_partner_capacity__rejected() -> None:
    a, b = views()
    rich = dataclasses.replace(a, our=dataclasses.replace(a.our, deposit=TokenAmount(1000)))
    _, message = ok(ch.make_direct_transfer(rich, KEY_A, TokenAmount(500), 1))
    assert ch.receive(b, message, NOW) == Rejected("amount exceeds the partner's capacity")  # type: ignore[arg-type]


def test_locked_transfer_then_unlock__valid__amount_moves_from_locked_to_transferred() -> None:
    a, b = views()
    value, _ = secret(1)
    a, message = ok(ch.make_locked_transfer(a, KEY_A, lock(1), 7, B, TokenAmount(10), NOW))
    b = deliver(b, message)  # type: ignore[arg-type]
    same_view(a, b)
    assert (b.partner.locked, ch.spendable(a.our, a.partner)) == (10, 90)
    a, unlock = ok(ch.make_unlock(a, KEY_A, value, 7))
    b = deliver(b, unlock)  # type: ignore[arg-type]
    same_view(a, b)
    assert (b.partner.transferred, b.partner.locked) == (10, 0)


@pytest.mark.parametrize(
    ("bad_lock", "reason"),
    [
        (lock(1, expiration=NOW + REVEAL), "lock expires too soon"),
        (lock(1, expiration=NOW + SETTLE + 1), "lock expires after the settle window"),
        (lock(1, amount=0), "lock amount must be positive"),
        (lock(1, amount=101), "insufficient capacity"),
    ],
)
def test_locked_transfer__bad_lock__rejected_by_sender_and_receiver(
    bad_lock: Lock, reason: str
) -> None:
    a, b = views()
    assert ch.make_locked_transfer(a, KEY_A, bad_lock, 1, B, TokenAmount(0), NOW) == Rejected(
        reason
    )
    # A forged message with the same lock is refused by the receiver for the same reason.
    forged = LockedTransfer(
        NETWORK,
        Generation(1),
        Nonce(1),
        1,
        bad_lock.expiration,
        bad_lock.amount,
        bad_lock.secrethash,
        B,
        TokenAmount(0),
        b"\x00" * 65,  # type: ignore[arg-type]
    )
    if reason == "lock expires too soon":
        # The receiver applies a late lock (it keeps the sender's proofs in order) and
        # only declines to act on it; with a forged signature it is refused all the same.
        assert isinstance(ch.receive(b, forged, NOW), Rejected)
    else:
        assert ch.receive(b, forged, NOW) == Rejected(reason)


def test_locked_transfer__arrives_too_late__applied_so_later_proofs_stay_in_order() -> None:
    a, b = views()
    a, message = ok(ch.make_locked_transfer(a, KEY_A, lock(1), 7, B, TokenAmount(10), NOW))
    late = Timestamp(NOW + 600)
    applied = ch.receive(b, message, late)  # type: ignore[arg-type]
    assert not isinstance(applied, Rejected), applied
    same_view(a, applied)


def test_locked_transfer__same_secrethash_twice__rejected() -> None:
    a, _ = views()
    a, _ = ok(ch.make_locked_transfer(a, KEY_A, lock(1), 1, B, TokenAmount(10), NOW))
    assert ch.make_locked_transfer(a, KEY_A, lock(1), 2, B, TokenAmount(10), NOW) == Rejected(
        "secrethash already locked"
    )


def test_locked_transfer__cap_reached__rejected() -> None:
    a, _ = views(deposit_a=10**6)
    for n in range(MAX_PENDING_LOCKS):
        item = Lock(
            Timestamp(NOW + 600), TokenAmount(1), SecretHash(keccak256(n.to_bytes(4, "big")))
        )
        a, _ = ok(ch.make_locked_transfer(a, KEY_A, item, n, B, TokenAmount(1), NOW))
    assert ch.make_locked_transfer(
        a, KEY_A, lock(1, amount=1), 9, B, TokenAmount(1), NOW
    ) == Rejected("too many pending locks")


def test_lock_expired__after_expiry__receiver_accepts_and_locked_falls() -> None:
    a, b = views()
    a, message = ok(ch.make_locked_transfer(a, KEY_A, lock(1), 1, B, TokenAmount(10), NOW))
    b = deliver(b, message)  # type: ignore[arg-type]
    later = Timestamp(NOW + 601)
    assert ch.make_lock_expired(a, KEY_A, lock(1).secrethash, Timestamp(NOW + 600)) == Rejected(
        "lock not expired"
    )
    a, expired = ok(ch.make_lock_expired(a, KEY_A, lock(1).secrethash, later))
    assert ch.receive(b, expired, NOW) == Rejected("lock not expired")  # type: ignore[arg-type]
    assert ch.receive(b, expired, later, secret_registered_in_time=True) == Rejected(  # type: ignore[arg-type]
        "secret registered on chain before the lock expired"
    )
    b2 = ch.receive(b, expired, later)  # type: ignore[arg-type]
    assert isinstance(b2, ChannelState)
    same_view(a, b2)
    assert b2.partner.locked == 0


def test_lock_return__mirror_lock__payer_capacity_restored() -> None:
    a, b = views(deposit_a=100, deposit_b=50)
    a, message = ok(
        ch.make_locked_transfer(a, KEY_A, lock(1, amount=40), 1, B, TokenAmount(40), NOW)
    )
    b = deliver(b, message)  # type: ignore[arg-type]
    assert ch.spendable(a.our, a.partner) == 60
    b, returned = ok(ch.make_lock_return(b, KEY_B, lock(1).secrethash, 1, ReturnReason.NO_ROUTE, B))
    a = deliver(a, returned)  # type: ignore[arg-type]
    same_view(b, a)
    assert ch.spendable(a.our, a.partner) == 100
    # Netting is the payer's only: B's mirror is a full lock for B until A's original goes.
    assert ch.spendable(b.our, b.partner) == 10


def test_lock_return__crossing_an_unlock__both_accepted_and_mirror_owed() -> None:
    """Regression: found by tests/property/test_channel_property.py (a deadlock)."""
    # A unlocks its lock while B's return of it is on the way: each message is valid.
    a, b = views(deposit_a=100, deposit_b=50)
    value, _ = secret(1)
    a, message = ok(ch.make_locked_transfer(a, KEY_A, lock(1), 1, B, TokenAmount(10), NOW))
    b = deliver(b, message)  # type: ignore[arg-type]
    a, unlock = ok(ch.make_unlock(a, KEY_A, value, 1))
    b, returned = ok(ch.make_lock_return(b, KEY_B, lock(1).secrethash, 1, ReturnReason.NO_ROUTE, B))
    a = deliver(a, returned)  # type: ignore[arg-type]
    b = deliver(b, unlock)  # type: ignore[arg-type]
    same_view(a, b)
    same_view(b, a)
    # B was paid 10 and still locks 10 back towards A; it knows the secret and pays it back.
    b, unlock_back = ok(ch.make_unlock(b, KEY_B, value, 1))
    a = deliver(a, unlock_back)  # type: ignore[arg-type]
    assert ch.balance(a.our, a.partner) == 100
    assert ch.balance(b.our, b.partner) == 50


def test_unlock__unknown_lock__rejected() -> None:
    a, _ = views()
    value, _ = secret(3)
    assert ch.make_unlock(a, KEY_A, value, 1) == Rejected("no such lock")


def test_closed_channel__no_new_messages() -> None:
    a, _ = views()
    closed = dataclasses.replace(a, phase=ch.ChannelPhase.CLOSED)
    assert ch.make_direct_transfer(closed, KEY_A, TokenAmount(1), 1) == Rejected("channel not open")


def test_unlock__returned_lock__refused_by_its_payer() -> None:
    """Regression: found by tests/property/test_channel_property.py (I-P3 broken)."""
    a, b = views(deposit_a=100, deposit_b=50)
    value, _ = secret(1)
    a, message = ok(ch.make_locked_transfer(a, KEY_A, lock(1), 1, B, TokenAmount(10), NOW))
    b = deliver(b, message)  # type: ignore[arg-type]
    b, returned = ok(ch.make_lock_return(b, KEY_B, lock(1).secrethash, 1, ReturnReason.NO_ROUTE, B))
    a = deliver(a, returned)  # type: ignore[arg-type]
    assert ch.make_unlock(a, KEY_A, value, 1) == Rejected("lock was returned")


# --- batches ------------------------------------------------------------------------------


def entries(*amounts: int, first_id: int = 1) -> tuple[BatchEntry, ...]:
    return tuple(BatchEntry(first_id + i, TokenAmount(amount)) for i, amount in enumerate(amounts))


def signed_by_a(sender: ChannelState, payments: tuple[BatchEntry, ...]) -> TransferBatch:
    """A batch A signs honestly over whatever it claims, bypassing A's own checks.

    The receiver's refusal then comes from the rule under test, not from the signature. A
    batch of no entries or above the cap has no encoding, so nothing can sign it (nor decode
    it): it comes unsigned, and the channel must still refuse it before the signature.
    """
    total = sum(entry.amount for entry in payments)
    message = TransferBatch(
        NETWORK, Generation(1), Nonce(sender.our.nonce + 1), payments, PLACEHOLDER_SIGNATURE
    )
    if not 1 <= len(payments) <= MAX_BATCH_PAYMENTS:
        return message
    new_hash = balance_hash(
        TokenAmount(sender.our.transferred + total), sender.our.locked, sender.our.locksroot
    )
    return signing.sign(KEY_A, message, 1, A, B, new_hash)


def test_transfer_batch__valid__both_views_agree_and_total_paid() -> None:
    a, b = views()
    a, message = ok(ch.make_transfer_batch(a, KEY_A, entries(5, 7, 11)))
    assert isinstance(message, TransferBatch) and message.nonce == 1
    b = deliver(b, message)  # type: ignore[arg-type]
    same_view(a, b)
    assert b.partner.transferred == 23
    assert ch.balance(b.our, b.partner) == 73
    # One balance proof per batch: a direct transfer after it takes the next nonce.
    a, direct = ok(ch.make_direct_transfer(a, KEY_A, TokenAmount(2), 9))
    b = deliver(b, direct)  # type: ignore[arg-type]
    same_view(a, b)
    assert (b.partner.nonce, b.partner.transferred) == (2, 25)


def test_transfer_batch__full_batch_to_the_last_token__accepted() -> None:
    a, b = views(deposit_a=MAX_BATCH_PAYMENTS)
    a, message = ok(ch.make_transfer_batch(a, KEY_A, entries(*[1] * MAX_BATCH_PAYMENTS)))
    b = deliver(b, message)  # type: ignore[arg-type]
    same_view(a, b)
    assert ch.spendable(a.our, a.partner) == 0


@pytest.mark.parametrize(
    ("payments", "reason"),
    [
        ((), f"a batch holds 1 to {MAX_BATCH_PAYMENTS} payments"),
        (
            entries(*[1] * (MAX_BATCH_PAYMENTS + 1)),
            f"a batch holds 1 to {MAX_BATCH_PAYMENTS} payments",
        ),
        (entries(5, 0, 3), "amount must be positive"),
        (
            (BatchEntry(4, TokenAmount(1)), BatchEntry(4, TokenAmount(2))),
            "duplicate payment id in the batch",
        ),
        (entries(60, 41), "insufficient capacity"),
    ],
    ids=["empty", "above-cap", "zero-amount", "duplicate-id", "above-capacity"],
)
def test_transfer_batch__bad_batch__rejected_by_sender_and_receiver(
    payments: tuple[BatchEntry, ...], reason: str
) -> None:
    a, b = views()
    assert ch.make_transfer_batch(a, KEY_A, payments) == Rejected(reason)
    receiver_reason = (
        "amount exceeds the partner's capacity" if reason == "insufficient capacity" else reason
    )
    assert ch.receive(b, signed_by_a(a, payments), NOW) == Rejected(receiver_reason)


def test_transfer_batch__sender_checks_after_earlier_payments__capacity_counts_them() -> None:
    a, _ = views()
    a, _ = ok(ch.make_direct_transfer(a, KEY_A, TokenAmount(90), 1))
    assert ch.make_transfer_batch(a, KEY_A, entries(6, 5)) == Rejected("insufficient capacity")
    ok(ch.make_transfer_batch(a, KEY_A, entries(6, 4)))


def test_receive__batch_bad_header_or_signature__rejected() -> None:
    a, b = views()
    _, message = ok(ch.make_transfer_batch(a, KEY_A, entries(5, 7)))
    assert isinstance(message, TransferBatch)
    renumbered = (BatchEntry(1, TokenAmount(5)), BatchEntry(3, TokenAmount(7)))
    swapped = (BatchEntry(1, TokenAmount(7)), BatchEntry(2, TokenAmount(5)))
    mismatch = "signature does not match the partner's balance"
    cases = {
        "wrong token network": dataclasses.replace(message, token_network=b"\x01" * 20),
        "wrong channel generation": dataclasses.replace(message, generation=2),
        "nonce 2 is not 1": dataclasses.replace(message, nonce=2),
        # A different total changes the balance hash the signature covers...
        mismatch: dataclasses.replace(message, payments=entries(5, 8)),
    }
    for reason, bad in cases.items():
        assert ch.receive(b, bad, NOW) == Rejected(reason)  # type: ignore[arg-type]
    # ...and the same total with other ids or another split changes the additional hash:
    # the signature binds each payment, not only the sum.
    for payments in (renumbered, swapped):
        forged = dataclasses.replace(message, payments=payments)
        assert ch.receive(b, forged, NOW) == Rejected(mismatch)
    stranger = PrivateKey(keccak256(b"channel test stranger"))
    _, by_stranger = ok(ch.make_transfer_batch(a, stranger, entries(5, 7)))
    assert ch.receive(b, by_stranger, NOW) == Rejected(mismatch)  # type: ignore[arg-type]
    high_s = dataclasses.replace(message, signature=message.signature[:32] + b"\xff" * 33)
    result = ch.receive(b, high_s, NOW)
    assert isinstance(result, Rejected) and result.reason.startswith("malformed signature")


def test_receive__batch_delivered_twice__second_rejected() -> None:
    a, b = views()
    _, message = ok(ch.make_transfer_batch(a, KEY_A, entries(5, 7)))
    b = deliver(b, message)  # type: ignore[arg-type]
    assert ch.receive(b, message, NOW) == Rejected("nonce 1 is not 2")  # type: ignore[arg-type]
    assert b.partner.transferred == 12


def test_transfer_batch__closed_channel__rejected() -> None:
    a, b = views()
    _, message = ok(ch.make_transfer_batch(a, KEY_A, entries(5)))
    closed_a = dataclasses.replace(a, phase=ch.ChannelPhase.CLOSED)
    closed_b = dataclasses.replace(b, phase=ch.ChannelPhase.CLOSED)
    assert ch.make_transfer_batch(closed_a, KEY_A, entries(5)) == Rejected("channel not open")
    assert ch.receive(closed_b, message, NOW) == Rejected("channel not open")  # type: ignore[arg-type]


def test_lock_expired__mirror_before_original__refused_then_accepted_after() -> None:
    """A pair is removed original first (docs/spec.md §10)."""
    a, b = views(deposit_a=100, deposit_b=50)
    item = lock(1, amount=40)
    a, message = ok(ch.make_locked_transfer(a, KEY_A, item, 1, B, TokenAmount(40), NOW))
    b = deliver(b, message)  # type: ignore[arg-type]
    b, returned = ok(ch.make_lock_return(b, KEY_B, item.secrethash, 1, ReturnReason.NO_ROUTE, B))
    a = deliver(a, returned)  # type: ignore[arg-type]
    later = Timestamp(item.expiration + 1)
    assert ch.make_lock_expired(b, KEY_B, item.secrethash, later) == Rejected(
        "the original of this mirror is still pending"
    )
    a, expired = ok(ch.make_lock_expired(a, KEY_A, item.secrethash, later))
    applied = ch.receive(b, expired, later)  # type: ignore[arg-type]
    assert not isinstance(applied, Rejected), applied
    b = applied
    assert ch.spendable(b.our, b.partner) == 10  # the mirror still counts for B
    b, mirror_gone = ok(ch.make_lock_expired(b, KEY_B, item.secrethash, later))
    applied = ch.receive(a, mirror_gone, later)  # type: ignore[arg-type]
    assert not isinstance(applied, Rejected), applied
    assert ch.spendable(applied.our, applied.partner) == 100
    assert not applied.our.mirrors and not applied.partner.mirrors


def test_lock_expired__forged_mirror_removal_with_original_pending__refused() -> None:
    a, b = views(deposit_a=100, deposit_b=50)
    item = lock(1, amount=40)
    a, message = ok(ch.make_locked_transfer(a, KEY_A, item, 1, B, TokenAmount(40), NOW))
    b = deliver(b, message)  # type: ignore[arg-type]
    b, returned = ok(ch.make_lock_return(b, KEY_B, item.secrethash, 1, ReturnReason.NO_ROUTE, B))
    a = deliver(a, returned)  # type: ignore[arg-type]
    later = Timestamp(item.expiration + 1)
    # B skips the rule: A refuses, so A's capacity (netting the pair) cannot be taken away.
    forced = dataclasses.replace(b, our=dataclasses.replace(b.our, mirrors=frozenset()))
    _, premature = ok(ch.make_lock_expired(forced, KEY_B, item.secrethash, later))
    assert ch.receive(a, premature, later) == Rejected(  # type: ignore[arg-type]
        "the original of this mirror is still pending"
    )
