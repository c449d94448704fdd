# Two commands on a fresh machine: `make run` and `make test`.
# Each bootstraps the virtualenv itself; nothing but Python >= 3.11, make and a C compiler is assumed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test bench lint clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "intake needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/intake dev

test: $(STAMP) lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The layer and purity contracts (pyproject.toml [tool.importlinter]) and ruff's checks.
lint: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check service events projections tests bench

# The bench extra (pyproject.toml): the eventsourcing peer and py-spy, never needed to run or test intake.
BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .state
