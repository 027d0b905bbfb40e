# promtool (Prometheus's rule checker and rule unit-tester) for the chart's alert rules and dashboard.
# Built from the Go module proxy into ~/.cache/ecs-scan-operator/promtool/<version>/ (shared Go
# caches with cluster-bins), linked as .tools/bin/promtool; a warm check takes well under a second.

.PHONY: promtool

promtool: $(CLUSTER_VENV_DEP) ## build/cache promtool (Go module proxy) into .tools/bin
	$(PY) -m tests.monitoring.get_promtool

test-deps:: promtool
