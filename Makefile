# Token Desk. Quick start: `make run` (the product on its embedded defaults), `make test` (the suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint migrate bench clean-data

run: $(VENV)/.installed
	$(BIN)/python scripts/run_local.py

test: $(VENV)/.installed
	$(BIN)/python -m pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

migrate: $(VENV)/.installed
	$(BIN)/python -m core.cli migrate

bench: $(VENV)/.installed
	$(BIN)/python -m bench

# A virtualenv with the pinned requirements. Debian without python3-venv: fall back to virtualenv.
$(VENV)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || \
	  ( rm -rf $(VENV) && $(PYTHON) -m pip install --user --break-system-packages virtualenv && \
	    $(PYTHON) -m virtualenv $(VENV) )
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

clean-data:
	rm -rf data/tokendesk.db data/tokendesk.db-wal data/tokendesk.db-shm data/emulator-state.json
