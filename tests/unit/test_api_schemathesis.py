"""Schemathesis against the served document: generated requests, no 5xx, answers conform.

The API runs over the in-memory node on a loopback port in a thread of its own
(``ServedApi``); schemathesis loads ``/api/v1/openapi.json`` from it and, for every
operation, sends bounded numbers of valid (positive) and invalid (negative) requests. Each
answer must not be a server error, must have a documented status and content type, must
validate against its schema, and invalid input must be refused with a 4xx.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from tests.lib.api_server import PARTNER, TOKEN, ServedApi, memory_service

# The public names of the built-in checks (``schemathesis.checks`` loads them lazily).
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,  # invalid input (negative mode) must get a 4xx
]


@pytest.fixture(scope="module")
def served() -> Iterator[ServedApi]:
    service = memory_service()
    with ServedApi(service) as api:
        # Something to find: an open channel and a payment, so that some generated
        # requests reach the node's rules and not only the API's checks.
        async def prepare() -> None:
            await service.open_channel(TOKEN, PARTNER, 1000, None)
            await service.pay(TOKEN, PARTNER, 1, direct=True)

        api.run(prepare())
        yield api


@pytest.fixture(scope="module")
def api_schema(served: ServedApi) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(served.url + "/api/v1/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api__generated_requests(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=CHECKS)
