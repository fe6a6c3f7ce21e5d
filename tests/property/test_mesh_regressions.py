"""Regressions found by the mesh property tests, kept as plain tests (DESIGN.md §4).

1. A frame handed back (a relay forwards to U; U's route changes and U sends it back):
   relays used to drop any second arrival of a fragment as a duplicate, so the handed-back
   copy, the only one left, was lost; the sender was then told "expired" although the
   destination had delivered (seed 3647 of ``test_mesh_sim``: an end-to-end ack bounced
   between nodes 0 and 14 after a partition healed). Relays now recognise a hop-level
   retransmission by (fragment, neighbour, hop_seq) and take any other copy.
"""

from __future__ import annotations

from mesh_relay.sim import Partition, Scenario, Send, run_scenario
from tests.property.test_mesh_sim import _payload

EDGES = (
    (0, 1),
    (0, 14),
    (0, 39),
    (1, 2),
    (1, 3),
    (1, 4),
    (2, 5),
    (2, 6),
    (2, 13),
    (2, 17),
    (3, 8),
    (3, 9),
    (3, 32),
    (3, 33),
    (4, 7),
    (6, 11),
    (6, 12),
    (7, 35),
    (8, 27),
    (9, 10),
    (9, 15),
    (11, 16),
    (11, 42),
    (12, 19),
    (12, 31),
    (13, 24),
    (14, 18),
    (14, 22),
    (17, 37),
    (17, 41),
    (18, 21),
    (18, 23),
    (18, 28),
    (19, 20),
    (21, 30),
    (21, 43),
    (22, 25),
    (22, 36),
    (23, 38),
    (24, 29),
    (24, 30),
    (25, 26),
    (26, 34),
    (26, 44),
    (27, 40),
    (35, 39),
)
PARTITIONS = (
    Partition(29.641902656810203, 3.4612186280628823, frozenset([8, 12])),
    Partition(7.164187548806517e-256, 0.5, frozenset([8, 12])),
    Partition(15.306345525932276, 14.336893512077502, frozenset([8, 12])),
)
SENDS = (  # (at, origin, destination, payload size, lifetime)
    (40.0, 38, 26, 444, 39.0),
    (27.267211559363783, 17, 23, 215, 26.11429299858654),
    (0.75, 42, 5, 296, 30.0),
    (28.09034374128251, 6, 23, 600, 5.0),
    (6.103515625e-05, 38, 24, 255, 31.862258357209402),
    (14.361867560336105, 14, 17, 335, 5.000000000000001),
    (16.723186327677666, 26, 20, 59, 40.0),
    (0.0, 18, 25, 16, 5.0),
    (6.103515625e-05, 1, 36, 16, 5.0),
    (0.3333333333333333, 22, 20, 348, 9.372302671630433),
    (38.328255830989484, 20, 1, 16, 5.0),
    (47.995060877888804, 0, 1, 16, 5.0),
    (20.480918070838843, 4, 7, 16, 5.0),
    (40.806051469843055, 0, 1, 133, 5.0),
    (49.69091724286156, 0, 1, 16, 5.0),
    (28.453245564381213, 29, 42, 462, 5.0),
    (37.11968729619688, 30, 26, 256, 5.0),
)
LOSS = 0.234831371963982
SEED = 3647


def test_bounced_ack_after_a_healed_partition__delivered_and_told_delivered() -> None:
    sends = tuple(
        Send(at, origin, destination, _payload(SEED, index, size), lifetime)
        for index, (at, origin, destination, size, lifetime) in enumerate(SENDS)
    )
    scenario = Scenario(
        45, EDGES, loss=LOSS, mtu=1200, partitions=PARTITIONS, sends=sends, seed=SEED
    )
    sim = run_scenario(scenario)
    for record in sim.messages.values():
        assert record.outcomes == 1 and len(record.deliveries) <= 1
        assert (record.outcome == "delivered") == bool(record.deliveries)
    assert sim.stats.plaintext_leaks == 0
