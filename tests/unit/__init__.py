"""Unit tests: pure functions and single transitions; no chain, no sockets (except the
HTTP API's tests, test_api_*.py, which serve the API on loopback against an in-memory node).

This file makes the folder a package so test module names never clash with the other
tiers (tests/property, tests/contracts, tests/integration).
"""
