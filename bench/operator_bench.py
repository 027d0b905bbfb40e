"""The operator at scale (issue 18): N ScanPolicies on a real local control plane, then K run-now at once.

    make bench-operator N=5000    # python -m bench.operator_bench --policies 5000 (50 namespaces, K=100)

Starts etcd + kube-apiserver (tests/cluster, with an audit log), moto's server with the demo fleet,
and the operator as a subprocess (`python -m ecs_scan_operator.controller`, default settings,
all namespaces, the image's MALLOC_ARENA_MAX), under an identity of its own (`operator`, bound
to cluster-admin) so that the audit log tells its requests from the benchmark's. Then:

1. N copies of examples/scanpolicy.yaml over the namespaces (created by parallel POSTs); the
   time from the first create until every policy has a status (observedGeneration set);
2. idle: resident memory (VmRSS of the operator's process) and the operator's API requests per
   minute over an idle window (audit events of its identity);
3. the run-now annotation on K policies at once: peak RSS while they run, the time until all K
   finished (status.lastRunNow is the value, no activeRun), and that each ran exactly once (one
   report folder per policy in S3, none for the others), then RSS once idle again.

Writes bench/results/operator-<N>.json and the "Operator at scale" table in bench/RESULTS.md (the
table has one row per N measured so far). Timings are noisy on a shared machine; memory is not.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
RESULTS_MD = ROOT / "bench" / "RESULTS.md"
EXAMPLE = ROOT / "examples" / "scanpolicy.yaml"
CRD = ROOT / "crds" / "scanpolicies.ecsscan.io.yaml"
GROUP, VERSION, PLURAL = "ecsscan.io", "v1alpha1", "scanpolicies"
RUN_NOW = "ecsscan.io/run-now"
OPERATOR_USER = "operator"
REPORT_BUCKET = "ecs-scan-reports"
SECTION = "## Operator at scale"
# As in the image (Dockerfile) and the chart: glibc keeps at most two malloc arenas.
IMAGE_ENV = {"MALLOC_ARENA_MAX": "2"}
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
  - level: Metadata
    users: ["operator"]
  - level: None
"""

Request = Callable[..., tuple[int, Any]]


# --------------------------------------------------------------------------- helpers


class PooledApi:
    """`LocalCluster.request` over kept-alive TLS connections (bulk creates without a handshake each)."""

    def __init__(self, server: str, ca_file: str, token: str, connections: int = 16) -> None:
        import urllib3

        self.server = server
        self._pool = urllib3.PoolManager(num_pools=2, maxsize=connections, ca_certs=ca_file)
        self._auth = f"Bearer {token}"

    def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> tuple[int, Any]:
        headers = {"Authorization": self._auth, "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        resp = self._pool.request(method, self.server + path, body=data, headers=headers, timeout=timeout)
        text = resp.data.decode(errors="replace")
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB, from /proc."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RssSampler:
    """Samples a process's VmRSS in a thread; `peak()` since the last `reset()`."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid, self.interval = pid, interval
        self._peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(OSError):
                self._peak = max(self._peak, rss_mib(self.pid)[0])

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def reset(self) -> None:
        self._peak = rss_mib(self.pid)[0]

    def peak(self) -> float:
        return max(self._peak, rss_mib(self.pid)[0])


def wait_until(what: str, probe: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
    """Poll until probe() is truthy; raise naming `what`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def policy_manifests(n: int, namespaces: Sequence[str]) -> list[dict[str, Any]]:
    """n copies of examples/scanpolicy.yaml, named policy-00000..., round-robin over the namespaces."""
    example = yaml.safe_load(EXAMPLE.read_text())
    out = []
    for i in range(n):
        doc = copy.deepcopy(example)
        doc["metadata"] = {"name": f"policy-{i:05d}", "namespace": namespaces[i % len(namespaces)]}
        out.append(doc)
    return out


def create_namespaces(request: Request, namespaces: Sequence[str]) -> None:
    """Create the namespaces (an existing one is fine)."""
    for ns in namespaces:
        status, body = request(
            "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        )
        if status not in (201, 409):
            raise RuntimeError(f"namespace {ns}: {status} {body}")


def create_policies(request: Request, manifests: Sequence[dict[str, Any]], workers: int = 16) -> None:
    """POST every manifest, `workers` at a time; raise on the first failure."""

    def one(doc: dict[str, Any]) -> None:
        ns = doc["metadata"]["namespace"]
        status, body = request("POST", f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}", doc)
        if status != 201:
            raise RuntimeError(f"create {ns}/{doc['metadata']['name']}: {status} {str(body)[:300]}")

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, manifests))


def list_policies(request: Request, namespaces: Sequence[str]) -> list[dict[str, Any]]:
    """Every ScanPolicy in the namespaces."""
    items: list[dict[str, Any]] = []
    for ns in namespaces:
        status, body = request("GET", f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}", timeout=120)
        if status != 200:
            raise RuntimeError(f"list {ns}: {status} {str(body)[:300]}")
        items += body.get("items", [])
    return items


def without_status(items: Sequence[dict[str, Any]]) -> list[str]:
    """The policies whose status the operator has not written yet."""
    return [
        f"{i['metadata']['namespace']}/{i['metadata']['name']}"
        for i in items
        if (i.get("status") or {}).get("observedGeneration") != i["metadata"].get("generation")
    ]


def annotate_run_now(request: Request, keys: Sequence[str], value: str, workers: int = 16) -> None:
    """Set the run-now annotation on each namespace/name, all at once."""

    def one(key: str) -> None:
        ns, name = key.split("/")
        status, body = request(
            "PATCH",
            f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}/{name}",
            {"metadata": {"annotations": {RUN_NOW: value}}},
            content_type="application/merge-patch+json",
        )
        if status != 200:
            raise RuntimeError(f"annotate {key}: {status} {str(body)[:300]}")

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, keys))


def run_now_finished(items: Sequence[dict[str, Any]], keys: set[str], value: str) -> dict[str, str]:
    """namespace/name -> lastRun.id of those of `keys` whose run for `value` finished."""
    done = {}
    for i in items:
        key = f"{i['metadata']['namespace']}/{i['metadata']['name']}"
        st = i.get("status") or {}
        if key in keys and st.get("lastRunNow") == value and "activeRun" not in st and st.get("lastRun"):
            done[key] = str(st["lastRun"]["id"])
    return done


def report_runs(moto_url: str, prefix: str) -> dict[str, set[str]]:
    """namespace/name -> run ids with a report folder under <prefix>/<date>/<ns>/<policy>/<runId>/."""
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",  # noqa: S106 - moto accepts any
    )
    runs: dict[str, set[str]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=REPORT_BUCKET, Prefix=f"{prefix}/"):
        for obj in page.get("Contents", []):
            parts = obj["Key"].split("/")
            if len(parts) > 5:
                runs.setdefault(f"{parts[2]}/{parts[3]}", set()).add(parts[4])
    return runs


def check_runs_once(
    finished: dict[str, str], reports: dict[str, set[str]], keys: set[str]
) -> tuple[list[str], list[str]]:
    """(lost, repeated): policies of `keys` without exactly their one run; runs of any other policy."""
    lost = sorted(k for k in keys if k not in finished or reports.get(k) != {finished[k]})
    repeated = sorted(k for k, ids in reports.items() if (k in keys and len(ids) > 1) or k not in keys)
    return lost, repeated


def audit_counts(path: Path, since: float, until: float, user: str = OPERATOR_USER) -> Counter[str]:
    """The user's API requests that completed in [since, until) (Unix time), by `verb resource`."""
    counts: Counter[str] = Counter()
    if not path.exists():
        return counts
    with path.open() as fh:
        for line in fh:
            ev = json.loads(line)
            if (ev.get("user") or {}).get("username") != user:
                continue
            when = datetime.fromisoformat(ev["stageTimestamp"].replace("Z", "+00:00")).timestamp()
            if since <= when < until:
                ref = ev.get("objectRef") or {}
                res = ref.get("resource", ev.get("requestURI", "?").split("?")[0])
                if ref.get("subresource"):
                    res += "/" + ref["subresource"]
                counts[f"{ev.get('verb')} {res}"] += 1
    return counts


# --------------------------------------------------------------------------- processes


@dataclass
class OperatorProcess:
    """The operator as a subprocess of its own session."""

    proc: subprocess.Popen[bytes]
    log: Path
    health_port: int
    env: dict[str, str] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def healthy(self) -> bool:
        import urllib.request

        if self.proc.poll() is not None:
            raise RuntimeError(f"the operator exited with {self.proc.returncode}:\n{self.tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=5):
                return True
        except OSError:
            return False

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


def operator_env(
    kubeconfig: str, moto_url: str, health_port: int, metrics_port: int, **extra: str
) -> dict[str, str]:
    """The operator's environment: default settings, emulated AWS, the image's malloc setting."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "ECS_SCAN_", "KUBECONFIG", "POD_", "KUBERNETES_", "MALLOC_"))
    }
    return {
        **base,
        **IMAGE_ENV,
        "PYTHONUNBUFFERED": "1",
        "KUBECONFIG": kubeconfig,
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POD_NAME": "bench-operator",
        "ECS_SCAN_HEALTH_PORT": str(health_port),
        "ECS_SCAN_METRICS_PORT": str(metrics_port),
        **extra,
    }


@contextlib.contextmanager
def operator_process(env: dict[str, str], log: Path, health_port: int) -> Iterator[OperatorProcess]:
    """Start `python -m ecs_scan_operator.controller`; SIGTERM (then SIGKILL) its group at the end."""
    from tests.support.processes import background_process

    cmd = [sys.executable, "-m", "ecs_scan_operator.controller"]
    with background_process(cmd, env, log, cwd=ROOT, grace=30) as proc:
        op = OperatorProcess(proc, log, health_port, env)
        wait_until("the operator's liveness endpoint", op.healthy, timeout=120, interval=0.5)
        yield op


# --------------------------------------------------------------------------- the scenario


@dataclass
class Scenario:
    """One benchmark scenario against running servers; `run()` returns the measurements."""

    request: Request
    moto_url: str
    pid: int  # the operator's process
    namespaces: list[str]
    policies: int
    run_now: int
    settle_seconds: float = 20.0
    idle_seconds: float = 330.0
    audit_log: Path | None = None
    timeout: float = 1800.0
    # ECS_SCAN_TRACEMALLOC_FILE of the operator: SIGUSR1 after the idle window and after the burst
    profile: str | None = None
    _snapshots: int = 0
    progress: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)

    def run(self) -> dict[str, Any]:  # noqa: PLR0915 - the benchmark script, step by step in the order it reports
        out: dict[str, Any] = {"policies": self.policies, "namespaces": len(self.namespaces)}
        out["rssStartMiB"] = rss_mib(self.pid)[0]
        manifests = policy_manifests(self.policies, self.namespaces)
        prefix = manifests[0]["spec"]["report"]["s3"]["prefix"]
        with RssSampler(self.pid) as sampler:
            self.progress(f"creating {self.policies} policies in {len(self.namespaces)} namespaces ...")
            t0, cpu0 = time.monotonic(), cpu_seconds(self.pid)
            create_namespaces(self.request, self.namespaces)
            create_policies(self.request, manifests)
            out["createSeconds"] = round(time.monotonic() - t0, 1)
            self.progress(f"  created in {out['createSeconds']} s; waiting for every status ...")
            wait_until(
                "every policy to have a status",
                lambda: not without_status(list_policies(self.request, self.namespaces)),
                timeout=self.timeout,
                interval=2.0,
            )
            out["allStatusSeconds"] = round(time.monotonic() - t0, 1)
            out["operatorCpuApplySeconds"] = round(cpu_seconds(self.pid) - cpu0, 1)
            out["rssPeakApplyMiB"] = round(sampler.peak(), 1)
            self.progress(f"  every policy has a status after {out['allStatusSeconds']} s")

            # idle: nothing changes; the benchmark itself sends no request during the window
            time.sleep(self.settle_seconds)
            since = time.time()
            samples = []
            end = time.monotonic() + self.idle_seconds
            while time.monotonic() < end:
                samples.append(rss_mib(self.pid)[0])
                time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            until = time.time()
            out["rssIdleMiB"] = round(max(samples), 1)
            self._snapshot()
            if self.audit_log is not None:
                time.sleep(1)
                counts = audit_counts(self.audit_log, since, until)
                minutes = (until - since) / 60
                out["idleRequestsPerMinute"] = round(sum(counts.values()) / minutes, 1)
                out["idleRequests"] = dict(counts)
            self.progress(
                f"  idle: RSS {out['rssIdleMiB']} MiB, "
                f"{out.get('idleRequestsPerMinute', '?')} API requests/min"
            )

            # the burst: K run-now annotations at once
            keys = sorted({f"{m['metadata']['namespace']}/{m['metadata']['name']}" for m in manifests})
            step = max(1, len(keys) // max(1, self.run_now))
            chosen = set(keys[::step][: self.run_now])
            value = f"bench-{int(time.time())}"
            sampler.reset()
            self.progress(f"run-now on {len(chosen)} policies ...")
            t1, cpu1 = time.monotonic(), cpu_seconds(self.pid)
            annotate_run_now(self.request, sorted(chosen), value)
            finished = wait_until(
                f"{len(chosen)} run-now runs to finish",
                lambda: (
                    (d := run_now_finished(list_policies(self.request, self.namespaces), chosen, value))
                    and len(d) == len(chosen)
                    and d
                ),
                timeout=self.timeout,
                interval=2.0,
            )
            out["runNow"] = len(chosen)
            out["runNowSeconds"] = round(time.monotonic() - t1, 1)
            out["operatorCpuRunNowSeconds"] = round(cpu_seconds(self.pid) - cpu1, 1)
            out["rssPeakBurstMiB"] = round(sampler.peak(), 1)
            self.progress(
                f"  {len(finished)} finished in {out['runNowSeconds']} s, "
                f"peak RSS {out['rssPeakBurstMiB']} MiB"
            )
            time.sleep(self.settle_seconds)
            out["rssAfterMiB"] = round(rss_mib(self.pid)[0], 1)
            self._snapshot()
            out["vmHwmMiB"] = round(rss_mib(self.pid)[1], 1)
        reports = {
            k: v for k, v in report_runs(self.moto_url, prefix).items() if k.split("/")[0] in self.namespaces
        }
        lost, repeated = check_runs_once(finished, reports, chosen)
        out["runNowFinished"] = len(finished)
        out["runsLost"], out["runsRepeated"] = lost, repeated
        return out

    def _snapshot(self) -> None:
        if self.profile is None:
            return
        self._snapshots += 1
        os.kill(self.pid, signal.SIGUSR1)
        path = Path(self.profile)
        # The dump takes a while (the operator writes the text after the raw snapshot); wait for it
        # so it is neither cut short by the end of the benchmark nor part of the next measurement.
        wait_until(
            f"tracemalloc dump {self._snapshots}",
            lambda: (
                path.exists()
                and sum(line.startswith("=== snapshot ") for line in path.read_text().splitlines())
                >= self._snapshots
            ),
            timeout=600,
        )


def _git_commit() -> str:
    """The commit, "+dirty" when the operator's code has uncommitted changes."""
    try:
        sha, dirty = (
            subprocess.run(  # noqa: S603 -- fixed arguments
                ["git", *args],  # noqa: S607 -- git from PATH, as make does
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            ).stdout.strip()
            for args in (["rev-parse", "--short", "HEAD"], ["status", "--porcelain", "operator"])
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Start the servers and the operator, run the scenario, stop everything."""
    from tests.cluster.localcluster import LocalCluster
    from tests.support.moto_fixtures import free_port, start_moto

    from ecs_scan_operator.demo.fleet import seed_fleet

    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    audit_policy = work / "audit-policy.yaml"
    audit_policy.write_text(AUDIT_POLICY)
    audit_log = work / "audit.log"
    audit_log.unlink(missing_ok=True)
    namespaces = [f"bench-{i:02d}" for i in range(args.namespaces)]
    cluster = LocalCluster(
        users=[OPERATOR_USER],
        extra_apiserver_args=[
            f"--audit-policy-file={audit_policy}",
            f"--audit-log-path={audit_log}",
            "--audit-log-maxsize=2000",
            "--max-requests-inflight=800",
            "--max-mutating-requests-inflight=400",
        ],
    )
    moto, moto_url = start_moto()
    try:
        with cluster:
            seed_fleet(moto_url)
            request: Request = PooledApi(cluster.server, cluster.ca_file, cluster.token_for("admin"))
            crd = yaml.safe_load(CRD.read_text())
            status, body = request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
            if status not in (201, 409):
                raise RuntimeError(f"CRD: {status} {body}")
            wait_until(
                "the CRD to be served",
                lambda: request("GET", f"/apis/{GROUP}/{VERSION}/{PLURAL}")[0] == 200,
                timeout=60,
            )
            status, body = request(
                "POST",
                "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": {"name": "bench-operator"},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": "cluster-admin",
                    },
                    "subjects": [
                        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": OPERATOR_USER}
                    ],
                },
            )
            if status not in (201, 409):
                raise RuntimeError(f"binding: {status} {body}")
            kubeconfig = cluster.write_kubeconfig(work / "operator.kubeconfig", OPERATOR_USER)
            health, metrics = free_port(), free_port()
            env = operator_env(
                kubeconfig, moto_url, health, metrics, **dict(e.split("=", 1) for e in args.env)
            )
            with operator_process(env, work / "operator.log", health) as op:
                scenario = Scenario(
                    request=request,
                    moto_url=moto_url,
                    pid=op.pid,
                    namespaces=namespaces,
                    policies=args.policies,
                    run_now=args.run_now,
                    settle_seconds=args.settle,
                    idle_seconds=args.idle,
                    audit_log=audit_log,
                    profile=env.get("ECS_SCAN_TRACEMALLOC_FILE"),
                )
                out = scenario.run()
                out["operatorLog"] = str(op.log)
    finally:
        moto.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            moto.wait(10)
    out.update(
        command=os.environ.get("BENCH_COMMAND")
        or " ".join(["python -m bench.operator_bench", *sys.argv[1:]]),
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        commit=_git_commit(),
        env=IMAGE_ENV | dict(e.split("=", 1) for e in args.env),
        nproc=os.cpu_count(),
    )
    return out


# --------------------------------------------------------------------------- the report


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def render_section(results: Sequence[dict[str, Any]]) -> str:
    """The "Operator at scale" table (one row per N) and, for N=5000, the issue's targets."""
    lines = [
        SECTION,
        "",
        "Written by `bench/operator_bench.py` (`make bench-operator N=...`); the breakdown below the table "
        "is by hand. The operator (`python -m ecs_scan_operator.controller`, default settings, all "
        "namespaces, `MALLOC_ARENA_MAX=2` as in the image) against the local kube-apiserver + etcd, "
        "moto's server with the demo fleet, N copies of `examples/scanpolicy.yaml`; then the run-now "
        "annotation on K of them at once. RSS is the operator process's VmRSS; API requests are the "
        "operator's own (audit log of its identity) over an idle window longer than the default "
        "resync (330 s). Timings are noisy (2 shared cores, the API server, etcd and moto on the same "
        "machine); the memory figures are what "
        "the chart's limit is sized from.",
        "",
        "| policies | namespaces | every policy had a status after | RSS idle | RSS peak during the "
        "run-now burst | API requests/min while idle | K run-now finished | lost / repeated | RSS after | "
        "command, commit |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results, key=lambda r: int(r["policies"])):
        lines.append(
            f"| {r['policies']:,} | {r['namespaces']} | {r['allStatusSeconds']:.0f} s | "
            f"{r['rssIdleMiB']:.0f} MiB | {r['rssPeakBurstMiB']:.0f} MiB (K={r['runNow']}) | "
            f"{r.get('idleRequestsPerMinute', '-')} | {r['runNowFinished']}/{r['runNow']} in "
            f"{r['runNowSeconds']:.0f} s | {len(r['runsLost'])} / {len(r['runsRepeated'])} | "
            f"{r['rssAfterMiB']:.0f} MiB | `{r['command']}`, {r['commit']}, {r['date']} |"
        )
    big = [r for r in results if int(r["policies"]) == 5000]
    if big:
        r = big[0]
        lines += [
            "",
            "Targets at 5,000 policies in 50 namespaces (issue 18):",
            "",
            "| target | measured | result |",
            "|---|---|---|",
            f"| idle RSS at most 256 MiB | {r['rssIdleMiB']:.0f} MiB "
            f"| **{_verdict(r['rssIdleMiB'] <= 256)}** |",
            f"| peak RSS at most 400 MiB with 100 run-now at once | {r['rssPeakBurstMiB']:.0f} MiB "
            f"(K={r['runNow']}) | **{_verdict(r['rssPeakBurstMiB'] <= 400 and r['runNow'] >= 100)}** |",
            f"| every policy with a status within 120 s of the bulk apply | {r['allStatusSeconds']:.0f} s "
            f"| **{_verdict(r['allStatusSeconds'] <= 120)}** |",
            f"| idle API traffic at most 30 requests/min | {r.get('idleRequestsPerMinute', '-')} "
            f"| **{_verdict(float(r.get('idleRequestsPerMinute', 1e9)) <= 30)}** |",
            f"| no run lost or repeated | {len(r['runsLost'])} lost, {len(r['runsRepeated'])} repeated "
            f"| **{_verdict(not r['runsLost'] and not r['runsRepeated'])}** |",
        ]
    return "\n".join(lines) + "\n"


def update_results_md(path: Path, table: str) -> None:
    """Replace the generated part of the section (up to its `<!-- end operator table -->`), keep the rest."""
    marker = "<!-- end operator table -->"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    start = text.find(SECTION)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + table + marker + "\n"
    else:
        end = text.find(marker, start)
        rest = text[end:] if end >= 0 else marker + "\n" + text[start + len(SECTION) :]
        text = text[:start] + table + rest
    path.write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """Measure one N, save its JSON, re-render the section."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--policies", "-n", type=int, default=200)
    parser.add_argument(
        "--namespaces", type=int, default=0, help="default: one per 100 policies (at least 1)"
    )
    parser.add_argument("--run-now", "-k", type=int, default=0, help="default: N/50, at least 1, at most 100")
    parser.add_argument(
        "--idle",
        type=float,
        default=330.0,
        help="idle window for RSS and API requests (s; > the 300 s resync)",
    )
    parser.add_argument("--settle", type=float, default=20.0, help="wait before the idle window (s)")
    parser.add_argument("--env", action="append", default=[], help="extra operator env, KEY=VALUE")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--out", type=Path, default=RESULTS_MD)
    parser.add_argument("--work", type=Path, default=ROOT / ".out" / "bench-operator")
    args = parser.parse_args(argv)
    args.namespaces = args.namespaces or max(1, args.policies // 100)
    args.run_now = args.run_now or min(100, max(1, args.policies // 50))
    if args.policies == 5000 and args.namespaces == 50 and args.run_now < 100:
        args.run_now = 100
    data = measure(args)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / f"operator-{args.policies}.json").write_text(
        json.dumps(data, indent=1), encoding="utf-8"
    )
    results = [
        json.loads(p.read_text(encoding="utf-8"))
        for p in sorted(args.results_dir.glob("operator-*.json"))
        if re.fullmatch(r"operator-\d+", p.stem)
    ]
    table = render_section(results)
    update_results_md(args.out, table)
    print(table)
    return 0 if not data["runsLost"] and not data["runsRepeated"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
