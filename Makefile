# SmartMesh: every command a user or CI needs. `make help` lists them.
# Everything installs into the project (.venv, tools/node_modules, .ape): nothing global.

SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.9.5
ANVIL := tools/node_modules/.bin/anvil
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha1sum | cut -c1-12)
PYTEST_ARGS ?=

# ape keeps its data (compilers list, networks) inside the project, and finds vyper and
# anvil on PATH: otherwise it asks GitHub for compiler lists, which this network refuses.
export APE_DATA_FOLDER := $(CURDIR)/.ape
export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/tools/node_modules/.bin:$(PATH)
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help install test test-fast lint format bench fuzz demo demo-offline artifacts clean lock

help: ## List the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

install: $(STAMP) $(ANVIL) ## Create .venv with the pinned dependencies and install anvil

$(STAMP): requirements.lock pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip sync -q --python $(PY) requirements.lock
	$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $@

$(ANVIL): tools/package.json tools/package-lock.json
	cd tools && npm ci --no-fund --no-audit --loglevel=error
	@touch $@

test: install ## Run the whole test suite (unit, property, contracts, integration on anvil)
	$(PY) -m pytest -q -n 2 $(PYTEST_ARGS)

lint: install ## ruff (lint + format check) and mypy --strict on the Python packages
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install ## Apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install ## Measure gas (on anvil) and other figures into bench/results.json
	$(PY) -m bench.run

fuzz: install ## Long searches: hypothesis (HYPOTHESIS_PROFILE=fuzz), crashes at every commit
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q tests/property $(PYTEST_ARGS)
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q -m fuzz tests/integration $(PYTEST_ARGS)

demo: install ## Start anvil, deploy everything, print the deployment
	$(PY) -m scripts.demo

demo-offline: install ## The island: blind payments over the mesh, a cheat corrected, proofs to the chain later
	$(PY) -m scripts.demo_offline

artifacts: install ## Rebuild the ABIs and bytecode shipped in offchain/chain/artifacts
	$(PY) -m scripts.build_artifacts

lock: ## Re-resolve requirements.in into requirements.lock (needs uv)
	$(VENV)/bin/uv pip compile requirements.in -p 3.11 --generate-hashes -o requirements.lock

clean: ## Remove build products (keeps .venv and tools)
	rm -rf .build build .ape/.cache bench/results.json .pytest_cache .mypy_cache .ruff_cache
