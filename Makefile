# The two commands a newcomer needs: `make serve` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: install definitions serve load test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

definitions: install
	$(BIN)/fhir-service definitions fetch

load: definitions
	$(BIN)/fhir-service load examples/

## Set everything up, load the examples into ./data/fhir.db and serve http://127.0.0.1:8080/fhir
serve: load
	$(BIN)/fhir-service serve

## Install the test dependencies and run the whole suite
test: definitions
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

## Benchmarks (not part of the tests); see bench/README.md
bench: definitions
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) data .pytest_cache
