"""The chart's tenancy: the mode per install kind, the grants' RBAC and admission policy."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.test_helm_chart import CHART, GRANT_RULES, GRANTS, RELEASE, _roles, by_kind, helm, render

pytestmark = pytest.mark.tools


def env(objs: list[dict[str, Any]]) -> dict[str, str]:
    (deploy,) = by_kind(objs, "Deployment")
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def access_vaps(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objs if o["metadata"]["name"].endswith("-access-grants.ecsscan.io")]


@pytest.mark.parametrize(
    ("args", "mode"),
    [
        ((), "grants"),  # cluster-wide: grants by default
        (("--set", "watchNamespaces={team-a}"), "open"),  # namespaced: open by default
        (("--set", "watchNamespaces={team-a}", "--set", "tenancy.mode=grants"), "grants"),
        (("--set", "tenancy.mode=open"), "open"),
    ],
)
def test_the_mode_reaches_the_operator_with_its_rbac_and_admission_policy(
    args: tuple[str, ...], mode: str
) -> None:
    objs = render(None, *args)
    assert env(objs)["ECS_SCAN_TENANCY_MODE"] == mode
    assert env(objs)["ECS_SCAN_AWS_SESSION_TAGS"] == "true"
    roles = _roles(objs)
    if mode == "grants":
        assert roles[GRANTS] == GRANT_RULES  # read-only
        assert {o["kind"] for o in access_vaps(objs)} == {
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        }
    else:
        assert GRANTS not in roles and not access_vaps(objs)


def test_the_admission_policy_is_bound_to_every_grant_and_allows_when_there_is_none() -> None:
    objs = access_vaps(render())
    (vap,) = by_kind(objs, "ValidatingAdmissionPolicy")
    (binding,) = by_kind(objs, "ValidatingAdmissionPolicyBinding")
    assert vap["spec"]["paramKind"] == {"apiVersion": "ecsscan.io/v1alpha1", "kind": "ScanAccessGrant"}
    assert binding["spec"]["paramRef"] == {"selector": {}, "parameterNotFoundAction": "Allow"}
    assert binding["spec"]["validationActions"] == ["Deny"]
    # the operator's own metadata patches (finalizer) never meet it: only spec changes are checked
    assert "object.spec != oldObject.spec" in vap["spec"]["matchConditions"][0]["expression"]
    assert not access_vaps(render(None, "--set", "tenancy.admissionPolicy=false"))


def test_external_id_secrets_are_read_by_name_only() -> None:
    objs = render(None, "--set", "tenancy.externalIdSecrets={team-a-ext,team-b-ext}")
    key = ("Role", "ecs-scan", "scan-ecs-scan-operator-external-ids")
    assert _roles(objs)[key] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["team-a-ext", "team-b-ext"],
            "verbs": ["get"],
        }
    ]


def test_no_role_of_the_chart_is_aggregated_or_grants_write_access_to_grants() -> None:
    for args in [(), ("--set", "watchNamespaces={team-a}", "--set", "tenancy.mode=grants")]:
        objs = render(None, *args)
        for role in [*by_kind(objs, "ClusterRole"), *by_kind(objs, "Role")]:
            labels = role["metadata"].get("labels") or {}
            assert not [k for k in labels if "aggregate-to" in k], role["metadata"]["name"]
            assert "aggregationRule" not in role
            for rule in role["rules"]:
                if "scanaccessgrants" in rule.get("resources", []):
                    assert set(rule["verbs"]) <= {"get", "list", "watch"}


def test_admission_policy_needs_kubernetes_1_30() -> None:
    res = helm(
        "template",
        RELEASE,
        str(CHART),
        "--kube-version",
        "1.29.3",
        "--set",
        "rbac.protectSpec=false",
        check=False,
    )
    assert res.returncode != 0 and "tenancy.admissionPolicy=false" in res.stderr
