"""Tenancy mode grants on the real API server, with two namespaces and two ScanAccessGrants.

- At apply: the chart's ValidatingAdmissionPolicy (paramRef to every grant) refuses team-a's
  policy naming team-b's role or bucket; a table of specs is judged by the API server and by
  core.grants.check() alike (one grant per namespace: the documented layout).
- With the admission policy removed, the operator refuses the same policy (Ready=False,
  AccessNotGranted) and moto has seen nothing for it (no AssumeRole with its session name, no
  report object); allowed policies run, with the external ID from the grant's Secret and the
  session name `ecsscan-<namespace>-<policy>` at moto's STS; grants changed while the operator
  runs take effect (widened: the refused policy runs; narrowed: an allowed one is refused).
- RBAC: the operator only reads grants; a tenant with every right in its namespace can neither read
  nor change them (`kubectl auth can-i --as`).
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ecs_scan_operator.core.grants import Allowed, check, parse_grant
from ecs_scan_operator.core.policy import PolicyRef, parse_spec
from ecs_scan_operator.demo.fleet import ACCOUNT
from tests.cluster.fixtures import Kubectl
from tests.cluster.localcluster import LocalCluster
from tests.e2e.conftest import Api, StartOperator, policy, report_runs, wait_for
from tests.e2e.test_helm_rbac import helm_template

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
GRANT_CRD = ROOT / "crds" / "scanaccessgrants.ecsscan.io.yaml"
GRANTS_PATH = "/apis/ecsscan.io/v1alpha1/scanaccessgrants"
ROLE_A = f"arn:aws:iam::{ACCOUNT}:role/scan-team-a"
ROLE_B = f"arn:aws:iam::{ACCOUNT}:role/scan-team-b"
EXTERNAL_ID = "ext-id-from-the-grant-7f3a"


@dataclass
class Tenants:
    """Two team namespaces (a by name, b by label), their grants and the Secret of team-a's external ID."""

    cluster: LocalCluster
    a: str
    b: str
    ops: str
    label: dict[str, str]
    grant_a: dict[str, Any]
    grant_b: dict[str, Any]

    def put_grant(self, grant: dict[str, Any]) -> None:
        name = grant["metadata"]["name"]
        status, body = self.cluster.request("GET", f"{GRANTS_PATH}/{name}")
        if status == 200:
            grant = {
                **grant,
                "metadata": {**grant["metadata"], "resourceVersion": body["metadata"]["resourceVersion"]},
            }
            status, body = self.cluster.request("PUT", f"{GRANTS_PATH}/{name}?fieldValidation=Strict", grant)
            assert status == 200, body
        else:
            status, body = self.cluster.request("POST", f"{GRANTS_PATH}?fieldValidation=Strict", grant)
            assert status == 201, body

    def labels_of(self, namespace: str) -> dict[str, str]:
        return self.label if namespace == self.b else {}


def _grant(name: str, namespaces: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ecsscan.io/v1alpha1",
        "kind": "ScanAccessGrant",
        "metadata": {"name": name},
        "spec": {"namespaces": namespaces, **spec},
    }


def _namespace(cluster: LocalCluster, name: str, labels: dict[str, str] | None = None) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}
    status, out = cluster.request("POST", "/api/v1/namespaces", body)
    assert status in (201, 409), out


@pytest.fixture
def tenants(
    kube_cluster: LocalCluster, kubectl: Kubectl, kube_namespace: str, scanpolicy_crd: str
) -> Iterator[Tenants]:
    kubectl("apply", "--server-side", "-f", str(GRANT_CRD))
    kubectl("wait", "--for=condition=Established", "crd/scanaccessgrants.ecsscan.io", "--timeout=60s")
    suffix = uuid.uuid4().hex[:6]
    b, ops, label = f"team-b-{suffix}", f"ops-{suffix}", {"team": f"b-{suffix}"}
    _namespace(kube_cluster, b, label)
    _namespace(kube_cluster, ops)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "team-a-external-id", "namespace": ops},
        "data": {"externalId": base64.b64encode(EXTERNAL_ID.encode()).decode()},
    }
    status, body = kube_cluster.request("POST", f"/api/v1/namespaces/{ops}/secrets", secret)
    assert status == 201, body
    a = kube_namespace
    t = Tenants(
        kube_cluster,
        a,
        b,
        ops,
        label,
        _grant(
            f"team-a-{suffix}",
            {"names": [a]},
            aws={
                "roleArns": [ROLE_A],
                "regions": ["us-*"],
                "externalIdSecretRef": {"namespace": ops, "name": "team-a-external-id"},
                "accounts": ["*"],
                "organizationalUnits": ["ou-ab12-*"],
            },
            reports=[{"bucket": "ecs-scan-reports", "prefix": f"e2e/{a}"}],
            jira={"urls": ["https://team-a.atlassian.net"]},
            serviceAccountNames=["ecs-scan-*"],
        ),
        _grant(
            f"team-b-{suffix}",
            {"selector": {"matchLabels": label}},
            aws={"roleArns": [f"arn:aws:iam::{ACCOUNT}:role/scan-team-b*"], "regions": ["us-east-1"]},
            reports=[{"bucket": "ecs-scan-reports", "prefix": f"e2e/{b}", "kmsKey": "alias/team-b"}],
        ),
    )
    t.put_grant(t.grant_a)
    t.put_grant(t.grant_b)
    yield t
    for grant in (t.grant_a, t.grant_b):
        kube_cluster.request("DELETE", f"{GRANTS_PATH}/{grant['metadata']['name']}")


PATTERN = "arn:aws:iam::{account}:role/scan-read"
OU = "ou-ab12-11111111"
# namespace ("a" or "b"), spec changes: each is judged by the API server and by check()
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("own role and bucket", "a", {"aws": {"region": "us-east-1", "roleArn": ROLE_A}}),
    ("team-b's role", "a", {"aws": {"region": "us-east-1", "roleArn": ROLE_B}}),
    ("team-b's prefix", "a", {"aws": {"region": "us-east-1", "roleArn": ROLE_A}, "report": "b"}),
    (
        "another bucket",
        "a",
        {"aws": {"region": "us-east-1", "roleArn": ROLE_A}, "bucket": "other-team-reports"},
    ),
    ("a region not granted", "a", {"aws": {"region": "eu-west-1", "roleArn": ROLE_A}}),
    (
        "one of two regions not granted",
        "a",
        {"aws": {"regions": ["us-east-2", "ap-south-1"], "roleArn": ROLE_A}},
    ),
    ("the operator's identity", "a", {"aws": {"region": "us-east-1"}}),
    (
        "an external ID the grant supplies",
        "a",
        {"aws": {"region": "us-east-1", "roleArn": ROLE_A, "externalId": "mine"}},
    ),
    (
        "a registry role not granted",
        "a",
        {"aws": {"region": "us-east-1", "roleArn": ROLE_A, "registryRoleArn": ROLE_B}},
    ),
    ("a KMS key not granted", "a", {"aws": {"region": "us-east-1", "roleArn": ROLE_A}, "kms": "alias/x"}),
    (
        "its Jira site",
        "a",
        {"aws": {"region": "us-east-1", "roleArn": ROLE_A}, "jira": "https://team-a.atlassian.net/"},
    ),
    (
        "another Jira site",
        "a",
        {"aws": {"region": "us-east-1", "roleArn": ROLE_A}, "jira": "https://team-a.atlassian.net.evil.io"},
    ),
    (
        "its run ServiceAccount",
        "a",
        {"aws": {"region": "us-east-1", "roleArn": ROLE_A}, "sa": "ecs-scan-nightly"},
    ),
    ("another ServiceAccount", "a", {"aws": {"region": "us-east-1", "roleArn": ROLE_A}, "sa": "default"}),
    (
        "by label, a ServiceAccount not granted",
        "b",
        {
            "aws": {"region": "us-east-1", "roleArn": ROLE_B},
            "report": "b",
            "kms": "alias/team-b",
            "sa": "ecs-scan",
        },
    ),
    (
        "by label, pattern role, its KMS key",
        "b",
        {"aws": {"region": "us-east-1", "roleArn": ROLE_B + "-x"}, "report": "b", "kms": "alias/team-b"},
    ),
    (
        "by label, no KMS key where one is required",
        "b",
        {"aws": {"region": "us-east-1", "roleArn": ROLE_B}, "report": "b"},
    ),
    (
        "accounts by list",
        "a",
        {"aws": {"region": "us-east-1", "accounts": [ACCOUNT], "roleArnPattern": PATTERN}},
    ),
    (
        "accounts by list, none granted",
        "b",
        {
            "aws": {"region": "us-east-1", "accounts": [ACCOUNT], "roleArnPattern": PATTERN},
            "report": "b",
            "kms": "alias/team-b",
        },
    ),
    (
        "an organization under a granted OU",
        "a",
        {
            "aws": {
                "region": "us-east-1",
                "organization": {"roleArn": ROLE_A, "parents": [OU]},
                "roleArnPattern": PATTERN,
            }
        },
    ),
    (
        "an organization through a role not granted",
        "a",
        {
            "aws": {
                "region": "us-east-1",
                "organization": {"roleArn": ROLE_B, "parents": [OU]},
                "roleArnPattern": PATTERN,
            }
        },
    ),
    (
        "an OU not granted",
        "a",
        {
            "aws": {
                "region": "us-east-1",
                "organization": {"roleArn": ROLE_A, "parents": ["ou-zz99-11111111"]},
                "roleArnPattern": PATTERN,
            }
        },
    ),
    (
        "the whole organization, * not granted",
        "a",
        {"aws": {"region": "us-east-1", "organization": {"roleArn": ROLE_A}, "roleArnPattern": PATTERN}},
    ),
    (
        "an Inspector administrator role not granted",
        "a",
        {
            "aws": {
                "region": "us-east-1",
                "accounts": [ACCOUNT],
                "roleArnPattern": PATTERN,
                "inspectorAdminRoleArn": ROLE_B,
            }
        },
    ),
    (
        "by label, team-a's role",
        "b",
        {"aws": {"region": "us-east-1", "roleArn": ROLE_A}, "report": "b", "kms": "alias/team-b"},
    ),
]


def _manifest(t: Tenants, name: str, which: str, case: dict[str, Any]) -> dict[str, Any]:
    ns = t.a if which == "a" else t.b
    report_ns = t.b if case.get("report") == "b" else ns
    doc = policy(name, ns, aws=case["aws"])
    s3 = {"bucket": case.get("bucket", "ecs-scan-reports"), "prefix": f"e2e/{report_ns}"}
    if "kms" in case:
        s3["kmsKeyId"] = case["kms"]
    doc["spec"]["report"] = {"s3": s3}
    if "jira" in case:
        doc["spec"]["jira"] = {"url": case["jira"], "credentialsSecret": "jira", "project": "SEC"}
    if "sa" in case:
        doc["spec"]["serviceAccountName"] = case["sa"]
    return doc


def _python_verdict(t: Tenants, doc: dict[str, Any]) -> bool:
    grants = [parse_grant(t.grant_a), parse_grant(t.grant_b)]
    ns = doc["metadata"]["namespace"]
    ref = PolicyRef(namespace=ns, name=doc["metadata"]["name"])
    return isinstance(check(ref, t.labels_of(ns), parse_spec(doc["spec"]), grants), Allowed)


def _install_admission_policy(kubectl: Kubectl, release: str) -> list[dict[str, Any]]:
    objs = [
        o
        for o in helm_template(release, "ecs-scan", "tenancy.mode=grants", "rbac.protectSpec=false")
        if o["kind"].startswith("ValidatingAdmissionPolicy")
    ]
    assert {o["kind"] for o in objs} == {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
    kubectl("apply", "-f", "-", input="\n---\n".join(yaml.safe_dump(o) for o in objs))
    return objs


def _remove(kubectl: Kubectl, objs: list[dict[str, Any]]) -> None:
    for o in reversed(objs):
        kubectl("delete", o["kind"].lower(), o["metadata"]["name"], "--ignore-not-found", check=False)


def test_admission_refuses_what_the_namespaces_grant_does_not_allow(
    tenants: Tenants, kube_cluster: LocalCluster, kubectl: Kubectl
) -> None:
    objs = _install_admission_policy(kubectl, f"vap-{uuid.uuid4().hex[:6]}")
    try:
        api_a, api_b = Api(kube_cluster, tenants.a), Api(kube_cluster, tenants.b)
        probe = _manifest(tenants, "probe", "a", CASES[1][2])
        # the API server's policy informer catches up with the new policy and binding
        wait_for("the admission policy to refuse", lambda: api_a.create(probe, dry_run=True)[0] == 403)

        for i, (what, which, case) in enumerate(CASES):
            doc = _manifest(tenants, f"p{i}", which, case)
            status, body = (api_a if which == "a" else api_b).create(doc, dry_run=True)
            allowed = _python_verdict(tenants, doc)
            assert status in (201, 403), (what, body)
            assert (status == 201) is allowed, (
                f"{what}: API server {status}, check() allowed={allowed}: {body}"
            )
            if status == 403:
                assert "is forbidden" in body["message"] and "ScanAccessGrant" in body["message"], body

        # what kubectl shows at apply: the field, and what is granted
        res = kubectl("apply", "-f", "-", input=yaml.safe_dump(probe), check=False)
        assert res.returncode != 0
        assert f"spec.aws.roleArn: {ROLE_B} is not granted" in res.stderr and ROLE_A in res.stderr
        doc = _manifest(tenants, "bucket", "a", CASES[3][2])
        res = kubectl("apply", "-f", "-", input=yaml.safe_dump(doc), check=False)
        assert (
            res.returncode != 0 and "spec.report.s3.bucket: other-team-reports is not granted" in res.stderr
        )

        # a namespace no grant selects: admission lets it through (the operator refuses it)
        other = f"nobody-{uuid.uuid4().hex[:6]}"
        _namespace(kube_cluster, other)
        stray = policy("stray", other, aws={"region": "eu-west-1", "roleArn": ROLE_B})
        assert Api(kube_cluster, other).create(stray, dry_run=True)[0] == 201

        # the operator's metadata patches are never refused: an allowed policy, then the grant narrows
        ok = _manifest(tenants, "kept", "a", CASES[0][2])
        assert api_a.create(ok)[0] == 201
        narrowed = json.loads(json.dumps(tenants.grant_a))
        narrowed["spec"]["aws"]["roleArns"] = ["arn:aws:iam::999999999999:role/none"]
        tenants.put_grant(narrowed)
        wait_for(
            "the narrowed grant to refuse a spec change",
            lambda: (
                kube_cluster.request(
                    "PATCH",
                    f"{api_a.base}/kept",
                    {"spec": {"suspend": True}},
                    content_type="application/merge-patch+json",
                )[0]
                == 403
            ),
        )
        patch = {"metadata": {"finalizers": ["ecsscan.io/finalizer"], "annotations": {"x": "y"}}}
        assert api_a.patch("kept", patch)["metadata"]["finalizers"] == ["ecsscan.io/finalizer"]
        api_a.patch("kept", {"metadata": {"finalizers": None}})
        api_a.delete("kept")
    finally:
        _remove(kubectl, objs)


def tenancy_name(grant: dict[str, Any]) -> str:
    return str(grant["metadata"]["name"])


def _assumed_sessions(moto_url: str) -> dict[str, str | None]:
    """Session name -> external ID of every AssumeRole moto has answered."""
    with urllib.request.urlopen(f"{moto_url}/moto-api/data.json", timeout=10) as resp:
        data = json.loads(resp.read())
    roles = (data.get("sts") or {}).get("AssumedRole") or []
    return {str(r["session_name"]): r.get("external_id") for r in roles}


def _ready(api: Api, name: str) -> dict[str, Any]:
    for cond in api.status(name).get("conditions") or []:
        if cond.get("type") == "Ready":
            return dict(cond)
    return {}


def _finished(api: Api, name: str, run_now: str) -> dict[str, Any] | None:
    status = api.status(name)
    if "activeRun" in status or status.get("lastRunNow") != run_now or "lastRun" not in status:
        return None
    return status


def test_the_operator_refuses_without_calling_aws_and_follows_grant_changes(
    tenants: Tenants,
    kube_cluster: LocalCluster,
    kubectl: Kubectl,
    start_operator: StartOperator,
    moto_server: str,
) -> None:
    # the admission policy removed (any release's): the operator is the one that refuses
    for kind in ("validatingadmissionpolicybinding", "validatingadmissionpolicy"):
        for item in kubectl.json("get", kind)["items"]:
            if item["metadata"]["name"].endswith("-access-grants.ecsscan.io"):
                kubectl("delete", kind, item["metadata"]["name"])
    a, b = Api(kube_cluster, tenants.a), Api(kube_cluster, tenants.b)
    start_operator(ECS_SCAN_TENANCY_MODE="grants", ECS_SCAN_WATCH_NAMESPACES=f"{tenants.a},{tenants.b}")

    borrowed = policy("borrowed", tenants.a, run_now="1", aws={"region": "us-east-1", "roleArn": ROLE_B})
    own = policy("own", tenants.a, run_now="1", aws={"region": "us-east-1", "roleArn": ROLE_A})
    theirs = policy("theirs", tenants.b, run_now="1", aws={"region": "us-east-1", "roleArn": ROLE_B})
    theirs["spec"]["report"]["s3"]["kmsKeyId"] = "alias/team-b"
    for api, doc in ((a, borrowed), (a, own), (b, theirs)):
        status, body = api.create(doc)
        assert status == 201, body

    cond = wait_for(
        "AccessNotGranted", lambda: (c := _ready(a, "borrowed")).get("reason") == "AccessNotGranted" and c
    )
    assert cond["status"] == "False"
    assert f"spec.aws.roleArn: {ROLE_B} is not granted" in cond["message"] and ROLE_A in cond["message"]
    wait_for("the AccessNotGranted Event", lambda: "AccessNotGranted" in a.event_reasons("borrowed"))

    # allowed policies run: as ecsscan-<namespace>-<policy>, with the grant's external ID
    wait_for("team-a's own policy to run", lambda: _finished(a, "own", "1"), timeout=120)
    wait_for("team-b's policy to run", lambda: _finished(b, "theirs", "1"), timeout=120)
    sessions = _assumed_sessions(moto_server)
    assert sessions[f"ecsscan-{tenants.a}-own"] == EXTERNAL_ID
    assert sessions[f"ecsscan-{tenants.b}-theirs"] is None
    assert report_runs(moto_server, tenants.a, "own")

    # the refused one: nothing at moto, no run, still refused
    time.sleep(6)  # a resync round
    assert f"ecsscan-{tenants.a}-borrowed" not in _assumed_sessions(moto_server)
    assert report_runs(moto_server, tenants.a, "borrowed") == {}
    assert "lastRun" not in a.status("borrowed") and _ready(a, "borrowed")["reason"] == "AccessNotGranted"

    # widened while the operator runs: the pending run-now of the refused policy runs
    widened = json.loads(json.dumps(tenants.grant_a))
    widened["spec"]["aws"]["roleArns"].append(ROLE_B)
    tenants.put_grant(widened)
    wait_for("the widened grant to take effect", lambda: _finished(a, "borrowed", "1"), timeout=120)
    assert _assumed_sessions(moto_server)[f"ecsscan-{tenants.a}-borrowed"] == EXTERNAL_ID

    # narrowed: team-a's regions become eu-*; the next look refuses, naming the field
    narrowed = json.loads(json.dumps(widened))
    narrowed["spec"]["aws"]["regions"] = ["eu-*"]
    tenants.put_grant(narrowed)
    cond = wait_for(
        "the narrowed grant to refuse",
        lambda: (c := _ready(a, "own")).get("reason") == "AccessNotGranted" and c,
    )
    assert "spec.aws.region: region us-east-1 is not granted" in cond["message"] and "eu-*" in cond["message"]

    # team-b's namespace loses the label its grant selects: the Namespace watch tells the operator,
    # which refuses the policy there; the label back, it is allowed again
    label_key = next(iter(tenants.label))
    path = f"/api/v1/namespaces/{tenants.b}"
    patch = "application/merge-patch+json"
    status, body = kube_cluster.request(
        "PATCH", path, {"metadata": {"labels": {label_key: None}}}, content_type=patch
    )
    assert status == 200, body
    cond = wait_for(
        "the relabelled namespace to be refused",
        lambda: (c := _ready(b, "theirs")).get("reason") == "AccessNotGranted" and c,
    )
    assert f"no ScanAccessGrant selects namespace {tenants.b}" in cond["message"]
    status, body = kube_cluster.request(
        "PATCH", path, {"metadata": {"labels": tenants.label}}, content_type=patch
    )
    assert status == 200, body
    wait_for("the label back to allow it", lambda: _ready(b, "theirs").get("reason") != "AccessNotGranted")

    # the operator only read the grants: no finalizer, annotation or field manager of its own
    for grant in (tenancy_name(tenants.grant_a), tenancy_name(tenants.grant_b)):
        status, body = kube_cluster.request("GET", f"{GRANTS_PATH}/{grant}")
        assert status == 200, body
        meta = body["metadata"]
        assert not meta.get("finalizers") and not meta.get("annotations"), meta
        assert {m["manager"] for m in meta.get("managedFields") or []} <= {
            "python-requests",
            "Python-urllib",
        }, meta


def test_tenants_can_neither_read_nor_change_grants_and_the_operator_only_reads(
    tenants: Tenants, kube_cluster: LocalCluster, kubectl: Kubectl
) -> None:
    release = f"rbac-{uuid.uuid4().hex[:6]}"
    home = f"ecs-scan-{release}"
    _namespace(kube_cluster, home)
    objs = [
        o
        for o in helm_template(release, home, f"watchNamespaces={{{tenants.a}}}", "tenancy.mode=grants")
        if o["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    ]
    kubectl("apply", "--server-side", "-f", "-", input="\n---\n".join(yaml.safe_dump(o) for o in objs))
    (sa,) = [o for o in objs if o["kind"] == "ServiceAccount"]
    operator = f"system:serviceaccount:{home}:{sa['metadata']['name']}"
    # alice may do anything to anything in team-a's namespace (more than the built-in admin role,
    # whose rules the aggregation controller would fill in: it does not run here, and the chart
    # aggregates nothing into admin/edit/view anyway, see tests/unit/test_helm_tenancy.py)
    everything = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "alice-everything", "namespace": tenants.a},
        "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "alice-everything", "namespace": tenants.a},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "alice-everything"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}],
    }
    kubectl("apply", "-f", "-", input=yaml.safe_dump(everything) + "\n---\n" + yaml.safe_dump(binding))

    def can_i(who: str, verb: str, *where: str) -> bool:
        res = kubectl(
            "auth", "can-i", verb, "scanaccessgrants.ecsscan.io", *where, f"--as={who}", check=False
        )
        assert res.stdout.strip() in ("yes", "no"), res.stderr
        return res.stdout.strip() == "yes"

    wait_for("the chart's RBAC", lambda: can_i(operator, "watch"))
    wait_for(
        "alice's RoleBinding",
        lambda: (
            kubectl(
                "auth", "can-i", "delete", "secrets", "-n", tenants.a, "--as=alice", check=False
            ).stdout.strip()
            == "yes"
        ),
    )
    for verb in ("get", "list", "watch"):
        assert can_i(operator, verb)
    for verb in ("create", "update", "patch", "delete", "deletecollection"):
        assert not can_i(operator, verb), verb
    # the Namespace watch (labels for grants that select by label): read-only
    for verb in ("get", "list", "watch", "create", "patch", "delete"):
        res = kubectl("auth", "can-i", verb, "namespaces", f"--as={operator}", check=False)
        assert res.stdout.strip() == ("yes" if verb in ("get", "list", "watch") else "no"), (verb, res.stderr)
    # (grants are cluster-scoped: a request for them carries no namespace, so her namespace's
    # Role never applies; `can-i -n` would ask a question no real request asks)
    for verb in ("get", "list", "watch", "create", "update", "patch", "delete"):
        assert not can_i("alice", verb), verb
    # and for real: the API server refuses alice's list and create
    res = kubectl("get", "scanaccessgrants", user="alice", check=False)
    assert res.returncode != 0 and "forbidden" in res.stderr
    mine = json.loads(json.dumps(tenants.grant_a))
    mine["metadata"]["name"] = f"alice-{uuid.uuid4().hex[:6]}"
    mine["spec"]["aws"]["roleArns"] = ["*"]
    res = kubectl("create", "-f", "-", input=yaml.safe_dump(mine), user="alice", check=False)
    assert res.returncode != 0 and "forbidden" in res.stderr
