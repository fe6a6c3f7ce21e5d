"""mesh_relay.neighbours: fresh, signed, non-replayed hellos; moves; timeouts; bounds."""

from __future__ import annotations

from mesh_relay.config import MeshConfig
from mesh_relay.frames import Hello, hello_digest
from mesh_relay.identity import Identity
from mesh_relay.neighbours import HelloVerdict, NeighbourTable

CONFIG = MeshConfig()
NOW = 1_700_000_000.0
ME = Identity((31).to_bytes(32, "big"))
PEER = Identity((32).to_bytes(32, "big"))
OTHER = Identity((33).to_bytes(32, "big"))


def hello(identity: Identity, at: float, seqno: int = 5, nonce: bytes = b"n" * 8) -> Hello:
    time_ms = int(at * 1000)
    return Hello(seqno, time_ms, nonce, identity.sign(hello_digest(seqno, time_ms, nonce)))


def test_hello__new_then_refreshed() -> None:
    table = NeighbourTable(ME.address, CONFIG)
    first = table.receive_hello("radio", 1, hello(PEER, NOW), 1, NOW)
    assert first.verdict is HelloVerdict.NEW and first.neighbour is not None
    assert first.neighbour.address == PEER.address and first.neighbour.key == ("radio", 1)
    again = table.receive_hello("radio", 1, hello(PEER, NOW + 10, seqno=6), 1, NOW + 10)
    assert again.verdict is HelloVerdict.REFRESHED and again.neighbour is not None
    assert again.neighbour.seqno == 6 and again.neighbour.last_heard == NOW + 10
    assert len(table) == 1 and table.get(("radio", 1)) is again.neighbour


def test_hello__replayed__ignored() -> None:
    table = NeighbourTable(ME.address, CONFIG)
    frame = hello(PEER, NOW)
    table.receive_hello("radio", 1, frame, 1, NOW)
    assert table.receive_hello("radio", 1, frame, 1, NOW + 1).verdict is HelloVerdict.REPLAYED
    older = hello(PEER, NOW - 1, nonce=b"o" * 8)
    assert table.receive_hello("radio", 1, older, 1, NOW + 1).verdict is HelloVerdict.REPLAYED


def test_hello__outside_the_tolerance__stale() -> None:
    table = NeighbourTable(ME.address, CONFIG)
    late = NOW + CONFIG.hello_tolerance + 0.01
    assert table.receive_hello("radio", 1, hello(PEER, NOW), 1, late).verdict is HelloVerdict.STALE
    early = NOW - CONFIG.hello_tolerance - 0.01
    assert table.receive_hello("radio", 1, hello(PEER, NOW), 1, early).verdict is HelloVerdict.STALE
    assert len(table) == 0


def test_hello__bad_signature_or_own__ignored() -> None:
    table = NeighbourTable(ME.address, CONFIG)
    good = hello(PEER, NOW)
    zero = Hello(good.seqno, good.time_ms, good.nonce, b"\x00" * 65)
    assert table.receive_hello("radio", 2, zero, 1, NOW).verdict is HelloVerdict.BAD_SIGNATURE
    own = table.receive_hello("radio", 3, hello(ME, NOW), 1, NOW)
    assert own.verdict is HelloVerdict.OWN
    # A signature over other fields recovers some other key, never the claimed sender's.
    altered = Hello(good.seqno + 1, good.time_ms, good.nonce, good.signature)
    result = table.receive_hello("radio", 4, altered, 1, NOW)
    assert result.neighbour is None or result.neighbour.address != PEER.address


def test_hello__node_moves_to_a_new_link_address__old_key_replaced() -> None:
    table = NeighbourTable(ME.address, CONFIG)
    table.receive_hello("radio", 1, hello(PEER, NOW), 1, NOW)
    moved = table.receive_hello("radio", 2, hello(PEER, NOW + 1), 1, NOW + 1)
    assert moved.verdict is HelloVerdict.NEW and moved.replaced == ("radio", 1)
    assert table.get(("radio", 1)) is None and len(table) == 1


def test_hello__another_node_at_the_same_link_address__old_one_replaced() -> None:
    table = NeighbourTable(ME.address, CONFIG)
    table.receive_hello("radio", 1, hello(PEER, NOW), 1, NOW)
    taken = table.receive_hello("radio", 1, hello(OTHER, NOW + 1), 1, NOW + 1)
    assert taken.verdict is HelloVerdict.NEW and taken.replaced == ("radio", 1)
    neighbour = table.get(("radio", 1))
    assert neighbour is not None and neighbour.address == OTHER.address


def test_same_node_on_two_links__two_neighbours() -> None:
    table = NeighbourTable(ME.address, CONFIG)
    table.receive_hello("wifi", 1, hello(PEER, NOW), 1, NOW)
    assert table.receive_hello("lora", 9, hello(PEER, NOW), 5, NOW).verdict is HelloVerdict.NEW
    assert len(table) == 2 and [n.key for n in table.on_link("lora")] == [("lora", 9)]


def test_expire__after_the_timeout_and_drop_link() -> None:
    table = NeighbourTable(ME.address, CONFIG)
    table.receive_hello("radio", 1, hello(PEER, NOW), 1, NOW)
    table.receive_hello("wifi", 2, hello(OTHER, NOW + 20), 1, NOW + 20)
    assert table.expire(NOW + CONFIG.neighbour_timeout - 1) == []
    assert table.expire(NOW + CONFIG.neighbour_timeout) == [("radio", 1)]
    assert table.drop_link("wifi") == [("wifi", 2)] and len(table) == 0


def test_replay_after_timeout__cannot_revive_a_neighbour() -> None:
    table = NeighbourTable(ME.address, CONFIG)
    frame = hello(PEER, NOW)
    table.receive_hello("radio", 1, frame, 1, NOW)
    later = NOW + CONFIG.neighbour_timeout
    table.expire(later)
    assert table.receive_hello("radio", 1, frame, 1, later).verdict is HelloVerdict.STALE


def test_full__new_neighbours_refused() -> None:
    table = NeighbourTable(ME.address, MeshConfig(max_neighbours=1))
    table.receive_hello("radio", 1, hello(PEER, NOW), 1, NOW)
    assert table.receive_hello("radio", 2, hello(OTHER, NOW), 1, NOW).verdict is HelloVerdict.FULL
