"""The chart in runner mode job on a real API server: what the operator and the run identities may do.

`kubectl auth can-i --as=<ServiceAccount>`: the operator may create and delete Jobs, create
ConfigMaps and list Pods in its watched namespaces, and nothing more than in-process mode besides
(no Secrets at all: the kubelet mounts them into the run); a run's ServiceAccount may do nothing.
"""

from __future__ import annotations

import uuid

import pytest

from tests.cluster.fixtures import Kubectl
from tests.cluster.localcluster import LocalCluster
from tests.e2e.test_helm_rbac import (
    SP,
    Install,
    _apply,
    _create_namespace,
    _install,
    _wait_for_rbac,
    can_i,
    helm_template,
)

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
