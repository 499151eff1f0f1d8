# `make run` and `make test` set everything up on a fresh machine (Python >= 3.11 needed).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: mutate vendor-docs run demo test lint bench bench-smoke lock clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/scoreboard serve

demo: $(VENV)/.installed-run
	$(BIN)/scoreboard demo

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint deploy/Dockerfile
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml

# The Redis-backed API, live, board and attack suites once more on a Redis Cluster the run
# starts (3 masters, 3 replicas): the same code paths must serve one server and a cluster.
CLUSTER_SUITES = tests/scores tests/leaderboard tests/live tests/boards tests/admin \
	tests/abuse tests/security tests/test_ratelimit.py tests/test_cli.py
test: lint
	$(BIN)/pytest
	SCOREBOARD_TEST_REDIS_TOPOLOGY=cluster $(BIN)/pytest -q -m "not slow" \
		-k redis $(CLUSTER_SUITES)
	$(MAKE) --no-print-directory bench-smoke

# The hash-pinned lock the image installs from: regenerate after changing dependencies.
lock: $(VENV)/.installed-dev
	$(BIN)/pip-compile --quiet --strip-extras --generate-hashes --allow-unsafe \
		--no-emit-index-url --no-emit-find-links --output-file=requirements.lock pyproject.toml

# The Swagger UI files the docs page serves (src/scoreboard/web/docs.py pins the version;
# tests/node_tools.py must name the same one).
SWAGGER_UI = swagger-ui-dist@$(shell sed -n 's/^SWAGGER_UI_VERSION = "\(.*\)"/\1/p' src/scoreboard/web/docs.py)
vendor-docs:
	rm -rf .vendor-docs && mkdir .vendor-docs && cd .vendor-docs && npm pack --silent $(SWAGGER_UI) >/dev/null && tar xzf *.tgz
	cd .vendor-docs/package && cp swagger-ui-bundle.js swagger-ui.css LICENSE NOTICE swagger-ui-bundle.js.LICENSE.txt ../../src/scoreboard/web/static/docs/
	rm -rf .vendor-docs

# Mutation testing of the critical paths ([tool.mutmut] in pyproject.toml; docs/testing.md);
# not part of `make test`. Prints every surviving mutant. One module:
# make mutate MUTANTS='scoreboard.scores.repository*'
MUTANTS ?=
mutate: $(VENV)/.installed-dev
	$(BIN)/mutmut run --max-children 2 $(MUTANTS) || true
	$(BIN)/mutmut results

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/score_updates.py

# Every benchmark at a tiny size (seconds), so none of them rots; part of `make test`. What a
# benchmark needs and the machine lacks (wrk, the test PostgreSQL/Redis) skips it, or with CI
# set fails it (bench/smoke.py). wrk: apt-get install wrk (.ci/run does).
bench-smoke: $(VENV)/.installed-dev
	$(BIN)/python bench/smoke.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
