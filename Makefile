# facetwin — set-up, demo and tests. Everything installs into .venv/ from the project's own files.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast bench clean-venv

$(STAMP): requirements/runtime.txt requirements/build.txt requirements/dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements/runtime.txt -r requirements/build.txt -r requirements/dev.txt
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

## The main job on the embedded default: reconstructs the bundled photo, writes outputs/demo/.
demo: $(STAMP)
	$(VENV)/bin/facetwin demo --out outputs/demo

## The whole test suite (real data tests skip with a message when ../shared/data is absent).
test: $(STAMP)
	$(PY) -m pytest -q -rs

test-fast: $(STAMP)
	$(PY) -m pytest -q -rs -m "not slow"

bench: $(STAMP)
	$(VENV)/bin/facetwin bench --json

clean-venv:
	rm -rf $(VENV)
