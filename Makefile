# AgencyHub — `make run` (demo on SQLite, no services) and `make test` (PostgreSQL + Redis).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TEST_DATABASE_URL ?= $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/agencyhub)
TEST_REDIS_URL ?= $(or $(REDIS_URL),redis://127.0.0.1:6379/14)

.PHONY: run test venv migrate seed simulator bench bench-billing bench-failover lint clean

venv: $(BIN)/.installed

$(BIN)/.installed: requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required" if sys.version_info < (3, 11) else 0)'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# Local secrets for the demo: random, never committed (.env is git-ignored).
.env: | venv
	$(BIN)/python scripts/make_env.py > .env

run: venv .env
	env -u DATABASE_URL -u REDIS_URL $(BIN)/python manage.py migrate --noinput
	env -u DATABASE_URL -u REDIS_URL $(BIN)/python manage.py seed_demo
	env -u DATABASE_URL -u REDIS_URL DEBUG=true $(BIN)/python manage.py runserver 127.0.0.1:8000

test: venv
	@DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(BIN)/python scripts/check_services.py
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) CELERY_TASK_ALWAYS_EAGER=true \
	FIELD_ENCRYPTION_KEYS=$$($(BIN)/python scripts/make_env.py --fernet-key) \
	$(BIN)/python -m pytest $(PYTEST_ARGS)

simulator: venv
	$(BIN)/python manage.py provider_simulator --port 9100

clean:
	rm -rf $(VENV) db.sqlite3 .pytest_cache

# Benchmark of the deployed configuration (gunicorn gthread, PostgreSQL, Redis) against the provider simulator,
# on loopback; needs PostgreSQL and Redis running. Figures and method: bench/README.md. BENCH_ARGS="--scale 0.3"
bench: venv
	$(BIN)/python bench/chat_overhead.py $(BENCH_ARGS)

# Roll-up of 1 million ledger rows and invoices for 1,000 tenants, in a database of its own (needs PostgreSQL).
bench-billing: venv
	$(BIN)/python bench/billing_bench.py $(BENCH_ARGS)

# Failover under load: the primary provider answers 529, then times out, then recovers (database, Redis db 11 and
# ports 8110/9111 of its own; needs PostgreSQL and Redis). Figures and method: bench/README.md. BENCH_ARGS="--scale 0.5"
bench-failover: venv
	$(BIN)/python bench/failover_load.py $(BENCH_ARGS)
