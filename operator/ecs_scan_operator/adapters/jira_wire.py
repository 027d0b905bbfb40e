"""Jira's REST v2 answers read into our types: search hits, pages, serverInfo, transitions, errors.

Pure functions over decoded JSON (no HTTP), public so tests use them by name. An answer of the
wrong shape (a proxy's HTML page, another API version) raises UnexpectedAnswer naming what was
wrong, never a KeyError from deep inside.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

from ecs_scan_operator.core.tickets import (
    PROPERTY_KEY,
    ExistingTicket,
    JiraWorkflow,
    StatusCategory,
    TicketProperty,
)
from ecs_scan_operator.errors import PermanentError


class UnexpectedAnswer(PermanentError):
    """Jira answered with a document of an unexpected shape."""


class Deployment(StrEnum):
    """What serverInfo.deploymentType says: Cloud, or a self-hosted Server / Data Center."""

    CLOUD = "Cloud"
    DATA_CENTER = "DataCenter"


def parse_server_info(doc: Any) -> Deployment:
    """The deployment from GET /serverInfo (anything but `Cloud` is self-hosted)."""
    if not isinstance(doc, Mapping):
        raise UnexpectedAnswer("serverInfo is not a JSON object")
    return Deployment.CLOUD if doc.get("deploymentType") == "Cloud" else Deployment.DATA_CENTER


def parse_time(value: Any) -> datetime | None:
    """A Jira timestamp (`2025-01-02T03:04:05.000+0000` and ISO forms) as aware UTC; None if absent."""
    if not isinstance(value, str) or not value:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return datetime.strptime(value, fmt)
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_date(value: Any) -> date | None:
    """A Jira date field (`2025-02-01`), or None."""
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def parse_ticket(issue: Any) -> ExistingTicket:
    """An ExistingTicket from one search hit (its `ecsscan` property inline when asked for)."""
    if not isinstance(issue, Mapping) or not issue.get("key"):
        raise UnexpectedAnswer("a search hit is not an issue with a key")
    f = _obj(issue.get("fields"))
    status = _obj(f.get("status"))
    resolution = _obj(f.get("resolution"))
    props = _obj(issue.get("properties"))
    return ExistingTicket(
        key=str(issue.get("key")),
        id=str(issue.get("id")),
        labels=tuple(str(x) for x in f.get("labels") or ()),
        status=str(status.get("name") or ""),
        status_category=str(_obj(status.get("statusCategory")).get("key") or ""),
        project=str(_obj(f.get("project")).get("key") or ""),
        resolution=str(resolution["name"]) if resolution.get("name") else None,
        resolved=parse_time(f.get("resolutiondate")),
        created=parse_time(f.get("created")),
        duedate=parse_date(f.get("duedate")),
        prop=TicketProperty.from_json(props.get(PROPERTY_KEY)),
    )


@dataclass(frozen=True)
class SearchPage:
    """One page of a JQL search: its tickets and how to ask for the next page."""

    tickets: tuple[ExistingTicket, ...]
    next_page_token: str | None = None  # Cloud's /search/jql
    total: int | None = None  # Data Center's /search (startAt paging)
    is_last: bool = False

    @property
    def more(self) -> bool:
        """True when Cloud says another page follows."""
        return bool(self.next_page_token) and not self.is_last


def parse_search_page(doc: Any) -> SearchPage:
    """A page of GET /search/jql (Cloud: nextPageToken, isLast) or GET /search (DC: total)."""
    if not isinstance(doc, Mapping):
        raise UnexpectedAnswer("a search page is not a JSON object")
    issues = doc.get("issues") or []
    if not isinstance(issues, list):
        raise UnexpectedAnswer("a search page's issues are not a list")
    token = doc.get("nextPageToken")
    total = doc.get("total")
    return SearchPage(
        tickets=tuple(parse_ticket(i) for i in issues),
        next_page_token=str(token) if token else None,
        total=int(total) if isinstance(total, int | str) and str(total).isdigit() else None,
        is_last=bool(doc.get("isLast")),
    )


def parse_created_key(doc: Any) -> str | None:
    """The key of the issue POST /issue created, or None when the answer names none."""
    if isinstance(doc, Mapping) and doc.get("key"):
        return str(doc["key"])
    return None


def parse_transitions(doc: Any) -> list[dict[str, Any]]:
    """The transitions of GET /issue/{key}/transitions."""
    if not isinstance(doc, Mapping):
        raise UnexpectedAnswer("the transitions answer is not a JSON object")
    return [t for t in doc.get("transitions") or [] if isinstance(t, dict)]


def pick_transition(options: list[dict[str, Any]], which: str, wf: JiraWorkflow) -> dict[str, Any] | None:
    """Close: a transition into the Done category (not a won't-do status), `Done` preferred.
    Reopen: into the To Do category first, else In Progress."""

    def category(t: dict[str, Any]) -> str:
        return str(_obj(_obj(t.get("to")).get("statusCategory")).get("key") or "")

    def name(t: dict[str, Any]) -> str:
        return str(_obj(t.get("to")).get("name") or "")

    if which == "close":
        done = [
            t for t in options if category(t) == StatusCategory.DONE and not wf.is_wont_do_status(name(t))
        ]
        done.sort(key=lambda t: (name(t).lower() != "done", str(t.get("id"))))
        return done[0] if done else None
    for cat in (StatusCategory.NEW, StatusCategory.INDETERMINATE):
        found = [t for t in options if category(t) == cat and not wf.is_wont_do_status(name(t))]
        if found:
            return found[0]
    return None


def pick_resolution(transition: Mapping[str, Any], preferred: str | None, wf: JiraWorkflow) -> str | None:
    """A resolution the transition screen offers (preferred, else Fixed/Done); None without the field."""
    meta = _obj(transition.get("fields")).get("resolution")
    if not meta:
        return None
    allowed = [str(v.get("name")) for v in _obj(meta).get("allowedValues") or [] if v.get("name")]
    if not allowed:
        return preferred
    for want in (preferred, "Fixed", "Done"):
        for name in allowed:
            if want and name.lower() == want.lower():
                return name
    fixed = [n for n in allowed if wf.is_fixed_resolution(n)]
    return fixed[0] if fixed else None


def error_reason(body: bytes) -> str:
    """Jira's own error text (errorMessages / errors) from an error answer's body; '' when none."""
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        return ""
    if isinstance(doc, Mapping):
        parts = [str(m) for m in doc.get("errorMessages") or []]
        parts += [f"{k}: {v}" for k, v in _obj(doc.get("errors")).items()]
        return "; ".join(parts)
    return ""


def retry_after(value: str | None, now: datetime) -> float | None:
    """A Retry-After header in seconds (a number or an HTTP date, never negative), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - now).total_seconds())
