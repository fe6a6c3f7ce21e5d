"""Unit tests: pure functions and single transitions; no chain, no sockets.

This file makes the folder a package so test module names never clash with the other
tiers (tests/property, tests/contracts, tests/integration).
"""
