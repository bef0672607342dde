# Two commands on a fresh machine (only python3 and make needed):
#   make demo   – create .venv, install emdash, run the demo site on embedded SQLite
#   make test   – create .venv, install emdash with test extras, run the whole suite
PY ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test lint bench audit clean

$(BIN)/emdash: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(BIN)/emdash

demo: $(BIN)/emdash
	$(BIN)/emdash demo

test: $(BIN)/emdash
	$(BIN)/python -m pytest -q

lint: $(BIN)/emdash
	$(BIN)/ruff check emdash sandbox stdlib_shims tests examples benchmarks
	$(BIN)/mypy

bench: $(BIN)/emdash
	$(BIN)/python benchmarks/bench_sandbox.py

audit: $(BIN)/emdash
	$(BIN)/emdash audit

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
