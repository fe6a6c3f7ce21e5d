"""`pick_payment` (offchain/node/service.py): which payment an id names, when ids are
unique per initiator only. The API tests cover the same through HTTP."""

from __future__ import annotations

import dataclasses

import pytest

from offchain.node.service import (
    NO_HASHLOCK,
    ErrorCode,
    PaymentDirection,
    PaymentInfo,
    PaymentStatus,
    ServiceError,
    pick_payment,
)

HUB, ALICE, BOB = b"\x0a" * 20, b"\x0b" * 20, b"\x0c" * 20
SENT = PaymentInfo(
    7, PaymentDirection.SENT, b"\x01" * 20, HUB, 5, 0, PaymentStatus.SUCCEEDED,
    None, None, NO_HASHLOCK, 1.0, 1.0,
)  # fmt: skip
FROM_ALICE = dataclasses.replace(SENT, direction=PaymentDirection.RECEIVED, payer=ALICE)
FROM_BOB = dataclasses.replace(FROM_ALICE, payer=BOB)
UNKNOWN = dataclasses.replace(FROM_ALICE, payer=None, partner=BOB)


def refused(code: ErrorCode, *found: PaymentInfo, **names: object) -> str:
    with pytest.raises(ServiceError) as error:
        pick_payment(7, found, **names)  # type: ignore[arg-type]
    assert error.value.code is code
    return error.value.message


def test_one_payment_of_the_id__found_without_naming_more() -> None:
    assert pick_payment(7, [FROM_ALICE]) == FROM_ALICE
    assert pick_payment(7, [SENT, FROM_ALICE], direction=PaymentDirection.SENT) == SENT


def test_sent_and_received__ambiguous__says_to_name_the_direction() -> None:
    message = refused(ErrorCode.AMBIGUOUS, SENT, FROM_ALICE)
    assert "sent to 0x0a0a" in message and "started by 0x0b0b" in message
    assert message.endswith("add direction=sent or direction=received")


def test_received_from_several_payers__payer_or_partner_picks_one() -> None:
    found = [SENT, FROM_ALICE, FROM_BOB, UNKNOWN]
    received = PaymentDirection.RECEIVED
    message = refused(ErrorCode.AMBIGUOUS, *found, direction=received)
    assert message.endswith("add payer= (who started it) or partner= (who paid us)")
    assert pick_payment(7, found, payer=BOB) == FROM_BOB
    assert pick_payment(7, found, direction=received, partner=BOB) == UNKNOWN
    assert pick_payment(7, found, partner=BOB) == UNKNOWN


def test_refusals__payer_with_sent__none_found__long_lists_cut() -> None:
    assert "not with direction=sent" in refused(
        ErrorCode.INVALID_ARGUMENT, SENT, payer=ALICE, direction=PaymentDirection.SENT
    )
    assert refused(ErrorCode.NOT_FOUND) == "no payment 7"
    missing = refused(ErrorCode.NOT_FOUND, SENT, payer=ALICE)
    assert missing == f"no payment 7 with direction=received, payer=0x{ALICE.hex()}"
    many = [dataclasses.replace(FROM_ALICE, payer=bytes([i]) * 20) for i in range(1, 10)]
    assert "9 payments" in refused(ErrorCode.AMBIGUOUS, *many) and ", ...)" in refused(
        ErrorCode.AMBIGUOUS, *many
    )
