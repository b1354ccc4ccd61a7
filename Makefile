# One environment for everything: .venv, created on first use.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is pinned in the same pip command as the rest: without the pin pip resolves
# pytorch-lightning to a multi-GB CUDA build (pyproject.toml keeps a range for GPU users).
TORCH_PIN ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: venv run test lint typecheck unit integration bench docs docs-check clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev,slurm]' "$(TORCH_PIN)"
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m expconf.train +recipe=gpt $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check expconf recipes conf tests bench examples docs/gen_reference.py
	$(BIN)/ruff format --check expconf recipes conf tests bench examples docs/gen_reference.py

typecheck: $(STAMP)
	$(BIN)/mypy

# The site is MkDocs + Material (mkdocs.yml); docs/reference.md is generated from the dataclasses.
docs: $(STAMP)
	$(BIN)/python docs/gen_reference.py build
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Stale reference, a key without help text, or any mkdocs --strict warning (page not in the nav,
# broken link or anchor) fails; the site goes to a temporary folder.
docs-check: $(STAMP)
	$(BIN)/python docs/gen_reference.py check

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q

integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration -q

test: lint typecheck docs-check
	$(BIN)/python -m pytest tests -q -p no:cacheprovider -n 2 --dist loadfile --durations=15

# Writes docs/benchmarks.md and docs/step_times.png (about 4 minutes on 2 quiet cores);
# `make bench ARGS=--quick` is a smoke run, `ARGS="--only rows_startup"` runs one module.
bench: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m bench.run $(ARGS)

clean:
	rm -rf $(VENV) nemo_experiments site .pytest_cache .mypy_cache .ruff_cache
