# Two entry points: `make quickstart` and `make test`. Both install first (idempotent).
VENV   := .venv
PYTHON := $(VENV)/bin/python
PYTEST := $(PYTHON) -m pytest
CONFIG ?= configs/quickstart.yaml

.PHONY: install quickstart seed-data test test-fast test-slow clean-runs

install:
	@bash scripts/install.sh

quickstart: install
	$(VENV)/bin/campaign run $(CONFIG)

# Regenerate data/li-seed (GPAW labels + 4-model ensemble + validation; about 30 minutes on 2 cores).
seed-data: install
	$(VENV)/bin/campaign run configs/li-seed-data.yaml
	$(PYTHON) scripts/export_seed_data.py configs/li-seed-data.yaml data/li-seed

# The whole suite, slow end-to-end tests included (what CI runs).
test: install
	@bash scripts/pytest.sh tests

# Minutes-scale feedback while developing: everything but the slow tier.
test-fast: install
	@bash scripts/pytest.sh -m "not slow" tests

test-slow: install
	@bash scripts/pytest.sh -m slow tests

clean-runs:
	rm -rf runs/
