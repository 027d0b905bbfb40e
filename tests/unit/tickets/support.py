"""Builders shared by the ticket tests: a policy with a jira section, plans, existing tickets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ecs_scan_operator.core.model import ImageResult
from ecs_scan_operator.core.policy import PolicySpec
from ecs_scan_operator.core.tickets import ExistingTicket, PlannedAction, TicketProperty, plan_tickets
from tests.jira_server import fleet

NOW = datetime(2025, 3, 10, 6, 0, tzinfo=UTC)
HIGH = ("CVE-2024-1", "openssl", "HIGH")
CRIT = ("CVE-2024-2", "zlib", "CRITICAL")


def spec_with(**jira: Any) -> PolicySpec:
    """A policy with a jira section (priorities, due days, a 14-day reopen window) plus `jira`."""
    base = {
        "url": "https://jira.example.com",
        "priorityMap": {"CRITICAL": "Highest", "HIGH": "High"},
        "dueDays": {"CRITICAL": 7, "HIGH": 30},
        "reopenWithinDays": 14,
    }
    return fleet.spec({**base, **jira})


def plan(images: list[ImageResult], tickets: list[ExistingTicket], **kw: Any) -> list[PlannedAction]:
    """The actions `plan_tickets` decides for `images` and the `tickets` found."""
    spec = kw.pop("spec", None) or spec_with()
    req = fleet.request(
        spec, images, kw.pop("now", NOW), inventory_complete=kw.pop("inventory_complete", True)
    )
    return plan_tickets(req, tickets, **kw).actions


def ticket_from(action: PlannedAction, **kw: Any) -> ExistingTicket:
    """The ticket a create would have produced (open, with the property it wrote)."""
    base: dict[str, Any] = {
        "key": "SEC-1",
        "id": "10001",
        "labels": action.fields.labels,
        "status": "To Do",
        "status_category": "new",
        "project": action.project,
        "created": NOW - timedelta(days=5),
        "duedate": action.fields.duedate,
        "prop": TicketProperty.from_json(action.prop.to_json()) if action.prop else None,
    }
    return ExistingTicket(**{**base, **kw})


def existing(findings: list[tuple[str, str, str]], **kw: Any) -> ExistingTicket:
    """A ticket as a create five days ago left it, for `findings`; `kw` changes its fields."""
    (create,) = plan([fleet.image("app/api", "1.0", findings)], [], now=NOW - timedelta(days=5))
    return ticket_from(create, **kw)


DONE = {
    "status": "Done",
    "status_category": "done",
    "resolution": "Fixed",
    "resolved": NOW - timedelta(days=3),
}


ROUTED = {"routes": [{"name": "web-team", "match": {"families": ["web"]}, "project": "OPS"}]}
