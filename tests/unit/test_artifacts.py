"""The ABIs and bytecode shipped in offchain/chain/artifacts match a fresh compile of contracts/.

The node loads these files at run time instead of compiling (it has no ape and no vyper),
so a contract change without `make artifacts` would make the node talk to contracts that
are not the ones in the repository. Each test compiles one contract afresh.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest

from offchain.chain.artifacts import (
    ARTIFACT_NAMES,
    COMPILER,
    ArtifactError,
    load_artifact,
    parse_artifact,
)
from scripts import build_artifacts

STALE = "run `make artifacts` and commit offchain/chain/artifacts/"


@functools.cache
def fresh_compile(name: str) -> dict[str, Any]:
    """Compile once per contract and process (the token network takes about 2 s)."""
    return build_artifacts.compile_contract(name)


def test_build_script_and_loader_agree_on_the_set_of_artifacts() -> None:
    assert sorted(build_artifacts.SOURCES) == sorted(ARTIFACT_NAMES)
    assert build_artifacts.EXPECTED_COMPILER == COMPILER


@pytest.mark.parametrize("name", ARTIFACT_NAMES)
def test_shipped_artifact__fresh_compile__same_abi_and_bytecode(name: str) -> None:
    fresh = fresh_compile(name)
    shipped = load_artifact(name)
    assert shipped.compiler == fresh["compiler"], f"{name}: compiler differs; {STALE}"
    assert shipped.source_sha256 == fresh["source_sha256"], f"{name}: source changed; {STALE}"
    assert list(shipped.abi) == fresh["abi"], f"{name}: ABI differs; {STALE}"
    assert "0x" + shipped.bytecode.hex() == fresh["bytecode"], f"{name}: bytecode; {STALE}"
    assert "0x" + shipped.runtime_bytecode.hex() == fresh["runtime_bytecode"], (
        f"{name}: runtime bytecode differs; {STALE}"
    )
    assert shipped.immutables_size == fresh["immutables_size"], f"{name}: {STALE}"


@pytest.mark.parametrize("name", ARTIFACT_NAMES)
def test_shipped_file__rebuilt__byte_identical(name: str) -> None:
    """The file on disk is exactly what the build writes, so a rebuild leaves no diff."""
    fresh = build_artifacts.render(fresh_compile(name))
    path = build_artifacts.ARTIFACTS / f"{name}.json"
    assert path.read_text(encoding="utf-8") == fresh, f"{path.name} is stale; {STALE}"


def test_load_artifact__unknown_name__raises() -> None:
    with pytest.raises(ArtifactError, match="no artifact named"):
        load_artifact("nope")


def test_parse_artifact__bad_hex__raises() -> None:
    data = json.loads((build_artifacts.ARTIFACTS / "secret_registry.json").read_text())
    data["bytecode"] = "0xzz"
    with pytest.raises(ArtifactError, match="bytecode is not valid hex"):
        parse_artifact(data, "secret_registry")


def test_matches_code__immutables_appended__accepted_only_with_their_exact_size() -> None:
    registry = load_artifact("token_network_registry")
    assert registry.immutables_size == 4 * 32
    immutables = bytes(registry.immutables_size)
    assert registry.matches_code(registry.runtime_bytecode + immutables)
    assert not registry.matches_code(registry.runtime_bytecode)
    assert not registry.matches_code(registry.runtime_bytecode + immutables + b"\x00")
    assert not registry.matches_code(b"")
    token = load_artifact("test_token")
    assert token.matches_code(token.runtime_bytecode)
    assert not token.matches_code(registry.runtime_bytecode + immutables)
