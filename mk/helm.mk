# Helm chart, container image recipe and IAM policy checks (helm/, Dockerfile, docs/iam-policy.json).
# Included by the main Makefile (-include mk/*.mk). The same checks run in `make test` through
# tests/unit/test_helm_chart.py, tests/unit/test_iam_policy.py and tests/e2e/test_helm_rbac.py.

PY ?= .venv/bin/python
HELM_BIN ?= .tools/bin/helm
CHART_DIR := helm/ecs-scan-operator
HELM_OUT := .out/helm
HELM_KUBE_VERSION ?= 1.33.0
HELM_ENV := HELM_CACHE_HOME=$(CURDIR)/.out/helm-home/cache HELM_CONFIG_HOME=$(CURDIR)/.out/helm-home/config \
	HELM_DATA_HOME=$(CURDIR)/.out/helm-home/data

.PHONY: sync-crds helm-docs helm-lint helm-template helm-validate helm-check hadolint runtime-lock wheel-smoke

# the unit tests lint and render the chart with .tools/bin/helm
test-deps:: tools

sync-crds: crds ## the same as `make crds` (crds/ and the chart's copy are both generated)

helm-docs: venv ## rewrite the values table of the chart README from values.yaml
	$(PY) helm/values_table.py

helm-lint: tools ## helm lint --strict with the default values and each ci/*-values.yaml
	$(HELM_ENV) $(HELM_BIN) lint --strict $(CHART_DIR)
	@for f in $(CHART_DIR)/ci/*-values.yaml; do echo "== $$f"; \
		$(HELM_ENV) $(HELM_BIN) lint --strict $(CHART_DIR) -f $$f || exit 1; done

helm-template: tools ## render the chart with the defaults and each ci values file into .out/helm/
	@mkdir -p $(HELM_OUT)
	$(HELM_ENV) $(HELM_BIN) template ecs-scan $(CHART_DIR) -n ecs-scan --kube-version $(HELM_KUBE_VERSION) \
		> $(HELM_OUT)/default.yaml
	@for f in $(CHART_DIR)/ci/*-values.yaml; do n=$$(basename $$f -values.yaml); \
		$(HELM_ENV) $(HELM_BIN) template ecs-scan $(CHART_DIR) -n ecs-scan --kube-version $(HELM_KUBE_VERSION) \
			-f $$f > $(HELM_OUT)/$$n.yaml || exit 1; echo "rendered $(HELM_OUT)/$$n.yaml"; done

helm-validate: helm-template venv ## validate the renderings offline against the Kubernetes OpenAPI schemas (kubernetes-validate)
	$(BIN)/kubernetes-validate --strict -k $(HELM_KUBE_VERSION) --quiet $(HELM_OUT)/*.yaml

hadolint: venv ## hadolint the Dockerfile (config: .hadolint.yaml)
	$(BIN)/hadolint --config .hadolint.yaml Dockerfile

helm-check: helm-lint helm-validate hadolint ## every chart/image check that needs no cluster
	$(PY) helm/values_table.py --check
	$(CRD_GEN) --check $(CRD_FILES)

runtime-lock: venv ## regenerate requirements/runtime.lock: what `pip install .` resolves to, constrained by dev.lock
	$(PY) -m pip install --quiet --dry-run --ignore-installed --report $(HELM_OUT)/pip-report.json \
		-c requirements/dev.lock .
	$(PY) -c 'import json,sys; r=json.load(open(sys.argv[1])); \
		pins=sorted((i["metadata"]["name"]+"=="+i["metadata"]["version"] for i in r["install"] \
		if i["metadata"]["name"]!="ecs-scan-operator"), key=str.lower); \
		head=[l for l in open(sys.argv[2]) if l.startswith("#")]; \
		open(sys.argv[2],"w").write("".join(head)+"\n".join(pins)+"\n")' \
		$(HELM_OUT)/pip-report.json requirements/runtime.lock
	@echo "requirements/runtime.lock: $$(grep -vc '^#' requirements/runtime.lock) pins"

wheel-smoke: venv ## build the wheel, install it with runtime.lock into a clean venv, run its --help (what the image does)
	rm -rf $(HELM_OUT)/wheel $(HELM_OUT)/venv && mkdir -p $(HELM_OUT)
	$(PY) -m build --wheel --outdir $(HELM_OUT)/wheel .
	$(PYTHON) -m venv $(HELM_OUT)/venv
	$(HELM_OUT)/venv/bin/pip install --quiet --disable-pip-version-check --only-binary=:all: -r requirements/runtime.lock
	$(HELM_OUT)/venv/bin/pip install --quiet --disable-pip-version-check --no-deps $(HELM_OUT)/wheel/*.whl
	$(HELM_OUT)/venv/bin/pip check
	$(HELM_OUT)/venv/bin/ecs-scan-operator --help
