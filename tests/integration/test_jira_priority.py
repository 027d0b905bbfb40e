"""Prioritised tickets (issue #13) against the Jira contract test server, Cloud and Data Center:
the Jira priority from a P key, the due date capped by CISA's dateDue, the signal labels added and
removed as the findings change, the description with the priority line and the signals per finding
(every request validated by the server against the OpenAPI contract)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from ecs_scan_operator.adapters.jira import JiraCredentials, JiraTicketSink
from ecs_scan_operator.core.model import Assessment, FixAvailable, ImageResult, Signals
from ecs_scan_operator.core.tickets import dedup_key, dedup_label
from tests.jira_server import fleet
from tests.jira_server.server import JiraTestServer

pytestmark = pytest.mark.integration
START = datetime(2025, 3, 3, 6, 0, tzinfo=UTC)
K1 = ("CVE-2024-1001", "openssl", "LOW")
C1 = ("CVE-2024-2001", "glibc", "CRITICAL")


@pytest.fixture
def sink(jira_server: JiraTestServer) -> Iterator[JiraTicketSink]:
    creds = JiraCredentials.from_env(jira_server.credentials_env())
    assert creds is not None
    s = JiraTicketSink(jira_server.url, creds, sleep=lambda _: None)
    yield s
    s.close()


def image(kev: bool) -> ImageResult:
    img = fleet.image("app/api", "1.4", [K1, C1], families=[("web", "app")])
    signals = {
        "CVE-2024-1001": (
            Signals(kev=kev, kev_date_due=date(2025, 3, 14) if kev else None, fix_available=FixAvailable.YES),
            Assessment(priority="P1" if kev else "P4", due=date(2025, 3, 14) if kev else None),
        ),
        "CVE-2024-2001": (
            Signals(kev=False, exploit_available=True, epss=0.42, fix_available=FixAvailable.NO),
            Assessment(priority="P1", due=date(2025, 4, 2)),
        ),
    }
    img.findings = [
        replace(f, signals=signals[f.vulnerability_id][0], assessment=signals[f.vulnerability_id][1])
        for f in img.findings
    ]
    return img


@pytest.mark.parametrize("jira_server", ["cloud", "dc"], indirect=True)
def test_prioritised_ticket_round_trip(jira_server: JiraTestServer, sink: JiraTicketSink) -> None:
    server = jira_server
    jira: dict[str, Any] = {
        "url": server.url,
        "priorityMap": {"P1": "Highest", "CRITICAL": "High"},
        "dueDays": {"P1": 30},
    }
    spec = fleet.spec(jira, threshold="LOW")
    label = dedup_label(dedup_key(fleet.POLICY, "default", f"{fleet.REGISTRY}/app/api"))

    server.state.now = START
    report = sink.sync(fleet.request(spec, [image(kev=True)], START, "run-0"))
    assert report.synced, report.errors
    (issue,) = server.issues_with_label(label)
    assert issue.priority == "1"  # Highest, from P1 (the severity key would say High)
    assert issue.duedate == "2025-03-14"  # CISA's dateDue, earlier than 30 days from now
    assert {"kev", "exploit-available", "fix-available"} <= set(issue.labels) and "no-fix" not in issue.labels
    text = issue.description if isinstance(issue.description, str) else str(issue.description)
    assert "*Priority: P1*" in text and "known-exploited" in text
    assert re.search(r"\|yes \(CISA due 2025-03-14\)\|", text)

    # CISA removed it (rare, but the label must follow); the ticket text and labels are updated
    server.state.now = START + timedelta(days=1)
    report = sink.sync(fleet.request(spec, [image(kev=False)], server.state.now, "run-1"))
    assert report.synced, report.errors
    (issue,) = server.issues_with_label(label)
    assert "kev" not in issue.labels and "exploit-available" in issue.labels
    assert issue.duedate == "2025-03-14"  # due dates only ever move earlier
