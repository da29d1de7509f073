# Two commands on a fresh machine: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: demo test lint bench services venv clean types

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev,embedded]'
	@touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/orchestrator demo

lint: venv
	$(BIN)/ruff check orchestrator tests bench scripts
	$(BIN)/ruff format --check orchestrator tests bench scripts
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/python scripts/check_sql.py supabase/migrations
	$(BIN)/sqlfluff lint --processes 1 supabase/migrations supabase/tests orchestrator/adapters/postgres
	$(BIN)/python scripts/lint_sql_strings.py
	BIN=$(BIN) bash scripts/check_deploy.sh

services:
	@bash scripts/services.sh

# The suite mostly waits on real timers and sockets, so it runs in TEST_WORKERS processes
# (pytest-xdist; tests sharing files are grouped); tests marked `serial` measure time or CPU
# and run alone afterwards.
TEST_WORKERS ?= 3
test: venv lint services
	$(BIN)/python -m pytest -q -ra -n $(TEST_WORKERS) --dist loadgroup -m "not serial" tests
	$(BIN)/python -m pytest -q -ra -m serial tests

bench: venv
	$(BIN)/orchestrator bench

# Regenerate clients/typescript/src/database.types.ts from the migrations (postgres-meta).
types: venv
	cd clients/typescript && npm ci --ignore-scripts --no-audit --no-fund
	$(BIN)/python scripts/gen_client_types.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
