"""mesh_relay.persistence: key files and snapshot files (atomic replace, exclusive lock)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mesh_relay.errors import ConfigError, MeshUnrecoverableError
from mesh_relay.identity import SECP256K1_N
from mesh_relay.persistence import SnapshotFile, load_or_create_key, parse_key


def test_key_is_created_private_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "relay.key"
    key, created = load_or_create_key(path)
    assert created and len(key) == 32 and 0 < int.from_bytes(key, "big") < SECP256K1_N
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_key(path) == (key, False)


@pytest.mark.parametrize(
    "text",
    ["", "zz" * 32, "11" * 31, "00" * 32, f"{SECP256K1_N:064x}", "0x" + "11" * 33],
)
def test_bad_key_files_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "relay.key"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"relay\.key"):
        load_or_create_key(path)


def test_key_accepts_0x_and_whitespace() -> None:
    assert parse_key("0x" + "11" * 32) == b"\x11" * 32
    assert parse_key("11" * 32) == b"\x11" * 32


def test_snapshot_round_trip_leaves_no_temporary_file(tmp_path: Path) -> None:
    snapshot = SnapshotFile(tmp_path / "relay.snapshot")
    assert snapshot.load() is None
    snapshot.save(b"first")
    snapshot.save(b"second" * 1000)
    assert snapshot.load() == b"second" * 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["relay.snapshot"]


def test_a_failed_write_keeps_the_old_snapshot(tmp_path: Path) -> None:
    snapshot = SnapshotFile(tmp_path / "relay.snapshot")
    snapshot.save(b"good")
    # A directory where the temporary file must go: the write fails even for root.
    (tmp_path / f".relay.snapshot.{os.getpid()}.tmp").mkdir()
    with pytest.raises(MeshUnrecoverableError, match="cannot write"):
        snapshot.save(b"new")
    assert snapshot.load() == b"good"


def test_snapshot_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    first = SnapshotFile(tmp_path / "relay.snapshot")
    second = SnapshotFile(tmp_path / "relay.snapshot")
    first.lock()
    with pytest.raises(ConfigError, match="in use by another relay"):
        second.lock()
    first.unlock()
    second.lock()
    second.unlock()
    assert (tmp_path / "relay.snapshot.lock").exists()
