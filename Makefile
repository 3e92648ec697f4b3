# Every target creates the virtual environment on first use; nothing else needs installing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
EXTRAS := nn,test,docs,bench,examples
# Second leg: the newest Python the dependencies support (ArviZ 1.x, the newest JAX there).
PYTHON_NEWEST ?= $(shell .ci/newest-python)
VENV_NEWEST := .venv-newest
STAMP_NEWEST := $(VENV_NEWEST)/.installed-stamp
# The ArviZ bridge, every docs snippet, the handlers and transforms, and the doctests.
NEWEST_TESTS := tests/test_arviz.py tests/test_docs.py tests/test_handlers.py \
	tests/transforms/test_bijector.py numpyro_ext

.PHONY: install test test-newest lint format docs demo demo-quick bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

$(STAMP_NEWEST): pyproject.toml
	@test -n "$(PYTHON_NEWEST)" || { echo "test-newest: no Python 3.13 or 3.12 found"; exit 1; }
	$(PYTHON_NEWEST) -m venv $(VENV_NEWEST)
	$(VENV_NEWEST)/bin/python -m pip install --quiet --upgrade pip
	$(VENV_NEWEST)/bin/python -m pip install --quiet -e ".[test,nn]"
	touch $(STAMP_NEWEST)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# Single-threaded XLA:CPU Eigen: its thread pool can deadlock on vmapped programs (see tests/conftest.py).
# NUMPYRO_EXT_SITE: the math check in tests/test_docs_site.py reads the site just built.
# --dist loadgroup: tests marked with one xdist_group (pytest-xdist's marker) run on one worker,
# so a session fixture they share is computed once.
test: lint docs
	XLA_FLAGS=--xla_cpu_multi_thread_eigen=false HYPOTHESIS_PROFILE=ci MPLBACKEND=Agg \
		NUMPYRO_EXT_SITE=site $(PY) -m pytest -n 2 --dist loadgroup --durations=40

test-newest: $(STAMP_NEWEST)
	$(VENV_NEWEST)/bin/python --version
	XLA_FLAGS=--xla_cpu_multi_thread_eigen=false HYPOTHESIS_PROFILE=ci MPLBACKEND=Agg \
		$(VENV_NEWEST)/bin/python -m pytest -n 2 --durations=10 -m "not slow" $(NEWEST_TESTS)

demo: $(STAMP)
	XLA_FLAGS=--xla_cpu_multi_thread_eigen=false MPLBACKEND=Agg $(PY) -m numpyro_ext.demo --out demo-output

demo-quick: $(STAMP)
	XLA_FLAGS=--xla_cpu_multi_thread_eigen=false MPLBACKEND=Agg $(PY) -m numpyro_ext.demo --quick --out demo-output

bench: $(STAMP)
	@echo "# Benchmark results" > benchmarks/results.md
	@for f in benchmarks/*.py; do \
		case $$f in */harness.py) continue;; esac; \
		echo "running $$f"; \
		MPLBACKEND=Agg $(PY) $$f >> benchmarks/results.md || exit 1; \
	done
	@echo "wrote benchmarks/results.md"

clean:
	rm -rf $(VENV) $(VENV_NEWEST) site demo-output .pytest_cache .hypothesis
