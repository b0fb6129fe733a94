# The two commands a newcomer needs: `make serve` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: install definitions serve load test bench clean browser

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

# Browser tests drive Debian's chromium with Playwright; without root they are skipped.
browser:
	@command -v chromium >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || \
	  echo "chromium is not installed and cannot be installed here: browser tests will be skipped"

## Install the test dependencies and run the whole suite
test: definitions browser
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

## Benchmarks (not part of the tests); see bench/README.md
bench: definitions
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) data .pytest_cache
