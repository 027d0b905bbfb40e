"""Twelve simulated daily runs against the Jira test server, Cloud and Data Center flavours.

Day by day: created; unchanged (zero writes); new CVE (update + one comment); all fixed (closed);
regression (reopened); closed as won't-do by a person (stays closed); image no longer monitored
(not closed as fixed); route change (filed under the new route, linked, the old one closed); and
findings back after reopenWithinDays (a new ticket linked to the old one).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ecs_scan_operator.adapters.jira import JiraCredentials, JiraTicketSink
from ecs_scan_operator.core.model import ImageResult, ImageStatus
from ecs_scan_operator.core.policy import PolicySpec
from ecs_scan_operator.core.tickets import TicketReport, dedup_key, dedup_label
from tests.jira_server import fleet
from tests.jira_server.server import JiraTestServer, Record
from tests.jira_server.state import STATUSES, Issue

DEDUP = re.compile(r"ecsscan-[0-9a-f]{16}")

pytestmark = pytest.mark.integration

START = datetime(2025, 3, 3, 6, 0, tzinfo=UTC)
H1 = ("CVE-2024-1001", "openssl", "HIGH")
M2 = ("CVE-2024-1002", "libxml2", "MEDIUM")
H3 = ("CVE-2024-1003", "curl", "HIGH")
C1 = ("CVE-2024-2001", "glibc", "CRITICAL")
B1 = ("CVE-2024-3001", "busybox", "MEDIUM")


def _spec(server: JiraTestServer, *, routed: bool = False) -> PolicySpec:
    jira: dict[str, Any] = {
        "url": server.url,
        "labels": ["security"],
        "priorityMap": {"CRITICAL": "Highest", "HIGH": "High", "MEDIUM": "Medium"},
        "dueDays": {"CRITICAL": 7, "HIGH": 30, "MEDIUM": 90},
        "reopenWithinDays": 7,
    }
    if routed:
        jira["routes"] = [
            {"name": "web-team", "match": {"families": ["web"]}, "project": "OPS", "components": ["platform"]}
        ]
    return fleet.spec(jira)


def _fleet(
    api: list[tuple[str, str, str]] | None,
    worker: list[tuple[str, str, str]],
    batch: list[tuple[str, str, str]],
) -> list[ImageResult]:
    """api=None: the api image exists but Inspector no longer covers it."""
    return [
        fleet.image(
            "app/api",
            "1.4",
            api or [],
            families=[("web", "app")],
            status=ImageStatus.SCANNED if api is not None else ImageStatus.NOT_SCANNED,
        ),
        fleet.image("app/worker", "2.0", worker, families=[("jobs", "worker")]),
        fleet.image("app/batch", "0.9", batch, families=[("batch", "runner")]),
    ]


@pytest.fixture
def sink(jira_server: JiraTestServer) -> Iterator[JiraTicketSink]:
    creds = JiraCredentials.from_env(jira_server.credentials_env())
    assert creds is not None
    s = JiraTicketSink(jira_server.url, creds, sleep=lambda _: None)
    yield s
    s.close()


def _by_label(server: JiraTestServer, repo: str, route: str = "default") -> list[Issue]:
    label = dedup_label(dedup_key(fleet.POLICY, route, f"{fleet.REGISTRY}/{repo}"))
    return sorted(server.issues_with_label(label), key=lambda i: i.id)


def _writes(records: list[Record]) -> list[Record]:
    return [r for r in records if r.write]


def _assert_no_duplicates(server: JiraTestServer) -> None:
    open_by_label: dict[str, int] = {}
    for issue in server.state.issues.values():
        if STATUSES[issue.status].category == "done":
            continue
        for lb in issue.labels:
            if re.fullmatch(r"ecsscan-[0-9a-f]{16}", lb):
                open_by_label[lb] = open_by_label.get(lb, 0) + 1
    assert all(n == 1 for n in open_by_label.values()), open_by_label


@pytest.mark.parametrize("jira_server", ["cloud", "dc"], indirect=True)
def test_twelve_daily_runs(jira_server: JiraTestServer, sink: JiraTicketSink) -> None:
    server = jira_server
    plain, routed = _spec(server), _spec(server, routed=True)
    reports: list[TicketReport] = []
    logs: list[list[Record]] = []

    def run(day: int, images: list[ImageResult], spec: PolicySpec = plain) -> TicketReport:
        server.state.now = START + timedelta(days=day)
        mark = server.mark()
        report = sink.sync(fleet.request(spec, images, server.state.now, f"run-{day}"))
        logs.append(server.since(mark))
        reports.append(report)
        assert report.synced, report.errors
        assert report.requests == len(logs[-1])  # the adapter counts what the server saw
        _assert_no_duplicates(server)
        return report

    # Day 0: three groups with findings -> three tickets, label + property in the create itself.
    r = run(0, _fleet([H1], [C1], [B1]))
    assert r.actions == {"create": 3}
    api = _by_label(server, "app/api")[0]
    assert api.properties["ecsscan"]["fp"] and api.priority == "2" and api.duedate == "2025-04-02"
    assert set(api.labels) >= {"security"} and api.status == "10000"
    worker = _by_label(server, "app/worker")[0]
    assert worker.priority == "1" and worker.duedate == "2025-03-10"

    # Day 1: nothing changed -> one search page, zero writes.
    r = run(1, _fleet([H1], [C1], [B1]))
    assert r.actions == {"unchanged": 3}
    assert len(logs[1]) == 1 and not _writes(logs[1]) and r.writes == 0 and r.searches == 1

    # Day 2: a new CVE in api -> one edit (description + one comment + property); batch fixed -> closed.
    comments_before = len(api.comments)
    r = run(2, _fleet([H1, M2], [C1], []))
    assert r.actions == {"update": 1, "close": 1, "unchanged": 1}
    api = _by_label(server, "app/api")[0]
    assert len(api.comments) == comments_before + 1
    assert "CVE-2024-1002" in api.comments[-1].body and "*New (1):*" in api.comments[-1].body
    assert "CVE-2024-1002" in api.description
    batch = _by_label(server, "app/batch")[0]
    assert STATUSES[batch.status].category == "done" and batch.resolution == "10002"  # Fixed

    # Day 3: api all fixed -> closed with a comment, resolution Fixed.
    r = run(3, _fleet([], [C1], []))
    assert r.actions == {"close": 1, "unchanged": 2}
    api = _by_label(server, "app/api")[0]
    assert api.status == "10001" and api.resolution == "10002" and "Closing" in api.comments[-1].body

    # Day 4: regression within reopenWithinDays -> reopened; a person closes worker as won't-do first.
    server.state.transition(worker.key, to="Done", resolution="Won't Do")
    r = run(4, _fleet([H1], [C1], []))
    assert r.actions == {"reopen": 1, "skip-wontdo": 1, "unchanged": 1}
    api = _by_label(server, "app/api")[0]
    assert api.status == "10000" and api.resolution is None and "findings are back" in api.comments[-1].body

    # Day 5: worker gets worse, but a person said won't-do: it stays closed, untouched.
    worker_before = _by_label(server, "app/worker")[0]
    updated_before = worker_before.updated
    r = run(5, _fleet([H1], [C1, H3], []))
    assert r.actions == {"skip-wontdo": 1, "unchanged": 2}
    assert not _writes(logs[5])
    worker = _by_label(server, "app/worker")[0]
    assert worker.status == "10001" and worker.resolution == "10001" and worker.updated == updated_before

    # Day 6: Inspector no longer covers the api image -> NOT closed as fixed; one note, findings kept.
    r = run(6, _fleet(None, [C1, H3], []))
    assert r.actions == {"update": 1, "skip-wontdo": 1, "unchanged": 1}
    api = _by_label(server, "app/api")[0]
    assert STATUSES[api.status].category != "done"
    assert "not a fix" in api.comments[-1].body
    assert [f[0] for f in api.properties["ecsscan"]["findings"]] == ["CVE-2024-1001"]

    # Day 7: still not monitored -> nothing to write.
    r = run(7, _fleet(None, [C1, H3], []))
    assert not _writes(logs[7]) and r.writes == 0

    # Day 8: monitored again, and a route now sends family "web" to project OPS: a new ticket there,
    # linked to the old one, which is closed with a pointer.
    r = run(8, _fleet([H1], [C1, H3], []), routed)
    assert r.actions == {"create": 1, "close": 1, "skip-wontdo": 1, "unchanged": 1}
    (ops,) = _by_label(server, "app/api", "web-team")
    old = _by_label(server, "app/api")[0]
    assert ops.project == "OPS" and ops.components and ops.key.startswith("OPS-")
    assert (True, old.key) in {(lk.outward, lk.other) for lk in ops.links}
    assert STATUSES[old.status].category == "done" and "routing changed" in old.comments[-1].body
    assert ops.properties["ecsscan"]["route"] == "web-team"

    # Day 9: steady state with two routes -> one search page per route, zero writes.
    r = run(9, _fleet([H1], [C1, H3], []), routed)
    assert r.writes == 0 and r.searches == 2 and len(logs[9]) == 2
    assert r.actions == {"unchanged": 2, "skip-wontdo": 1}

    # Day 10: batch's finding is back 8 days after its ticket was fixed (> reopenWithinDays = 7):
    # a new ticket, linked to the old one, which stays closed.
    r = run(10, _fleet([H1], [C1, H3], [B1]), routed)
    assert r.actions == {"new-linked": 1, "unchanged": 1, "skip-wontdo": 1}
    old_batch, new_batch = _by_label(server, "app/batch")
    assert STATUSES[old_batch.status].category == "done"
    assert STATUSES[new_batch.status].category == "new"
    assert (True, old_batch.key) in {(lk.outward, lk.other) for lk in new_batch.links}
    assert f"Follows up {old_batch.key}" in new_batch.description

    # Day 11: steady state again: the new ticket is the one tracked, nothing written.
    r = run(11, _fleet([H1], [C1, H3], [B1]), routed)
    assert r.writes == 0 and r.actions == {"unchanged": 2, "skip-wontdo": 1}

    # Every run: the first made 1 serverInfo + searches + creates; later runs reuse the client.
    assert logs[0][0].path.endswith("/serverInfo")
    assert sum(1 for rec in logs[0] if rec.path.endswith("/issue")) == 3
    assert all(not rec.path.endswith("/serverInfo") for lg in logs[1:] for rec in lg)
    assert len(server.state.issues) == 5


@pytest.mark.parametrize("jira_server", ["cloud", "dc"], indirect=True)
def test_request_figures(jira_server: JiraTestServer) -> None:
    """Requests per run for a 60-image fleet (45 repositories, 3 routes); printed with -s."""
    spec = fleet.spec(
        {
            "url": jira_server.url,
            "routes": [
                {"name": "payments", "match": {"families": ["pay-*"]}, "project": "OPS"},
                {"name": "search", "match": {"taskDefinitionTags": {"team": "search"}}},
            ],
        }
    )
    images = []
    for i in range(45):
        family = ("pay-" if i % 3 == 0 else "svc-") + str(i)
        tags = {"team": "search"} if i % 3 == 1 else {}
        findings = [H1] if i % 4 else []  # a quarter are clean
        images.append(fleet.image(f"team/repo{i}", "1", findings, families=[(family, "c")], td_tags=tags))
        if i < 15:
            images.append(fleet.image(f"team/repo{i}", "0", [M2], families=[(family, "c")], td_tags=tags))
    creds = JiraCredentials.from_env(jira_server.credentials_env())
    assert creds is not None
    figures = {}
    for day, name in enumerate(["first", "steady", "steady-new-sink"]):
        sink = JiraTicketSink(jira_server.url, creds, sleep=lambda _: None)
        if name == "steady":
            sink.sync(fleet.request(spec, images, START, "warm-up"))  # same sink object, next run below
        mark = jira_server.mark()
        report = sink.sync(fleet.request(spec, images, START + timedelta(days=day), f"run-{day}"))
        sink.close()
        seen = jira_server.since(mark)
        assert report.synced and report.requests == len(seen)
        figures[name] = (len(seen), sum(r.write for r in seen), report.searches)
    groups = sum(
        1 for lb in {lb for i in jira_server.state.issues.values() for lb in i.labels} if DEDUP.fullmatch(lb)
    )
    print(
        f"\n{jira_server.flavour}: {len(images)} images, {groups} tickets, 3 routes -> "
        + ", ".join(f"{k}: {n} requests ({w} writes, {s} search pages)" for k, (n, w, s) in figures.items())
    )
    assert figures["first"] == (1 + 3 + groups, groups, 3)  # serverInfo, one search per route, creates
    assert figures["steady"] == (3, 0, 3)  # one search page per route, zero writes
    # A new sink (the operator builds one per run) asks serverInfo once more: it is read once per
    # sink and site, with no process-wide cache to go stale when a site changes flavour.
    assert figures["steady-new-sink"] == (4, 0, 3)
