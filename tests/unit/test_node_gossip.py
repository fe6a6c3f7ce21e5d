"""Capacity announcements and the node's view of the graph (offchain/node/gossip.py)."""

from __future__ import annotations

import pytest

from offchain.chain.inputs import ChannelRecord
from offchain.node.gossip import (
    EARLY_LIMIT,
    SIGNED_SIZE,
    Announcement,
    AnnouncementError,
    GraphView,
    OwnChannel,
    decode_announcement,
)
from offchain.protocol.crypto import address_from_private_key
from offchain.protocol.fees import FeeSchedule
from offchain.protocol.locks import channel_id
from offchain.protocol.routes import find_routes
from offchain.protocol.types import Generation
from tests.lib.network import TOKEN_NETWORK, make_key

KEYS = [make_key(i) for i in range(4)]
A, B, C, D = (address_from_private_key(k) for k in KEYS)
FEES = FeeSchedule(flat=3, proportional_ppm=1_000, imbalance_ppm=0)


def announce(
    index: int, partner: bytes, capacity: int, ts: int, chain_id: int = 31337
) -> Announcement:
    signer = address_from_private_key(KEYS[index])
    return Announcement(chain_id, TOKEN_NETWORK, signer, partner, capacity, FEES, ts).signed(  # type: ignore[arg-type]
        KEYS[index]
    )


def test_round_trip__exact_and_checked() -> None:
    item = announce(1, C, 700, 1_000)
    data = item.encode()
    assert len(data) == SIGNED_SIZE and decode_announcement(data) == item


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d[:-1],
        lambda d: d + b"\x00",
        lambda d: b"\x01" + d[1:],
        lambda d: d[:60] + bytes([d[60] ^ 1]) + d[61:],  # the signer field: forged
        lambda d: d[:100] + bytes([d[100] ^ 1]) + d[101:],  # the capacity: tampered
        lambda d: d[:-65] + b"\x00" * 65,
    ],
)
def test_malformed_or_forged__one_clear_error(mutate) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AnnouncementError):
        decode_announcement(mutate(announce(1, C, 700, 1_000).encode()))


def record(a: bytes, b: bytes, deposit1: int, deposit2: int, withdrawn1: int = 0) -> ChannelRecord:
    """What the chain says of channel a-b (the follower's directory record)."""
    return ChannelRecord(
        TOKEN_NETWORK, channel_id(a, b), a, b, Generation(1), 3_600,  # type: ignore[arg-type]
        deposit1=deposit1, deposit2=deposit2, withdrawn1=withdrawn1,  # type: ignore[arg-type]
    )  # fmt: skip


def view() -> GraphView:
    graph = GraphView(31337, A, min_interval_ms=10)
    graph.set_channel(record(A, B, 100, 100))
    graph.set_channel(record(B, C, 500, 40, withdrawn1=100))
    return graph


def test_accept__only_new_checked_facts_about_open_channels() -> None:
    graph = view()
    assert graph.accept(announce(1, C, 300, 1_000), now_ms=1_000)
    assert not graph.accept(announce(1, C, 300, 1_000), now_ms=1_000)  # same: stale
    assert not graph.accept(announce(1, C, 300, 999), now_ms=1_000)  # older: stale
    assert not graph.accept(announce(1, C, 300, 1_005), now_ms=1_005)  # too soon: rate limit
    assert graph.accept(announce(1, C, 250, 1_010), now_ms=1_010)
    assert not graph.accept(announce(3, A, 5, 1_000), now_ms=1_000)  # no channel D-A
    assert not graph.accept(announce(1, C, 5, 70_000), now_ms=1_000)  # from the future
    assert not graph.accept(announce(1, C, 5, 3_000, chain_id=1), now_ms=3_000)
    assert graph.stats == {"accepted": 2, "stale": 3, "unknown_channel": 2, "rate_limited": 1}


def test_graph__announcements_over_deposits__own_channels_exact() -> None:
    graph = view()
    graph.set_own([OwnChannel(TOKEN_NETWORK, B, ours=60, theirs=140)], FeeSchedule())
    graph.accept(announce(1, C, 250, 1_000), now_ms=1_000)
    edges = {(e.a, e.b): e for e in graph.graph(TOKEN_NETWORK).edges}
    assert (edges[(A, B)].capacity_ab, edges[(A, B)].capacity_ba) == (60, 140)
    # B -> C announced; C -> B from its deposit less nothing withdrawn.
    assert (edges[(B, C)].capacity_ab, edges[(B, C)].capacity_ba) == (250, 40)
    assert edges[(B, C)].schedule_ab == FEES
    assert graph.changed() == {TOKEN_NETWORK} and graph.changed() == set()
    result = find_routes(graph.graph(TOKEN_NETWORK), A, C, 50)
    assert result.best is not None and result.best.nodes == (A, B, C)


def test_accept__before_the_chain_shows_the_channel__kept_and_taken_once_it_opens() -> None:
    graph = view()
    early = announce(2, D, 70, 1_000)  # C-D: announced before our follower saw it open
    assert not graph.accept(early, now_ms=1_000)
    assert not graph.accept(announce(2, D, 60, 900), now_ms=1_000)  # older: the newest stays
    assert graph.released() == []
    graph.set_channel(record(C, D, 80, 0))
    assert graph.released() == [early]  # taken once: to pass on
    assert graph.released() == []
    edges = {(e.a, e.b): e for e in graph.graph(TOKEN_NETWORK).edges}
    assert edges[(C, D)].capacity_ab == 70 and edges[(C, D)].schedule_ab == FEES
    graph.set_channel(record(C, D, 80, 0))  # the same fact again: nothing more to take
    assert graph.released() == []


def test_accept__early_announcements_bounded__oldest_dropped_first() -> None:
    graph = view()
    strangers = [address_from_private_key(make_key(100 + i)) for i in range(EARLY_LIMIT)]
    first = announce(2, D, 70, 1_000)
    assert not graph.accept(first, now_ms=1_000)
    for index, stranger in enumerate(strangers):  # a flood of channels nobody opened
        assert not graph.accept(announce(3, stranger, 1, 1_000 + index), now_ms=1_000)
    graph.set_channel(record(C, D, 80, 0))
    assert graph.released() == []  # pushed out by the flood: as before, lost
    graph.set_channel(record(D, strangers[-1], 10, 0))
    assert [a.partner for a in graph.released()] == [strangers[-1]]
