# Set-up is part of every target: a fresh machine needs only `make demo` or `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: install test test-all demo lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The default suite: fast, CPU only; tests needing real data skip unless HGNAS_DATA is set.
test: $(STAMP)
	$(PY) -m pytest -q

# Everything, including tests marked slow.
test-all: $(STAMP)
	$(PY) -m pytest -q -m ''

demo: $(STAMP)
	$(PY) jobs/search.py --config jobs/configs/smoke.yaml

lint: $(STAMP)
	$(VENV)/bin/ruff check hgnas_ray jobs tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
