"""Benchmarks of SmartMesh: `python -m bench.run` (or `make bench`) writes bench/results.json.

Modules:
    gas     gas of every token network operation on a real anvil, with Raiden's scenario
    run     the entry point: runs the benches, merges their figures, prints the tables
"""
