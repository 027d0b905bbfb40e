# Benchmark (issue 7): our pipeline against the original Lambda design on emulated fleets.
# Included by the main Makefile (-include mk/*.mk). $(PY) is the venv's python.
# Writes bench/results/<fleet>.json and renders bench/RESULTS.md from every fleet measured so far.

PY ?= .venv/bin/python

.PHONY: bench bench-large

bench: venv ## benchmark fleets S and M (ours, the original design, the bounds); writes bench/RESULTS.md
	BENCH_COMMAND="make bench" $(PY) -m bench.run --fleets S,M

bench-large: venv ## benchmark fleet L (memory and CPU, ours only); adds it to bench/RESULTS.md
	BENCH_COMMAND="make bench-large" $(PY) -m bench.run --fleets L --baseline-fleets none
