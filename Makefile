# Two commands on a fresh machine:
#   make setup   create .venv (Python >= 3.12 when available, so the FEM extra can join) and install everything
#   make test    run the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test bench lint clean

setup:
	./.ci/setup-venv $(VENV)

test:
	$(PY) -m pytest -q

bench:
	$(PY) benchmarks/run.py

lint:
	$(PY) -m ruff check mfgpde tests

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
