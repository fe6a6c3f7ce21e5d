"""Session-wide test settings: hypothesis profiles, and the `fuzz` marker.

`ci` (the default) keeps `make test` within its time budget; `fuzz` is what `make fuzz`
selects for long searches. Choose with HYPOTHESIS_PROFILE. Tests marked `fuzz` (long
searches that are not hypothesis runs, such as a crash at every persistence point) are
skipped unless the fuzz profile is chosen or `-m` names the marker.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "fuzz",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("dev", max_examples=10, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" or "fuzz" in config.option.markexpr:
        return
    skip = pytest.mark.skip(reason="a long search: `make fuzz` runs it")
    for item in items:
        if item.get_closest_marker("fuzz") is not None:
            item.add_marker(skip)
