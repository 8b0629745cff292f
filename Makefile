# frontdesk: `make run` starts the agent on its embedded defaults; `make test` installs what is
# missing and runs the whole suite.  See README.md.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
ARGS   ?=

.PHONY: run test unit integration demo bench docs clean deps-run deps-test deps-bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when the project metadata changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

$(VENV)/.bench-installed: pyproject.toml | $(VENV)/.installed
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test,bench]'
	touch $@

deps-run:
	@scripts/install-deps.sh run
deps-test:
	@scripts/install-deps.sh test
deps-bench:
	@scripts/install-deps.sh bench

run: deps-run $(VENV)/.installed
	$(BIN)/frontdesk run $(ARGS)

test: deps-test $(VENV)/.installed
	$(BIN)/python -m pytest -q $(ARGS)

unit: $(VENV)/.installed
	$(BIN)/python -m pytest -q tests/unit $(ARGS)

integration: deps-test $(VENV)/.installed
	$(BIN)/python -m pytest -q tests/integration $(ARGS)

demo: deps-test $(VENV)/.installed
	$(BIN)/python -m bench.demo $(ARGS)

bench: deps-bench $(VENV)/.bench-installed
	$(BIN)/python -m bench $(ARGS)

docs: $(VENV)/.installed
	$(BIN)/python -m softphone.cli.docgen > docs/cli.md

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
