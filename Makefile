# Token Desk. Quick start: `make run` (the product on its embedded defaults), `make test` (the suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

PIP_TOOLS := pip-tools==7.4.1

.PHONY: run test lint migrate bench clean-data lock

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

# A virtualenv with every dependency from the hashed lock (requirements.lock, generated from the direct
# pins in requirements.txt by `make lock`): pip refuses any file whose hash is not in the lock.
# Debian without python3-venv: fall back to virtualenv.
$(VENV)/.installed: requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || \
	  ( rm -rf $(VENV) && $(PYTHON) -m pip install --user --break-system-packages virtualenv && \
	    $(PYTHON) -m virtualenv $(VENV) )
	$(BIN)/python -m pip install --disable-pip-version-check -q --require-hashes -r requirements.lock
	touch $@

# After changing requirements.txt: pin and hash every transitive dependency again (README, "Dependencies").
# LOCK_ARGS="--upgrade-package NAME" moves one transitive dependency to its newest release.
lock: $(VENV)/.installed
	$(BIN)/python -m pip install --disable-pip-version-check -q $(PIP_TOOLS)
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe \
	  --no-strip-extras --no-emit-index-url --no-emit-find-links --no-emit-trusted-host $(LOCK_ARGS) \
	  --output-file requirements.lock requirements.txt

clean-data:
	rm -rf data/tokendesk.db data/tokendesk.db-wal data/tokendesk.db-shm data/emulator-state.json
