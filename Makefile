# ChestNet: `make run` starts everything locally; `make test` runs the whole suite.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast lint typecheck browser dicom-tools benchmark frontend

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -r requirements-dev.txt
	touch $(STAMP)

# Debian's chromium for the Playwright end-to-end tests (installed only when root).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } || \
	  echo "chromium not installed: end-to-end tests will be skipped"

# Debian's dcmtk and Orthanc for the DICOM network tests (a real PACS and real SCUs; installed
# only when root).
dicom-tools:
	@{ command -v storescu && command -v Orthanc; } >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
	  command -v apt-get >/dev/null && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dcmtk orthanc; } || \
	  echo "dcmtk/orthanc not installed: the PACS integration tests will be skipped"

run: install
	$(PY) scripts/run_local.py

test: install browser dicom-tools
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -m "not integration and not e2e and not slow" $(PYTEST_ARGS)

LINTED := chestnet_site accounts registry diagnosis mlops dicomnet monitoring ml devtools scripts/run_local.py scripts/benchmark.py \
	scripts/ood_corpus.py scripts/gate_report.py scripts/recipe_report.py scripts/make_test_fixtures.py \
	scripts/validation_stress.py scripts/upload_memory.py scripts/baseline_tree.py scripts/worklist_benchmark.py scripts/pipeline_benchmark.py scripts/encoding_benchmark.py \
	scripts/monitoring_benchmark.py scripts/remote_workers_benchmark.py scripts/site_calibration_study.py tests/conftest.py tests/diagnosis tests/integration tests/e2e \
	tests/ml tests/mlops tests/dicomnet tests/registry tests/monitoring tests/accounts tests/support tests/test_architecture.py \
	tests/test_docker_files.py tests/test_storage_settings.py tests/test_database_settings.py \
	tests/test_worker_environment.py tests/test_production_settings.py tests/test_throttling.py \
	tests/test_security_headers.py tests/test_ports.py manage.py

lint: install
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

# mypy with django-stubs (pyproject.toml) over every package of the product, and devtools.
TYPECHECKED := ml chestnet_site accounts registry diagnosis mlops dicomnet monitoring devtools
typecheck: install
	$(VENV)/bin/mypy --follow-imports=silent --check-untyped-defs $(TYPECHECKED)

# BASELINE=<git ref> also measures that commit side by side in the pipeline benchmark. The
# remote-workers benchmark needs root (network namespaces) and PostgreSQL at 127.0.0.1:5432.
benchmark: install
	$(PY) scripts/benchmark.py
	$(PY) scripts/pipeline_benchmark.py $(if $(BASELINE),--baseline $(BASELINE))
	$(PY) scripts/encoding_benchmark.py
	$(PY) scripts/worklist_benchmark.py
	$(PY) scripts/monitoring_benchmark.py --sizes 5000,50000
	@if [ "$$(id -u)" = 0 ]; then $(PY) scripts/remote_workers_benchmark.py; \
	  else echo "remote-workers benchmark skipped: needs root for ip netns"; fi

# The review page's viewer (Cornerstone3D from npm), built from frontend/ into static/viewer/.
# The bundle is committed, so `make run` needs no Node.js: run this (Node.js 20.19+ and npm)
# only after changing frontend/src, frontend/vite.config.js or frontend/package-lock.json.
frontend:
	cd frontend && npm ci --no-audit --no-fund && npm run build
