# EventPro: `make run` starts everything on the embedded broker, `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint format bench deps clean

$(STAMP): pyproject.toml scripts/install-system-deps.sh
	bash scripts/install-system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

deps: $(STAMP)

run: $(STAMP)
	$(BIN)/eventpro dev

test: $(STAMP)
	$(BIN)/ruff check eventpro tests bench
	$(BIN)/python -m pytest tests

lint: $(STAMP)
	$(BIN)/ruff check eventpro tests bench
	$(BIN)/ruff format --check eventpro tests bench

format: $(STAMP)
	$(BIN)/ruff format eventpro tests bench
	$(BIN)/ruff check --fix eventpro tests bench

bench: $(STAMP)
	$(BIN)/python -m bench.broker

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
