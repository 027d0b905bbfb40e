"""The chart's RBAC on a real API server: enough for the operator's whole job, nothing more.

The rendered chart (CRD, ServiceAccount, Roles, bindings, admission policy, Deployment) is
applied to the local kube-apiserver with server-side apply, so the real API server validates
it. There is no kubelet, so the Deployment never runs; instead the operator runs here as a
local process with the chart's ServiceAccount identity (a TokenRequest token in a
kubeconfig), against moto for AWS, and must watch its policy, patch the status, post Events
and read the Jira Secret without a single 403. `kubectl auth can-i --as=<the ServiceAccount>`
shows what it cannot do: read Secrets elsewhere, write ScanPolicy specs, touch other kinds.
Last, the real `helm install / upgrade / uninstall` of the documented lifecycle.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from ecs_scan_operator.demo.fleet import FleetInfo
from tests.cluster.fixtures import Kubectl
from tests.cluster.localcluster import LocalCluster
from tests.jira_server.server import JiraTestServer
from tests.support.moto_fixtures import AWS_ENV
from tests.support.processes import background_process

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "ecs-scan-operator"
HELM = ROOT / ".tools" / "bin" / "helm"
CRD_NAME = "scanpolicies.ecsscan.io"
GRANT_CRD_NAME = "scanaccessgrants.ecsscan.io"
SP = "scanpolicies.ecsscan.io"


def _eventually(fn: Callable[[], Any], what: str, timeout: float = 60.0, delay: float = 0.25) -> Any:
    """Retry fn until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        result = fn()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(delay)


def helm_template(release: str, namespace: str, *sets: str) -> list[dict[str, Any]]:
    """The chart rendered as the objects Helm would install (CRDs included)."""
    home = ROOT / ".out" / "helm-home"
    env = {**os.environ, "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config")}
    env.pop("KUBECONFIG", None)
    args = [str(HELM), "template", release, str(CHART), "--namespace", namespace, "--include-crds"]
    for s in sets:
        args += ["--set", s]
    res = subprocess.run(args, capture_output=True, text=True, env=env, check=False, timeout=120)
    assert res.returncode == 0, res.stderr
    return [d for d in yaml.safe_load_all(res.stdout) if d]


@dataclass
class Install:
    """One rendered-and-applied release and the namespaces around it."""

    release: str
    namespace: str  # the release namespace (where the ServiceAccount lives)
    watched: list[str]
    other: str  # a namespace the operator must not see into
    objects: list[dict[str, Any]]
    service_account: str = ""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def user(self) -> str:
        """The ServiceAccount's user name, as `--as` takes it."""
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


def _create_namespace(kube_cluster: LocalCluster, name: str) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    status, out = kube_cluster.request("POST", "/api/v1/namespaces", body)
    assert status in (201, 409), out


def _apply(kubectl: Kubectl, objects: list[dict[str, Any]]) -> None:
    text = "\n---\n".join(yaml.safe_dump(o, sort_keys=False) for o in objects)
    kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=helm-e2e", "-f", "-", input=text)


def _install(kube_cluster: LocalCluster, kubectl: Kubectl, *sets: str, watched: int = 1) -> Install:
    suffix = uuid.uuid4().hex[:6]
    inst = Install(
        release=f"rbac-{suffix}",
        namespace=f"ecs-scan-{suffix}",
        watched=[f"team{i}-{suffix}" for i in range(watched)],
        other=f"other-{suffix}",
        objects=[],
    )
    for ns in (inst.namespace, *inst.watched, inst.other):
        _create_namespace(kube_cluster, ns)
    watch = ",".join(inst.watched)
    settings = [f"watchNamespaces={{{watch}}}"] if watch else []
    inst.objects = helm_template(inst.release, inst.namespace, *settings, *sets)
    crds = [o for o in inst.objects if o["kind"] == "CustomResourceDefinition"]
    assert sorted(c["metadata"]["name"] for c in crds) == [GRANT_CRD_NAME, CRD_NAME]
    _apply(kubectl, crds)
    kubectl(
        "wait", "--for=condition=Established", f"crd/{CRD_NAME}", f"crd/{GRANT_CRD_NAME}", "--timeout=120s"
    )
    rest = [o for o in inst.objects if o["kind"] != "CustomResourceDefinition"]
    _apply(kubectl, rest)
    (sa,) = [o for o in inst.objects if o["kind"] == "ServiceAccount"]
    inst.service_account = sa["metadata"]["name"]
    (deploy,) = [o for o in inst.objects if o["kind"] == "Deployment"]
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    inst.env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    inst.env |= {"POD_NAME": f"{inst.release}-local", "POD_NAMESPACE": inst.namespace}
    return inst


def can_i(
    kubectl: Kubectl, inst: Install, verb: str, resource: str, namespace: str | None, *extra: str
) -> bool:
    """`kubectl auth can-i` as the chart's ServiceAccount (impersonated by the admin)."""
    scope = ["-n", namespace] if namespace else ["--all-namespaces"]
    res = kubectl("auth", "can-i", verb, resource, *scope, *extra, f"--as={inst.user}", check=False)
    answer = res.stdout.strip()
    assert answer in ("yes", "no"), res.stderr
    return answer == "yes"


def _wait_for_rbac(kubectl: Kubectl, inst: Install, namespace: str | None) -> None:
    # the RBAC authorizer reads through an informer: let it catch up with the new bindings
    _eventually(lambda: can_i(kubectl, inst, "watch", SP, namespace), "the chart's RBAC to take effect")


@pytest.fixture(scope="module")
def namespaced(kube_cluster: LocalCluster, kubectl: Kubectl) -> Install:
    """watchNamespaces: [team0-x]; two replicas, so the leader-election Role is there too.

    The Jira test server listens on 127.0.0.1, which the operator refuses by default: the chart's
    operator.jiraAllowedHosts lets it through (what a self-hosted Jira on a private address needs).
    """
    inst = _install(
        kube_cluster,
        kubectl,
        "replicaCount=2",
        "metrics.enabled=false",
        "operator.jiraAllowedHosts={127.0.0.1}",
    )
    _wait_for_rbac(kubectl, inst, inst.watched[0])
    return inst


@pytest.fixture(scope="module")
def cluster_wide(kube_cluster: LocalCluster, kubectl: Kubectl) -> Install:
    """watchNamespaces: [] with Secret reads limited to one namespace (rbac.secretNamespaces)."""
    suffix = uuid.uuid4().hex[:6]
    secrets_ns = f"security-{suffix}"
    _create_namespace(kube_cluster, secrets_ns)
    inst = _install(kube_cluster, kubectl, f"rbac.secretNamespaces={{{secrets_ns}}}", watched=0)
    inst.watched = [secrets_ns]
    _wait_for_rbac(kubectl, inst, None)
    return inst


# --------------------------------------------------------------------------- what it may do


def test_rendered_chart_is_accepted_by_the_api_server(kubectl: Kubectl, namespaced: Install) -> None:
    """Server-side apply validated every object; they exist with the chart's labels."""
    for obj in namespaced.objects:
        if obj["kind"] == "CustomResourceDefinition":
            continue
        ns = obj["metadata"].get("namespace")
        group = obj["apiVersion"].rpartition("/")[0]
        resource = f"{obj['kind'].lower()}.{group}" if group else obj["kind"].lower()
        got = kubectl.json("get", resource, obj["metadata"]["name"], *(["-n", ns] if ns else []))
        assert got["metadata"]["labels"]["app.kubernetes.io/instance"] == namespaced.release


NAMESPACED_ALLOWED = [
    ("get", SP),
    ("list", SP),
    ("watch", SP),
    ("patch", SP),
    ("patch", SP, "--subresource=status"),
    ("get", SP, "--subresource=status"),
    ("create", "events"),
    ("get", "secrets"),
]
NAMESPACED_DENIED = [
    ("update", SP),  # kopf merge-patches; a whole-object update is never needed
    ("create", SP),
    ("delete", SP),
    ("deletecollection", SP),
    ("update", SP, "--subresource=status"),
    ("list", "secrets"),  # get by name only: no enumerating Secrets
    ("watch", "secrets"),
    ("create", "secrets"),
    ("patch", "events"),
    ("get", "pods"),
    ("create", "pods"),
    ("get", "configmaps"),
    ("create", "deployments.apps"),
    ("create", "roles.rbac.authorization.k8s.io"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("get", "serviceaccounts"),
    ("create", "serviceaccounts/token"),
    ("*", "*"),
]


@pytest.mark.parametrize("check", NAMESPACED_ALLOWED, ids=" ".join)
def test_namespaced_allows_the_job(kubectl: Kubectl, namespaced: Install, check: tuple[str, ...]) -> None:
    """In the watched namespace: exactly the verbs the operator uses."""
    assert can_i(kubectl, namespaced, *check[:2], namespaced.watched[0], *check[2:])


@pytest.mark.parametrize("check", NAMESPACED_DENIED, ids=" ".join)
def test_namespaced_denies_everything_else(
    kubectl: Kubectl, namespaced: Install, check: tuple[str, ...]
) -> None:
    """In the watched namespace: nothing beyond the job."""
    assert not can_i(kubectl, namespaced, *check[:2], namespaced.watched[0], *check[2:])


@pytest.mark.parametrize(
    "check",
    [
        ("get", "secrets"),
        ("get", SP),
        ("list", SP),
        ("create", "events"),
        ("patch", SP, "--subresource=status"),
    ],
    ids=" ".join,
)
def test_namespaced_sees_nothing_outside_its_namespaces(
    kubectl: Kubectl, namespaced: Install, check: tuple[str, ...]
) -> None:
    """Other namespaces, its own release namespace and the cluster scope are out of reach."""
    for namespace in (namespaced.other, namespaced.namespace, "default", "kube-system"):
        assert not can_i(kubectl, namespaced, *check[:2], namespace, *check[2:]), namespace
    assert not can_i(kubectl, namespaced, check[0], check[1], None, *check[2:])


@pytest.mark.parametrize(
    ("verb", "resource"),
    [
        ("get", "namespaces"),
        ("patch", "namespaces"),
        ("get", "nodes"),
        ("create", "customresourcedefinitions.apiextensions.k8s.io"),
        ("patch", "customresourcedefinitions.apiextensions.k8s.io"),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
        ("escalate", "clusterroles.rbac.authorization.k8s.io"),
        ("impersonate", "users"),
        ("create", "validatingadmissionpolicies.admissionregistration.k8s.io"),
        ("delete", "validatingadmissionpolicybindings.admissionregistration.k8s.io"),
    ],
)
def test_no_cluster_scoped_rights(kubectl: Kubectl, namespaced: Install, verb: str, resource: str) -> None:
    """A namespaced install gets nothing cluster-wide."""
    assert not can_i(kubectl, namespaced, verb, resource, None)


def test_no_kopf_scanning_by_default(kubectl: Kubectl, namespaced: Install) -> None:
    """kopf's scanning is off by default: not even a read-only list of CRDs or Namespaces."""
    assert namespaced.env["ECS_SCAN_KOPF_SCANNING"] == "false"
    for resource in ("customresourcedefinitions.apiextensions.k8s.io", "namespaces"):
        for verb in ("list", "watch", "create", "update", "patch", "delete"):
            assert not can_i(kubectl, namespaced, verb, resource, None), (verb, resource)


def test_kopf_scanning_when_on_is_read_only(kube_cluster: LocalCluster, kubectl: Kubectl) -> None:
    """rbac.kopfScanning=true: kopf may list and watch CRDs and Namespaces, nothing else on them."""
    inst = _install(kube_cluster, kubectl, "rbac.kopfScanning=true", "metrics.enabled=false")
    _wait_for_rbac(kubectl, inst, inst.watched[0])
    assert inst.env["ECS_SCAN_KOPF_SCANNING"] == "true"
    for resource in ("customresourcedefinitions.apiextensions.k8s.io", "namespaces"):
        assert can_i(kubectl, inst, "list", resource, None)
        assert can_i(kubectl, inst, "watch", resource, None)
        for verb in ("create", "update", "patch", "delete"):
            assert not can_i(kubectl, inst, verb, resource, None), (verb, resource)


def test_leader_election_is_one_lease(kubectl: Kubectl, namespaced: Install) -> None:
    """With two replicas: create Leases and renew the chart's one Lease, in the release namespace only."""
    lease = namespaced.env["ECS_SCAN_LEASE_NAME"]
    ns = namespaced.namespace
    assert can_i(kubectl, namespaced, "create", "leases.coordination.k8s.io", ns)
    for verb in ("get", "update", "patch"):
        assert can_i(kubectl, namespaced, verb, f"leases.coordination.k8s.io/{lease}", ns)
        assert not can_i(kubectl, namespaced, verb, "leases.coordination.k8s.io/someone-elses", ns)
    assert not can_i(kubectl, namespaced, "delete", f"leases.coordination.k8s.io/{lease}", ns)
    assert not can_i(kubectl, namespaced, "list", "leases.coordination.k8s.io", ns)
    assert not can_i(kubectl, namespaced, "create", "leases.coordination.k8s.io", namespaced.watched[0])


def test_cluster_wide_reads_secrets_only_where_told(kubectl: Kubectl, cluster_wide: Install) -> None:
    """Cluster-wide policies everywhere; Secrets only in rbac.secretNamespaces; still no spec writes."""
    for namespace in (cluster_wide.other, cluster_wide.watched[0], "default"):
        assert can_i(kubectl, cluster_wide, "watch", SP, namespace)
        assert can_i(kubectl, cluster_wide, "patch", SP, namespace, "--subresource=status")
        assert can_i(kubectl, cluster_wide, "create", "events", namespace)
        assert not can_i(kubectl, cluster_wide, "update", SP, namespace)
        assert not can_i(kubectl, cluster_wide, "get", "pods", namespace)
    assert can_i(kubectl, cluster_wide, "list", SP, None)
    _eventually(
        lambda: can_i(kubectl, cluster_wide, "get", "secrets", cluster_wide.watched[0]),
        "the Secret RoleBinding",
    )
    for namespace in (cluster_wide.other, cluster_wide.namespace, "default", "kube-system"):
        assert not can_i(kubectl, cluster_wide, "get", "secrets", namespace), namespace
    assert not can_i(kubectl, cluster_wide, "get", "secrets", None)
    assert not can_i(kubectl, cluster_wide, "list", "secrets", cluster_wide.watched[0])


# --------------------------------------------------------------------------- the spec stays the user's


def _sa_kubeconfig(kube_cluster: LocalCluster, kubectl: Kubectl, inst: Install, path: Path) -> Path:
    """A kubeconfig with a TokenRequest token of the chart's ServiceAccount (as the pod would have)."""
    token = kubectl(
        "create", "token", inst.service_account, "-n", inst.namespace, "--duration=2h"
    ).stdout.strip()
    assert token.count(".") == 2, "not a JWT"
    ca = base64.b64encode(Path(kube_cluster.ca_file).read_bytes()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "local", "cluster": {"server": kube_cluster.server, "certificate-authority-data": ca}}
        ],
        "users": [{"name": inst.service_account, "user": {"token": token}}],
        "contexts": [
            {
                "name": "operator",
                "context": {"cluster": "local", "user": inst.service_account, "namespace": inst.watched[0]},
            }
        ],
        "current-context": "operator",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _as_operator(
    kubectl: Kubectl, kubeconfig: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    cmd = [kubectl.binary, f"--kubeconfig={kubeconfig}", *args]
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env, timeout=60, check=False)


def _policy(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "scanpolicy.yaml").read_text())
    doc["metadata"] = {"name": name, "namespace": namespace}
    doc["spec"].update(spec)
    return doc


def test_operator_identity_cannot_change_a_spec(
    kube_cluster: LocalCluster, kubectl: Kubectl, namespaced: Install, tmp_path: Path
) -> None:
    """As the ServiceAccount itself: spec patches are refused; metadata and status patches go through."""
    ns = namespaced.watched[0]
    kubectl("apply", "-f", "-", input=yaml.safe_dump(_policy("guarded", ns)))
    kubeconfig = _sa_kubeconfig(kube_cluster, kubectl, namespaced, tmp_path / "sa.kubeconfig")

    who = _as_operator(kubectl, kubeconfig, "auth", "whoami", "-o", "json")
    assert json.loads(who.stdout)["status"]["userInfo"]["username"] == namespaced.user

    def spec_patch_refused() -> str | None:
        res = _as_operator(
            kubectl, kubeconfig, "patch", SP, "guarded", "--type=merge", "-p", '{"spec":{"suspend":true}}'
        )
        return res.stderr if res.returncode != 0 else None

    # the admission policy needs a moment to be loaded by the API server (and a patch that went
    # through before that is undone below, so the checks that follow start from the user's spec)
    def refused_else_undone() -> str | None:
        message = spec_patch_refused()
        if message:
            return message
        _undo_suspend(kubectl, ns)
        return None

    message = _eventually(refused_else_undone, "the admission policy")
    assert "never its spec" in message, message
    assert "ValidatingAdmissionPolicy" in message, message
    assert kubectl.json("get", SP, "guarded", "-n", ns)["spec"].get("suspend") is not True

    res = _as_operator(
        kubectl, kubeconfig, "replace", "-f", "-", stdin=yaml.safe_dump(_policy("guarded", ns))
    )
    assert res.returncode != 0 and "forbidden" in res.stderr.lower(), res.stderr  # no update verb at all

    res = _as_operator(
        kubectl, kubeconfig, "patch", SP, "guarded", "--type=merge",
        "-p", '{"metadata":{"annotations":{"kopf.zalando.org/last-handled-configuration":"{}"}}}',
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    res = _as_operator(
        kubectl, kubeconfig, "patch", SP, "guarded", "--subresource=status", "--type=merge",
        "-p", '{"status":{"message":"written by the operator identity"}}',
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    got = kubectl.json("get", SP, "guarded", "-n", ns)
    assert got["status"]["message"] == "written by the operator identity"

    # people (here the admin) still change specs freely
    kubectl("patch", SP, "guarded", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    res = _as_operator(kubectl, kubeconfig, "get", "secrets", "-n", namespaced.other)
    assert res.returncode != 0 and "forbidden" in res.stderr.lower()


def _undo_suspend(kubectl: Kubectl, ns: str) -> None:
    kubectl("patch", SP, "guarded", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":false}}')


# ------------------------------------------------------------------ the whole job, as the ServiceAccount

#: What in an operator log means RBAC is short of something (kopf logs 403s and its fallbacks).
# Whole words: a dedup label's hex (ecsscan-<16 hex>) may well contain "403".
RBAC_TROUBLE = re.compile(r"\b(403|Forbidden|forbidden)\b|Not enough permissions")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _operator(env: dict[str, str], log: Path) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """`ecs-scan-operator operator` (the image ENTRYPOINT) as a local process; SIGTERM at the end."""
    exe = str(Path(sys.executable).parent / "ecs-scan-operator")
    return background_process([exe, "operator"], env, log, grace=60)


def _condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return {}


def test_operator_does_its_whole_job_as_the_service_account(
    kube_cluster: LocalCluster,
    kubectl: Kubectl,
    namespaced: Install,
    moto_server: str,
    demo_fleet: FleetInfo,
    jira_server: JiraTestServer,
    tmp_path: Path,
) -> None:
    """Only the chart's RBAC: watch, read the Jira Secret, run, patch status, post Events, hold the Lease."""
    fleet = demo_fleet  # seeded once per session (tests/e2e/conftest.py); shared, so never reset here
    ns = namespaced.watched[0]
    prefix = f"helm-rbac-{ns}"
    kubectl(
        "create", "secret", "generic", "jira-credentials", "-n", ns,
        f"--from-literal=email={jira_server.EMAIL}", f"--from-literal=apiToken={jira_server.API_TOKEN}",
    )  # fmt: skip
    policy = _policy(
        "whole-job",
        ns,
        schedule="0 0 1 1 *",  # far away: the run below is the run-now one
        jira={"url": jira_server.url, "credentialsSecret": "jira-credentials", "project": "SEC"},
        report={"s3": {"bucket": fleet.bucket, "prefix": prefix}},
    )
    policy["metadata"]["annotations"] = {"ecsscan.io/run-now": "e2e-1"}
    kubectl("apply", "-f", "-", input=yaml.safe_dump(policy))

    kubeconfig = _sa_kubeconfig(kube_cluster, kubectl, namespaced, tmp_path / "sa.kubeconfig")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        **namespaced.env,  # what the chart's Deployment sets, leader election included
        **AWS_ENV,
        "AWS_ENDPOINT_URL": moto_server,
        "KUBECONFIG": str(kubeconfig),
        "ECS_SCAN_HEALTH_PORT": str(_free_port()),
        "ECS_SCAN_METRICS_PORT": str(_free_port()),
        "ECS_SCAN_LOG_FORMAT": "text",
    }
    log = tmp_path / "operator.log"
    with _operator(env, log) as proc:

        def finished() -> dict[str, Any] | None:
            assert proc.poll() is None, f"the operator exited ({proc.returncode}):\n{log.read_text()[-5000:]}"
            obj = kubectl.json("get", SP, "whole-job", "-n", ns)
            done = (obj.get("status") or {}).get("lastRun", {}).get("completionTime")
            return obj if done and _condition(obj, "Ready").get("reason") != "Running" else None

        try:
            obj = _eventually(finished, "the run-now run to finish", timeout=240, delay=1.0)
        except AssertionError:
            pytest.fail(f"no finished run; operator log:\n{log.read_text()[-6000:]}")
        ready, tickets = _condition(obj, "Ready"), _condition(obj, "TicketsSynced")
        assert ready["reason"] in ("RunSucceeded", "PartialFailure"), ready
        assert obj["status"]["lastRunNow"] == "e2e-1"
        assert obj["status"]["lastRun"]["images"] > 0
        assert obj["status"]["lastRun"]["reportUri"].startswith(f"s3://{fleet.bucket}/{prefix}/")
        assert tickets["status"] == "True", (
            tickets
        )  # the Secret was read with `get` in the policy's namespace
        assert jira_server.state.issues, "no Jira ticket was created"

        events = kubectl.json("get", "events", "-n", ns, "--field-selector", "involvedObject.name=whole-job")
        assert events["items"], "the operator posted no Event"
        lease = kubectl.json(
            "get", "lease", namespaced.env["ECS_SCAN_LEASE_NAME"], "-n", namespaced.namespace
        )
        assert lease["spec"]["holderIdentity"] == namespaced.env["POD_NAME"]

        # What the operator writes besides the status (docs/operations.md, GitOps): nothing - no
        # finalizer (no handler needs one) and no annotations of its own (kopf's state would go under
        # ecsscan.io/, and only if needed).
        meta = obj["metadata"]
        assert not meta.get("finalizers")
        written = {
            k for k in meta.get("annotations", {}) if k.startswith(("kopf.zalando.org/", "ecsscan.io/"))
        }
        assert written <= {"ecsscan.io/run-now", "ecsscan.io/last-handled-configuration"}, written
        _, raw = kube_cluster.request(
            "GET", f"/apis/ecsscan.io/v1alpha1/namespaces/{ns}/scanpolicies/whole-job"
        )
        managers = {(m["manager"], m.get("subresource", "")) for m in raw["metadata"]["managedFields"]}
        print(f"field managers: {sorted(managers)}")

        # Deleting the policy: nothing holds it (the operator cancels a run of it on the DELETED event).
        kubectl("delete", SP, "whole-job", "-n", ns, "--wait=false")
        _eventually(
            lambda: (
                kubectl("get", SP, "whole-job", "-n", ns, "--ignore-not-found", "-o", "name").stdout.strip()
                == ""
            ),
            "the policy to be gone",
            timeout=120,
        )
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=90) == 0, log.read_text()[-5000:]

    text = log.read_text()
    trouble = [line for line in text.splitlines() if RBAC_TROUBLE.search(line)]
    assert not trouble, "the operator hit RBAC limits:\n" + "\n".join(trouble[:20])
    assert "Traceback" not in text, text[-5000:]


# --------------------------------------------------------------------------- helm itself


def _helm(kube_cluster: LocalCluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    home = ROOT / ".out" / "helm-home"
    env = {
        **os.environ,
        "KUBECONFIG": kube_cluster.kubeconfig,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    res = subprocess.run(
        [str(HELM), *args], capture_output=True, text=True, env=env, check=False, timeout=300
    )
    if check:
        assert res.returncode == 0, f"helm {' '.join(args)}:\n{res.stderr}{res.stdout}"
    return res


def test_helm_install_upgrade_uninstall(kube_cluster: LocalCluster, kubectl: Kubectl) -> None:
    """The documented lifecycle with the real helm against the API server (no kubelet: no pods run)."""
    suffix = uuid.uuid4().hex[:6]
    release, ns, team = f"life-{suffix}", f"ecs-scan-life-{suffix}", f"team-life-{suffix}"
    _create_namespace(kube_cluster, team)
    # A real cluster publishes the API server's addresses in the default/kubernetes EndpointSlice;
    # this one listens on loopback, which is never published (nor accepted in a slice), so write
    # one with a documentation address, as the API server would for a routable one.
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "kubernetes"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["192.0.2.10"]}],
        "ports": [{"name": "https", "port": kube_cluster.port, "protocol": "TCP"}],
    }
    status, body = kube_cluster.request(
        "POST", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", slice_
    )
    assert status in (201, 409), body
    role_arn = "arn:aws:iam::111122223333:role/x"
    _helm(
        kube_cluster, "install", release, str(CHART), "--namespace", ns, "--create-namespace",
        "--set", f"watchNamespaces={{{team}}}",
        "--set-string", f"serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn={role_arn}",
        "--set", "networkPolicy.enabled=true",  # API server addresses looked up at install
    )  # fmt: skip
    sa = kubectl.json("get", "serviceaccount", f"{release}-ecs-scan-operator", "-n", ns)
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(":role/x")
    policy = kubectl.json("get", "networkpolicy", f"{release}-ecs-scan-operator", "-n", ns)
    api_rule = policy["spec"]["egress"][0]
    assert {"ipBlock": {"cidr": "192.0.2.10/32"}} in api_rule["to"], api_rule  # looked up at install
    assert kubectl.json("get", "role", f"{release}-ecs-scan-operator", "-n", team)["rules"]
    assert kubectl.json("get", "crd", CRD_NAME)["spec"]["group"] == "ecsscan.io"

    state_key_secret = f"{release}-ecs-scan-operator-state-key"
    key = kubectl.json("get", "secret", state_key_secret, "-n", ns)["data"]["stateKey"]
    assert len(base64.b64decode(key)) == 64

    _helm(kube_cluster, "upgrade", release, str(CHART), "-n", ns, "--reuse-values", "--set", "replicaCount=2")
    deploy = kubectl.json("get", "deployment", f"{release}-ecs-scan-operator", "-n", ns)
    assert deploy["spec"]["replicas"] == 2
    # The state key survives the upgrade (lookup): the cached revisions stay trusted.
    assert kubectl.json("get", "secret", state_key_secret, "-n", ns)["data"]["stateKey"] == key
    assert deploy["spec"]["strategy"]["type"] == "RollingUpdate"
    assert kubectl.json("get", "role", f"{release}-ecs-scan-operator-leader-election", "-n", ns)

    _helm(kube_cluster, "uninstall", release, "-n", ns)
    leftovers = kubectl(
        "get", "deployment,serviceaccount,role,rolebinding,networkpolicy", "-n", ns, "-o", "name"
    ).stdout.split()
    assert [x for x in leftovers if release in x] == []
    # ... and the uninstall (helm.sh/resource-policy: keep): a reinstall trusts the same state.
    assert kubectl.json("get", "secret", state_key_secret, "-n", ns)["data"]["stateKey"] == key
    assert (
        kubectl("get", "clusterrole", f"{release}-ecs-scan-operator-kopf-scanning", check=False).returncode
        != 0
    )
    assert kubectl.json("get", "crd", CRD_NAME), "helm uninstall must leave the CRD (and every policy) alone"
