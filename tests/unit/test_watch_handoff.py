"""A blind node's hand-offs to gateways: the policy (offchain/watch/handoff.py), the
tables that keep them (offchain/node/watch_store.py, migration 5), and transactions
signed without the chain (TxSender.sign_offline; docs/offline.md §4, docs/spec.md §15.6,
W-11, W-12).

Real SQLite, real signatures; the endpoint of the offline signer is a port nobody
listens on, so any question to it would fail the test.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from eth_account import Account

from offchain.chain.calls import ContractCall
from offchain.chain.outbox import Attempt, IntentStatus
from offchain.chain.rpc import Endpoint, connect
from offchain.chain.transactions import Fees, SenderConfig, TxSender
from offchain.node.store import Store
from offchain.node.watch_store import Handed, WatchStore
from offchain.protocol.crypto import keccak256
from offchain.protocol.types import Address
from offchain.watch.handoff import (
    REGISTER_GRACE,
    HandKind,
    HandOff,
    HandState,
    Try,
    due,
    next_gateways,
    state,
)
from offchain.watch.wire import OutcomeStatus
from scripts.nodes import free_port

G1, G2, G3 = (Address(bytes([i]) * 20) for i in (1, 2, 3))
PATIENCE = 60.0
T0 = 1_000_000.0


def handoff(*tries: Try, kind: HandKind = HandKind.REGISTER_SECRET, act_by: float | None = None,
            chain_deadline: int | None = None) -> HandOff:  # fmt: skip
    return HandOff(kind, act_by, chain_deadline, tries)


# -- the policy ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "kind", "expected"),
    [
        (Try(G1, T0, T0, outcome=OutcomeStatus.CONFIRMED), HandKind.REGISTER_SECRET, "done"),
        (Try(G1, T0, T0, outcome=OutcomeStatus.UNNECESSARY), HandKind.UNLOCK, "done"),
        (Try(G1, T0, T0, outcome=OutcomeStatus.FAILED, mined=True), HandKind.RAW_TRANSACTION,
         "failed"),
        (Try(G1, T0, T0, outcome=OutcomeStatus.FAILED), HandKind.RAW_TRANSACTION, "open"),
        (Try(G1, T0, T0, outcome=OutcomeStatus.FAILED, mined=True), HandKind.REGISTER_SECRET,
         "open"),
        (Try(G1, T0), HandKind.RAW_TRANSACTION, "open"),
    ],
)  # fmt: skip
def test_state__outcomes__done_failed_for_good_or_still_open(
    attempt: Try, kind: HandKind, expected: str
) -> None:
    assert state(handoff(attempt, kind=kind), T0 + 1).value == expected


def test_state__chain_deadline_over__failed_whatever_was_tried() -> None:
    assert state(handoff(chain_deadline=int(T0)), T0 + 1) is HandState.FAILED
    assert state(handoff(chain_deadline=int(T0) + 5), T0 + 1) is HandState.OPEN


def test_next_gateways__nothing_tried__the_best_candidate_only() -> None:
    assert next_gateways(handoff(), [G1, G2, G3], T0, PATIENCE) == [G1]
    assert next_gateways(handoff(), [], T0, PATIENCE) == []


def test_next_gateways__one_live__waits_for_it() -> None:
    unacked = handoff(Try(G1, T0))
    assert next_gateways(unacked, [G1, G2], T0 + PATIENCE - 1, PATIENCE) == []
    acked = handoff(Try(G1, T0, acked_at=T0 + 30))
    assert next_gateways(acked, [G1, G2], T0 + 30 + PATIENCE - 1, PATIENCE) == []


@pytest.mark.parametrize(
    ("attempt", "now"),
    [
        (Try(G1, T0), T0 + PATIENCE),  # never acknowledged
        (Try(G1, T0, acked_at=T0 + 1), T0 + 1 + PATIENCE),  # acknowledged, no outcome
        (Try(G1, T0, acked_at=T0 + 1, refused=True), T0 + 2),  # refused
        (Try(G1, T0, acked_at=T0 + 1, outcome=OutcomeStatus.FAILED), T0 + 2),  # its tx failed
    ],
)
def test_next_gateways__first_silent_refusing_or_failing__the_next_one(
    attempt: Try, now: float
) -> None:
    assert next_gateways(handoff(attempt), [G1, G2, G3], now, PATIENCE) == [G2]


def test_next_gateways__acknowledged_unlock__waits_for_the_settle_however_long() -> None:
    unlock = handoff(Try(G1, T0, acked_at=T0 + 1), kind=HandKind.UNLOCK)
    assert next_gateways(unlock, [G1, G2], T0 + 100 * PATIENCE, PATIENCE) == []
    unanswered = handoff(Try(G1, T0), kind=HandKind.UNLOCK)
    assert next_gateways(unanswered, [G1, G2], T0 + PATIENCE, PATIENCE) == [G2]


def test_next_gateways__deadline_near__every_untried_gateway_at_once() -> None:
    live = Try(G1, T0, acked_at=T0 + 1)
    near = handoff(live, act_by=T0 + 10 + PATIENCE - 1)
    assert next_gateways(near, [G1, G2, G3], T0 + 10, PATIENCE) == [G2, G3]
    far = handoff(live, act_by=T0 + 10 + PATIENCE + 1)
    assert next_gateways(far, [G1, G2, G3], T0 + 10, PATIENCE) == []


def test_next_gateways__all_tried_and_silent__again_the_longest_ago_once_per_patience() -> None:
    tried = handoff(Try(G2, T0, T0 + 1, refused=True), Try(G1, T0 + 10, T0 + 11, refused=True))
    assert next_gateways(tried, [G1, G2], T0 + PATIENCE - 1, PATIENCE) == []
    assert next_gateways(tried, [G1, G2], T0 + PATIENCE, PATIENCE) == [G2]
    assert next_gateways(tried, [G1, G2], T0 + 10 + PATIENCE, PATIENCE) == [G2]


def test_next_gateways__done__nobody() -> None:
    done = handoff(Try(G1, T0, acked_at=T0, outcome=OutcomeStatus.CONFIRMED))
    assert next_gateways(done, [G1, G2], T0 + 10 * PATIENCE, PATIENCE) == []


def test_due__derived_registration__after_the_grace_only() -> None:
    assert due(False, T0, T0)
    assert not due(True, T0, T0 + REGISTER_GRACE - 0.1)
    assert due(True, T0, T0 + REGISTER_GRACE)


# -- the tables ----------------------------------------------------------------------------------


def _handed(request_id: bytes, subject: str) -> Handed:
    return Handed(
        request_id=request_id, subject=subject, kind="register_secret", what="register_secret",
        token_network=None, partner=G3, secrethash=b"\x05" * 32, payload=b"\xa2\x01\x02",
        act_by=T0 + 500, chain_deadline=int(T0) + 535, state="open", outcome=None, gateway=None,
        created_at=T0,
    )  # fmt: skip


def test_handoff_tables__written_then_reopened__the_same_handoff_and_answers(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "node.sqlite3")
    items = WatchStore(store.conn)
    with store.transaction():
        items.add_handoff(_handed(b"r" * 8, "secret:05"), T0)
        items.hand(b"r" * 8, G1, T0 + 1)
        items.hand(b"r" * 8, G2, T0 + 2)
    with store.transaction():
        assert items.answered(b"r" * 8, G1, T0 + 3, refused="blind")
        assert items.answered(b"r" * 8, G2, T0 + 4, outcome="confirmed", mined=True)
        assert not items.answered(b"r" * 8, G3, T0 + 5)  # never handed to G3
        assert not items.answered(b"x" * 8, G1, T0 + 5)
        items.set_handoff_state(b"r" * 8, "done", T0 + 4, outcome="confirmed", gateway=G2)
    store.close()
    store = Store.open(tmp_path / "node.sqlite3")
    items = WatchStore(store.conn)
    row = items.handoff("secret:05")
    assert row is not None and row.request_id == b"r" * 8
    assert (row.state, row.outcome, row.gateway, row.partner) == ("done", "confirmed", G2, G3)
    assert items.handoff_by_request(b"r" * 8) == row
    assert [h.subject for h in items.handoffs("done")] == ["secret:05"]
    assert items.handoffs("open") == []
    tries = items.tries(b"r" * 8)
    assert [(t.gateway, t.refused, t.reason, t.outcome, t.mined) for t in tries] == [
        (G1, True, "blind", None, False),
        (G2, False, None, "confirmed", True),
    ]
    with store.transaction():
        items.hand(b"r" * 8, G1, T0 + 100)  # handed again: its earlier answer is forgotten
    again = [t for t in items.tries(b"r" * 8) if t.gateway == G1]
    assert again[0].handed_at == T0 + 100 and not again[0].refused and again[0].acked_at is None
    store.close()


def test_handoff_tables__one_row_per_subject(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "node.sqlite3")
    items = WatchStore(store.conn)
    with store.transaction():
        items.add_handoff(_handed(b"a" * 8, "secret:05"), T0)
    with pytest.raises(Exception, match="UNIQUE"), store.transaction():
        items.add_handoff(_handed(b"b" * 8, "secret:05"), T0)
    assert [h.request_id for h in items.handoffs()] == [b"a" * 8]
    store.close()


# -- signing without the chain -------------------------------------------------------------------

KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
CALL = ContractCall(Address(b"\x11" * 20), b"\x01\x02", 0, "close_channel")
FEES = Fees(max_fee=8 * 10**9, priority_fee=10**9)


def _sender(tmp_path: Path, cap: int | None = None) -> tuple[Store, TxSender]:
    store = Store.open(tmp_path / "node.sqlite3")
    endpoint = Endpoint(connect(f"http://127.0.0.1:{free_port()}", 0.5))
    sender = TxSender(endpoint, KEY, store.conn, 31337, SenderConfig(max_fee_cap=cap))
    return store, sender


def test_sign_offline__nonce_above_every_outbox_nonce_and_the_known_one__never_reused(
    tmp_path: Path,
) -> None:
    store, sender = _sender(tmp_path)

    async def main() -> None:
        earlier = ContractCall(Address(b"\x22" * 20), b"", 0, "deposit")
        sender.outbox.add("user:1", earlier, None, T0)
        sender.outbox.record_attempt(
            "user:1", 7, 50_000, Attempt(b"\x33" * 32, b"raw", 1, 1, None, T0)
        )
        first = await sender.sign_offline("fx:1:0", CALL, gas=200_000, fees=FEES, least_nonce=3)
        assert first.status is IntentStatus.SENT and first.nonce == 8
        (attempt,) = first.attempts
        assert attempt.broadcast_at is None  # a gateway broadcasts it, not us
        assert keccak256(attempt.raw_tx) == attempt.tx_hash
        assert Account.recover_transaction(attempt.raw_tx) == Account.from_key(KEY).address
        assert (attempt.max_fee, attempt.priority_fee) == (FEES.max_fee, FEES.priority_fee)
        # Asked again (a restart, another round): the same transaction, no new nonce.
        again = await sender.sign_offline("fx:1:0", CALL, gas=200_000, fees=FEES, least_nonce=3)
        assert again.attempts == first.attempts
        later = await sender.sign_offline("fx:1:1", CALL, gas=200_000, fees=FEES, least_nonce=20)
        assert later.nonce == 20
        next_one = await sender.sign_offline("fx:1:2", CALL, gas=200_000, fees=FEES, least_nonce=0)
        assert next_one.nonce == 21

    try:
        asyncio.run(main())
    finally:
        store.close()


def test_sign_offline__fee_cap__never_offered_above_it(tmp_path: Path) -> None:
    store, sender = _sender(tmp_path, cap=5 * 10**9)

    async def main() -> None:
        intent = await sender.sign_offline("fx:2:0", CALL, gas=100_000, fees=FEES, least_nonce=0)
        assert intent.attempts[0].max_fee == 5 * 10**9

    try:
        asyncio.run(main())
    finally:
        store.close()
