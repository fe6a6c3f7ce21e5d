"""The compiled contracts shipped with the package: ABI and bytecode, loaded without ape.

Belongs here: the ``Artifact`` value and ``load_artifact``, which reads
``offchain/chain/artifacts/<name>.json`` through ``importlib.resources`` (so it works from
a wheel as well as from a checkout). The files are written by ``make artifacts``
(``scripts/build_artifacts.py``) from ``contracts/``; ``tests/unit/test_artifacts.py``
checks that they still match a fresh compile.

Does not belong here: compiling (that needs vyper, a build-time tool), talking to a node,
or deciding anything about channels.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

from offchain.chain.errors import ArtifactError

__all__ = [
    "ARTIFACT_NAMES",
    "COMPILER",
    "Artifact",
    "ArtifactError",
    "abi_sha256",
    "load_artifact",
    "parse_artifact",
]

ARTIFACT_NAMES: Final = ("secret_registry", "token_network", "token_network_registry", "test_token")
"""Every artifact the package ships, by contract file stem."""

COMPILER: Final = "vyper-0.4.3"
"""The compiler every shipped artifact was built with."""

_PACKAGE: Final = "offchain.chain"
_FOLDER: Final = "artifacts"


def abi_sha256(abi: object) -> str:
    """Return the sha256 (hex) of an ABI in canonical JSON (sorted keys, no spaces).

    The same ABI always gives the same digest, whatever the key order it was written in;
    deployment manifests record it so that a reader can tell which interface an address has.
    """
    canonical = json.dumps(abi, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Artifact:
    """One compiled contract: its ABI, creation and runtime bytecode, and provenance.

    ``bytecode`` is the creation code (constructor arguments are appended ABI-encoded);
    ``runtime_bytecode`` is the code a deployment leaves on chain, except that Vyper appends
    ``immutables_size`` bytes of immutable values after it. ``abi`` entries are plain JSON
    objects, as web3.py and ape take them; treat them as read-only.
    """

    contract: str
    compiler: str
    abi: tuple[dict[str, Any], ...]
    bytecode: bytes
    runtime_bytecode: bytes
    immutables_size: int
    source_sha256: str
    evm_version: str

    @property
    def abi_sha256(self) -> str:
        """The sha256 of the ABI in canonical JSON (see ``abi_sha256``)."""
        return abi_sha256(list(self.abi))

    @property
    def runtime_sha256(self) -> str:
        """The sha256 of the runtime bytecode, without immutables."""
        return hashlib.sha256(self.runtime_bytecode).hexdigest()

    def abi_list(self) -> list[dict[str, Any]]:
        """A fresh copy of the ABI as a list, safe to hand to libraries that mutate it."""
        copy: list[dict[str, Any]] = json.loads(json.dumps(list(self.abi)))
        return copy

    def matches_code(self, code: bytes) -> bool:
        """Return whether ``code`` (from ``eth_getCode``) is a deployment of this artifact.

        Vyper's deployed code is the runtime bytecode followed by the immutables section,
        so the prefix must be equal and the rest exactly as long as the immutables.
        """
        size = len(self.runtime_bytecode)
        return (
            size > 0
            and code[:size] == self.runtime_bytecode
            and len(code) - size == self.immutables_size
        )


def _hex_bytes(value: object, field: str, name: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ArtifactError(f"artifact {name}: {field} is not a 0x-prefixed hex string")
    try:
        return bytes.fromhex(value[2:])
    except ValueError as exc:
        raise ArtifactError(f"artifact {name}: {field} is not valid hex") from exc


def parse_artifact(data: object, name: str) -> Artifact:
    """Build an ``Artifact`` from the decoded JSON of an artifact file; check its shape."""
    if not isinstance(data, dict):
        raise ArtifactError(f"artifact {name}: not a JSON object")
    abi = data.get("abi")
    if not isinstance(abi, list) or not all(isinstance(entry, dict) for entry in abi):
        raise ArtifactError(f"artifact {name}: abi is not a list of objects")
    fields = ("contract", "compiler", "source_sha256", "evm_version")
    texts = {key: data.get(key) for key in fields}
    for key, value in texts.items():
        if not isinstance(value, str):
            raise ArtifactError(f"artifact {name}: {key} missing or not a string")
    immutables_size = data.get("immutables_size", 0)
    if not isinstance(immutables_size, int) or immutables_size < 0:
        raise ArtifactError(f"artifact {name}: immutables_size is not a natural number")
    return Artifact(
        contract=str(texts["contract"]),
        compiler=str(texts["compiler"]),
        abi=tuple(abi),
        bytecode=_hex_bytes(data.get("bytecode"), "bytecode", name),
        runtime_bytecode=_hex_bytes(data.get("runtime_bytecode"), "runtime_bytecode", name),
        immutables_size=immutables_size,
        source_sha256=str(texts["source_sha256"]),
        evm_version=str(texts["evm_version"]),
    )


@functools.cache
def load_artifact(name: str) -> Artifact:
    """Return the shipped artifact ``name`` (a contract file stem, e.g. ``"token_network"``).

    Raises ``ArtifactError`` if the package holds no such artifact or it is malformed.
    """
    if name not in ARTIFACT_NAMES:
        raise ArtifactError(f"no artifact named {name!r}; known: {', '.join(ARTIFACT_NAMES)}")
    resource = resources.files(_PACKAGE) / _FOLDER / f"{name}.json"
    try:
        text = resource.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ArtifactError(f"artifact {name} is missing: run `make artifacts`") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"artifact {name}: invalid JSON") from exc
    return parse_artifact(data, name)
