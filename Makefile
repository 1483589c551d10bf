# Everything bootstraps from a bare python3: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  := torch==2.13.0

.PHONY: demo test lint bench venv clean

$(VENV)/.torch:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH)
	touch $@

$(VENV)/.demo: $(VENV)/.torch pyproject.toml
	$(PIP) install --quiet -e ".[demo]"
	touch $@

$(VENV)/.test: $(VENV)/.torch pyproject.toml
	$(PIP) install --quiet -e ".[test,demo,reference]"
	$(PIP) install --quiet --no-deps spender==0.3
	touch $@

venv: $(VENV)/.test

demo: $(VENV)/.demo
	$(VENV)/bin/speculum demo --out demo-output

lint: $(VENV)/.test
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts

test: lint
	$(PY) -m pytest -m "not slow and not gpu"

bench: $(VENV)/.test
	$(PY) benchmarks/autoencoder.py --quick
	$(PY) benchmarks/simulate.py --quick

clean:
	rm -rf $(VENV) demo-output .pytest_cache .ruff_cache
