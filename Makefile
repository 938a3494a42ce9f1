# Two entry points, each self-contained on a fresh machine: `make demo` and `make test`.
# Both create the virtual environment in .venv when it is missing or pyproject.toml changed.

PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	$$p -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null && { echo $$p; break; }; done)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "sgalert needs Python 3.11 or newer on PATH" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

# A throwaway school on this machine: invented notices, a real SMTP server and a Teams stand-in
# on 127.0.0.1, escalation in seconds, then the desk as the DSL. Without a terminal (CI) it runs
# for 20 s and prints a summary instead; e.g. `make demo DEMO_ARGS="--no-tui --for 60"`.
DEMO_ARGS ?=

demo: $(STAMP)
	$(BIN)/sgalert demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The suite runs on up to four cores, a test file per worker (a file's servers and fixtures stay
# together); `make unit JOBS=0` runs it in this one process, e.g. to use a debugger.
JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ "$$n" -gt 4 ] && n=4; echo $$n)

unit: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) --dist loadfile --durations=15

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python bench/store.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
