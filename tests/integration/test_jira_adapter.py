"""The Jira adapter against the Jira test server: faults, budget, dry run, secrets, paging, auth."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ecs_scan_operator.adapters.jira import (
    JiraCredentials,
    JiraSinkOptions,
    JiraTicketSink,
    PlanOnlyTicketSink,
    TransportLimits,
    build_ticket_sink,
)
from ecs_scan_operator.core.model import ImageResult
from ecs_scan_operator.core.policy import PolicySpec
from ecs_scan_operator.core.tickets import TicketReport
from tests.jira_server import fleet
from tests.jira_server.server import JiraTestServer
from tests.jira_server.state import STATUSES

pytestmark = pytest.mark.integration

NOW = datetime(2025, 5, 5, 6, 0, tzinfo=UTC)
H1 = ("CVE-2024-1001", "openssl", "HIGH")
C1 = ("CVE-2024-2001", "glibc", "CRITICAL")
DEDUP = re.compile(r"ecsscan-[0-9a-f]{16}")


class Sleeps(list[float]):
    """Records the backoff sleeps instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _creds(server: JiraTestServer) -> JiraCredentials:
    creds = JiraCredentials.from_env(server.credentials_env())
    assert creds is not None
    return creds


def _spec(server: JiraTestServer, **jira: Any) -> PolicySpec:
    return fleet.spec({"url": server.url, "priorityMap": {"CRITICAL": "Highest", "HIGH": "High"}, **jira})


def _images(n: int = 3) -> list[ImageResult]:
    return [
        fleet.image(f"svc/r{i}", "1", [H1] if i % 2 else [C1], families=[(f"fam{i}", "c")]) for i in range(n)
    ]


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def sink(jira_server: JiraTestServer, sleeps: Sleeps) -> Iterator[JiraTicketSink]:
    s = JiraTicketSink(jira_server.url, _creds(jira_server), sleep=sleeps)
    yield s
    s.close()


def _sync(sink: JiraTicketSink, server: JiraTestServer, images: list[ImageResult], **kw: Any) -> TicketReport:
    spec = kw.pop("spec", None) or _spec(server)
    return sink.sync(fleet.request(spec, images, kw.pop("now", NOW), kw.pop("run_id", "run-1"), **kw))


def _dedup_counts(server: JiraTestServer) -> dict[str, int]:
    out: dict[str, int] = {}
    for issue in server.state.issues.values():
        for lb in issue.labels:
            if DEDUP.fullmatch(lb):
                out[lb] = out.get(lb, 0) + 1
    return out


@pytest.mark.parametrize("jira_server", ["cloud", "dc"], indirect=True)
def test_lost_create_is_found_by_label_not_repeated(
    jira_server: JiraTestServer, sink: JiraTicketSink
) -> None:
    jira_server.fail_next("POST", r"/issue$", "drop_after")
    report = _sync(sink, jira_server, _images(1))
    assert report.synced and report.actions == {"create": 1}
    assert list(_dedup_counts(jira_server).values()) == [1]
    posts = [r for r in jira_server.log if r.method == "POST" and r.path.endswith("/issue")]
    assert len(posts) == 1  # never sent twice
    assert report.planned[0]["ticket"] == "SEC-1"
    # The next run sees it, with its property, and writes nothing.
    again = _sync(sink, jira_server, _images(1), run_id="run-2")
    assert again.actions == {"unchanged": 1} and again.writes == 0


@pytest.mark.parametrize("kind", ["500", "502", "drop_before"])
def test_failed_create_waits_for_the_next_run(
    jira_server: JiraTestServer, sink: JiraTicketSink, kind: str
) -> None:
    jira_server.fail_next("POST", r"/issue$", kind)
    report = _sync(sink, jira_server, _images(1))
    assert not report.synced and report.reason == "PartialFailure"
    assert report.actions == {"deferred": 1}
    assert any("outcome unknown" in e for e in report.errors)
    assert not jira_server.state.issues
    again = _sync(sink, jira_server, _images(1), run_id="run-2")
    assert again.synced and again.actions == {"create": 1}
    assert list(_dedup_counts(jira_server).values()) == [1]


def test_429_retry_after_is_honoured(
    jira_server: JiraTestServer, sink: JiraTicketSink, sleeps: Sleeps
) -> None:
    jira_server.faults.retry_after = 7
    jira_server.fail_next("GET", r"/search/jql$", "429")
    jira_server.fail_next("POST", r"/issue$", "429")  # refused before any work: safe to repeat
    report = _sync(sink, jira_server, _images(1))
    assert report.synced and report.actions == {"create": 1}
    assert sleeps == [7.0, 7.0]
    assert len(jira_server.state.issues) == 1


def test_too_long_retry_after_ends_the_runs_jira_work(jira_server: JiraTestServer, sleeps: Sleeps) -> None:
    sink = JiraTicketSink(
        jira_server.url,
        _creds(jira_server),
        sleep=sleeps,
        options=JiraSinkOptions(limits=TransportLimits(max_retry_after=60)),
    )
    jira_server.faults.retry_after = 3600
    jira_server.fail_next("GET", r"/search/jql$", "429")
    report = _sync(sink, jira_server, _images(1))
    sink.close()
    assert not report.synced and report.actions == {"deferred": 1}
    assert sleeps == []
    assert not jira_server.state.issues


def test_5xx_on_reads_backs_off_and_retries(
    jira_server: JiraTestServer, sink: JiraTicketSink, sleeps: Sleeps
) -> None:
    for kind in ("500", "502", "drop_before"):
        jira_server.fail_next("GET", r"/search/jql$", kind)
    report = _sync(sink, jira_server, _images(1))
    assert report.synced and report.actions == {"create": 1}
    assert len(sleeps) == 3 and sleeps[0] < sleeps[1] < sleeps[2] <= 30  # doubling, bounded
    jira_server.fail_next("GET", r"/search/jql$", "500")
    for _ in range(4):
        jira_server.fail_next("GET", r"/search/jql$", "503")
    failed = _sync(sink, jira_server, _images(1), run_id="run-2")
    assert not failed.synced and failed.actions == {"deferred": 1}  # 4 attempts, then the route waits
    assert not any(r.write for r in jira_server.log[-4:])


def test_request_budget(jira_server: JiraTestServer) -> None:
    small = JiraTicketSink(
        jira_server.url,
        _creds(jira_server),
        sleep=lambda _: None,
        options=JiraSinkOptions(limits=TransportLimits(request_budget=4)),
    )
    report = _sync(small, jira_server, _images(5))
    small.close()
    assert not report.synced and report.reason == "RequestBudgetExhausted"
    assert report.requests == 4
    assert report.actions == {"create": 2, "deferred": 3}
    full = JiraTicketSink(jira_server.url, _creds(jira_server), sleep=lambda _: None)
    again = _sync(full, jira_server, _images(5), run_id="run-2")
    full.close()
    assert again.synced and again.actions == {"create": 3, "unchanged": 2}
    assert sorted(_dedup_counts(jira_server).values()) == [1] * 5


@pytest.mark.parametrize("jira_server", ["cloud", "dc"], indirect=True)
def test_dry_run_reads_only_and_explains(jira_server: JiraTestServer) -> None:
    real = JiraTicketSink(jira_server.url, _creds(jira_server), sleep=lambda _: None)
    _sync(real, jira_server, _images(2))
    real.close()
    mark = jira_server.mark()
    plan_only = PlanOnlyTicketSink(jira_server.url, _creds(jira_server))
    changed = [
        fleet.image("svc/r0", "1", [], families=[("fam0", "c")]),  # fixed -> close
        fleet.image("svc/r1", "1", [H1, C1], families=[("fam1", "c")]),  # worse -> update
        *_images(4)[2:],  # new -> create, create
    ]
    report = _sync(plan_only, jira_server, changed)
    plan_only.close()
    assert all(not r.write for r in jira_server.since(mark))
    assert report.reason == "DryRun" and report.synced and report.writes == 0
    assert report.actions == {"close": 1, "update": 1, "create": 2}
    by_action = {p["action"]: p for p in report.planned}
    assert by_action["close"]["reason"] == "all findings fixed" and by_action["close"]["ticket"]
    assert by_action["update"]["reason"] == "findings changed"
    assert all(p["result"] == "planned" for p in report.planned)
    # The request's dry_run flag works on the ordinary sink too.
    sink = JiraTicketSink(jira_server.url, _creds(jira_server))
    mark = jira_server.mark()
    again = _sync(sink, jira_server, changed, dry_run=True)
    sink.close()
    assert again.reason == "DryRun" and all(not r.write for r in jira_server.since(mark))


@pytest.mark.parametrize("jira_server", ["cloud", "dc"], indirect=True)
def test_paging_finds_every_ticket(jira_server: JiraTestServer, sink: JiraTicketSink) -> None:
    jira_server.page_size = 2
    images = _images(7)
    first = _sync(sink, jira_server, images)
    assert first.actions == {"create": 7}
    mark = jira_server.mark()
    again = _sync(sink, jira_server, images, run_id="run-2")
    assert again.actions == {"unchanged": 7} and again.writes == 0
    pages = jira_server.since(mark)
    assert len(pages) == again.searches == 4  # ceil(7 / 2)
    if jira_server.cloud:
        assert [dict(p.query).get("nextPageToken") is not None for p in pages] == [False, True, True, True]
    else:
        assert [dict(p.query)["startAt"] for p in pages] == ["0", "2", "4", "6"]


@pytest.mark.parametrize("jira_server", ["cloud", "dc"], indirect=True)
def test_assignee_and_components_per_flavour(jira_server: JiraTestServer, sink: JiraTicketSink) -> None:
    spec = _spec(
        jira_server,
        routes=[
            {"name": "team-a", "match": {"families": ["fam*"]}, "components": ["team-a"], "assignee": "alice"}
        ],
    )
    report = _sync(sink, jira_server, _images(1), spec=spec)
    assert report.synced, report.errors
    (issue,) = jira_server.state.issues.values()
    assert issue.assignee == "alice" and issue.components
    assert issue.priority == "1"  # Highest, for a CRITICAL


def test_jira_refusals_are_recorded_and_the_rest_proceeds(
    jira_server: JiraTestServer, sink: JiraTicketSink
) -> None:
    spec = _spec(jira_server, priorityMap={"CRITICAL": "Blocker", "HIGH": "High"})  # no such priority
    report = _sync(sink, jira_server, _images(3), spec=spec)
    assert not report.synced and report.reason == "PartialFailure"
    assert report.actions == {"failed": 2, "create": 1}
    assert any("priority" in e and "(400)" in e for e in report.errors)


def test_a_huge_group_stays_within_jira_limits(jira_server: JiraTestServer, sink: JiraTicketSink) -> None:
    findings = [(f"CVE-2024-{i:05d}", f"package-{i}-" + "x" * 40, "HIGH") for i in range(3000)]
    report = _sync(sink, jira_server, [fleet.image("svc/big", "1", findings)])
    assert report.synced, report.errors
    (issue,) = jira_server.state.issues.values()
    assert len(issue.description) <= 32_767
    assert "most severe of 3000 findings" in issue.description
    assert len(json.dumps(issue.properties["ecsscan"])) <= 32_768


@pytest.mark.parametrize("jira_server", ["cloud", "dc"], indirect=True)
def test_refused_credentials(jira_server: JiraTestServer) -> None:
    wrong = JiraCredentials.from_mapping(
        {"email": jira_server.EMAIL, "apiToken": "wrong-token-123"}
        if jira_server.cloud
        else {"token": "wrong-pat-123"}
    )
    sink = JiraTicketSink(jira_server.url, wrong, sleep=lambda _: None)
    report = _sync(sink, jira_server, _images(1))
    sink.close()
    assert not report.synced and report.reason == "JiraAuthFailed"
    assert any("401" in e for e in report.errors)
    assert not any("wrong-" in e for e in report.errors)


@pytest.mark.parametrize("jira_server", ["cloud", "dc"], indirect=True)
def test_secrets_never_leave_the_adapter(
    jira_server: JiraTestServer, caplog: pytest.LogCaptureFixture, sleeps: Sleeps
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, urllib3 and jira included
    creds = _creds(jira_server)
    secrets = creds.secrets()
    assert secrets
    sink = JiraTicketSink(jira_server.url, creds, sleep=sleeps)
    reports = []
    # Normal work, a refusal (400), lost answers and throttling: every path that builds messages.
    jira_server.fail_next("POST", r"/issue$", "drop_after")
    jira_server.fail_next("POST", r"/issue$", "500")
    jira_server.fail_next("GET", r"/search", "429")
    reports.append(_sync(sink, jira_server, _images(3)))
    bad = _spec(jira_server, priorityMap={"CRITICAL": "Blocker"})
    reports.append(_sync(sink, jira_server, _images(4), spec=bad, run_id="run-2", dry_run=False))
    reports.append(_sync(sink, jira_server, [], run_id="run-3"))
    sink.close()
    wrong = JiraCredentials.from_mapping(
        {"email": jira_server.EMAIL, "apiToken": secrets[0] + "x"}
        if jira_server.cloud
        else {"token": secrets[0] + "x"}
    )
    bad_sink = JiraTicketSink(jira_server.url, wrong, sleep=sleeps)
    reports.append(_sync(bad_sink, jira_server, _images(1), run_id="run-4"))
    bad_sink.close()
    texts = [r.getMessage() for r in caplog.records] + [str(r.args) for r in caplog.records]
    texts += [json.dumps(asdict(r)) for r in reports] + [repr(r) for r in reports]
    texts += [repr(sink), repr(creds), str(creds), repr(wrong), json.dumps(creds.model_dump(mode="json"))]
    assert any("jira:" in t for t in texts)  # the adapter did log
    for secret in secrets:
        leaks = [t for t in texts if secret in t]
        assert not leaks, leaks[:1]
    for issue in jira_server.state.issues.values():  # nor in what Jira stores (report to people)
        blob = json.dumps(
            [issue.description, issue.properties, [c.body for c in issue.comments]], default=str
        )
        assert not any(s in blob for s in secrets)


def test_build_ticket_sink_from_the_composition_root(jira_server: JiraTestServer) -> None:
    from pydantic import SecretStr

    spec = _spec(jira_server)
    creds = {"email": SecretStr(jira_server.EMAIL), "apiToken": SecretStr(jira_server.API_TOKEN)}
    sink = build_ticket_sink(spec, creds)
    assert isinstance(sink, JiraTicketSink) and not isinstance(sink, PlanOnlyTicketSink)
    report = _sync(sink, jira_server, _images(1))
    sink.close()
    assert report.synced and report.actions == {"create": 1}
    dry = build_ticket_sink(fleet.spec({"url": jira_server.url}, dry_run=True), creds)
    assert isinstance(dry, PlanOnlyTicketSink)
    assert build_ticket_sink(fleet.spec(None), creds) is None


def test_closing_uses_the_workflow(jira_server: JiraTestServer, sink: JiraTicketSink) -> None:
    _sync(sink, jira_server, _images(1))
    report = _sync(
        sink,
        jira_server,
        [fleet.image("svc/r0", "1", [], families=[("fam0", "c")])],
        run_id="run-2",
        now=NOW + timedelta(days=1),
    )
    assert report.actions == {"close": 1}
    (issue,) = jira_server.state.issues.values()
    assert STATUSES[issue.status].category == "done" and issue.resolution == "10002"  # Fixed
    transitions = [r for r in jira_server.log if r.path.endswith("/transitions")]
    assert [r.method for r in transitions] == ["GET", "POST"]
    assert transitions[1].body["transition"] == {"id": "31"}
    assert transitions[1].body["fields"] == {"resolution": {"name": "Fixed"}}
    assert "Closing" in transitions[1].body["update"]["comment"][0]["add"]["body"]


def test_an_answer_of_an_unexpected_shape_stops_cleanly(
    jira_server: JiraTestServer, sink: JiraTicketSink
) -> None:
    # Something between us and Jira answers 200 with a list where a search page belongs.
    jira_server._routes = [
        (m, pat, (lambda **_: (200, ["not", "a", "page"])) if "search" in pat.pattern else fn)
        for m, pat, fn in jira_server._routes
    ]
    report = _sync(sink, jira_server, _images(1))
    assert not report.synced and report.reason == "JiraUnavailable"
    assert len(report.errors) == 1  # it stops at the first answer it cannot read
    assert not jira_server.state.issues
    jira_server.violations.clear()  # the broken answers were the point of this test
