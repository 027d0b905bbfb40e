"""Tenancy mode `grants`: the ScanAccessGrants as the watch last saw them, and what a check needs.

The index is primed by one list at startup (so no policy is judged against an empty index) and
kept by a kopf event handler on scanaccessgrants (handlers.py), which also wakes the policy
loops: a grant created, changed or deleted takes effect at once, without a restart. A grant the
model refuses grants nothing (and is logged); the API server's schema makes that rare.

Namespace labels matter only when some grant selects namespaces by label. They come from a
watch on Namespaces (handlers.py, grants mode), kept in NamespaceLabels: a look at a policy then
reads no API at all, and a label change makes every policy look again at once (a namespace that
gains or loses a label gains or loses its grants without waiting for a schedule). Until the watch
has listed a namespace, its labels are read with one GET.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from ecs_scan_operator.core.grants import Grant, SecretKeyRef, Tenancy, parse_grant
from ecs_scan_operator.core.policy import PolicySpec
from ecs_scan_operator.errors import InvalidPolicy, PermanentError

log = logging.getLogger(__name__)


class GrantApi(Protocol):
    """The API calls tenancy needs."""

    def list_grants(self) -> list[dict[str, Any]]:
        """Every ScanAccessGrant."""
        ...

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        """The namespace's labels."""
        ...

    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        """A Secret's data (base64 values)."""
        ...


class GrantIndex:
    """name -> Grant, as last seen; thread-safe (read from worker threads, written by the watch)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._grants: dict[str, Grant] = {}

    def prime(self, objects: Iterable[Mapping[str, Any]]) -> None:
        """Replace the index with a full listing."""
        fresh: dict[str, Grant] = {}
        for obj in objects:
            grant = _parse(obj)
            if grant is not None:
                fresh[grant.name] = grant
        with self._lock:
            self._grants = fresh

    def apply(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        """One watch event: DELETED removes the grant; anything else (re)reads it."""
        name = str((obj.get("metadata") or {}).get("name") or "")
        grant = None if event_type == "DELETED" else _parse(obj)
        with self._lock:
            self._grants.pop(name, None)
            if grant is not None:
                self._grants[grant.name] = grant

    def snapshot(self) -> tuple[Grant, ...]:
        """The grants now, by name."""
        with self._lock:
            return tuple(self._grants[k] for k in sorted(self._grants))


def _parse(obj: Mapping[str, Any]) -> Grant | None:
    try:
        return parse_grant(obj)
    except InvalidPolicy as exc:
        name = (obj.get("metadata") or {}).get("name")
        log.warning("ScanAccessGrant %s is invalid and grants nothing: %s", name, exc)
        return None


class NamespaceLabels:
    """namespace -> labels, as the Namespace watch last saw them; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._labels: dict[str, dict[str, str]] = {}

    def apply(self, event_type: str | None, obj: Mapping[str, Any]) -> bool:
        """One watch event; whether the namespace's labels changed (a deletion counts)."""
        meta = obj.get("metadata") or {}
        name = str(meta.get("name") or "")
        if not name:
            return False
        with self._lock:
            before = self._labels.get(name)
            if event_type == "DELETED":
                self._labels.pop(name, None)
                return before is not None
            labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
            self._labels[name] = labels
            return before != labels

    def get(self, namespace: str) -> dict[str, str] | None:
        """The labels last seen, or None when the watch has not seen the namespace."""
        with self._lock:
            labels = self._labels.get(namespace)
            return None if labels is None else dict(labels)


class GrantAccess:
    """What the policy loops ask in grants mode."""

    def __init__(
        self, api: GrantApi, index: GrantIndex | None = None, namespaces: NamespaceLabels | None = None
    ) -> None:
        self.api = api
        self.index = index or GrantIndex()
        self.namespaces = namespaces or NamespaceLabels()

    def prime(self) -> None:
        """List the grants once (startup), before any policy is judged."""
        self.index.prime(self.api.list_grants())

    async def tenancy(self, namespace: str) -> Tenancy:
        """The grants now and, when a grant selects by label, the namespace's labels."""
        grants = self.index.snapshot()
        labels: dict[str, str] = {}
        if any(g.spec.namespaces.selector is not None for g in grants):
            seen = self.namespaces.get(namespace)
            labels = (
                seen if seen is not None else await asyncio.to_thread(self.api.namespace_labels, namespace)
            )
        return Tenancy(grants, labels)

    async def with_external_id(self, spec: PolicySpec, ref: SecretKeyRef | None) -> PolicySpec:
        """The spec the run uses: the external ID from the grant's Secret when the grant names one."""
        if ref is None:
            return spec
        value = await asyncio.to_thread(read_external_id, self.api, ref)
        return spec.model_copy(update={"aws": spec.aws.model_copy(update={"external_id": value})})


def read_external_id(api: GrantApi, ref: SecretKeyRef) -> str:
    """The external ID in the grant's Secret; PermanentError names the Secret and key, never the value."""
    data = api.read_secret(ref.namespace, ref.name)
    where = f"Secret {ref.namespace}/{ref.name} key {ref.key}"
    if not data.get(ref.key):
        raise PermanentError(f"{where} is missing or empty")
    try:
        value = base64.b64decode(data[ref.key], validate=True).decode().strip()
    except (binascii.Error, UnicodeDecodeError):
        raise PermanentError(f"{where} is not base64 UTF-8") from None
    if not value:
        raise PermanentError(f"{where} is empty")
    return value
