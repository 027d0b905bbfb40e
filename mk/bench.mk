# Benchmark (issue 7): our pipeline against the original Lambda design on emulated fleets.
# Included by the main Makefile (-include mk/*.mk). $(PY) is the venv's python.
# Writes bench/results/<fleet>.json and renders bench/RESULTS.md from every fleet measured so far.

PY ?= .venv/bin/python

.PHONY: bench bench-large

bench: venv ## benchmark fleets S and M (ours, the original design, the bounds); writes bench/RESULTS.md
	BENCH_COMMAND="make bench" $(PY) -m bench.run --fleets S,M

bench-large: venv ## benchmark fleet L (memory and CPU, ours only); adds it to bench/RESULTS.md
	BENCH_COMMAND="make bench-large" $(PY) -m bench.run --fleets L --baseline-fleets none

# The operator at scale (issue 18): N ScanPolicies on the local control plane, K run-now at once.
# Writes bench/results/operator-<N>.json and the "Operator at scale" table in bench/RESULTS.md.
N ?= 200
K ?=
.PHONY: bench-operator
bench-operator: venv cluster-bins ## the operator with N policies (N=200 by default; 5000 takes minutes), K run-now
	BENCH_COMMAND="make bench-operator N=$(N)$(if $(K), K=$(K))" $(PY) -m bench.operator_bench --policies $(N) $(if $(K),--run-now $(K))

# The running source (issue #12): source running over 3 clusters (M: 3,000 tasks; L: 15,000).
# Writes bench/results/running-<fleet>.json and the "Running source" section of bench/RESULTS.md.
FLEETS ?= M
.PHONY: bench-running
bench-running: venv ## benchmark source running (FLEETS=M: 3 clusters, 3,000 tasks; FLEETS=L: RSS); writes bench/RESULTS.md
	BENCH_COMMAND="make bench-running FLEETS=$(FLEETS)" $(PY) -m bench.running --fleets $(FLEETS)
# Fleet XL (issue 16): one policy over an AWS Organization, 50 accounts x 2 regions x 400 families,
# AWS emulated in-process with per-(account, region) rate limits. Writes bench/results/org-xl.json
# and the "Fleet XL" section of bench/RESULTS.md. About 2 minutes per scenario on 2 cores.
.PHONY: bench-org
bench-org: venv ## benchmark Fleet XL (an organization: 40,000 families); adds its section to bench/RESULTS.md
	BENCH_COMMAND="make bench-org" $(PY) -m bench.org
