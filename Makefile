# Every target installs what it needs into .venv first (torch pinned to the CPU wheel).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TF_VERSION ?= 2.21.0
# CI runs the slow tests too (they fit its time budget); on a laptop `make test` skips them.
PYTEST_MARK := $(if $(filter true,$(CI)),,-m "not slow")

.PHONY: install demo test test-all lint format bench bench-peers clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py --out demo_output

test: $(STAMP)
	$(PY) -m ruff check deepplantphenomics tests examples bench
	$(PY) -m ruff format --check deepplantphenomics tests examples bench
	$(PY) -m pytest $(PYTEST_MARK)

test-all: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check deepplantphenomics tests examples bench
	$(PY) -m ruff format --check deepplantphenomics tests examples bench

format: $(STAMP)
	$(PY) -m ruff format deepplantphenomics tests examples bench
	$(PY) -m ruff check --fix deepplantphenomics tests examples bench

bench: $(STAMP)
	$(PY) bench/run_all.py

# Keras 3 / TensorFlow beside the library, for docs/benchmarks.md (TensorFlow lives in its own venv only).
PEERS_VENV := .venv-peers
$(PEERS_VENV)/.installed:
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install --quiet --disable-pip-version-check "tensorflow-cpu==$(TF_VERSION)" pillow
	touch $@

bench-peers: $(STAMP) $(PEERS_VENV)/.installed
	$(PY) bench/peers_keras.py --keras-python $(PEERS_VENV)/bin/python

clean:
	rm -rf demo_output .pytest_cache build *.egg-info
