# Two commands on a fresh machine (only python3 and make needed):
#   make demo   – create .venv, install emdash, run the demo site on embedded SQLite
#   make test   – create .venv, install emdash with test extras, lint (ruff, ruff format,
#                 mypy strict), then run the whole suite on it and, at the same time, on
#                 every other CPython version pyproject claims (3.12, 3.13: .ci/other-pythons)
PY ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test lint bench soak audit docs clean

$(BIN)/emdash: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(BIN)/emdash

demo: $(BIN)/emdash
	$(BIN)/emdash demo

# Everything ruff looks at; mypy's list is [tool.mypy] files in pyproject.toml.
LINTED = emdash sandbox stdlib_shims tests examples benchmarks

# The one test command (README, .ci/run): lint first, so a style or type error fails as surely
# as a broken test. pytest's own status (5 when nothing was collected) fails make too.
# Then the suite on every interpreter at the same time: this one's on two pytest-xdist
# workers (whole files to a worker, so module-scoped fork servers are not started twice),
# 3.12's and 3.13's beside it (.ci/other-pythons --beside, which runs this one's too, in
# the foreground; the other versions' logs follow it). Every suite spends part of its time
# waiting (process start-up, deliberate timeouts, PostgreSQL, Chromium), which the others'
# CPU work fills. Any failure fails make. The other versions' venvs are made while lint runs
# (installs mostly wait on the network and the disk; not beside this one's install: each
# editable install writes the same egg-info in the tree).
test: $(BIN)/emdash
	@.ci/other-pythons install & installing=$$!; \
	$(MAKE) --no-print-directory lint; status=$$?; \
	wait $$installing; \
	exit $$status
	@echo "make test: the whole suite on $$($(BIN)/python --version) (2 workers)"
	.ci/other-pythons --beside $(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: $(BIN)/emdash
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy

bench: $(BIN)/emdash
	$(BIN)/python benchmarks/bench_sandbox.py

# Crash soak: many SIGKILLs of a child host, invariants after each, then RSS over a long
# run (docs/crash-consistency.md). SOAK_ARGS="--kills 500" for a longer one.
soak: $(BIN)/emdash
	$(BIN)/python benchmarks/soak.py $(SOAK_ARGS)

audit: $(BIN)/emdash
	$(BIN)/emdash audit

# Rewrite the generated regions of the reference docs (docs/*.md) from the code's tables;
# tests/docgen/test_docgen.py fails while they differ.
docs: $(BIN)/emdash
	$(BIN)/python -m emdash._docgen

clean:
	rm -rf $(VENV) .venv-3.* .pytest_cache .mypy_cache .ruff_cache
