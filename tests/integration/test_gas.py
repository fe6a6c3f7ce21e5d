"""Gas of the token network: no operation may cost more than gas.json records, and the
recorded figures must meet the targets set against Raiden (REFERENCE.md section 2).

The scenario (bench/gas.py, docs/gas.md) runs on a real anvil with real transactions and
reads each receipt's gasUsed. It is deterministic, so a change of gas is always a change
of the contracts (or of the scenario): if it is intended, run `python -m bench.run --record`
and commit the new gas.json.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from bench import gas
from scripts.anvil import Anvil


def recorded() -> dict[str, int]:
    figures = json.loads(gas.GAS_JSON.read_text())
    assert isinstance(figures, dict)
    return {str(name): int(value) for name, value in figures.items()}


@pytest.fixture(scope="module")
def measured() -> Iterator[dict[str, int]]:
    with Anvil.start() as node:
        yield gas.measure(node.url).gas


def test_gas_json_records_exactly_the_twelve_operations() -> None:
    assert sorted(recorded()) == sorted(gas.OPERATIONS)


@pytest.mark.anvil
def test_no_operation_costs_more_than_recorded(measured: dict[str, int]) -> None:
    record = recorded()
    regressions = [
        f"{name}: recorded {record[name]:,}, measured {measured[name]:,}"
        f" (+{measured[name] - record[name]:,}); update gas.json if intended"
        for name in gas.OPERATIONS
        if measured[name] > record[name]
    ]
    assert not regressions, "gas regression:\n" + "\n".join(regressions)


# Unlock stays above 0.75 x Raiden: its floor in this design (a cold call and read of the
# secret registry per lock, a token transfer, the clone's forwarding call) is analysed in
# docs/gas.md. strict=True: the day it meets the target, this marker must go.
_OVER_TARGET = {
    "gas.unlock_1": "unlock floor about 49k > 44,277 target; docs/gas.md",
    "gas.unlock_6": "unlock floor about 74k > 62,889 target; docs/gas.md",
}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=_OVER_TARGET[name]))
        if name in _OVER_TARGET
        else name
        for name in gas.OPERATIONS
    ],
)
def test_recorded_gas__operation__meets_its_target(name: str) -> None:
    record = recorded()
    assert record[name] <= gas.TARGETS[name], (
        f"{name}: recorded {record[name]:,} > target {gas.TARGETS[name]:,}"
        f" (by {record[name] - gas.TARGETS[name]:,}; Raiden {gas.RAIDEN_GAS[name]:,})"
    )
