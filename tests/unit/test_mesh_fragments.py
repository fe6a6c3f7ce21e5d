"""mesh_relay.fragments: split, reassemble in any order, and every bound."""

from __future__ import annotations

from mesh_relay.fragments import Outcome, Reassembler, split
from mesh_relay.identity import Address

ORIGIN = Address(b"\x01" * 20)
KEY = (ORIGIN, b"m" * 16)
NOW = 1000.0


def reassembler(**overrides: float) -> Reassembler:
    bounds: dict[str, float] = {
        "max_buffers": 4,
        "max_bytes": 1000,
        "max_fragments": 10,
        "timeout": 30.0,
    }
    bounds.update(overrides)
    return Reassembler(
        int(bounds["max_buffers"]),
        int(bounds["max_bytes"]),
        int(bounds["max_fragments"]),
        bounds["timeout"],
    )


def test_split__chunks_of_the_size_last_shorter() -> None:
    assert split(b"abcdefg", 3) == [b"abc", b"def", b"g"]
    assert split(b"abc", 3) == [b"abc"]


def test_reassemble__out_of_order_with_duplicates() -> None:
    chunks = split(bytes(range(49)), 7)
    r = reassembler()
    order = [3, 0, 6, 3, 1, 5, 2]
    results = [r.add(KEY, i, len(chunks), chunks[i], NOW + 60, NOW).outcome for i in order]
    assert results[3] is Outcome.DUPLICATE
    last = r.add(KEY, 4, len(chunks), chunks[4], NOW + 60, NOW)
    assert last.outcome is Outcome.COMPLETE and last.body == bytes(range(49))
    assert len(r) == 0 and r.bytes_held == 0


def test_single_fragment__complete_at_once_without_a_buffer() -> None:
    r = reassembler(max_buffers=0)
    result = r.add(KEY, 0, 1, b"whole", NOW + 60, NOW)
    assert result.outcome is Outcome.COMPLETE and result.body == b"whole"


def test_inconsistent_count__buffer_dropped() -> None:
    r = reassembler()
    r.add(KEY, 0, 3, b"a", NOW + 60, NOW)
    assert r.add(KEY, 1, 4, b"b", NOW + 60, NOW).outcome is Outcome.INCONSISTENT
    assert len(r) == 0


def test_inconsistent_chunk__buffer_dropped() -> None:
    r = reassembler()
    r.add(KEY, 0, 3, b"a", NOW + 60, NOW)
    assert r.add(KEY, 0, 3, b"X", NOW + 60, NOW).outcome is Outcome.INCONSISTENT
    assert len(r) == 0


def test_too_many_fragments__refused_as_inconsistent() -> None:
    assert reassembler().add(KEY, 0, 11, b"a", NOW + 60, NOW).outcome is Outcome.INCONSISTENT


def test_buffer_limit__new_messages_refused_old_ones_kept() -> None:
    r = reassembler(max_buffers=2)
    for n in range(2):
        assert (
            r.add((ORIGIN, bytes([n]) * 16), 0, 2, b"a", NOW + 60, NOW).outcome is Outcome.PARTIAL
        )
    assert r.add((ORIGIN, b"z" * 16), 0, 2, b"a", NOW + 60, NOW).outcome is Outcome.REFUSED
    done = r.add((ORIGIN, bytes([0]) * 16), 1, 2, b"b", NOW + 60, NOW)
    assert done.outcome is Outcome.COMPLETE and done.body == b"ab"


def test_byte_limit__refused_when_it_would_overflow() -> None:
    r = reassembler(max_bytes=10)
    assert r.add(KEY, 0, 3, b"x" * 6, NOW + 60, NOW).outcome is Outcome.PARTIAL
    assert r.add(KEY, 1, 3, b"x" * 6, NOW + 60, NOW).outcome is Outcome.REFUSED
    assert r.add((ORIGIN, b"o" * 16), 0, 2, b"x" * 6, NOW + 60, NOW).outcome is Outcome.REFUSED
    assert r.bytes_held == 6


def test_expire__at_the_earlier_of_expiry_and_timeout() -> None:
    r = reassembler(timeout=30.0)
    r.add(KEY, 0, 2, b"a", NOW + 10, NOW)  # message expires before the timeout
    other = (ORIGIN, b"o" * 16)
    r.add(other, 0, 2, b"a", NOW + 600, NOW)  # timeout first
    assert r.expire(NOW + 9.9) == 0
    assert r.expire(NOW + 10) == 1 and len(r) == 1
    assert r.expire(NOW + 30) == 1 and len(r) == 0 and r.bytes_held == 0
