# facetwin — set-up, demo and tests. Everything installs into .venv/ from the project's own files.
#
#   make demo                 runtime requirements only, then the demo (outputs/demo/index.html)
#   make test                 runtime + report + dev + build requirements, `make tools`, the test suite
#   make tools                Blender, Chromium (Debian packages) and the Node tools (glTF validator, three.js)
#   TORCH_INDEX=URL           install torch from that wheel index first, e.g. PyTorch's CPU-only wheels:
#                             make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH_INDEX ?=
TORCH_PIN := $(shell grep -E '^torch==' requirements/runtime.txt)
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: setup setup-dev demo test test-fast tools bench wheel clean-venv

$(RUNTIME_STAMP): requirements/runtime.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
ifneq ($(strip $(TORCH_INDEX)),)
	# torch alone from $(TORCH_INDEX) (e.g. the CPU-only build), everything else from the usual index
	$(PIP) install --quiet --no-deps "$(TORCH_PIN)" --index-url $(TORCH_INDEX)
endif
	$(PIP) install --quiet -r requirements/runtime.txt
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	touch $(RUNTIME_STAMP)

$(DEV_STAMP): $(RUNTIME_STAMP) requirements/report.txt requirements/dev.txt requirements/build.txt
	$(PIP) install --quiet -r requirements/runtime.txt -r requirements/report.txt -r requirements/dev.txt -r requirements/build.txt
	touch $(DEV_STAMP)

setup: $(RUNTIME_STAMP)

setup-dev: $(DEV_STAMP)

## The main job on the embedded photo: reconstruction, exports and the offline page outputs/demo/index.html.
demo: $(RUNTIME_STAMP)
	$(VENV)/bin/facetwin demo --out outputs/demo

## External tools of the export/viewer tests (skipped where absent); idempotent, quick when present.
tools:
	bash scripts/install_tools.sh

## The whole test suite (real data tests skip with a message when ../shared/data is absent).
test: $(DEV_STAMP) tools
	$(PY) -m pytest -q -rs

test-fast: $(DEV_STAMP)
	$(PY) -m pytest -q -rs -m "not slow"

bench: $(DEV_STAMP)
	$(VENV)/bin/facetwin bench --json

## A wheel of the package in dist/.
wheel: $(RUNTIME_STAMP)
	$(PIP) wheel --quiet --no-deps --no-build-isolation -w dist .

clean-venv:
	rm -rf $(VENV)
