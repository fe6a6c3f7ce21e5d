"""What a watcher does next for a held request (offchain/watch/plan.py; docs/spec.md §15.3).

Deadlines: an update is due up to the window's last second (``closed_at + window``), a
settle after it; a secret must be registered before its deadline; a raw transaction is
given up after its deadline.
"""

from __future__ import annotations

import dataclasses

from offchain.protocol.locks import EMPTY_LOCKSROOT, Lock
from offchain.protocol.types import (
    ZERO_ADDRESS,
    AdditionalHash,
    Address,
    BalanceHash,
    Generation,
    Nonce,
    Secret,
    SecretHash,
    Signature,
    Timestamp,
    TokenAmount,
)
from offchain.watch import plan
from offchain.watch.facts import ChannelFacts, SideOnChain, Stage
from offchain.watch.plan import Finish, Receipt, Submit, Wait
from offchain.watch.wire import (
    NO_BALANCE,
    Action,
    BalancePreimage,
    DelegateUpdate,
    OutcomeStatus,
    RawTransaction,
    RegisterSecret,
    Unlock,
)

CLOSER = Address(b"\x0b" * 20)
CLIENT = Address(b"\x0c" * 20)
WATCHER = Address(b"\x0d" * 20)
NETWORK = Address(b"\x0a" * 20)
CLOSER_DATA = BalancePreimage(TokenAmount(9), TokenAmount(0), EMPTY_LOCKSROOT)
OWN_DATA = BalancePreimage(TokenAmount(2), TokenAmount(0), EMPTY_LOCKSROOT)

REQUEST = DelegateUpdate(
    request_id=b"\x01" * 8,
    chain_id=1,
    token_network=NETWORK,
    generation=Generation(1),
    closer=CLOSER,
    non_closer=CLIENT,
    nonce=Nonce(3),
    closer_balance=CLOSER_DATA,
    additional_hash=AdditionalHash(bytes(32)),
    closing_signature=Signature(bytes(65)),
    reward=TokenAmount(1),
    delegation_signature=Signature(bytes(65)),
    own_nonce=Nonce(1),
    own_balance=OWN_DATA,
)
ZERO_HASH = BalanceHash(bytes(32))


def closed(
    closer_nonce: int = 0,
    closer_hash: BalanceHash = ZERO_HASH,
    client_hash: BalanceHash = ZERO_HASH,
    delegate: Address = ZERO_ADDRESS,
    by: Address = CLOSER,
) -> ChannelFacts:
    return ChannelFacts(
        generation=Generation(1),
        settle_window=100,
        stage=Stage.CLOSED,
        closer=by,
        closed_at=Timestamp(1000),
        closer_side=SideOnChain(Nonce(closer_nonce), closer_hash),
        non_closer_side=SideOnChain(Nonce(0), client_hash, delegate),
    )


STANDS = closed(3, CLOSER_DATA.balance_hash, delegate=WATCHER)


def step(facts: ChannelFacts | None, now: int, updated: bool = False) -> plan.Step:
    return plan.plan_update(REQUEST, facts, Timestamp(now), watcher=WATCHER, updated=updated)


def test_plan_update__open__waits() -> None:
    assert isinstance(step(ChannelFacts(Generation(1), 100, Stage.OPENED), 5), Wait)
    assert isinstance(step(None, 5), Wait)


def test_plan_update__closed_by_the_partner_with_an_older_proof__update_by_the_deadline() -> None:
    assert step(closed(2), 1050) == Submit(Action.UPDATE, Timestamp(1100))
    assert step(closed(2), 1100) == Submit(Action.UPDATE, Timestamp(1100))


def test_plan_update__window_over_before_the_update__failed() -> None:
    result = step(closed(2), 1101)
    assert isinstance(result, Finish)
    assert (result.action, result.status) == (Action.UPDATE, OutcomeStatus.FAILED)


def test_plan_update__chain_holds_as_new__unnecessary() -> None:
    result = step(closed(3), 1050)
    assert isinstance(result, Finish) and result.status is OutcomeStatus.UNNECESSARY


def test_plan_update__closed_by_the_client__unnecessary() -> None:
    result = step(closed(by=CLIENT), 1050)
    assert isinstance(result, Finish) and result.status is OutcomeStatus.UNNECESSARY


def test_plan_update__our_update_stands__wait_then_settle() -> None:
    assert isinstance(step(STANDS, 1100, updated=True), Wait)
    # The chain says the update is ours even if we forgot (crash before recording it).
    assert isinstance(step(STANDS, 1100, updated=False), Wait)
    assert step(STANDS, 1101, updated=True) == Submit(Action.SETTLE)


def test_plan_update__settle_data_unknown__waits_for_the_participants() -> None:
    facts = closed(3, CLOSER_DATA.balance_hash, BalanceHash(b"\x05" * 32), WATCHER)
    assert isinstance(step(facts, 1200, updated=True), Wait)


def test_plan_update__replaced_by_a_newer_update__no_reward() -> None:
    replaced = closed(4, BalanceHash(b"\x06" * 32))
    result = step(replaced, 1200, updated=True)
    assert isinstance(result, Finish)
    assert (result.action, result.status) == (Action.SETTLE, OutcomeStatus.UNNECESSARY)


def test_plan_update__settled__confirmed_if_ours_else_unnecessary() -> None:
    settled = ChannelFacts(Generation(1), 100, Stage.SETTLED, settled_generation=Generation(1))
    ours = step(settled, 1200, updated=True)
    assert isinstance(ours, Finish)
    assert (ours.action, ours.status) == (Action.SETTLE, OutcomeStatus.CONFIRMED)
    theirs = step(settled, 1200)
    assert isinstance(theirs, Finish)
    assert (theirs.action, theirs.status) == (Action.UPDATE, OutcomeStatus.UNNECESSARY)
    reopened = ChannelFacts(Generation(2), 100, Stage.OPENED, settled_generation=Generation(1))
    assert isinstance(step(reopened, 1200), Finish)


def test_settle_data__no_proof_or_the_held_one__else_unknown() -> None:
    assert plan.settle_data(REQUEST, closed(3, CLOSER_DATA.balance_hash)) == (
        CLOSER_DATA,
        NO_BALANCE,
    )
    both = closed(3, CLOSER_DATA.balance_hash, OWN_DATA.balance_hash)
    assert plan.settle_data(REQUEST, both) == (CLOSER_DATA, OWN_DATA)
    assert plan.settle_data(REQUEST, closed(3, BalanceHash(b"\x01" * 32))) is None
    unread = dataclasses.replace(closed(), closer_side=None)
    assert plan.settle_data(REQUEST, unread) is None


SECRET = RegisterSecret(b"\x02" * 8, Secret(b"\x03" * 32), Timestamp(500))


def test_plan_register_secret__registered_in_time__confirmed_or_unnecessary() -> None:
    ours = plan.plan_register_secret(SECRET, Timestamp(500), Timestamp(600), submitted=True)
    assert isinstance(ours, Finish) and ours.status is OutcomeStatus.CONFIRMED
    theirs = plan.plan_register_secret(SECRET, Timestamp(400), Timestamp(600), submitted=False)
    assert isinstance(theirs, Finish) and theirs.status is OutcomeStatus.UNNECESSARY


def test_plan_register_secret__late_or_past_the_deadline__failed() -> None:
    late = plan.plan_register_secret(SECRET, Timestamp(501), Timestamp(600), submitted=True)
    assert isinstance(late, Finish) and late.status is OutcomeStatus.FAILED
    missed = plan.plan_register_secret(SECRET, None, Timestamp(500), submitted=False)
    assert isinstance(missed, Finish) and missed.status is OutcomeStatus.FAILED


def test_plan_register_secret__before_the_deadline__submit() -> None:
    assert plan.plan_register_secret(SECRET, None, Timestamp(499), submitted=False) == Submit(
        Action.REGISTER_SECRET, Timestamp(500)
    )


UNLOCK = Unlock(b"\x04" * 8, 1, NETWORK, CLIENT, CLOSER, Generation(1),
                (Lock(Timestamp(9), TokenAmount(1), SecretHash(b"\x05" * 32)),))  # fmt: skip


def test_plan_unlock__after_settle_while_retained__submit_then_done() -> None:
    open_ = ChannelFacts(Generation(1), 100, Stage.CLOSED)
    assert isinstance(plan.plan_unlock(UNLOCK, open_, None, submitted=False), Wait)
    settled = ChannelFacts(Generation(1), 100, Stage.SETTLED, settled_generation=Generation(1))
    assert isinstance(plan.plan_unlock(UNLOCK, settled, None, submitted=False), Wait)
    assert plan.plan_unlock(UNLOCK, settled, 7, submitted=False) == Submit(Action.UNLOCK)
    done = plan.plan_unlock(UNLOCK, settled, 0, submitted=True)
    assert isinstance(done, Finish) and done.status is OutcomeStatus.CONFIRMED
    nothing = plan.plan_unlock(UNLOCK, settled, 0, submitted=False)
    assert isinstance(nothing, Finish) and nothing.status is OutcomeStatus.UNNECESSARY


RAW = RawTransaction(b"\x06" * 8, Timestamp(300), b"\x01\x02")


def test_plan_raw_transaction__receipt_deadline_or_broadcast() -> None:
    ok = plan.plan_raw_transaction(RAW, Receipt(True, Timestamp(290)), Timestamp(310))
    assert isinstance(ok, Finish) and ok.status is OutcomeStatus.CONFIRMED
    reverted = plan.plan_raw_transaction(RAW, Receipt(False, Timestamp(290)), Timestamp(310))
    assert isinstance(reverted, Finish) and reverted.status is OutcomeStatus.FAILED
    late = plan.plan_raw_transaction(RAW, None, Timestamp(301))
    assert isinstance(late, Finish) and late.status is OutcomeStatus.FAILED
    assert plan.plan_raw_transaction(RAW, None, Timestamp(300)) == Submit(
        Action.BROADCAST, Timestamp(300)
    )
