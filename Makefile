# itemrec: two commands on a fresh machine with Python 3.11:
#   make demo   set up .venv, install, run the embedded demo
#   make test   set up .venv with test extras, strip and sync the notebooks, run the whole test suite
#   make strip  notebooks: sync each .ipynb with its .py (jupytext), strip outputs (nbstripout)
#   make notebook NB=02 [FULL=1]   run a notebook with papermill (outputs in /tmp/itemrec_notebooks)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
export PYTHONHASHSEED ?= 0
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup setup-dev demo test test-fast bench clean strip notebook

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PIP) install -q -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

demo: setup
	$(VENV)/bin/itemrec demo

# the notebooks as stored: paired with their percent-format .py (the newer side wins), no outputs
NOTEBOOK_PY := $(wildcard notebooks/[0-9][0-9]_*.py)
strip: setup-dev
	$(PY) -m jupytext --sync --quiet $(NOTEBOOK_PY)
	$(PY) -m nbstripout $(NOTEBOOK_PY:.py=.ipynb)

notebook: setup-dev strip
	$(PY) notebooks/run_notebook.py $(NB) $(if $(FULL),--full)

test: setup-dev strip
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: setup-dev strip
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

bench: setup-dev
	for f in bench/bench_*.py; do $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
