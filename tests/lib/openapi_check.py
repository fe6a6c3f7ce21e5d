"""Check HTTP responses against an OpenAPI 3.1 document: the API tests' referee.

Belongs here: ``OpenApiChecker``, built from a document (which it first validates with
``openapi-spec-validator``). ``check(method, path, status, headers, body)`` finds the
operation, asserts that the status is documented for it (successes explicitly, errors at
least by ``default``), that the body is JSON and validates against the response schema
(jsonschema, draft 2020-12, the dialect of OpenAPI 3.1), that required headers are there,
that an error's code matches its status, and that every address in an answer is EIP-55
checksummed. Requests the document does not have must answer 404 (an unknown path) or
405 (an unknown method), or 401 from the token guard, in the error shape. It records
which operations it has seen, so a run can assert it covered them all.

Not here: sending requests (``tests/lib/api_conformance.py``, the tests).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from openapi_spec_validator import validate as validate_spec

from offchain.api.convert import checksum_address
from offchain.api.errors import HTTP_STATUS
from offchain.node.service import ErrorCode

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


@dataclass(frozen=True, slots=True)
class Operation:
    method: str  # upper case
    template: str  # the document's path, e.g. /channels/{token}/{partner}
    pattern: re.Pattern[str]
    spec: Mapping[str, Any]

    @property
    def label(self) -> str:
        return f"{self.method} {self.template}"


@dataclass(slots=True)
class OpenApiChecker:
    document: Mapping[str, Any]
    prefix: str = ""
    operations: list[Operation] = field(default_factory=list)
    seen: dict[str, set[int]] = field(default_factory=dict)  # operation label: statuses

    def __post_init__(self) -> None:
        validate_spec(dict(self.document))
        servers = self.document.get("servers") or [{"url": ""}]
        self.prefix = servers[0]["url"].rstrip("/")
        for template, item in self.document["paths"].items():
            regex = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
            for method in _METHODS:
                if method in item:
                    self.operations.append(
                        Operation(method.upper(), template, re.compile(regex), item[method])
                    )

    def _validator(self, schema: Mapping[str, Any]) -> jsonschema.Draft202012Validator:
        # References point into the document ("#/components/schemas/..."): validate under
        # a root that carries the components, so they resolve.
        root = {"components": self.document["components"], "allOf": [schema]}
        return jsonschema.Draft202012Validator(root)

    def validate(self, schema: Mapping[str, Any], instance: object, where: str) -> None:
        errors = sorted(self._validator(schema).iter_errors(instance), key=str)
        if errors:
            details = "\n".join(
                f"  at {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
                for e in errors[:5]
            )
            raise AssertionError(f"{where}: the body does not match its schema:\n{details}")

    def find(self, method: str, path: str) -> tuple[Operation | None, bool]:
        """The operation for ``method path``, and whether the path exists at all."""
        path = path.split("?", 1)[0]
        if not path.startswith(self.prefix):
            return None, False
        local = path[len(self.prefix) :]
        matching = [op for op in self.operations if op.pattern.fullmatch(local)]
        for op in matching:
            if op.method == method.upper():
                return op, True
        return None, bool(matching)

    def check(
        self,
        method: str,
        path: str,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
    ) -> Any:
        """Assert that the response conforms; return its decoded JSON body."""
        where = f"{method} {path} -> {status}"
        content_type = headers.get("Content-Type", "")
        if not content_type.startswith("application/json"):
            raise AssertionError(f"{where}: Content-Type is {content_type!r}, not JSON")
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise AssertionError(f"{where}: the body is not JSON: {exc}") from None
        if status >= 400:
            self._check_error(where, status, data)
        operation, path_known = self.find(method, path)
        if operation is None:
            expected = 405 if path_known else 404
            if status not in (expected, 401):  # the guard answers before the router
                raise AssertionError(f"{where}: an undocumented request must answer {expected}")
            if status == 405 and "Allow" not in headers:
                raise AssertionError(f"{where}: 405 without an Allow header")
            return data
        responses = operation.spec["responses"]
        response = responses.get(str(status))
        if response is None:
            if status < 400 or "default" not in responses:
                raise AssertionError(f"{where}: status {status} is not documented")
            response = responses["default"]
        self.seen.setdefault(operation.label, set()).add(status)
        for name, header in (response.get("headers") or {}).items():
            if header.get("required") and name not in headers:
                raise AssertionError(f"{where}: the required header {name} is missing")
        schema = response["content"]["application/json"]["schema"]
        self.validate(schema, data, where)
        if operation.template != "/openapi.json":
            _assert_checksummed(where, data)
        return data

    def _check_error(self, where: str, status: int, data: object) -> None:
        self.validate({"$ref": "#/components/schemas/Error"}, data, where)
        assert isinstance(data, dict)
        code = ErrorCode(data["error"]["code"])
        if HTTP_STATUS[code] != status:
            raise AssertionError(f"{where}: code {code.value} belongs to {HTTP_STATUS[code]}")

    def missing(self) -> list[str]:
        """Operations of the document that no checked response has come from."""
        return [op.label for op in self.operations if op.label not in self.seen]


def _assert_checksummed(where: str, data: object, key: str = "") -> None:
    if key == "data":  # an event's free-form details: the node's own formatting
        return
    if isinstance(data, dict):
        for k, v in data.items():
            _assert_checksummed(where, v, k)
    elif isinstance(data, list):
        for item in data:
            _assert_checksummed(where, item, key)
    elif (
        isinstance(data, str)
        and _ADDRESS.fullmatch(data)
        and checksum_address(bytes.fromhex(data[2:])) != data
    ):
        raise AssertionError(f"{where}: {key} {data} is not EIP-55 checksummed")
