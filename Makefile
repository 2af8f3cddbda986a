# Two commands on a fresh machine:
#   make setup   create .venv (Python >= 3.12 when available, so the FEM extra can join) and install everything
#   make test    run the test suite in parallel (make test-slow: the few long studies; CI runs both)
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test test-slow bench lint docs mutation clean

setup:
	./.ci/setup-venv $(VENV)
	./.ci/setup-neural .venv-neural

# the default suite in parallel (pytest-xdist, one worker per core); `make test-slow` runs the
# tests marked slow (long studies; CI runs them too)
test:
	$(PY) -m pytest -q -n auto -m "not slow"
	@if [ -x .venv-neural/bin/python ]; then \
	  echo "neural extra (.venv-neural, torch):"; \
	  .venv-neural/bin/python -m pytest -q tests/test_neural_study.py; \
	else echo "neural study skipped: no .venv-neural (needs Python 3.11 + torch==2.13.0)"; fi

test-slow:
	$(PY) -m pytest -q -n auto -m slow

bench:
	$(PY) benchmarks/run.py

lint:
	$(PY) -m ruff check mfgpde tests benchmarks validation examples docs

# the documentation site (Sphinx, warnings are errors): docs/_build/html/index.html
docs:
	OPENBLAS_NUM_THREADS=1 $(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html

# slow (minutes per module), not in CI: kill rate per core module -> benchmarks/results/mutation.json
mutation:
	$(PY) -m pip install -q 'cosmic-ray>=8.3'
	PY=$(PY) ./.ci/mutation $(MODULES)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info docs/_build docs/generated docs/gallery
