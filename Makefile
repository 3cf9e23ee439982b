# The two commands of the README:
#   make demo   -- set up a virtual environment and run the demo on the embedded default (SQLite, demo data)
#   make test   -- set up the same environment with test tools and run the whole test suite
# Both work on a fresh machine with Python >= 3.11; PostgreSQL / MariaDB tests skip with a reason if absent.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PACKAGES = -e . -e adapters/local -e adapters/hubspot -e adapters/salesforce -e plugins/segments
TEST_PACKAGES = -e ".[test]" -e adapters/local -e adapters/hubspot -e adapters/salesforce \
                -e "plugins/segments[test]" -e examples/hello-plugin
DEMO_DIR ?= cxbridge-demo

.PHONY: demo test setup setup-test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

setup: $(BIN)/python
	$(BIN)/pip install --quiet $(PACKAGES)

setup-test: $(BIN)/python
	$(BIN)/pip install --quiet $(TEST_PACKAGES)

demo: setup
	$(BIN)/cxbridge demo $(DEMO_DIR)

test: setup-test
	$(BIN)/python -m pytest -q

lint: setup-test
	$(BIN)/ruff check cxbridge adapters plugins examples tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
