# make demo: create .venv if needed, install, run the whole workflow on the synthetic default, write the report.
# make test: create .venv if needed, install, run the test suite (slow end-to-end tests included).

PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: demo test test-fast install lint bench clean

# compileall: pip compiles the packages it installs, not the editable src/; where PYTHONDONTWRITEBYTECODE is set (as on
# the machines this was measured on) every job would compile the package again (~0.02 s of a ~0.37 s preprocessing job).
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,slurm]"
	$(BIN)/python -m compileall -q src
	touch $@

install: $(VENV)/.installed

# two 1-thread training jobs side by side use 2 CPU cores better than one 2-thread job (config: train.threads 1).
# --prioritize: the longest chain of dependent jobs first (FDG pre-training of the largest size -> FDG MMSE model ->
# ECD MMSE model, each waiting for the one before), and the explanation table, i.e. the explained models (config
# explain.models) with their Grad-CAM and occlusion jobs (and the ROI baselines' maps, seconds each), with every job
# they need; otherwise they queued behind independent jobs and the demo's last minutes ran on one core (measured:
# the explained ECD model trained last, then its occlusion ran alone; 1243 s -> 1100 s, with Snakemake's ILP job
# selector, before profiles/default set the greedy one). (Snakemake also makes the files targets: here `all` needs
# them.)
CHAIN := results/models/mmse/ecd_from_fdg/model.keras
EXPLAINED := results/tables/explanations.tsv
demo: install
	snakemake --cores $(CORES) all --resources gpu=2 --prioritize $(CHAIN) $(EXPLAINED)
	snakemake --cores $(CORES) --report results/report.html
	@echo
	@cat results/tables/summary.md
	@echo
	@echo "Report: $(abspath results/report.html)"

# the tests in TEST_WORKERS processes (pytest-xdist), each test file in one of them (--dist loadfile): a file's
# module fixtures (the shared workflow runs, the SLURM cluster) are built once. Much of a slow test is waiting
# (process start-up, Snakemake's scheduling, single-threaded jobs), so two workers on 2 cores shorten the suite.
# PYTEST_ARGS: more pytest options, e.g. make test PYTEST_ARGS="--durations=40" or PYTEST_ARGS="-k resume"
TEST_WORKERS ?= 2
PYTEST := python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: install
	$(PYTEST) $(PYTEST_ARGS)

test-fast: install
	$(PYTEST) -m "not slow" $(PYTEST_ARGS)

lint: install
	ruff check src tests bench resources
	snakemake --lint

bench: install
	python bench/preprocess.py
	python bench/bootstrap.py

clean:
	rm -rf results/* .snakemake
	touch results/.gitkeep
