# Two entry points: `make quickstart` and `make test`. Both install first (idempotent).
VENV   := .venv
PYTHON := $(VENV)/bin/python
PYTEST := $(PYTHON) -m pytest
CONFIG ?= configs/quickstart.yaml

.PHONY: install quickstart seed-data training-set studies-small tensorflow-backend test test-fast test-slow clean-runs

install:
	@bash scripts/install.sh

quickstart: install
	$(VENV)/bin/campaign run $(CONFIG)

# Regenerate data/li-seed (GPAW labels, the 4-model ensemble, its properties beside GPAW's;
# about an hour on 2 cores), then export it.
seed-data: install
	$(VENV)/bin/campaign run configs/li-seed-data.yaml
	$(VENV)/bin/campaign export configs/li-seed-data.yaml data/li-seed

# The active-learning campaign behind data/li-gpaw: resumes from the committed export
# (labels, picks, ensembles), so only what it lacks is computed, then exports where it stands
# (commit it). Hours on 2 cores per iteration; `--scale cluster` on SLURM.
training-set: install
	$(VENV)/bin/campaign run configs/li-training-set.yaml
	$(VENV)/bin/campaign export configs/li-training-set.yaml data/li-training-set

# Every study of configs/studies/ at its small scale, one after the other (about 35 minutes on 2 cores).
STUDIES := self-healing-deposition dendrite-columns li-properties-dpgen interface-nucleation glassy-clusters
studies-small: install
	@for study in $(STUDIES); do \
	  $(VENV)/bin/campaign run configs/studies/$$study.yaml --scale small || exit 1; \
	done

# DeePMD-kit's TensorFlow backend beside the PyTorch one, for benchmarks/deepmd_backends.py only.
tensorflow-backend: install
	@bash scripts/install_tensorflow.sh

# Two pytest processes (pytest-xdist) taking one test at a time, longest first, and the files
# whose module fixture must be made once (the quickstart run, the SLURM cluster) whole
# (tests/conftest.py). Two keep both cores busy (92-99 % of the CPU in a run's tests, README):
# the suite's time is its computing, not its waiting.
# TEST_PROCESSES=0 runs everything in one process.
TEST_PROCESSES ?= 2
PARALLEL := -n $(TEST_PROCESSES) --dist loadscope --no-loadscope-reorder

# The whole suite, slow end-to-end tests included (what CI runs).
test: install
	@bash scripts/pytest.sh $(PARALLEL) tests

# Minutes-scale feedback while developing: everything but the slow tier.
test-fast: install
	@bash scripts/pytest.sh $(PARALLEL) -m "not slow" tests

test-slow: install
	@bash scripts/pytest.sh $(PARALLEL) -m slow tests

clean-runs:
	rm -rf runs/
