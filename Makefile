# Quick start: `make demo` runs the exporter on the built-in demo workspace; `make test` runs every check.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Two stamps: the demo installs only what it runs (the package, ~32 MB); the checks add the test toolchain.
RUNTIME_STAMP := $(VENV)/.installed-runtime
STAMP  := $(VENV)/.installed
DEMO_ADDRESS ?= 127.0.0.1:10049
DEMO_WEBHOOK_ADDRESS ?= 127.0.0.1:10050
# Bytecode caches are written (into the git-ignored __pycache__ directories) even where the environment says
# not to: without them every pytest worker re-rewrote the asserts of every test module, 6 s of CPU each time,
# and every exporter a test starts compiled the package again.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test test-fast lint typecheck pytest docs dashboard mixin chart-files docker-smoke bench bench-quick bench-fleet bench-webhooks bench-detection sizing lock release-dry-run clean

$(RUNTIME_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUNTIME_STAMP)

$(STAMP): $(RUNTIME_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(RUNTIME_STAMP)
	@echo "census-exporter demo: open http://$(DEMO_ADDRESS)/ (metrics at http://$(DEMO_ADDRESS)/metrics);" \
		"the webhook receiver listens on http://$(DEMO_WEBHOOK_ADDRESS)/webhooks/census/<workspace>" \
		"(the simulator posts its runs' signed events there); Ctrl-C stops it."
	$(BIN)/census-exporter --demo --web.listen-address $(DEMO_ADDRESS) \
		--web.webhook-listen-address $(DEMO_WEBHOOK_ADDRESS)

test: lint typecheck pytest

# Lint, types and the unit tests: everything but the tests marked slow (real prometheus, helm, docker-compose,
# soak, benchmarks, any test over ~5 s; tests/conftest.py lists them). `make test` stays the full suite that
# CI runs. What is left waits more than it computes (134 s of CPU in 564 s of test time, measured on 2
# cores), so it runs on 6 workers: 96 s against 121 s on 4 (945 tests, bytecode caches warm, 2026-12-03).
# Serial tests are slow too (tests/conftest.py), so it is one pass, without the serial one.
test-fast: PYTEST_WORKERS = 6
test-fast: lint typecheck
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup -m "not slow" -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict exporter

pytest: $(STAMP)
	$(call run_pytest,,)

# The suite in two passes: first the tests marked serial (they measure memory, request rates or latency of
# this process and machine) in one process with nothing else of the suite running, then all the others on
# $(PYTEST_WORKERS) pytest-xdist workers: most tests wait on sockets, subprocesses and polls, not on the CPU,
# so 2 cores keep 6 workers busy (the second pass took 274 s against 354 s on 4, 2026-12-03). --dist
# loadgroup hands out one test at a time and keeps an xdist_group on one worker. PYTEST_ARGS goes to both passes (a pass it leaves no test in is not a failure); both passes
# run even when the first fails. PYTEST_WORKERS=0 runs the second pass in one process too.
PYTEST_WORKERS ?= 6
define run_pytest
	status=0; \
	$(BIN)/pytest -n 0 -m "$(1)serial" $(2) $(PYTEST_ARGS) || test $$? -eq 5 || status=1; \
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup -m "$(1)not serial" $(2) $(PYTEST_ARGS) \
		|| test $$? -eq 5 || status=1; \
	exit $$status
endef
# The flag table of docs/configuration.md comes from the parser; tests/test_config_docs.py checks it.
docs: $(RUNTIME_STAMP)
	$(BIN)/python scripts/gen-config-docs

# The dashboard's panels come from grafana/generate.py (into mixin/dashboards/); the mixin renders the rest.
dashboard: $(STAMP)
	$(BIN)/python grafana/generate.py
	$(MAKE) mixin

# The monitoring mixin (mixin/, jsonnet) renders prometheus/rules.yaml, prometheus/alerts.yaml,
# grafana/census-sync-runs.json and the Helm chart's copies of them (Helm reads files only inside the chart);
# tests/test_mixin.py fails when a committed file differs from what the mixin renders.
mixin: $(STAMP)
	$(BIN)/python scripts/gen-mixin

# The old name of `make mixin`: the chart's copies are the mixin's output.
chart-files: mixin

# uv.lock pins and hashes every dependency (runtime, test extras, the build group); the image installs the
# two exports with --require-hashes. Run after changing a dependency in pyproject.toml; uv keeps every pin it
# can. tests/test_lock.py fails when the lock or an export no longer matches pyproject.toml.
UV_EXPORT := $(BIN)/uv export --quiet --frozen --no-header --no-emit-project --format requirements-txt
lock: $(STAMP)
	$(BIN)/uv lock
	$(UV_EXPORT) --no-default-groups -o requirements.lock
	$(UV_EXPORT) --only-group build -o requirements-build.lock

# What a tag's release workflow builds, built here and published nowhere: version check, sdist + wheel
# (twine check), the chart package, and the image where Docker can run (scripts/release says how).
release-dry-run: $(STAMP)
	scripts/release dry-run

# Builds and runs the Docker image for real (needs root, docker.io and debootstrap; see the script).
docker-smoke:
	scripts/docker-smoke-test

# Issue 9's benchmark at 100 / 1,000 / 5,000 syncs (about 10 min); writes benchmarks/results.md, explained in
# docs/performance.md. Fails when the simulator's own latency is more than 10 % off. Not part of make test.
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py --syncs 100 1000 5000

# The same at 100 and 1,000 syncs only, for development (a few minutes).
bench-quick: $(STAMP)
	$(BIN)/python benchmarks/bench.py --syncs 100 1000

# Issue 18's fleet benchmark: 200 / 300 discovered groups, a 200,000-sync listing, one 8 s workspace
# (about 11 min); writes benchmarks/fleet-results.md. Not part of make test.
bench-fleet: $(STAMP)
	$(BIN)/python benchmarks/fleet.py

# Issue 20's benchmark (about 3 min): API requests per hour with webhooks vs polling at 1,000 syncs, and the
# time from a webhook event to /metrics; results in docs/performance.md. Not part of make test.
bench-webhooks: $(STAMP)
	$(BIN)/python benchmarks/webhooks.py --syncs 1000

# Issue 16's benchmark (about 40 min, needs prometheus): seconds from a run failing to CensusSyncFailed
# selecting the sync at 3,000 and 5,000 syncs with the default budget and TTL; writes
# benchmarks/detection-results.md, explained in docs/performance.md. Not part of make test.
bench-detection: $(STAMP)
	$(BIN)/python benchmarks/detection.py --syncs 3000 5000 --output benchmarks/detection-results.md

# Measures series, scrape size, memory and API requests at 100 / 1,000 / 5,000 syncs; rewrites docs/sizing.md's table.
sizing: $(STAMP)
	$(BIN)/python benchmarks/sizing.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info exporter/*.egg-info

# Soak: scrapers, churn during paging, 429/5xx/stalls; counters must equal the simulator's ground truth.
# `make test` runs it for about two minutes; this runs it longer (SOAK_SECONDS=600 by default).
.PHONY: soak
SOAK_SECONDS ?= 600
soak: $(STAMP)
	SOAK_SECONDS=$(SOAK_SECONDS) $(BIN)/pytest -q tests/test_soak.py $(PYTEST_ARGS)
