# sepc-bench. The two commands a new user runs: `make table` and `make test`.
# Both build .venv first when it is missing (tools/setup.sh; ~8 min on 2 cores the first time).
SHELL := /bin/bash
PY := .venv/bin/python
PROFILE ?= smoke
RESULTS ?=
ARGS ?=
results_flag = $(if $(RESULTS),--results $(RESULTS),)
# `make table ITERS=N`: every cell trains N iterations (--max-iters) into results/<profile>-<N>it;
# `make table QUICK=1`: the 200-iteration quick check (ITERS=200), what CI runs
QUICK ?=
ITERS ?= $(if $(QUICK),200,)
table_dir = $(or $(RESULTS),$(if $(ITERS),results/$(PROFILE)-$(ITERS)it))

.PHONY: help setup table screenshot released pilot sweep status lint test test-all test-fast slurm-up slurm-down slurm-check chromium bench bench-micro onnx-check gpu-check clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

.venv/.sepc-ready: requirements.txt tools/setup.sh
	bash tools/setup.sh

setup: .venv/.sepc-ready  ## build .venv (TORCH_SPEC=... for a CUDA torch build)

table: setup  ## run the smoke sweep if its results are missing, then print/write the table and HTML report (RESULTS=DIR tabulates an existing sweep; ITERS=N trains N iterations per cell; QUICK=1 the 200-iteration check)
	$(PY) -m bench table --profile $(PROFILE) $(if $(table_dir),--results $(table_dir)) $(if $(RESULTS),,--run-missing) $(if $(ITERS),--max-iters $(ITERS)) $(ARGS)

screenshot: table chromium  ## docs/report-screenshot.png: headless Chromium's picture of the report `make table` just wrote
	$(PY) tests/test_reports_browser.py $(or $(table_dir),results/$(PROFILE))/report/report.html docs/report-screenshot.png 1280 1800

released: setup  ## evaluate the authors' checkpoints in CHECKPOINTS=DIR on COCO (DATA=/path/coco), then the paper table with them
	$(if $(CHECKPOINTS),,$(error CHECKPOINTS=DIR is required: the folder holding the authors' .pth files))
	$(if $(DATA),,$(error DATA=DIR is required: a COCO 2017 folder with annotations/ and val2017/))
	$(PY) -m bench table --profile paper --from-checkpoints $(CHECKPOINTS) --data-root $(DATA) --run-missing $(results_flag) $(ARGS)

pilot: setup  ## each of PROFILE's cells briefly, then the forecast of the full sweep (ARGS="--executor slurm --data-root ...")
	$(PY) -m bench pilot --profile $(PROFILE) $(results_flag) $(ARGS)

sweep: setup  ## submit PROFILE's cells to SLURM as one job array and return (ARGS="--partition gpu ...")
	$(PY) -m bench run --profile $(PROFILE) --executor slurm $(results_flag) $(ARGS)

status: setup  ## one line per cell, from the store and the scheduler
	$(PY) -m bench status --profile $(PROFILE) $(results_flag)

slurm-up:  ## install, configure and start a single-node SLURM cluster on this machine
	bash tools/slurm/up.sh

slurm-down:  ## stop the daemons slurm-up started (ARGS=--purge also cancels jobs and deletes .slurm)
	bash tools/slurm/down.sh $(ARGS)

slurm-check: setup slurm-up  ## real jobs through sbatch and submitit: array, scancel, USR2 requeue
	$(PY) tools/slurm/selfcheck.py

chromium:  ## install headless Chromium (the report's browser test)
	bash tools/install-chromium.sh

# Outside CI, `make test` starts nothing as root: the SLURM and browser tests run if their services
# are there, else each module is skipped with one line naming the target below. Under CI=true
# (CI sets it) the services are set up first and required.
ci := $(filter true 1 yes,$(CI))
lint: setup  ## ruff: lint and import order (pyproject.toml [tool.ruff]; `ruff check --fix .` mends most)
	$(PY) -m ruff check .

test: lint $(if $(ci),slurm-up chromium)  ## the linter, then the whole suite (SLURM/browser tests skipped without their services; CI=true requires them)
	$(PY) -m pytest -q $(ARGS)

test-all: lint slurm-up chromium  ## as root: the linter, the local SLURM cluster, Chromium, then every test (services required)
	CI=true $(PY) -m pytest -q $(ARGS)

test-fast: lint  ## the linter and the unit tests (no SLURM, no browser, no end-to-end sweep)
	$(PY) -m pytest -q -m "not slow and not slurm and not browser" $(ARGS)

bench: setup  ## inference speed of every detector x variant, interleaved, -> results/smoke/perf.{json,md} (docs/performance.md)
	$(PY) -m bench perf $(ARGS)

onnx-check: setup  ## every trained cell of the sweep as an ONNX graph -> <results>/onnx/, checked on ONNX Runtime: raw outputs within 1e-4, COCO AP within 0.1 (after `make table`)
	$(PY) -m bench export --profile $(PROFILE) $(if $(table_dir),--results $(table_dir)) --onnx $(or $(table_dir),results/$(PROFILE))/onnx --check $(ARGS)

bench-micro: setup  ## micro-benchmarks: deformable conv paths, SEPC neck parts vs the stock head tower
	$(PY) -m tools.benchmarks.deform $(ARGS)
	$(PY) -m tools.benchmarks.neck $(ARGS)

gpu-check: setup  ## GPU acceptance on one GPU: deformable kernel, perf fp32/fp16, paper pilot -> results/gpu-check/ (ARGS=--dry-run on a CPU)
	bash tools/gpu-check.sh $(ARGS)

clean:  ## remove results and caches (keeps .venv)
	rm -rf results runs work_dirs .pytest_cache
