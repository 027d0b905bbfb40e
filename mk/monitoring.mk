# promtool (Prometheus's rule checker and rule unit-tester) for the chart's alert rules and dashboard.
# Built from the Go module proxy into ~/.cache/ecs-scan-operator/promtool/<version>/ (shared Go
# caches with cluster-bins), linked as .tools/bin/promtool. A cold build is ~450 s of CPU (about
# 4 min on 2 idle cores, plus the module downloads the first time); a warm check takes 0.05 s.

.PHONY: promtool

promtool: $(CLUSTER_VENV_DEP) ## build/cache promtool (Go module proxy) into .tools/bin
	$(PY) -m tests.monitoring.get_promtool

test-deps:: promtool
