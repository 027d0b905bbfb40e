"""The `ecsscan` issue property: what the tool last wrote to a ticket, and the fingerprints. Pure.

Issue properties are not searchable, but they are hidden from the UI and survive edits of the
summary or the labels, so the property is where the tool keeps the dedup key, the findings
fingerprint and the finding ids (to tell "new" from "fixed" in the next comment). A value that is
not ours (another tool, an older format, hand-edited garbage) parses to None, never to an error.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from ecs_scan_operator.core.model import Severity
from ecs_scan_operator.core.tickets.identity import short_hash

PROPERTY_KEY = "ecsscan"
PROPERTY_VERSION = 1
#: Jira's limit for an issue property value is 32,768 characters; stay clear of it.
PROPERTY_LIMIT = 30_000


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
    return short_hash(json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str), 32)


class TicketState(StrEnum):
    """What the tool last did to a ticket (kept in the property)."""

    OPEN = "open"
    RETIRED = "retired"  # the group left the fleet; closing was not allowed (closeWhenFixed: false)


_STATES = frozenset(s.value for s in TicketState)


class _PropertyDoc(BaseModel):
    """The stored JSON, as read back: lenient about what older writers left out, strict on shape."""

    model_config = ConfigDict(coerce_numbers_to_str=True, populate_by_name=True)

    v: Literal[1]
    key: str
    route: str
    group: str
    fp: str
    content: str = ""
    findings: list[tuple[str, str, str]] = Field(default_factory=list)
    images: dict[str, list[int]] = Field(default_factory=dict)
    truncated: bool = False
    monitored: bool = True
    priority: str | None = None
    state: TicketState = TicketState.OPEN
    run_id: str = Field(default="", alias="runId")
    redeploy: bool = False

    @field_validator("content", "run_id", "findings", "images", mode="before")
    @classmethod
    def _null_is_default(cls, value: Any, info: ValidationInfo) -> Any:
        # Written as null (or empty) by hand or by older versions: the default.
        if (value is None or value == "") and info.field_name is not None:
            return cls.model_fields[info.field_name].get_default(call_default_factory=True)
        return value

    @field_validator("state", mode="before")
    @classmethod
    def _unknown_state_is_open(cls, value: Any) -> Any:
        # Missing, or a state this version does not know (a newer writer): nothing special, open.
        return value if isinstance(value, str) and value in _STATES else TicketState.OPEN


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
    state: TicketState = TicketState.OPEN
    run_id: str = ""
    # The ticket last said "redeploy needed" (an affected digest runs, the tag moved on): the next
    # run tells "newly needed" (one comment) from "still needed" (nothing to say).
    redeploy: bool = False

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
            "state": self.state.value,
            "runId": self.run_id,
        }
        if self.priority is not None:
            doc["priority"] = self.priority
        if self.redeploy:  # absent when false: the value older runs wrote stays byte-identical
            doc["redeploy"] = True
        return doc

    @classmethod
    def from_json(cls, value: Any) -> TicketProperty | None:
        """Parse a stored value; None when it is missing or not ours (never raises)."""
        if not isinstance(value, Mapping) or value.get("v") != PROPERTY_VERSION:
            return None
        try:
            doc = _PropertyDoc.model_validate(dict(value))
        except ValidationError:
            return None
        rows = tuple(FindingRow(v, p, Severity.parse(s)) for v, p, s in doc.findings)
        return cls(
            key=doc.key,
            route=doc.route,
            group=doc.group,
            fp=doc.fp,
            content=doc.content,
            findings=rows,
            # An index past the list (a hand edit, a truncated list) is dropped, not fatal.
            images={k: tuple(i for i in idx if 0 <= i < len(rows)) for k, idx in doc.images.items()},
            truncated=doc.truncated,
            monitored=doc.monitored,
            priority=doc.priority,
            state=doc.state,
            run_id=doc.run_id,
            redeploy=doc.redeploy,
        )

    def rows_of(self, slot: str) -> tuple[FindingRow, ...]:
        """The findings last seen in one image (empty when not recorded)."""
        return tuple(self.findings[i] for i in self.images.get(slot, ()))

    def evolve(self, **changes: Any) -> TicketProperty:
        """A copy with some fields changed."""
        return replace(self, **changes)
