"""Runner mode job against a real kube-apiserver (no Job controller or kubelet: the test plays them).

The operator process creates real Jobs and ConfigMaps (the API server validates them); the test
then does what the Job controller and the kubelet would: it runs the Job's container command as
a local process (against moto, on the pinned spec from the ConfigMap), creates the Pod object
with the termination message the command wrote, and marks the Job Complete or Failed. The e2e
scenarios with a real kube-controller-manager, kube-scheduler and node agent are in
test_jobs_cluster.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ecs_scan_operator.core import jobs
from tests.cluster.localcluster import LocalCluster
from tests.e2e.conftest import Api, StartOperator, policy, report_runs, wait_for

pytestmark = pytest.mark.e2e

IMAGE = "registry.example/ecs-scan-operator:e2e"
CLI = str(Path(sys.executable).parent / "ecs-scan-operator")


def job_env(moto_server: str, **extra: str) -> dict[str, str]:
    return {
        "ECS_SCAN_RUNNER_MODE": "job",
        "ECS_SCAN_JOB_IMAGE": IMAGE,
        "ECS_SCAN_JOB_POLL_SECONDS": "2",
        "ECS_SCAN_JOB_ENV": json.dumps({"AWS_ENDPOINT_URL": moto_server, "AWS_DEFAULT_REGION": "us-east-1"}),
        **extra,
    }


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Cluster:
    """The Job controller's and the kubelet's part, played by the test."""

    def __init__(self, cluster: LocalCluster, namespace: str) -> None:
        self.cluster = cluster
        self.ns = namespace

    def jobs(self, policy_uid: str | None = None) -> list[dict[str, Any]]:
        selector = (
            jobs.policy_selector(policy_uid) if policy_uid else f"{jobs.LABEL_MANAGED_BY}={jobs.MANAGED_BY}"
        )
        status, body = self.cluster.request(
            "GET", f"/apis/batch/v1/namespaces/{self.ns}/jobs?labelSelector={selector}"
        )
        assert status == 200, body
        items: list[dict[str, Any]] = body["items"]
        return items

    def config_map(self, name: str) -> dict[str, Any]:
        status, body = self.cluster.request("GET", f"/api/v1/namespaces/{self.ns}/configmaps/{name}")
        assert status == 200, body
        result: dict[str, Any] = body
        return result

    def run_container(self, job: dict[str, Any], tmp: Path, moto_server: str) -> tuple[int, str]:
        """The container's command as a local process: the pinned spec and termination log in tmp."""
        name = job["metadata"]["name"]
        (container,) = job["spec"]["template"]["spec"]["containers"]
        spec_file = tmp / name / jobs.SPEC_KEY
        spec_file.parent.mkdir(parents=True)
        spec_file.write_text(self.config_map(name)["data"][jobs.SPEC_KEY])
        log = tmp / name / "termination-log"
        cmd = [CLI if c == "ecs-scan-operator" else c for c in container["command"]]
        cmd = [str(spec_file) if c.startswith(jobs.SPEC_DIR) else c for c in cmd]
        cmd = [str(log) if c == container["terminationMessagePath"] else c for c in cmd]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECS_SCAN_", "KUBECONFIG"))}
        env.update({e["name"]: e["value"] for e in container["env"]})
        env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_ENDPOINT_URL=moto_server)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
        message = log.read_text() if log.exists() else ""
        return done.returncode, message

    def pod(
        self, job: dict[str, Any], terminated: dict[str, Any] | None = None, waiting: str | None = None
    ) -> None:
        """The Pod of the Job, as the Job controller creates it and the kubelet reports it."""
        name = job["metadata"]["name"]
        labels = {**job["spec"]["template"]["metadata"]["labels"], "job-name": name}
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{name}-pod", "namespace": self.ns, "labels": labels},
            "spec": {
                "containers": [{"name": "scan", "image": IMAGE}],
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
            },
        }
        status, created = self.cluster.request("POST", f"/api/v1/namespaces/{self.ns}/pods", body)
        assert status == 201, created
        state: dict[str, Any] = {"terminated": terminated} if terminated else {"waiting": {"reason": waiting}}
        phase = (
            "Pending"
            if waiting
            else ("Succeeded" if terminated and terminated["exitCode"] == 0 else "Failed")
        )
        if terminated:
            terminated.setdefault("startedAt", now())
            terminated.setdefault("finishedAt", now())
        pod_status = {
            "status": {
                "phase": phase,
                "containerStatuses": [
                    {
                        "name": "scan",
                        "image": IMAGE,
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": state,
                    }
                ],
            }
        }
        status, patched = self.cluster.request(
            "PATCH",
            f"/api/v1/namespaces/{self.ns}/pods/{name}-pod/status",
            pod_status,
            content_type="application/merge-patch+json",
        )
        assert status == 200, patched

    def finish(self, job: dict[str, Any], *, succeeded: bool, reason: str = "") -> None:
        """The Job controller's final status."""
        t = now()
        if succeeded:
            status_ = {
                "startTime": t,
                "completionTime": t,
                "succeeded": 1,
                "conditions": [
                    {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": t},
                    {"type": "Complete", "status": "True", "lastTransitionTime": t},
                ],
            }
        else:
            status_ = {
                "startTime": t,
                "failed": 1,
                "conditions": [
                    {"type": "FailureTarget", "status": "True", "reason": reason, "lastTransitionTime": t},
                    {"type": "Failed", "status": "True", "reason": reason, "lastTransitionTime": t},
                ],
            }
        name = job["metadata"]["name"]
        status, body = self.cluster.request(
            "PATCH",
            f"/apis/batch/v1/namespaces/{self.ns}/jobs/{name}/status",
            {"status": status_},
            content_type="application/merge-patch+json",
        )
        assert status == 200, body


@pytest.fixture
def fake(kube_cluster: LocalCluster, kube_namespace: str) -> Cluster:
    # No ServiceAccount controller here: the namespace's default account is created by hand.
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}
    status, body = kube_cluster.request(
        "POST", f"/api/v1/namespaces/{kube_namespace}/serviceaccounts", account
    )
    assert status in (201, 409), body
    return Cluster(kube_cluster, kube_namespace)


def last_run(api: Api, name: str, run_id: str) -> dict[str, Any] | None:
    last = api.status(name).get("lastRun") or {}
    return last if last.get("id") == run_id and not api.status(name).get("activeRun") else None


def test_a_run_now_becomes_a_job_and_its_result_the_status(
    api: Api, fake: Cluster, start_operator: StartOperator, moto_server: str, tmp_path: Path
) -> None:
    start_operator(**job_env(moto_server))
    t0 = time.monotonic()
    assert api.create(policy("pay", api.namespace, run_now="1"))[0] == 201
    uid = api.get("pay")["metadata"]["uid"]
    (job,) = wait_for("the run's Job", lambda: fake.jobs(uid), timeout=60)
    created = time.monotonic() - t0
    run_id = job["metadata"]["annotations"][jobs.LABEL_RUN_ID]
    assert api.status("pay")["activeRun"]["id"] == run_id
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"]) == ("ScanPolicy", uid)
    cm = fake.config_map(job["metadata"]["name"])
    assert cm["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
    pinned = json.loads(cm["data"][jobs.SPEC_KEY])
    assert pinned["metadata"]["generation"] == api.get("pay")["metadata"]["generation"]

    code, message = fake.run_container(job, tmp_path, moto_server)
    assert code == 0, message
    assert len(message.encode()) <= jobs.TERMINATION_MESSAGE_BYTES
    fake.pod(job, terminated={"exitCode": 0, "reason": "Completed", "message": message})
    t1 = time.monotonic()
    fake.finish(job, succeeded=True)
    last = wait_for("the Job's result in the status", lambda: last_run(api, "pay", run_id), timeout=60)
    recorded = time.monotonic() - t1
    assert last["result"] == "Succeeded" and last["images"] > 0
    assert run_id in report_runs(moto_server, api.namespace, "pay")  # the report the Job's run wrote
    assert last["reportUri"].endswith("index.json")
    wait_for("the RunSucceeded Event", lambda: "RunSucceeded" in api.event_reasons("pay"))
    (started,) = [e for e in api.events("pay") if e["reason"] == "RunStarted"]
    assert started["message"].endswith(f"as Job {job['metadata']['name']}")
    print(f"\n[jobs] due -> Job created {created:.2f} s; Job finished -> status written {recorded:.2f} s")


@pytest.mark.parametrize(
    ("terminated", "reason", "expected"),
    [
        ({"exitCode": 137, "reason": "OOMKilled"}, "BackoffLimitExceeded", "OOMKilled (exit code 137)"),
        (None, "DeadlineExceeded", "DeadlineExceeded"),
        (
            {"exitCode": 1, "reason": "Error", "message": "Traceback (most recent call last)"},
            "BackoffLimitExceeded",
            "not JSON",
        ),
    ],
)
def test_a_job_that_ends_without_a_result_is_run_failed_with_the_reason(
    api: Api,
    fake: Cluster,
    start_operator: StartOperator,
    moto_server: str,
    terminated: dict[str, Any] | None,
    reason: str,
    expected: str,
) -> None:
    start_operator(**job_env(moto_server))
    api.create(policy("pay", api.namespace, run_now="1"))
    uid = api.get("pay")["metadata"]["uid"]
    (job,) = wait_for("the run's Job", lambda: fake.jobs(uid), timeout=60)
    run_id = job["metadata"]["annotations"][jobs.LABEL_RUN_ID]
    if terminated is not None:
        fake.pod(job, terminated=terminated)
    fake.finish(job, succeeded=False, reason=reason)
    last = wait_for("the failure in the status", lambda: last_run(api, "pay", run_id), timeout=60)
    assert last["result"] == "Failed"
    assert reason in last["errors"][0] and expected in last["errors"][0]
    assert "RunFailed" in api.event_reasons("pay")


def test_a_pod_that_cannot_pull_its_image_ends_the_run_and_its_job(
    api: Api, fake: Cluster, start_operator: StartOperator, moto_server: str
) -> None:
    start_operator(**job_env(moto_server, ECS_SCAN_JOB_START_TIMEOUT_SECONDS="10"))
    api.create(policy("pay", api.namespace, run_now="1"))
    uid = api.get("pay")["metadata"]["uid"]
    (job,) = wait_for("the run's Job", lambda: fake.jobs(uid), timeout=60)
    run_id = job["metadata"]["annotations"][jobs.LABEL_RUN_ID]
    fake.pod(job, waiting="ImagePullBackOff")
    last = wait_for("the failure in the status", lambda: last_run(api, "pay", run_id), timeout=60)
    assert "did not start: ImagePullBackOff" in last["errors"][0]
    wait_for(
        "the Job deleted",
        lambda: not fake.jobs(uid) or fake.jobs(uid)[0]["metadata"].get("deletionTimestamp"),
    )


def test_a_job_refused_by_quota_is_run_failed_naming_the_quota(
    api: Api, fake: Cluster, kube_cluster: LocalCluster, start_operator: StartOperator, moto_server: str
) -> None:
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "no-jobs"},
        "spec": {"hard": {"count/jobs.batch": "0"}},
    }
    status, body = kube_cluster.request("POST", f"/api/v1/namespaces/{api.namespace}/resourcequotas", quota)
    assert status == 201, body
    # The resource quota controller's part: the quota's status (nothing used yet).
    status, body = kube_cluster.request(
        "PATCH",
        f"/api/v1/namespaces/{api.namespace}/resourcequotas/no-jobs/status",
        {"status": {"hard": {"count/jobs.batch": "0"}, "used": {"count/jobs.batch": "0"}}},
        content_type="application/merge-patch+json",
    )
    assert status == 200, body
    start_operator(**job_env(moto_server))
    api.create(policy("pay", api.namespace, run_now="1"))
    last = wait_for(
        "the refusal in the status", lambda: (api.status("pay").get("lastRun") or {}).get("errors")
    )
    assert "the Job could not be created" in last[0] and "exceeded quota: no-jobs" in last[0]
    assert api.status("pay")["conditions"][0]["reason"] == "RunFailed"
    assert not fake.jobs()


def test_a_restarted_operator_adopts_the_running_job_and_starts_no_second(
    api: Api, fake: Cluster, start_operator: StartOperator, moto_server: str, tmp_path: Path
) -> None:
    first = start_operator("op-1", **job_env(moto_server))
    api.create(policy("pay", api.namespace, run_now="1"))
    uid = api.get("pay")["metadata"]["uid"]
    (job,) = wait_for("the run's Job", lambda: fake.jobs(uid), timeout=60)
    run_id = job["metadata"]["annotations"][jobs.LABEL_RUN_ID]
    first.kill()
    second = start_operator("op-2", **job_env(moto_server))
    second.wait_log(f"following its Job {job['metadata']['name']} (adopted)")
    assert len(fake.jobs(uid)) == 1
    assert api.status("pay")["activeRun"]["id"] == run_id  # not recorded as interrupted
    code, message = fake.run_container(job, tmp_path, moto_server)
    assert code == 0, message
    fake.pod(job, terminated={"exitCode": 0, "reason": "Completed", "message": message})
    fake.finish(job, succeeded=True)
    last = wait_for("the adopted Job's result", lambda: last_run(api, "pay", run_id), timeout=60)
    assert last["result"] == "Succeeded"
    assert len(fake.jobs(uid)) == 1
    assert "RunInterrupted" not in api.event_reasons("pay")


def test_max_concurrent_jobs_holds_back_the_rest(
    api: Api, fake: Cluster, start_operator: StartOperator, moto_server: str
) -> None:
    start_operator(**job_env(moto_server, ECS_SCAN_MAX_CONCURRENT_JOBS="2"))
    for i in range(4):
        api.create(policy(f"p{i}", api.namespace, run_now="1"))
    wait_for("two Jobs", lambda: len(fake.jobs()) == 2, timeout=60)
    time.sleep(3)  # a poll period: no third Job appears while two run
    running = fake.jobs()
    assert len(running) == 2
    fake.finish(running[0], succeeded=False, reason="DeadlineExceeded")
    wait_for("a third Job once one ended", lambda: len(fake.jobs()) == 3, timeout=60)
    active = [j for j in fake.jobs() if jobs.job_active(j)]
    assert len(active) == 2


def kube_requests(metrics: str) -> dict[str, float]:
    """ecsscan_kubernetes_api_requests_total by call, from the operator's /metrics text."""
    out: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith("ecsscan_kubernetes_api_requests_total{"):
            call = line.split('call="', 1)[1].split('"', 1)[0]
            out[call] = float(line.rsplit(" ", 1)[1])
    return out


@pytest.mark.parametrize("mode", ["inProcess", "job"])
def test_api_requests_per_run(
    api: Api, fake: Cluster, start_operator: StartOperator, moto_server: str, tmp_path: Path, mode: str
) -> None:
    """One run-now run from the policy's creation to its recorded result: the operator's API requests.

    Job mode adds exactly: the policy's Jobs listed (never two runs), the Job and its ConfigMap
    created, the Pods listed once the Job ended. Its result comes by the Job watch (no poll here).
    """
    env = job_env(moto_server, ECS_SCAN_JOB_POLL_SECONDS="600") if mode == "job" else {}
    op = start_operator(**env)
    before = kube_requests(op.metrics())
    api.create(policy("pay", api.namespace, run_now="1"))
    if mode == "job":
        uid = api.get("pay")["metadata"]["uid"]
        (job,) = wait_for("the run's Job", lambda: fake.jobs(uid), timeout=60)
        code, message = fake.run_container(job, tmp_path, moto_server)
        fake.pod(job, terminated={"exitCode": code, "reason": "Completed", "message": message})
        fake.finish(job, succeeded=True)
    last = wait_for(
        "the run's result", lambda: (api.status("pay").get("lastRun") or {}).get("result"), timeout=120
    )
    assert last == "Succeeded"
    time.sleep(2)  # the look after the run (next schedule) settles
    after = kube_requests(op.metrics())
    used = {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}
    print(
        f"\n[jobs] API requests per run ({mode}): {sum(used.values()):.0f} {json.dumps(used, sort_keys=True)}"
    )
    if mode == "job":
        assert used["list jobs"] == 1 and used["create job"] == 1 and used["create configmap"] == 1
        assert used["list pods"] == 1
    else:
        assert not any(k.endswith(("job", "jobs", "configmap", "pods")) for k in used)
