"""bench/offline.py at a small size, so that the offline benches cannot rot: the blind
line with lossy mesh links pays, and a wave of a few deferred updates lands correctly.

No figure is checked (performance goes to `make bench`); what is checked is what the
figures stand on: every blind payment succeeded, every update is on chain, by N, with the
partner's latest proof, and N recorded no failed or unnecessary submission.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import offline

pytestmark = pytest.mark.anvil


def test_blind_line_with_lossy_links__every_payment_succeeds(tmp_path: Path) -> None:
    run = offline.measure_mediated(tmp_path, payments=20, concurrency=4)
    assert run.payments == 20 and not run.failed, run.failed
    assert run.succeeded == 20 and run.elapsed > 0


def test_wave__every_update_lands_with_the_partners_latest_proof(tmp_path: Path) -> None:
    run = offline.measure_wave(tmp_path, channels=5)
    assert run.landed == run.channels == 5
    assert not run.problems, run.problems
    assert run.first_s <= run.last_s <= run.drained_s
