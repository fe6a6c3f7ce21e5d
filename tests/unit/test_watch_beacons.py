"""Which watchers a node has heard of (offchain/watch/beacons.py; docs/spec.md §15.4, W-7)."""

from __future__ import annotations

import dataclasses

from offchain.protocol.crypto import address_from_private_key, keccak256
from offchain.protocol.types import Address, PrivateKey, Signature, Timestamp, TokenAmount
from offchain.watch.beacons import MIN_INTERVAL_MS, BeaconBook
from offchain.watch.wire import UNSIGNED, ChainBeacon, Service

KEY = PrivateKey(keccak256(b"watcher"))
WATCHER = address_from_private_key(KEY)
OWN = Address(b"\x01" * 20)
NOW = 1_700_000_000_000


def beacon(
    issued_at: int = NOW, *, ttl: int = 3, view: int = 100, key: PrivateKey = KEY,
    services: Service = Service.DELEGATE | Service.GATEWAY, chain_id: int = 1,
) -> ChainBeacon:  # fmt: skip
    return ChainBeacon(
        chain_id, address_from_private_key(key), Timestamp(view), TokenAmount(0), services,
        issued_at, UNSIGNED, ttl,
    ).signed(key)  # fmt: skip


def test_accept__valid__kept_and_forwarded_while_ttl_is_left() -> None:
    book = BeaconBook(1, OWN)
    verdict = book.accept(beacon(), NOW)
    assert verdict.accepted and verdict.forward
    assert book.get(WATCHER) == beacon()
    last_hop = BeaconBook(1, OWN).accept(beacon(ttl=0), NOW)
    assert last_hop.accepted and not last_hop.forward


def test_accept__copies_and_floods__only_one_per_interval() -> None:
    book = BeaconBook(1, OWN)
    assert book.accept(beacon(), NOW).accepted
    assert not book.accept(beacon().hop(), NOW).accepted  # the same, by another path
    assert not book.accept(beacon(NOW + MIN_INTERVAL_MS - 1), NOW).accepted
    assert book.accept(beacon(NOW + MIN_INTERVAL_MS), NOW).accepted


def test_accept__foreign_own_future_old_or_forged__ignored() -> None:
    book = BeaconBook(1, OWN)
    assert not book.accept(beacon(chain_id=2), NOW).accepted
    assert not BeaconBook(1, WATCHER).accept(beacon(), NOW).accepted
    assert not book.accept(beacon(NOW + 61_000), NOW).accepted
    assert not book.accept(beacon(NOW - 601_000), NOW).accepted
    other = PrivateKey(keccak256(b"other"))
    forged = dataclasses.replace(beacon(), signature=beacon(key=other).signature)
    assert not book.accept(forged, NOW).accepted
    garbage = dataclasses.replace(beacon(), signature=Signature(b"\x01" * 65))
    assert not book.accept(garbage, NOW).accepted
    assert len(book) == 0


def test_fresh__by_service__the_furthest_view_first_and_old_ones_pruned() -> None:
    book = BeaconBook(1, OWN)
    keys = [PrivateKey(keccak256(bytes([i]))) for i in range(3)]
    book.accept(beacon(key=keys[0], view=10), NOW)
    book.accept(beacon(key=keys[1], view=30), NOW)
    book.accept(beacon(key=keys[2], view=20, services=Service.DELEGATE), NOW)
    gateways = [b.view_time for b in book.fresh(NOW)]
    assert gateways == [30, 10]
    assert [b.view_time for b in book.fresh(NOW, Service.DELEGATE)] == [30, 20, 10]
    assert book.fresh(NOW + 601_000) == []
    book.prune(NOW + 601_000)
    assert len(book) == 0
