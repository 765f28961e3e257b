# MedSight: every target installs what it needs first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
SHARED_DATA ?= $(abspath ../shared/data)
export MEDSIGHT_SHARED_DATA ?= $(SHARED_DATA)
# sleeping (not spinning) OpenMP threads: torch stays fast when several processes share 2 cores
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install peers demo test e2e bench lint clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[service,test]"
	touch $@

install: $(VENV)/.installed ## venv in ./.venv with torch 2.13.0 (CPU) and MedSight with its extras

peers: ## Debian peers for DICOM tests: Orthanc (+DICOMweb), dcmtk, PostgreSQL, Chromium; the OHIF viewer (npm)
	scripts/install_peers.sh
	scripts/install_viewer.sh

demo: install ## the main job: train, evaluate, report, predict with the shipped model
	$(PY) scripts/demo.py

test: install peers ## the test suite (synthetic + real data in ../shared/data)
	scripts/test.sh

e2e: install peers ## end-to-end with real peers (Orthanc, dcmtk, PostgreSQL, Chromium)
	scripts/e2e.sh

bench: install ## benchmarks (not part of the tests); results go to docs/benchmarks.md
	$(PIP) install -q -e ".[bench]"
	KERAS_BACKEND=torch $(PY) benchmarks/run_all.py

lint: install
	$(PIP) install -q -e ".[dev]"
	$(VENV)/bin/ruff check src tests benchmarks scripts

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
