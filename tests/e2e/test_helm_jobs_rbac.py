"""The chart in runner mode job on a real API server: what the operator and the run identities may do.

`kubectl auth can-i --as=<ServiceAccount>`: the operator may create and delete Jobs, create
ConfigMaps and list Pods in its watched namespaces, and nothing more than in-process mode besides
(no Secrets at all: the kubelet mounts them into the run); a run's ServiceAccount may do nothing.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from ecs_scan_operator.demo.fleet import FleetInfo
from tests.cluster.fixtures import Kubectl
from tests.cluster.localcluster import LocalCluster
from tests.e2e.conftest import policy, wait_for
from tests.e2e.test_helm_rbac import (
    SP,
    Install,
    _apply,
    _create_namespace,
    _free_port,
    _install,
    _operator,
    _sa_kubeconfig,
    _wait_for_rbac,
    can_i,
    helm_template,
)
from tests.support.moto_fixtures import AWS_ENV

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def job_mode(kube_cluster: LocalCluster, kubectl: Kubectl) -> Install:
    inst = _install(
        kube_cluster,
        kubectl,
        "runner.mode=job",
        "metrics.enabled=false",
        "runner.job.networkPolicy.enabled=true",
        watched=1,
    )
    _wait_for_rbac(kubectl, inst, inst.watched[0])
    return inst


@pytest.fixture(scope="module")
def run_account(kube_cluster: LocalCluster, kubectl: Kubectl) -> str:
    """A release that creates a run ServiceAccount (IRSA-annotated) in a team namespace: its user name."""
    team = f"team-sa-{uuid.uuid4().hex[:6]}"
    _create_namespace(kube_cluster, team)
    objects = helm_template(
        f"sa-{team}",
        team,
        "runner.mode=job",
        f"runner.job.serviceAccounts[0].namespace={team}",
        "runner.job.serviceAccounts[0].name=scan",
        "runner.job.serviceAccounts[0].annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::111122223333:role/scan",
    )
    (account,) = [o for o in objects if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == "scan"]
    _apply(kubectl, [account])
    return team


JOB_ALLOWED = [
    ("create", "jobs.batch"),
    ("delete", "jobs.batch"),
    ("get", "jobs.batch"),
    ("list", "jobs.batch"),
    ("watch", "jobs.batch"),
    ("create", "configmaps"),
    ("list", "pods"),
    ("watch", SP),
    ("patch", SP, "--subresource=status"),
]
JOB_DENIED = [
    ("update", "jobs.batch"),
    ("patch", "jobs.batch"),
    ("deletecollection", "jobs.batch"),
    ("get", "configmaps"),
    ("delete", "configmaps"),
    ("update", "configmaps"),
    ("create", "pods"),
    ("delete", "pods"),
    ("watch", "pods"),
    ("get", "pods/log"),
    ("create", "pods/exec"),
    ("get", "secrets"),
    ("list", "secrets"),
    ("create", "roles.rbac.authorization.k8s.io"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("create", "serviceaccounts/token"),
    ("create", "cronjobs.batch"),
]


@pytest.mark.parametrize("check", JOB_ALLOWED, ids=" ".join)
def test_job_mode_allows_what_runs_as_jobs_need(
    kubectl: Kubectl, job_mode: Install, check: tuple[str, ...]
) -> None:
    assert can_i(kubectl, job_mode, *check[:2], job_mode.watched[0], *check[2:])


@pytest.mark.parametrize("check", JOB_DENIED, ids=" ".join)
def test_job_mode_denies_everything_else(kubectl: Kubectl, job_mode: Install, check: tuple[str, ...]) -> None:
    assert not can_i(kubectl, job_mode, *check[:2], job_mode.watched[0], *check[2:])


@pytest.mark.parametrize("check", JOB_ALLOWED[:7], ids=" ".join)
def test_job_mode_nothing_outside_the_watched_namespaces(
    kubectl: Kubectl, job_mode: Install, check: tuple[str, ...]
) -> None:
    assert not can_i(kubectl, job_mode, *check[:2], job_mode.other, *check[2:])
    assert not can_i(kubectl, job_mode, check[0], check[1], job_mode.namespace, *check[2:])


def test_the_run_network_policy_is_in_each_watched_namespace(kubectl: Kubectl, job_mode: Install) -> None:
    (policy,) = [
        o
        for o in job_mode.objects
        if o["kind"] == "NetworkPolicy" and o["metadata"]["name"].endswith("-runs")
    ]
    assert policy["metadata"]["namespace"] == job_mode.watched[0]
    got = kubectl.json("get", "networkpolicy", policy["metadata"]["name"], "-n", job_mode.watched[0])
    assert got["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert not got["spec"].get("ingress")
    ports = sorted({p["port"] for rule in got["spec"]["egress"] for p in rule.get("ports", [])})
    assert ports == [53, 443]


def test_a_run_service_account_may_do_nothing(kubectl: Kubectl, run_account: str) -> None:
    ns = run_account
    account = kubectl.json("get", "serviceaccount", "scan", "-n", ns)
    assert account["automountServiceAccountToken"] is False
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(":role/scan")
    user = f"system:serviceaccount:{ns}:scan"
    for verb, resource in [
        ("get", "secrets"),
        ("list", "secrets"),
        ("get", "configmaps"),
        ("list", "pods"),
        ("get", SP),
    ]:
        res = kubectl("auth", "can-i", verb, resource, "-n", ns, f"--as={user}", check=False)
        assert res.stdout.strip() == "no", (verb, resource, res.stdout, res.stderr)


def test_the_operator_runs_a_job_with_nothing_but_the_charts_rbac(
    kube_workloads: LocalCluster,
    kubectl: Kubectl,
    moto_server: str,
    demo_fleet: FleetInfo,
    tmp_path: Path,
) -> None:
    """The operator under the chart's ServiceAccount in job mode: a run as a Job, recorded, no 403.

    The real Job controller, scheduler and node agent run the Job (tests/cluster workloads mode);
    the watched namespace enforces the restricted Pod Security profile.
    """
    inst = _install(kube_workloads, kubectl, "runner.mode=job", "metrics.enabled=false", watched=1)
    ns = inst.watched[0]
    _wait_for_rbac(kubectl, inst, ns)
    kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    wait_for(
        "the namespace's default ServiceAccount",
        lambda: kubectl("get", "sa", "default", "-n", ns, check=False).returncode == 0,
    )
    kube_workloads.set_node_env({**AWS_ENV, "AWS_ENDPOINT_URL": moto_server})
    kubectl("apply", "-f", "-", input=yaml.safe_dump(policy("as-sa", ns, run_now="1")))
    kubeconfig = _sa_kubeconfig(kube_workloads, kubectl, inst, tmp_path / "sa.kubeconfig")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        **inst.env,  # what the chart's Deployment sets: runner mode job, the Job image, resources
        "KUBECONFIG": str(kubeconfig),
        "ECS_SCAN_HEALTH_PORT": str(_free_port()),
        "ECS_SCAN_METRICS_PORT": str(_free_port()),
        "ECS_SCAN_LOG_FORMAT": "text",
        "ECS_SCAN_JOB_POLL_SECONDS": "2",
    }
    assert "AWS_ACCESS_KEY_ID" not in env  # the operator itself has no AWS credentials at all
    log = tmp_path / "operator.log"
    with _operator(env, log) as proc:

        def finished() -> dict[str, Any] | None:
            assert proc.poll() is None, f"the operator exited ({proc.returncode}):\n{log.read_text()[-5000:]}"
            obj = kubectl.json("get", SP, "as-sa", "-n", ns)
            last = (obj.get("status") or {}).get("lastRun") or {}
            return last if last.get("completionTime") and not obj["status"].get("activeRun") else None

        try:
            last = wait_for("the run as a Job", finished, timeout=180)
        except AssertionError:
            pytest.fail(f"no finished run; operator log:\n{log.read_text()[-6000:]}")
    assert last["result"] == "Succeeded", last
    jobs = kubectl.json("get", "jobs", "-n", ns)["items"]
    assert len(jobs) == 1 and jobs[0]["status"].get("succeeded") == 1
    text = log.read_text()
    assert "403" not in text and "Forbidden" not in text, text[-4000:]
