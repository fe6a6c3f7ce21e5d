"""Whether a watcher takes a request (offchain/watch/rules.py; docs/spec.md §15.2, W-2..W-4).

Real keys and real EIP-712 signatures; the chain's facts are plain values.
"""

from __future__ import annotations

import dataclasses

import pytest

from offchain.protocol import eip712
from offchain.protocol.crypto import address_from_private_key, keccak256
from offchain.protocol.locks import EMPTY_LOCKSROOT
from offchain.protocol.types import (
    AdditionalHash,
    Address,
    BalanceHash,
    Generation,
    Nonce,
    PrivateKey,
    Secret,
    Signature,
    Timestamp,
    TokenAmount,
)
from offchain.watch import rules
from offchain.watch.facts import ChannelFacts, SideOnChain, Stage
from offchain.watch.wire import (
    BalancePreimage,
    DelegateUpdate,
    RawTransaction,
    Reason,
    RegisterSecret,
    Unlock,
)

CHAIN = 31337
NETWORK = Address(b"\x42" * 20)


def key(seed: str) -> PrivateKey:
    return PrivateKey(keccak256(seed.encode()))


CLOSER, NON_CLOSER, WATCHER, STRANGER = (key(s) for s in ("closer", "non", "watcher", "x"))
WATCHER_ADDRESS = address_from_private_key(WATCHER)


def update(
    nonce: int = 5,
    *,
    own_nonce: int = 0,
    proof_key: PrivateKey = CLOSER,
    delegation_key: PrivateKey = NON_CLOSER,
    delegate: Address = WATCHER_ADDRESS,
    reward: int = 10,
    chain_id: int = CHAIN,
    generation: int = 1,
) -> DelegateUpdate:
    unsigned = DelegateUpdate(
        request_id=b"\x01" * 8,
        chain_id=chain_id,
        token_network=NETWORK,
        generation=Generation(generation),
        closer=address_from_private_key(CLOSER),
        non_closer=address_from_private_key(NON_CLOSER),
        nonce=Nonce(nonce),
        closer_balance=BalancePreimage(TokenAmount(nonce * 3), TokenAmount(0), EMPTY_LOCKSROOT),
        additional_hash=AdditionalHash(b"\x07" * 32),
        closing_signature=Signature(bytes(65)),
        reward=TokenAmount(reward),
        delegation_signature=Signature(bytes(65)),
        own_nonce=Nonce(own_nonce),
        own_balance=BalancePreimage(TokenAmount(0), TokenAmount(0), EMPTY_LOCKSROOT),
    )
    domain = eip712.Domain(CHAIN, NETWORK)
    return dataclasses.replace(
        unsigned,
        closing_signature=eip712.sign(proof_key, domain, unsigned.balance_proof()),
        delegation_signature=eip712.sign(delegation_key, domain, unsigned.delegation(delegate)),
    )


OPEN = ChannelFacts(Generation(1), 3600, Stage.OPENED)


def closed(closer_nonce: int = 0, *, by: Address | None = None, at: int = 1000) -> ChannelFacts:
    return ChannelFacts(
        Generation(1),
        3600,
        Stage.CLOSED,
        closer=by or address_from_private_key(CLOSER),
        closed_at=Timestamp(at),
        closer_side=SideOnChain(Nonce(closer_nonce), BalanceHash(bytes(32))),
        non_closer_side=SideOnChain(Nonce(0), BalanceHash(bytes(32))),
    )


def judge(
    request: DelegateUpdate,
    facts: ChannelFacts | None = OPEN,
    *,
    view: int | None = 900,
    now: int = 1000,
    held: tuple[int, int] | None = None,
    min_reward: int = 0,
) -> rules.Verdict:
    return rules.judge_delegate_update(
        request,
        chain_id=CHAIN,
        watcher=WATCHER_ADDRESS,
        min_reward=min_reward,
        view_time=None if view is None else Timestamp(view),
        now=Timestamp(now),
        facts=facts,
        held=held,
    )


def test_judge_update__valid_on_an_open_channel__accepted() -> None:
    assert judge(update()) == rules.ACCEPT


@pytest.mark.parametrize(
    ("request_", "facts", "extra", "reason"),
    [
        # A blind watcher says so before anything else, even for a forged request.
        (update(proof_key=STRANGER), OPEN, {"view": None}, Reason.BLIND),
        (update(chain_id=1), OPEN, {}, Reason.WRONG_CHAIN),
        (update(reward=9), OPEN, {"min_reward": 10}, Reason.REWARD_TOO_LOW),
        (update(proof_key=STRANGER), OPEN, {}, Reason.BAD_PROOF_SIGNATURE),
        (update(delegation_key=STRANGER), OPEN, {}, Reason.BAD_DELEGATION_SIGNATURE),
        (update(delegate=Address(b"\x09" * 20)), OPEN, {}, Reason.BAD_DELEGATION_SIGNATURE),
        # Forged beats stale: a forged request never reads as merely old.
        (update(1, proof_key=STRANGER), OPEN, {"held": (5, 0)}, Reason.BAD_PROOF_SIGNATURE),
        (update(), None, {}, Reason.UNKNOWN_CHANNEL),
        (update(generation=2), OPEN, {}, Reason.GENERATION_MISMATCH),
        (update(), dataclasses.replace(OPEN, stage=Stage.SETTLED), {}, Reason.CHANNEL_NOT_OPEN),
        (update(), closed(by=address_from_private_key(NON_CLOSER)), {}, Reason.CHANNEL_NOT_OPEN),
        (update(), closed(at=1000), {"now": 4601}, Reason.TOO_LATE),
        (update(5), closed(5), {}, Reason.STALE),
        (update(4), OPEN, {"held": (5, 0)}, Reason.STALE),
        (update(5, own_nonce=1), OPEN, {"held": (5, 2)}, Reason.STALE),
    ],
)
def test_judge_update__refusals__the_reason(
    request_: DelegateUpdate, facts: ChannelFacts | None, extra: dict[str, object], reason: Reason
) -> None:
    verdict = judge(request_, facts, **extra)  # type: ignore[arg-type]
    assert verdict.reason is reason
    assert verdict.text


@pytest.mark.parametrize(
    ("request_", "facts", "extra"),
    [
        (update(5), OPEN, {"held": (5, 0)}),  # the same again: idempotent
        (update(5, own_nonce=3), OPEN, {"held": (5, 2)}),  # newer settle data
        (update(6), closed(5), {"now": 4600}),  # the window's last second
        (update(6), closed(5), {"held": (5, 9)}),
        (update(reward=10), OPEN, {"min_reward": 10}),
    ],
)
def test_judge_update__acceptable__accepted(
    request_: DelegateUpdate, facts: ChannelFacts, extra: dict[str, object]
) -> None:
    assert judge(request_, facts, **extra).accepted  # type: ignore[arg-type]


def test_judge_register_secret__deadline_and_view() -> None:
    request = RegisterSecret(b"\x00" * 8, Secret(b"\x01" * 32), Timestamp(100))
    assert rules.judge_register_secret(request, view_time=Timestamp(1), now=Timestamp(99)).accepted
    late = rules.judge_register_secret(request, view_time=Timestamp(1), now=Timestamp(100))
    assert late.reason is Reason.TOO_LATE
    blind = rules.judge_register_secret(request, view_time=None, now=Timestamp(0))
    assert blind.reason is Reason.BLIND


def test_judge_unlock__known_generation_taken_future_refused() -> None:
    request = Unlock(b"\x00" * 8, CHAIN, NETWORK, Address(b"\x01" * 20), Address(b"\x02" * 20),
                     Generation(1), ())  # fmt: skip
    view = Timestamp(1)
    assert rules.judge_unlock(request, chain_id=CHAIN, view_time=view, facts=OPEN).accepted
    reopened = dataclasses.replace(OPEN, generation=Generation(2))
    assert rules.judge_unlock(request, chain_id=CHAIN, view_time=view, facts=reopened).accepted
    future = dataclasses.replace(request, generation=Generation(3))
    verdict = rules.judge_unlock(future, chain_id=CHAIN, view_time=view, facts=reopened)
    assert verdict.reason is Reason.GENERATION_MISMATCH
    verdict = rules.judge_unlock(request, chain_id=CHAIN, view_time=view, facts=None)
    assert verdict.reason is Reason.UNKNOWN_CHANNEL
    verdict = rules.judge_unlock(request, chain_id=1, view_time=view, facts=OPEN)
    assert verdict.reason is Reason.WRONG_CHAIN


def test_judge_raw_transaction__until_its_deadline() -> None:
    request = RawTransaction(b"\x00" * 8, Timestamp(50), b"\x02")
    assert rules.judge_raw_transaction(request, view_time=Timestamp(1), now=Timestamp(50)).accepted
    verdict = rules.judge_raw_transaction(request, view_time=Timestamp(1), now=Timestamp(51))
    assert verdict.reason is Reason.TOO_LATE
