# Every target creates the virtual environment on first use; nothing else needs installing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
EXTRAS := nn,test,docs,bench,examples

.PHONY: install test lint format docs demo demo-quick bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

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
test: lint docs
	XLA_FLAGS=--xla_cpu_multi_thread_eigen=false HYPOTHESIS_PROFILE=ci MPLBACKEND=Agg \
		$(PY) -m pytest -n 2 --durations=15

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
	rm -rf $(VENV) site demo-output .pytest_cache .hypothesis
