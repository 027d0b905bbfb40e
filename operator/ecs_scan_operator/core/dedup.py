"""Dedup keys, labels and fingerprints of Jira tickets, and the `ecsscan` issue property. Pure.

A ticket's identity is the key `namespace/policy/route/group`. It is stored twice on the ticket:
as the label `ecsscan-<first 16 hex of sha256(key)>` (JQL can look labels up exactly, across all
statuses) and inside the issue property `ecsscan` with the findings fingerprint and finding ids
(properties are not searchable, but they are hidden from the UI and survive edits of the summary
or the labels). Two more labels scope searches: one per policy and one per route, so that one
search per route finds every open ticket of that route, including those whose group vanished.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ecs_scan_operator.core.model import Severity
from ecs_scan_operator.core.policy import PolicyRef

PROPERTY_KEY = "ecsscan"
PROPERTY_VERSION = 1
LABEL_PREFIX = "ecsscan-"
#: Jira's limit for an issue property value is 32,768 characters; stay clear of it.
PROPERTY_LIMIT = 30_000


def _hex(text: str, n: int = 16) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def dedup_key(policy: PolicyRef, route: str, group: str) -> str:
    """The full identity of one ticket: `namespace/policy/route/group`."""
    return f"{policy.namespace}/{policy.name}/{route}/{group}"


def dedup_label(key: str) -> str:
    """`ecsscan-<first 16 hex of sha256(key)>`: the label JQL looks a ticket up by."""
    return f"{LABEL_PREFIX}{_hex(key)}"


def policy_label(policy: PolicyRef) -> str:
    """A label on every ticket of one policy (finds tickets of routes that were removed)."""
    return f"{LABEL_PREFIX}policy-{_hex(policy.key)}"


def route_label(policy: PolicyRef, route: str) -> str:
    """A label on every ticket of one route of one policy (finds its open tickets in one search)."""
    return f"{LABEL_PREFIX}route-{_hex(f'{policy.key}/{route}')}"


def image_slot(raw_ref: str) -> str:
    """A short, stable name for one image reference inside the property."""
    return _hex(raw_ref, 12)


@dataclass(frozen=True, order=True)
class FindingRow:
    """One finding of a group, reduced to what identifies it and how bad it is."""

    vulnerability_id: str
    package: str
    severity: Severity

    @property
    def ident(self) -> str:
        """`CVE-…|package`: the same finding across runs, whatever its severity."""
        return f"{self.vulnerability_id}|{self.package}"

    def label(self) -> str:
        """`CVE-… (HIGH, openssl)`, for comments."""
        pkg = f", {self.package}" if self.package else ""
        return f"{self.vulnerability_id} ({self.severity.value}{pkg})"


def fingerprint(rows: Iterable[FindingRow]) -> str:
    """sha256 over the sorted findings (id, package, severity): equal means nothing to tell people."""
    lines = sorted({f"{r.vulnerability_id}|{r.package}|{r.severity.value}" for r in rows})
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def content_fingerprint(parts: Any) -> str:
    """A short hash of what else the description shows (images, digests, uses, fixed versions)."""
    return _hex(json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str), 32)


class TicketState:
    """What the tool last did to a ticket (kept in the property)."""

    OPEN = "open"
    REOPENING = "reopening"  # the description was rewritten; the reopen transition may still be due
    RETIRED = "retired"  # the group left the fleet; closing was not allowed (closeWhenFixed: false)


@dataclass(frozen=True)
class TicketProperty:
    """The value of the `ecsscan` issue property: identity, fingerprints and finding ids."""

    key: str
    route: str
    group: str
    fp: str
    content: str = ""
    findings: tuple[FindingRow, ...] = ()
    images: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # image slot -> indexes
    truncated: bool = False
    monitored: bool = True
    priority: str | None = None
    state: str = TicketState.OPEN
    run_id: str = ""

    def to_json(self) -> dict[str, Any]:
        """The JSON value, bounded below Jira's 32,768-character limit."""
        doc = self._doc(self.findings, self.images, self.truncated)
        if len(json.dumps(doc)) <= PROPERTY_LIMIT:
            return doc
        # Drop the per-image attribution first, then the least severe findings.
        rows = list(self.findings)
        doc = self._doc(tuple(rows), {}, True)
        while rows and len(json.dumps(doc)) > PROPERTY_LIMIT:
            rows = rows[: max(0, len(rows) - max(1, len(rows) // 10))]
            doc = self._doc(tuple(rows), {}, True)
        return doc

    def _doc(
        self, rows: Sequence[FindingRow], images: Mapping[str, Sequence[int]], truncated: bool
    ) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "v": PROPERTY_VERSION,
            "key": self.key,
            "route": self.route,
            "group": self.group,
            "fp": self.fp,
            "content": self.content,
            "findings": [[r.vulnerability_id, r.package, r.severity.value] for r in rows],
            "images": {k: list(v) for k, v in sorted(images.items())},
            "truncated": truncated,
            "monitored": self.monitored,
            "state": self.state,
            "runId": self.run_id,
        }
        if self.priority is not None:
            doc["priority"] = self.priority
        return doc

    @classmethod
    def from_json(cls, value: Any) -> TicketProperty | None:
        """Parse a stored value; None when it is missing or not ours (never raises)."""
        if not isinstance(value, Mapping) or value.get("v") != PROPERTY_VERSION:
            return None
        try:
            rows = tuple(
                FindingRow(str(v), str(p), Severity.parse(str(s))) for v, p, s in value.get("findings") or []
            )
            images = {
                str(k): tuple(int(i) for i in idx if 0 <= int(i) < len(rows))
                for k, idx in (value.get("images") or {}).items()
            }
            priority = value.get("priority")
            return cls(
                key=str(value["key"]),
                route=str(value["route"]),
                group=str(value["group"]),
                fp=str(value["fp"]),
                content=str(value.get("content") or ""),
                findings=rows,
                images=images,
                truncated=bool(value.get("truncated", False)),
                monitored=bool(value.get("monitored", True)),
                priority=str(priority) if priority is not None else None,
                state=str(value.get("state") or TicketState.OPEN),
                run_id=str(value.get("runId") or ""),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def rows_of(self, slot: str) -> tuple[FindingRow, ...]:
        """The findings last seen in one image (empty when not recorded)."""
        return tuple(self.findings[i] for i in self.images.get(slot, ()))

    def evolve(self, **changes: Any) -> TicketProperty:
        """A copy with some fields changed."""
        return replace(self, **changes)
