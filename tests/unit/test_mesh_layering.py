"""Dependency rules of DESIGN.md §1 for ``mesh_relay``, checked on the source.

The mesh knows nothing of payments: no module imports ``offchain``. The core is sans-I/O:
no module but the simulator and the adapters (links, sockets, runtime, files, control
socket, command line) imports a clock, randomness, sockets, threads or the OS, and no
core module imports an adapter, so a new medium never touches the core.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mesh_relay"
FORBIDDEN_IN_CORE = {
    "asyncio",
    "datetime",
    "os",
    "random",
    "secrets",
    "select",
    "selectors",
    "socket",
    "subprocess",
    "threading",
    "time",
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
    return names


MODULES = sorted(PACKAGE.glob("*.py"))
ADAPTERS = {"sim", "links", "udp", "tcp", "runtime", "persistence", "control", "cli", "__main__"}
"""Modules outside the sans-I/O core; everything else is core."""
CORE = [p for p in MODULES if p.stem not in ADAPTERS and p.stem != "__init__"]


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_no_module_imports_offchain(path: Path) -> None:
    assert not {n for n in _imports(path) if n.split(".")[0] == "offchain"}


@pytest.mark.parametrize("path", CORE, ids=[p.stem for p in CORE])
def test_core_modules_do_no_io_and_read_no_clock_or_randomness(path: Path) -> None:
    assert not {n for n in _imports(path) if n.split(".")[0] in FORBIDDEN_IN_CORE}


@pytest.mark.parametrize("path", CORE, ids=[p.stem for p in CORE])
def test_core_modules_import_no_adapter(path: Path) -> None:
    adapters = {f"mesh_relay.{name}" for name in ADAPTERS}
    assert not _imports(path) & adapters


def test_package_init_imports_only_the_core() -> None:
    # ``import mesh_relay`` must not pull in asyncio or sockets for a sans-I/O user.
    imported = _imports(PACKAGE / "__init__.py")
    assert not {n for n in imported if n.split(".")[0] in FORBIDDEN_IN_CORE}
    assert not imported & {f"mesh_relay.{name}" for name in ADAPTERS}


def test_every_adapter_module_exists() -> None:
    # A renamed adapter would silently become "core" and fail the I/O rule confusingly.
    assert {p.stem for p in MODULES} >= ADAPTERS


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_every_module_opens_with_a_docstring(path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring and len(docstring) > 80
