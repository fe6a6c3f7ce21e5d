"""Dependency rules of DESIGN.md §1 for ``mesh_relay``, checked on the source.

The mesh knows nothing of payments: no module imports ``offchain``. The core is sans-I/O:
no module but the simulator imports a clock, randomness, sockets, threads or the OS.
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


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_no_module_imports_offchain(path: Path) -> None:
    assert not {n for n in _imports(path) if n.split(".")[0] == "offchain"}


@pytest.mark.parametrize(
    "path",
    [p for p in MODULES if p.stem != "sim"],
    ids=[p.stem for p in MODULES if p.stem != "sim"],
)
def test_core_modules_do_no_io_and_read_no_clock_or_randomness(path: Path) -> None:
    assert not {n for n in _imports(path) if n.split(".")[0] in FORBIDDEN_IN_CORE}


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_every_module_opens_with_a_docstring(path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring and len(docstring) > 80
