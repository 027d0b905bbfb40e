"""A ticket with a remediation plan, written to the Jira contract server (Cloud and Data Center):
the description is accepted by the contract, carries the plan, and stays within Jira's limits."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from ecs_scan_operator.adapters.jira import JiraCredentials, JiraTicketSink
from ecs_scan_operator.core.model import Signals
from tests.jira_server import fleet
from tests.jira_server.server import JiraTestServer

pytestmark = pytest.mark.integration

NOW = datetime(2025, 5, 5, 6, 0, tzinfo=UTC)


@pytest.fixture
def sink(jira_server: JiraTestServer) -> Iterator[JiraTicketSink]:
    creds = JiraCredentials.from_env(jira_server.credentials_env())
    assert creds is not None
    s = JiraTicketSink(jira_server.url, creds, sleep=lambda _s: None)
    yield s
    s.close()


@pytest.mark.parametrize("jira_server", ["cloud", "dc"], indirect=True)
def test_ticket_carries_the_remediation_plan(jira_server: JiraTestServer, sink: JiraTicketSink) -> None:
    img = fleet.image(
        "payments/api", "1.0", [("CVE-2024-1", "openssl", "HIGH"), ("CVE-2024-2", "openssl", "CRITICAL")]
    )
    img.findings.append(
        replace(
            fleet.finding("CVE-2024-3", "glibc", "HIGH", fixed="2.36-9+deb12u7"), signals=Signals(kev=True)
        )
    )
    img.findings.append(fleet.finding("CVE-2024-4", "zlib", "CRITICAL", fixed=""))
    img.findings[:] = [replace(f, package_manager="OS") for f in img.findings]
    spec = fleet.spec({"url": jira_server.url})
    report = sink.sync(fleet.request(spec, [img], NOW))
    assert report.synced, report.errors
    assert not jira_server.violations  # the fixture checks it again at teardown
    (issue,) = jira_server.state.issues.values()
    text = issue.description
    plan = text[text.index("h3. Remediation plan") : text.index("h3. Images")]
    assert "_4 of 4 findings are in operating-system packages" in plan
    assert plan.index("upgrade glibc") < plan.index("upgrade openssl")
    assert (
        r"# upgrade glibc from 3.0.1 to 2.36-9\+deb12u7: fixes 1 finding (1 known-exploited, 0 critical)"
        in plan
    )
    assert "# upgrade openssl from 3.0.1 to 3.0.15: fixes 2 findings (0 known-exploited, 1 critical)" in plan
    assert "No fixed version known for 1: CVE-2024-4 (zlib, CRITICAL)." in plan


@pytest.mark.parametrize("jira_server", ["cloud", "dc"], indirect=True)
def test_a_huge_plan_stays_within_jira_limits(jira_server: JiraTestServer, sink: JiraTicketSink) -> None:
    findings = [(f"CVE-2024-{i:05d}", f"package-{i}-" + "x" * 200, "HIGH") for i in range(2000)]
    img = fleet.image("svc/big", "1", findings)
    report = sink.sync(fleet.request(fleet.spec({"url": jira_server.url}), [img], NOW))
    assert report.synced, report.errors
    (issue,) = jira_server.state.issues.values()
    assert len(issue.description) <= 32_767
    assert "more upgrades; see the image reports" in issue.description
