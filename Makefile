# Everything a fresh machine needs, from Python 3 and the package registries alone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: venv browser lint format test test-fast demo serve bench chaos fuzz clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(STAMP)

# The browser tests drive Debian's Chromium (Playwright's own browser download cannot work here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "nbupload: the browser tests need Debian's chromium: sudo apt-get install chromium" >&2; exit 1; \
	  fi; }

# Lint, formatting and types (configuration in pyproject.toml); part of `make test`.
LINT_PATHS := nbupload tests benchmarks
lint: venv
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy

# Rewrite the code the way `make lint` wants it: formatting, then the safe autofixes.
format: venv
	$(VENV)/bin/ruff format $(LINT_PATHS)
	$(VENV)/bin/ruff check --fix $(LINT_PATHS)

test: venv browser lint
	$(PY) -m pytest

test-fast: venv
	$(PY) -m pytest -m "not browser and not slow"

demo: venv
	$(PY) -m nbupload demo

serve: venv
	$(PY) -m nbupload serve

# Side-by-side figures against curl and Python peers (docs/benchmarks.md); BENCH_ARGS=--quick etc.
bench: venv
	$(PY) -m benchmarks $(BENCH_ARGS)

# The long randomized fault campaigns, one then two server processes (docs/reliability.md); NBUPLOAD_CHAOS_RUNS, NBUPLOAD_CHAOS_SEED.
chaos: venv
	$(PY) -m pytest tests/chaos -m chaos -s

# The long randomized property search (Hypothesis profile "fuzz", tests/support/fuzzing.py): every
# property test with 50x the examples of `make test`, from a random seed it prints; SEED=N replays one.
SEED ?= $(shell od -An -N4 -tu4 /dev/urandom | tr -d ' ')
fuzz: venv
	@echo "make fuzz: SEED=$(SEED) (make fuzz SEED=$(SEED) replays this run)"
	$(PY) -m pytest tests -m hypothesis -p no:cacheprovider --hypothesis-profile=fuzz --hypothesis-seed=$(SEED) $(FUZZ_ARGS)

clean:
	rm -rf $(VENV) build dist .pytest_cache .hypothesis .mypy_cache .ruff_cache test-artifacts
