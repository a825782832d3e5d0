# The two front-door commands: `make run` and `make test`. Everything they need is installed here.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
export PORT

.PHONY: run test install install-test bench-install lint typecheck unit-tests clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

# The tests run every benchmark at a tiny size too (tests/bench), so they take its extra.
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

# The benchmarks' yardsticks (pandas) and py-spy; `make test` installs them too.
bench-install: install-test

run: install
	$(BIN)/gateway db upgrade
	$(BIN)/gateway demo seed --with-payments
	@echo "Serving on http://127.0.0.1:$(PORT) (Ctrl-C stops it)"
	$(BIN)/gateway serve --port $(PORT)

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/bandit -q -c pyproject.toml -r config payments providers ledger statements wsgi.py gunicorn.conf.py

typecheck: install-test
	$(BIN)/mypy config payments providers ledger statements tests bench wsgi.py

test: lint typecheck
	$(BIN)/pytest

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
