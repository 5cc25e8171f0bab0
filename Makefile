# Two commands on a fresh machine: `make demo` and `make test` (each sets itself up).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-fast demo bench evaluate lint terms extra-data clean

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
	$(PY) examples/demo.py

bench: $(STAMP)
	for f in benchmarks/*.py; do $(PY) $$f || exit 1; done

evaluate: $(STAMP)
	$(PY) evaluate/run_comparison.py

lint: $(STAMP)
	$(VENV)/bin/ruff check sat tests benchmarks evaluate examples

terms: $(STAMP)
	$(VENV)/bin/sat terms build

# Training data beyond ../shared, from the package registry (datasets/totalseg_aorta_report.yaml):
# the aorta-report test case of the TotalSegmentator 2.18.0 source distribution (Apache-2.0).
TS := totalsegmentator-2.18.0
TS_SHA256 := 5d4223ef93973bc36d710869d11e7742ead2c154c72f7f9edcaaadd5b6c4bd03
extra-data: data/totalseg_aorta_report/.complete

data/totalseg_aorta_report/.complete: $(STAMP)
	rm -rf data/.download data/totalseg_aorta_report && mkdir -p data/.download
	$(PY) -m pip download -q --no-deps --no-binary :all: $(subst -,==,$(TS)) -d data/.download
	echo "$(TS_SHA256)  data/.download/$(TS).tar.gz" | sha256sum -c -
	tar -xzf data/.download/$(TS).tar.gz -C data/.download $(TS)/tests/reference_files/aorta_report
	mv data/.download/$(TS)/tests/reference_files/aorta_report data/totalseg_aorta_report
	rm -rf data/.download
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
