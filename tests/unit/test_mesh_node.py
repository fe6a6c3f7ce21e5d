"""mesh_relay.node: MeshNode driven through small simulated meshes, frame by frame.

Each test names the behaviour of issue 4 it shows: delivery across relays at 210 and
1,200 bytes, hop retries, end-to-end acks, replay and duplicate drops, expiry, store and
forward, snapshot/restore, malformed and tampered frames, rate limits, bounds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from mesh_relay.config import Link, MeshConfig
from mesh_relay.effects import (
    BROADCAST,
    Deliver,
    EventDelivered,
    EventExpired,
    EventInvalidFrame,
    SendFrame,
)
from mesh_relay.errors import ConfigError, MeshValidationError, QueueFull
from mesh_relay.frames import FrameType, Routed, decode_frame, encode_routed
from mesh_relay.node import MeshNode
from mesh_relay.sim import RADIO, LinkSpec, Simulator, fast_config, private_key_for
from mesh_relay.store import decode_snapshot

NOW = 1_700_000_000.0


def chain(count: int, mtu: int = 210, config: MeshConfig | None = None) -> Simulator:
    sim = Simulator(count, config or fast_config(mtu), seed=count, mtu=mtu)
    for i in range(count - 1):
        sim.connect(i, i + 1)
    sim.power_on()
    sim.run(sim.now + 5)  # routes converge
    return sim


def events(sim: Simulator, node: int, kind: type) -> list[object]:
    return [e for _, i, e in sim.log if i == node and isinstance(e, kind)]


def test_two_nodes__delivered_once_and_sender_told() -> None:
    sim = chain(2)
    message_id = sim.send(0, 1, b"a payment message", 30)
    sim.run(sim.now + 5)
    [deliver] = events(sim, 1, Deliver)
    assert deliver == Deliver(sim.nodes[0].address, b"a payment message", message_id)
    assert events(sim, 0, EventDelivered) == [EventDelivered(message_id)]
    assert events(sim, 0, EventExpired) == [] and sim.nodes[0].pending_count() == 0


@pytest.mark.parametrize("mtu", [210, 1200])
def test_three_relays__fragmented_payload_delivered_relays_learn_nothing(mtu: int) -> None:
    sim = chain(5, mtu)
    payload = bytes(range(256)) * 20  # 5,120 bytes: 37 fragments at 210, 5 at 1,200
    message_id = sim.send(0, 4, payload, 60)
    sim.run(sim.now + 10)
    record = sim.messages[message_id]
    assert record.delivered_to == [4] and record.outcome == "delivered"
    assert sim.stats.plaintext_leaks == 0 and sim.stats.oversize_frames == 0
    origin, destination = sim.nodes[0].address, sim.nodes[4].address
    for relay in (1, 2, 3):
        counts = sim.nodes[relay].accounting[(origin, destination)]
        assert counts.messages == 1 and counts.frames == -(-(len(payload) + 49) // (mtu - 69))
        assert sim.nodes[relay].accounting[(destination, origin)].messages == 1  # the ack
        assert events(sim, relay, Deliver) == []


def test_hop_retry__lost_data_frame_is_resent() -> None:
    sim = chain(3)
    dropped: list[bytes] = []

    def lose_first_data(sender: int, effect: SendFrame) -> bool:
        if sender == 0 and effect.data[1] == FrameType.DATA and not dropped:
            dropped.append(effect.data)
            return True
        return False

    sim.tap = lose_first_data
    message_id = sim.send(0, 2, b"retry me", 30)
    sim.run(sim.now + 5)
    assert dropped and sim.messages[message_id].outcome == "delivered"
    assert sim.nodes[0].stats["hop_retries"] >= 1


def _capture(sim: Simulator, sender: int, kind: FrameType) -> list[bytes]:
    captured: list[bytes] = []

    def tap(node: int, effect: SendFrame) -> bool:
        if node == sender and effect.data[1] == kind:
            captured.append(effect.data)
        return False

    sim.tap = tap
    return captured


def test_replayed_data_frame__dropped_at_the_destination_but_acknowledged() -> None:
    sim = chain(3)
    captured = _capture(sim, 1, FrameType.DATA)
    message_id = sim.send(0, 2, b"only once", 30)
    sim.run(sim.now + 5)
    assert captured
    effects = sim.inject(2, 1, captured[0])
    hop_acks = [e for e in effects if isinstance(e, SendFrame) and e.data[1] == FrameType.HOP_ACK]
    assert hop_acks and not any(isinstance(e, Deliver) for e in effects)
    sim.run(sim.now + 5)
    assert len(sim.messages[message_id].deliveries) == 1
    assert sim.nodes[2].stats["duplicates_destination"] >= 1


def test_e2e_ack_lost_on_the_air__retried_hop_by_hop__sender_told_once() -> None:
    sim = chain(3)
    cut_until = sim.now + 10

    def lose_acks(sender: int, effect: SendFrame) -> bool:
        return effect.data[1] == FrameType.E2E_ACK and sim.now < cut_until

    sim.tap = lose_acks
    message_id = sim.send(0, 2, b"ack me", 120)
    sim.run(sim.now + 20)
    record = sim.messages[message_id]
    assert len(record.deliveries) == 1 and record.outcome == "delivered" and record.outcomes == 1
    assert sim.nodes[2].stats["hop_retries"] >= 1


def test_relay_crash_loses_the_ack__origin_retransmits__destination_reacks() -> None:
    sim = chain(3)
    hold = [True]

    def relay_holds_acks(sender: int, effect: SendFrame) -> bool:
        return sender == 1 and effect.data[1] == FrameType.E2E_ACK and hold[0]

    sim.tap = relay_holds_acks
    message_id = sim.send(0, 2, b"ack me", 120)
    sim.run(sim.now + 2)
    assert sim.messages[message_id].deliveries and sim.nodes[1].custody_count() == 1
    # The relay crashes without a snapshot: the ack it held is gone.
    sim.nodes[1] = MeshNode(sim.config, private_key_for(3, 1), b"relay restarted 1")
    hold[0] = False
    sim.power_on([1])
    sim.run(sim.now + sim.config.e2e_retry + 5)
    record = sim.messages[message_id]
    assert len(record.deliveries) == 1 and record.outcome == "delivered" and record.outcomes == 1
    assert sim.nodes[0].stats["e2e_retries"] >= 1
    assert sim.nodes[2].stats["duplicates_destination"] >= 1


def test_unreachable_destination__expires_and_only_the_sender_is_told() -> None:
    sim = chain(2)
    message_id = sim.send(0, 1, b"x", 5)
    sim.disconnect(0, 1)
    sim.run(sim.now + 5 + sim.config.ack_grace + 1)
    record = sim.messages[message_id]
    assert record.deliveries == [] and record.outcome == "expired"
    assert events(sim, 0, EventExpired) == [EventExpired(message_id)]


def test_store_and_forward__destination_appears_later() -> None:
    sim3 = Simulator(3, fast_config(), seed=2)
    sim3.connect(0, 1)
    sim3.power_on()
    sim3.run(sim3.now + 5)
    message_id = sim3.send(0, 2, b"wait for it", 60)  # node 2 is out of range
    sim3.run(sim3.now + 20)
    assert sim3.messages[message_id].deliveries == []
    sim3.connect(1, 2)
    sim3.run(sim3.now + 10)
    assert sim3.messages[message_id].outcome == "delivered"


def test_store_and_forward__origin_keeps_sealed_frames_while_the_route_is_gone() -> None:
    sim = chain(3)
    sim.disconnect(1, 2)
    sim.run(sim.now + 5)  # 1 notices 2 is gone; 0 loses its route but keeps 2's key
    message_id = sim.send(0, 2, b"hold me", 60)
    sim.run(sim.now + 10)
    assert sim.messages[message_id].deliveries == [] and sim.nodes[0].custody_count() == 1
    sim.connect(1, 2)
    sim.run(sim.now + 15)
    assert sim.messages[message_id].outcome == "delivered"


def test_store_and_forward__relay_holds_frames_across_a_partition() -> None:
    sim = chain(3)
    sim.disconnect(1, 2)  # 1 does not know yet: 0 hands the frame to 1, which holds it
    message_id = sim.send(0, 2, b"hold me", 60)
    sim.run(sim.now + 10)
    assert sim.messages[message_id].deliveries == []
    assert sim.nodes[0].custody_count() == 0 and sim.nodes[1].custody_count() == 1
    sim.connect(1, 2)
    sim.run(sim.now + 15)
    assert sim.messages[message_id].outcome == "delivered"


def test_snapshot_restore__unsent_message_survives_a_restart() -> None:
    sim = Simulator(2, fast_config(), seed=5)
    sim.power_on()
    sim.run(sim.now + 2)
    message_id = sim.send(0, 1, b"persist me", 120)
    sim.run(sim.now + 2)
    saved = sim.nodes[0].snapshot()
    # Node 0 restarts: a new core with the same key and a new seed loads the snapshot.
    restarted = MeshNode(sim.config, private_key_for(5, 0), b"another seed 1234")
    sim.nodes[0] = restarted
    sim.apply(0, restarted.restore(saved, sim.now))
    sim.power_on([0])
    sim.connect(0, 1)
    sim.run(sim.now + 10)
    assert sim.messages[message_id].deliveries and sim.messages[message_id].outcome == "delivered"


def test_snapshot_restore__delivered_ids_survive__no_double_delivery() -> None:
    sim = chain(2)
    captured = _capture(sim, 0, FrameType.DATA)
    message_id = sim.send(0, 1, b"exactly once", 120)
    sim.run(sim.now + 3)
    saved = sim.nodes[1].snapshot()
    restarted = MeshNode(sim.config, private_key_for(2, 1), b"fresh seed after restart")
    restarted.restore(saved, sim.now)
    restarted.link_up(Link(RADIO, 210), sim.now)
    effects = restarted.receive_frame(RADIO, 0, captured[0], sim.now)
    assert not any(isinstance(e, Deliver) for e in effects)
    assert len(sim.messages[message_id].deliveries) == 1
    # The origin's key came back with the duplicate's first fragment: the ack is owed.
    assert restarted.stats["acks_sent"] == 1 and restarted.custody_count() == 1


def test_snapshot_restore__duplicate_without_its_first_fragment__ack_waits_for_it() -> None:
    sim = chain(2)
    captured = _capture(sim, 0, FrameType.DATA)
    message_id = sim.send(0, 1, bytes(150), 120)  # two fragments at 210
    sim.run(sim.now + 3)
    assert len(captured) == 2 and sim.messages[message_id].outcome == "delivered"
    restarted = MeshNode(sim.config, private_key_for(2, 1), b"fresh seed after restart")
    restarted.restore(sim.nodes[1].snapshot(), sim.now)
    restarted.link_up(Link(RADIO, 210), sim.now)
    restarted.receive_frame(RADIO, 0, captured[1], sim.now)
    assert restarted.stats["acks_no_key"] == 1 and restarted.stats["acks_sent"] == 0
    restarted.receive_frame(RADIO, 0, captured[0], sim.now)
    assert restarted.stats["acks_sent"] == 1


def test_snapshot_restore__origin_reseals_the_same_bytes() -> None:
    sim = chain(2)
    before = _capture(sim, 0, FrameType.DATA)
    message_id = sim.send(0, 1, bytes(range(150)), 120)
    sim.run(sim.now + 0.01)  # sent, not yet acknowledged
    saved = sim.nodes[0].snapshot()
    sim.run(sim.now + 3)
    restarted = MeshNode(sim.config, private_key_for(2, 0), b"fresh seed after restart")
    sim.nodes[0] = restarted
    after = _capture(sim, 0, FrameType.DATA)
    sim.apply(0, restarted.restore(saved, sim.now))
    sim.power_on([0])
    sim.run(sim.now + 5)
    # Resealed from the plaintext: every fragment byte for byte as before (from the
    # routed header's message id on: the per-hop prefix is the hop's own).
    assert len(before) == 2 and [f[5:] for f in after[:2]] == [f[5:] for f in before]
    assert len(sim.messages[message_id].deliveries) == 1
    assert events(sim, 0, EventDelivered)[-1] == EventDelivered(message_id)


def test_forged_e2e_acks__rejected__the_real_one_resolves() -> None:
    from mesh_relay.envelope import ack_tag  # noqa: PLC0415
    from mesh_relay.identity import Identity  # noqa: PLC0415

    sim = chain(2)
    acks: list[bytes] = []

    def hold_acks(node: int, effect: SendFrame) -> bool:
        if node == 1 and effect.data[1] == FrameType.E2E_ACK:
            acks.append(effect.data)
            return True
        return False

    sim.tap = hold_acks
    message_id = sim.send(0, 1, b"ack me for real", 60)
    sim.run(sim.now + 2)
    real = acks[0]
    origin, destination = sim.nodes[0].address, sim.nodes[1].address
    mallory = Identity(private_key_for(99, 0))
    forgeries = [
        real[:-1] + bytes((real[-1] ^ 1,)),  # a flipped bit
        real[:-16] + bytes(16),  # zeros
        # A third party's best try: a tag under her own secret with either end.
        real[:-16] + ack_tag(mallory, sim.nodes[1].public_key, message_id, origin, destination),
        real[:-16] + ack_tag(mallory, sim.nodes[0].public_key, message_id, origin, destination),
    ]
    for forged in forgeries:
        effects = sim.inject(0, 1, forged)
        assert [e.reason for e in effects if isinstance(e, EventInvalidFrame)] == [
            "end-to-end ack does not authenticate"
        ]
    assert sim.nodes[0].pending_count() == 1 and events(sim, 0, EventDelivered) == []
    sim.inject(0, 1, real)
    assert events(sim, 0, EventDelivered) == [EventDelivered(message_id)]


def test_destination_never_heard_the_origins_route__opens_and_replies_at_once() -> None:
    # The origin's key travels in the envelope: delivery does not wait for its advert.
    sim = Simulator(2, fast_config(), seed=9)
    hide = [True]
    sim.tap = lambda node, effect: hide[0] and node == 0 and effect.data[1] == FrameType.ROUTES
    sim.connect(0, 1)
    sim.power_on()
    sim.run(sim.now + 5)
    origin = sim.nodes[0].address
    assert sim.nodes[1].routing.public_key(origin) is None
    message_id = sim.send(0, 1, b"no advert needed", 60)
    sim.run(sim.now + 2)
    assert sim.messages[message_id].delivered_to == [1]
    assert sim.nodes[1].routing.public_key(origin) is None
    # A reply is sealed at once with the key from the envelope; it waits only for a route.
    reply = sim.send(1, 0, b"reply", 60)
    sim.run(sim.now + 0.01)
    assert sim.nodes[1].custody_count() == 2  # the ack and the sealed reply
    hide[0] = False
    sim.run(sim.now + 10)
    assert sim.messages[message_id].outcome == "delivered"
    assert sim.messages[reply].outcome == "delivered"


def test_malformed_frames__counted_and_dropped_never_raised() -> None:
    node = MeshNode(fast_config(), private_key_for(1, 0), b"seed" * 4)
    node.link_up(Link(RADIO, 210), NOW)
    for garbage in (b"", b"\x02", b"\x01\x01", b"\x02\x09xyz", b"\x02\x04" + bytes(100)):
        effects = node.receive_frame(RADIO, "peer", garbage, NOW)
        assert [type(e) for e in effects] == [EventInvalidFrame]
    assert node.stats["invalid_frames"] == 5


def test_frame_on_a_link_that_is_down__ignored() -> None:
    node = MeshNode(fast_config(), private_key_for(1, 0), b"seed" * 4)
    assert node.receive_frame("nowhere", "peer", b"\x02\x01", NOW) == []
    assert node.stats["dropped_link_down"] == 1


def test_tampering_relay__destination_rejects__message_expires() -> None:
    sim = chain(3)

    def flip_chunk_byte(sender: int, effect: SendFrame) -> bool:
        if sender == 1 and effect.data[1] == FrameType.DATA:
            data = bytearray(effect.data)
            data[-1] ^= 0xFF
            sim._transmit(1, dataclasses.replace(effect, data=bytes(data)))
            return True
        return False

    sim.tap = flip_chunk_byte
    message_id = sim.send(0, 2, b"do not touch", 10)
    sim.run(sim.now + 10 + sim.config.ack_grace + 1)
    record = sim.messages[message_id]
    assert record.deliveries == [] and record.outcome == "expired"
    reasons = [e.reason for e in events(sim, 2, EventInvalidFrame)]  # type: ignore[attr-defined]
    assert reasons and all(r.startswith("envelope rejected") for r in reasons)


def test_flooding_neighbour__rate_limited_while_others_are_served() -> None:
    config = dataclasses.replace(fast_config(), rate_bytes_per_s=2_000.0, rate_burst_bytes=4_000.0)
    sim = chain(3, config=config)
    for _ in range(500):
        sim.inject(1, 99, b"\x02\x01" + bytes(83))  # a flood from a stranger
    assert sim.nodes[1].stats["dropped_rate_limited"] >= 450
    message_id = sim.send(0, 2, b"still served", 30)
    sim.run(sim.now + 5)
    assert sim.messages[message_id].outcome == "delivered"


def test_custody_bound__relay_refuses_without_ack_when_full() -> None:
    config = dataclasses.replace(fast_config(), max_custody_frames=3)
    sim = chain(2, config=config)
    stranger = b"\x77" * 20
    acks = 0
    for index in range(6):
        frame = Routed(
            FrameType.DATA,
            index,
            10,
            bytes([index]) * 16,
            stranger,
            sim.nodes[0].address,
            int((sim.now + 60) * 1000),
            0,
            1,
            b"chunk",
        )
        effects = sim.inject(1, 0, encode_routed(frame))
        acks += sum(
            1 for e in effects if isinstance(e, SendFrame) and e.data[1] == FrameType.HOP_ACK
        )
    assert sim.nodes[1].custody_count() == 3 and acks == 3
    assert sim.nodes[1].stats["refused_custody_full"] == 3


def test_expired_or_far_future_frames__dropped() -> None:
    sim = chain(2)
    base = Routed(
        FrameType.DATA, 1, 10, b"e" * 16, b"\x77" * 20, sim.nodes[0].address, 0, 0, 1, b"c"
    )
    past = dataclasses.replace(base, expiry_ms=int((sim.now - 1) * 1000))
    far = dataclasses.replace(base, expiry_ms=int((sim.now + 10 * 86_400) * 1000))
    sim.inject(1, 0, encode_routed(past))
    effects = sim.inject(1, 0, encode_routed(far))
    assert any(isinstance(e, EventInvalidFrame) for e in effects)
    assert sim.nodes[1].custody_count() == 0 and sim.nodes[1].stats["dropped_expired"] == 1


def test_send__validation_and_queue_bound() -> None:
    config = dataclasses.replace(fast_config(), max_pending_messages=1)
    node = MeshNode(config, private_key_for(1, 0), b"seed" * 4)
    other = MeshNode(config, private_key_for(1, 1), b"seed" * 4).address
    with pytest.raises(MeshValidationError):
        node.send(b"\x00" * 20, b"x", NOW + 10, NOW)
    with pytest.raises(MeshValidationError):
        node.send(node.address, b"x", NOW + 10, NOW)
    with pytest.raises(MeshValidationError):
        node.send(other, b"x" * (config.max_payload + 1), NOW + 10, NOW)
    with pytest.raises(MeshValidationError):
        node.send(other, b"x", NOW, NOW)
    with pytest.raises(MeshValidationError):
        node.send(other, b"x", NOW + config.max_lifetime + 1, NOW)
    message_id = node.send(other, b"x", NOW + 10, NOW)
    assert len(message_id) == 16 and node.next_timer == NOW  # its frames come from tick
    with pytest.raises(QueueFull):
        node.send(other, b"y", NOW + 10, NOW)


def test_link_up__mtu_below_the_routed_mtu__config_error() -> None:
    node = MeshNode(fast_config(routed_mtu=1200), private_key_for(1, 0), b"seed" * 4)
    with pytest.raises(ConfigError):
        node.link_up(Link(RADIO, 210), NOW)


def test_link_up__non_broadcast_link_greets_its_peers_by_unicast() -> None:
    node = MeshNode(fast_config(), private_key_for(1, 0), b"seed" * 4)
    effects = node.link_up(Link("tcp", 1200, broadcast=False, peers=("10.0.0.2", "10.0.0.3")), NOW)
    sends = [e for e in effects if isinstance(e, SendFrame)]
    assert [e.link_addr for e in sends] == ["10.0.0.2", "10.0.0.3"]
    assert all(decode_frame(e.data).__class__.__name__ == "Hello" for e in sends)
    broadcast = node.link_up(Link("radio", 210), NOW)
    assert [e.link_addr for e in broadcast if isinstance(e, SendFrame)] == [BROADCAST]


def test_link_down__neighbours_lost_and_frames_wait_for_another_route() -> None:
    sim = chain(3)
    assert len(sim.nodes[1].neighbour_addresses()) == 2
    sim.power_off(1)
    assert sim.nodes[1].neighbour_addresses() == []
    message_id = sim.send(0, 2, b"around", 60)
    sim.run(sim.now + 5)
    assert sim.messages[message_id].deliveries == []
    sim.power_on([1])
    sim.run(sim.now + 10)
    assert sim.messages[message_id].outcome == "delivered"


def test_accounting__read_only_view() -> None:
    sim = chain(3)
    sim.send(0, 2, b"count me", 30)
    sim.run(sim.now + 5)
    view = sim.nodes[1].accounting
    assert len(view) == 2
    with pytest.raises(TypeError):
        view[(b"a", b"b")] = None  # type: ignore[index]
    with pytest.raises(TypeError):
        sim.nodes[1].stats["x"] = 1  # type: ignore[index]


def test_idle_mesh__only_hellos_and_periodic_dumps() -> None:
    sim = chain(3)
    sent = sim.stats.frames_sent
    sim.run(sim.now + 100)
    by_type = sim.stats.frames_by_type
    # 3 nodes over 100 s: about one hello a second each, a dump every 5 s.
    assert sim.stats.frames_sent - sent < 3 * (100 * 1.4 + 100 / 5 * 1.4 * 2)
    assert by_type.get(FrameType.DATA, 0) == 0


def _data_frame(sim: Simulator, origin: int, destination: int, hop_seq: int) -> bytes:
    frame = Routed(
        FrameType.DATA,
        hop_seq,
        10,
        b"b" * 16,
        sim.nodes[destination].address,
        sim.nodes[origin].address,
        int((sim.now + 60) * 1000),
        0,
        2,
        b"first half",
    )
    return encode_routed(frame)


def test_relay__retransmission_dropped_but_a_copy_handed_back_is_taken() -> None:
    # Regression (test_mesh_regressions): a frame sent back by the next hop after its
    # route changed used to be dropped as a duplicate, losing the only copy.
    sim = chain(3)
    relay = sim.nodes[1]
    sim.inject(1, 0, _data_frame(sim, 0, 2, hop_seq=5))
    sim.run(sim.now + 1)  # forwarded to 2, acknowledged: custody released
    assert relay.stats["relay_accepted"] == 1 and relay.custody_count() == 0
    sim.inject(1, 0, _data_frame(sim, 0, 2, hop_seq=5))  # 0 retransmits: our ack was lost
    assert relay.stats["relay_accepted"] == 1 and relay.stats["duplicates_relay"] == 1
    sim.inject(1, 2, _data_frame(sim, 0, 2, hop_seq=9))  # 2 hands it back
    assert relay.stats["relay_accepted"] == 2


def test_relay__copy_handed_back_while_in_flight__resent_with_a_new_hop_seq() -> None:
    sim = chain(3)
    relay = sim.nodes[1]
    sent: list[bytes] = []

    def swallow(sender: int, effect: SendFrame) -> bool:
        if sender == 1 and effect.data[1] == FrameType.DATA:
            sent.append(effect.data)
            return True
        return False

    sim.tap = swallow
    sim.inject(1, 0, _data_frame(sim, 0, 2, hop_seq=5))
    assert len(sent) == 1 and relay.custody_count() == 1
    sim.inject(1, 2, _data_frame(sim, 0, 2, hop_seq=9))  # 2 hands it back
    assert len(sent) == 2 and sent[1][2:4] != sent[0][2:4] and relay.custody_count() == 1


def test_hellos_from_fresh_keys__buy_a_bounded_number_of_table_dumps() -> None:
    from mesh_relay.frames import Hello, encode_hello, hello_digest  # noqa: PLC0415
    from mesh_relay.identity import Identity  # noqa: PLC0415

    node = MeshNode(fast_config(), private_key_for(1, 0), b"seed" * 4)
    node.link_up(Link(RADIO, 1200), NOW)
    for index in range(40):
        stranger = Identity(private_key_for(77, index))
        time_ms = int(NOW * 1000)
        hello = Hello(1, time_ms, b"n" * 8, stranger.sign(hello_digest(1, time_ms, b"n" * 8)))
        node.receive_frame(RADIO, ("sybil", index), encode_hello(hello), NOW)
    assert node.stats["neighbours_new"] == 40
    assert node.stats["dumps_deferred"] == 40 - 16


def test_app_acks__no_ack_until_the_application_acknowledges() -> None:
    sim = chain(3, config=dataclasses.replace(fast_config(), app_acks=True))
    message_id = sim.send(0, 2, b"persist me first", 600)
    sim.run(sim.now + 5)
    assert len(sim.messages[message_id].deliveries) == 1
    assert events(sim, 0, EventDelivered) == []  # the destination has not acknowledged
    # The application "crashes" before it acknowledges: a new process, same key.
    sim.nodes[2] = MeshNode(sim.config, private_key_for(3, 2), b"destination restarted")
    sim.power_on([2])
    sim.run(sim.now + sim.config.e2e_retry + 5)
    # The origin retransmitted; the payload is delivered again, still unacknowledged.
    assert len(sim.messages[message_id].deliveries) == 2
    assert events(sim, 0, EventDelivered) == []
    origin = sim.nodes[0].address
    sim.apply(2, sim.nodes[2].acknowledge(origin, message_id, sim.now))
    sim.apply(2, sim.nodes[2].acknowledge(origin, message_id, sim.now))  # repeat: nothing
    sim.run(sim.now + 5)
    assert events(sim, 0, EventDelivered) == [EventDelivered(message_id)]
    assert sim.messages[message_id].outcomes == 1


def test_app_acks__duplicate_before_the_ack_is_not_delivered_twice() -> None:
    sim = chain(2, config=dataclasses.replace(fast_config(), app_acks=True))
    message_id = sim.send(0, 1, b"once", 600)
    sim.run(sim.now + sim.config.e2e_retry + 5)  # the origin retransmits meanwhile
    assert len(sim.messages[message_id].deliveries) == 1
    assert sim.nodes[1].stats["duplicates_awaiting_app_ack"] >= 1
    sim.apply(1, sim.nodes[1].acknowledge(sim.nodes[0].address, message_id, sim.now))
    sim.run(sim.now + 5)
    assert events(sim, 0, EventDelivered) == [EventDelivered(message_id)]


def test_snapshot__delivered_ids_kept_packed__the_expired_dropped_in_time() -> None:
    # The destination packs each delivered id once, as it comes, and a snapshot joins
    # them; ids past their expiry may linger a while (a reader skips them) but not grow
    # without bound.
    sim = chain(2)
    early = {sim.send(0, 1, b"early %d" % i, 10) for i in range(100)}
    sim.run(sim.now + 3)
    assert early <= {m for _, m, _ in decode_snapshot(sim.nodes[1].snapshot()).seen}
    sim.run(sim.now + 120)  # past their expiry and the tolerance
    late = {sim.send(0, 1, b"late %d" % i, 600) for i in range(100)}
    sim.run(sim.now + 5)
    seen = decode_snapshot(sim.nodes[1].snapshot()).seen
    assert {m for _, m, expiry in seen if expiry > sim.now} == late
    assert not early & {m for _, m, _ in seen}  # pruned once they outnumbered the live ones


def _data_sends(sim: Simulator, sender: int, lose: Callable[[int], bool]) -> list[float]:
    """Times at which ``sender`` puts DATA frames on the air; ``lose(n)`` drops the n-th."""
    times: list[float] = []

    def tap(node: int, effect: SendFrame) -> bool:
        if node != sender or effect.data[1] != FrameType.DATA:
            return False
        times.append(sim.now)
        return lose(len(times) - 1)

    sim.tap = tap
    return times


def test_hop_timeout__measured_on_a_fast_link__a_lost_frame_goes_again_after_the_floor() -> None:
    config = dataclasses.replace(fast_config(), hop_rto=0.5, hop_rto_min=0.05)
    sim = chain(2, config=config)
    neighbour = (RADIO, 1)
    assert sim.nodes[0].hop_timeout(neighbour) == 0.5  # nothing measured yet
    for index in range(5):  # round trips of about 10 ms: the timeout falls to its floor
        sim.send(0, 1, b"measure %d" % index, 30)
        sim.run(sim.now + 1)
    assert sim.nodes[0].hop_timeout(neighbour) == 0.05
    times = _data_sends(sim, 0, lambda n: n == 0)
    message_id = sim.send(0, 1, b"lost once", 30)
    sim.run(sim.now + 1)
    assert sim.messages[message_id].outcome == "delivered"
    assert len(times) == 2 and times[1] - times[0] == pytest.approx(0.05, abs=0.005)


def test_hop_timeout__a_lost_frame_before_any_measure__goes_again_after_hop_rto() -> None:
    config = dataclasses.replace(fast_config(), hop_rto=0.5, hop_rto_min=0.05)
    sim = chain(2, config=config)
    times = _data_sends(sim, 0, lambda n: n == 0)
    message_id = sim.send(0, 1, b"first of all", 30)
    sim.run(sim.now + 2)
    assert sim.messages[message_id].outcome == "delivered"
    assert times[1] - times[0] == pytest.approx(0.5, abs=0.005)


def test_hop_timeout__follows_a_slow_link__no_frame_sent_twice() -> None:
    # Round trips of about 0.4 s, below the first timeout (0.5 s): measured, the timeout
    # settles above them and nothing goes twice.
    config = dataclasses.replace(fast_config(), hop_rto=0.5, hop_rto_min=0.05, hop_rto_max=4.0)
    sim = Simulator(2, config, seed=2, mtu=210)
    sim.connect(0, 1, LinkSpec(latency=0.2))
    sim.power_on()
    sim.run(sim.now + 10)
    for index in range(20):
        sim.send(0, 1, b"slow %d" % index, 60)
        sim.run(sim.now + 0.5)
    sim.run(sim.now + 5)
    assert all(record.outcome == "delivered" for record in sim.messages.values())
    assert sim.nodes[0].stats["hop_retries"] == 0
    assert 0.4 < sim.nodes[0].hop_timeout((RADIO, 1)) <= 1.5


def test_hop_timeout__karn__the_ack_of_a_resent_frame_is_no_measure() -> None:
    # Every first send is lost: each frame is acknowledged only after its resend, which
    # says nothing of the round trip; the timeout stays hop_rto.
    config = dataclasses.replace(fast_config(), hop_rto=0.5, hop_rto_min=0.05)
    sim = chain(2, config=config)
    first_sends: set[bytes] = set()

    def tap(node: int, effect: SendFrame) -> bool:
        if node != 0 or effect.data[1] != FrameType.DATA:
            return False
        frame = decode_frame(effect.data)
        assert isinstance(frame, Routed)
        key = frame.message_id + bytes([frame.frag_index])
        if key in first_sends:
            return False
        first_sends.add(key)
        return True

    sim.tap = tap
    for index in range(5):
        message_id = sim.send(0, 1, b"lost first %d" % index, 30)
        sim.run(sim.now + 2)
        assert sim.messages[message_id].outcome == "delivered"
    assert sim.nodes[0].hop_timeout((RADIO, 1)) == 0.5


def test_fast_retransmit__a_lost_frame_goes_again_once_three_later_ones_are_acked() -> None:
    sim = chain(2)  # hop_rto 0.2 s, nothing measured yet
    times = _data_sends(sim, 0, lambda n: n == 0)
    ids = [sim.send(0, 1, b"burst %d" % index, 30) for index in range(5)]
    sim.run(sim.now + 1)
    assert all(sim.messages[i].outcome == "delivered" for i in ids)
    assert sim.nodes[0].stats["hop_fast_retries"] == 1
    # Sent again once the acks of the later frames came back (a round trip of ~10 ms),
    # long before its timeout.
    assert len(times) == 6 and times[5] - times[0] < 0.05


def test_fast_retransmit__fewer_than_three_later_frames__the_timeout_sends_it() -> None:
    sim = chain(2)
    times = _data_sends(sim, 0, lambda n: n == 0)
    ids = [sim.send(0, 1, b"pair %d" % index, 30) for index in range(2)]
    sim.run(sim.now + 1)
    assert all(sim.messages[i].outcome == "delivered" for i in ids)
    assert sim.nodes[0].stats["hop_fast_retries"] == 0
    assert times[2] - times[0] == pytest.approx(0.2, abs=0.005)
