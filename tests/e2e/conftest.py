"""Fixtures for the operator's end-to-end tests: the CRD on a real API server, moto with the demo
fleet, and operator processes (`python -m ecs_scan_operator.controller`, as in the image).

Each test gets a fresh namespace and the operators it starts watch only that namespace, so tests
do not see each other's policies. Operator processes are stopped by their own pid at teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import boto3
import pytest

from ecs_scan_operator.demo.fleet import FleetInfo, seed_fleet
from tests.cluster.fixtures import Kubectl
from tests.cluster.localcluster import LocalCluster
from tests.support.moto_fixtures import free_port

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "scanpolicies.ecsscan.io.yaml"
GROUP, VERSION, PLURAL = "ecsscan.io", "v1alpha1", "scanpolicies"
RUN_NOW = "ecsscan.io/run-now"
NEVER = "0 0 1 1 *"  # once a year: never fires during a test
T = TypeVar("T")


def wait_for(
    what: str, probe: Callable[[], T | Literal[False] | None], timeout: float = 60, interval: float = 0.5
) -> T:
    """Poll until probe() returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    last: T | Literal[False] | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="session")
def scanpolicy_crd(kube_cluster: LocalCluster, kubectl: Kubectl) -> str:
    """The ScanPolicy CRD, applied and established."""
    kubectl("apply", "--server-side", "-f", str(CRD_PATH))
    kubectl("wait", "--for=condition=Established", "crd/scanpolicies.ecsscan.io", "--timeout=60s")
    return "scanpolicies.ecsscan.io"


@pytest.fixture(scope="session")
def demo_fleet(moto_server: str) -> FleetInfo:
    """The demo fleet seeded into the session's moto server (shared: tests use their own prefixes)."""
    return seed_fleet(moto_server)


class Api:
    """ScanPolicy, Event and Lease calls as the admin, for one namespace."""

    def __init__(self, cluster: LocalCluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"

    def create(self, manifest: dict[str, Any], *, dry_run: bool = False) -> tuple[int, Any]:
        """POST with strict field validation (as kubectl apply does)."""
        query = "?fieldValidation=Strict" + ("&dryRun=All" if dry_run else "")
        return self.cluster.request("POST", self.base + query, manifest)

    def get(self, name: str) -> dict[str, Any]:
        status, body = self.cluster.request("GET", f"{self.base}/{name}")
        assert status == 200, body
        result: dict[str, Any] = body
        return result

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.get(name).get("status") or {})

    def patch(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        status, body = self.cluster.request(
            "PATCH", f"{self.base}/{name}", patch, content_type="application/merge-patch+json"
        )
        assert status == 200, body
        result: dict[str, Any] = body
        return result

    def run_now(self, name: str, value: str) -> None:
        self.patch(name, {"metadata": {"annotations": {RUN_NOW: value}}})

    def delete(self, name: str) -> None:
        self.cluster.request("DELETE", f"{self.base}/{name}")

    def exists(self, name: str) -> bool:
        status, _ = self.cluster.request("GET", f"{self.base}/{name}")
        return status == 200

    def events(self, name: str) -> list[dict[str, Any]]:
        selector = urllib.parse.quote(f"involvedObject.name={name}")
        status, body = self.cluster.request(
            "GET", f"/api/v1/namespaces/{self.namespace}/events?fieldSelector={selector}"
        )
        assert status == 200, body
        items: list[dict[str, Any]] = body.get("items", [])
        return sorted(items, key=lambda e: str(e.get("firstTimestamp") or e.get("eventTime") or ""))

    def event_reasons(self, name: str) -> list[str]:
        out = []
        for event in self.events(name):
            out += [str(event["reason"])] * int(event.get("count") or 1)
        return out


@pytest.fixture
def api(kube_cluster: LocalCluster, kube_namespace: str, scanpolicy_crd: str) -> Api:
    """The API of this test's namespace (the CRD installed)."""
    return Api(kube_cluster, kube_namespace)


def policy(
    name: str,
    namespace: str,
    *,
    schedule: str = NEVER,
    run_now: str | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A ScanPolicy for the demo fleet, reports under a prefix of its own."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if run_now is not None:
        metadata["annotations"] = {RUN_NOW: run_now}
    body: dict[str, Any] = {
        "schedule": schedule,
        "aws": {"region": "us-east-1"},
        "taskDefinitions": {"include": ["payments-*", "orders-*", "platform-*"]},
        "report": {"s3": {"bucket": "ecs-scan-reports", "prefix": f"e2e/{namespace}"}},
    }
    body.update(spec)
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ScanPolicy", "metadata": metadata, "spec": body}


E2E_STATE_KEY = "e2e-state-key-not-a-secret-0123456789"


def s3_object(moto_url: str, key: str) -> bytes:
    """One object of the e2e report bucket."""
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    body: bytes = s3.get_object(Bucket="ecs-scan-reports", Key=key)["Body"].read()
    return body


def report_runs(moto_url: str, namespace: str, name: str) -> dict[str, list[str]]:
    """Run id -> object keys written under the policy's report folders in S3."""
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    runs: dict[str, list[str]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket="ecs-scan-reports", Prefix=f"e2e/{namespace}/"
    ):
        for obj in page.get("Contents", []):
            parts = obj["Key"].split("/")
            # e2e/<ns>/<date>/<ns>/<policy>/<runId>/...
            if len(parts) > 6 and parts[3] == namespace and parts[4] == name:
                runs.setdefault(parts[5], []).append(obj["Key"])
    return runs


@dataclass
class Operator:
    """One operator process."""

    identity: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    metrics_port: int
    health_port: int
    env: dict[str, str] = field(repr=False)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_log(self, text: str, timeout: float = 60) -> None:
        wait_for(f"{self.identity} to log {text!r}", lambda: text in self.log() or not self.alive(), timeout)
        assert self.alive() or text in self.log(), f"{self.identity} exited:\n{self.log()[-3000:]}"

    def kill(self) -> None:
        """SIGKILL: no cleanup, as when a node dies."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, as the kubelet does; SIGKILL after `timeout`."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.proc.returncode)

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def health(self) -> dict[str, Any]:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=5) as resp:
            data: dict[str, Any] = json.loads(resp.read() or b"{}")
            return data


StartOperator = Callable[..., Operator]


@pytest.fixture
def start_operator(
    kube_cluster: LocalCluster, moto_server: str, demo_fleet: FleetInfo, kube_namespace: str, tmp_path: Path
) -> Iterator[StartOperator]:
    """Start operator processes watching this test's namespace; all are stopped at teardown."""
    started: list[Operator] = []

    def start(
        identity: str = "op-1", *, leader_election: bool = False, kopf_run: bool = False, **env: str
    ) -> Operator:
        """`python -m ecs_scan_operator.controller`, or `kopf run -m ...controller.main` with kopf_run."""
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AWS_", "ECS_SCAN_", "KUBECONFIG", "POD_", "KUBERNETES_"))
        }
        metrics_port, health_port = free_port(), free_port()
        full = {
            **base,
            "PYTHONUNBUFFERED": "1",
            "KUBECONFIG": kube_cluster.kubeconfig,
            "AWS_ENDPOINT_URL": moto_server,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "POD_NAME": identity,
            "POD_NAMESPACE": kube_namespace,
            "ECS_SCAN_WATCH_NAMESPACES": kube_namespace,
            "ECS_SCAN_METRICS_PORT": str(metrics_port),
            "ECS_SCAN_HEALTH_PORT": str(health_port),
            "ECS_SCAN_LEADER_ELECTION": "true" if leader_election else "false",
            "ECS_SCAN_LEASE_DURATION_SECONDS": "6",
            "ECS_SCAN_RETRY_PERIOD_SECONDS": "1",
            "ECS_SCAN_RESYNC_SECONDS": "5",
            "ECS_SCAN_CANCEL_GRACE_SECONDS": "15",
            "ECS_SCAN_STATE_KEY": E2E_STATE_KEY,  # as the chart's Secret provides it
            **env,
        }
        log_path = tmp_path / f"{identity}-{len(started)}.log"
        with log_path.open("wb") as log:
            command = [sys.executable, "-m", "ecs_scan_operator.controller"]
            if kopf_run:
                command = [
                    *(sys.executable, "-m", "kopf", "run", "-m", "ecs_scan_operator.controller.main"),
                    *("--standalone", "--namespace", kube_namespace),
                    f"--liveness=http://0.0.0.0:{health_port}/healthz",
                ]
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full,
                cwd=ROOT,
                start_new_session=True,  # its own process group: killed as one, by pid
            )
        op = Operator(identity, proc, log_path, metrics_port, health_port, full)
        started.append(op)
        wait_for(f"{identity}'s liveness endpoint", lambda: _answers(op), timeout=60)
        return op

    yield start
    for op in started:
        op.terminate(timeout=20)


def _answers(op: Operator) -> bool:
    if not op.alive():
        raise AssertionError(f"{op.identity} exited with {op.proc.returncode}:\n{op.log()[-3000:]}")
    try:
        op.health()
    except OSError:
        return False
    return True
