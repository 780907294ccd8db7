# rulab: set-up, the default study and the tests. `make study` and `make test` are the README's two commands.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS ?= datasets,report,dev
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=
LINT_PATHS := src tests benchmarks examples docs/_hooks

.PHONY: setup data study test test-slow lint bench docs clean help

help:
	@echo "make study      set up (venv, dependencies, data) and run the default study end to end"
	@echo "make test       run the test suite (fast tests; 'make test-slow' runs the long ones)"
	@echo "make lint       ruff check and ruff format --check (what CI runs)"
	@echo "make bench      run the benchmark scripts (benchmarks/) in quick mode"
	@echo "make docs       build the documentation site (warnings are errors)"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	@touch $(STAMP)

setup: $(STAMP)

# Fashion-MNIST: the local cache, then Debian's dataset-fashion-mnist package, then the internet.
data: setup
	@$(BIN)/rulab data fetch fashion_mnist 2>/dev/null || sh scripts/system-deps.sh dataset-fashion-mnist
	@$(BIN)/rulab data fetch fashion_mnist

study: setup data
	$(BIN)/rulab study fmnist-default

test: setup
	@sh scripts/system-deps.sh --optional dataset-fashion-mnist chromium >/dev/null 2>&1 || true
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS); status=$$?; \
	  if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing on purpose"; exit 1; fi; exit $$status

lint: setup
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

test-slow: setup
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS); status=$$?; \
	  if [ $$status -eq 5 ]; then echo "pytest collected no slow tests"; exit 1; fi; exit $$status

bench: setup
	@for f in benchmarks/[!_]*.py; do echo "== $$f"; $(BIN)/python $$f --quick || exit 1; done

docs: setup
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) build dist site .pytest_cache
