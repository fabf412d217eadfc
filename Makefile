# geoseg: the commands the README documents.
PYTHON ?= python3
VENV   ?= .venv
DEMO_VENV ?= .venv-demo
LOCK   := requirements/lock.txt
PIP_FLAGS ?= --disable-pip-version-check -q

.PHONY: help venv test test-fast demo bench lint clean default-model

help:
	@echo "make test   - create $(VENV) (runtime + train + dev extras, locked) and run the tests"
	@echo "make demo   - runtime-only environment, classify the synthetic demo scene"
	@echo "make bench  - run the benchmarks, write docs/benchmarks.md"
	@echo "make lint   - ruff"

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install $(PIP_FLAGS) --upgrade pip
	$(VENV)/bin/python -m pip install $(PIP_FLAGS) -c $(LOCK) -e '.[train,dev]'
	touch $@

venv: $(VENV)/.installed

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest

test-fast: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -m "not slow and not train"

$(DEMO_VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install $(PIP_FLAGS) --upgrade pip
	$(DEMO_VENV)/bin/python -m pip install $(PIP_FLAGS) -c $(LOCK) -e .
	touch $@

demo: $(DEMO_VENV)/.installed
	$(DEMO_VENV)/bin/python -m geoseg.demo demo-output

bench: $(VENV)/.installed
	$(VENV)/bin/python bench/run_all.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check geoseg training export tests bench

clean:
	rm -rf $(VENV) $(DEMO_VENV) demo-output .pytest_cache

# Rebuild the shipped default model from ../shared (about 30 min on 2 cores).
default-model: $(VENV)/.installed
	grep -v '^#' docs/default_model_commands.txt | sed 's/^geoseg /$(VENV)\/bin\/geoseg /; s/^python /$(VENV)\/bin\/python /' | bash -ex
