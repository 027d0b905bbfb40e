"""Proof that tests/cluster gives a real Kubernetes API server.

kubectl through the written kubeconfig, CRD structural schema + CEL validation
(HTTP 422 with the schema's message), status subresource semantics and RBAC
(403 until a Role is bound) - all things only a real kube-apiserver does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.cluster.fixtures import Kubectl
from tests.cluster.localcluster import LocalCluster

pytestmark = pytest.mark.e2e

GROUP = "e2e.ecs-scan.local"
PLURAL = "widgets"
CRD_NAME = f"{PLURAL}.{GROUP}"
CEL_MESSAGE = "spec.min must not exceed spec.max"

CRD_YAML = f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {CRD_NAME}
spec:
  group: {GROUP}
  scope: Namespaced
  names: {{plural: {PLURAL}, singular: widget, kind: Widget, listKind: WidgetList}}
  versions:
    - name: v1
      served: true
      storage: true
      subresources:
        status: {{}}
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [size]
              properties:
                size: {{type: integer, minimum: 1, maximum: 10}}
                min: {{type: integer, default: 0}}
                max: {{type: integer, default: 100}}
              x-kubernetes-validations:
                - rule: "self.min <= self.max"
                  message: "{CEL_MESSAGE}"
            status:
              type: object
              properties:
                phase: {{type: string}}
"""


def _eventually(fn: Callable[[], Any], what: str, attempts: int = 300, delay: float = 0.2) -> Any:
    """Retry fn until it returns a truthy value (bounded; not a timing assertion)."""
    for _ in range(attempts):
        result = fn()
        if result:
            return result
        time.sleep(delay)
    raise AssertionError(f"gave up waiting for {what}")


def _widget(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}


def _widgets_path(ns: str, name: str = "") -> str:
    return f"/apis/{GROUP}/v1/namespaces/{ns}/{PLURAL}" + (f"/{name}" if name else "")


@pytest.fixture(scope="module")
def widget_crd(kube_cluster: LocalCluster, kubectl: Kubectl) -> str:
    kubectl("apply", "-f", "-", input=CRD_YAML)
    kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=120s")
    # discovery / the CR handler can trail the Established condition by a moment
    _eventually(
        lambda: kube_cluster.request("GET", f"/apis/{GROUP}/v1/{PLURAL}")[0] == 200, "the widgets endpoint"
    )
    return CRD_NAME


def test_kubectl_get_namespaces_through_written_kubeconfig(
    kube_cluster: LocalCluster, kubectl: Kubectl
) -> None:
    res = kubectl("get", "namespaces", "-o", "name")
    names = set(res.stdout.split())
    assert {"namespace/default", "namespace/kube-system"} <= names
    version = kubectl.json("version")
    assert version["serverVersion"]["gitVersion"].startswith("v1.")


def test_python_client_reads_the_kubeconfig(kube_cluster: LocalCluster) -> None:
    kubernetes = pytest.importorskip("kubernetes")
    api_client = kubernetes.config.new_client_from_config(config_file=kube_cluster.kubeconfig)
    with api_client:
        names = {ns.metadata.name for ns in kubernetes.client.CoreV1Api(api_client).list_namespace().items}
    assert "default" in names


def test_crd_schema_and_cel_validation(
    kube_cluster: LocalCluster, widget_crd: str, kube_namespace: str
) -> None:
    path = _widgets_path(kube_namespace)

    status, body = kube_cluster.request("POST", path, _widget("good", size=3))
    assert status == 201, body
    assert body["spec"] == {"size": 3, "min": 0, "max": 100}  # structural defaulting

    status, body = kube_cluster.request("POST", path, _widget("too-big", size=11))
    assert status == 422, body
    assert body["reason"] == "Invalid"
    assert "spec.size" in body["message"]
    assert "less than or equal to 10" in body["message"]

    status, body = kube_cluster.request("POST", path, _widget("inverted", size=1, min=5, max=2))
    assert status == 422, body
    assert CEL_MESSAGE in body["message"]
    assert any(CEL_MESSAGE in c.get("message", "") for c in body["details"]["causes"])

    status, body = kube_cluster.request("GET", _widgets_path(kube_namespace, "inverted"))
    assert status == 404


def test_invalid_object_refused_through_kubectl(
    kubectl: Kubectl, widget_crd: str, kube_namespace: str
) -> None:
    manifest = (
        f"apiVersion: {GROUP}/v1\nkind: Widget\nmetadata: {{name: bad, namespace: {kube_namespace}}}\n"
        "spec: {size: 2, min: 9, max: 1}\n"
    )
    res = kubectl("apply", "-f", "-", input=manifest, check=False)
    assert res.returncode != 0
    assert CEL_MESSAGE in res.stderr


def test_status_subresource(kube_cluster: LocalCluster, widget_crd: str, kube_namespace: str) -> None:
    path = _widgets_path(kube_namespace)
    obj = _widget("w1", size=2)
    obj["status"] = {"phase": "FromCreate"}
    status, body = kube_cluster.request("POST", path, obj)
    assert status == 201, body
    assert "status" not in body or "phase" not in body["status"]  # status is dropped on create

    merge = "application/merge-patch+json"
    status, body = kube_cluster.request(
        "PATCH", _widgets_path(kube_namespace, "w1"), {"status": {"phase": "ViaMain"}}, content_type=merge
    )
    assert status == 200, body
    assert body.get("status", {}).get("phase") is None  # ignored through the main resource

    status, body = kube_cluster.request(
        "PATCH",
        _widgets_path(kube_namespace, "w1") + "/status",
        {"status": {"phase": "Ready"}, "spec": {"size": 9}},
        content_type=merge,
    )
    assert status == 200, body
    assert body["status"]["phase"] == "Ready"
    assert body["spec"]["size"] == 2  # and spec is ignored through /status

    status, body = kube_cluster.request("GET", _widgets_path(kube_namespace, "w1"))
    assert (status, body["status"]["phase"], body["spec"]["size"]) == (200, "Ready", 2)


def test_rbac_forbidden_until_role_bound(
    kube_cluster: LocalCluster, kubectl: Kubectl, widget_crd: str, kube_namespace: str
) -> None:
    path = _widgets_path(kube_namespace)
    status, body = kube_cluster.request("GET", path, user="alice")
    assert status == 403, body
    assert body["reason"] == "Forbidden"
    assert 'User "alice"' in body["message"]
    res = kubectl("get", PLURAL, "-n", kube_namespace, user="alice", check=False)
    assert res.returncode != 0 and "forbidden" in res.stderr.lower()

    kubectl("create", "role", "widget-reader", "-n", kube_namespace, "--verb=get,list,watch",
            f"--resource={PLURAL}.{GROUP}")  # fmt: skip
    kubectl("create", "rolebinding", "alice-reads-widgets", "-n", kube_namespace,
            "--role=widget-reader", "--user=alice")  # fmt: skip

    # the RBAC authorizer reads through an informer: allow it to catch up (bounded)
    _eventually(
        lambda: kube_cluster.request("GET", path, user="alice")[0] == 200, "alice's list to be allowed"
    )
    res = kubectl("get", PLURAL, "-n", kube_namespace, user="alice")
    assert res.returncode == 0

    # only what was granted: no writes, and bob still has nothing
    status, body = kube_cluster.request("POST", path, _widget("by-alice", size=1), user="alice")
    assert status == 403, body
    status, body = kube_cluster.request("GET", path, user="bob")
    assert status == 403, body
    res = kubectl(
        "auth", "can-i", "list", f"{PLURAL}.{GROUP}", "-n", kube_namespace, user="alice", check=False
    )
    assert res.stdout.strip() == "yes"
