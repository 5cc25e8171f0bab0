# Two commands on a fresh machine: `make demo` and `make test` (each sets itself up).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-fast demo bench evaluate lint terms clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -m "" tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not realdata" tests

demo: $(STAMP)
	$(PY) -m sat.demo

bench: $(STAMP)
	for f in benchmarks/*.py; do $(PY) $$f || exit 1; done

evaluate: $(STAMP)
	$(PY) evaluate/run_comparison.py

lint: $(STAMP)
	$(VENV)/bin/ruff check sat tests benchmarks

terms: $(STAMP)
	$(VENV)/bin/sat terms build

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
