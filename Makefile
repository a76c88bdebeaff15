# The two commands: `make run` (the whole stack on this machine) and `make test`
# (the whole suite on a real Kafka broker and PostgreSQL). Each installs what it needs.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
PYTEST_ARGS ?=

.PHONY: run test setup system-deps kafka-jars postgres lint format schemas docs faults bench bench-sweep bench-memory down

run: setup kafka-jars
	$(UV) run procure up

down:
	$(UV) run procure down

test: setup kafka-jars postgres lint
	$(UV) run pytest $(PYTEST_ARGS)

setup: system-deps
	@# A Debian python3 refuses a plain pip install (PEP 668): then into the user's site.
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv 2>/dev/null || python3 -m pip install --quiet --user --break-system-packages uv
	$(UV) sync --frozen

# Java, Maven and PostgreSQL come with our machines; install them where they do not.
system-deps:
	@bash deploy/system-deps.sh

kafka-jars:
	$(UV) run python -m procure_devstack.kafka fetch

postgres:
	$(UV) run python -m procure_devstack.postgres setup

lint:
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy contracts/src libs/runtime/src libs/devstack/src services/*/src bench --ignore-missing-imports

format:
	$(UV) run ruff check --fix .
	$(UV) run ruff format .

# Regenerate what is generated from contracts/ (tests fail when these are stale).
schemas:
	$(UV) run python -m procure_contracts.schemas export
	$(UV) run python -m procure_contracts.docs write

# New Alembic migration from a service's models: make migration SERVICE=quotes MSG="add ledger"
migration:
	$(UV) run python -m procure_runtime.migrate revision $(SERVICE) "$(MSG)"

# The benchmark (bench/README.md): raw Kafka baseline, minimal loop, each service's hot
# path on SQLite and PostgreSQL; results in bench/results/. BENCH_ARGS="--n 500" to shrink.
BENCH_ARGS ?=
bench: setup kafka-jars postgres
	$(UV) run python -m bench run $(BENCH_ARGS)
	$(UV) run python -m bench e2e

# The whole flow at 25 to 125 charges/s, a fresh stack per rate: latency and CPU against
# the offered load (bench/results/latest-sweep.md).
bench-sweep: setup kafka-jars postgres
	$(UV) run python -m bench sweep

# Memory of every service under a steady load of the whole flow, 10 minutes.
bench-memory: setup kafka-jars postgres
	$(UV) run python -m bench memory

# The fault-injection suite alone (it also runs, in its short form, within `make test`).
faults: setup kafka-jars postgres
	PROCURE_FAULT_CHARGES=$${PROCURE_FAULT_CHARGES:-200} $(UV) run pytest -m faults $(PYTEST_ARGS)
