# The operator on a local control plane: `make demo-cluster`, and its end-to-end tests.
# Included by the main Makefile (-include mk/*.mk); $(PY)/$(BIN) are the venv's.

DEMO_DIR ?= .out/demo-cluster
DEMO_NAMESPACE ?= default
DEMO_POLICY ?= production-services
DEMO_HEALTH_PORT ?= 18080
DEMO_METRICS_PORT ?= 19090
# 1: keep everything running until Ctrl-C; 0: show the result and stop. Default: 1 on a terminal.
DEMO_HOLD ?= $(shell test -t 0 && echo 1 || echo 0)

.PHONY: demo-cluster e2e-operator

# The steps are in scripts/demo-cluster.sh (checked by shellcheck in `make lint`).
demo-cluster: venv cluster-bins tools ## the operator end to end on a local kube-apiserver + emulated AWS (scripts/demo-cluster.sh)
	DEMO_DIR=$(DEMO_DIR) DEMO_NAMESPACE=$(DEMO_NAMESPACE) DEMO_POLICY=$(DEMO_POLICY) \
		DEMO_HEALTH_PORT=$(DEMO_HEALTH_PORT) DEMO_METRICS_PORT=$(DEMO_METRICS_PORT) DEMO_HOLD=$(DEMO_HOLD) \
		PY=$(PY) BIN=$(BIN) bash scripts/demo-cluster.sh

e2e-operator: venv cluster-bins tools ## the operator's end-to-end tests (real API server, moto)
	$(BIN)/pytest -q -m e2e tests/e2e/test_operator_crd.py tests/e2e/test_operator.py
