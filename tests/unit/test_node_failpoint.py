"""The crash tests' failpoint: ``SMARTMESH_FAILPOINT`` read by the process main, armed at
the start or by SIGUSR1 (offchain/node/main.py ``install_failpoint``, runtime.py
``crash_after``). That the process then dies at the right commit is what
tests/integration/test_node_crash.py shows on real processes."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from offchain.node.main import StartError, install_failpoint
from offchain.node.runtime import NodeRuntime
from offchain.node.store import Store
from tests.lib.network import make_key


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeRuntime]:
    store = Store.open(tmp_path / "node.sqlite3")
    yield NodeRuntime(bytes(make_key(0)), 31337, store)
    store.close()


def install(runtime: NodeRuntime) -> None:
    install_failpoint(SimpleNamespace(runtime=runtime))  # type: ignore[arg-type]


def test_after_commit__armed_from_the_start(
    node: NodeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMARTMESH_FAILPOINT", "after_commit:3")
    install(node)
    assert node.crash_after_commits == 3


def test_no_failpoint__nothing_armed(node: NodeRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMARTMESH_FAILPOINT", raising=False)
    install(node)
    assert node.crash_after_commits is None


@pytest.mark.parametrize(
    "spec", ["after_commit", "after_commit:", "after_commit:x", "before_commit:2",
             "after_commit:2:on_sigusr2", "after_commit:-1"],
)  # fmt: skip
def test_unknown_failpoint__refused_with_a_clear_error(
    spec: str, node: NodeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMARTMESH_FAILPOINT", spec)
    with pytest.raises(StartError, match="unknown failpoint"):
        install(node)
    assert node.crash_after_commits is None


def test_on_sigusr1__armed_only_by_the_signal_counting_from_then(
    node: NodeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMARTMESH_FAILPOINT", "after_commit:2:on_sigusr1")

    async def main() -> list[int | None]:
        seen = []
        install(node)
        seen.append(node.crash_after_commits)
        node._commits = 5  # five commits before the test arms it
        os.kill(os.getpid(), signal.SIGUSR1)
        for _ in range(100):
            await asyncio.sleep(0.01)
            if node.crash_after_commits is not None:
                break
        seen.append(node.crash_after_commits)
        return seen

    assert asyncio.run(main()) == [None, 7]
