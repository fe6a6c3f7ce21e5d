"""mesh_relay.reliability: token buckets, the bounded rate limiter, backoff."""

from __future__ import annotations

from mesh_relay.reliability import FRAME_COST, RateLimiter, TokenBucket, backoff


def test_token_bucket__burst_then_rate() -> None:
    bucket = TokenBucket(rate=100.0, burst=300.0, now=0.0)
    assert bucket.take(300, 0.0)
    assert not bucket.take(1, 0.0)
    assert not bucket.take(100, 0.5)  # 50 refilled
    assert bucket.take(100, 1.0)  # 100 refilled (the refused take spent nothing)
    assert bucket.take(300, 100.0) and not bucket.take(1, 100.0)  # capped at burst


def test_rate_limiter__per_key_and_charges_frame_cost() -> None:
    limiter = RateLimiter(rate=1.0, burst=2 * (100 + FRAME_COST), max_buckets=8)
    assert limiter.admit("a", 100, 0.0) and limiter.admit("a", 100, 0.0)
    assert not limiter.admit("a", 100, 0.0)
    assert limiter.admit("b", 100, 0.0)  # another neighbour is unaffected


def test_rate_limiter__bounded_evicts_least_recently_used() -> None:
    limiter = RateLimiter(rate=1.0, burst=200.0, max_buckets=2)
    limiter.admit("a", 100, 0.0)
    limiter.admit("b", 100, 0.0)
    limiter.admit("a", 1, 0.0)  # a is now the most recent
    limiter.admit("c", 1, 0.0)  # evicts b
    assert len(limiter) == 2
    assert limiter.admit("b", 100, 0.0)  # a fresh bucket


def test_backoff__doubles_and_caps() -> None:
    assert [backoff(0.5, n, 8.0) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert backoff(0.5, 10_000, 8.0) == 8.0


def test_relay_accounting__bounded_overflow_pooled() -> None:
    from mesh_relay.accounting import OVERFLOW, RelayAccounting, RelayCount  # noqa: PLC0415

    accounting = RelayAccounting(max_pairs=2)
    a, b, c = b"\x0a" * 20, b"\x0b" * 20, b"\x0c" * 20
    accounting.record(a, b, 100, True)  # type: ignore[arg-type]
    accounting.record(a, b, 50, False)  # type: ignore[arg-type]
    accounting.record(b, a, 10, True)  # type: ignore[arg-type]
    accounting.record(c, a, 7, True)  # type: ignore[arg-type]
    accounting.record(a, c, 8, True)  # type: ignore[arg-type]
    view = accounting.view()
    assert view[(a, b)] == RelayCount(frames=2, bytes=150, messages=1)  # type: ignore[index]
    assert view[OVERFLOW] == RelayCount(frames=2, bytes=15, messages=2)
    assert len(view) == 3
