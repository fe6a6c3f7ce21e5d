"""mesh_relay.sim: the simulator is deterministic and models what the tests rely on."""

from __future__ import annotations

from mesh_relay.sim import (
    Partition,
    Scenario,
    Send,
    Simulator,
    fast_config,
    run_1000_nodes,
    run_scenario,
)


def small_run(seed: int) -> Simulator:
    edges = ((0, 1), (1, 2), (2, 3), (1, 3), (3, 4))
    sends = tuple(Send(1.0 + i, i % 5, (i + 2) % 5, bytes([i]) * 40, 20.0) for i in range(6))
    return run_scenario(Scenario(5, edges, loss=0.2, sends=sends, seed=seed))


def test_same_seed__same_run() -> None:
    first, second = small_run(7), small_run(7)
    assert first.stats == second.stats
    assert [(r.deliveries, r.outcome) for r in first.messages.values()] == [
        (r.deliveries, r.outcome) for r in second.messages.values()
    ]


def test_other_seed__other_run() -> None:
    assert small_run(7).stats != small_run(8).stats


def test_partition__messages_wait_and_go_when_it_heals() -> None:
    edges = ((0, 1), (1, 2), (2, 3))
    partition = Partition(start=2.0, duration=12.0, side=frozenset({2, 3}))
    sends = (Send(6.0, 0, 3, b"across the gap" * 3, 30.0),)
    sim = run_scenario(Scenario(4, edges, partitions=(partition,), sends=sends, seed=1))
    [record] = sim.messages.values()
    assert record.outcome == "delivered"
    assert record.deliveries[0] - sim.start_time >= 14.0  # not before the heal


def test_overlapping_partitions__an_edge_returns_only_when_both_healed() -> None:
    edges = ((0, 1),)
    partitions = (
        Partition(1.0, 10.0, frozenset({0})),
        Partition(5.0, 10.0, frozenset({1})),
    )
    sends = (Send(2.0, 0, 1, b"x" * 20, 40.0),)
    sim = run_scenario(Scenario(2, edges, partitions=partitions, sends=sends, seed=1))
    [record] = sim.messages.values()
    assert record.deliveries[0] - sim.start_time >= 15.0


def test_move__a_device_walks_across_the_mesh() -> None:
    sim = Simulator(4, fast_config(), seed=3)
    sim.place([(0.0, 0.0), (1.0, 0.0), (2.0, 0.0), (5.0, 5.0)], radius=1.1)
    assert sim.edges[3] == {}
    sim.power_on()
    sim.run(sim.now + 5)
    message_id = sim.send(0, 3, b"find me wherever you are", 60)
    sim.run(sim.now + 5)
    assert sim.messages[message_id].deliveries == []
    sim.move(3, (3.0, 0.0))  # now in range of node 2 only
    assert set(sim.edges[3]) == {2}
    sim.run(sim.now + 15)
    assert sim.messages[message_id].outcome == "delivered"


def test_components__largest_first() -> None:
    sim = Simulator(5, fast_config(), seed=0)
    sim.connect(0, 1)
    sim.connect(2, 3)
    sim.connect(3, 4)
    assert [sorted(c) for c in sim.components()] == [
        [2, 3, 4],
        [0, 1],
    ]


def test_thousand_node_bench__scaled_down() -> None:
    result = run_1000_nodes(seed=3, count=120, messages=60)
    assert result.messages == 60 and result.ratio >= 0.98
    assert result.nodes_in_component > 60 and result.mean_degree > 5
    assert result.data_frames > 0 and result.bytes_sent > result.data_bytes


def test_overhead_bytes_per_frame__header_plus_shared_envelope() -> None:
    from mesh_relay.sim import overhead_bytes_per_frame  # noqa: PLC0415

    assert overhead_bytes_per_frame(64, 1200) == 69 + 49  # one frame
    assert overhead_bytes_per_frame(64, 210) == 69 + 49  # one frame at 210 too (v1: two)
    assert overhead_bytes_per_frame(92, 210) == 69 + 49  # the most that fits one frame
    assert overhead_bytes_per_frame(93, 210) == (2 * 69 + 49) / 2  # two frames
