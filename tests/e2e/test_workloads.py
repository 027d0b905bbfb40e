"""Jobs on the local control plane: the real Job controller, scheduler, garbage collector and TTL
controller, with the test node agent (tests/cluster/nodeagent.py) as the kubelet's stand-in.

Every scenario waits on the API with a timeout; nothing asserts on durations.
"""

from __future__ import annotations

import base64
import json
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.localcluster import LocalCluster
from tests.cluster.nodeagent import OOM_KILL_AFTER
from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.e2e

JOBS = "/apis/batch/v1/namespaces/{ns}/jobs"


def job(
    name: str,
    script: str,
    *,
    backoff_limit: int = 0,
    annotations: dict[str, str] | None = None,
    owner: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A batch/v1 Job running `python -c script` (the node agent runs it with the venv's python)."""
    container: dict[str, Any] = {
        "name": "main",
        "image": "example.invalid/ignored:1",  # the node agent ignores images
        "command": ["python", "-c", textwrap.dedent(script)],
    }
    container.update(spec.pop("container", {}))
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    pod_spec.update(spec.pop("pod", {}))
    metadata: dict[str, Any] = {"name": name}
    if owner:
        metadata["ownerReferences"] = [owner]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {"metadata": {"annotations": annotations or {}}, "spec": pod_spec},
            **spec,
        },
    }


def create(cluster: LocalCluster, path: str, body: dict[str, Any]) -> dict[str, Any]:
    status, created = cluster.request("POST", path, body)
    assert status == 201, created
    result: dict[str, Any] = created
    return result


def get(cluster: LocalCluster, path: str) -> dict[str, Any] | None:
    status, body = cluster.request("GET", path)
    if status == 404:
        return None
    assert status == 200, body
    result: dict[str, Any] = body
    return result


def job_condition(cluster: LocalCluster, ns: str, name: str, *types: str) -> dict[str, Any] | None:
    """The Job's first true condition of one of these types, or None."""
    body = get(cluster, f"{JOBS.format(ns=ns)}/{name}")
    for cond in ((body or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] in types and cond["status"] == "True":
            result: dict[str, Any] = cond
            return result
    return None


def pods_of(cluster: LocalCluster, ns: str, job_name: str) -> list[dict[str, Any]]:
    status, body = cluster.request(
        "GET", f"/api/v1/namespaces/{ns}/pods?labelSelector=batch.kubernetes.io/job-name%3D{job_name}"
    )
    assert status == 200, body
    items: list[dict[str, Any]] = body["items"]
    return items


def terminated(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = pod["status"].get("containerStatuses") or [{}]
    state: dict[str, Any] = statuses[0].get("state", {}).get("terminated") or {}
    return state


def describe(cluster: LocalCluster, ns: str, job_name: str) -> str:
    """What to print when a wait fails: the Job, its Pods, and their logs."""
    parts = [json.dumps(get(cluster, f"{JOBS.format(ns=ns)}/{job_name}"), indent=1)[:3000]]
    for pod in pods_of(cluster, ns, job_name):
        parts.append(json.dumps(pod["status"], indent=1)[:2000])
        parts.append(cluster.pod_log(ns, pod["metadata"]["name"])[-2000:])
    return "\n".join(parts)


def process_alive(marker: str) -> bool:
    """Is a process whose command line contains marker still running?"""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker.encode() in (proc / "cmdline").read_bytes():
                    return True
            except OSError:
                continue
    return False


def test_a_job_runs_to_completion_with_its_env_files_and_termination_message(
    kube_workloads: LocalCluster, kube_namespace: str
) -> None:
    ns, c = kube_namespace, kube_workloads
    create(
        c,
        f"/api/v1/namespaces/{ns}/secrets",
        {"metadata": {"name": "creds"}, "data": {"token": base64.b64encode(b"s3cr\xc3\xa9t").decode()}},
    )
    create(
        c, f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "conf"}, "data": {"a.txt": "from cm"}}
    )
    script = """
        import json, os, pathlib
        result = {
            "pod": os.environ["POD_NAME"], "ns": os.environ["POD_NS"], "secret_env": os.environ["TOKEN"],
            "greeting": os.environ["GREETING"],
            "secret_file": pathlib.Path("/etc/creds/token").read_text(),
            "cm_file": pathlib.Path("/etc/conf/a.txt").read_text(),
            "argv": os.environ["RESULT"],
        }
        pathlib.Path(os.environ["RESULT"]).write_text(json.dumps(result))
        print("done")
    """
    container = {
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "GREETING", "value": "hello $(POD_NS)"},
            {"name": "RESULT", "value": "/dev/termination-log"},
        ],
        "volumeMounts": [
            {"name": "creds", "mountPath": "/etc/creds", "readOnly": True},
            {"name": "conf", "mountPath": "/etc/conf"},
        ],
    }
    volumes = [
        {"name": "creds", "secret": {"secretName": "creds"}},
        {"name": "conf", "configMap": {"name": "conf"}},
    ]
    # paths in the script itself are rewritten too (they are in the command)
    create(c, JOBS.format(ns=ns), job("hello", script, container=container, pod={"volumes": volumes}))

    done = wait_for(
        "the Job to complete",
        lambda: job_condition(c, ns, "hello", "Complete", "Failed") or None,
        timeout=90,
    )
    assert done["type"] == "Complete", describe(c, ns, "hello")
    [pod] = pods_of(c, ns, "hello")
    assert pod["spec"]["nodeName"] == c.node_name  # bound by the real scheduler
    assert pod["status"]["phase"] == "Succeeded"
    state = terminated(pod)
    assert state["exitCode"] == 0 and state["reason"] == "Completed"
    message = json.loads(state["message"])
    assert message["pod"] == pod["metadata"]["name"]
    assert message["ns"] == ns
    assert message["secret_env"] == "s3cr\u00e9t"
    assert message["greeting"] == f"hello {ns}"
    assert message["secret_file"] == "s3cr\u00e9t"
    assert message["cm_file"] == "from cm"
    assert message["argv"] != "/dev/termination-log"  # mapped into the Pod's directory
    assert "done" in c.pod_log(ns, pod["metadata"]["name"])


def test_a_pod_talks_to_the_apiserver_as_its_service_account(
    kube_workloads: LocalCluster, kube_namespace: str
) -> None:
    cluster, ns = kube_workloads, kube_namespace
    create(cluster, f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "runner"}})
    script = """
        import json, os, pathlib
        import kubernetes
        kubernetes.config.load_kube_config()
        review = kubernetes.client.AuthenticationV1Api().create_self_subject_review(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
        try:
            kubernetes.client.CoreV1Api().list_namespaced_secret(os.environ["NS"])
            secrets = "allowed"
        except kubernetes.client.ApiException as exc:
            secrets = exc.status
        pathlib.Path(os.environ["OUT"]).write_text(json.dumps({"user": review.status.user_info.username,
                                                               "secrets": secrets}))
    """
    container = {
        "env": [
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "OUT", "value": "/dev/termination-log"},
        ]
    }
    create(
        cluster,
        JOBS.format(ns=ns),
        job("whoami", script, container=container, pod={"serviceAccountName": "runner"}),
    )
    done = wait_for(
        "the Job to finish", lambda: job_condition(cluster, ns, "whoami", "Complete", "Failed"), 90
    )
    assert done["type"] == "Complete", describe(cluster, ns, "whoami")
    [pod] = pods_of(cluster, ns, "whoami")
    result = json.loads(terminated(pod)["message"])
    assert result == {"user": f"system:serviceaccount:{ns}:runner", "secrets": 403}


def test_a_failing_job_honours_its_backoff_limit(kube_workloads: LocalCluster, kube_namespace: str) -> None:
    c, ns = kube_workloads, kube_namespace
    create(c, JOBS.format(ns=ns), job("fails", "import sys; print('boom'); sys.exit(3)", backoff_limit=1))
    failed = wait_for("the Job to fail", lambda: job_condition(c, ns, "fails", "Failed", "Complete"), 120)
    assert failed["type"] == "Failed", describe(c, ns, "fails")
    assert failed["reason"] == "BackoffLimitExceeded"
    pods = pods_of(c, ns, "fails")
    assert len(pods) == 2  # the first try and one retry: backoffLimit 1
    for pod in pods:
        assert pod["status"]["phase"] == "Failed"
        state = terminated(pod)
        assert (state["exitCode"], state["reason"]) == (3, "Error")
    status = get(c, f"{JOBS.format(ns=ns)}/fails")
    assert status is not None and status["status"]["failed"] == 2


def test_deleting_the_owner_deletes_the_job_its_pods_and_their_processes(
    kube_workloads: LocalCluster, kube_namespace: str
) -> None:
    c, ns = kube_workloads, kube_namespace
    owner = create(c, f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "owner"}, "data": {}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    marker = f"marker-{uuid.uuid4().hex}"
    create(c, JOBS.format(ns=ns), job("owned", f"import time; '{marker}'; time.sleep(600)", owner=ref))
    wait_for(
        "the Pod to run",
        lambda: any(p["status"].get("phase") == "Running" for p in pods_of(c, ns, "owned")),
        90,
    )
    assert process_alive(marker)

    status, body = c.request(
        "DELETE", f"/api/v1/namespaces/{ns}/configmaps/owner", {"propagationPolicy": "Background"}
    )
    assert status == 200, body
    wait_for(
        "the garbage collector to delete the Job", lambda: get(c, f"{JOBS.format(ns=ns)}/owned") is None, 90
    )
    wait_for("the Job's Pods to be deleted", lambda: not pods_of(c, ns, "owned"), 90)
    wait_for("the Pod's process to end", lambda: not process_alive(marker), 30)


def test_a_finished_job_is_deleted_after_its_ttl(kube_workloads: LocalCluster, kube_namespace: str) -> None:
    c, ns = kube_workloads, kube_namespace
    create(c, JOBS.format(ns=ns), job("short-lived", "print('ok')", ttlSecondsAfterFinished=1))
    wait_for(
        "the Job to complete or be gone",
        lambda: (
            job_condition(c, ns, "short-lived", "Complete")
            or get(c, f"{JOBS.format(ns=ns)}/short-lived") is None
        ),
        90,
    )
    wait_for(
        "the TTL controller to delete the Job",
        lambda: get(c, f"{JOBS.format(ns=ns)}/short-lived") is None,
        90,
    )
    wait_for("its Pod to be deleted", lambda: not pods_of(c, ns, "short-lived"), 60)


def test_the_job_deadline_ends_a_long_job(kube_workloads: LocalCluster, kube_namespace: str) -> None:
    c, ns = kube_workloads, kube_namespace
    marker = f"marker-{uuid.uuid4().hex}"
    create(
        c,
        JOBS.format(ns=ns),
        job("slow", f"import time; '{marker}'; time.sleep(600)", activeDeadlineSeconds=3),
    )
    failed = wait_for("the Job to fail", lambda: job_condition(c, ns, "slow", "Failed", "Complete"), 90)
    assert failed["type"] == "Failed" and failed["reason"] == "DeadlineExceeded", describe(c, ns, "slow")
    # the Job controller deletes the running Pod; the node agent kills its process and removes it
    wait_for("the Pod to be deleted", lambda: not pods_of(c, ns, "slow"), 90)
    wait_for("the Pod's process to end", lambda: not process_alive(marker), 30)


def test_the_pod_deadline_fails_the_pod_with_deadline_exceeded(
    kube_workloads: LocalCluster, kube_namespace: str
) -> None:
    c, ns = kube_workloads, kube_namespace
    create(
        c,
        JOBS.format(ns=ns),
        job("pod-deadline", "import time; time.sleep(600)", pod={"activeDeadlineSeconds": 2}),
    )
    wait_for("the Job to fail", lambda: job_condition(c, ns, "pod-deadline", "Failed", "Complete"), 90)
    [pod] = pods_of(c, ns, "pod-deadline")
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["reason"] == "DeadlineExceeded", describe(c, ns, "pod-deadline")
    assert terminated(pod)["exitCode"] == 143  # SIGTERM: python's default handler


def test_an_oom_kill_can_be_simulated_on_a_running_pod(
    kube_workloads: LocalCluster, kube_namespace: str
) -> None:
    c, ns = kube_workloads, kube_namespace
    create(c, JOBS.format(ns=ns), job("big", "import time; time.sleep(600)"))
    running = wait_for(
        "the Pod to run",
        lambda: [p for p in pods_of(c, ns, "big") if p["status"].get("phase") == "Running"],
        90,
    )
    pod_name = running[0]["metadata"]["name"]
    status, body = c.request(
        "PATCH",
        f"/api/v1/namespaces/{ns}/pods/{pod_name}",
        {"metadata": {"annotations": {OOM_KILL_AFTER: "0"}}},
        content_type="application/merge-patch+json",
    )
    assert status == 200, body
    failed = wait_for("the Job to fail", lambda: job_condition(c, ns, "big", "Failed", "Complete"), 90)
    assert failed["reason"] == "BackoffLimitExceeded", describe(c, ns, "big")
    [pod] = pods_of(c, ns, "big")
    assert (terminated(pod)["exitCode"], terminated(pod)["reason"]) == (137, "OOMKilled")


def test_a_missing_secret_keeps_the_pod_pending_until_it_exists(
    kube_workloads: LocalCluster, kube_namespace: str
) -> None:
    c, ns = kube_workloads, kube_namespace
    container = {"env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "later", "key": "t"}}}]}
    create(
        c, JOBS.format(ns=ns), job("waits", "import os; assert os.environ['T'] == 'x'", container=container)
    )

    def config_error() -> str | None:
        for pod in pods_of(c, ns, "waits"):
            waiting = ((pod["status"].get("containerStatuses") or [{}])[0].get("state") or {}).get(
                "waiting"
            ) or {}
            if waiting.get("reason") == "CreateContainerConfigError":
                return str(waiting.get("message"))
        return None

    message = wait_for("the Pod to wait for its Secret", config_error, 90)
    assert "later" in message
    create(c, f"/api/v1/namespaces/{ns}/secrets", {"metadata": {"name": "later"}, "stringData": {"t": "x"}})
    done = wait_for("the Job to finish", lambda: job_condition(c, ns, "waits", "Complete", "Failed"), 90)
    assert done["type"] == "Complete", describe(c, ns, "waits")


@pytest.mark.parametrize(
    ("pod", "container", "expected"),
    [
        ({}, {"command": []}, "no command"),
        (
            {"volumes": [{"name": "h", "hostPath": {"path": "/"}}]},
            {"volumeMounts": [{"name": "h", "mountPath": "/h"}]},
            "hostPath",
        ),
    ],
    ids=["no-command", "hostpath-volume"],
)
def test_what_the_node_agent_cannot_run_fails_clearly(
    kube_workloads: LocalCluster,
    kube_namespace: str,
    pod: dict[str, Any],
    container: dict[str, Any],
    expected: str,
) -> None:
    c, ns = kube_workloads, kube_namespace
    create(c, JOBS.format(ns=ns), job("odd", "print(1)", container=container, pod=pod))
    wait_for("the Job to fail", lambda: job_condition(c, ns, "odd", "Failed", "Complete"), 90)
    [failed] = pods_of(c, ns, "odd")
    assert failed["status"]["phase"] == "Failed"
    assert failed["status"]["reason"] == "NodeAgentUnsupported"
    assert expected in failed["status"]["message"]


@pytest.mark.parametrize(
    ("script", "policy", "expected"),
    [
        # the message file's first 4096 bytes, as a kubelet reads it
        ("import os; open(os.environ['OUT'], 'w').write('x' * 5000)", "File", "x" * 4096),
        # nothing written and a failure: the log's tail with FallbackToLogsOnError
        ("import sys; print('the last words'); sys.exit(1)", "FallbackToLogsOnError", "the last words"),
        # ... but not with File
        ("import sys; print('the last words'); sys.exit(1)", "File", None),
    ],
    ids=["truncated", "fallback-to-logs", "no-fallback"],
)
def test_the_termination_message(
    kube_workloads: LocalCluster, kube_namespace: str, script: str, policy: str, expected: str | None
) -> None:
    c, ns = kube_workloads, kube_namespace
    container = {
        "env": [{"name": "OUT", "value": "/dev/termination-log"}],
        "terminationMessagePolicy": policy,
    }
    create(c, JOBS.format(ns=ns), job("msg", script, container=container))
    wait_for("the Job to finish", lambda: job_condition(c, ns, "msg", "Complete", "Failed"), 90)
    [pod] = pods_of(c, ns, "msg")
    message = terminated(pod).get("message")
    if expected is None:
        assert message is None
    else:
        assert message is not None and message.strip() == expected


def test_on_failure_restarts_in_place_until_the_backoff_limit(
    kube_workloads: LocalCluster, kube_namespace: str
) -> None:
    c, ns = kube_workloads, kube_namespace
    marker = f"marker-{uuid.uuid4().hex}"
    create(
        c,
        JOBS.format(ns=ns),
        job(
            "again",
            f"import sys; '{marker}'; sys.exit(2)",
            backoff_limit=1,
            pod={"restartPolicy": "OnFailure"},
        ),
    )
    restarted = wait_for(
        "the container to be restarted in its Pod",
        lambda: [
            p
            for p in pods_of(c, ns, "again")
            if ((p["status"].get("containerStatuses") or [{}])[0].get("restartCount") or 0) >= 1
        ],
        90,
    )
    last = restarted[0]["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"]) == (2, "Error")
    failed = wait_for("the Job to fail", lambda: job_condition(c, ns, "again", "Failed", "Complete"), 120)
    assert failed["reason"] == "BackoffLimitExceeded", describe(c, ns, "again")
    # the Job controller deletes the restarting Pod; the node agent stops it
    wait_for("the Pod to be deleted", lambda: not pods_of(c, ns, "again"), 90)
    wait_for("no process left", lambda: not process_alive(marker), 30)
