"""Which watchers a node has heard of: signed chain beacons, checked, rate-limited, kept.

Belongs here: ``BeaconBook``. A beacon is accepted when it is for our chain, not ours,
not from the future (beyond ``MAX_FUTURE_MS``) nor too old (``MAX_AGE_MS``), at least
``MIN_INTERVAL_MS`` newer than the last one accepted from that watcher (the rate limit,
which also drops the copies that reach us along several paths), and signed by the
watcher it names. The signature is checked last: the cheap checks keep a flood of
copies from costing a recovery each. ``accept`` says whether to pass it on (its ttl left
after this hop); ``fresh`` lists what a blind node may pick a gateway or a delegate from.

Time comes in as Unix milliseconds; nothing here reads a clock.

Does not belong here: sending or forwarding (``offchain.node.watch_service``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from offchain.protocol.crypto import recover
from offchain.protocol.errors import InvalidSignature
from offchain.protocol.types import Address
from offchain.watch.wire import ChainBeacon, Service

MIN_INTERVAL_MS: Final = 10_000
MAX_FUTURE_MS: Final = 60_000
MAX_AGE_MS: Final = 600_000
MAX_WATCHERS: Final = 1_024


@dataclass(frozen=True, slots=True)
class BeaconVerdict:
    accepted: bool
    forward: bool
    why: str = ""


class BeaconBook:
    """The newest beacon of each watcher heard of, for one chain."""

    def __init__(self, chain_id: int, own: Address) -> None:
        self.chain_id = chain_id
        self.own = own
        self._latest: dict[Address, ChainBeacon] = {}

    def __len__(self) -> int:
        return len(self._latest)

    def accept(self, beacon: ChainBeacon, now_ms: int) -> BeaconVerdict:
        if beacon.chain_id != self.chain_id:
            return BeaconVerdict(False, False, "another chain")
        if beacon.watcher == self.own:
            return BeaconVerdict(False, False, "our own")
        if beacon.issued_at > now_ms + MAX_FUTURE_MS:
            return BeaconVerdict(False, False, "from the future")
        if beacon.issued_at < now_ms - MAX_AGE_MS:
            return BeaconVerdict(False, False, "too old")
        last = self._latest.get(beacon.watcher)
        if last is not None and beacon.issued_at < last.issued_at + MIN_INTERVAL_MS:
            return BeaconVerdict(False, False, "not newer than the last by the interval")
        try:
            signer = recover(beacon.digest(), beacon.signature)
        except InvalidSignature:
            return BeaconVerdict(False, False, "malformed signature")
        if signer != beacon.watcher:
            return BeaconVerdict(False, False, "not signed by its watcher")
        if last is None and len(self._latest) >= MAX_WATCHERS:
            self.prune(now_ms)
            if len(self._latest) >= MAX_WATCHERS:
                return BeaconVerdict(False, False, "too many watchers known")
        self._latest[beacon.watcher] = beacon
        return BeaconVerdict(True, beacon.ttl > 0)

    def prune(self, now_ms: int) -> None:
        """Forget watchers not heard of for ``MAX_AGE_MS``."""
        for watcher, beacon in list(self._latest.items()):
            if beacon.issued_at < now_ms - MAX_AGE_MS:
                del self._latest[watcher]

    def get(self, watcher: Address) -> ChainBeacon | None:
        return self._latest.get(watcher)

    def fresh(self, now_ms: int, service: Service = Service.GATEWAY) -> list[ChainBeacon]:
        """Watchers offering ``service`` heard of within ``MAX_AGE_MS``, the one that sees
        the chain furthest first."""
        found = [
            b
            for b in self._latest.values()
            if b.issued_at >= now_ms - MAX_AGE_MS and service in b.services
        ]
        return sorted(found, key=lambda b: (-b.view_time, -b.issued_at, b.watcher))
