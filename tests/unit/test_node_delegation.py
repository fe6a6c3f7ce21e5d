"""The client side of delegation and the watch tables (offchain/node/delegation.py,
watch_store.py; docs/spec.md §15.5-§15.7, W-8..W-10).

Real channel states (two protocol nodes paying each other), a real SQLite store and real
signatures; the mesh is a list that records what would be sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from offchain.node.delegation import DelegationBook, Delegator
from offchain.node.runtime import NodeRuntime
from offchain.node.store import Store
from offchain.node.watch_store import WatchStore
from offchain.protocol.messages import BatchEntry, PaymentId
from offchain.protocol.transitions import ActionPayDirect
from offchain.protocol.types import Address, Timestamp, TokenAmount
from offchain.watch import rules
from offchain.watch.facts import ChannelFacts, Stage
from offchain.watch.wire import DelegateUpdate, Reason, WatchAck, decode
from tests.lib.network import CHAIN_ID, TOKEN_NETWORK, Network


class Mesh:
    """What the delegator hands the mesh, decoded; message ids are counters."""

    def __init__(self) -> None:
        self.sent: list[tuple[Address, DelegateUpdate]] = []
        self.full = False

    def send(self, recipient: Address, payload: bytes, lifetime: float) -> bytes | None:
        if self.full:
            return None
        message = decode(payload)
        assert isinstance(message, DelegateUpdate)
        self.sent.append((recipient, message))
        return len(self.sent).to_bytes(4, "big")


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.net = Network.create(3)
        self.a, self.b, self.w = self.net.addresses
        self.net.open(self.a, self.b, 100, 100)
        self.store = Store.open(tmp_path / "node.sqlite3")
        self.runtime = NodeRuntime(self.net.keys[self.a], CHAIN_ID, self.store)
        self.mesh = Mesh()
        self.book = DelegationBook(WatchStore(self.store.conn))
        self.views: list[tuple[Address, Address, int]] = []
        self.delegator = Delegator(
            runtime=self.runtime,
            book=self.book,
            delegates=[self.w, self.b, self.w],
            reward=3,
            send=self.mesh.send,
            clock=lambda: 1000.0,
        )
        self.delegator.on_delegate_view = lambda n, p, v, _nonce, _who: self.views.append((n, p, v))
        self.payments = 0

    def pay(self, sender: Address, receiver: Address, amount: int = 5) -> None:
        self.payments += 1
        entry = BatchEntry(PaymentId(self.payments), TokenAmount(amount))
        self.net.apply(sender, ActionPayDirect(self.net.now, TOKEN_NETWORK, receiver, (entry,)))
        self.net.run()
        self.runtime.state = self.net.states[self.a]

    def flush(self) -> list[tuple[Address, DelegateUpdate]]:
        before = len(self.mesh.sent)
        self.delegator.flush()
        return self.mesh.sent[before:]

    def events(self, kind: str) -> list[dict[str, object]]:
        return [d for _, _, k, d in self.store.events(0, 1000) if k == kind]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    made = Setup(tmp_path)
    yield made
    made.store.close()


def test_flush__partner_paid__one_valid_update_per_delegate_never_to_the_partner(
    setup: Setup,
) -> None:
    assert setup.flush() == []  # nothing received yet: nothing to delegate
    setup.pay(setup.b, setup.a)
    sent = setup.flush()
    assert [to for to, _ in sent] == [setup.w]
    request = sent[0][1]
    assert (request.closer, request.non_closer, request.nonce, request.reward) == (
        setup.b, setup.a, 1, 3,
    )  # fmt: skip
    facts = ChannelFacts(request.generation, 3600, Stage.OPENED)
    verdict = rules.judge_delegate_update(
        request, chain_id=CHAIN_ID, watcher=setup.w, min_reward=3, view_time=Timestamp(1),
        now=Timestamp(1), facts=facts, held=None,
    )  # fmt: skip
    assert verdict.accepted, verdict


def test_flush__burst_while_one_is_in_flight__the_newest_goes_after_the_ack(setup: Setup) -> None:
    setup.pay(setup.b, setup.a)
    first = setup.flush()[0][1]
    for _ in range(5):
        setup.pay(setup.b, setup.a)
    assert setup.flush() == []  # one in flight per channel and delegate
    assert setup.delegator.on_ack(setup.w, WatchAck(first.request_id, Reason.ACCEPTED,
                                                    Timestamp(77)))  # fmt: skip
    assert setup.book.view(TOKEN_NETWORK, setup.b, 1) == 77
    assert setup.book.view(TOKEN_NETWORK, setup.b, 6) is None
    assert setup.views == []  # the ack covers an older proof than our latest
    newest = setup.flush()
    assert [(to, r.nonce) for to, r in newest] == [(setup.w, 6)]
    setup.delegator.on_ack(setup.w, WatchAck(newest[0][1].request_id, Reason.ACCEPTED,
                                             Timestamp(88)))  # fmt: skip
    assert setup.views == [(TOKEN_NETWORK, setup.b, 88)]
    assert setup.delegator.views() == {(TOKEN_NETWORK, setup.b): 88}
    assert setup.flush() == []
    acks = setup.events("delegate_ack")
    assert [(e["nonce"], e["view_time"]) for e in acks] == [("1", 77), ("6", 88)]
    assert setup.delegator.stats["signed"] == 2


def test_flush__only_our_own_proof_changed__sent_again_with_the_same_signature(
    setup: Setup,
) -> None:
    setup.pay(setup.b, setup.a)
    first = setup.flush()[0][1]
    setup.delegator.on_ack(setup.w, WatchAck(first.request_id, Reason.ACCEPTED, Timestamp(1)))
    setup.pay(setup.a, setup.b, 2)
    again = setup.flush()[0][1]
    assert (again.nonce, again.own_nonce) == (1, 1)
    assert again.delegation_signature == first.delegation_signature
    assert setup.delegator.stats["signed"] == 1


def test_on_ack__refused__recorded_and_not_sent_again_for_that_proof(setup: Setup) -> None:
    setup.pay(setup.b, setup.a)
    request = setup.flush()[0][1]
    refusal = WatchAck(request.request_id, Reason.REWARD_TOO_LOW, Timestamp(0), "at least 9")
    assert setup.delegator.on_ack(setup.w, refusal)
    assert setup.events("delegate_refused")[0]["reason"] == "reward_too_low"
    assert setup.flush() == []
    setup.pay(setup.b, setup.a)
    assert [r.nonce for _, r in setup.flush()] == [2]  # a newer proof is tried


def test_on_ack__unknown_request_or_wrong_origin__not_recorded(setup: Setup) -> None:
    setup.pay(setup.b, setup.a)
    request = setup.flush()[0][1]
    assert not setup.delegator.on_ack(setup.w, WatchAck(b"\x00" * 8, Reason.ACCEPTED,
                                                        Timestamp(5)))  # fmt: skip
    assert setup.delegator.on_ack(setup.b, WatchAck(request.request_id, Reason.ACCEPTED,
                                                    Timestamp(5)))  # fmt: skip
    assert setup.events("delegate_ack") == []
    assert setup.book.get(TOKEN_NETWORK, setup.b, setup.w) is None


def test_on_mesh_outcome__expired__the_update_goes_again(setup: Setup) -> None:
    setup.pay(setup.b, setup.a)
    setup.flush()
    assert setup.delegator.on_mesh_outcome((1).to_bytes(4, "big"), delivered=False)
    assert [r.nonce for _, r in setup.flush()] == [1]
    assert not setup.delegator.on_mesh_outcome(b"other", delivered=True)


def test_flush__mesh_queue_full__nothing_lost_sent_on_a_later_flush(setup: Setup) -> None:
    setup.pay(setup.b, setup.a)
    setup.mesh.full = True
    assert setup.flush() == []
    setup.mesh.full = False
    assert len(setup.flush()) == 1


def test_delegation_book__persisted__a_restart_does_not_resend_what_was_acked(
    setup: Setup,
) -> None:
    setup.pay(setup.b, setup.a)
    request = setup.flush()[0][1]
    setup.delegator.on_ack(setup.w, WatchAck(request.request_id, Reason.ACCEPTED, Timestamp(9)))
    book = DelegationBook(WatchStore(setup.store.conn))
    assert book.view(TOKEN_NETWORK, setup.b, 1) == 9
    again = Delegator(runtime=setup.runtime, book=book, delegates=[setup.w], reward=3,
                      send=setup.mesh.send)  # fmt: skip
    before = len(setup.mesh.sent)
    again.flush()
    assert len(setup.mesh.sent) == before


def test_watch_store__newer_request_supersedes_older_and_equal_ones(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "w.sqlite3")
    items = WatchStore(store.conn)
    client = Address(b"\x01" * 20)
    with store.transaction():
        items.add(b"r1", client, 1, b"s", (5, 0), 100, b"p1", 1.0)
        items.add(b"r2", client, 1, b"s", (5, 0), 100, b"p2", 2.0)
        items.add(b"r3", client, 2, b"t", (0, 0), 50, b"p3", 3.0)
        items.add(b"r4", client, 1, b"s", (2**64 - 1, 1), None, b"p4", 4.0)
    assert [i.request_id for i in items.held()] == [b"r3", b"r4"]
    assert items.best_rank(b"s") == (2**64 - 1, 1)
    assert items.held_by(client) == 2
    with store.transaction():
        items.work_done(b"r3", b"\x0a" * 32, 5.0)
        items.finish(b"r3", "confirmed", "ok", b"\x0a" * 32, 5.0)
    done = items.get(b"r3")
    assert done is not None and done.state == "done" and done.done_work
    assert items.clients() == [client]
    store.close()


def test_on_ack__delegate_blind__the_same_proof_offered_again_later(setup: Setup) -> None:
    clock = [1000.0]
    setup.delegator.clock = lambda: clock[0]
    setup.pay(setup.b, setup.a)
    request = setup.flush()[0][1]
    blind = WatchAck(request.request_id, Reason.BLIND, Timestamp(0), "chain not reachable")
    setup.delegator.on_ack(setup.w, blind)
    assert setup.flush() == []
    clock[0] += 31
    assert [r.nonce for _, r in setup.flush()] == [1]


def test_on_beacon__delegate_holding_our_latest_proof__its_view_moves_on(setup: Setup) -> None:
    setup.pay(setup.b, setup.a)
    request = setup.flush()[0][1]
    setup.delegator.on_ack(setup.w, WatchAck(request.request_id, Reason.ACCEPTED, Timestamp(50)))
    assert setup.views == [(TOKEN_NETWORK, setup.b, 50)]
    setup.delegator.on_beacon(setup.w, 40)  # older than its ack: nothing new
    setup.delegator.on_beacon(setup.b, 90)  # not a delegate of ours
    setup.delegator.on_beacon(setup.w, 70)
    assert setup.views == [(TOKEN_NETWORK, setup.b, 50), (TOKEN_NETWORK, setup.b, 70)]
    setup.pay(setup.b, setup.a)  # a newer proof the delegate does not hold yet
    setup.delegator.on_beacon(setup.w, 80)
    assert setup.delegator.views() == {}
    assert len(setup.views) == 2


def test_set_gateways__blind_node__gateways_get_the_newest_proof_but_never_move_the_window(
    setup: Setup,
) -> None:
    gateway = Address(b"\x77" * 20)
    setup.pay(setup.b, setup.a)
    setup.delegator.set_gateways([gateway, setup.w])  # a configured delegate stays one
    assert setup.delegator.gateways == (gateway,)
    sent = setup.flush()
    assert sorted(to for to, _ in sent) == sorted([setup.w, gateway])
    to_gateway = next(r for to, r in sent if to == gateway)
    facts = ChannelFacts(to_gateway.generation, 3600, Stage.OPENED)
    verdict = rules.judge_delegate_update(
        to_gateway, chain_id=CHAIN_ID, watcher=gateway, min_reward=0, view_time=Timestamp(1),
        now=Timestamp(1), facts=facts, held=None,
    )  # fmt: skip
    assert verdict.accepted, verdict
    ack = WatchAck(to_gateway.request_id, Reason.ACCEPTED, Timestamp(500))
    assert setup.delegator.on_ack(gateway, ack)
    assert setup.book.get(TOKEN_NETWORK, setup.b, gateway) is not None  # recorded
    assert setup.views == [] and setup.delegator.views() == {}  # a gateway is not trusted
    setup.delegator.set_gateways([])  # the chain is seen again: no more updates to it
    setup.pay(setup.b, setup.a)
    assert [to for to, _ in setup.flush()] == []  # the delegate's first is still in flight
