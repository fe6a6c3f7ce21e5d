"""MeshNode.receive_frames: frames read together are the same inputs as one by one, except
that the hop acks they owe leave last, coalesced into one HOP_ACK per neighbour (split at
the link's MTU). The runtime feeds every socket read through it.
"""

from __future__ import annotations

from collections import defaultdict

from mesh_relay.config import Link, LinkAddr, MeshConfig
from mesh_relay.effects import BROADCAST, Deliver, Effect, EventDelivered, SendFrame
from mesh_relay.frames import FrameType, HopAck, Routed, decode_frame, encode_routed
from mesh_relay.node import MeshNode
from mesh_relay.sim import private_key_for

NOW = 1_700_000_000.0
LINK = "l"


class Line:
    """Nodes 0..n-1 in a line on one non-broadcast link each; frames queue per receiver and
    each receiver reads everything queued for it as one batch."""

    def __init__(self, count: int, mtu: int = 210) -> None:
        config = MeshConfig(routed_mtu=mtu)
        self.nodes = [
            MeshNode(config, private_key_for(5, i), bytes([i]) * 32) for i in range(count)
        ]
        self.now = NOW
        self.inbox: dict[int, list[tuple[LinkAddr, bytes]]] = defaultdict(list)
        self.sent: list[tuple[int, bytes]] = []
        self.app: list[tuple[int, Effect]] = []
        for i, node in enumerate(self.nodes):
            peers = tuple(j for j in (i - 1, i + 1) if 0 <= j < count)
            self.apply(i, node.link_up(Link(LINK, mtu, broadcast=False, peers=peers), self.now))

    def apply(self, i: int, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, SendFrame):
                targets = (i - 1, i + 1) if effect.link_addr is BROADCAST else (effect.link_addr,)
                for j in targets:
                    if isinstance(j, int) and 0 <= j < len(self.nodes):
                        self.inbox[j].append((i, effect.data))
                        self.sent.append((i, effect.data))
            else:
                self.app.append((i, effect))

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end:
            while any(self.inbox.values()):
                for j in list(self.inbox):
                    batch, self.inbox[j] = self.inbox[j], []
                    if batch:
                        self.apply(j, self.nodes[j].receive_frames(LINK, batch, self.now))
            self.now += 0.01
            for i, node in enumerate(self.nodes):
                timer = node.next_timer
                if timer is not None and timer <= self.now:
                    self.apply(i, node.tick(self.now))


def _kinds(frames: list[tuple[int, bytes]]) -> dict[FrameType, int]:
    counts: dict[FrameType, int] = defaultdict(int)
    for _, data in frames:
        counts[FrameType(data[1])] += 1
    return counts


def test_batches_deliver_exactly_once_across_three_relays_with_fewer_hop_acks() -> None:
    line = Line(5)
    line.run(2.0)
    origin, destination = line.nodes[0], line.nodes[4]
    assert origin.routing.next_hop(destination.address) is not None
    line.sent.clear()
    ids = [
        origin.send(destination.address, f"m{i}".encode(), line.now + 60, line.now)
        for i in range(60)
    ]
    line.run(3.0)
    delivered = [e.message_id for i, e in line.app if i == 4 and isinstance(e, Deliver)]
    assert sorted(delivered) == sorted(ids)
    outcomes = [e.message_id for i, e in line.app if i == 0 and isinstance(e, EventDelivered)]
    assert sorted(outcomes) == sorted(ids)
    kinds = _kinds(line.sent)
    routed = kinds[FrameType.DATA] + kinds[FrameType.E2E_ACK]
    assert routed >= 2 * 4 * 60  # every message and its ack over four hops
    # One frame per hop and message would make these equal; batches share hop acks.
    assert kinds[FrameType.HOP_ACK] < routed / 2
    assert any(
        len(frame.hop_seqs) > 1
        for _, data in line.sent
        if isinstance(frame := decode_frame(data), HopAck)
    )


def _is_hop_ack(effect: Effect) -> bool:
    return isinstance(effect, SendFrame) and effect.data[1] == FrameType.HOP_ACK


def test_a_batch_of_one_is_receive_frame_with_the_hop_ack_last() -> None:
    twins = [Line(3), Line(3)]
    for line in twins:
        line.run(1.0)
    a, b = (line.nodes for line in twins)
    for line, nodes in zip(twins, (a, b), strict=True):
        nodes[0].send(nodes[2].address, b"twin", line.now + 30, line.now)
        line.apply(0, nodes[0].tick(line.now))
    [(_, frame_a)] = twins[0].inbox.pop(1)
    [(_, frame_b)] = twins[1].inbox.pop(1)
    assert frame_a == frame_b  # same keys, same seeds: the same frame
    one = a[1].receive_frame(LINK, 0, frame_a, twins[0].now)
    batch = b[1].receive_frames(LINK, [(0, frame_b)], twins[1].now)
    assert [e for e in one if not _is_hop_ack(e)] == batch[:-1]
    assert [e for e in one if _is_hop_ack(e)] == batch[-1:]
    assert _is_hop_ack(batch[-1]) and len(batch) > 1


def test_hop_acks_of_a_large_batch_split_at_the_link_mtu() -> None:
    line = Line(3, mtu=210)
    line.run(1.0)
    relay, origin, destination = line.nodes[1], line.nodes[0], line.nodes[2]
    frames = [
        encode_routed(
            Routed(
                FrameType.DATA,
                seq,
                64,
                seq.to_bytes(16, "big"),
                destination.address,
                origin.address,
                int((line.now + 60) * 1000),
                0,
                1,
                b"x" * 100,
            )
        )
        for seq in range(250)
    ]
    effects = relay.receive_frames(LINK, [(0, f) for f in frames], line.now)
    acks = [
        e
        for e in effects
        if isinstance(e, SendFrame) and e.link_addr == 0 and e.data[1] == FrameType.HOP_ACK
    ]
    assert len(acks) == 3  # 103 hop sequence numbers fit a 210-byte frame
    assert all(len(e.data) <= 210 for e in acks)
    acked = [seq for e in acks for seq in decode_frame(e.data).hop_seqs]  # type: ignore[union-attr]
    assert acked == list(range(250))
    assert effects[-3:] == acks  # they leave last
    assert relay.stats["relay_accepted"] == 250
