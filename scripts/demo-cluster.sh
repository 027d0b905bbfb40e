#!/usr/bin/env bash
# The operator end to end on a local control plane (`make demo-cluster`): etcd + kube-apiserver
# (tests/cluster), moto with the demo fleet, the operator; applies examples/scanpolicy.yaml with
# run-now, then shows `kubectl get scanpolicies -o wide`, the events and the report.
# Run from the repository root after `make venv cluster-bins tools`. Settings (environment):
#   DEMO_DIR            working folder: kubeconfig, logs, the copied report (.out/demo-cluster)
#   DEMO_NAMESPACE      namespace of the example policy (default)
#   DEMO_POLICY         name of the example policy (production-services)
#   DEMO_HEALTH_PORT    the operator's health port (18080)
#   DEMO_METRICS_PORT   the operator's metrics port (19090)
#   DEMO_HOLD           1: keep everything running until Ctrl-C; 0: show the result and stop
#   PY, BIN             the venv's python and bin folder (.venv/bin/python, .venv/bin)
set -euo pipefail

DEMO_DIR=${DEMO_DIR:-.out/demo-cluster}
DEMO_NAMESPACE=${DEMO_NAMESPACE:-default}
DEMO_POLICY=${DEMO_POLICY:-production-services}
DEMO_HEALTH_PORT=${DEMO_HEALTH_PORT:-18080}
DEMO_METRICS_PORT=${DEMO_METRICS_PORT:-19090}
DEMO_HOLD=${DEMO_HOLD:-0}
PY=${PY:-.venv/bin/python}
BIN=${BIN:-.venv/bin}

dir=$(realpath -m "$DEMO_DIR")
mkdir -p "$dir"
rm -f "$dir/kubeconfig"
kubectl=".tools/bin/kubectl"
pids=()

cleanup() {
  trap - EXIT INT TERM
  echo "stopping the demo (operator, moto, control plane) ..." >&2
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

fail() {
  echo "demo-cluster: $*" >&2
  tail -n 40 "$dir"/*.log >&2 || true
  exit 1
}

echo "1/5 local control plane (etcd + kube-apiserver) ..."
"$PY" -m tests.cluster.localcluster up --dir "$dir" >"$dir/cluster.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 180); do [ -s "$dir/kubeconfig" ] && break; sleep 1; done
[ -s "$dir/kubeconfig" ] || fail "the control plane did not start"
export KUBECONFIG="$dir/kubeconfig"

echo "2/5 moto (emulated AWS) with the demo fleet ..."
port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
endpoint="http://127.0.0.1:$port"
"$PY" -m moto.server -H 127.0.0.1 -p "$port" >"$dir/moto.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 60); do curl -sf "$endpoint/moto-api/data.json" >/dev/null 2>&1 && break; sleep 0.5; done
"$PY" - "$endpoint" <<'PY'
import sys
from ecs_scan_operator.demo.fleet import seed_fleet
f = seed_fleet(sys.argv[1])
print(f"   {len(f.families)} task-definition families, {len(f.images)} images, bucket {f.bucket}")
PY

echo "3/5 the ScanPolicy CRD ..."
"$kubectl" apply --server-side -f crds/scanpolicies.ecsscan.io.yaml >/dev/null
"$kubectl" wait --for=condition=Established crd/scanpolicies.ecsscan.io --timeout=60s >/dev/null

echo "4/5 the operator (ecs-scan-operator operator) ..."
env AWS_ENDPOINT_URL="$endpoint" AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_DEFAULT_REGION=us-east-1 \
  POD_NAME=demo-operator ECS_SCAN_HEALTH_PORT="$DEMO_HEALTH_PORT" ECS_SCAN_METRICS_PORT="$DEMO_METRICS_PORT" \
  "$BIN/ecs-scan-operator" operator >"$dir/operator.log" 2>&1 &
pids+=($!)
health="http://127.0.0.1:$DEMO_HEALTH_PORT/healthz"
for _ in $(seq 1 60); do curl -sf "$health" >/dev/null 2>&1 && break; sleep 0.5; done
curl -sf "$health" >/dev/null || fail "the operator did not come up"

echo "5/5 examples/scanpolicy.yaml with ecsscan.io/run-now ..."
value="demo-$(date +%s)"
"$kubectl" apply -f examples/scanpolicy.yaml >/dev/null
"$kubectl" -n "$DEMO_NAMESPACE" annotate scanpolicy "$DEMO_POLICY" "ecsscan.io/run-now=$value" --overwrite >/dev/null
state=""
for _ in $(seq 1 180); do
  state=$("$kubectl" -n "$DEMO_NAMESPACE" get scanpolicy "$DEMO_POLICY" \
    -o 'jsonpath={.status.lastRunNow}/{.status.activeRun.id}/{.status.lastRun.id}')
  case "$state" in "$value//"?*) break ;; esac
  sleep 1
done
case "$state" in "$value//"?*) ;; *) fail "the run did not finish (status: $state)" ;; esac

echo
"$kubectl" get scanpolicies -A -o wide
echo
uri=$("$kubectl" -n "$DEMO_NAMESPACE" get scanpolicy "$DEMO_POLICY" -o 'jsonpath={.status.lastRun.reportUri}')
local_dir="$dir/report"
"$PY" - "$endpoint" "$uri" "$local_dir" <<'PY'
import pathlib, sys, boto3
endpoint, uri, out = sys.argv[1:]
bucket, _, key = uri.removeprefix("s3://").partition("/")
folder = key.rsplit("/", 1)[0] + "/"
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="demo", aws_secret_access_key="demo")
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder):
    for obj in page.get("Contents", []):
        path = pathlib.Path(out) / obj["Key"][len(folder):]
        path.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, obj["Key"], str(path))
PY
events=$("$kubectl" -n "$DEMO_NAMESPACE" get events --field-selector "involvedObject.name=$DEMO_POLICY" \
  --sort-by=.metadata.creationTimestamp -o 'jsonpath={range .items[*]}{.reason} {end}')
echo "report: $uri (moto at $endpoint)"
echo "        copied to $local_dir/index.html"
echo "events: $events"
echo "logs:   $dir/operator.log, $dir/moto.log, $dir/cluster.log"
if [ "$DEMO_HOLD" = "1" ]; then
  echo
  echo "  export KUBECONFIG=$KUBECONFIG"
  echo "  $kubectl describe scanpolicy $DEMO_POLICY"
  # shellcheck disable=SC2016  # printed for the reader to run: $(date +%s) must stay unexpanded
  echo '  '"$kubectl"' annotate scanpolicy '"$DEMO_POLICY"' ecsscan.io/run-now=$(date +%s) --overwrite'
  echo "  curl -s localhost:$DEMO_METRICS_PORT/metrics | grep ^ecsscan_"
  echo "Press Ctrl-C to stop."
  wait -n "${pids[@]}" || true
fi
