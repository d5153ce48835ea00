# Two commands for a fresh clone (only Python >= 3.11 needed):
#   make demo   the sandbox, the whole OAuth flow, a crawl and a summary
#   make test   the test suite
# Each creates .venv on first use and reinstalls when pyproject.toml changes.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench docs docs-serve dist clean

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python >= 3.11 is needed, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

demo: $(BIN)/.installed
	$(BIN)/wiser-async demo

test: $(BIN)/.installed
	$(BIN)/python -m pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict

bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks

# The documentation site, built into site/ (warnings are errors).
docs: $(BIN)/.installed
	$(BIN)/mkdocs build --strict
	$(BIN)/python .ci/check_docs.py site

# The site served with live reload at http://127.0.0.1:8000.
docs-serve: $(BIN)/.installed
	$(BIN)/mkdocs serve

# The wheel and sdist, built into dist/ and their contents checked.
dist: $(BIN)/.installed
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist .
	$(BIN)/python .ci/check_dist.py dist

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache site dist
