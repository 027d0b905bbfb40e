"""run_policy over fakes: statuses, dedup of images, failures recorded, bounded result, state reuse."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from pydantic import SecretStr

from ecs_scan_operator.core.model import Finding, Severity
from ecs_scan_operator.core.policy import PolicyRef, parse_spec
from ecs_scan_operator.core.result import Outcome
from ecs_scan_operator.errors import Cancelled
from ecs_scan_operator.pipeline import run_policy
from ecs_scan_operator.ports import Ports, StoredObject
from tests.support.fakes import FakeDigests, FakeFindings, FakeImageSource, FixedClock, MemorySink

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
POLICY = PolicyRef(namespace="team-a", name="nightly")


def spec(**over: Any) -> Any:
    base: dict[str, Any] = {
        "schedule": "@daily",
        "aws": {"region": "us-east-1"},
        "taskDefinitions": {"include": ["svc-*"], "exclude": ["*-sandbox"]},
        "report": {"s3": {"bucket": "reports", "prefix": "scans"}},
        "suppressions": [{"vulnerabilityId": "CVE-SUP", "reason": "accepted", "expires": "2099-01-01"}],
    }
    base.update(over)
    return parse_spec(base)


def findings() -> FakeFindings:
    return FakeFindings(
        by_repo={
            "app": [
                Finding("CVE-1", Severity.CRITICAL, "openssl"),
                Finding("CVE-2", Severity.LOW, "zlib"),
                Finding("CVE-SUP", Severity.HIGH, "nghttp2"),
            ],
            "sidecar": [Finding("CVE-3", Severity.MEDIUM, "curl")],
        }
    )


FLEET = {
    "svc-a": [("app", f"{ECR}/app:1"), ("log", f"{ECR}/sidecar:2"), ("dd", "datadog/agent:7")],
    "svc-b": [("app", f"{ECR}/app:1"), ("log", f"{ECR}/sidecar:2")],  # same images: deduplicated
    "svc-c": [("app", f"{ECR}/clean:1"), ("old", f"{ECR}/app:gone"), ("bad", "Not/Valid:x")],
    "svc-d": [("app", f"{ECR}/broken:1"), ("x", f"{ECR}/uncovered:1")],
    "svc-sandbox": [("app", f"{ECR}/app:9")],
    "other": [("app", f"{ECR}/app:8")],
}


STATE_KEY = SecretStr("k" * 32)


def ports(
    sink: MemorySink,
    src: FakeImageSource | None = None,
    fs: FakeFindings | None = None,
    key: SecretStr | None = STATE_KEY,
) -> Ports:
    return Ports(
        images=src or FakeImageSource(FLEET),
        digests=FakeDigests(),
        findings=fs or findings(),
        reports=sink,
        state_key=key,
    )


def test_statuses_and_counts() -> None:
    sink = MemorySink()
    result = run_policy(POLICY, spec(), ports(sink), FixedClock())
    assert result.families_matched == 4
    assert result.images_by_status == {
        "scanned": 3,
        "unscannable": 2,
        "not_found": 1,
        "not_scanned": 1,
        "failed": 1,
    }
    # CVE-2 is below MEDIUM, CVE-SUP is suppressed
    assert result.findings_by_severity["CRITICAL"] == 1 and result.findings_by_severity["MEDIUM"] == 1
    assert result.findings_total == 2 and result.suppressed_findings == 1
    assert result.outcome is Outcome.PARTIAL  # the broken image failed
    assert result.affected_images == 2


def test_report_tree_index_written_after_images() -> None:
    sink = MemorySink()
    result = run_policy(POLICY, spec(), ports(sink), FixedClock(), run_id="r1")
    folder = "scans/2026-11-28/team-a/nightly/r1"
    images = [k for k in sink.order if "/images/" in k]
    assert images == [
        f"{folder}/images/{name}.{ext}" for name in ("app/1", "sidecar/2") for ext in ("json", "html")
    ]  # each image's JSON, then its page
    assert sink.order.index(f"{folder}/index.json") > max(sink.order.index(k) for k in images)
    assert {f"{folder}/{n}" for n in ("index.json", "summary.csv", "index.html", "run.log.jsonl")} <= set(
        sink.objects
    )
    assert result.report_uri == f"mem://{folder}/index.json"
    index = json.loads(sink.objects[f"{folder}/index.json"])
    by_image = {i["image"]: i for i in index["images"]}
    assert by_image[f"{ECR}/app:1"]["families"] == ["svc-a", "svc-b"]
    assert by_image["Not/Valid:x"]["status"] == "unscannable"
    assert "malformed" in by_image["Not/Valid:x"]["reason"]
    doc = json.loads(sink.objects[f"{folder}/images/app/1.json"])
    assert [f["vulnerabilityId"] for f in doc["findings"]] == ["CVE-1"]
    assert doc["suppressedFindings"][0]["suppressionReason"] == "accepted"
    log_events = [json.loads(line)["event"] for line in sink.objects[f"{folder}/run.log.jsonl"].splitlines()]
    assert log_events[0] == "run_started" and log_events[-1] == "run_finished"
    html = sink.objects[f"{folder}/index.html"].decode()
    head = html.split("<body>")[0]
    assert "<script" in html and "http:" not in head and "https:" not in head  # no external resources


def test_second_run_uses_cache_and_marks_new_findings() -> None:
    sink, clock = MemorySink(), FixedClock()
    src = FakeImageSource(dict(FLEET))
    fs = findings()
    run_policy(POLICY, spec(), ports(sink, src, fs), clock, run_id="r1")
    assert src.described == 4
    fs.by_repo["sidecar"].append(Finding("CVE-NEW", Severity.HIGH, "libx"))
    clock.advance(days=1)
    run_policy(POLICY, spec(), ports(sink, src, fs), clock, run_id="r2")
    assert src.described == 4  # nothing described again: revisions are immutable
    doc = json.loads(sink.objects["scans/2026-11-29/team-a/nightly/r2/images/sidecar/2.json"])
    assert {f["vulnerabilityId"]: f["new"] for f in doc["findings"]} == {"CVE-NEW": True, "CVE-3": False}


def test_region_failure_recorded_run_goes_on() -> None:
    sink = MemorySink()
    src = FakeImageSource(FLEET, fail_regions={"eu-west-1"})
    result = run_policy(
        POLICY, spec(aws={"regions": ["eu-west-1", "us-east-1"]}), ports(sink, src), FixedClock()
    )
    assert "taskDefinitions[eu-west-1]" in result.stage_failures
    assert result.images_total == 8
    assert result.outcome is Outcome.PARTIAL


def test_report_write_failure_is_recorded() -> None:
    sink = MemorySink(fail_keys="/images/app/")
    result = run_policy(POLICY, spec(), ports(sink), FixedClock())
    assert any("report object" in e for e in result.errors)
    assert result.outcome is Outcome.PARTIAL


def test_cancel_stops_between_stages() -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        run_policy(POLICY, spec(), ports(MemorySink()), FixedClock(), cancel=cancel)


def test_result_bounded_for_2000_families() -> None:
    fleet = {
        f"svc-{i:04d}": [
            ("app", f"{ECR}/repo{i % 700}:v{i}"),
            ("x", f"{ECR}/broken{i % 50}:1"),
            ("bad", f"BAD/{i}"),
        ]
        for i in range(2000)
    }
    fs = FakeFindings(
        by_repo={
            f"repo{i}": [Finding(f"CVE-{i}-{j}", Severity.HIGH, "p") for j in range(20)] for i in range(700)
        }
    )
    result = run_policy(POLICY, spec(), ports(MemorySink(), FakeImageSource(fleet), fs), FixedClock())
    assert result.images_total == 2000 + 50 + 2000
    assert result.errors_total >= 1
    size = len(json.dumps(result.to_dict()).encode())
    assert size < 16 * 1024, size


class RecordingTickets:
    """A TicketSink that records the request and answers as told."""

    def __init__(self, report: Any) -> None:
        self.report = report
        self.requests: list[Any] = []

    def sync(self, request: Any) -> Any:
        self.requests.append(request)
        return self.report


JIRA = {"url": "https://acme.atlassian.net", "credentialsSecret": "jira", "project": "SEC"}


def test_tickets_get_links_and_partial_inventory_flag() -> None:
    from ecs_scan_operator.core.tickets import TicketReport

    sink = RecordingTickets(TicketReport(actions={"create": 2}))
    p = ports(MemorySink(), FakeImageSource(FLEET, fail_regions={"eu-west-1"}))
    p.tickets = sink
    result = run_policy(
        POLICY, spec(jira=JIRA, aws={"regions": ["eu-west-1", "us-east-1"]}), p, FixedClock(), run_id="r1"
    )
    req = sink.requests[0]
    assert req.inventory_complete is False  # eu-west-1 failed: no ticket may be closed as "no longer used"
    assert (
        req.report_links["app:1"]
        == "https://reports.example/scans/2026-11-28/team-a/nightly/r1/images/app/1.html"
    )  # the page for people
    assert req.index_link.endswith("/r1/index.html")
    assert result.tickets == {"create": 2}


def test_ticket_sync_failure_is_a_stage_failure() -> None:
    from ecs_scan_operator.core.tickets import TicketReport

    p = ports(MemorySink())
    p.tickets = RecordingTickets(TicketReport(errors=["HTTP 401"], synced=False, reason="JiraAuthFailed"))
    result = run_policy(POLICY, spec(jira=JIRA), p, FixedClock())
    assert result.stage_failures["tickets"].startswith("JiraAuthFailed: HTTP 401")
    assert result.outcome is Outcome.PARTIAL
    assert p.tickets.requests[0].inventory_complete is True


def test_unreadable_state_does_not_mark_the_inventory_partial() -> None:
    from ecs_scan_operator.core.tickets import TicketReport
    from ecs_scan_operator.errors import TransientError

    class StateUnreadable(MemorySink):
        def read(self, key: str) -> StoredObject | None:
            if key.endswith(".json"):
                raise TransientError("s3:GetObject: SlowDown")
            return super().read(key)

    p = ports(StateUnreadable())
    p.tickets = RecordingTickets(TicketReport())
    result = run_policy(POLICY, spec(jira=JIRA), p, FixedClock())
    assert any(e.startswith("state:") for e in result.errors)
    assert p.tickets.requests[0].inventory_complete is True  # every region was listed


def _log(sink: MemorySink, folder: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in sink.objects[f"{folder}/run.log.jsonl"].splitlines()]


def test_an_edited_state_is_not_trusted_the_fleet_is_listed_again() -> None:
    sink, clock = MemorySink(), FixedClock()
    src = FakeImageSource(dict(FLEET))
    run_policy(POLICY, spec(), ports(sink, src), clock, run_id="r1")
    skey = "scans/state/team-a/nightly.json"
    # A writer of the bucket points svc-a's cached app container at a clean image.
    data = json.loads(sink.objects[skey])
    arn = "arn:aws:ecs:us-east-1:123456789012:task-definition/svc-a:1"
    data["revisions"][arn]["containers"][0][1] = f"{ECR}/clean:1"
    sink.objects[skey] = json.dumps(data).encode()
    clock.advance(days=1)
    second = run_policy(POLICY, spec(), ports(sink, src), clock, run_id="r2")
    assert src.described == 8  # every revision described again: a cold listing
    assert second.outcome is Outcome.PARTIAL and second.findings_by_severity["CRITICAL"] == 1  # as r1
    index = json.loads(sink.objects["scans/2026-11-29/team-a/nightly/r2/index.json"])
    assert "svc-a" in {f for i in index["images"] if i["image"] == f"{ECR}/app:1" for f in i["families"]}
    lines = _log(sink, "scans/2026-11-29/team-a/nightly/r2")
    untrusted = [line for line in lines if line["event"] == "state_untrusted"]
    assert len(untrusted) == 1 and "MAC" in untrusted[0]["reason"] and untrusted[0]["level"] == "warning"
    # The state written by r2 is trusted again by r3 (the cache is back).
    clock.advance(days=1)
    run_policy(POLICY, spec(), ports(sink, src), clock, run_id="r3")
    assert src.described == 8
    assert not any(
        line["event"].startswith("state_") for line in _log(sink, "scans/2026-11-30/team-a/nightly/r3")
    )


def test_without_a_state_key_the_cache_is_not_used_and_the_log_says_so_once() -> None:
    sink, clock = MemorySink(), FixedClock()
    src = FakeImageSource(dict(FLEET))
    first = run_policy(POLICY, spec(), ports(sink, src, key=None), clock, run_id="r1")
    clock.advance(days=1)
    second = run_policy(POLICY, spec(), ports(sink, src, key=None), clock, run_id="r2")
    assert src.described == 8  # described in both runs
    assert second.findings_by_severity == first.findings_by_severity
    events = [line["event"] for line in _log(sink, "scans/2026-11-29/team-a/nightly/r2")]
    assert events.count("state_unauthenticated") == 1 and "state_untrusted" not in events
    assert json.loads(sink.objects["scans/state/team-a/nightly.json"])["revisions"] == {}


def test_the_state_key_is_in_no_object_written() -> None:
    sink = MemorySink()
    run_policy(POLICY, spec(), ports(sink), FixedClock(), run_id="r1")
    secret = STATE_KEY.get_secret_value().encode()
    assert sink.objects and not any(secret in body for body in sink.objects.values())
