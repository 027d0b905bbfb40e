"""Runner mode job on a real control plane with workloads: Job controller, scheduler, GC, node agent.

The operator process creates the Jobs; the real kube-controller-manager makes their Pods, the real
kube-scheduler binds them, and the node agent (tests/cluster/nodeagent.py, the kubelet's
stand-in) runs `ecs-scan-operator run` from the Job's command against moto and writes the
termination message. Each namespace enforces the restricted Pod Security profile, so every Pod
the operator asks for is admitted under it.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ecs_scan_operator.core import jobs
from ecs_scan_operator.core.schedule import parse_time
from tests.cluster.fixtures import Kubectl
from tests.cluster.localcluster import LocalCluster
from tests.e2e.conftest import Api, StartOperator, policy, report_runs, wait_for
from tests.jira_server.server import JiraTestServer
from tests.support.moto_fixtures import AWS_ENV

pytestmark = pytest.mark.e2e

EVERY_MINUTE = "* * * * *"


@pytest.fixture
def workloads(kube_workloads: LocalCluster, kube_namespace: str, moto_server: str) -> LocalCluster:
    """The workloads cluster, the namespace under the restricted profile, runs talking to moto."""
    patch = {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    status, body = kube_workloads.request(
        "PATCH", f"/api/v1/namespaces/{kube_namespace}", patch, content_type="application/merge-patch+json"
    )
    assert status == 200, body
    kube_workloads.set_node_env({**AWS_ENV, "AWS_ENDPOINT_URL": moto_server})
    return kube_workloads


def job_env(**extra: str) -> dict[str, str]:
    return {
        "ECS_SCAN_RUNNER_MODE": "job",
        "ECS_SCAN_JOB_IMAGE": "registry.example/ecs-scan-operator:e2e",
        "ECS_SCAN_JOB_POLL_SECONDS": "2",
        **extra,
    }


def list_jobs(cluster: LocalCluster, ns: str, selector: str | None = None) -> list[dict[str, Any]]:
    selector = selector or f"{jobs.LABEL_MANAGED_BY}={jobs.MANAGED_BY}"
    status, body = cluster.request("GET", f"/apis/batch/v1/namespaces/{ns}/jobs?labelSelector={selector}")
    assert status == 200, body
    items: list[dict[str, Any]] = body["items"]
    return items


def list_pods(cluster: LocalCluster, ns: str, selector: str) -> list[dict[str, Any]]:
    status, body = cluster.request("GET", f"/api/v1/namespaces/{ns}/pods?labelSelector={selector}")
    assert status == 200, body
    items: list[dict[str, Any]] = body["items"]
    return items


def finished_run(api: Api, name: str, after: str = "") -> dict[str, Any] | None:
    status = api.status(name)
    last = status.get("lastRun") or {}
    if status.get("activeRun") or not last.get("id") or last["id"] == after:
        return None
    return last


def test_a_scheduled_run_end_to_end_as_a_job(
    api: Api, workloads: LocalCluster, start_operator: StartOperator, moto_server: str
) -> None:
    start_operator(**job_env())
    assert api.create(policy("nightly", api.namespace, schedule=EVERY_MINUTE))[0] == 201
    last = wait_for("the scheduled run's result", lambda: finished_run(api, "nightly"), timeout=150)
    assert last["result"] == "Succeeded", last
    assert last["trigger"] == "Schedule" and last["images"] > 0
    assert last["id"] in report_runs(moto_server, api.namespace, "nightly")
    wait_for("the RunSucceeded Event", lambda: "RunSucceeded" in api.event_reasons("nightly"))
    assert "RunStarted" in api.event_reasons("nightly")
    (job,) = [
        j
        for j in list_jobs(workloads, api.namespace)
        if j["metadata"]["labels"][jobs.LABEL_RUN_ID] == last["id"]
    ]
    assert job["status"].get("succeeded") == 1
    pods = list_pods(workloads, api.namespace, f"job-name={job['metadata']['name']}")
    assert [p["status"]["phase"] for p in pods] == ["Succeeded"]
    terminated = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert json.loads(terminated["message"])["id"] == last["id"]
    # The figures of docs/jobs.md (the API's timestamps have whole seconds).
    due = parse_time(api.status("nightly")["lastScheduleTime"])
    created = parse_time(job["metadata"]["creationTimestamp"])
    started = parse_time(terminated["startedAt"])
    finished = parse_time(job["status"]["completionTime"])
    recorded = parse_time(last["completionTime"])
    assert due and created and started and finished and recorded
    to_created, to_started = (created - due).total_seconds(), (started - due).total_seconds()
    print(
        f"\n[jobs] due {due:%H:%M:%S} -> Job created +{to_created:.0f} s, container started "
        f"+{to_started:.0f} s; run {(finished - started).total_seconds():.0f} s"
    )


def test_a_run_that_exits_non_zero_records_its_own_result(
    api: Api, workloads: LocalCluster, start_operator: StartOperator
) -> None:
    start_operator(**job_env())
    # us-west-2 holds no fleet and no bucket: the run ends Failed and exits 1, with its result.
    body = policy("west", api.namespace, run_now="1")
    body["spec"]["aws"] = {"region": "us-west-2"}
    body["spec"]["report"]["s3"]["bucket"] = "no-such-bucket-e2e"
    api.create(body)
    last = wait_for("the failed run's result", lambda: finished_run(api, "west"), timeout=120)
    assert last["result"] in ("Failed", "PartialFailure")
    (job,) = list_jobs(workloads, api.namespace)
    assert job["status"].get("failed") == 1  # exit 1: the Job failed, backoffLimit 0, one Pod
    assert len(list_pods(workloads, api.namespace, f"job-name={job['metadata']['name']}")) == 1
    assert "Job failed" not in " ".join(last.get("errors", []))  # the run's own words, not the Job's


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """An AWS endpoint that accepts connections and never answers: runs hang until stopped."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.5)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


def hanging_env(endpoint: str, **extra: str) -> dict[str, str]:
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "ECS_SCAN_AWS_READ_TIMEOUT_SECONDS": "300",
        "ECS_SCAN_AWS_MAX_ATTEMPTS": "1",
    }
    return job_env(ECS_SCAN_JOB_ENV=json.dumps(env), **extra)


def running_pod(cluster: LocalCluster, ns: str, uid: str) -> dict[str, Any] | None:
    for pod in list_pods(cluster, ns, jobs.policy_selector(uid)):
        if pod["status"].get("phase") == "Running":
            return pod
    return None


def test_a_run_killed_mid_run_is_run_failed_oomkilled(
    api: Api, workloads: LocalCluster, start_operator: StartOperator, silent_endpoint: str
) -> None:
    start_operator(**hanging_env(silent_endpoint))
    api.create(policy("big", api.namespace, run_now="1"))
    uid = api.get("big")["metadata"]["uid"]
    pod = wait_for("the run's Pod running", lambda: running_pod(workloads, api.namespace, uid), timeout=90)
    annotation = {"metadata": {"annotations": {"nodeagent.test.ecs-scan.io/oom-kill-after-seconds": "1"}}}
    status, body = workloads.request(
        "PATCH",
        f"/api/v1/namespaces/{api.namespace}/pods/{pod['metadata']['name']}",
        annotation,
        content_type="application/merge-patch+json",
    )
    assert status == 200, body
    last = wait_for("the killed run's result", lambda: finished_run(api, "big"), timeout=90)
    assert last["result"] == "Failed"
    assert "OOMKilled (exit code 137)" in last["errors"][0], last
    assert "RunFailed" in api.event_reasons("big")


def test_a_run_past_its_deadline_is_run_failed_deadline_exceeded(
    api: Api, workloads: LocalCluster, start_operator: StartOperator, silent_endpoint: str
) -> None:
    start_operator(**hanging_env(silent_endpoint, ECS_SCAN_JOB_DEADLINE_GRACE_SECONDS="0"))
    api.create(policy("slow", api.namespace, run_now="1", runDeadlineSeconds=60))
    last = wait_for("the deadline's result", lambda: finished_run(api, "slow"), timeout=180)
    assert last["result"] == "Failed"
    assert "DeadlineExceeded" in last["errors"][0], last


def test_restart_adopts_running_jobs_and_starts_no_second(
    api: Api, workloads: LocalCluster, start_operator: StartOperator, silent_endpoint: str
) -> None:
    first = start_operator("op-1", **hanging_env(silent_endpoint))
    api.create(policy("pay", api.namespace, run_now="1"))
    uid = api.get("pay")["metadata"]["uid"]
    pod = wait_for("the run's Pod running", lambda: running_pod(workloads, api.namespace, uid), timeout=90)
    run_id = api.status("pay")["activeRun"]["id"]
    first.kill()
    second = start_operator("op-2", **hanging_env(silent_endpoint))
    second.wait_log("(adopted)")
    time.sleep(3)  # a poll period of the new operator: still one Job, the same Pod
    assert len(list_jobs(workloads, api.namespace)) == 1
    assert [p["metadata"]["uid"] for p in list_pods(workloads, api.namespace, jobs.policy_selector(uid))] == [
        pod["metadata"]["uid"]
    ]
    assert api.status("pay")["activeRun"]["id"] == run_id
    # End the run: the adopted Job's result is recorded by the new operator.
    status, body = workloads.request(
        "PATCH",
        f"/api/v1/namespaces/{api.namespace}/pods/{pod['metadata']['name']}",
        {"metadata": {"annotations": {"nodeagent.test.ecs-scan.io/oom-kill-after-seconds": "0"}}},
        content_type="application/merge-patch+json",
    )
    assert status == 200, body
    last = wait_for("the adopted run's result", lambda: finished_run(api, "pay"), timeout=90)
    assert last["id"] == run_id and "OOMKilled" in last["errors"][0]
    assert "RunInterrupted" not in api.event_reasons("pay")


def test_a_policy_deleted_mid_run_has_its_job_and_pod_deleted(
    api: Api, workloads: LocalCluster, start_operator: StartOperator, silent_endpoint: str
) -> None:
    start_operator(**hanging_env(silent_endpoint))
    api.create(policy("gone", api.namespace, run_now="1"))
    uid = api.get("gone")["metadata"]["uid"]
    wait_for("the run's Pod running", lambda: running_pod(workloads, api.namespace, uid), timeout=90)
    api.delete("gone")
    selector = jobs.policy_selector(uid)
    wait_for(
        "the Job and its Pod deleted",
        lambda: (
            not list_jobs(workloads, api.namespace, selector)
            and not list_pods(workloads, api.namespace, selector)
        ),
        timeout=90,
    )
    status, body = workloads.request(
        "GET", f"/api/v1/namespaces/{api.namespace}/configmaps?labelSelector={selector}"
    )
    assert status == 200 and not body["items"], body  # the pinned spec went with its Job


def test_fifty_policies_due_at_once_run_ten_at_a_time(
    api: Api, workloads: LocalCluster, start_operator: StartOperator
) -> None:
    start_operator(**job_env(ECS_SCAN_MAX_CONCURRENT_JOBS="10"))
    names = [f"p{i:02d}" for i in range(50)]
    for name in names:
        body = policy(name, api.namespace, run_now="1")
        body["spec"]["taskDefinitions"] = {"include": ["payments-*"]}
        assert api.create(body)[0] == 201
    peak = 0
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        active = [j for j in list_jobs(workloads, api.namespace) if jobs.job_active(j)]
        peak = max(peak, len(active))
        assert len(active) <= 10, [j["metadata"]["name"] for j in active]
        done = sum(1 for n in names if finished_run(api, n))
        if done == len(names):
            break
        time.sleep(1)
    results = {n: finished_run(api, n) for n in names}
    assert all(r and r["result"] == "Succeeded" for r in results.values()), results
    assert len(list_jobs(workloads, api.namespace)) == 50  # one Job per policy, none twice
    assert peak == 10


def test_the_run_reads_only_its_namespaces_jira_secret_under_its_own_service_account(
    api: Api,
    workloads: LocalCluster,
    kubectl: Kubectl,
    start_operator: StartOperator,
    jira_server: JiraTestServer,
) -> None:
    """The kubelet mounts the policy's Secret into the run; the ServiceAccount itself may read no Secret."""
    ns = api.namespace
    kubectl("create", "serviceaccount", "scanner", "-n", ns)
    kubectl(
        "create", "secret", "generic", "jira-credentials", "-n", ns,
        f"--from-literal=email={jira_server.EMAIL}", f"--from-literal=apiToken={jira_server.API_TOKEN}",
    )  # fmt: skip
    # The Jira test server listens on 127.0.0.1: allowed as for a Jira on a private address.
    start_operator(**job_env(ECS_SCAN_JIRA_ALLOWED_HOSTS="127.0.0.1"))
    body = policy(
        "tickets",
        ns,
        run_now="1",
        serviceAccountName="scanner",
        jira={"url": jira_server.url, "credentialsSecret": "jira-credentials", "project": "SEC"},
    )
    api.create(body)
    last = wait_for("the run with tickets", lambda: finished_run(api, "tickets"), timeout=150)
    assert last["result"] == "Succeeded", last
    synced = next(c for c in api.status("tickets")["conditions"] if c["type"] == "TicketsSynced")
    assert synced["status"] == "True", synced
    assert jira_server.state.issues, "no Jira ticket was created"
    (job,) = list_jobs(workloads, ns)
    pod_spec = job["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == "scanner" and pod_spec["automountServiceAccountToken"] is False
    assert [v["secret"]["secretName"] for v in pod_spec["volumes"] if "secret" in v] == ["jira-credentials"]
    user = f"system:serviceaccount:{ns}:scanner"
    for where in (ns, "default", "kube-system"):
        for verb in ("get", "list"):
            res = kubectl("auth", "can-i", verb, "secrets", "-n", where, f"--as={user}", check=False)
            assert res.stdout.strip() == "no", (verb, where, res.stdout)
    res = kubectl("auth", "can-i", "get", "secrets/jira-credentials", "-n", ns, f"--as={user}", check=False)
    assert res.stdout.strip() == "no"


def test_a_pod_refused_by_the_namespaces_quota_is_run_failed_and_retried_at_the_next_run(
    api: Api, workloads: LocalCluster, start_operator: StartOperator
) -> None:
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "no-pods"},
        "spec": {"hard": {"pods": "0"}},
    }
    status, body = workloads.request("POST", f"/api/v1/namespaces/{api.namespace}/resourcequotas", quota)
    assert status == 201, body
    start_operator(**job_env(ECS_SCAN_JOB_START_TIMEOUT_SECONDS="10"))
    api.create(policy("quota", api.namespace, run_now="1"))
    last = wait_for("the refusal in the status", lambda: finished_run(api, "quota"), timeout=90)
    assert last["result"] == "Failed" and "created no Pod within 10 s" in last["errors"][0], last
    wait_for(
        "the Job deleted", lambda: not [j for j in list_jobs(workloads, api.namespace) if jobs.job_active(j)]
    )
    # The quota lifted, the next run (here a run-now) starts and succeeds.
    workloads.request("DELETE", f"/api/v1/namespaces/{api.namespace}/resourcequotas/no-pods")
    api.run_now("quota", "2")
    again = wait_for("the next run", lambda: finished_run(api, "quota", after=last["id"]), timeout=120)
    assert again["result"] == "Succeeded", again
