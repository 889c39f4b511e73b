# The two commands of the README: `make run` and `make test`. Both set everything up first.
VENV ?= .venv
STAMP := $(VENV)/.registre-installed
SHELL := /bin/bash

.PHONY: setup run test bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh scripts/apt-packages.txt $(wildcard scripts/build_kenlm.sh)
	bash scripts/setup.sh $(VENV)
	touch $(STAMP)

## Digitize the bundled sample pages into out/ (Prefect's embedded server, shipped model and LM).
run: setup
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(VENV)/bin/registre digitize examples/pages --out out/

## Run the whole test suite.
test: setup
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(VENV)/bin/python -m pytest -q

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf out .pytest_cache
