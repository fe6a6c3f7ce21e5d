"""The node's HTTP control API (aiohttp) and its OpenAPI 3.1 document, and a client for it.

The API talks to the node only through ``offchain.node.service.NodeService`` (DESIGN.md
§1). Modules:
    app       ``make_app``: routes, one thin handler per operation, token and Host guards
    server    ``serve``: listen on loopback, or beyond it only with a bearer token
    openapi   the document, built once and served at ``GET /api/v1/openapi.json``
    schemas   request fields and response schemas: one source for checks and document
    convert   service values to JSON and back (checksummed addresses, decimal amounts)
    errors    the error shape ``{"error": {"code", "message"}}`` and HTTP statuses
    client    ``ApiClient``, the async HTTP client the CLI uses
"""
