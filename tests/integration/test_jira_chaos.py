"""Chaos: 20 daily runs with faults on 20% of Jira requests (429, 5xx, connections dropped before
or after the work was done, including after a create was stored). No run may leave a duplicate
ticket, and once the faults stop, one more run brings Jira to exactly the state a fault-free
history reaches (a run that met faults may legitimately leave work for the next one).
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ecs_scan_operator.adapters.jira import JiraCredentials, JiraTicketSink
from ecs_scan_operator.core.model import ImageResult, ImageStatus
from ecs_scan_operator.core.policy import PolicySpec
from tests.jira_server import fleet
from tests.jira_server.contract import ContractChecker
from tests.jira_server.server import Faults, JiraTestServer
from tests.jira_server.state import RESOLUTIONS, STATUSES

pytestmark = pytest.mark.integration

DAYS = 20
START = datetime(2025, 6, 2, 6, 0, tzinfo=UTC)
H1 = ("CVE-2025-0001", "openssl", "HIGH")
M2 = ("CVE-2025-0002", "libxml2", "MEDIUM")
H3 = ("CVE-2025-0003", "curl", "HIGH")
C1 = ("CVE-2025-0101", "glibc", "CRITICAL")
B1 = ("CVE-2025-0201", "busybox", "MEDIUM")
DEDUP = re.compile(r"ecsscan-[0-9a-f]{16}")


def fleet_on(day: int) -> list[ImageResult]:
    """The simulated fleet of one day: updates, fixes, regressions, coverage gaps, a retirement."""
    out = [
        fleet.image("svc/r0", "1", [H1, M2] if 5 <= day <= 9 else [H1], families=[("fam0", "c")]),
        fleet.image("svc/r1", "1", [] if 7 <= day <= 11 else [C1], families=[("fam1", "c")]),
        fleet.image(
            "svc/r2",
            "1",
            [H1],
            families=[("fam2", "c")],
            status=ImageStatus.NOT_SCANNED if 8 <= day <= 12 else ImageStatus.SCANNED,
        ),
        fleet.image("svc/r3", "1", [B1] if day >= 3 else [], families=[("fam3", "c")]),
        fleet.image("svc/r4", "1", [H3], families=[("web", "app")]),
        fleet.image("svc/r6", "a", [H1], families=[("fam6", "c")]),
        fleet.image(
            "svc/r6",
            "b",
            [C1, H3],
            families=[("fam6b", "c")],
            status=ImageStatus.NOT_SCANNED if 6 <= day <= 10 else ImageStatus.SCANNED,
        ),
    ]
    if day < 10:
        out.append(fleet.image("svc/r5", "1", [M2], families=[("fam5", "c")]))  # retired on day 10
    out.append(fleet.image("svc/r7", "1", [H3] if day < 15 else [], families=[("fam7", "c")]))  # fixed
    return out


def spec_on(server: JiraTestServer, day: int) -> PolicySpec:
    jira: dict[str, Any] = {
        "url": server.url,
        "priorityMap": {"CRITICAL": "Highest", "HIGH": "High"},
        "dueDays": {"CRITICAL": 7, "HIGH": 30},
        "reopenWithinDays": 60,  # every regression here reopens, whatever day a close landed on
    }
    if day >= 12:  # routing change: family "web" moves to project OPS
        jira["routes"] = [{"name": "web-team", "match": {"families": ["web"]}, "project": "OPS"}]
    return fleet.spec(jira)


def open_duplicates(server: JiraTestServer) -> int:
    """Extra open tickets sharing one dedup label (0 means no duplicates)."""
    c: Counter[str] = Counter()
    for issue in server.state.issues.values():
        if STATUSES[issue.status].category != "done":
            c.update(lb for lb in issue.labels if DEDUP.fullmatch(lb))
    return sum(n - 1 for n in c.values() if n > 1)


def all_duplicates(server: JiraTestServer, baseline: JiraTestServer) -> int:
    """Tickets per dedup label beyond what the fault-free history filed."""

    def count(s: JiraTestServer) -> Counter[str]:
        c: Counter[str] = Counter()
        for issue in s.state.issues.values():
            c.update(lb for lb in issue.labels if DEDUP.fullmatch(lb))
        return c

    got, want = count(server), count(baseline)
    return sum(max(0, got[k] - want.get(k, 0)) for k in got)


def snapshot(server: JiraTestServer) -> dict[str, list[dict[str, Any]]]:
    """What must match a fault-free history: per dedup label, its tickets in order, without keys,
    dates, comments or description text (those legitimately depend on which day work landed)."""
    label_of = {
        i.key: next((lb for lb in i.labels if DEDUP.fullmatch(lb)), "") for i in server.state.issues.values()
    }
    out: dict[str, list[dict[str, Any]]] = {}
    for issue in sorted(server.state.issues.values(), key=lambda i: (i.created, i.id)):
        prop = issue.properties.get("ecsscan") or {}
        out.setdefault(label_of[issue.key], []).append(
            {
                "project": issue.project,
                "status": STATUSES[issue.status].name,
                "resolution": RESOLUTIONS.get(issue.resolution or ""),
                "labels": sorted(issue.labels),
                "summary": issue.summary,
                "priority": issue.priority,
                "hasDueDate": issue.duedate is not None,
                "fp": prop.get("fp"),
                "findings": prop.get("findings"),
                "monitored": prop.get("monitored"),
                "links": sorted((lk.outward, label_of.get(lk.other, "?")) for lk in issue.links),
            }
        )
    return out


def history(server: JiraTestServer, *, seed: int | None) -> dict[str, Any]:
    creds = JiraCredentials.from_env(server.credentials_env())
    assert creds is not None
    sink = JiraTicketSink(server.url, creds, sleep=lambda _: None)
    server.page_size = 3  # several search pages per route, so paging meets faults too
    partial, dup_seen = 0, 0
    faults = seed is not None
    if seed is not None:
        server.faults = Faults(rate=0.2, seed=seed)
        server.fail_next("POST", r"/issue$", "drop_after")  # at least one lost create, for sure
    try:
        for day in range(DAYS + 1):
            if day == DAYS:
                server.faults.rate = 0.0  # the settling run
            server.state.now = START + timedelta(days=day)
            src = min(day, DAYS - 1)
            req = fleet.request(spec_on(server, src), fleet_on(src), server.state.now, f"run-{day}")
            report = sink.sync(req)
            partial += not report.synced
            dup_seen = max(dup_seen, open_duplicates(server))
            if not faults:
                assert report.synced, (day, report.errors)
    finally:
        sink.close()
    return {"partial": partial, "open_duplicates": dup_seen, "requests": len(server.log)}


@pytest.mark.parametrize("seed", [20250602, 7, 1234])
@pytest.mark.parametrize("jira_server", ["cloud", "dc"], indirect=True)
def test_chaos_twenty_runs(jira_server: JiraTestServer, jira_contract: ContractChecker, seed: int) -> None:
    baseline = JiraTestServer(jira_server.flavour, contract=jira_contract).start()
    baseline.state.add_project("SEC", "Security", components=["team-a", "team-b"])
    baseline.state.add_project("OPS", "Operations", components=["platform"])
    try:
        calm = history(baseline, seed=None)
    finally:
        baseline.stop()
    assert not baseline.violations, baseline.violations[:5]

    stormy = history(jira_server, seed=seed)
    injected = Counter(kind for _, _, kind in jira_server.faults.injected)
    lost_creates = sum(
        1
        for m, p, k in jira_server.faults.injected
        if m == "POST" and p.endswith("/issue") and k == "drop_after"
    )
    duplicates = all_duplicates(jira_server, baseline)
    print(
        f"\nchaos {jira_server.flavour} seed {seed}: {sum(injected.values())} faults injected "
        f"{dict(injected)}, {lost_creates} lost creates, "
        f"{stormy['partial']} of {DAYS + 1} runs partial, duplicates {duplicates}, "
        f"requests {stormy['requests']} (fault-free {calm['requests']})"
    )
    assert lost_creates >= 1 and injected["429"] and injected["drop_before"]
    assert stormy["partial"] > 0  # the faults did bite
    assert stormy["open_duplicates"] == 0
    assert duplicates == 0
    want = snapshot(baseline)
    # The fault-free history is not trivial: every kind of outcome is in it.
    statuses = Counter((t["status"], t["resolution"]) for ts in want.values() for t in ts)
    assert statuses[("Done", "Fixed")] and statuses[("Done", "Done")] and statuses[("To Do", None)]
    assert any(t["project"] == "OPS" for ts in want.values() for t in ts)
    assert snapshot(jira_server) == want
