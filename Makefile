# ecs-scan-operator: every target creates what it needs (venv from pinned locks, tools, cluster).
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
LOCK := requirements/dev.lock
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help venv lint typecheck importlint unit test demo crds clean

help: ## list the targets
	@awk '/^[a-zA-Z0-9_.-]+:.*## / { name = $$0; sub(/:.*/, "", name); text = $$0; sub(/^[^#]*## /, "", text); \
		printf "  %-16s %s\n", name, text }' $(MAKEFILE_LIST)

$(VENV)/.installed: $(LOCK) pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade 'pip==25.3'
	$(PY) -m pip install --quiet --disable-pip-version-check -r $(LOCK)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

venv: $(VENV)/.installed ## create .venv from the pinned lock

lint: venv ## ruff, vulture (dead code), and shellcheck on scripts/
	$(BIN)/ruff check operator tests bench
	$(BIN)/ruff format --check operator tests bench
	$(BIN)/vulture
	$(BIN)/shellcheck scripts/*.sh

typecheck: venv ## mypy --strict on the package, the tests and the bench
	$(BIN)/mypy

importlint: venv ## layering contracts (.importlinter)
	$(BIN)/lint-imports

unit: venv ## the fast tests only (not those marked tools: helm, hadolint)
	$(BIN)/pytest -q -m "not tools" tests/unit

demo: venv ## run the pipeline once against an emulated AWS fleet; writes demo-report/
	$(BIN)/ecs-scan-operator run --demo -f examples/scanpolicy.yaml --output-dir demo-report

test: venv lint typecheck importlint test-deps ## everything CI runs
	$(BIN)/pytest -q

# The CRD is generated from PolicySpec (ecs_scan_operator/crd.py); writes only files that changed.
CRD_GEN = $(PY) -m ecs_scan_operator.crd
CRD_FILES = crds/scanpolicies.ecsscan.io.yaml helm/ecs-scan-operator/crds/scanpolicies.ecsscan.io.yaml \
	crds/scanaccessgrants.ecsscan.io.yaml helm/ecs-scan-operator/crds/scanaccessgrants.ecsscan.io.yaml

crds: venv ## generate crds/ and the chart's copies from PolicySpec and GrantSpec
	$(CRD_GEN) $(CRD_FILES)

clean: ## remove build outputs (keeps the venv)
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache demo-report .out

# Topic targets (cluster, helm, bench, ...) live in mk/*.mk; each may add prerequisites to test-deps.
.PHONY: test-deps
test-deps:: venv ## what the tests need besides the venv (kubectl, helm, the control plane binaries)
-include mk/*.mk
# The e2e tests need kubectl/helm and the locally built control plane (mk/cluster.mk).
test-deps:: tools cluster-bins
