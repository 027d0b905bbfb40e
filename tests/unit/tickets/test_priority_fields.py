"""Ticket priority, due date, signal labels and text from the findings' signals (issue #13)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import pytest

from ecs_scan_operator.core.model import Assessment, FixAvailable, ImageResult, Signals
from ecs_scan_operator.core.tickets import Action
from ecs_scan_operator.core.tickets.wiki import TEXT_LIMIT
from tests.jira_server import fleet
from tests.unit.tickets.support import CRIT, HIGH, NOW, plan, spec_with, ticket_from


def with_signals(img: ImageResult, by_id: dict[str, dict[str, Any]]) -> ImageResult:
    """`img` with Signals/Assessment set per vulnerability id (the rest left unknown)."""
    out = []
    for f in img.findings:
        spec_ = by_id.get(f.vulnerability_id, {})
        sig = Signals(**{k: v for k, v in spec_.items() if k not in ("priority", "due", "overdue")})
        ass = Assessment(
            priority=spec_.get("priority", "P3"), due=spec_.get("due"), overdue=spec_.get("overdue", False)
        )
        out.append(replace(f, signals=sig, assessment=ass))
    img.findings = out
    return img


def one_image(
    by_id: dict[str, dict[str, Any]], findings: list[tuple[str, str, str]] | None = None
) -> ImageResult:
    return with_signals(fleet.image("app/api", "1.0", findings or [HIGH, CRIT]), by_id)


@pytest.mark.parametrize(
    ("priority_map", "by_id", "expected"),
    [
        ({"CRITICAL": "Highest", "HIGH": "High"}, {}, "Highest"),  # no P keys: today's mapping
        ({"P1": "Blocker", "CRITICAL": "Highest"}, {"CVE-2024-1": {"priority": "P1"}}, "Blocker"),
        # a P key for another priority than the ticket's: the severity key still applies
        ({"P1": "Blocker", "CRITICAL": "Highest"}, {"CVE-2024-2": {"priority": "P2"}}, "Highest"),
        ({"P2": "High"}, {"CVE-2024-1": {"priority": "P4"}, "CVE-2024-2": {"priority": "P2"}}, "High"),
        ({"P1": "Blocker"}, {"CVE-2024-1": {"priority": "P3"}, "CVE-2024-2": {"priority": "P2"}}, None),
    ],
)
def test_jira_priority_by_the_tickets_most_urgent_finding(
    priority_map: dict[str, str], by_id: dict[str, dict[str, Any]], expected: str | None
) -> None:
    (create,) = plan([one_image(by_id)], [], spec=spec_with(priorityMap=priority_map))
    assert create.fields.priority == expected


@pytest.mark.parametrize(
    ("due_days", "by_id", "expected"),
    [
        ({"CRITICAL": 7}, {}, NOW.date() + timedelta(days=7)),
        ({"P1": 3, "CRITICAL": 7}, {"CVE-2024-1": {"priority": "P1"}}, NOW.date() + timedelta(days=3)),
        # never later than a finding's own due date (its SLA or CISA's dateDue)
        ({"CRITICAL": 30}, {"CVE-2024-1": {"due": date(2025, 3, 15)}}, date(2025, 3, 15)),
        ({}, {"CVE-2024-2": {"due": date(2025, 4, 1)}}, date(2025, 4, 1)),
        ({}, {}, None),
    ],
)
def test_due_date_by_priority_never_later_than_the_findings(
    due_days: dict[str, int], by_id: dict[str, dict[str, Any]], expected: date | None
) -> None:
    (create,) = plan([one_image(by_id)], [], spec=spec_with(dueDays=due_days, priorityMap={}))
    assert create.fields.duedate == expected


@pytest.mark.parametrize(
    ("by_id", "labels"),
    [
        ({}, set()),  # BASIC: nothing known, no signal label (never "no-fix")
        ({"CVE-2024-1": {"kev": True}}, {"kev"}),
        (
            {"CVE-2024-1": {"exploit_available": True, "fix_available": FixAvailable.YES}},
            {"exploit-available", "fix-available"},
        ),
        (
            {
                "CVE-2024-1": {"fix_available": FixAvailable.NO},
                "CVE-2024-2": {"fix_available": FixAvailable.NO},
            },
            {"no-fix"},
        ),
        (
            {
                "CVE-2024-1": {"fix_available": FixAvailable.NO},
                "CVE-2024-2": {"fix_available": FixAvailable.PARTIAL},
            },
            {"fix-available"},
        ),
        ({"CVE-2024-1": {"fix_available": FixAvailable.NO}}, set()),  # the other's fix is unknown
        ({"CVE-2024-1": {"kev": False, "exploit_available": False}}, set()),
    ],
)
def test_signal_labels_on_create(by_id: dict[str, dict[str, Any]], labels: set[str]) -> None:
    (create,) = plan([one_image(by_id)], [])
    signal = {
        lb for lb in create.fields.labels if lb in ("kev", "exploit-available", "fix-available", "no-fix")
    }
    assert signal == labels


def test_signal_labels_follow_the_findings_added_and_removed() -> None:
    (create,) = plan([one_image({"CVE-2024-1": {"kev": True, "fix_available": FixAvailable.NO}})], [])
    ticket = ticket_from(create)
    assert {"kev"} <= set(ticket.labels)
    # next run: no longer on the list (a CISA correction), and a fix appeared
    img = one_image({"CVE-2024-1": {"kev": False, "fix_available": FixAvailable.YES}})
    (update,) = plan([img], [ticket])
    assert update.action is Action.UPDATE
    assert "fix-available" in update.fields.labels and update.fields.remove_labels == ("kev",)
    # the same again once applied: nothing to do about labels
    applied = replace(ticket, labels=(*[lb for lb in ticket.labels if lb != "kev"], "fix-available"))
    (again,) = plan([img], [replace(applied, prop=ticket_from(update).prop if update.prop else applied.prop)])
    assert again.fields.remove_labels == () and "fix-available" not in again.fields.labels


def test_description_has_the_priority_line_and_signals_per_finding() -> None:
    img = one_image(
        {
            "CVE-2024-1": {
                "priority": "P1",
                "kev": True,
                "kev_date_due": date(2025, 3, 20),
                "epss": 0.9731,
                "overdue": True,
                "due": date(2025, 3, 1),
            },
            "CVE-2024-2": {"priority": "P2"},
        }
    )
    (create,) = plan([img], [])
    text = create.fields.description or ""
    assert "*Priority: P1* (1 known-exploited (CISA KEV), 1 overdue; due 2025-03-01)" in text
    assert "||ID||Severity||Priority||Package||Installed → Fixed||EPSS||Exploit||KEV||Due||Images||" in text
    row = next(line for line in text.splitlines() if "CVE-2024-1" in line and line.startswith("|["))
    assert "|P1|" in row and "|0.973|" in row and "yes (CISA due 2025-03-20)" in row and "*overdue*" in row
    row2 = next(line for line in text.splitlines() if "CVE-2024-2" in line and line.startswith("|["))
    assert row2.count("unknown") == 3  # EPSS, exploit, KEV: BASIC-like, shown as unknown, never "no"
    assert len(text) <= TEXT_LIMIT
