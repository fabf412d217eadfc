# geoseg: the commands the README documents.
PYTHON ?= python3
VENV   ?= .venv
DEMO_VENV ?= .venv-demo
LOCK   := requirements/lock.txt
PIP_FLAGS ?= --disable-pip-version-check -q

.PHONY: help venv test test-fast test-deps demo serve bench lint clean default-model backbone model-suite qgis-plugin multispectral-model rgb-reflectance-model

help:
	@echo "make test   - create $(VENV) (runtime + train + serve + dev extras, locked), install the"
	@echo "              system packages some tests use (QGIS, chromium; skipped where apt is not usable)"
	@echo "              and run the tests"
	@echo "make serve  - the web map (geoseg serve) on the demo scene, http://127.0.0.1:8000"
	@echo "make demo   - runtime-only environment, classify the synthetic demo scene"
	@echo "make bench  - run the benchmarks, write docs/benchmarks.md"
	@echo "make lint   - ruff and mypy (CI: .ci/run runs it, then make test)"
	@echo "make qgis-plugin - dist/geoseg-qgis.zip: the QGIS Processing plugin (Install from ZIP)"

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install $(PIP_FLAGS) --upgrade pip
	$(VENV)/bin/python -m pip install $(PIP_FLAGS) -c $(LOCK) -e '.[train,serve,dev]'
	touch $@

venv: $(VENV)/.installed

# Debian packages for the QGIS test (PyQGIS) and the browser test (chromium);
# each script exits 0 with a message where it cannot install, and its test
# then skips with that reason
test-deps:
	sh scripts/install-qgis.sh
	bash scripts/install-browser.sh

test: $(VENV)/.installed test-deps
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

serve: $(VENV)/.installed
	@test -f demo-output/demo_scene.tif || $(VENV)/bin/python -c "import os; os.makedirs('demo-output', exist_ok=True); from geoseg.demo import make_scene; make_scene('demo-output/demo_scene.tif')"
	$(VENV)/bin/geoseg serve demo-output/demo_scene.tif

bench: $(VENV)/.installed
	$(VENV)/bin/python bench/run_all.py

# the QGIS plugin zip (standard library only: any python3)
qgis-plugin:
	$(PYTHON) scripts/build-qgis-plugin.py -o dist/geoseg-qgis.zip

# ruff and mypy (mypy's files and options: pyproject.toml [tool.mypy]); CI runs it before the tests
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check geoseg training export tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) $(DEMO_VENV) demo-output .pytest_cache

# Rebuild the shipped default model and its card from ../shared and the committed
# EuroSAT backbone (about 15 min on 2 cores; deterministic: the same files on the same machine).
default-model: $(VENV)/.installed
	grep -v '^#' docs/default_model_commands.txt | sed 's/^geoseg /$(VENV)\/bin\/geoseg /; s/^python /$(VENV)\/bin\/python /' | bash -ex

# The scene suite (issue 23): every shipped model on the scenes of ../shared with a reference and the
# 4-class test split, through geoseg classify / evaluate-scene; writes bench/out/suite/suite.md and .json
# (about 1 min a model).  Re-recording the figures the guard test holds each model to (with a new model,
# in the same commit): make model-suite SUITE_FLAGS="--write-suite-json --card geoseg/models/MODEL_CARD.md"
SUITE_FLAGS ?=
model-suite: $(VENV)/.installed
	$(VENV)/bin/python bench/model_suite.py $(SUITE_FLAGS)

# Rebuild the shipped multispectral (blue, green, red, NIR reflectance) model from ../shared
# (training chips, two seeds, export, suite; about 15 min on 2 cores): docs/multispectral.md
multispectral-model: $(VENV)/.installed
	grep -v '^#' docs/multispectral_model_commands.txt | sed 's/^geoseg /$(VENV)\/bin\/geoseg /; s/^python /$(VENV)\/bin\/python /' | bash -ex

# Rebuild the built-in rgb-reflectance model (RGB read as reflectance) from ../shared
# (4-class split, multispectral chips, RGB chips, two seeds, export, suite; about 40 min on 2 cores)
rgb-reflectance-model: $(VENV)/.installed
	grep -v '^#' docs/rgb_reflectance_model_commands.txt | sed 's/^geoseg /$(VENV)\/bin\/geoseg /; s/^python /$(VENV)\/bin\/python /' | bash -ex

# Re-run the EuroSAT pre-training of the committed backbone (about 30 min on 2 cores).
backbone: $(VENV)/.installed
	grep -v '^#' docs/backbone_commands.txt | sed 's/^geoseg /$(VENV)\/bin\/geoseg /' | bash -ex
