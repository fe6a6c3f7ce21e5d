"""The OpenAPI document: valid 3.1, in step with the server's routes and checks."""

from __future__ import annotations

import asyncio
import dataclasses
import json

from openapi_spec_validator import validate

from offchain.api import app as api_app
from offchain.api import openapi, schemas
from offchain.api.errors import HTTP_STATUS
from offchain.node.service import ErrorCode
from tests.lib.api_server import checked_client, memory_service


def test_document__validates_as_openapi_3_1() -> None:
    document = openapi.openapi_document()
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_document__has_exactly_the_servers_routes() -> None:
    document = openapi.openapi_document()
    documented = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    routed = {(method, path) for method, path, _ in api_app.ROUTES}
    assert documented == routed


def test_request_bodies__are_closed_and_name_their_required_fields() -> None:
    components = openapi.openapi_document()["components"]["schemas"]
    for cls in schemas.REQUEST_BODIES:
        schema = components[cls.__name__]
        assert schema["additionalProperties"] is False
        fields = dataclasses.fields(cls)
        assert set(schema["properties"]) == {f.name for f in fields}
        required = {f.name for f in fields if f.default is dataclasses.MISSING}
        assert set(schema.get("required", [])) == required


def test_error_codes__each_has_a_status_and_is_in_the_error_schema() -> None:
    assert set(HTTP_STATUS) == set(ErrorCode)
    error = openapi.openapi_document()["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["properties"]["code"]["enum"] == [
        c.value for c in ErrorCode
    ]


def test_every_operation__documents_its_errors_and_a_default() -> None:
    for item in openapi.openapi_document()["paths"].values():
        for method, operation in item.items():
            if method == "parameters":
                continue
            responses = operation["responses"]
            assert "default" in responses and "400" in responses and "401" in responses
            if "requestBody" in operation:
                assert "413" in responses and "415" in responses


def test_served_document__is_the_built_one() -> None:
    async def body() -> None:
        async with checked_client(memory_service()) as api:
            served = (await api.get("/openapi.json", expect=200)).data
            assert served == json.loads(json.dumps(openapi.openapi_document()))

    asyncio.run(body())


def test_openapi_document__returns_a_copy() -> None:
    first = openapi.openapi_document()
    first["paths"].clear()
    assert openapi.openapi_document()["paths"]
