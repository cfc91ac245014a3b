# The README's two commands: `make demo` and `make test`. Nothing else needs installing by hand:
# uv is bootstrapped into .tools/ when it is not on PATH, and every environment is built from
# uv.lock with bytecode compiled at install time (imports stay fast under PYTHONDONTWRITEBYTECODE).
#
# Airflow 3.3 and Prefect >= 3.8 cannot share one environment, so each integration has its own:
#   .venv          core + server (+ dev, peer client, fuzzing)
#   .venv-airflow  core + server + apache-airflow (the newest release the lock allows)
#   .venv-airflow-oldest  core + server + apache-airflow 3.0.6, the oldest release supported
#                  (its own project and lock: envs/airflow-oldest)
#   .venv-prefect  core + server + prefect
#   .venv-sage     core + server + passagemath (only for `make sage`, ~4.3 GB)

PYTHON ?= python3
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
export UV_COMPILE_BYTECODE := 1
export UV_PYTHON := $(PYTHON)
SYNC := $(UV) sync --locked --quiet
PYTEST_FLAGS ?= -q -p no:cacheprovider

.PHONY: help env airflow-env airflow-oldest-env prefect-env sage-env serve-sage demo test test-core test-airflow test-prefect \
        test-airflow-releases \
        test-sage test-docs docs lint bench soak clean bwrap postgres nginx chromium screenshot

help:
	@echo "make demo   run the example pipeline against the embedded local server"
	@echo "make test   run the whole test suite (core, server, reliability, Sage, Airflow, Prefect)"
	@echo "make lint   ruff + mypy --strict (part of make test);  make bench   benchmarks -> bench/results.md"
	@echo "make docs   the documentation site -> site/index.html (part of make test)"
	@echo "make serve-sage   the local server with SageMath on port 8765 (PORT=...)"

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

env: $(UV)
	UV_PROJECT_ENVIRONMENT=.venv $(SYNC) --extra server --extra postgres --group dev --group peer --group fuzz --group docs

airflow-env: $(UV)
	UV_PROJECT_ENVIRONMENT=.venv-airflow $(SYNC) --extra airflow --extra server --group dev --group airflow-dev

airflow-oldest-env: $(UV)
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/.venv-airflow-oldest $(SYNC) --project envs/airflow-oldest

prefect-env: $(UV)
	UV_PROJECT_ENVIRONMENT=.venv-prefect $(SYNC) --extra prefect --extra server --group dev --group prefect-dev

sage-env: $(UV)
	UV_PROJECT_ENVIRONMENT=.venv-sage $(SYNC) --extra sage --extra server --group dev

# The local server with SageMath: python3, bash and sagemath, which also answers to cocalc.com's
# sage-9.8 and sage-10.4. PORT=8765 by default.
PORT ?= 8765
serve-sage: sage-env bwrap
	.venv-sage/bin/cocalc-tasks serve --port $(PORT) --kernels python3,sagemath

demo: env airflow-env prefect-env sage-env
	.venv/bin/python -m demo

# COCALC_REQUIRE_SAGE=1: the Sage examples in the Airflow and Prefect suites fail (not skip)
# when .venv-sage is missing, so the flagship workload is always tested.
test: lint docs test-core test-docs test-sage test-airflow test-prefect

# The documentation site, built strictly: a broken link, a missing page or an API reference
# that does not resolve fails the build. Open site/index.html.
docs: env
	NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet

# The guides' code examples, run against a local server with real kernels (Sage included).
test-docs: env sage-env
	COCALC_REQUIRE_SAGE=1 .venv/bin/pytest $(PYTEST_FLAGS) tests/docs

# COCALC_REQUIRE_POSTGRES=1: the PostgreSQL tests fail (not skip) where it cannot start.
test-core: env bwrap postgres nginx chromium
	COCALC_REQUIRE_POSTGRES=1 COCALC_REQUIRE_BROWSER=1 .venv/bin/pytest $(PYTEST_FLAGS) tests/unit tests/server tests/notebooks tests/reliability tests/browser

# The job page's picture in the documentation, taken by the browser test from the real page.
screenshot: env bwrap chromium
	COCALC_TASKS_SCREENSHOT=$(CURDIR)/docs/images/job-page.png COCALC_REQUIRE_BROWSER=1 \
	  .venv/bin/pytest $(PYTEST_FLAGS) tests/browser

# Real parts, installed from Debian's packages where missing (as root, or with sudo -n):
# bubblewrap for the sandbox tests, PostgreSQL and nginx for the replica tests.
# $(call apt_install,PACKAGE,CHECK): run CHECK, install PACKAGE when it fails.
define apt_install
	@$(2) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO=sudo; \
	  else echo "$(1) is missing: install Debian's $(1) package (apt-get install $(1))" >&2; exit 1; fi; \
	  echo "installing $(1) (Debian's package) for the tests"; \
	  $$SUDO apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(1) >/dev/null; }
	@$(2) >/dev/null
endef

bwrap:
	$(call apt_install,bubblewrap,bwrap --version)

postgres:
	$(call apt_install,postgresql,ls /usr/lib/postgresql/*/bin/initdb /usr/lib/postgresql/*/bin/pg_ctl)

nginx:
	$(call apt_install,nginx,sh -c 'command -v nginx || test -x /usr/sbin/nginx')

# The pages' browser test: Debian's headless-capable Chromium and its chromedriver (browsers
# that download themselves cannot be fetched everywhere), and a font for the screenshot.
chromium:
	$(call apt_install,chromium chromium-driver fonts-dejavu-core,sh -c 'command -v chromium && command -v chromedriver')

# The Airflow suite runs on the newest Airflow release and on the oldest one supported (3.0.6).
test-airflow: airflow-env airflow-oldest-env sage-env
	COCALC_REQUIRE_SAGE=1 .venv-airflow/bin/pytest $(PYTEST_FLAGS) tests/airflow
	COCALC_REQUIRE_SAGE=1 .venv-airflow-oldest/bin/pytest $(PYTEST_FLAGS) tests/airflow

# The releases between the oldest and the newest (3.1.8, 3.2.2), each in its own environment
# (envs/airflow-3.1, envs/airflow-3.2): not part of make test, for maintainers and releases.
AIRFLOW_RELEASES := 3.1 3.2
test-airflow-releases: $(UV) sage-env
	@for v in $(AIRFLOW_RELEASES); do \
	  UV_PROJECT_ENVIRONMENT=$(CURDIR)/.venv-airflow-$$v $(SYNC) --project envs/airflow-$$v && \
	  COCALC_REQUIRE_SAGE=1 .venv-airflow-$$v/bin/pytest $(PYTEST_FLAGS) tests/airflow || exit 1; \
	done

test-prefect: prefect-env sage-env
	COCALC_REQUIRE_SAGE=1 .venv-prefect/bin/pytest $(PYTEST_FLAGS) tests/prefect

test-sage: sage-env
	.venv-sage/bin/pytest $(PYTEST_FLAGS) -m sage tests/sage

# mypy --strict everywhere; each adapter is checked in the environment that has its framework.
lint: env airflow-env prefect-env
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv-airflow/bin/mypy --strict airflow_provider
	.venv-prefect/bin/mypy --strict prefect_tasks

bench: env bwrap postgres nginx sage-env prefect-env
	UV_PROJECT_ENVIRONMENT=.venv $(SYNC) --extra server --extra postgres --group dev --group peer --group fuzz --group docs --group bench
	.venv/bin/python -m bench.run

soak: env
	COCALC_SOAK_CALLS=1000 .venv/bin/pytest $(PYTEST_FLAGS) -s tests/reliability/test_soak.py

clean:
	rm -rf .venv .venv-* .tools .pytest_cache .mypy_cache .ruff_cache site
