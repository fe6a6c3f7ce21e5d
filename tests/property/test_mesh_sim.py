"""Property: over random connected meshes of up to 50 nodes, with up to 30% loss and
partitions that heal, every message is delivered exactly once to the application or
expires and its sender is told, never both; no relay ever sees a payload in clear and
only the destination delivers it. When no partition happens, every message that lives
at least 20 s is delivered.

The partitions last at most 15 s, well inside the 40 s ``ack_grace`` of ``fast_config``:
"never both" needs the destination's acknowledgement to get back before the sender gives
up, which no protocol can promise across a partition that outlasts the grace
(docs/mesh.md, "Delivered or expired").
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mesh_relay.identity import keccak256
from mesh_relay.sim import Partition, Scenario, Send, run_scenario


def _payload(seed: int, index: int, size: int) -> bytes:
    # High-entropy payloads: a low-entropy one (all zeros) could occur in a frame by
    # chance and fake a leak; 16 random bytes cannot.
    stream = b""
    counter = 0
    while len(stream) < size:
        stream += keccak256(
            seed.to_bytes(8, "big") + index.to_bytes(4, "big") + counter.to_bytes(4, "big")
        )
        counter += 1
    return stream[:size]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    count = draw(st.integers(2, 50))
    edges = {(draw(st.integers(0, i - 1)), i) for i in range(1, count)}  # a random tree
    for a, b in draw(
        st.lists(st.tuples(st.integers(0, count - 1), st.integers(0, count - 1)), max_size=count)
    ):
        if a != b:
            edges.add((min(a, b), max(a, b)))
    partitions = tuple(
        Partition(start, duration, frozenset(side))
        for start, duration, side in draw(
            st.lists(
                st.tuples(
                    st.floats(0.0, 60.0),
                    st.floats(0.5, 15.0),
                    st.sets(st.integers(0, count - 1), min_size=1, max_size=max(1, count // 2)),
                ),
                max_size=3,
            )
        )
    )
    seed = draw(st.integers(0, 2**32 - 1))
    sends = []
    for index in range(draw(st.integers(1, 20))):
        origin = draw(st.integers(0, count - 1))
        destination = draw(st.integers(0, count - 2))
        destination += destination >= origin
        size = draw(st.integers(16, 600))
        sends.append(
            Send(
                draw(st.floats(0.0, 60.0)),
                origin,
                destination,
                _payload(seed, index, size),
                draw(st.floats(5.0, 40.0)),
            )
        )
    return Scenario(
        count=count,
        edges=tuple(sorted(edges)),
        loss=draw(st.floats(0.0, 0.3)),
        mtu=draw(st.sampled_from([210, 1200])),
        partitions=partitions,
        sends=tuple(sends),
        seed=seed,
    )


# More examples than the ci profile's 40 (each run takes ~0.1 s); the fuzz profile's
# 2,000 when it is loaded.
_EXAMPLES = max(150, settings.default.max_examples)


@settings(max_examples=_EXAMPLES)
@given(scenarios())
def test_delivered_exactly_once_or_expired_and_told__never_both__no_leak(
    scenario: Scenario,
) -> None:
    sim = run_scenario(scenario)
    assert len(sim.messages) == len(scenario.sends)
    for record in sim.messages.values():
        assert record.outcomes == 1, "the sender is told exactly once"
        assert len(record.deliveries) <= 1, "never delivered twice"
        if record.outcome == "delivered":
            assert len(record.deliveries) == 1, "told delivered, so delivered once"
        else:
            assert record.outcome == "expired"
            assert record.deliveries == [], "told expired, so never delivered"
        assert record.delivered_to in ([], [record.destination])
        if not scenario.partitions and record.expiry - record.sent_at >= 20.0:
            assert record.deliveries, "without partitions a 20 s message gets through"
    stats = sim.stats
    assert stats.plaintext_leaks == 0, "a payload appeared in clear on the air"
    assert stats.wrong_deliveries == 0 and stats.unknown_deliveries == 0
    assert stats.oversize_frames == 0, "a frame exceeded the link MTU"
    assert stats.invalid_events == 0, sim.invalid_reasons
