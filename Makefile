# Two commands set up a fresh machine: `make demo` and `make test`.
# Both create/refresh .venv from the pinned requirement files themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv lint test test-fast demo demo-docs docs default-model clean

# Re-run the install whenever a requirement file or the package definition changes.
$(STAMP): requirements/runtime.txt requirements/test.txt requirements/no-deps.txt setup.py setup.cfg
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -r requirements/test.txt
	$(PY) -m pip install --quiet --no-deps -r requirements/no-deps.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

# ruff (settings in ruff.toml: line length 99 as ament's flake8): lint errors and unformatted files
# both fail.
lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# Lint (ruff, line length 99 as ament_flake8), then the whole suite (unit + ros tests; gpu
# tests skip without CUDA).
# pytest exits 5 when it collected nothing: that is a failure here, never a green run.
test: venv lint
	@ROS_LOCALHOST_ONLY=1 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST $(PY) -m pytest -q $(PYTEST_ARGS); \
	rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing on purpose" >&2; exit 1; fi; exit $$rc

# Only the fast pure-python core.
test-fast: venv
	$(PY) -m pytest -q -m "not slow and not ros and not gpu" $(PYTEST_ARGS)

demo: venv
	$(PY) -m ros2_fed.demo

# The demo, then its figures (timings, latency, recall, the machine) and pictures into docs/
# (docs/demo.md, docs/demo_results.json, docs/demo_*.png): the numbers the docs show.
demo-docs: venv
	$(PY) -m ros2_fed.demo --docs docs

# The documentation site (MkDocs + Material, mkdocs.yml) into site/; --strict: a broken link or
# a page missing from the navigation fails.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

# Reproduce the shipped default model (synthroad -> TinySeg -> FED-U/FED-C -> eval) into models/.
default-model: venv
	$(PY) -m training.default_model --work runs/default_model --models models

clean:
	rm -rf $(VENV) build *.egg-info
