"""The node's SQLite store: group commits, restore = snapshot + replay, unfinished work,
payments, the lock, schema versions (offchain/node/store.py)."""

from __future__ import annotations

import select
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from offchain.node.errors import StoreError, StoreLockedError
from offchain.node.store import MIGRATIONS, Store, schema_version
from offchain.protocol import codec
from offchain.protocol.messages import BatchEntry, PaymentId
from offchain.protocol.node import transition
from offchain.protocol.transitions import (
    ActionPay,
    ActionPayDirect,
    ChainChannelClosed,
    ChainChannelOpened,
    ChainChannelSettled,
    ChainDeposit,
    ChainWithdraw,
    EventPaymentReceived,
    ReceiveMessage,
    SendMessage,
    Tick,
)
from offchain.protocol.types import Generation, Timestamp, TokenAmount
from tests.lib.network import TOKEN_NETWORK, Network, secret_for
from tests.unit.test_node_encoding import comparable


def run_logged(net: Network, store: Store, who: bytes, event: object, snapshot: bool = False):  # type: ignore[no-untyped-def]
    with store.transaction():
        effects = net.apply(who, event)  # type: ignore[arg-type]
        store.log(event, effects, float(net.now))  # type: ignore[arg-type]
        if snapshot:
            store.snapshot(net.states[who])
    return effects


def test_restore__snapshot_plus_replay_gives_the_same_state(tmp_path: Path) -> None:
    net = Network.create(3)
    a, _, c = net.line(1_000)
    net.publish_graph()
    store = Store.open(tmp_path / "a.sqlite3")
    store.bind_identity(a, 31337)
    first = net.states[a]
    with store.transaction():
        store.snapshot(first)
    for pid in range(1, 6):
        secret, secrethash = secret_for(pid)
        pay = ActionPay(net.now, pid, TOKEN_NETWORK, c, TokenAmount(3), secrethash, secret)
        run_logged(net, store, a, pay, snapshot=pid == 3)
        # deliver everything, logging what reaches `a`
        while net.flights:
            flight = net.flights.pop(0)
            event = ReceiveMessage(net.now, flight.sender, codec.decode(flight.data))
            if flight.recipient == a:
                run_logged(net, store, a, event)
            else:
                net.apply(flight.recipient, event)
    store.close()

    store = Store.open(tmp_path / "a.sqlite3")
    restored = store.restore()
    assert restored.state is not None and restored.snapshot_seq > 1
    state = restored.state
    for _, event in restored.inputs:
        state, _ = transition(state, event, net.keys[a])
    assert comparable(state) == comparable(net.states[a])
    rows = store.payments("direction = 'sent'")
    assert sorted(r["payment_id"] for r in rows) == [1, 2, 3, 4, 5]
    assert {r["status"] for r in rows} == {"succeeded"}
    kinds = [kind for _, _, kind, _ in store.events(0, 100)]
    assert kinds.count("payment_succeeded") == 5
    store.close()


def test_work__written_with_the_input__done_when_marked(tmp_path: Path) -> None:
    net = Network.create(2)
    a, b = net.line(100)
    net.publish_graph()
    store = Store.open(tmp_path / "n.sqlite3")
    secret, secrethash = secret_for(1)
    pay = ActionPay(net.now, 1, TOKEN_NETWORK, b, TokenAmount(5), secrethash, secret)
    effects = run_logged(net, store, a, pay)
    sends = [e for e in effects if isinstance(e, SendMessage)]
    work = store.pending_work("send")
    assert [(w.recipient, w.data) for w in work] == [
        (s.recipient, codec.encode(s.message)) for s in sends
    ]
    with store.transaction():
        store.mark_done([w.key for w in work])
    assert store.pending_work() == []
    store.close()


def test_a_rolled_back_batch_leaves_nothing(tmp_path: Path) -> None:
    net = Network.create(2)
    a, b = net.line(100)
    store = Store.open(tmp_path / "n.sqlite3")
    secret, secrethash = secret_for(1)
    pay = ActionPay(net.now, 1, TOKEN_NETWORK, b, TokenAmount(5), secrethash, secret)
    with pytest.raises(RuntimeError), store.transaction():
        store.log(pay, net.apply(a, pay), 0.0)
        raise RuntimeError("disk full")
    assert store.restore().inputs == [] and store.pending_work() == []
    store.close()


def test_lock__a_second_process_is_refused_with_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite3"
    store = Store.open(path)
    code = (
        "import sys; from pathlib import Path; from offchain.node.store import Store\n"
        "from offchain.node.errors import StoreLockedError\n"
        f"try:\n    Store.open(Path({str(path)!r}))\nexcept StoreLockedError as e:\n"
        "    print(e); sys.exit(3)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 3 and "in use by another process" in result.stdout
    with pytest.raises(StoreLockedError):
        Store.open(path)  # the same process, a second time: refused too
    store.close()
    Store.open(path).close()  # released


def test_identity__a_database_belongs_to_one_account_and_chain(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "n.sqlite3")
    store.bind_identity(b"\x01" * 20, 31337)
    store.bind_identity(b"\x01" * 20, 31337)
    with pytest.raises(StoreError, match="belongs to account 0x0101"):
        store.bind_identity(b"\x02" * 20, 31337)
    with pytest.raises(StoreError, match="on chain 31337"):
        store.bind_identity(b"\x01" * 20, 1)
    store.close()


def test_schema__newer_database_refused__not_a_database_refused(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite3"
    Store.open(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == schema_version()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.execute(f"PRAGMA user_version = {schema_version() + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this release"):
        Store.open(path)
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable database"):
        Store.open(junk)
    Store.open(junk.with_name("other.sqlite3")).close()  # the lock of the failed open is free


def test_a_refused_direct_batch__its_payments_fail_at_once(tmp_path: Path) -> None:
    net = Network.create(2)
    a, b = net.line(10)
    store = Store.open(tmp_path / "n.sqlite3")
    too_much = ActionPayDirect(
        net.now, TOKEN_NETWORK, b, (BatchEntry(PaymentId(1), TokenAmount(8)),
                                     BatchEntry(PaymentId(2), TokenAmount(8)))
    )  # fmt: skip
    run_logged(net, store, a, too_much)
    rows = store.payments("direction = 'sent'")
    assert sorted((r["payment_id"], r["status"], r["reason"]) for r in rows) == [
        (1, "failed", "rejected"),
        (2, "failed", "rejected"),
    ]
    store.close()


def test_events__chain_inputs_about_our_channel__in_the_event_log_with_the_input(
    tmp_path: Path,
) -> None:
    net = Network.create(2)
    a, b = net.addresses
    store = Store.open(tmp_path / "n.sqlite3")
    inputs = [
        ChainChannelOpened(net.now, TOKEN_NETWORK, b, Generation(1), 3_600),
        ChainDeposit(net.now, TOKEN_NETWORK, b, a, TokenAmount(40)),
        ChainDeposit(net.now, TOKEN_NETWORK, b, b, TokenAmount(10)),
        ChainWithdraw(net.now, TOKEN_NETWORK, b, a, TokenAmount(5)),
        ChainChannelClosed(net.now, TOKEN_NETWORK, b, b),
        ChainChannelSettled(net.now, TOKEN_NETWORK, b),
    ]
    for event in inputs:
        run_logged(net, store, a, event)
    logged = [(kind, data) for _, _, kind, data in store.events(0, 100)]
    assert [kind for kind, _ in logged] == [
        "channel_opened",
        "channel_deposit",
        "channel_deposit",
        "channel_withdraw",
        "channel_closed",
        "channel_settled",
    ]
    assert {data["partner"] for _, data in logged} == {"0x" + b.hex()}
    assert [data["total"] for kind, data in logged if kind == "channel_deposit"] == ["40", "10"]
    assert logged[4][1]["closer"] == "0x" + b.hex()
    store.close()


def test_payments__one_id_from_two_payers_through_one_partner__both_kept(tmp_path: Path) -> None:
    # Payment ids are unique per initiator only: two customers paying through the same hub
    # may both use id 7. The old key (direction, id, partner) kept only the first.
    hub, alice, bob = b"\x0a" * 20, b"\x0b" * 20, b"\x0c" * 20
    store = Store.open(tmp_path / "n.sqlite3")
    received = [
        EventPaymentReceived(TOKEN_NETWORK, PaymentId(7), hub, TokenAmount(3), alice),
        EventPaymentReceived(TOKEN_NETWORK, PaymentId(7), hub, TokenAmount(4), bob),
        EventPaymentReceived(TOKEN_NETWORK, PaymentId(7), hub, TokenAmount(5), None),
        EventPaymentReceived(TOKEN_NETWORK, PaymentId(7), hub, TokenAmount(3), alice),  # again
    ]
    with store.transaction():
        store.log(Tick(Timestamp(1)), received, 1.0)  # type: ignore[arg-type]
    rows = store.payments("payment_id = 7")
    assert sorted((bytes(r["payer"]), r["amount"]) for r in rows) == [
        (b"", "5"),
        (alice, "3"),
        (bob, "4"),
    ]
    assert {bytes(r["partner"]) for r in rows} == {hub}
    store.close()


def test_schema__version_2_database__payments_carried_into_version_3(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    for version, statements in MIGRATIONS:
        if version > 2:
            break
        for statement in statements:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    rows = [
        ("sent", 7, b"\x0a" * 20, TOKEN_NETWORK, "5", "1", "succeeded", None, None, b"\x01" * 32,
         1.0, 2.0),
        ("received", 7, b"\x0b" * 20, TOKEN_NETWORK, "4", "0", "succeeded", None, None, None,
         3.0, 3.0),
    ]  # fmt: skip
    conn.executemany("INSERT INTO payments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.close()

    store = Store.open(path)
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == schema_version() >= 3
    found = {r["direction"]: r for r in store.payments("payment_id = 7")}
    assert [tuple(found[d])[:12] for d in ("sent", "received")] == rows
    assert bytes(found["sent"]["payer"]) == bytes(found["received"]["payer"]) == b""
    query = "SELECT name FROM sqlite_master WHERE type = 'index'"
    indexes = {name for (name,) in store.conn.execute(query)}
    assert {"payments_by_id", "payments_by_status"} <= indexes
    store.close()


def test_log_syncer__answers_each_request__gone_when_its_process_is(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "n.sqlite3")
    with store.transaction():  # the WAL file exists once something was written
        store.set_meta("k", "v")
    syncer = store.log_syncer()
    try:
        assert syncer.answers() == b""  # nothing asked, nothing answered
        for _ in range(3):
            syncer.request()
            readable, _, _ = select.select([syncer.fileno()], [], [], 10)
            assert readable and syncer.answers() == b"k"
        syncer.process.kill()
        syncer.process.wait()
        assert syncer.answers() is None  # gone: nothing it was asked is known durable
    finally:
        syncer.close()
        store.close()
