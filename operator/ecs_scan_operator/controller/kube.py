"""The Kubernetes API calls the controller makes itself (kopf makes the watch calls), as plain dicts.

Blocking (the official `kubernetes` client); the async code calls them in threads. Errors are
mapped at this boundary: 404 -> None or NotFoundError, 409 -> Conflict, throttling, 5xx and
connection errors -> TransientError, anything else -> PermanentError.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from ecs_scan_operator.core.policy import API_GROUP, API_VERSION
from ecs_scan_operator.errors import NotFoundError, PermanentError, TransientError

PLURAL = "scanpolicies"
T = TypeVar("T")


class Conflict(TransientError):
    """The object changed since it was read (HTTP 409); read it again and retry."""


class KubeApi(Protocol):
    """What the controller needs from the API server."""

    def get_policy(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ScanPolicy, or None when it is gone."""
        ...

    def patch_policy_status(
        self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str
    ) -> dict[str, Any]:
        """Merge-patch the status subresource if the object is still at resource_version."""
        ...

    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        """The Secret's data (base64 values), NotFoundError when absent."""
        ...

    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The coordination.k8s.io Lease, or None when absent."""
        ...

    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a Lease (Conflict when it already exists)."""
        ...

    def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Replace a Lease; body carries metadata.resourceVersion (Conflict when it moved)."""
        ...


# Told of every request (the verb and kind of `what`: "get scanpolicy"); the operator counts them.
_on_request: list[Callable[[str], None]] = []


def count_requests(hook: Callable[[str], None]) -> None:
    """Call `hook` with "<verb> <kind>" before every request of ClientKubeApi (metrics)."""
    _on_request.append(hook)


def map_errors(call: Callable[[], T], what: str) -> T:
    """Run one client call, mapping its errors onto the project's hierarchy."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    for hook in _on_request:
        hook(" ".join(what.split()[:2]))
    try:
        return call()
    except ApiException as exc:
        reason = _reason(exc)
        if exc.status == 404:
            raise NotFoundError(f"{what}: not found") from exc
        if exc.status == 409:
            raise Conflict(f"{what}: {reason}") from exc
        if exc.status in (0, 429, 500, 502, 503, 504):
            raise TransientError(f"{what}: HTTP {exc.status} {reason}") from exc
        raise PermanentError(f"{what}: HTTP {exc.status} {reason}") from exc
    except (HTTPError, OSError) as exc:
        raise TransientError(f"{what}: {type(exc).__name__}: {exc}") from exc


def _reason(exc: Any) -> str:
    # The API server's Status message names the field (422s); prefer it to the HTTP reason.
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        body = {}
    return str(body.get("message") or exc.reason or "")


def _json(response: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(response.data or b"{}")
    return data


class ClientKubeApi:
    """KubeApi over the official client; in-cluster config when in a pod, else $KUBECONFIG."""

    def __init__(self, api_client: Any | None = None, *, timeout: float = 30.0) -> None:
        from kubernetes import client, config

        if api_client is None:
            configuration = client.Configuration()
            if os.environ.get("KUBERNETES_SERVICE_HOST"):
                config.load_incluster_config(client_configuration=configuration)
            else:
                config.load_kube_config(client_configuration=configuration)
            api_client = client.ApiClient(configuration)
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)
        self._coordination = client.CoordinationV1Api(api_client)
        self._batch = client.BatchV1Api(api_client)
        self._timeout = timeout

    def get_policy(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ScanPolicy, or None when it is gone."""
        try:
            return map_errors(
                lambda: _json(
                    self._custom.get_namespaced_custom_object(
                        API_GROUP,
                        API_VERSION,
                        namespace,
                        PLURAL,
                        name,
                        _preload_content=False,
                        _request_timeout=self._timeout,
                    )
                ),
                f"get scanpolicy {namespace}/{name}",
            )
        except NotFoundError:
            return None

    def patch_policy_status(
        self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str
    ) -> dict[str, Any]:
        """Merge-patch the status subresource if the object is still at resource_version."""
        # resourceVersion in a merge patch is a precondition: 409 when someone wrote in between.
        body = {"metadata": {"resourceVersion": resource_version}, "status": dict(status)}
        return map_errors(
            lambda: _json(
                self._custom.patch_namespaced_custom_object_status(
                    API_GROUP,
                    API_VERSION,
                    namespace,
                    PLURAL,
                    name,
                    body,
                    _preload_content=False,
                    _request_timeout=self._timeout,
                )
            ),
            f"patch scanpolicy {namespace}/{name} status",
        )

    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        """The Secret's data (base64 values), NotFoundError when absent."""
        raw = map_errors(
            lambda: _json(
                self._core.read_namespaced_secret(
                    name, namespace, _preload_content=False, _request_timeout=self._timeout
                )
            ),
            f"read secret {namespace}/{name}",
        )
        data = raw.get("data") or {}
        return {str(k): str(v) for k, v in data.items()}

    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The coordination.k8s.io Lease, or None when absent."""
        try:
            return map_errors(
                lambda: _json(
                    self._coordination.read_namespaced_lease(
                        name, namespace, _preload_content=False, _request_timeout=self._timeout
                    )
                ),
                f"get lease {namespace}/{name}",
            )
        except NotFoundError:
            return None

    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a Lease (Conflict when it already exists)."""
        return map_errors(
            lambda: _json(
                self._coordination.create_namespaced_lease(
                    namespace, dict(body), _preload_content=False, _request_timeout=self._timeout
                )
            ),
            f"create lease {namespace}/{body.get('metadata', {}).get('name')}",
        )

    def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Replace a Lease; body carries metadata.resourceVersion (Conflict when it moved)."""
        return map_errors(
            lambda: _json(
                self._coordination.replace_namespaced_lease(
                    name, namespace, dict(body), _preload_content=False, _request_timeout=self._timeout
                )
            ),
            f"replace lease {namespace}/{name}",
        )

    # ---- tenancy (ScanAccessGrant, cluster-scoped; namespace labels for the grants' selectors)

    def list_grants(self) -> list[dict[str, Any]]:
        """Every ScanAccessGrant."""
        raw = map_errors(
            lambda: _json(
                self._custom.list_cluster_custom_object(
                    API_GROUP,
                    API_VERSION,
                    "scanaccessgrants",
                    _preload_content=False,
                    _request_timeout=self._timeout,
                )
            ),
            "list scanaccessgrants",
        )
        return [dict(item) for item in raw.get("items") or []]

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        """The namespace's labels (NotFoundError when it is gone)."""
        raw = map_errors(
            lambda: _json(
                self._core.read_namespace(namespace, _preload_content=False, _request_timeout=self._timeout)
            ),
            f"get namespace {namespace}",
        )
        labels = (raw.get("metadata") or {}).get("labels") or {}
        return {str(k): str(v) for k, v in labels.items()}

    # ---- runner mode job (controller/jobs.py): Jobs, their pinned-spec ConfigMaps, their Pods

    def create_job(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a Job (Conflict when the name exists)."""
        return map_errors(
            lambda: _json(
                self._batch.create_namespaced_job(
                    namespace, dict(body), _preload_content=False, _request_timeout=self._timeout
                )
            ),
            f"create job {namespace}/{body.get('metadata', {}).get('name')}",
        )

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Job, or None when it is gone."""
        try:
            return map_errors(
                lambda: _json(
                    self._batch.read_namespaced_job(
                        name, namespace, _preload_content=False, _request_timeout=self._timeout
                    )
                ),
                f"get job {namespace}/{name}",
            )
        except NotFoundError:
            return None

    def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job; its Pods and ConfigMap are deleted in the background (NotFoundError if gone)."""
        map_errors(
            lambda: self._batch.delete_namespaced_job(
                name,
                namespace,
                propagation_policy="Background",
                _preload_content=False,
                _request_timeout=self._timeout,
            ),
            f"delete job {namespace}/{name}",
        )

    def list_jobs(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The Jobs of a namespace matching a label selector."""
        raw = map_errors(
            lambda: _json(
                self._batch.list_namespaced_job(
                    namespace, label_selector=selector, _preload_content=False, _request_timeout=self._timeout
                )
            ),
            f"list jobs {namespace} ({selector})",
        )
        return [dict(item) for item in raw.get("items") or []]

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The Pods of a namespace matching a label selector."""
        raw = map_errors(
            lambda: _json(
                self._core.list_namespaced_pod(
                    namespace, label_selector=selector, _preload_content=False, _request_timeout=self._timeout
                )
            ),
            f"list pods {namespace} ({selector})",
        )
        return [dict(item) for item in raw.get("items") or []]

    def create_config_map(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a ConfigMap (Conflict when the name exists)."""
        return map_errors(
            lambda: _json(
                self._core.create_namespaced_config_map(
                    namespace, dict(body), _preload_content=False, _request_timeout=self._timeout
                )
            ),
            f"create configmap {namespace}/{body.get('metadata', {}).get('name')}",
        )
