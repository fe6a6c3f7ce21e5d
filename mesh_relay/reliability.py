"""Flow control and retry arithmetic: token buckets per neighbour, exponential backoff.

Belongs here: ``TokenBucket`` (bytes per second with a burst), ``RateLimiter`` (a bounded
table of buckets keyed by where a frame came from, so a flooding neighbour, or one that
invents link addresses, costs a bounded amount of memory and CPU), and ``backoff``.
Everything takes ``now`` as an argument.

Does not belong here: what happens to a frame once admitted (``node``), custody
(``store``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

FRAME_COST = 64
"""Bytes charged per frame on top of its length: many tiny frames cost like big ones."""


class TokenBucket:
    """Admits ``rate`` bytes per second on average, at most ``burst`` at once."""

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last = now

    def take(self, amount: float, now: float) -> bool:
        """Spend ``amount`` tokens if there are enough; refill first. False when refused."""
        if now > self.last:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
        if self.tokens >= amount:
            self.tokens -= amount
            return True
        return False


class RateLimiter:
    """One bucket per key, at most ``max_buckets`` of them (least recently used evicted)."""

    __slots__ = ("_buckets", "burst", "max_buckets", "rate")

    def __init__(self, rate: float, burst: float, max_buckets: int) -> None:
        self.rate = rate
        self.burst = burst
        self.max_buckets = max_buckets
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()

    def admit(self, key: Hashable, size: int, now: float) -> bool:
        """True when a frame of ``size`` bytes from ``key`` is within its rate."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_buckets:
                self._buckets.popitem(last=False)
            bucket = TokenBucket(self.rate, self.burst, now)
            self._buckets[key] = bucket
        else:
            self._buckets.move_to_end(key)
        return bucket.take(size + FRAME_COST, now)

    def __len__(self) -> int:
        return len(self._buckets)


def backoff(base: float, attempt: int, cap: float) -> float:
    """Delay before retry number ``attempt`` (0 for the first send): base * 2**attempt, capped."""
    return min(cap, base * float(2 ** min(attempt, 30)))
